// The ManageSieve wire format (RFC 5804 4): commands are an atom followed by strings (quoted or literal) and
// numbers, ended by CRLF; answers are OK/NO/BYE with an optional response code and a string. The parser is
// resumable (push bytes, take commands) and bounded: a line without its end, a quoted string, a literal and
// the bytes skipped of a refused literal all have limits. No I/O here.

import { COMMAND_ARGS_MAX, LINE_BYTES_MAX, LITERAL_BYTES_MAX, LITERAL_DISCARD_BYTES_MAX, QUOTED_BYTES_MAX } from './constants.ts'

export type Arg =
  | { type: 'string', value: Buffer }
  | { type: 'number', value: number }
  | { type: 'atom', value: string }

export type Parsed =
  | { kind: 'command', name: string, args: Arg[] }
  /** A refused command; the stream is in sync again after it. `code`: the response code (RFC 5804 1.3). */
  | { kind: 'error', message: string, code?: string }
  /** Input the session cannot recover from (a line or literal past every bound): BYE and close. */
  | { kind: 'fatal', message: string }

const CR = 0x0d
const LF = 0x0a
const SP = 0x20
const DQUOTE = 0x22
const BACKSLASH = 0x5c

function isAtomChar (c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f
}

type Scan = { done: true, value: Parsed, end: number } | { done: false, need?: number }

export class CommandParser {
  private buf: Buffer = Buffer.alloc(0)
  // a refused literal still arriving: skip this many bytes, then the rest of its line, then report `pending`
  private skipBytes = 0
  private skipLine = false
  private pending: Parsed | null = null
  // a literal that has not fully arrived: no scan until the buffer holds this many bytes
  private need = 0

  /** Bytes held (for back-pressure). */
  get buffered (): number { return this.buf.length }

  push (chunk: Buffer): void {
    if (this.skipBytes > 0) {
      const n = Math.min(this.skipBytes, chunk.length)
      this.skipBytes -= n
      chunk = chunk.subarray(n)
      if (chunk.length === 0) return
    }
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
  }

  // the next line is a SASL response: a string alone (RFC 5804 2.1), taken as a command with the name ''
  bareString = false

  /** What is buffered and not parsed yet (a session handed on elsewhere sends it first). */
  takeRest (): Buffer {
    const rest = this.buf
    this.clear()
    return rest
  }

  clear (): void {
    this.buf = Buffer.alloc(0)
    this.need = 0
  }

  /** The next command (or refusal), or null when more bytes are needed. */
  take (): Parsed | null {
    if (this.skipBytes > 0) return null
    if (this.skipLine) {
      const lf = this.buf.indexOf(LF)
      if (lf === -1) {
        if (this.buf.length > LINE_BYTES_MAX) return { kind: 'fatal', message: 'Line too long' }
        return null
      }
      this.buf = this.buf.subarray(lf + 1)
      this.skipLine = false
      const p = this.pending
      this.pending = null
      if (p !== null) return p
    }
    if (this.buf.length < this.need) return null
    this.need = 0
    const r = this.scan()
    if (!r.done) {
      if (r.need !== undefined) this.need = r.need
      return null
    }
    if (r.end < 0) return r.value // skip state set by scan
    this.buf = this.buf.subarray(r.end)
    return r.value
  }

  private refuse (from: number, value: Parsed): Scan {
    // resynchronise at the end of this line
    this.buf = this.buf.subarray(from)
    this.skipLine = true
    this.pending = value
    const p = this.take()
    return p === null ? { done: false } : { done: true, value: p, end: -1 }
  }

  private scan (): Scan {
    const b = this.buf
    let pos = 0
    let name: string | null = null
    const args: Arg[] = []
    let lineStart = 0 // bytes since the last literal: the line-length bound applies between literals
    // more bytes are needed: unless the line is already past its bound (an endless atom or number)
    const more = (): Scan => b.length - lineStart > LINE_BYTES_MAX ? { done: true, value: { kind: 'fatal', message: 'Line too long' }, end: b.length } : { done: false }
    for (;;) {
      while (pos < b.length && b[pos] === SP) pos++
      if (pos - lineStart > LINE_BYTES_MAX) return { done: true, value: { kind: 'fatal', message: 'Line too long' }, end: pos }
      if (pos >= b.length) return more()
      const c = b[pos]
      if (c === CR || c === LF) {
        if (c === CR) {
          if (pos + 1 >= b.length) return more()
          if (b[pos + 1] !== LF) return this.refuse(pos, { kind: 'error', message: 'Bare CR in command' })
        }
        const end = pos + (c === CR ? 2 : 1)
        if (name === null) return { done: true, value: { kind: 'error', message: 'Empty command' }, end }
        return { done: true, value: { kind: 'command', name, args }, end }
      }
      if (name !== null && args.length >= COMMAND_ARGS_MAX) return this.refuse(pos, { kind: 'error', message: 'Too many arguments' })
      if (c === DQUOTE) {
        const parts: number[] = []
        let i = pos + 1
        let closed = false
        while (i < b.length) {
          const d = b[i]
          if (d === DQUOTE) { closed = true; break }
          if (d === CR || d === LF) return this.refuse(i, { kind: 'error', message: 'Line break in a quoted string' })
          if (d === BACKSLASH) {
            if (i + 1 >= b.length) break
            const e = b[i + 1]
            if (e !== DQUOTE && e !== BACKSLASH) return this.refuse(i, { kind: 'error', message: 'Bad escape in a quoted string' })
            parts.push(e)
            i += 2
            continue
          }
          parts.push(d)
          if (parts.length > QUOTED_BYTES_MAX) return this.refuse(i, { kind: 'error', message: 'Quoted string too long (use a literal)' })
          i++
        }
        if (!closed) return more()
        if (name === null && !this.bareString) return this.refuse(i, { kind: 'error', message: 'Command name expected' })
        name ??= ''
        args.push({ type: 'string', value: Buffer.from(parts) })
        pos = i + 1
        continue
      }
      if (c === 0x7b) { // '{': a literal, {n+} or {n}
        const close = b.indexOf(0x7d, pos)
        if (close === -1) {
          if (b.length - pos > 16) return this.refuse(pos, { kind: 'error', message: 'Bad literal' })
          return more()
        }
        const m = /^\{(\d{1,12})(\+?)\}$/.exec(b.subarray(pos, close + 1).toString('latin1'))
        if (m === null || (name === null && !this.bareString)) return this.refuse(pos, { kind: 'error', message: 'Bad literal' })
        name ??= ''
        let body = close + 1
        if (body + 1 >= b.length + 1) return more()
        if (b[body] === CR) {
          if (body + 1 >= b.length) return more()
          if (b[body + 1] !== LF) return this.refuse(pos, { kind: 'error', message: 'Bad literal' })
          body += 2
        } else if (b[body] === LF) {
          body += 1
        } else {
          return this.refuse(pos, { kind: 'error', message: 'Bad literal' })
        }
        const size = Number(m[1])
        if (size > LITERAL_BYTES_MAX) {
          if (size > LITERAL_DISCARD_BYTES_MAX) return { done: true, value: { kind: 'fatal', message: 'Literal too large' }, end: body }
          // the client sends it anyway ({n+}): read and drop it, then refuse the command
          const have = b.length - body
          if (have >= size) {
            this.buf = b.subarray(body + size)
          } else {
            this.buf = Buffer.alloc(0)
            this.skipBytes = size - have
          }
          this.skipLine = true
          this.pending = { kind: 'error', code: 'QUOTA/MAXSIZE', message: `Literal larger than ${LITERAL_BYTES_MAX} bytes` }
          const p = this.take()
          return p === null ? { done: false } : { done: true, value: p, end: -1 }
        }
        if (b.length < body + size) return { done: false, need: body + size }
        args.push({ type: 'string', value: b.subarray(body, body + size) })
        pos = body + size
        lineStart = pos
        continue
      }
      // an atom (the command name) or a number
      let i = pos
      while (i < b.length && isAtomChar(b[i])) i++
      if (i === b.length) return more()
      if (i === pos || (b[i] !== SP && b[i] !== CR && b[i] !== LF)) return this.refuse(pos, { kind: 'error', message: 'Unexpected character' })
      const word = b.subarray(pos, i).toString('latin1')
      if (name === null) {
        name = word.toUpperCase()
      } else if (/^\d{1,15}$/.test(word)) {
        args.push({ type: 'number', value: Number(word) })
      } else {
        args.push({ type: 'atom', value: word })
      }
      pos = i
    }
  }
}

// ---- answers ----------------------------------------------------------------------------------------------

/** A string as RFC 5804 4 lets a server send it: quoted when it can be, a literal {n} otherwise. */
export function sieveString (s: string | Buffer): string {
  const buf = typeof s === 'string' ? Buffer.from(s) : s
  const text = buf.toString('utf8')
  if (buf.length <= QUOTED_BYTES_MAX && !/[\r\n\0]/.test(text)) return `"${text.replace(/[\\"]/g, m => '\\' + m)}"`
  return `{${buf.length}}\r\n${text}`
}

/** OK / NO / BYE [(CODE)] ["text"] CRLF */
export function answer (kind: 'OK' | 'NO' | 'BYE', text?: string, code?: string): string {
  return `${kind}${code !== undefined ? ` (${code})` : ''}${text !== undefined ? ` ${sieveString(text)}` : ''}\r\n`
}

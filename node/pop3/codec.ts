// The POP3 wire codec: reading command lines with a length limit, parsing a command into keyword and
// arguments, and writing multi-line responses (byte-stuffing, termination, TOP's header/line cut). No I/O:
// the server feeds it bytes and sends what it returns. Everything is resumable and works chunk by chunk, so a
// message of any size passes through in bounded memory.

const LF = 0x0a
const CR = 0x0d
const DOT = 0x2e
const CRLF = Buffer.from('\r\n')
const DOT_BUF = Buffer.from('.')
const CR_BUF = Buffer.from('\r')

export type LineResult =
  | { type: 'line', line: Buffer } // without its CRLF (or bare LF)
  | { type: 'overlong' } // a line over the limit; its bytes up to the next LF are thrown away
  | { type: 'flood' } // more than discardMax bytes without a LF after an overlong line: not POP3

/**
 * Splits input into lines. Pull-based: `take(maxBytes)` returns the next complete line under that limit, so the
 * caller can use a different limit for the next line (a SASL response) even when bytes already arrived.
 */
export class LineReader {
  private buf: Buffer = Buffer.alloc(0)
  private discarding = false
  private discarded = 0
  private readonly discardMax: number

  constructor (discardMax: number) {
    this.discardMax = discardMax
  }

  /** Bytes held, waiting to be taken. */
  get buffered (): number {
    return this.buf.length
  }

  push (chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
  }

  /** Drops everything buffered (RFC 2595 3.1: nothing sent before the TLS handshake may be acted on after it). */
  clear (): void {
    this.buf = Buffer.alloc(0)
    this.discarding = false
    this.discarded = 0
  }

  /** The next line, or null when more bytes are needed. `maxBytes` counts the line terminator too. */
  take (maxBytes: number): LineResult | null {
    if (this.discarding) {
      const nl = this.buf.indexOf(LF)
      if (nl === -1) {
        this.discarded += this.buf.length
        this.buf = Buffer.alloc(0)
        return this.discarded > this.discardMax ? { type: 'flood' } : null
      }
      this.discarding = false
      this.discarded = 0
      this.buf = this.buf.subarray(nl + 1)
    }
    const nl = this.buf.indexOf(LF)
    if (nl === -1) {
      if (this.buf.length < maxBytes) return null
      this.discarding = true
      this.discarded = this.buf.length
      this.buf = Buffer.alloc(0)
      return { type: 'overlong' }
    }
    const line = this.buf.subarray(0, nl > 0 && this.buf[nl - 1] === CR ? nl - 1 : nl)
    this.buf = this.buf.subarray(nl + 1)
    if (nl + 1 > maxBytes) return { type: 'overlong' }
    // Copy: the caller may keep the line while the reader's buffer is reused
    return { type: 'line', line: Buffer.from(line) }
  }

  /** Everything buffered, unparsed, and the reader emptied (a forwarded session hands it on as it came). */
  takeAll (): Buffer {
    const rest = this.discarding ? Buffer.alloc(0) : this.buf
    this.clear()
    return rest
  }
}

export interface Command {
  keyword: string // upper case
  args: string[] // split on single spaces; see `rest` for PASS
  rest: string // everything after the keyword and one space, unsplit
}

/**
 * RFC 1939 section 3: a keyword of three or four printable characters, then arguments separated by single
 * spaces. Returns null for a line that is not a command at all (control bytes, NUL, no keyword).
 */
export function parseCommand (line: Buffer): Command | null {
  // Commands are ASCII; user names and passwords may be UTF-8 (RFC 6856 lets UTF8 mode carry them)
  if (line.includes(0)) return null
  const text = line.toString('utf8')
  if (/[\x00-\x08\x0a-\x1f\x7f]/.test(text)) return null
  const m = /^([A-Za-z]{3,4})(?: (.*))?$/s.exec(text)
  if (m === null) return null
  const rest = m[2] ?? ''
  const trimmed = rest.replace(/^[ \t]+|[ \t]+$/g, '')
  return { keyword: m[1].toUpperCase(), args: trimmed === '' ? [] : trimmed.split(/ +/), rest }
}

/** A message number or line count: decimal digits only, no sign, bounded (RFC 1939 section 3). */
export function parseNumber (arg: string | undefined): number | null {
  if (arg === undefined || !/^[0-9]{1,9}$/.test(arg)) return null
  return Number(arg)
}

/** Status line text must stay on one line whatever a caller passes in. */
function oneLine (text: string): string {
  return text.replace(/[\r\n]+/g, ' ')
}

export function ok (text: string): string {
  return text === '' ? '+OK\r\n' : `+OK ${oneLine(text)}\r\n`
}

/** RFC 2449 section 8: an extended response code in square brackets right after -ERR. */
export function err (text: string, code?: string | null): string {
  return `-ERR ${code != null ? `[${code}] ` : ''}${oneLine(text)}\r\n`
}

/** A whole multi-line response from short lines (CAPA, LIST, UIDL): stuffed and terminated. */
export function multiline (first: string, lines: string[]): string {
  return first + lines.map(l => (l.startsWith('.') ? '.' : '') + oneLine(l) + '\r\n').join('') + '.\r\n'
}

/**
 * Byte-stuffs a message for a multi-line response (RFC 1939 section 3): a line that starts with '.' gets
 * another '.' in front. Lines ending in a bare LF are sent with CRLF, since the protocol's lines end in CRLF.
 * State carries across chunks, so a '.' or a CR/LF pair split between two chunks is handled alike.
 */
export class DotStuffer {
  private atLineStart = true
  private lastWasCR = false

  push (chunk: Buffer): Buffer {
    if (this.clean(chunk)) return chunk
    const parts: Buffer[] = []
    let segStart = 0
    let pos = 0
    const len = chunk.length
    while (pos < len) {
      if (this.atLineStart && chunk[pos] === DOT) {
        parts.push(chunk.subarray(segStart, pos), DOT_BUF)
        segStart = pos
      }
      const nl = chunk.indexOf(LF, pos)
      if (nl === -1) {
        this.atLineStart = false
        this.lastWasCR = chunk[len - 1] === CR
        break
      }
      const before = nl > pos ? chunk[nl - 1] === CR : nl > 0 ? false : this.lastWasCR
      if (!before) {
        parts.push(chunk.subarray(segStart, nl), CR_BUF)
        segStart = nl
      }
      pos = nl + 1
      this.atLineStart = true
      this.lastWasCR = false
    }
    if (parts.length === 0) return chunk
    parts.push(chunk.subarray(segStart))
    return Buffer.concat(parts)
  }

  /**
   * The common case, decided with string searches (no crossing into native code per line, which profiles of
   * RETR showed as a tenth of the time): no line starts with '.' and every LF follows a CR. Then the chunk goes
   * out as it is, and only the state at its end is kept.
   */
  private clean (chunk: Buffer): boolean {
    const len = chunk.length
    if (len === 0) return true
    if (this.atLineStart && chunk[0] === DOT) return false
    const s = chunk.toString('latin1')
    if (s.includes('\n.')) return false
    for (let nl = s.indexOf('\n'); nl !== -1; nl = s.indexOf('\n', nl + 1)) {
      if (nl === 0 ? !this.lastWasCR : s.charCodeAt(nl - 1) !== CR) return false
    }
    this.atLineStart = chunk[len - 1] === LF
    this.lastWasCR = chunk[len - 1] === CR
    return true
  }

  /** Completes a last line without a line end, then the terminating ".CRLF". */
  end (): Buffer {
    const tail = this.atLineStart ? '' : this.lastWasCR ? '\n' : '\r\n'
    this.atLineStart = true
    this.lastWasCR = false
    return Buffer.from(tail + '.\r\n')
  }
}

/**
 * TOP (RFC 1939 section 7): the header, the blank line after it, then `lines` lines of the body. Fed the
 * message chunk by chunk, returns the part of each chunk to send; `done` turns true once nothing more is due,
 * so the caller can stop reading the message.
 */
export class TopFilter {
  private inBody = false
  private bodyLines = 0
  private lineBytes = 0 // bytes of the current line so far, its terminator excluded
  private lastWasCR = false
  private readonly lines: number
  done = false

  constructor (lines: number) {
    this.lines = lines
    if (lines < 0) throw new RangeError('lines must be >= 0')
  }

  push (chunk: Buffer): Buffer {
    if (this.done) return chunk.subarray(0, 0)
    let pos = 0
    while (pos < chunk.length) {
      if (this.inBody && this.bodyLines >= this.lines) {
        this.done = true
        return chunk.subarray(0, pos)
      }
      const nl = chunk.indexOf(LF, pos)
      if (nl === -1) {
        this.lineBytes += chunk.length - pos
        this.lastWasCR = chunk[chunk.length - 1] === CR
        return chunk
      }
      const crBefore = nl > pos ? chunk[nl - 1] === CR : this.lastWasCR
      const content = this.lineBytes + (nl - pos) - (crBefore ? 1 : 0)
      if (this.inBody) this.bodyLines++
      else if (content === 0) this.inBody = true // the blank line that ends the header
      this.lineBytes = 0
      this.lastWasCR = false
      pos = nl + 1
    }
    if (this.inBody && this.bodyLines >= this.lines) this.done = true
    return chunk
  }
}

export { CRLF }

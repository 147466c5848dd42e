/**
 * Response compiler (server → client). Builds response lines from typed values and chooses the
 * wire form of each string: atom, quoted or literal (RFC 3501 section 4.3). Large bodies stay
 * streams: a compiled response is a list of Buffers and stream parts that the connection writes
 * in order with backpressure, so FETCH BODY[] never holds a message in memory.
 */
import { QUOTED_BYTES_MAX } from './constants.ts'

/** A literal whose bytes come from a stream. `size` is announced first and must match. */
export interface StreamLiteral {
  type: 'stream'
  size: number
  binary: boolean
  open: () => AsyncIterable<Uint8Array>
}

export type Value =
  /** Written as is: flags, keywords, response names, fetch item names like BODY[1.2]<0>. */
  | { type: 'atom', value: string }
  | { type: 'number', value: number | bigint }
  /** A string: quoted when it can be, literal when it must be. */
  | { type: 'string', value: string | Buffer }
  /** Always a literal; `binary` makes it literal8 `~{n}` (RFC 3516). */
  | { type: 'literal', value: Buffer, binary?: boolean }
  | StreamLiteral
  | { type: 'list', items: Value[] }
  /** NIL */
  | null

export const atom = (value: string): Value => ({ type: 'atom', value })
export const num = (value: number | bigint): Value => ({ type: 'number', value })
export const str = (value: string | Buffer): Value => ({ type: 'string', value })
export const nstr = (value: string | Buffer | null | undefined): Value =>
  value === null || value === undefined ? null : { type: 'string', value }
export const list = (items: Value[]): Value => ({ type: 'list', items })

export type Part = Buffer | StreamLiteral

export interface CompileOptions {
  /** UTF-8 may appear in quoted strings (UTF8=ACCEPT enabled, RFC 6855 section 3; IMAP4rev2). */
  utf8: boolean
}

/**
 * Bytes at least this long (a message body) stay a part of their own instead of being copied into the text
 * around them: the connection writes the parts of a response together (one writev), so the copy saved nothing.
 */
export const OWN_PART_BYTES_MIN = 4096

/** Accumulates text into Buffers and keeps stream literals (and large byte strings) as separate parts. */
class Builder {
  parts: Part[] = []
  #text: Buffer[] = []
  #pending = ''

  text (value: string): void {
    this.#pending += value
  }

  bytes (value: Buffer): void {
    if (value.length >= OWN_PART_BYTES_MIN) {
      this.#flushText()
      this.parts.push(value)
      return
    }
    this.#flushPending()
    this.#text.push(value)
  }

  stream (literal: StreamLiteral): void {
    this.#flushText()
    this.parts.push(literal)
  }

  finish (): Part[] {
    this.#flushText()
    return this.parts
  }

  #flushPending (): void {
    if (this.#pending.length > 0) {
      this.#text.push(Buffer.from(this.#pending, 'utf8'))
      this.#pending = ''
    }
  }

  #flushText (): void {
    this.#flushPending()
    if (this.#text.length > 0) {
      this.parts.push(this.#text.length === 1 ? this.#text[0]! : Buffer.concat(this.#text))
      this.#text = []
    }
  }
}

/** Whether bytes can go in a quoted string: no NUL/CR/LF, 8-bit only if UTF-8 is allowed. */
function quotable (bytes: Buffer, utf8: boolean): boolean {
  if (bytes.length > QUOTED_BYTES_MAX) return false
  for (const byte of bytes) {
    if (byte === 0 || byte === 0x0a || byte === 0x0d) return false
    if (byte >= 0x80 && !utf8) return false
  }
  return true
}

function writeValue (builder: Builder, value: Value, options: CompileOptions): void {
  if (value === null) {
    builder.text('NIL')
    return
  }
  switch (value.type) {
    case 'atom':
      builder.text(value.value)
      return
    case 'number':
      builder.text(String(value.value))
      return
    case 'string': {
      const bytes = typeof value.value === 'string' ? Buffer.from(value.value, 'utf8') : value.value
      if (quotable(bytes, options.utf8)) {
        builder.text('"')
        builder.bytes(Buffer.from(bytes.toString(options.utf8 ? 'utf8' : 'latin1').replace(/["\\]/g, '\\$&'), options.utf8 ? 'utf8' : 'latin1'))
        builder.text('"')
      } else {
        builder.text(`{${bytes.length}}\r\n`)
        builder.bytes(bytes)
      }
      return
    }
    case 'literal':
      builder.text(`${value.binary === true ? '~' : ''}{${value.value.length}}\r\n`)
      builder.bytes(value.value)
      return
    case 'stream':
      builder.text(`${value.binary ? '~' : ''}{${value.size}}\r\n`)
      builder.stream(value)
      return
    case 'list':
      builder.text('(')
      value.items.forEach((item, index) => {
        if (index > 0) builder.text(' ')
        writeValue(builder, item, options)
      })
      builder.text(')')
  }
}

/** `* 12 FETCH (...)`, `* LIST (...) "/" INBOX`: a tag (`*` or `+`) and values separated by SP. */
export function compileData (tag: string, values: Value[], options: CompileOptions): Part[] {
  const builder = new Builder()
  builder.text(tag)
  for (const value of values) {
    builder.text(' ')
    writeValue(builder, value, options)
  }
  builder.text('\r\n')
  return builder.finish()
}

/**
 * A status response: `tag OK [CODE args] text`. Text is resp-text: CR and LF are replaced so a
 * message from anywhere can never end the line early, and `[` never starts it (RFC 3501 section 9).
 */
export function compileStatus (
  tag: string,
  status: 'OK' | 'NO' | 'BAD' | 'BYE' | 'PREAUTH',
  text: string,
  code?: { name: string, args?: Value[] },
  options: CompileOptions = { utf8: false }
): Buffer {
  const builder = new Builder()
  builder.text(`${tag} ${status} `)
  if (code !== undefined) {
    builder.text(`[${code.name}`)
    for (const arg of code.args ?? []) {
      builder.text(' ')
      writeValue(builder, arg, options)
    }
    builder.text('] ')
  }
  builder.text(safeText(text, code === undefined))
  builder.text('\r\n')
  const parts = builder.finish()
  return parts.length === 1 ? parts[0] as Buffer : Buffer.concat(parts as Buffer[])
}

/** A continuation request `+ text` (RFC 3501 section 7.5). */
export function compileContinuation (text: string): Buffer {
  return Buffer.from(`+ ${safeText(text, true)}\r\n`, 'utf8')
}

function safeText (text: string, guardBracket: boolean): string {
  let clean = text.replace(/[\r\n\0]+/g, ' ')
  if (clean.length === 0) clean = 'OK'
  if (guardBracket && clean.startsWith('[')) clean = ' ' + clean
  return clean
}

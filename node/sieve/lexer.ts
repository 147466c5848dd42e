// Tokens of RFC 5228 section 8.1, read from the UTF-8 bytes of a script. Every token carries its byte offset,
// line and column; a lexical error is thrown as LexError at the exact byte that is wrong. No regular
// expression touches the source: one pass over bytes.

import type { Pos } from './ast.ts'

export type TokenKind = 'identifier' | 'tag' | 'number' | 'string' | 'punct' | 'eof'

export interface Token {
  kind: TokenKind
  text: string // identifier/tag name (lower-cased), the punctuation character, or a string's value
  value: number // numbers
  multiline: boolean // strings
  pos: Pos
}

export class LexError extends Error {
  readonly pos: Pos
  constructor (message: string, pos: Pos) {
    super(message)
    this.pos = pos
  }
}

const CRLF = Buffer.from('\r\n')
const NUMBER_MAX = Number.MAX_SAFE_INTEGER // RFC 5228 2.4.1 asks for at least 2^31; larger is refused, not wrapped

function isAlpha (c: number): boolean { return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) }
function isDigit (c: number): boolean { return c >= 0x30 && c <= 0x39 }
function isIdentChar (c: number): boolean { return isAlpha(c) || isDigit(c) || c === 0x5f }

function describeByte (c: number): string {
  if (c >= 0x21 && c < 0x7f) return `'${String.fromCharCode(c)}'`
  return `byte 0x${c.toString(16).padStart(2, '0')}`
}

export class Lexer {
  private readonly src: Buffer
  private pos = 0
  private line = 1
  private lineStart = 0

  constructor (src: Buffer) {
    this.src = src
  }

  position (at = this.pos): Pos {
    return { offset: at, line: this.line, column: at - this.lineStart + 1 }
  }

  private fail (message: string, at = this.pos): never {
    throw new LexError(message, this.position(at))
  }

  private newline (after: number): void {
    this.line++
    this.lineStart = after
  }

  /** Skips white space and comments (RFC 5228 2.3). */
  private skip (): void {
    const s = this.src
    while (this.pos < s.length) {
      const c = s[this.pos]
      if (c === 0x20 || c === 0x09 || c === 0x0d) {
        this.pos++
      } else if (c === 0x0a) {
        this.pos++
        this.newline(this.pos)
      } else if (c === 0x23) { // '#' to the end of the line
        const nl = s.indexOf(0x0a, this.pos)
        this.pos = nl === -1 ? s.length : nl
      } else if (c === 0x2f && s[this.pos + 1] === 0x2a) { // '/*' ... '*/', not nested
        const start = this.position()
        let i = this.pos + 2
        for (;;) {
          if (i >= s.length) throw new LexError('unterminated comment: "/*" without "*/"', start)
          const d = s[i]
          if (d === 0x0a) this.newline(i + 1)
          else if (d === 0x2a && s[i + 1] === 0x2f) { i += 2; break }
          i++
        }
        this.pos = i
      } else {
        return
      }
    }
  }

  next (): Token {
    this.skip()
    const s = this.src
    const start = this.position()
    if (this.pos >= s.length) return { kind: 'eof', text: '', value: 0, multiline: false, pos: start }
    const c = s[this.pos]
    if ('[](){},;'.includes(String.fromCharCode(c))) {
      this.pos++
      return { kind: 'punct', text: String.fromCharCode(c), value: 0, multiline: false, pos: start }
    }
    if (c === 0x22) return this.quoted(start)
    if (isDigit(c)) return this.number(start)
    if (c === 0x3a) {
      this.pos++
      if (this.pos >= s.length || !(isAlpha(s[this.pos]) || s[this.pos] === 0x5f)) this.fail('a tag is ":" followed by a name', start.offset)
      const name = this.identifier()
      return { kind: 'tag', text: name, value: 0, multiline: false, pos: start }
    }
    if (isAlpha(c) || c === 0x5f) {
      const name = this.identifier()
      if (name === 'text' && s[this.pos] === 0x3a) return this.multiline(start)
      return { kind: 'identifier', text: name, value: 0, multiline: false, pos: start }
    }
    return this.fail(`unexpected ${describeByte(c)}`)
  }

  private identifier (): string {
    const s = this.src
    const from = this.pos
    while (this.pos < s.length && isIdentChar(s[this.pos])) this.pos++
    return s.toString('latin1', from, this.pos).toLowerCase()
  }

  private number (start: Pos): Token {
    const s = this.src
    let v = 0
    while (this.pos < s.length && isDigit(s[this.pos])) {
      v = v * 10 + (s[this.pos] - 0x30)
      if (v > NUMBER_MAX) this.fail(`number too large (the limit is ${NUMBER_MAX})`, start.offset)
      this.pos++
    }
    const q = s[this.pos] | 0x20 // RFC 5228 2.4.1: K, M, G (ABNF strings are case-insensitive)
    if (this.pos < s.length && (q === 0x6b || q === 0x6d || q === 0x67)) {
      v *= q === 0x6b ? 1024 : q === 0x6d ? 1024 * 1024 : 1024 * 1024 * 1024
      if (v > NUMBER_MAX) this.fail(`number too large (the limit is ${NUMBER_MAX})`, start.offset)
      this.pos++
    }
    if (this.pos < s.length && isIdentChar(s[this.pos])) this.fail(`unexpected ${describeByte(s[this.pos])} after a number`)
    return { kind: 'number', text: '', value: v, multiline: false, pos: start }
  }

  /** RFC 5228 2.4.2: `\"` and `\\`; any other escaped character stands for itself. */
  private quoted (start: Pos): Token {
    const s = this.src
    const parts: Buffer[] = []
    let from = ++this.pos
    for (;;) {
      if (this.pos >= s.length) throw new LexError('unterminated string: no closing \'"\'', start)
      const c = s[this.pos]
      if (c === 0x22) break
      if (c === 0x00) this.fail('NUL is not allowed in a string')
      if (c === 0x5c) {
        parts.push(s.subarray(from, this.pos))
        this.pos++
        if (this.pos >= s.length) throw new LexError('unterminated string: no closing \'"\'', start)
        from = this.pos
        if (s[this.pos] === 0x0a) this.newline(this.pos + 1)
        this.pos++
        continue
      }
      if (c === 0x0a) this.newline(this.pos + 1)
      this.pos++
    }
    parts.push(s.subarray(from, this.pos))
    this.pos++
    return { kind: 'string', text: Buffer.concat(parts).toString('utf8'), value: 0, multiline: false, pos: start }
  }

  /** RFC 5228 2.4.2: `text:` [blanks] [comment] CRLF, lines, then a line holding a single '.'; a leading '.'
   * of a line is removed (dot-stuffing). Bare LF line ends are accepted like CRLF. */
  private multiline (start: Pos): Token {
    const s = this.src
    this.pos++ // ':'
    while (this.pos < s.length && (s[this.pos] === 0x20 || s[this.pos] === 0x09)) this.pos++
    if (s[this.pos] === 0x23) {
      const nl = s.indexOf(0x0a, this.pos)
      this.pos = nl === -1 ? s.length : nl
    } else if (s[this.pos] === 0x0d && s[this.pos + 1] === 0x0a) {
      this.pos++
    }
    if (this.pos >= s.length || s[this.pos] !== 0x0a) this.fail('"text:" must be followed by the end of the line')
    this.pos++
    this.newline(this.pos)
    const parts: Buffer[] = []
    for (;;) {
      if (this.pos >= s.length) throw new LexError('unterminated multi-line string: no line holding a single "."', start)
      const nl = s.indexOf(0x0a, this.pos)
      const lineEnd = nl === -1 ? s.length : nl + 1
      let body = this.pos
      if (s[body] === 0x2e) {
        const rest = s.subarray(body + 1, lineEnd)
        if (nl !== -1 && (rest.length === 1 || (rest.length === 2 && rest[0] === 0x0d))) {
          this.pos = lineEnd
          this.newline(this.pos)
          break
        }
        body++ // dot-stuffing
      }
      const nul = s.subarray(body, lineEnd).indexOf(0)
      if (nul !== -1) this.fail('NUL is not allowed in a string', body + nul)
      // Lines end in CRLF (RFC 5228 8.1 multi-line grammar); a bare LF of a script saved with Unix line ends is
      // read as CRLF, as Pigeonhole does, so a reason or vacation body has one kind of line end.
      if (nl !== -1 && (nl === body || s[nl - 1] !== 0x0d)) parts.push(s.subarray(body, nl), CRLF)
      else parts.push(s.subarray(body, lineEnd))
      this.pos = lineEnd
      if (nl === -1) throw new LexError('unterminated multi-line string: no line holding a single "."', start)
      this.newline(this.pos)
    }
    return { kind: 'string', text: Buffer.concat(parts).toString('utf8'), value: 0, multiline: true, pos: start }
  }
}

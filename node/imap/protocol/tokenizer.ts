/**
 * Turns one assembled command (its text segments and the literals between them) into a tag,
 * a command name and a token tree. Pure and synchronous; recursion is bounded by
 * NESTING_DEPTH_MAX and work by COMMAND_TOKENS_MAX, both checked before they are exceeded.
 *
 * Leniency: several spaces between tokens are accepted (Postel), everything else follows the
 * ABNF of RFC 3501 section 9 / RFC 9051 section 9.
 */
import { COMMAND_TOKENS_MAX, NESTING_DEPTH_MAX, TAG_BYTES_MAX } from './constants.ts'
import type { LiteralToken, PartialRange, Token } from './types.ts'

export class TokenizeError extends Error {
  readonly tag: string | null
  /** A response code: LIMIT when a limit of ours, not the grammar, refused the command (RFC 9051 section 7.1). */
  readonly code: string | undefined
  constructor (message: string, tag: string | null, code?: string) {
    super(message)
    this.tag = tag
    this.code = code
  }
}

const SP = 0x20
const QUOTE = 0x22
const BACKSLASH = 0x5c

/** Atoms after which `[` opens a section (RFC 3501 section 6.4.5, RFC 3516 section 4.1). */
const SECTION_ATOMS = new Set(['BODY', 'BODY.PEEK', 'BINARY', 'BINARY.PEEK', 'BINARY.SIZE'])
/**
 * The longest of them ('BINARY.PEEK'). Only a prefix this short is looked up at a `[`: looking up every prefix
 * made an atom of 64 KiB of `[` cost half a second of CPU before login (quadratic; found by test/fuzz).
 */
const SECTION_ATOM_BYTES_MAX = 11

/**
 * True for bytes that end an atom. RFC 3501 atom-specials are ( ) { SP CTL % * " \ ]; we accept
 * % * \ ] inside atoms because LIST patterns, flags (\Seen) and sequence sets (1:*) are read as
 * atoms here and checked by the command's own argument schema.
 */
function endsAtom (byte: number, inSection: boolean): boolean {
  return byte <= SP || byte === 0x7f || byte === 0x28 || byte === 0x29 || byte === QUOTE ||
    byte === 0x7b || (inSection && byte === 0x5d)
}

/** A tag is 1*<any ASTRING-CHAR except "+"> (RFC 3501 section 9). */
function isTagByte (byte: number): boolean {
  return byte > SP && byte < 0x7f && byte !== 0x28 && byte !== 0x29 && byte !== 0x7b &&
    byte !== 0x25 && byte !== 0x2a && byte !== QUOTE && byte !== BACKSLASH && byte !== 0x2b
}

/** Reads the tag from the start of a command's first segment; null if none can be read. */
export function readTag (text: Buffer): string | null {
  let end = 0
  while (end < text.length && end <= TAG_BYTES_MAX && text[end] !== SP) {
    if (!isTagByte(text[end]!)) return null
    end++
  }
  if (end === 0 || end > TAG_BYTES_MAX) return null
  return text.toString('latin1', 0, end)
}

class Cursor {
  readonly texts: Buffer[]
  readonly literals: LiteralToken[]
  readonly tag: string | null
  segment = 0
  pos = 0
  tokens = 0

  constructor (texts: Buffer[], literals: LiteralToken[], tag: string | null) {
    this.texts = texts
    this.literals = literals
    this.tag = tag
  }

  fail (message: string): never {
    throw new TokenizeError(message, this.tag)
  }

  /** A limit was reached: BAD [LIMIT]. */
  limit (message: string): never {
    throw new TokenizeError(message, this.tag, 'LIMIT')
  }

  /** The current byte, or -1 at the end of a text segment. */
  peek (): number {
    const text = this.texts[this.segment]!
    return this.pos < text.length ? text[this.pos]! : -1
  }

  /** The byte `offset` bytes ahead in this text segment, or -1 past its end. */
  peekAt (offset: number): number {
    const text = this.texts[this.segment]!
    return this.pos + offset < text.length ? text[this.pos + offset]! : -1
  }

  atSegmentEnd (): boolean {
    return this.pos >= this.texts[this.segment]!.length
  }

  atEnd (): boolean {
    return this.atSegmentEnd() && this.segment === this.texts.length - 1
  }

  /** At a segment end that is followed by a literal: returns it and moves past it. */
  takeLiteral (): LiteralToken {
    const literal = this.literals[this.segment]!
    this.segment++
    this.pos = 0
    return literal
  }

  count (): void {
    if (++this.tokens > COMMAND_TOKENS_MAX) this.limit('Too many tokens in command')
  }
}

export function tokenize (texts: Buffer[], literals: LiteralToken[]): { tag: string, name: string, args: Token[] } {
  const first = texts[0]!
  const tag = readTag(first)
  if (tag === null) throw new TokenizeError(first.length === 0 ? 'Empty command line' : 'Invalid tag', null)
  const cursor = new Cursor(texts, literals, tag)
  cursor.pos = Buffer.byteLength(tag, 'latin1')
  if (cursor.peek() !== SP) cursor.fail('Missing command')
  cursor.pos++
  const start = cursor.pos
  while (!cursor.atSegmentEnd() && cursor.peek() !== SP) {
    const byte = cursor.peek()
    // Command names are atoms of letters (and digits in some extensions' names).
    if (!((byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a) || (byte >= 0x30 && byte <= 0x39))) {
      cursor.fail('Invalid command name')
    }
    cursor.pos++
  }
  if (cursor.pos === start) cursor.fail('Missing command')
  const name = first.toString('latin1', start, cursor.pos).toUpperCase()
  if (!cursor.atEnd() && cursor.atSegmentEnd()) {
    // `TAG CMD{5}`: a literal glued to the command name.
    cursor.fail('Missing space before literal')
  }
  const args = readItems(cursor, 0, -1)
  return { tag, name, args }
}

/** Reads tokens until `closer` (a byte, or -1 for the end of the command). */
function readItems (cursor: Cursor, depth: number, closer: number): Token[] {
  const items: Token[] = []
  for (;;) {
    let spaces = 0
    while (cursor.peek() === SP) { cursor.pos++; spaces++ }
    if (cursor.atEnd()) {
      if (closer !== -1) cursor.fail(closer === 0x29 ? 'Unterminated list' : 'Unterminated section')
      return items
    }
    if (cursor.atSegmentEnd()) {
      cursor.count()
      items.push(cursor.takeLiteral())
      continue
    }
    const byte = cursor.peek()
    if (byte === closer) {
      cursor.pos++
      return items
    }
    if (items.length > 0 && spaces === 0 && items[items.length - 1]!.type !== 'literal') {
      cursor.fail('Missing space between arguments')
    }
    if (closer === -1 && depth === 0 && items.length === 0 && spaces === 0) cursor.fail('Missing space after command')
    cursor.count()
    if (byte === 0x28) {
      if (depth + 1 > NESTING_DEPTH_MAX) cursor.limit('Too deeply nested')
      cursor.pos++
      items.push({ type: 'list', items: readItems(cursor, depth + 1, 0x29) })
    } else if (byte === 0x29 || (byte === 0x5d && closer === 0x5d)) {
      cursor.fail('Unexpected ' + String.fromCharCode(byte))
    } else if (byte === QUOTE) {
      items.push({ type: 'string', value: readQuoted(cursor) })
    } else if (byte === 0x7b || (byte === 0x7e && cursor.peekAt(1) === 0x7b)) {
      // RFC 3516 section 7: only `~{` opens a literal8; a lone `~` is an ATOM-CHAR (`SELECT ~foo`).
      cursor.fail('Literal must end the line')
    } else {
      items.push(readAtom(cursor, depth, closer === 0x5d))
    }
  }
}

function readQuoted (cursor: Cursor): string {
  const text = cursor.texts[cursor.segment]!
  cursor.pos++
  const bytes: number[] = []
  for (;;) {
    if (cursor.pos >= text.length) cursor.fail('Unterminated quoted string')
    const byte = text[cursor.pos++]!
    if (byte === QUOTE) break
    if (byte === BACKSLASH) {
      const escaped = cursor.pos < text.length ? text[cursor.pos++]! : -1
      // RFC 3501 section 9: only quoted-specials (" and \) may be escaped.
      if (escaped !== QUOTE && escaped !== BACKSLASH) cursor.fail('Invalid escape in quoted string')
      bytes.push(escaped)
    } else if (byte === 0 || byte === 0x0d || byte === 0x0a) {
      cursor.fail('Invalid character in quoted string')
    } else {
      bytes.push(byte)
    }
  }
  const decoded = Buffer.from(bytes).toString('utf8')
  if (decoded.includes('\uFFFD') && !Buffer.from(decoded, 'utf8').equals(Buffer.from(bytes))) {
    cursor.fail('Quoted string is not valid UTF-8')
  }
  return decoded
}

function readAtom (cursor: Cursor, depth: number, inSection: boolean): Token {
  const text = cursor.texts[cursor.segment]!
  const start = cursor.pos
  let eightBit = false
  while (cursor.pos < text.length) {
    const byte = text[cursor.pos]!
    if (byte === 0x5b && cursor.pos - start <= SECTION_ATOM_BYTES_MAX) {
      const value = text.toString('latin1', start, cursor.pos)
      if (SECTION_ATOMS.has(value.toUpperCase())) return readSection(cursor, value, depth)
    }
    if (endsAtom(byte, inSection)) break
    if (byte >= 0x80) eightBit = true
    cursor.pos++
  }
  if (cursor.pos === start) cursor.fail('Invalid character')
  if (!eightBit) return { type: 'atom', value: text.toString('latin1', start, cursor.pos) }
  // Atoms are ASCII (RFC 3501 section 9), but imaplib and others send UTF-8 search strings bare after
  // CHARSET UTF-8; we accept valid UTF-8 and let each argument reader decide (flags and mUTF-7 names refuse it).
  const bytes = text.subarray(start, cursor.pos)
  const value = bytes.toString('utf8')
  if (!Buffer.from(value, 'utf8').equals(bytes)) cursor.fail('8-bit character in atom is not UTF-8')
  return { type: 'atom', value }
}

/** `BODY[...]` and the optional `<partial>` after it. */
function readSection (cursor: Cursor, value: string, depth: number): Token {
  if (depth + 1 > NESTING_DEPTH_MAX) cursor.limit('Too deeply nested')
  cursor.pos++
  const section = readItems(cursor, depth + 1, 0x5d)
  const token: Token = { type: 'atom', value, section }
  if (cursor.peek() === 0x3c) {
    token.partial = readPartial(cursor)
  }
  const next = cursor.peek()
  if (next !== -1 && next !== SP && next !== 0x29) cursor.fail('Invalid character after section')
  return token
}

/** `<offset>` or `<offset.length>` with 32-bit numbers (RFC 3501 number / nz-number). */
function readPartial (cursor: Cursor): PartialRange {
  const text = cursor.texts[cursor.segment]!
  const close = text.indexOf(0x3e, cursor.pos)
  if (close === -1 || close - cursor.pos > 24) cursor.fail('Invalid partial range')
  const body = text.toString('latin1', cursor.pos + 1, close)
  cursor.pos = close + 1
  const match = /^(\d{1,10})(?:\.(\d{1,10}))?$/.exec(body)
  if (match === null) cursor.fail('Invalid partial range')
  const offset = Number(match[1])
  const length = match[2] === undefined ? undefined : Number(match[2])
  if (offset > 0xffffffff || (length !== undefined && (length === 0 || length > 0xffffffff))) {
    cursor.fail('Invalid partial range')
  }
  return length === undefined ? { offset } : { offset, length }
}

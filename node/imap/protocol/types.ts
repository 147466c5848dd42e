/**
 * The shapes the IMAP codec speaks: tokens of a parsed command, the parser's events, and the
 * values the response compiler writes. No I/O here and nothing from the store.
 */

/** A byte range of a fetch section: `<offset.length>` (RFC 3501 section 6.4.5). */
export interface PartialRange {
  offset: number
  /** Absent for `<offset>` alone, as in a FETCH response. */
  length?: number
}

/**
 * An atom. `BODY[...]<...>`-style atoms carry the tokens inside the brackets as `section`
 * (the section may hold a list, `HEADER.FIELDS (A B)`) and the partial range as `partial`.
 */
export interface AtomToken {
  type: 'atom'
  value: string
  section?: Token[]
  partial?: PartialRange
}

/** A quoted string, unescaped and decoded as UTF-8 (RFC 9051 and RFC 6855 allow UTF-8 in it). */
export interface StringToken {
  type: 'string'
  value: string
}

/**
 * A literal (`{n}`, `{n+}`) or literal8 (`~{n}`, RFC 3516). The bytes stay in bounded chunks;
 * nothing in the parser joins them into one buffer.
 */
export interface LiteralToken {
  type: 'literal'
  chunks: Buffer[]
  size: number
  binary: boolean
}

export interface ListToken {
  type: 'list'
  items: Token[]
}

export type Token = AtomToken | StringToken | LiteralToken | ListToken

export interface ParsedCommand {
  tag: string
  /** Upper-cased command name; `UID` commands keep their sub-command as the first argument. */
  name: string
  args: Token[]
  /** Bytes the command took on the wire, literals included. */
  bytes: number
}

/** What the parser wants the session to do next. */
export type ParserEvent =
  | { type: 'need' }
  /** A synchronising literal was announced: the server must answer `+ ` before the client sends it. */
  | { type: 'continue'; tag: string | null; size: number }
  | { type: 'command'; command: ParsedCommand }
  /** A line read in line mode (IDLE's DONE, an AUTHENTICATE response), CRLF removed. */
  | { type: 'line'; line: string }
  | ParserError

export interface ParserError {
  type: 'error'
  /** The tag when it could be read, else null (the reply is then untagged). */
  tag: string | null
  /** BAD for syntax, NO for a refusal such as a literal above APPENDLIMIT. */
  status: 'BAD' | 'NO'
  code?: string
  text: string
  /** The stream cannot be resynchronised: answer, then say BYE and close. */
  fatal: boolean
}

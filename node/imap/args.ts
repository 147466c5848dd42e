/**
 * Argument readers shared by command modules: each takes a token and returns a typed value or
 * throws ArgumentError (answered BAD). Grammar names follow RFC 3501 section 9.
 */
import { decodeMutf7 } from './protocol/mutf7.ts'
import { parseSequenceSet, SEQUENCE_RANGES_MAX } from './protocol/sequence.ts'
import type { SequenceRange } from './protocol/sequence.ts'
import type { ListToken, LiteralToken, Token } from './protocol/types.ts'
import { ArgumentError } from './errors.ts'
import { checkMailboxName } from '../../store/index.ts'

/** Longest mailbox name we accept, in UTF-8 bytes (bounds store keys; Dovecot uses 255 per level). */
export const MAILBOX_NAME_BYTES_MAX = 1024

/** Keywords and flags per message (bounds STORE and APPEND). */
export const FLAGS_MAX = 128

/** Longest keyword (RFC 3501 has no bound; Dovecot's practical limit is similar). */
export const FLAG_BYTES_MAX = 128

export function literalText (token: LiteralToken): string {
  return Buffer.concat(token.chunks, token.size).toString('utf8')
}

/** astring: atom, quoted string or literal. */
export function astring (token: Token | undefined, what = 'argument'): string {
  if (token === undefined) throw new ArgumentError(`Missing ${what}`)
  switch (token.type) {
    case 'atom':
      if (token.section !== undefined) throw new ArgumentError(`Invalid ${what}`)
      return token.value
    case 'string':
      return token.value
    case 'literal':
      return literalText(token)
    case 'list':
      throw new ArgumentError(`Invalid ${what}`)
  }
}

/** An atom, upper-cased (keywords of the protocol: FLAGS, UID, OR, ...). */
export function keyword (token: Token | undefined, what = 'argument'): string {
  if (token?.type !== 'atom' || token.section !== undefined) throw new ArgumentError(`Invalid ${what}`)
  return token.value.toUpperCase()
}

export function isNil (token: Token | undefined): boolean {
  return token?.type === 'atom' && token.value.toUpperCase() === 'NIL'
}

export function listOf (token: Token | undefined, what = 'list'): ListToken {
  if (token?.type !== 'list') throw new ArgumentError(`Expected ${what}`)
  return token
}

/** A 32-bit unsigned number (RFC 3501 `number`) or 63-bit mod-sequence (RFC 7162 `mod-sequence-value`). */
export function number (token: Token | undefined, what = 'number', max = 0xffffffff): number {
  if (token?.type !== 'atom' || !/^\d{1,20}$/.test(token.value)) throw new ArgumentError(`Invalid ${what}`)
  const value = Number(token.value)
  if (!Number.isSafeInteger(value) || value > max) throw new ArgumentError(`Invalid ${what}`)
  return value
}

export const MODSEQ_MAX = Number.MAX_SAFE_INTEGER

/**
 * A mailbox name, decoded from modified UTF-7 unless the client speaks UTF-8. INBOX is
 * case-insensitive (RFC 3501 section 5.1), so it is normalised here, once.
 */
export function mailboxName (token: Token | undefined, utf8: boolean): string {
  const raw = astring(token, 'mailbox name')
  // RFC 3629 3: invalid UTF-8 (overlong forms, stray bytes) is refused, not decoded to U+FFFD, so no two byte
  // strings name one mailbox (quoted strings are checked by the tokenizer, literals here)
  if (token?.type === 'literal' && !Buffer.from(raw, 'utf8').equals(Buffer.concat(token.chunks, token.size))) throw new ArgumentError('Mailbox name is not valid UTF-8')
  const name = utf8 ? raw : decodeMutf7(raw)
  if (name === null) throw new ArgumentError('Invalid modified UTF-7 in mailbox name')
  if (Buffer.byteLength(name) > MAILBOX_NAME_BYTES_MAX) throw new ArgumentError('Mailbox name too long', 'LIMIT')
  // RFC 3501 section 5.1: control characters have no place in names we would list back.
  if (/[\x00-\x1f\x7f]/.test(name)) throw new ArgumentError('Invalid character in mailbox name')
  return normaliseInbox(name)
}

/**
 * The code of a NO for a destination that does not exist. RFC 3501 section 6.3.11: [TRYCREATE] "unless it is
 * certain that the destination mailbox can not be created": a name no mailbox can have gets [CANNOT].
 */
export function missingMailboxCode (name: string): 'TRYCREATE' | 'CANNOT' {
  try {
    checkMailboxName(name)
    return 'TRYCREATE'
  } catch {
    return 'CANNOT'
  }
}

export function normaliseInbox (name: string): string {
  if (name.toUpperCase() === 'INBOX') return 'INBOX'
  if (name.slice(0, 6).toUpperCase() === 'INBOX/') return 'INBOX' + name.slice(5)
  return name
}

export type SequenceArg = SequenceRange[] | '$'

/** A sequence set, or `$` (the saved search result, RFC 5182). */
export function sequenceSet (token: Token | undefined): SequenceArg {
  if (token?.type !== 'atom') throw new ArgumentError('Invalid sequence set')
  if (token.value === '$') return '$'
  const ranges = parseSequenceSet(token.value)
  if (ranges === null && token.value.split(',').length > SEQUENCE_RANGES_MAX) throw new ArgumentError('Too many ranges in a sequence set', 'LIMIT')
  if (ranges === null) throw new ArgumentError('Invalid sequence set')
  return ranges
}

const SYSTEM_FLAGS = new Map(['\\Seen', '\\Answered', '\\Flagged', '\\Deleted', '\\Draft'].map((f) => [f.toLowerCase(), f]))

/**
 * A flag list for STORE and APPEND: system flags normalised in case, keywords kept as given.
 * \Recent cannot be set by clients (RFC 3501 section 2.3.2).
 */
export function flagList (token: Token | undefined): string[] {
  const items = token?.type === 'list' ? token.items : token === undefined ? [] : [token]
  if (items.length > FLAGS_MAX) throw new ArgumentError('Too many flags', 'LIMIT')
  const flags = new Set<string>()
  for (const item of items) {
    if (item.type !== 'atom' || item.section !== undefined) throw new ArgumentError('Invalid flag')
    const value = item.value
    if (value.length > FLAG_BYTES_MAX || /[(){%*"\]\x00-\x20\x7f-\uffff]/.test(value)) throw new ArgumentError('Invalid flag')
    if (value.startsWith('\\')) {
      const system = SYSTEM_FLAGS.get(value.toLowerCase())
      if (system === undefined) throw new ArgumentError(`Invalid system flag ${value}`)
      flags.add(system)
    } else {
      if (value.includes('\\')) throw new ArgumentError('Invalid flag')
      flags.add(value)
    }
  }
  return [...flags]
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']

/** date-time `"17-Jul-1996 02:44:25 -0700"` (RFC 3501 section 9), as ms since the epoch. */
export function dateTime (token: Token | undefined): number {
  const text = token?.type === 'string' ? token.value : null
  const match = text === null ? null : /^([ \d]?\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)$/.exec(text)
  if (match === null) throw new ArgumentError('Invalid date-time')
  const month = MONTHS.findIndex((m) => m.toLowerCase() === match[2]!.toLowerCase())
  if (month === -1) throw new ArgumentError('Invalid date-time')
  const offset = (match[7] === '-' ? -1 : 1) * (Number(match[8]) * 60 + Number(match[9])) * 60_000
  const utc = Date.UTC(Number(match[3]), month, Number(match[1]!.trim()), Number(match[4]), Number(match[5]), Number(match[6]))
  // a day, hour or minute out of range (31-Feb, 25:00) is invalid, not rolled over into the next month or day
  if (Number.isNaN(utc) || new Date(utc).getUTCDate() !== Number(match[1]!.trim()) || Number(match[4]) > 23 || Number(match[5]) > 59 || Number(match[6]) > 60) throw new ArgumentError('Invalid date-time')
  return utc - offset
}

/** date `1-Feb-1994` for SEARCH (RFC 3501 section 9), as the UTC day's start in ms. */
export function searchDate (token: Token | undefined): number {
  const text = token === undefined ? '' : astring(token, 'date')
  const match = /^(\d{1,2})-([A-Za-z]{3})-(\d{4})$/.exec(text)
  const month = match === null ? -1 : MONTHS.findIndex((m) => m.toLowerCase() === match[2]!.toLowerCase())
  if (match === null || month === -1) throw new ArgumentError('Invalid date')
  const day = Date.UTC(Number(match[3]), month, Number(match[1]))
  if (new Date(day).getUTCDate() !== Number(match[1])) throw new ArgumentError('Invalid date')
  return day
}

/** Formats an internal date as date-time, in UTC (RFC 3501 section 9). */
export function formatDateTime (ms: number): string {
  const d = new Date(ms)
  const pad = (n: number): string => String(n).padStart(2, '0')
  return `${pad(d.getUTCDate())}-${MONTHS[d.getUTCMonth()]}-${d.getUTCFullYear()} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000`
}

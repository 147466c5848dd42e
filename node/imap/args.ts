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

/** RFC 9394 partial-range: 1-based positions in a result, negative ones counted from its end; |first| ≤ |last|. */
export interface PartialPositions {
  first: number
  last: number
}

/**
 * RFC 9394 partial-range (its formal syntax): `n:m` (partial-range-first) or `-n:-m` (partial-range-last), nz-number ends
 * (no zero, no leading zero, at most 2^32-1, no `*`); "a range 500:400 is the same as 400:500". Shared by the SEARCH
 * and SORT return option and the FETCH modifier; anything else is BAD with the reason.
 */
export function partialRange (token: Token | undefined): PartialPositions {
  if (token === undefined) throw new ArgumentError('PARTIAL needs a range (n:m or -n:-m)')
  if (token.type !== 'atom' || token.section !== undefined) throw new ArgumentError('PARTIAL range must be an atom n:m or -n:-m')
  const text = token.value
  const shown = text.length > 32 ? `${text.slice(0, 32)}...` : text
  const m = /^(-?)(\d+):(-?)(\d+)$/.exec(text)
  if (m === null) throw new ArgumentError(`Invalid PARTIAL range ${shown}: expected n:m or -n:-m`)
  if (m[1] !== m[3]) throw new ArgumentError(`Invalid PARTIAL range ${shown}: both ends must be positive or both negative`)
  for (const digits of [m[2]!, m[4]!]) {
    if (/^0+$/.test(digits)) throw new ArgumentError(`Invalid PARTIAL range ${shown}: positions start at 1 (0 is not one)`)
    if (digits.startsWith('0')) throw new ArgumentError(`Invalid PARTIAL range ${shown}: leading zero`)
    if (digits.length > 10 || Number(digits) > 0xffffffff) throw new ArgumentError(`Invalid PARTIAL range ${shown}: a position is above 4294967295`)
  }
  const a = Number(m[2])
  const b = Number(m[4])
  const sign = m[1] === '-' ? -1 : 1
  return { first: sign * Math.min(a, b), last: sign * Math.max(a, b) }
}

/** The positions of a PARTIAL range within `count` results, as [start, end) indexes (clipped: beyond is empty). */
export function partialSlice (range: PartialPositions, count: number): [number, number] {
  if (range.first > 0) return [Math.min(count, range.first - 1), Math.min(count, range.last)]
  // -1 is the last result; -1:-3 the last three
  return [Math.max(0, count + range.last), Math.max(0, count + range.first + 1)]
}

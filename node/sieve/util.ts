// Small pieces shared by the validator and the interpreter: header names, addresses, time zones, dates.

import { normalizeAddress } from '../../store/address.ts'
import { MISSING_DOMAIN, MISSING_MAILBOX, parseAddressList } from '../../store/mime/index.ts'

// RFC 5293 section 4 lets an implementation refuse to add or delete fields. Received is trace information that
// RFC 5321 4.4 forbids removing; Auto-Submitted is what RFC 3834 loop prevention reads. Both stay as they are.
const PROTECTED_HEADERS = new Set(['received', 'auto-submitted'])

export function isProtectedHeader (name: string): boolean {
  return PROTECTED_HEADERS.has(name.toLowerCase())
}

// RFC 5228 5.1: the address test is restricted to fields that hold addresses; this is the list Pigeonhole allows
// (checked against Debian's sievec), so a script that one accepts the other accepts too.
const ADDRESS_HEADERS = new Set(['from', 'sender', 'reply-to', 'to', 'cc', 'bcc', 'resent-from', 'resent-sender', 'resent-to',
  'resent-cc', 'resent-bcc', 'resent-reply-to', 'delivered-to', 'x-original-to', 'errors-to', 'mail-followup-to', 'mail-reply-to',
  'apparently-to', 'x-beenthere'])

export function isAddressHeader (name: string): boolean {
  return ADDRESS_HEADERS.has(name.toLowerCase())
}

/** RFC 5322 3.6.8 field-name: printable US-ASCII except ':' (1 to 998 characters). */
export function validFieldName (name: string): boolean {
  return name.length > 0 && name.length <= 998 && /^[\x21-\x39\x3b-\x7e]+$/.test(name)
}

/** The address of a redirect (RFC 5228 4.2: an RFC 5322 address; "Joe <joe@example.org>" and a comment are
 * accepted and reduced to the addr-spec, as Pigeonhole does), or null. */
export function validRedirectAddress (s: string): string | null {
  let a = s.trim()
  if (a.startsWith('<') && a.endsWith('>')) a = a.slice(1, -1).trim()
  if (normalizeAddress(a) !== null) return a
  const list = parseAddressList(s)
  if (list === null || list.length !== 1) return null
  const { mailbox, host } = list[0]
  if (mailbox === null || host === null || mailbox === MISSING_MAILBOX || host === MISSING_DOMAIN) return null
  const spec = `${mailbox}@${host}`
  return normalizeAddress(spec) === null ? null : spec
}

/** An RFC 5322 mailbox, with or without a display name ("Me <me@example.com>"): vacation's :from and :addresses. */
export function validSender (s: string): boolean {
  const list = parseAddressList(s)
  return list !== null && list.length === 1 && list[0].host !== null && list[0].host !== MISSING_DOMAIN && list[0].mailbox !== null && list[0].mailbox !== MISSING_MAILBOX
}

/** "+hhmm" / "-hhmm" (RFC 5260 4.1). */
export function validZone (z: string): boolean {
  return /^[+-](?:[01][0-9]|2[0-3])[0-5][0-9]$/.test(z)
}

/** Minutes east of UTC of a "+hhmm" zone. */
export function zoneMinutes (z: string): number {
  const sign = z[0] === '-' ? -1 : 1
  return sign * (Number(z.slice(1, 3)) * 60 + Number(z.slice(3, 5)))
}

export function formatZone (minutes: number): string {
  const m = Math.abs(minutes)
  return `${minutes < 0 ? '-' : '+'}${String(Math.floor(m / 60)).padStart(2, '0')}${String(m % 60).padStart(2, '0')}`
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec']
// RFC 5322 4.3 obsolete zones
const OBS_ZONES: Record<string, number> = { ut: 0, gmt: 0, z: 0, est: -300, edt: -240, cst: -360, cdt: -300, mst: -420, mdt: -360, pst: -480, pdt: -420 }

/** An RFC 5322 date-time (with the obsolete forms of section 4.3), or null: the instant and its written zone. */
export function parseMailDate (value: string): { ms: number, zone: number } | null {
  let v = value
  if (v.length > 256) v = v.slice(0, 256)
  v = v.replace(/\([^()]*\)/g, ' ').trim()
  const m = /^(?:[A-Za-z]{3,},?\s*)?(\d{1,2})\s+([A-Za-z]{3})[A-Za-z]*\.?\s+(\d{2,4})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([+-]\d{4}|[A-Za-z]{1,5})?/.exec(v)
  if (m === null) return null
  const day = Number(m[1])
  const month = MONTHS.indexOf(m[2].toLowerCase())
  let year = Number(m[3])
  if (m[3].length === 2) year += year < 50 ? 2000 : 1900 // RFC 5322 4.3
  else if (m[3].length === 3) year += 1900
  const hour = Number(m[4])
  const minute = Number(m[5])
  const second = m[6] === undefined ? 0 : Number(m[6])
  if (month < 0 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return null
  let zone = 0
  if (m[7] !== undefined) {
    if (/^[+-]\d{4}$/.test(m[7])) {
      if (Number(m[7].slice(3)) > 59) return null
      zone = zoneMinutes(m[7])
    } else {
      zone = OBS_ZONES[m[7].toLowerCase()] ?? 0 // RFC 5322 4.3: other military zones read as -0000
    }
  }
  const ms = Date.UTC(year, month, day, hour, minute, Math.min(second, 59)) - zone * 60_000
  if (!Number.isFinite(ms)) return null
  return { ms, zone }
}

const pad = (n: number, w = 2): string => String(n).padStart(w, '0')
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat']
const MONTH_NAMES = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']

/** A date part of RFC 5260 4.2 for the instant `ms` seen in zone `zone` (minutes east of UTC). */
export function datePart (ms: number, zone: number, part: string): string | null {
  const d = new Date(ms + zone * 60_000)
  const Y = pad(d.getUTCFullYear(), 4)
  const M = pad(d.getUTCMonth() + 1)
  const D = pad(d.getUTCDate())
  const h = pad(d.getUTCHours())
  const m = pad(d.getUTCMinutes())
  const s = pad(d.getUTCSeconds())
  const z = formatZone(zone)
  switch (part.toLowerCase()) {
    case 'year': return Y
    case 'month': return M
    case 'day': return D
    case 'date': return `${Y}-${M}-${D}`
    case 'julian': return String(Math.floor((ms + zone * 60_000) / 86_400_000) + 40587) // Modified Julian Day
    case 'hour': return h
    case 'minute': return m
    case 'second': return s
    case 'time': return `${h}:${m}:${s}`
    case 'iso8601': return `${Y}-${M}-${D}T${h}:${m}:${s}${z.slice(0, 3)}:${z.slice(3)}`
    case 'std11': return `${DAYS[d.getUTCDay()]}, ${D} ${MONTH_NAMES[d.getUTCMonth()]} ${Y} ${h}:${m}:${s} ${z}` // two-digit day, as Pigeonhole writes it
    case 'zone': return z
    case 'weekday': return String(d.getUTCDay())
    default: return null
  }
}

/** ASCII-only case folding (i;ascii-casemap, RFC 4790 9.2): other characters are left as they are. An
 * all-ASCII string takes the engine's toLowerCase (which then does the same); others fold run by run. */
export function foldAscii (s: string): string {
  if (!NON_ASCII.test(s)) return s.toLowerCase()
  return s.replace(ASCII_RUNS, x => x.toLowerCase())
}
const NON_ASCII = /[^\x00-\x7f]/
const ASCII_RUNS = /[\x00-\x7f]+/g

/** `s` cut to at most `max` bytes of UTF-8, never inside a character. */
export function truncateBytes (s: string, max: number): string {
  if (s.length * 3 <= max || Buffer.byteLength(s) <= max) return s
  let out = Buffer.from(s).subarray(0, max).toString('utf8')
  if (out.endsWith('\ufffd')) out = out.slice(0, -1) // a cut multi-byte character
  return out
}

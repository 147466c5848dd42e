// FUTURERELEASE (RFC 4865): a submission client asks that its message be held until a time, with HOLDFOR=seconds
// or HOLDUNTIL=date-time (RFC 3339) on MAIL FROM. The EHLO keyword carries the longest hold we take, as an
// interval and as the latest date-time. Parsing only; the session (server.ts) refuses or remembers, and the
// outbound queue holds the message (node/outbound/queue.ts: every recipient, local ones too, goes through it).

export const FUTURE_RELEASE_INTERVAL_MAX_S = 7 * 24 * 3600 // a week: inside the queue's 5-day bounce clock, which starts at the release
const HOLDFOR = /^\d{1,9}$/ // RFC 4865 4: hold-for-value = 1*9DIGIT
// RFC 3339 5.6 date-time (full-date "T" full-time), the seconds' fraction optional, 'T' and 'Z' in either case
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/

/** RFC 3339 without fractions, UTC: what the EHLO keyword shows as the latest release. */
export function rfc3339 (ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z')
}

/** The EHLO line (RFC 4865 3): FUTURERELEASE max-future-release-interval max-future-release-date-time. */
export function futureReleaseKeyword (now: number, intervalMaxS = FUTURE_RELEASE_INTERVAL_MAX_S): string {
  return `FUTURERELEASE ${intervalMaxS} ${rfc3339(now + intervalMaxS * 1000)}`
}

export function parseDateTime (text: string): number | null {
  const m = DATE_TIME.exec(text)
  if (m === null) return null
  const [, y, mo, d, h, mi, s] = m.map(Number)
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) return null
  const t = Date.parse(text.toUpperCase())
  return Number.isFinite(t) ? t : null
}

export type HoldResult =
  | { ok: true, releaseAt: number | null } // null: no hold asked (or a time already past: released at once)
  | { ok: false, code: number, text: string }

/**
 * The release time of MAIL FROM's parameters (keys upper case, as smtp-server gives them). A hold longer than we
 * offer is refused with 554 5.5.4 (RFC 4865 4: the server cannot honour it); bad syntax, a valueless or
 * duplicated parameter, or both parameters at once with 501 5.5.4.
 */
export function parseHold (args: Record<string, unknown> | false, now: number, intervalMaxS = FUTURE_RELEASE_INTERVAL_MAX_S): HoldResult {
  const a = args === false ? {} : args
  const holdFor = a.HOLDFOR
  const holdUntil = a.HOLDUNTIL
  if (holdFor === undefined && holdUntil === undefined) return { ok: true, releaseAt: null }
  if (holdFor !== undefined && holdUntil !== undefined) return { ok: false, code: 501, text: '5.5.4 HOLDFOR and HOLDUNTIL cannot be used together' }
  let releaseAt: number
  if (holdFor !== undefined) {
    if (typeof holdFor !== 'string' || !HOLDFOR.test(holdFor)) return { ok: false, code: 501, text: '5.5.4 Invalid HOLDFOR value: 1 to 9 digits (seconds)' }
    const secs = Number(holdFor)
    if (secs > intervalMaxS) return { ok: false, code: 554, text: `5.5.4 HOLDFOR value too large: at most ${intervalMaxS} seconds` }
    releaseAt = now + secs * 1000
  } else {
    const t = typeof holdUntil === 'string' ? parseDateTime(holdUntil) : null
    if (t === null) return { ok: false, code: 501, text: '5.5.4 Invalid HOLDUNTIL value: an RFC 3339 date-time' }
    if (t > now + intervalMaxS * 1000) return { ok: false, code: 554, text: `5.5.4 HOLDUNTIL date-time too far in the future: at most ${rfc3339(now + intervalMaxS * 1000)}` }
    releaseAt = t
  }
  return { ok: true, releaseAt: releaseAt > now ? releaseAt : null }
}

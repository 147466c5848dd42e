// The Sender Rewriting Scheme (Shevek's SRS, as libsrs2 and postsrsd implement it; mailauth has none) for
// mail an alias forwards to an outside address: the envelope sender becomes an address of ours, so the
// next hop's SPF check (RFC 7208) sees our domain and our servers, and a bounce to it comes back to us
// to be sent on to the original sender. Forms:
//   SRS0=HHHH=TT=orig-domain=orig-local@our-domain            (the sender was not rewritten before)
//   SRS1=HHHH=first-forwarder==HHHH=TT=orig-domain=orig-local@our-domain   (it was, by someone else)
// HHHH: the first 4 base64 characters of HMAC-SHA1(secret, lower-cased rest), so nobody can make us relay
// to an address of their choice; TT: the day number mod 1024 in base32, so an address expires.

import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto'

export const SRS_HASH_LENGTH = 4 // libsrs2's default: 24 bits of HMAC, as postsrsd uses
export const SRS_MAX_AGE_DAYS = 21 // libsrs2's default: a bounce later than three weeks is refused
const DAY_MS = 86_400_000
const TIME_SLOTS = 1024 // two base32 characters
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
const SEP = '=' // the separator after SRS0/SRS1 (libsrs2 also accepts '+' and '-' there)

export interface SrsInit {
  /** At least 16 bytes; the same on every node of the grid (srsSecret below derives it from the cluster key). */
  secret: Buffer
  now?: () => number
}

export interface Srs {
  /** `sender` rewritten into an address at `domain` (one of ours); '' (the null sender) stays ''. */
  forward (sender: string, domain: string): string
  /**
   * For an SRS address of ours: where a message to it goes (SRS0: the original sender; SRS1: the SRS0 address
   * of the first forwarder). Null when `address` is not SRS; throws SrsError when it is but fails its hash or
   * has expired (answer 550 5.1.1: nobody else may use our rewriting to relay).
   */
  reverse (address: string): string | null
}

export class SrsError extends Error {}

/** The SRS secret of a grid: derived from its cluster key (HKDF-SHA256), so every node has it with no record. */
export function srsSecret (clusterKey: string | Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', clusterKey, Buffer.alloc(0), 'mailgrid srs v1', 32))
}

export function isSrs (address: string): boolean {
  return /^srs[01][=+-]/i.test(address)
}

export function createSrs (init: SrsInit): Srs {
  if (init.secret.length < 16) throw new Error('SRS secret: at least 16 bytes')
  const now = init.now ?? Date.now

  const hash = (...parts: string[]): string =>
    createHmac('sha1', init.secret).update(parts.join('').toLowerCase()).digest('base64').slice(0, SRS_HASH_LENGTH)

  const hashOk = (given: string, ...parts: string[]): boolean => {
    const want = Buffer.from(hash(...parts))
    const got = Buffer.from(given)
    // base64 is case sensitive, but some MTAs lower-case local parts: accept a case-folded match as libsrs2 does
    return (got.length === want.length && timingSafeEqual(got, want)) || given.toLowerCase() === want.toString().toLowerCase()
  }

  const stamp = (): string => {
    const day = Math.floor(now() / DAY_MS) % TIME_SLOTS
    return BASE32[day >> 5] + BASE32[day & 31]
  }

  const fresh = (tt: string): boolean => {
    if (tt.length !== 2) return false
    const hi = BASE32.indexOf(tt[0].toUpperCase())
    const lo = BASE32.indexOf(tt[1].toUpperCase())
    if (hi < 0 || lo < 0) return false
    const age = ((Math.floor(now() / DAY_MS) - ((hi << 5) | lo)) % TIME_SLOTS + TIME_SLOTS) % TIME_SLOTS
    return age <= SRS_MAX_AGE_DAYS
  }

  const split = (address: string): [string, string] => {
    const at = address.lastIndexOf('@')
    if (at <= 0 || at === address.length - 1) throw new SrsError(`not an address: ${address}`)
    return [address.slice(0, at), address.slice(at + 1)]
  }

  return {
    forward (sender, domain) {
      if (sender === '') return ''
      const [local, host] = split(sender)
      if (/^srs0[=+-]/i.test(local)) {
        // SRS0=HHHH=TT=domain=local@host -> SRS1=HHHH=host==HHHH=TT=domain=local@domain
        const rest = local.slice(4) // '=HHHH=TT=...', the separator kept as libsrs2 does
        return `SRS1${SEP}${hash(host, rest)}${SEP}${host}${SEP}${rest}@${domain}`
      }
      if (/^srs1[=+-]/i.test(local)) {
        // SRS1=HHHH=first==...@host: keep the first forwarder, re-hash for us
        const m = /^srs1[=+-][^=]*=([^=]+)=(=.*)$/i.exec(local)
        if (m === null) throw new SrsError(`malformed SRS1 address: ${sender}`)
        return `SRS1${SEP}${hash(m[1], m[2])}${SEP}${m[1]}${SEP}${m[2]}@${domain}`
      }
      const tt = stamp()
      return `SRS0${SEP}${hash(tt, host, local)}${SEP}${tt}${SEP}${host}${SEP}${local}@${domain}`
    },

    reverse (address) {
      if (!isSrs(address)) return null
      const [local] = split(address)
      if (/^srs0/i.test(local)) {
        const m = /^srs0[=+-]([^=]+)=([^=]+)=([^=]+)=(.+)$/i.exec(local)
        if (m === null) throw new SrsError('malformed SRS0 address')
        const [, hh, tt, host, orig] = m
        if (!hashOk(hh, tt, host, orig)) throw new SrsError('SRS0 address with a wrong hash')
        if (!fresh(tt)) throw new SrsError('SRS0 address has expired')
        return `${orig}@${host}`
      }
      const m = /^srs1[=+-]([^=]+)=([^=]+)=(=.*)$/i.exec(local)
      if (m === null) throw new SrsError('malformed SRS1 address')
      const [, hh, host, rest] = m
      if (!hashOk(hh, host, rest)) throw new SrsError('SRS1 address with a wrong hash')
      return `SRS0${rest}@${host}`
    }
  }
}

// Address normalization and validation for the directory. Addresses are compared case-insensitively (what
// every mainstream MTA does in practice, though RFC 5321 2.4 lets the local part be case-sensitive), and IDN
// domains are kept in their A-label (punycode) form.

import { domainToASCII } from 'node:url'

export const LOCAL_PART_BYTES_MAX = 64 // RFC 5321 4.5.3.1.1
export const DOMAIN_BYTES_MAX = 253 // RFC 1035 2.3.4 (255 octets on the wire, minus length bytes)
export const ADDRESS_BYTES_MAX = 254 // RFC 5321 4.5.3.1.3 path of 256 including the angle brackets

// atext of RFC 5322 3.2.3 plus '.', and any non-ASCII (RFC 6531 SMTPUTF8); no control characters or specials
const LOCAL_PART = /^(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uffff-]+)(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uffff-]+)*$/u
const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/

export function normalizeDomain (domain: string): string | null {
  // a pure function of its argument, asked several times per message (RCPT, the directory, the domain quota) with
  // the same few domains: kept (domainToASCII alone was 1.2 % of the node's busy time under SMTP ingest); names come
  // from the network, so the memo is bounded and starts over when full
  const known = domainMemo.get(domain)
  if (known !== undefined) return known
  const out = normalizeDomainOnce(domain)
  if (domainMemo.size >= DOMAIN_MEMO_ENTRIES_MAX) domainMemo.clear()
  if (domain.length <= DOMAIN_BYTES_MAX) domainMemo.set(domain, out)
  return out
}

/** Domains normalizeDomain keeps the answer for; past it the memo starts over. */
export const DOMAIN_MEMO_ENTRIES_MAX = 1024
const domainMemo = new Map<string, string | null>()

function normalizeDomainOnce (domain: string): string | null {
  const d = domain.trim().toLowerCase().replace(/\.$/, '')
  if (d === '' || /[\s\x00-\x1f@]/.test(d)) return null
  const ascii = domainToASCII(d)
  if (ascii === '' || ascii.length > DOMAIN_BYTES_MAX) return null
  const labels = ascii.split('.')
  if (labels.length < 1 || !labels.every(l => LABEL.test(l))) return null
  return ascii
}

/** 'User@Example.COM' → 'user@example.com'; null when not a valid mailbox address. */
export function normalizeAddress (address: string): string | null {
  const a = address.trim()
  const at = a.lastIndexOf('@')
  if (at <= 0 || at === a.length - 1) return null
  const local = a.slice(0, at).toLowerCase()
  const domain = normalizeDomain(a.slice(at + 1))
  if (domain === null) return null
  if (Buffer.byteLength(local) > LOCAL_PART_BYTES_MAX || !LOCAL_PART.test(local)) return null
  const out = `${local}@${domain}`
  return Buffer.byteLength(out) <= ADDRESS_BYTES_MAX ? out : null
}

/** Like normalizeAddress, but also accepts '@domain' (a catch-all alias). */
export function normalizeAliasAddress (address: string): string | null {
  const a = address.trim()
  if (a.startsWith('@')) {
    const d = normalizeDomain(a.slice(1))
    return d === null ? null : `@${d}`
  }
  return normalizeAddress(a)
}

export function domainOf (address: string): string {
  return address.slice(address.lastIndexOf('@') + 1)
}

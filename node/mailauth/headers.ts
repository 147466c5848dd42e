// Reading the few header fields mailauth's callers need (the From: domains) without parsing the message.

import addressparser from 'nodemailer/lib/addressparser'
import { normalizeDomain } from '../../store/index.ts'

export const HEADER_BLOCK_BYTES_MAX = 1024 * 1024 // the From: search reads no further into a hostile message

/** The unfolded values of every `name:` field of the header block. */
export function headerValues (message: Buffer, name: string): string[] {
  const block = message.subarray(0, Math.min(headerEnd(message), HEADER_BLOCK_BYTES_MAX)).toString('utf8')
  const unfolded = block.replace(/\r?\n(?=[ \t])/g, '')
  const out: string[] = []
  const want = name.toLowerCase()
  for (const line of unfolded.split(/\r?\n/)) {
    const i = line.indexOf(':')
    if (i > 0 && line.slice(0, i).trim().toLowerCase() === want) out.push(line.slice(i + 1).trim())
  }
  return out
}

/** The domains of the From: header's mailboxes (RFC 5322 3.6.2), normalized, in order, each once. */
export function authorDomains (message: Buffer): string[] {
  const out = new Set<string>()
  for (const v of headerValues(message, 'from')) {
    for (const { address: a } of addressparser(v, { flatten: true })) {
      const at = a.lastIndexOf('@')
      const d = at < 0 ? null : normalizeDomain(a.slice(at + 1))
      if (d !== null) out.add(d)
    }
  }
  return [...out]
}

/** Offset just past the header block (the blank line excluded); the whole message when it has no body. */
export function headerEnd (message: Buffer): number {
  const crlf = message.indexOf('\r\n\r\n')
  const lf = message.indexOf('\n\n')
  if (crlf >= 0 && (lf < 0 || crlf < lf)) return crlf + 2
  if (lf >= 0) return lf + 1
  return message.length
}

const AUTH_RESULTS = /authentication-results[ \t]*:/i

/**
 * The message without the Authentication-Results fields that claim one of `authservIds` (ours), or null when
 * it has none. RFC 8601 5: an MTA MUST delete such fields that did not come from within its trust boundary,
 * or a sender could forge "dmarc=pass" under our name below our real field.
 */
export function withoutOwnAuthResults (message: Buffer, authservIds: string[]): Buffer | null {
  const end = Math.min(headerEnd(message), HEADER_BLOCK_BYTES_MAX)
  // nearly every message has no such field: one case-insensitive search of the block instead of a pass per field
  if (!AUTH_RESULTS.test(message.toString('latin1', 0, end))) return null
  const ids = new Set(authservIds.map(i => i.toLowerCase()))
  const keep: Buffer[] = []
  let removed = false
  let at = 0
  while (at < end) {
    // one field: its first line and every continuation line (starting with space or tab)
    let next = at
    do {
      const nl = message.indexOf(0x0a, next)
      next = nl < 0 || nl >= end ? end : nl + 1
    } while (next < end && (message[next] === 0x20 || message[next] === 0x09))
    const field = message.subarray(at, next)
    const m = /^authentication-results[ \t]*:((?:.|\r?\n[ \t])*)/i.exec(field.toString('latin1'))
    const id = m === null ? null : m[1].replace(/\([^)]*\)/g, ' ').trim().split(/[\s;]+/)[0]?.toLowerCase()
    if (id !== null && id !== undefined && ids.has(id)) removed = true
    else keep.push(field)
    at = next
  }
  return removed ? Buffer.concat([...keep, message.subarray(end)]) : null
}

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

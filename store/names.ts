// Mailbox names: '/' is the hierarchy delimiter; 'INBOX' is case-insensitive (RFC 3501 5.1) and stored upper
// case, also as the first component of a child ('inbox/x' is 'INBOX/x'). Other names are case-sensitive.

import { MailError } from './errors.ts'

export const DELIMITER = '/'
export const MAILBOX_NAME_BYTES_MAX = 1024 // Dovecot's default limit on a full mailbox name
export const MAILBOX_DEPTH_MAX = 32 // hierarchy levels; bounds LIST work and rename fan-out

export function normalizeMailboxName (name: string): string {
  const parts = name.split(DELIMITER)
  if (parts[0].toUpperCase() === 'INBOX') parts[0] = 'INBOX'
  return parts.join(DELIMITER)
}

/** The normalized name, or a MailError('invalid') saying what is wrong. */
export function checkMailboxName (name: string): string {
  const n = normalizeMailboxName(name)
  if (n === '') throw new MailError('invalid', 'Empty mailbox name')
  if (Buffer.byteLength(n) > MAILBOX_NAME_BYTES_MAX) throw new MailError('invalid', 'Mailbox name too long')
  // Control characters, and the LIST wildcards, which could never be matched literally (RFC 3501 6.3.8)
  if (/[\x00-\x1f\x7f*%]/.test(n)) throw new MailError('invalid', 'Mailbox name has invalid characters')
  const parts = n.split(DELIMITER)
  if (parts.length > MAILBOX_DEPTH_MAX) throw new MailError('invalid', 'Mailbox hierarchy too deep')
  if (parts.some(p => p === '')) throw new MailError('invalid', 'Mailbox name has an empty level')
  return n
}

export function parentsOf (name: string): string[] {
  const parts = name.split(DELIMITER)
  const out: string[] = []
  for (let i = 1; i < parts.length; i++) out.push(parts.slice(0, i).join(DELIMITER))
  return out
}

export function isChildOf (name: string, parent: string): boolean {
  return name.startsWith(parent + DELIMITER)
}

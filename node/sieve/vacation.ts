// When a vacation reply may be sent (RFC 5230 4.5-4.6, RFC 3834 section 2) and for how long a sender is
// remembered (RFC 5230 4.1, RFC 6131). Decided from the message alone; the once-per-period memory is the
// environment's `seen`.

import type { MessageView } from './message.ts'
import type { SieveMessage } from './types.ts'

export const VACATION_DAYS_DEFAULT = 7 // RFC 5230 4.1 suggests 7
export const VACATION_SECONDS_MIN = 60 // RFC 6131 3 lets an implementation set a minimum; 0 would answer every message
export const VACATION_SECONDS_MAX = 90 * 86_400 // RFC 5230 4.1: implementations may cap the period

export function vacationSeconds (arg: { days?: number, seconds?: number }): number {
  const s = arg.seconds ?? (arg.days === undefined ? VACATION_DAYS_DEFAULT : Math.max(1, arg.days)) * 86_400
  return Math.min(VACATION_SECONDS_MAX, Math.max(VACATION_SECONDS_MIN, s))
}

// RFC 5230 4.6 / RFC 3834 2: senders that are lists, daemons or robots
const NO_REPLY_LOCALS = ['mailer-daemon', 'listserv', 'majordomo', 'postmaster', 'noreply', 'no-reply', 'do-not-reply', 'donotreply']
const LIST_HEADERS = ['list-id', 'list-help', 'list-subscribe', 'list-unsubscribe', 'list-post', 'list-owner', 'list-archive'] // RFC 2369, RFC 2919

function bare (address: string): string {
  const a = address.trim().toLowerCase()
  const at = a.lastIndexOf('@')
  if (at === -1) return a
  const local = a.slice(0, at)
  const plus = local.indexOf('+')
  return `${plus === -1 ? local : local.slice(0, plus)}@${a.slice(at + 1)}`
}

/** The address to answer (the envelope sender), or null when RFC 5230/3834 say not to reply. */
export function vacationAllowed (view: MessageView, msg: SieveMessage, user: string, addresses: string[]): string | null {
  const sender = msg.envelope.from.trim()
  if (sender === '' || sender === '<>') return null // RFC 3834 2: never answer a bounce
  const local = sender.slice(0, Math.max(0, sender.lastIndexOf('@'))).toLowerCase()
  if (NO_REPLY_LOCALS.includes(local) || local.startsWith('owner-') || local.endsWith('-request') || local.endsWith('-owner') || local.endsWith('-bounces')) return null
  for (const f of view.fields) {
    if (f.lname === 'auto-submitted' && f.value.toLowerCase().split(';')[0].trim() !== 'no') return null // RFC 3834 5
    if (f.lname === 'precedence' && ['bulk', 'list', 'junk'].includes(f.value.trim().toLowerCase())) return null
    if (LIST_HEADERS.includes(f.lname)) return null
    if (f.lname === 'x-auto-response-suppress' && /\b(?:all|oof|autoreply)\b/i.test(f.value)) return null
  }
  // RFC 5230 4.5: only when one of the user's addresses is a recipient named in the header, and never to oneself
  const mine = new Set([user, msg.envelope.to, ...addresses].filter(a => a !== '').map(bare))
  if (mine.has(bare(sender))) return null
  const recipients = new Set<string>()
  for (const f of view.fields) {
    if (!['to', 'cc', 'bcc', 'resent-to', 'resent-cc', 'resent-bcc'].includes(f.lname)) continue
    for (const a of view.addresses(f)) recipients.add(bare(`${a.local}@${a.domain}`))
  }
  for (const a of mine) if (recipients.has(a)) return sender
  return null
}

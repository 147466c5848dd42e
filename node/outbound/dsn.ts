// Delivery status notifications (RFC 3464): the bounce, the delay notice and the relay notice a sender gets
// from MAILER-DAEMON, as a multipart/report with a human part, the machine-readable message/delivery-status
// part and the original message (RET=FULL, the default) or its header (RET=HDRS). Sent with the null reverse
// path, so a notice is never answered by another notice (RFC 5321 4.5.5).

import { randomBytes } from 'node:crypto'
import { rfc5322Date } from '../smtp/received.ts'
import type { Envelope, RcptOutcome } from './types.ts'

// RFC 3462 lets the returned message be cut; Postfix returns at most 50 KB of it (bounce_size_limit)
export const DSN_RETURNED_BYTES_MAX = 50 * 1024

export type DsnAction = 'failed' | 'delayed' | 'relayed'

export interface DsnInput {
  hostname: string // Reporting-MTA
  queueId: string
  envelope: Envelope
  arrivalDate: number // ms
  action: DsnAction
  outcomes: RcptOutcome[] // the recipients this notice is about
  original: Buffer // the queued message as it was sent (trace headers included)
  willRetryUntil?: number // ms, for 'delayed'
  now: number
}

// Header text a remote chose (its reply, its name) goes into our header and body lines: printable, one line,
// bounded, so it can neither fold nor inject a line.
const oneLine = (s: string, max = 900): string => s.replace(/[\r\n]+/g, ' ').replace(/[^\x20-\x7e\u0080-\uffff]/g, '').slice(0, max)

const SUBJECT: Record<DsnAction, string> = {
  failed: 'Undelivered Mail Returned to Sender',
  delayed: 'Delayed Mail (still being retried)',
  relayed: 'Successful Mail Delivery Report'
}

function humanText (d: DsnInput): string {
  const lines: string[] = [`This is the mail system at host ${d.hostname}.`, '']
  if (d.action === 'failed') {
    lines.push("I'm sorry to have to inform you that your message could not", 'be delivered to one or more recipients. It is attached below.')
  } else if (d.action === 'delayed') {
    lines.push('####################################################################',
      '# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #',
      '####################################################################', '',
      'Your message could not be delivered for some time. It will be retried until',
      `${rfc5322Date(new Date(d.willRetryUntil ?? d.now))}.`)
  } else {
    lines.push('Your message was handed to the receiving mail system of each recipient below.')
  }
  lines.push('')
  for (const o of d.outcomes) {
    lines.push(`<${oneLine(o.rcpt, 512)}>: ${o.remote !== '' ? `host ${oneLine(o.remote, 300)} said: ` : ''}${oneLine(o.response)}`)
  }
  return lines.join('\r\n') + '\r\n'
}

function statusOf (o: RcptOutcome, action: DsnAction): string {
  if (/^[245]\.\d{1,3}\.\d{1,3}$/.test(o.enhanced)) return action === 'relayed' ? '2.0.0' : o.enhanced
  return action === 'failed' ? '5.0.0' : action === 'delayed' ? '4.0.0' : '2.0.0'
}

function deliveryStatus (d: DsnInput): string {
  const per: string[] = [
    `Reporting-MTA: dns; ${d.hostname}`,
    `X-Mailgrid-Queue-ID: ${d.queueId}`,
    ...(d.envelope.dsn?.envid !== undefined ? [`Original-Envelope-Id: ${oneLine(d.envelope.dsn.envid, 100)}`] : []),
    `X-Mailgrid-Sender: rfc822; ${oneLine(d.envelope.from, 512)}`,
    `Arrival-Date: ${rfc5322Date(new Date(d.arrivalDate))}`
  ]
  const blocks = [per.join('\r\n')]
  for (const o of d.outcomes) {
    const r = d.envelope.rcpts.find(x => x.address === o.rcpt)
    const lines = [
      ...(r?.orcpt !== undefined ? [`Original-Recipient: ${oneLine(r.orcpt, 512)}`] : []),
      `Final-Recipient: rfc822; ${oneLine(o.rcpt, 512)}`,
      `Action: ${d.action}`,
      `Status: ${statusOf(o, d.action)}`,
      ...(o.remote !== '' ? [`Remote-MTA: dns; ${oneLine(o.remote.replace(/\[.*$/, ''), 255)}`] : []),
      ...(o.code > 0 ? [`Diagnostic-Code: smtp; ${oneLine(o.response)}`] : [`Diagnostic-Code: X-mailgrid; ${oneLine(o.response)}`]),
      `Last-Attempt-Date: ${rfc5322Date(new Date(d.now))}`,
      ...(d.action === 'delayed' && d.willRetryUntil !== undefined ? [`Will-Retry-Until: ${rfc5322Date(new Date(d.willRetryUntil))}`] : [])
    ]
    blocks.push(lines.join('\r\n'))
  }
  return blocks.join('\r\n\r\n') + '\r\n'
}

/** The header block of a message (up to and including the blank line), or all of it when it has no body. */
export function headerOf (raw: Buffer): Buffer {
  const end = raw.indexOf('\r\n\r\n')
  if (end >= 0) return raw.subarray(0, end + 4)
  const lf = raw.indexOf('\n\n')
  return lf >= 0 ? raw.subarray(0, lf + 2) : raw
}

/** The notice as a complete message, ready to be stored in a local INBOX or queued to a remote sender. */
export function buildDsn (d: DsnInput): Buffer {
  const boundary = `${d.queueId.replace(/[^A-Za-z0-9]/g, '').slice(0, 24)}.${randomBytes(6).toString('hex')}/${d.hostname}`
  const full = d.envelope.dsn?.ret !== 'HDRS' && d.action !== 'relayed'
  let returned = full ? d.original : headerOf(d.original)
  let type = full ? 'message/rfc822' : 'text/rfc822-headers'
  if (returned.length > DSN_RETURNED_BYTES_MAX) {
    // too large to return whole: its header only (RFC 3462 2: the third part may be the headers)
    returned = headerOf(d.original).subarray(0, DSN_RETURNED_BYTES_MAX)
    type = 'text/rfc822-headers'
  }
  const head = [
    `From: Mail Delivery System <MAILER-DAEMON@${d.hostname}>`,
    `To: <${oneLine(d.envelope.from, 512)}>`,
    `Subject: ${SUBJECT[d.action]}`,
    `Date: ${rfc5322Date(new Date(d.now))}`,
    `Message-ID: <${d.queueId.replace(/[^A-Za-z0-9._-]/g, '')}.${d.action}.${randomBytes(4).toString('hex')}@${d.hostname}>`,
    'Auto-Submitted: auto-replied', // RFC 3834 5
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="${boundary}"`,
    'Content-Transfer-Encoding: 8bit',
    ''
  ].join('\r\n')
  const parts = [
    `--${boundary}\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${humanText(d)}`,
    `--${boundary}\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n${deliveryStatus(d)}`,
    `--${boundary}\r\nContent-Description: ${full ? 'Undelivered Message' : 'Message Headers'}\r\nContent-Type: ${type}\r\n\r\n`
  ]
  return Buffer.concat([
    Buffer.from(head + '\r\n' + parts.join('\r\n'), 'utf8'),
    returned,
    Buffer.from(`\r\n--${boundary}--\r\n`, 'utf8')
  ])
}

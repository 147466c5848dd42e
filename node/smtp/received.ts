// The trace header lines a delivering MTA prepends (RFC 5321 4.4): Return-Path with the envelope sender, and
// a Received line naming the client, this host, the protocol (RFC 3848: ESMTP, ESMTPS, ESMTPA, ESMTPSA; RFC
// 6531 UTF8 variants) and, because each recipient gets its own copy of these lines, only that recipient.

export interface TraceInfo {
  sender: string // '' for the null reverse-path
  helo: string
  clientIp: string
  clientName: string | null // verified reverse name, when looked up
  hostname: string
  secure: boolean
  authenticated: boolean
  smtpUtf8: boolean
  id: string
  recipient: string // '' when the copy is for several recipients: no 'for' clause
  date: Date
}

/** RFC 5322 3.3 date-time, in UTC with a numeric zone. */
export function rfc5322Date (d: Date): string {
  const day = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'][d.getUTCDay()]
  const mon = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'][d.getUTCMonth()]
  const p = (n: number): string => String(n).padStart(2, '0')
  return `${day}, ${p(d.getUTCDate())} ${mon} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`
}

// Anything a client chose (HELO, addresses) goes into a header: keep it to printable non-space characters of
// a bounded length, so it can neither fold nor inject a header line.
function clean (s: string, max = 255): string {
  return s.replace(/[^\x21-\x7e\u0080-\uffff]/g, '').slice(0, max)
}

export function traceHeaders (t: TraceInfo): string {
  const proto = (t.smtpUtf8 ? 'UTF8SMTP' : 'ESMTP') + (t.secure ? 'S' : '') + (t.authenticated ? 'A' : '')
  const ip = t.clientIp.includes(':') ? `IPv6:${t.clientIp}` : t.clientIp
  const from = `${clean(t.helo) || 'unknown'} (${t.clientName !== null ? clean(t.clientName) + ' ' : ''}[${ip}])`
  return `Return-Path: <${clean(t.sender, 512)}>\r\n` +
    `Received: from ${from}\r\n` +
    `\tby ${t.hostname} (mailgrid) with ${proto} id ${t.id}\r\n` +
    (t.recipient === '' ? `\t; ${rfc5322Date(t.date)}\r\n` : `\tfor <${clean(t.recipient, 512)}>; ${rfc5322Date(t.date)}\r\n`)
}

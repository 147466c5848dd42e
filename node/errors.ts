// The one place where mail errors become protocol answers. Protocol code calls these and never invents its
// own mapping; an error that is not a MailError is internal: the client gets "Internal error" with a log id
// that the log line carries too.

import { randomBytes } from 'node:crypto'
import { isMailError } from '../store/index.ts'
import type { MailErrorKind } from '../store/index.ts'

export interface WireError {
  internal: boolean
  logId: string | null
  text: string
}

function describe (err: unknown): { kind: MailErrorKind | null, text: string, logId: string | null } {
  if (isMailError(err)) return { kind: err.kind, text: err.message, logId: null }
  const logId = randomBytes(6).toString('hex')
  return { kind: null, text: `Internal error occurred. Refer to server log for more information. [${logId}]`, logId }
}

/** IMAP: [CODE] text for a tagged NO (RFC 5530 response codes). */
export function imapError (err: unknown): WireError & { code: string | null } {
  const d = describe(err)
  const codes: Record<MailErrorKind, string | null> = {
    temp: 'UNAVAILABLE',
    unavailable: 'UNAVAILABLE',
    notFound: 'NONEXISTENT',
    nonExistent: 'NONEXISTENT',
    exists: 'ALREADYEXISTS',
    noQuota: 'OVERQUOTA',
    tooBig: 'TOOBIG',
    limit: 'LIMIT',
    invalid: 'CANNOT',
    denied: 'NOPERM',
    authFailed: 'AUTHENTICATIONFAILED',
    expungeIssued: 'EXPUNGEISSUED',
    hasChildren: 'HASCHILDREN'
  }
  return { internal: d.kind === null, logId: d.logId, text: d.text, code: d.kind === null ? 'SERVERBUG' : codes[d.kind] }
}

/** SMTP: basic and enhanced status code (RFC 3463) for a failure during a transaction. */
export function smtpError (err: unknown): WireError & { code: number, enhanced: string } {
  const d = describe(err)
  const table: Record<MailErrorKind, [number, string]> = {
    temp: [451, '4.3.0'],
    unavailable: [451, '4.4.3'],
    notFound: [550, '5.1.1'],
    nonExistent: [550, '5.1.1'],
    exists: [451, '4.3.0'],
    noQuota: [552, '5.2.2'],
    tooBig: [552, '5.3.4'],
    limit: [452, '4.3.1'],
    invalid: [501, '5.5.4'],
    denied: [550, '5.7.1'],
    authFailed: [535, '5.7.8'],
    expungeIssued: [451, '4.3.0'],
    hasChildren: [451, '4.3.0']
  }
  const [code, enhanced] = d.kind === null ? [451, '4.3.0'] : table[d.kind]
  return { internal: d.kind === null, logId: d.logId, text: d.text, code, enhanced }
}

/** POP3: -ERR with an RFC 2449/3206 response code where one applies ([IN-USE], [SYS/TEMP], [AUTH]). */
export function pop3Error (err: unknown): WireError & { code: string | null } {
  const d = describe(err)
  const code = d.kind === null || d.kind === 'temp' || d.kind === 'unavailable' ? 'SYS/TEMP' : d.kind === 'authFailed' ? 'AUTH' : null
  return { internal: d.kind === null, logId: d.logId, text: d.text, code }
}

// The closed list of mail errors. Every layer below the protocols throws MailError with one of these kinds;
// each protocol maps a kind to its wire answer exactly once (IMAP response codes, SMTP enhanced status codes,
// POP3 -ERR [CODES]). Anything else that escapes is an internal error: the client sees "Internal error" plus
// a log id, never the message.

export type MailErrorKind =
  | 'temp' // transient failure, retry later (SMTP 451 4.3.0, IMAP NO [UNAVAILABLE])
  | 'unavailable' // the owner of the data cannot be reached now
  | 'notFound' // no such user, mailbox or message
  | 'exists' // already exists (mailbox, user, domain)
  | 'noQuota' // over quota (SMTP 552 5.2.2 / 452 4.2.2, IMAP NO [OVERQUOTA])
  | 'tooBig' // message larger than the limit (SMTP 552 5.3.4, IMAP NO [LIMIT] / [TOOBIG])
  | 'limit' // some other named limit was hit
  | 'invalid' // the request is malformed or names something impossible
  | 'denied' // not permitted (e.g. deleting INBOX)
  | 'authFailed' // wrong credentials
  | 'expungeIssued' // the message was expunged meanwhile
  | 'nonExistent' // mailbox does not exist (IMAP [NONEXISTENT])
  | 'hasChildren' // mailbox has children (IMAP [HASCHILDREN] for DELETE on \Noselect cases)

export class MailError extends Error {
  readonly kind: MailErrorKind
  constructor (kind: MailErrorKind, message: string, options?: ErrorOptions) {
    super(message, options)
    this.kind = kind
    this.name = 'MailError'
  }
}

/**
 * Entries shipped from another copy of a user's log do not continue this copy: an entry at a position both
 * hold has another id (the copies diverged and must be merged, never spliced). A temporary failure to clients.
 */
export class LogDivergedError extends MailError {
  readonly position: number // this copy's position when the mismatch was found
  constructor (position: number, message: string) {
    super('temp', message)
    this.name = 'LogDivergedError'
    this.position = position
  }
}

export function isMailError (err: unknown, kind?: MailErrorKind): err is MailError {
  return err instanceof MailError && (kind === undefined || err.kind === kind)
}

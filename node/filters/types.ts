// What a content filter sees of an incoming message and what it decides. The SMTP server maps a verdict to
// its answer (reject: 550 5.7.1, tempfail: 451 4.7.1) and files junk into the recipients' Junk folders.

/** The SMTP envelope of the message being checked. */
export interface FilterEnvelope {
  ip: string // the client's address
  helo: string // what it said in EHLO/HELO; '' when nothing
  from: string // the reverse path; '' is the null sender
  rcpts: string[] // as given in RCPT TO
  queueId: string // our id of the transaction, as in the Received header
  user: string | null // the authenticated user, if any
  hostname?: string // this node's name (rspamd's MTA-Name)
}

export interface FilterVerdict {
  /** accept: deliver; junk: deliver into Junk; reject: refuse permanently; tempfail: ask the client to retry. */
  action: 'accept' | 'junk' | 'reject' | 'tempfail'
  /** Header lines to put on top of the stored message, CRLF-terminated; '' for none. */
  headers: string
  /** One line for the logs (never sent to the client). */
  reason: string
}

export interface MessageFilter {
  /** Never throws for what the filter answers or fails to answer: a verdict, decided by the filter's failure policy. */
  check (message: Buffer, envelope: FilterEnvelope, opts?: { signal?: AbortSignal }): Promise<FilterVerdict>
}

// The face of node/outbound: mail for other domains. A message for remote recipients is written into a queue
// shard (a key on the grid's ring, replicated by the same log machinery as a user's mail) before the sender
// gets 250; the shard's primary delivers it (deliver.ts: MX lookup, TLS, one SMTP client per destination),
// retries temporary failures with backoff and bounces with an RFC 3464 report (dsn.ts).

import type { OpOptions } from '../../store/index.ts'

/** RFC 3461 parameters of one recipient (DSN on submission). */
export interface RecipientDsn {
  notify?: Array<'NEVER' | 'SUCCESS' | 'FAILURE' | 'DELAY'>
  orcpt?: string // 'rfc822;addr' as given (xtext decoded)
}

/** The SMTP envelope of one queued message. */
export interface Envelope {
  /** The reverse path; '' is the null sender (bounces, notices): never bounced. */
  from: string
  rcpts: Array<{ address: string } & RecipientDsn>
  dsn?: { ret?: 'FULL' | 'HDRS', envid?: string }
  smtpUtf8?: boolean
  eightBit?: boolean
}

/** What one recipient's delivery attempt came to. */
export interface RcptOutcome {
  rcpt: string
  /** sent: the remote answered 250 to the data; deferred: try again later; failed: permanent (5xx, null MX, ...). */
  status: 'sent' | 'deferred' | 'failed'
  code: number // the SMTP reply code (0 when no server answered: DNS, connection)
  enhanced: string // RFC 3463 status, '4.4.1' when none was given
  response: string // the remote's answer or our own explanation, one line
  remote: string // 'mx.example.com[192.0.2.1]:25', or '' when no server was reached
}

/** One SMTP delivery attempt: every recipient of `envelope` at one destination (a domain, or the smarthost). */
export interface Deliverer {
  /**
   * Delivers to the recipients of one domain: MX lookup (or the relay), connect, EHLO, STARTTLS, MAIL, RCPT,
   * DATA. Never throws for what a remote or DNS answers: the outcome of every recipient, in order.
   */
  send (domain: string, envelope: Envelope, message: Buffer, opts?: OpOptions): Promise<RcptOutcome[]>
  /** Closes pooled connections; safe to call twice. */
  close (): Promise<void>
}

/** The state of one queued message, as the queue commands show it. */
export interface QueueItem {
  id: string // stable across nodes: the queued message's global id
  shard: string
  from: string
  domain: string
  rcpts: Array<{ address: string, state: 'pending' | 'sent' | 'failed', response?: string }>
  size: number
  queuedAt: number // ms since the epoch
  attempts: number
  nextAttemptAt: number // ms; 0 when held
  held: boolean
  /** RFC 4865 FUTURERELEASE: the release time the sender asked for (ms); absent when none. */
  releaseAt?: number
  lastError: string
  delayNotified: boolean
}

export interface QueueStats {
  size: number // messages in the queue (every shard this node leads, or the grid's)
  oldestAgeMs: number // 0 when empty
}

/** The operator's handle on the queue. The grid-wide calls ask every alive node for the shards it leads. */
export interface OutboundQueue {
  list (): Promise<QueueItem[]>
  show (id: string): Promise<QueueItem | null>
  /** Makes the message (or every message) due now. Resolves to how many it touched. */
  retry (id: string | 'all'): Promise<number>
  delete (id: string): Promise<boolean>
  hold (id: string): Promise<boolean>
  release (id: string): Promise<boolean>
  /** This node's shards and the grid's. */
  stats (): Promise<{ local: QueueStats, grid: QueueStats }>
}

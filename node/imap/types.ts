/** What the IMAP server is given: components (things with behaviour) and init (plain options). */
import type { Logger } from 'pino'
import type { SecureContextOptions } from 'node:tls'
import type { Duplex } from 'node:stream'
import type { MailStore } from '../../store/index.ts'
import type { Authenticator } from '../auth.ts'
import type { ConnectionLimiter } from '../limits.ts'
import type { Endpoint, NodeMetrics } from '../types.ts'

export interface ImapComponents {
  store: MailStore
  /** The node's one authentication path (throttling included). */
  auth: Authenticator
  /** Shared per-IP and total connection caps; without it only connectionsMax applies. */
  limiter?: ConnectionLimiter
  logger: Logger
  /** Certificate and key for STARTTLS and the implicit-TLS port; without it neither is offered. */
  tls?: Pick<SecureContextOptions, 'key' | 'cert' | 'ca'>
  /** Injectable clock (ms since the epoch), for APPEND's default internal date. */
  now?: () => number
  /**
   * On a grid: where a session runs after its login. null → here; a stream → on the user's primary, and this
   * node only passes bytes from then on. Throws when the primary cannot take it (the login gets NO [UNAVAILABLE]).
   */
  router?: ImapRouter
  /**
   * On a grid: whether this node still runs the user's sessions (it is the user's primary). A session whose user
   * moved ends with BYE at its next command, so that its client reconnects to the new primary instead of reading a
   * copy that no longer follows the user's writes (node/grid/forward.ts closes forwarded sessions alike).
   */
  servesUser?: (user: string) => boolean
  /** Connections, commands and failed commands (NO, BAD), labelled imap. */
  metrics?: NodeMetrics
}

export type ImapRouter = (user: string, protocol: 'imap', ctx: { ip: string, secure: boolean, tag: string, enabled: string[] }) => Promise<Duplex | null>

/** What the edge node tells the primary about a forwarded session (node/grid/forward.ts SessionHeader). */
export interface AdoptedImapSession {
  user: string
  ip: string
  secure: boolean
  /** The tag of the client's LOGIN or AUTHENTICATE, answered by the adopting session. */
  tag: string
  enabled?: string[]
}

export interface ImapInit {
  /** Where to listen; port 0 picks an ephemeral port. */
  endpoint: Endpoint
  /** true: TLS from the first byte (port 993, RFC 8314); false: plaintext with STARTTLS when tls is given. */
  implicitTls?: boolean
  /** Host name used in the greeting. */
  hostname?: string
  /**
   * Allow LOGIN and AUTHENTICATE without TLS from loopback clients. Elsewhere plaintext
   * credentials are refused (RFC 9051 section 6.2.3 LOGINDISABLED).
   */
  allowInsecureAuthOnLoopback?: boolean
  /** Allow them from anywhere (tests, trusted networks). Off by default. */
  allowInsecureAuth?: boolean
  limits?: Partial<ImapLimits>
}

export interface ImapLimits {
  /** Largest APPEND literal; advertised as APPENDLIMIT (RFC 7889). */
  appendBytesMax: number
  /** Literal size accepted before authentication (LOGIN credentials are small). */
  preAuthLiteralBytesMax: number
  /** BAD answers before the session is cut off. */
  badCommandsMax: number
  /** Idle time before autologout once authenticated: RFC 3501 section 5.4 asks for at least 30 minutes. */
  idleTimeoutMs: number
  /** Idle time before login: a connection that never authenticates should not hold a slot. */
  preAuthTimeoutMs: number
  /** Concurrent connections per listener. */
  connectionsMax: number
  /** Failed logins in one session before it is cut off. */
  authFailuresMax: number
}

/** Defaults of the IMAP server's limits (node/imap/types.ts ImapLimits explains each). */
import { LITERAL_BYTES_MAX } from './protocol/constants.ts'
import type { ImapLimits } from './types.ts'

/** RFC 3501 section 5.4: the autologout timer is at least 30 minutes. */
export const IDLE_TIMEOUT_MS = 30 * 60 * 1000

/** Before login we wait less: 60 s is smtp-server's and Dovecot's order of magnitude. */
export const PRE_AUTH_TIMEOUT_MS = 60 * 1000

/** SASL PLAIN of a long address and password fits; anything bigger before login is abuse. */
export const PRE_AUTH_LITERAL_BYTES_MAX = 8 * 1024

/** WildDuck cuts off after a few dozen bad commands; a real client sends none. */
export const BAD_COMMANDS_MAX = 20

/** Per listener; the grid balances across nodes, one node need not take unlimited sockets. */
export const CONNECTIONS_MAX = 10_000

/** Wrong passwords per session before it is closed (slows guessing over one connection). */
export const AUTH_FAILURES_MAX = 3

export const DEFAULT_LIMITS: ImapLimits = {
  appendBytesMax: LITERAL_BYTES_MAX,
  preAuthLiteralBytesMax: PRE_AUTH_LITERAL_BYTES_MAX,
  badCommandsMax: BAD_COMMANDS_MAX,
  idleTimeoutMs: IDLE_TIMEOUT_MS,
  preAuthTimeoutMs: PRE_AUTH_TIMEOUT_MS,
  connectionsMax: CONNECTIONS_MAX,
  authFailuresMax: AUTH_FAILURES_MAX,
}

/** The hierarchy delimiter, the store's (store/types.ts Mailbox.name). */
export const DELIMITER = '/'

/**
 * While IDLE, an untagged OK every 2 minutes keeps NAT mappings open and the autologout timer
 * from firing (RFC 2177 section 3 asks clients to re-IDLE every 29 minutes; some never do).
 */
export const IDLE_KEEPALIVE_MS = 2 * 60 * 1000

/**
 * Commands per second one session may run, refilled continuously, with the same burst. Above it the
 * session is slowed (its socket stays paused), not refused: a flood costs the sender time, not us CPU.
 * A real client runs a few per second; a benchmark over one session stays well under a thousand.
 */
export const COMMANDS_PER_SECOND_MAX = 1000

/** The BYE text when the user's sessions now run on another node of the grid (ImapComponents.servesUser). */
export const MOVED_TEXT = 'This mailbox is now served by another node; please reconnect'

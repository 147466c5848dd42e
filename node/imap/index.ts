/**
 * node/imap: the IMAP4rev1 + IMAP4rev2 server. createImapServer takes the store, the node's
 * authenticator and a logger as components, and an endpoint and limits as init; one instance
 * is one listener (plain with STARTTLS, or implicit TLS).
 */
export { createImapServer, CLOSE_GRACE_MS } from './server.ts'
export type { ImapServer } from './server.ts'
export type { ImapComponents, ImapInit, ImapLimits } from './types.ts'
export { DEFAULT_LIMITS } from './constants.ts'

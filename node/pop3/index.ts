// node/pop3: a POP3 server (RFC 1939 with RFC 2449 CAPA and response codes, RFC 2595 STLS, RFC 5034 AUTH
// PLAIN) over the MailStore interface. The codec is exported for tests and for other line protocols.

export { createPop3Server } from './server.ts'
export type { Pop3Components, Pop3Init, Pop3Server } from './server.ts'
export { LineReader, DotStuffer, TopFilter, parseCommand } from './codec.ts'
export * from './constants.ts'

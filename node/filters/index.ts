// node/filters: content filters an incoming message passes before it is accepted (today rspamd).

export type { FilterEnvelope, FilterVerdict, MessageFilter } from './types.ts'
export { createRspamdFilter, parseAnswer, resultHeader, verdictOf, RspamdUnavailable, RSPAMD_ANSWER_BYTES_MAX, RSPAMD_TIMEOUT_MS } from './rspamd.ts'
export type { RspamdAnswer, RspamdComponents, RspamdInit } from './rspamd.ts'

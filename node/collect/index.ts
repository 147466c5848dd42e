// node/collect: mail collection from a user's accounts on other servers (POP3 or IMAP), run by the user's
// primary on a schedule (collector.ts), with a small POP3 client of its own (pop3-client.ts).

export { Collector, accountEntry, stateEntry, emptyState, COLLECT_ENTRY_PREFIX, COLLECT_STATE_PREFIX, COLLECT_INTERVAL_MIN_MINUTES, COLLECT_INTERVAL_DEFAULT_MINUTES, COLLECT_ACCOUNTS_PER_USER_MAX } from './collector.ts'
export type { CollectAccount, CollectState, CollectorComponents, CollectorInit } from './collector.ts'
export { Pop3Client, Pop3Error } from './pop3-client.ts'

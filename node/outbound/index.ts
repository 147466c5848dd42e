// node/outbound: mail for other domains. The replicated queue (queue.ts: shards on the grid's ring, delivery by
// each shard's primary, retries and RFC 3464 notices in dsn.ts), and the SMTP side (deliver.ts: MX lookup in
// mx.ts, MTA-STS in mta-sts.ts, one nodemailer session per connection in session.ts, pooled per destination).

export type * from './types.ts'
export { Queue, SHARD_KEYS, QUEUE_SHARDS, QUEUE_IN_FLIGHT_MAX, RETRY_MAX_MS, RECEIVED_HEADERS_MAX, receivedCount } from './queue.ts'
export type { QueueComponents, QueueInit, EnqueueOptions } from './queue.ts'
export { createDeliverer } from './deliver.ts'
export { buildDsn } from './dsn.ts'

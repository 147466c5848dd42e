// Keys that are not users but are placed on the ring and replicated like a user's mail: the outbound queue's
// shards. Each is a mail state with one INBOX whose messages are the queued mail (node/outbound/queue.ts).
// The names hold no '@', so no address ever normalizes to one: nobody can log in to a shard or be one.

export const QUEUE_SHARD_PREFIX = 'queue:'

export const isQueueShard = (key: string): boolean => key.startsWith(QUEUE_SHARD_PREFIX)

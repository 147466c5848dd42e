// The replication layer's timings and bounds, units last. The wire format's batch limits are in wire.ts.

export const REPLICATION_TIMEOUT_MS = 15_000 // a write waits this long for its replicas before answering 'temp'
export const REBALANCE_INTERVAL_MS = 2_000 // how often every owned user's replicas are checked
export const DIRECTORY_SYNC_INTERVAL_MS = 3_000 // digest exchange with one random peer
export const REMIRROR_CONCURRENCY = 4 // users re-mirrored at once: the rest of the bandwidth stays with live traffic
export const RETRY_BACKOFF_MS = 200
export const POSITIONS_PER_REQUEST_MAX = 10_000 // users whose log position one request may ask for
export const MERGE_ATTEMPTS_MAX = 5 // a diverged copy that keeps taking writes is merged again, this many times

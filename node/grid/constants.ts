// The replication layer's timings and bounds, units last. The wire format's batch limits are in wire.ts.

export const REPLICATION_TIMEOUT_MS = 15_000 // a write waits this long for its replicas before answering 'temp'
export const REBALANCE_INTERVAL_MS = 2_000 // how often owned users whose log moved (or not yet confirmed) are re-mirrored
// A round skips a user whose replicas confirmed its log position under the current ring and membership; this
// often every owned user is checked anyway (positions and last entries compared with every replica), the safety
// net for a copy lost without any membership change. 60 s: a thirtieth of the idle cost of checking every round.
export const REBALANCE_FULL_INTERVAL_MS = 60_000
// After a membership or placement change the next rounds check every owned user too, not only the first: a member
// back with a new incarnation may answer the first check before it serves its new copy (still starting, or stale)
export const REBALANCE_FULL_ROUNDS_AFTER_CHANGE = 3
export const DIRECTORY_SYNC_INTERVAL_MS = 3_000 // digest exchange with one random peer, if ours changed since it matched
// The digest is exchanged with a peer whose last exchange matched only this often when nothing changed here (the
// anti-entropy round for a push that was lost); a changed directory is exchanged at the next DIRECTORY_SYNC_INTERVAL_MS,
// and the digest itself is recomputed from the store at least this often
export const DIRECTORY_ANTI_ENTROPY_MS = 60_000
export const REMIRROR_CONCURRENCY = 4 // users re-mirrored at once: the rest of the bandwidth stays with live traffic
export const RETRY_BACKOFF_MS = 200
export const POSITIONS_PER_REQUEST_MAX = 10_000 // users whose log position one request may ask for
export const MERGE_ATTEMPTS_MAX = 5 // a diverged copy that keeps taking writes is merged again, this many times
// After a (re)start, the members this node remembers (dead until heard from) are waited for this long before it
// leads a user without them: a restarted node's ring holds only the members it has heard, so it may take itself
// for the primary of users whose newer copies they hold. A member that is up is heard within a discovery round
// (2 s) and a heartbeat; one silent for the failure detector's dead time (4 s) past that is taken for dead.
export const START_SETTLE_MS = 6_000

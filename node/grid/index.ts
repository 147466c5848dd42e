// node/grid: what makes a node part of a grid — placement, replication, re-mirroring, directory replication,
// delivery routing and (with the protocol servers) session forwarding, on top of gossip/. README.md maps each
// concern to its file; `Grid` (grid.ts) is the face the rest of the daemon uses.

export { Grid } from './grid.ts'
export type { GridComponents, GridInit, GridStatus } from './grid.ts'
export { DIRECTORY_SYNC_INTERVAL_MS, MERGE_ATTEMPTS_MAX, POSITIONS_PER_REQUEST_MAX, REBALANCE_INTERVAL_MS, REMIRROR_CONCURRENCY, REPLICATION_TIMEOUT_MS, RETRY_BACKOFF_MS } from './constants.ts'
export { Placement } from './placement.ts'
export type { PlacementComponents, PlacementInit } from './placement.ts'
export type { RebalanceCounts } from './rebalance.ts'
export { replicatedMailStore } from './store.ts'
export { deliverFiltered, NOT_STORED } from './routing.ts'
export type { DeliveryFilter } from './routing.ts'
export { PROTOCOLS } from './wire.ts'
export { createSessionForwarder, ROUTE_TIMEOUT_MS, SESSION_HEADER_BYTES_MAX, SESSION_HEADER_TIMEOUT_MS } from './forward.ts'
export type { RouteContext, SessionAdopter, SessionForwarder, SessionForwarderInit, SessionHeader, SessionProtocol, SessionRouter } from './forward.ts'
export { StreamSocket } from './stream-socket.ts'

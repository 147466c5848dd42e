// node/grid: what makes a node part of a grid — placement, replication, re-mirroring, directory replication,
// delivery routing and (with the protocol servers) session forwarding, on top of gossip/.

export { Grid, REPLICATION_TIMEOUT_MS } from './grid.ts'
export type { GridComponents, GridInit, GridStatus } from './grid.ts'
export { replicatedMailStore } from './store.ts'
export { PROTOCOLS } from './wire.ts'
export { createSessionForwarder, ROUTE_TIMEOUT_MS, SESSION_HEADER_BYTES_MAX, SESSION_HEADER_TIMEOUT_MS } from './forward.ts'
export type { RouteContext, SessionAdopter, SessionForwarder, SessionForwarderInit, SessionHeader, SessionProtocol, SessionRouter } from './forward.ts'
export { StreamSocket } from './stream-socket.ts'

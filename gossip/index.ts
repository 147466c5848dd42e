// gossip/: membership, failure detection, load gossip, placement and node-to-node RPC over libp2p.
// The face of the package: the interface (types.ts), its options, and the factory.

import { GossipService } from './gossip.ts'
import type { GossipComponents, GossipInit } from './gossip.ts'
import type { Gossip } from './types.ts'

export type * from './types.ts'
export { RpcError } from './types.ts'
export type { GossipComponents, GossipInit } from './gossip.ts'
export { createRing, ringVersion } from './ring.ts'
export type { RingNode } from './ring.ts'
export { capacityWeight } from './load.ts'
export { clusterTag, loadOrCreatePeerKey } from './identity.ts'
export { writeFileDurable } from './durable.ts'
export * as limits from './constants.ts'

export function createGossip (components: GossipComponents, init: GossipInit): Gossip {
  return new GossipService(components, init)
}

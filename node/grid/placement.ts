// Where a key lives: the ring users (and fixed keys such as the outbound queue's shards) are placed on, a key's
// replicas and primary, and the majority rule for mailbox changes. Every other piece of the grid asks this.

import type { Gossip, Ring } from '../../gossip/types.ts'
import { createRing } from '../../gossip/ring.ts'

export interface PlacementComponents {
  gossip: Pick<Gossip, 'self' | 'ring' | 'members'>
}

export interface PlacementInit {
  replicas: number // R, 1 to 5
}

export class Placement {
  readonly r: number
  private readonly gossip: PlacementComponents['gossip']
  private placed: { from: Ring, ring: Ring } | undefined

  constructor (components: PlacementComponents, init: PlacementInit) {
    this.gossip = components.gossip
    if (!(Number.isInteger(init.replicas) && init.replicas >= 1 && init.replicas <= 5)) throw new RangeError('replicas must be 1 to 5')
    this.r = init.replicas
  }

  get self (): string {
    return this.gossip.self
  }

  replicasOf (user: string): string[] {
    return this.ring().replicas(user, this.r)
  }

  /**
   * The ring users are placed on: alive members in state alive. A draining member (an operator stops it) is
   * left out, so its users move to the others; it stays a source for their catch-up until it leaves.
   */
  ring (): Ring {
    const ring = this.gossip.ring()
    // gossip hands out the same ring object until the membership changes (a state change included): the
    // placement derived from it is kept with it, so the write path does not copy the member list every time
    if (ring === this.placed?.from) return this.placed.ring
    const draining = new Set(this.gossip.members().filter(m => m.status === 'alive' && m.state === 'draining').map(m => m.id))
    const rest = ring.nodes.filter(n => !draining.has(n.id))
    const placed = draining.size === 0 || rest.length === 0 ? ring : createRing(rest)
    this.placed = { from: ring, ring: placed }
    return placed
  }

  primaryOf (user: string): string | null {
    return this.ring().primary(user)
  }

  isPrimary (user: string): boolean {
    return this.primaryOf(user) === this.self
  }

  /**
   * Mailbox changes (flags, expunge, rename, ...) need this node to see a majority of the grid's members
   * (those not gone for good), so the two sides of a partition never both change a mailbox; a grid of one or
   * two cannot form a majority after a loss, so there the survivor goes on and the merge repairs afterwards.
   * Deliveries need no quorum: both sides take mail, and the merge keeps every message.
   */
  hasQuorum (): boolean {
    const known = this.gossip.members().filter(m => m.status !== 'left')
    const alive = known.filter(m => m.status === 'alive')
    return known.length <= 2 || alive.length * 2 > known.length
  }
}

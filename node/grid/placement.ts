// Where a key lives: the ring users (and fixed keys such as the outbound queue's shards) are placed on, a key's
// replicas and primary, and the majority rule for mailbox changes. Every other piece of the grid asks this.
//
// A member whose data disk fell below its free-space floor (it gossips `diskLow`) takes no new users and no new
// copies, yet keeps serving the users it holds. Taking it off the ring would do neither: every one of its users
// would move at once (copied to others, its copies dropped after the hand-off, so its disk empties, it recovers,
// the users move back: a slow flap), and the others would take all of its load. Instead the member keeps a user
// exactly when it held it as a replica when it went low: the user was created before `since`, and the member was
// among the first R for the user on the ring it published with the alarm (`members`, frozen then). For every other
// key it is skipped, and the next members in rank order take its place. Every node computes this from the same
// facts (the heartbeat and the user's directory record), so all agree.
//
// Why nothing is lost or deleted early (invariant 5): a member that keeps a user keeps its rank, so nothing moves;
// a user whose set changes goes through the path every ring change takes: the new primary catches up from the
// alive replicas (who hold every acknowledged write), copies to the new replica, and only then does the hand-off
// let the old copy go. The rule never adds the low member to a set it was not in, except that R copies come before
// room: when fewer than R members with room remain, low members fill the set in rank order.

import { hash } from 'node:crypto'
import type { DiskLow, Gossip, Member, Ring } from '../../gossip/types.ts'
import { createRing } from '../../gossip/ring.ts'
import { DISK_LOW_MEMBERS_MAX } from '../../gossip/constants.ts'

export interface PlacementComponents {
  gossip: Pick<Gossip, 'self' | 'ring' | 'members' | 'memberCounts'>
  /** When the user was created (the directory record), undefined when unknown; fixed keys answer 0. */
  createdOf: (key: string) => number | undefined
}

export interface PlacementInit {
  replicas: number // R, 1 to 5
}

/** What placement reads of a member (a gossip Member, or a member row of a node's status). */
export interface PlacedMember {
  id: string
  status: string
  state: string
  weight: number
  diskLow?: DiskLow
}

/**
 * The ring keys are placed on, from a member list: alive members in state alive (a draining member is left out so
 * its users move to the others, unless every member drains), with low-disk members kept only for the keys they
 * held when they went low (see the top of this file). Node and `mailgrid user where` both compute it with this.
 */
export function placementRing (members: readonly PlacedMember[], r: number, createdOf: (key: string) => number | undefined): Ring {
  const up = members.filter(m => m.status === 'alive' && (m.state === 'alive' || m.state === 'draining'))
  const staying = up.filter(m => m.state === 'alive')
  const placed = staying.length > 0 ? staying : up
  return withLowDisks(createRing(placed.map(m => ({ id: m.id, weight: m.weight }))), placed, r, createdOf)
}

/** `ring`, with the members of `members` that gossip `diskLow` kept only for the keys they already held. */
export function withLowDisks (ring: Ring, members: readonly PlacedMember[], r: number, createdOf: (key: string) => number | undefined): Ring {
  const onRing = new Set(ring.nodes.map(n => n.id))
  const low = new Map<string, { since: number, frozen: Ring | null }>()
  for (const m of members) {
    if (m.diskLow?.members === undefined || !onRing.has(m.id)) continue // absent (or null from a loose caller)
    let frozen: Ring | null
    try {
      frozen = createRing(m.diskLow.members.map(([id, weight]) => ({ id, weight })))
    } catch {
      frozen = null // a malformed list (a duplicate id): the member keeps nothing it is not needed for
    }
    low.set(m.id, { since: m.diskLow.since, frozen })
  }
  if (low.size === 0) return ring
  const version = hash('sha256', JSON.stringify([
    ring.version, [...low].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0).map(([id, l]) => [id, l.since, l.frozen?.version ?? null])
  ]), 'hex')

  /** Whether `id` may hold `key`: any member with room; a low one only for a key it held when it went low. */
  const keeps = (id: string, key: string, created: number | undefined): boolean => {
    const l = low.get(id)
    if (l === undefined) return true
    return created !== undefined && created < l.since && l.frozen !== null && l.frozen.replicas(key, r).includes(id)
  }

  const replicas = (key: string, n: number): string[] => {
    if (!Number.isInteger(n) || n < 0) throw new RangeError('ring: r must be a non-negative integer')
    const ranked = ring.replicas(key, ring.nodes.length)
    const created = createdOf(key)
    const out: string[] = []
    const skipped: string[] = []
    for (const id of ranked) {
      if (out.length === n) break
      if (keeps(id, key, created)) out.push(id)
      else skipped.push(id)
    }
    // fewer members with room than copies: the copies still exist, on low members in rank order
    for (const id of skipped) {
      if (out.length === n) break
      out.push(id)
    }
    return out
  }

  return {
    version,
    nodes: ring.nodes,
    replicas,
    primary: (key: string) => replicas(key, 1)[0] ?? null
  }
}

/**
 * The members this node is placed among right now, for the alarm it gossips when its disk goes low (DiskLow.members):
 * itself first, then every other member not gone for good (alive, suspect or dead, in state alive or draining) by id,
 * at most DISK_LOW_MEMBERS_MAX. The dead are counted so that a node low at start, which knows the others only as
 * remembered (dead until heard from), lists the grid it was part of; a user it had taken over from a member now
 * dead is then handed back to a member with room.
 */
export function lowDiskMembers (self: string, members: readonly Member[]): Array<[string, number]> {
  const me = members.find(m => m.id === self)
  const others = members
    .filter(m => m.id !== self && m.status !== 'left' && (m.state === 'alive' || m.state === 'draining'))
    .sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  return [...(me === undefined ? [] : [me]), ...others].slice(0, DISK_LOW_MEMBERS_MAX).map(m => [m.id, m.weight])
}

export class Placement {
  readonly r: number
  private readonly gossip: PlacementComponents['gossip']
  private readonly createdOf: PlacementComponents['createdOf']
  private placed: { from: Ring, ring: Ring } | undefined

  constructor (components: PlacementComponents, init: PlacementInit) {
    this.gossip = components.gossip
    this.createdOf = components.createdOf
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
   * The ring users are placed on (placementRing): alive members in state alive, low-disk members only for the users
   * they hold. A draining member (an operator stops it) is left out, so its users move to the others; it stays a
   * source for their catch-up until it leaves.
   */
  ring (): Ring {
    const ring = this.gossip.ring()
    // gossip hands out the same ring object until the membership changes (a state change or a disk alarm
    // included): the placement derived from it is kept with it, so the write path does not copy the member list
    if (ring === this.placed?.from) return this.placed.ring
    const alive = new Set(ring.nodes.map(n => n.id))
    const placed = placementRing(this.gossip.members().filter(m => alive.has(m.id)), this.r, this.createdOf)
    this.placed = { from: ring, ring: placed }
    return placed
  }

  /** The member list to gossip with this node's disk alarm (lowDiskMembers). */
  lowDiskMembers (): Array<[string, number]> {
    return lowDiskMembers(this.self, this.gossip.members())
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
    // every write asks: counted without copying the members (members() copies each one: 3.7 % of a node's busy
    // time under the mixed IMAP load, most of it structuredClone)
    const { known, alive } = this.gossip.memberCounts()
    return known <= 2 || alive * 2 > known
  }
}

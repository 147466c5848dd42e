// The grid on one node, as the rest of the daemon sees it: a facade that composes the replication layer's
// pieces (README.md in this folder maps each concern to its file) — placement of users on the ring, log
// shipping from a user's primary to its replicas (every acknowledged write is durable on every alive replica),
// catch-up of a new primary, merging of diverged copies, re-mirroring and hand-off after a membership change,
// directory replication to every node, and routing of deliveries to primaries.

import type { Logger } from 'pino'
import type { DiskLow, Gossip, LoadSample, Ring } from '../../gossip/types.ts'
import { isQueueShard } from '../../store/index.ts'
import type { AppendResult, DeliveryTarget, OpOptions, QuotaUsage, Store } from '../../store/index.ts'
import { Placement } from './placement.ts'
import { ReplicaState } from './state.ts'
import { Shipping } from './shipping.ts'
import { CatchUp } from './catch-up.ts'
import { DivergenceRepair } from './divergence.ts'
import { Routing } from './routing.ts'
import type { DeliveryFilter } from './routing.ts'
import { HandOff } from './handoff.ts'
import { Rebalancer } from './rebalance.ts'
import { DirectorySync } from './directory-sync.ts'

export { DIRECTORY_SYNC_INTERVAL_MS, MERGE_ATTEMPTS_MAX, POSITIONS_PER_REQUEST_MAX, REBALANCE_INTERVAL_MS, REMIRROR_CONCURRENCY, REPLICATION_TIMEOUT_MS, RETRY_BACKOFF_MS, START_SETTLE_MS } from './constants.ts'

export interface GridComponents {
  gossip: Gossip
  store: Store
  logger: Logger
  now?: () => number
  /** Told how long each write took to be durable on the other alive replicas (the replication lag, seconds). */
  onReplicated?: (seconds: number) => void
}

export interface GridInit {
  replicas: number // R, 1 to 5
  /** Keys other than users that are placed and replicated like a user's mail (the outbound queue's shards). */
  keys?: readonly string[]
  /** How long after its start the node waits for the members it remembers before it leads without them (START_SETTLE_MS). */
  startSettleMs?: number
}

export interface GridStatus {
  self: string
  ringVersion: string
  replicas: number
  members: Array<{
    id: string, name: string, status: string, state: string, weight: number, host: string, addrs: string[], services: Record<string, number>, sessions: number, cpuPct: number,
    meta: Record<string, unknown>, diskFreeBytes?: number, diskLow?: DiskLow, // present while its disk is below its floor: it takes no new users or copies
    load?: LoadSample, lastSeen?: number // its last heartbeat's whole load sample, and when this node last heard from it (ms, local clock)
  }>
  usersOwned: number
  usersReplicated: number
  underReplicated: number
  handoffPending: number // copies this node still holds of users it no longer replicates (handed over, then dropped)
  remirroredBytes: number
}

export class Grid {
  private readonly gossip: Gossip
  private readonly placer: Placement
  private readonly shipping: Shipping
  private readonly catchUp: CatchUp
  private readonly repair: DivergenceRepair
  private readonly routing: Routing
  private readonly handOff: HandOff
  private readonly rebalancer: Rebalancer
  private readonly directory: DirectorySync
  private running = false
  private unsubscribe: (() => void) | undefined

  constructor (components: GridComponents, init: GridInit) {
    const { gossip, store } = components
    const logger = components.logger.child({ ns: 'grid' })
    this.gossip = gossip
    // a key's creation time decides whether a member low on disk keeps it (placement.ts): a user's is in its
    // directory record; the fixed keys (queue shards) have always existed
    const fixed = new Set(init.keys ?? [])
    const createdOf = (key: string): number | undefined => fixed.has(key) || isQueueShard(key) ? 0 : store.userCreatedAt(key)
    this.placer = new Placement({ gossip, createdOf }, { replicas: init.replicas })
    const placement = this.placer
    const state = new ReplicaState()
    // shipping and merging need each other (a diverged replica is merged, a merge ships its result): the
    // merge is looked up when it is called
    this.shipping = new Shipping({
      gossip, store, logger, placement, state, merge: async (user, peer, position) => await this.repair.merge(user, peer, position), onReplicated: components.onReplicated
    })
    const replicate = this.shipping.replicate.bind(this.shipping)
    this.repair = new DivergenceRepair({ gossip, store, logger, placement, state, replicate })
    const merge = this.repair.merge.bind(this.repair)
    this.catchUp = new CatchUp({ gossip, store, logger, placement, state, merge }, { startSettleMs: init.startSettleMs })
    const lead = this.catchUp.lead.bind(this.catchUp)
    this.routing = new Routing({ gossip, store, placement, lead, replicate, held: this.shipping.held })
    this.handOff = new HandOff({ gossip, store, logger, placement, lead, replicate, merge, dropCopy: this.repair.dropCopy.bind(this.repair) })
    this.rebalancer = new Rebalancer({
      gossip, store, logger, placement, state, lead, merge,
      sync: this.shipping.sync.bind(this.shipping),
      handBack: this.handOff.handBack.bind(this.handOff)
    }, { keys: init.keys })
    this.directory = new DirectorySync({ gossip, store, logger })
  }

  get self (): string {
    return this.gossip.self
  }

  /** Bytes of message bodies this node has shipped to replicas (status, bench:grid). */
  get remirroredBytes (): number {
    return this.shipping.remirroredBytes
  }

  // ---- placement (placement.ts) ------------------------------------------------------------------------

  replicasOf (user: string): string[] {
    return this.placer.replicasOf(user)
  }

  /** The ring users are placed on: alive members in state alive (a draining one is left out). */
  placement (): Ring {
    return this.placer.ring()
  }

  /** Marks this node draining (its users move away) or back to alive. */
  setState (state: 'alive' | 'draining' | 'leaving'): void {
    this.gossip.update({ state })
    this.scheduleRebalance()
  }

  /**
   * This node's disk fell below its free-space floor (or, with null, came back above it with the margin): gossiped
   * at once with the members it is placed among now, so every node stops placing new users and new copies here
   * while the users it holds stay (placement.ts).
   */
  setDiskLow (low: { since: number, floorBytes: number } | null): void {
    this.gossip.update({ diskLow: low === null ? null : { since: low.since, floorBytes: low.floorBytes, members: this.placer.lowDiskMembers() } })
    this.scheduleRebalance()
  }

  primaryOf (user: string): string | null {
    return this.placer.primaryOf(user)
  }

  isPrimary (user: string): boolean {
    return this.placer.isPrimary(user)
  }

  /** Whether this node sees a majority of the grid's members, which mailbox changes need. */
  hasQuorum (): boolean {
    return this.placer.hasQuorum()
  }

  // ---- lifecycle ---------------------------------------------------------------------------------------

  async start (): Promise<void> {
    if (this.running) return
    this.running = true
    await this.catchUp.load()
    this.shipping.handle()
    this.routing.handle()
    this.repair.handle()
    this.handOff.handle()
    this.directory.handle()
    this.directory.start()
    this.rebalancer.start()
    // another member's disk alarm changes where keys go: re-mirror now rather than at the next periodic round
    const alarms = new Map<string, string>()
    this.unsubscribe = this.gossip.onChange(e => {
      const sig = JSON.stringify(e.member.diskLow ?? null)
      if ((alarms.get(e.member.id) ?? 'null') === sig) return
      alarms.set(e.member.id, sig)
      this.scheduleRebalance()
    })
  }

  async stop (): Promise<void> {
    if (!this.running) return
    this.running = false
    this.unsubscribe?.()
    this.unsubscribe = undefined
    this.directory.stop()
    await this.rebalancer.stop()
    await this.catchUp.stop()
  }

  // ---- the write path: lead (catch-up.ts), then replicate (shipping.ts) --------------------------------

  /** Before a write of `user`: this node must be its primary and caught up with the other alive replicas. */
  async lead (user: string, opts?: OpOptions): Promise<void> {
    await this.catchUp.lead(user, opts)
  }

  /**
   * Whether sessions must not see `user` on this node: it started the user empty while the user's mail may exist
   * on a member it could not reach, and has not taken in such a copy yet (catch-up.ts). Deliveries are taken.
   */
  provisional (user: string): boolean {
    return this.catchUp.provisional(user)
  }

  /** Waits until every other alive replica of `user` has this node's log durable (or fails 'temp'). */
  async replicate (user: string, opts?: OpOptions & { except?: string, merging?: boolean }): Promise<void> {
    await this.shipping.replicate(user, opts)
  }

  /** Takes what a diverged replica has into our log, makes that durable on our other replicas, then resets it (divergence.ts). */
  async merge (user: string, peer: string, theirPosition: number): Promise<void> {
    await this.repair.merge(user, peer, theirPosition)
  }

  // ---- deliveries (routing.ts) -----------------------------------------------------------------------------

  /** Hands each target's copy to its user's primary; resolves when every copy is durable on its replicas. */
  async deliver (raw: Buffer, targets: DeliveryTarget[], opts?: OpOptions & { internalDate?: number }): Promise<AppendResult[]> {
    return await this.routing.deliver(raw, targets, opts)
  }

  async deliverLocal (raw: Buffer, targets: DeliveryTarget[], opts?: OpOptions & { internalDate?: number }): Promise<AppendResult[]> {
    return await this.routing.deliverLocal(raw, targets, opts)
  }

  /** What runs on a delivery this node stores as the users' primary, before it is stored (node/rules: Sieve). */
  setDeliveryFilter (filter: DeliveryFilter | null): void {
    this.routing.setFilter(filter)
  }

  async quota (user: string): Promise<QuotaUsage> {
    return await this.routing.quota(user)
  }

  // ---- re-mirroring (rebalance.ts, handoff.ts) -------------------------------------------------------------

  scheduleRebalance (): void {
    this.rebalancer.schedule()
  }

  /** Users this node is primary of whose replicas are not all confirmed at its log position. */
  async underReplicated (): Promise<number> {
    return await this.rebalancer.underReplicated()
  }

  // ---- status ----------------------------------------------------------------------------------------------

  status (): GridStatus {
    return {
      self: this.self,
      ringVersion: this.placement().version,
      replicas: this.placer.r,
      members: this.gossip.members().map(m => ({
        id: m.id, name: m.name, status: m.status, state: m.state, weight: m.weight, host: m.host, addrs: m.addrs, services: m.services,
        sessions: m.load.sessions, cpuPct: m.load.cpuPct, meta: m.meta, diskFreeBytes: m.load.diskFreeBytes, ...(m.diskLow?.members !== undefined ? { diskLow: m.diskLow } : {}),
        load: { ...m.load }, lastSeen: m.lastSeen
      })),
      ...this.rebalancer.counts(),
      remirroredBytes: this.remirroredBytes
    }
  }
}

// Re-mirroring: after every membership change (and every REBALANCE_INTERVAL_MS) this node, for each key it is
// primary of, catches up and brings every replica to its position, merging a copy that diverged; it checks
// replicas it believed confirmed, hands back copies it no longer replicates (handoff.ts), and counts what is
// still under-replicated for status and for the meta it publishes.

import type { Logger } from 'pino'
import type { Gossip, RpcMessage } from '../../gossip/types.ts'
import type { Store } from '../../store/index.ts'
import { POSITIONS_PER_REQUEST_MAX, REBALANCE_INTERVAL_MS, REMIRROR_CONCURRENCY } from './constants.ts'
import { PROTOCOLS } from './wire.ts'
import { DivergedError } from './shipping.ts'
import type { Shipping } from './shipping.ts'
import type { Placement } from './placement.ts'
import type { ReplicaState } from './state.ts'
import type { CatchUp } from './catch-up.ts'
import type { DivergenceRepair } from './divergence.ts'
import type { HandOff } from './handoff.ts'

export interface RebalanceComponents {
  gossip: Pick<Gossip, 'call' | 'update' | 'onChange'>
  store: Store
  logger: Logger
  placement: Placement
  state: ReplicaState
  lead: CatchUp['lead']
  sync: Shipping['sync']
  merge: DivergenceRepair['merge']
  handBack: HandOff['handBack']
}

export interface RebalanceInit {
  /** Keys other than users that are placed and replicated like a user's mail (the outbound queue's shards). */
  keys?: readonly string[]
}

/** What the last round (or underReplicated) counted, under the names GridStatus gives them. */
export interface RebalanceCounts {
  usersOwned: number
  usersReplicated: number
  underReplicated: number
  handoffPending: number
}

export class Rebalancer {
  private readonly gossip: RebalanceComponents['gossip']
  private readonly store: Store
  private readonly log: Logger
  private readonly placement: Placement
  private readonly state: ReplicaState
  private readonly lead: CatchUp['lead']
  private readonly sync: Shipping['sync']
  private readonly merge: DivergenceRepair['merge']
  private readonly handBack: HandOff['handBack']
  private readonly keys: readonly string[]
  private readonly fixed: ReadonlySet<string>
  private unsubscribe: (() => void) | undefined
  private timer: NodeJS.Timeout | undefined
  private rebalancing: Promise<void> | null = null
  private rebalanceAgain = false
  private running = false
  private under = 0
  private owned = 0
  private replicated = 0
  private foreign = 0 // copies of users this node no longer replicates, still held after the last hand-off round
  private published = ''

  constructor (components: RebalanceComponents, init: RebalanceInit) {
    this.gossip = components.gossip
    this.store = components.store
    this.log = components.logger
    this.placement = components.placement
    this.state = components.state
    this.lead = components.lead
    this.sync = components.sync
    this.merge = components.merge
    this.handBack = components.handBack
    this.keys = init.keys ?? []
    this.fixed = new Set(this.keys)
  }

  start (): void {
    if (this.running) return
    this.running = true
    // Placement depends on who is alive, their state, weight and incarnation; not on load or the meta every
    // node publishes after a rebalance (reacting to that would make rebalances trigger each other forever)
    const seen = new Map<string, string>()
    this.unsubscribe = this.gossip.onChange(e => {
      const m = e.member
      const sig = `${m.status}|${m.state}|${m.weight}|${m.incarnation}`
      if (seen.get(m.id) === sig) return
      seen.set(m.id, sig)
      this.schedule()
    })
    this.timer = setInterval(() => this.schedule(), REBALANCE_INTERVAL_MS)
    this.timer.unref()
    this.schedule()
  }

  async stop (): Promise<void> {
    if (!this.running) return
    this.running = false
    clearInterval(this.timer)
    this.timer = undefined
    this.unsubscribe?.()
    this.unsubscribe = undefined
    await this.rebalancing?.catch(() => {})
  }

  schedule (): void {
    if (!this.running) return
    if (this.rebalancing !== null) {
      this.rebalanceAgain = true
      return
    }
    this.rebalancing = (async () => {
      do {
        this.rebalanceAgain = false
        try {
          await this.rebalance()
        } catch (err) {
          this.log.warn({ err }, 'rebalance_failed')
        }
      } while (this.rebalanceAgain && this.running)
    })().finally(() => { this.rebalancing = null })
  }

  counts (): RebalanceCounts {
    return { usersOwned: this.owned, usersReplicated: this.replicated, underReplicated: this.under, handoffPending: this.foreign }
  }

  /** For every user this node is primary of: catch up, then bring every replica to our position. */
  private async rebalance (): Promise<void> {
    const users = await this.allKeys()
    const mine = users.filter(u => this.placement.isPrimary(u))
    await this.verifyReplicas(mine)
    let under = 0
    let replicated = 0
    const queue = [...mine]
    const worker = async (): Promise<void> => {
      for (let u = queue.shift(); u !== undefined && this.running; u = queue.shift()) {
        try {
          await this.lead(u)
          const target = await this.store.logPosition(u)
          for (const peer of this.placement.replicasOf(u)) {
            if (peer === this.placement.self) continue
            const key = `${u}\x00${peer}`
            if ((this.state.confirmed.get(key) ?? -1) >= target) continue
            try {
              await this.sync(u, peer, target)
            } catch (err) {
              if (err instanceof DivergedError) {
                await this.merge(u, peer, err.position).catch(e => this.log.warn({ user: u, peer, err: String(e) }, 'merge_failed'))
              }
              under++
              this.log.debug({ user: u, peer, err: String(err) }, 'remirror_pending')
            }
          }
        } catch (err) {
          under++
          this.log.debug({ user: u, err: String(err) }, 'remirror_pending')
        }
      }
    }
    await Promise.all(Array.from({ length: REMIRROR_CONCURRENCY }, () => worker()))
    // copies this node holds of users it no longer replicates: hand them to the primary, drop them when it
    // confirms every replica has all of it
    this.foreign = await this.handBack(users, () => this.running)
    // the counts operators read are of users; the queue's shards are replicated alike but not counted as users
    for (const u of users) if (!this.fixed.has(u) && this.placement.replicasOf(u).includes(this.placement.self)) replicated++
    this.owned = mine.filter(u => !this.fixed.has(u)).length
    this.replicated = replicated
    this.under = under
    const meta = { ring: this.placement.ring().version, usersOwned: this.owned, underReplicated: this.under }
    if (JSON.stringify(meta) !== this.published) {
      this.published = JSON.stringify(meta)
      this.gossip.update({ meta })
    }
  }

  /**
   * A replica confirmed at our position may have taken entries from another primary since (views differ for a
   * moment around every membership change): compare each replica's last entry with ours, one request per peer,
   * and forget what we believed about those that differ, so the next sync finds the divergence and merges.
   */
  private async verifyReplicas (users: string[]): Promise<void> {
    const byPeer = new Map<string, string[]>()
    for (const u of users) {
      for (const p of this.placement.replicasOf(u)) {
        if (p !== this.placement.self) byPeer.set(p, [...(byPeer.get(p) ?? []), u])
      }
    }
    await Promise.all([...byPeer].map(async ([peer, list]) => {
      for (let i = 0; i < list.length; i += POSITIONS_PER_REQUEST_MAX) {
        const part = list.slice(i, i + POSITIONS_PER_REQUEST_MAX)
        let res: RpcMessage
        try {
          res = await this.gossip.call(peer, PROTOCOLS.position, { header: { users: part, last: true } })
        } catch {
          return
        }
        const positions = res.header.positions as Record<string, number>
        const last = res.header.last as Record<string, string | null>
        for (const u of part) {
          const mine = await this.store.logPosition(u)
          const theirs = positions[u] ?? 0
          const [ours] = theirs > 0 && theirs <= mine ? await this.store.readLog(u, theirs, 1) : []
          if (theirs > mine || (theirs > 0 && ours?.eid !== last[u])) {
            this.state.confirmed.delete(`${u}\x00${peer}`)
            if (theirs > mine) this.state.ready.delete(u) // they hold more than we do: catch up (or merge) on the next lead
          } else {
            this.state.confirmed.set(`${u}\x00${peer}`, theirs)
          }
        }
      }
    }))
  }

  /** Every key this node places: the directory's users, then the fixed keys (queue shards). */
  private async allKeys (): Promise<string[]> {
    return [...(await this.store.listUsers()).map(u => u.address), ...this.keys]
  }

  /** Users this node is primary of whose replicas are not all confirmed at its log position. */
  async underReplicated (): Promise<number> {
    let n = 0
    let owned = 0
    let replicated = 0
    const ring = this.placement.ring()
    for (const u of await this.allKeys()) {
      const reps = ring.replicas(u, this.placement.r)
      if (reps.includes(this.placement.self) && !this.fixed.has(u)) replicated++
      if (reps[0] !== this.placement.self) continue
      if (!this.fixed.has(u)) owned++
      const target = await this.store.logPosition(u)
      for (const peer of this.placement.replicasOf(u)) {
        if (peer !== this.placement.self && (this.state.confirmed.get(`${u}\x00${peer}`) ?? -1) < target) { n++; break }
      }
    }
    this.under = n
    this.owned = owned
    this.replicated = replicated
    return n
  }
}

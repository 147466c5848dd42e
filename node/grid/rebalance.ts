// Re-mirroring: after every membership change (and every REBALANCE_INTERVAL_MS) this node, for each key it is
// primary of, catches up and brings every replica to its position, merging a copy that diverged; it checks
// replicas it believed confirmed, hands back copies it no longer replicates (handoff.ts), and counts what is
// still under-replicated for status and for the meta it publishes.
// Most rounds find nothing to do, so a round skips a user whose every replica confirmed (and was compared at) its
// log position under the current ring, until its log moves: the periodic round of an idle node with many users
// reads only positions from memory. After a membership change (a member back with a new incarnation may have lost
// its copy), a placement change asked for by this node, and every REBALANCE_FULL_INTERVAL_MS, a round checks every
// owned user again, as every round did before.

import type { Logger } from 'pino'
import type { Gossip, RpcMessage } from '../../gossip/types.ts'
import type { Store } from '../../store/index.ts'
import {
  POSITIONS_PER_REQUEST_MAX, REBALANCE_FULL_INTERVAL_MS, REBALANCE_FULL_ROUNDS_AFTER_CHANGE, REBALANCE_INTERVAL_MS, REMIRROR_CONCURRENCY
} from './constants.ts'
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
  private unsubscribeDirectory: (() => void) | undefined
  private timer: NodeJS.Timeout | undefined
  private fullTimer: NodeJS.Timeout | undefined
  private rebalancing: Promise<void> | null = null
  private rebalanceAgain = false
  private fullDue = true // the next round checks every owned user
  private fullRounds = 0 // and this many rounds after it, after a membership or placement change
  // user → the log position every replica confirmed, and was compared at, under that ring: skipped until it moves
  private readonly settled = new Map<string, { position: number, ring: string }>()
  // foreign users (this node no longer replicates them) whose copy here was empty under that ring
  private readonly emptyForeign = new Map<string, string>()
  private keyList: string[] | null = null // the directory's users and the fixed keys, until the directory changes
  private directoryChanges = 0 // a listing read across a change is not kept
  private layout: { ring: string, keys: string[], mine: string[], foreign: string[], owned: number, replicated: number } | null = null
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
    this.unsubscribeDirectory = this.store.onDirectoryChange(() => {
      this.directoryChanges++
      this.keyList = null
    })
    this.timer = setInterval(() => this.run(false), REBALANCE_INTERVAL_MS)
    this.timer.unref()
    this.fullTimer = setInterval(() => this.run(true), REBALANCE_FULL_INTERVAL_MS)
    this.fullTimer.unref()
    this.schedule()
  }

  async stop (): Promise<void> {
    if (!this.running) return
    this.running = false
    clearInterval(this.timer)
    clearInterval(this.fullTimer)
    this.timer = undefined
    this.fullTimer = undefined
    this.unsubscribe?.()
    this.unsubscribe = undefined
    this.unsubscribeDirectory?.()
    this.unsubscribeDirectory = undefined
    await this.rebalancing?.catch(() => {})
  }

  /** Rounds that check every owned user, after a membership or placement change (or when asked). */
  schedule (): void {
    this.fullRounds = REBALANCE_FULL_ROUNDS_AFTER_CHANGE
    this.run(true)
  }

  private run (full: boolean): void {
    if (!this.running) return
    if (full) this.fullDue = true
    if (this.rebalancing !== null) {
      this.rebalanceAgain = true
      return
    }
    this.rebalancing = (async () => {
      do {
        this.rebalanceAgain = false
        const full = this.fullDue || this.fullRounds > 0
        if (!this.fullDue && this.fullRounds > 0) this.fullRounds--
        this.fullDue = false
        try {
          await this.rebalance(full)
        } catch (err) {
          this.log.warn({ err }, 'rebalance_failed')
        }
      } while (this.rebalanceAgain && this.running)
    })().finally(() => { this.rebalancing = null })
  }

  counts (): RebalanceCounts {
    return { usersOwned: this.owned, usersReplicated: this.replicated, underReplicated: this.under, handoffPending: this.foreign }
  }

  /**
   * For every user this node is primary of: catch up, then bring every replica to our position. A round that is not
   * `full` skips the users settled at their current position under the current ring.
   */
  private async rebalance (full: boolean): Promise<void> {
    const ring = this.placement.ring().version
    if (full) {
      this.settled.clear()
      this.emptyForeign.clear()
      this.keyList = null
    }
    const layout = await this.placed(ring)
    const todo: string[] = []
    for (const u of layout.mine) if (!(await this.isSettled(u, ring))) todo.push(u)
    const verified = await this.verifyReplicas(todo)
    let under = 0
    let next = 0
    const worker = async (): Promise<void> => {
      for (let u = todo[next++]; u !== undefined && this.running; u = todo[next++]) {
        this.settled.delete(u)
        let settled = true
        try {
          await this.lead(u)
          const target = await this.store.logPosition(u)
          for (const peer of this.placement.replicasOf(u)) {
            if (peer === this.placement.self) continue
            const key = `${u}\x00${peer}`
            if ((this.state.confirmed.get(key) ?? -1) >= target) {
              // confirmed from an earlier shipment, and compared with the replica's copy in this round (or not)
              if (!verified.has(key)) settled = false
              continue
            }
            try {
              await this.sync(u, peer, target)
              if ((this.state.confirmed.get(key) ?? -1) < target) settled = false
            } catch (err) {
              settled = false
              if (err instanceof DivergedError) {
                await this.merge(u, peer, err.position).catch(e => this.log.warn({ user: u, peer, err: String(e) }, 'merge_failed'))
              }
              under++
              this.log.debug({ user: u, peer, err: String(err) }, 'remirror_pending')
            }
          }
          if (settled && this.placement.ring().version === ring) this.settled.set(u, { position: target, ring })
        } catch (err) {
          under++
          this.log.debug({ user: u, err: String(err) }, 'remirror_pending')
        }
      }
    }
    await Promise.all(Array.from({ length: REMIRROR_CONCURRENCY }, () => worker()))
    // copies this node holds of users it no longer replicates: hand them to the primary, drop them when it
    // confirms every replica has all of it (an empty copy is looked at again after a full round)
    const foreign = layout.foreign.filter(u => this.emptyForeign.get(u) !== ring)
    this.foreign = await this.handBack(foreign, () => this.running, u => { this.emptyForeign.set(u, ring) })
    // the counts operators read are of users; the queue's shards are replicated alike but not counted as users
    this.owned = layout.owned
    this.replicated = layout.replicated
    this.under = under
    const meta = { ring: this.placement.ring().version, usersOwned: this.owned, underReplicated: this.under }
    if (JSON.stringify(meta) !== this.published) {
      this.published = JSON.stringify(meta)
      this.gossip.update({ meta })
    }
  }

  /** Whether every replica of `user` confirmed its current position under `ring` (and nothing since asks for a look). */
  private async isSettled (user: string, ring: string): Promise<boolean> {
    const s = this.settled.get(user)
    if (s === undefined || s.ring !== ring || this.state.ready.get(user)?.ring !== ring) return false
    if (this.state.provisional.has(user) || this.state.mergeInto.has(user)) return false
    if (await this.store.logPosition(user) !== s.position) return false
    for (const peer of this.placement.replicasOf(user)) {
      if (peer !== this.placement.self && (this.state.confirmed.get(`${user}\x00${peer}`) ?? -1) < s.position) return false
    }
    return true
  }

  /** Which keys this node is primary of, which it no longer replicates, and the counts: kept while the ring and the directory stay. */
  private async placed (ring: string): Promise<NonNullable<Rebalancer['layout']>> {
    let keys = this.running ? this.keyList : null // stopped, nothing tells us of directory changes
    if (keys === null) {
      const changes = this.directoryChanges
      keys = await this.allKeys()
      if (changes === this.directoryChanges) this.keyList = keys
    }
    if (this.layout !== null && this.layout.ring === ring && this.layout.keys === keys) return this.layout
    const mine: string[] = []
    const foreign: string[] = []
    let owned = 0
    let replicated = 0
    for (const u of keys) {
      const reps = this.placement.replicasOf(u)
      if (reps[0] === this.placement.self) {
        mine.push(u)
        if (!this.fixed.has(u)) owned++
      }
      if (reps.includes(this.placement.self)) {
        if (!this.fixed.has(u)) replicated++
      } else {
        foreign.push(u)
      }
    }
    this.layout = { ring, keys, mine, foreign, owned, replicated }
    return this.layout
  }

  /**
   * A replica confirmed at our position may have taken entries from another primary since (views differ for a
   * moment around every membership change): compare each replica's last entry with ours, one request per peer,
   * and forget what we believed about those that differ, so the next sync finds the divergence and merges.
   */
  private async verifyReplicas (users: string[]): Promise<Set<string>> {
    const verified = new Set<string>() // `${user}\0${peer}` whose copy ends in our entry at its position
    const byPeer = new Map<string, string[]>()
    for (const u of users) {
      for (const p of this.placement.replicasOf(u)) {
        if (p === this.placement.self) continue
        const list = byPeer.get(p)
        if (list === undefined) byPeer.set(p, [u])
        else list.push(u)
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
            verified.add(`${u}\x00${peer}`)
          }
        }
      }
    }))
    return verified
  }

  /** Every key this node places: the directory's users, then the fixed keys (queue shards). */
  private async allKeys (): Promise<string[]> {
    return [...(await this.store.listUsers()).map(u => u.address), ...this.keys]
  }

  /**
   * Users this node is primary of whose replicas are not all confirmed at its log position (status, alarms every
   * 10 s, drain): from the kept placement, so only the owned users' positions are read.
   */
  async underReplicated (): Promise<number> {
    const layout = await this.placed(this.placement.ring().version)
    let n = 0
    for (const u of layout.mine) {
      const target = await this.store.logPosition(u)
      for (const peer of this.placement.replicasOf(u)) {
        if (peer !== this.placement.self && (this.state.confirmed.get(`${u}\x00${peer}`) ?? -1) < target) { n++; break }
      }
    }
    this.under = n
    this.owned = layout.owned
    this.replicated = layout.replicated
    return n
  }
}

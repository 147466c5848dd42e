// The first half of the write path: before a write of a user, this node must be the user's primary and have
// caught up with the other alive replicas (a new primary first pulls what they have, merging a copy that
// diverged), once per ring.

import type { Logger } from 'pino'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { Gossip } from '../../gossip/types.ts'
import { RpcError } from '../../gossip/types.ts'
import { isQueueShard, LogDivergedError, MailError } from '../../store/index.ts'
import type { LogEntry, OpOptions, Store } from '../../store/index.ts'
import { LOG_BATCH_ENTRIES_MAX, PROTOCOLS, unpackBodies } from './wire.ts'
import type { Placement } from './placement.ts'
import type { ReplicaState } from './state.ts'
import type { DivergenceRepair } from './divergence.ts'
import { REPLICATION_TIMEOUT_MS, START_SETTLE_MS } from './constants.ts'

/**
 * A member last seen alive this long before a user was created, or earlier, cannot hold a copy of it (the
 * directory record's creation time is the creating node's clock, a member's last sign of life ours: the margin
 * is for the skew between them).
 */
export const NEW_USER_SKEW_MS = 10_000

export interface CatchUpComponents {
  gossip: Pick<Gossip, 'call' | 'members'>
  store: Store
  logger: Logger
  placement: Placement
  state: ReplicaState
  merge: DivergenceRepair['merge']
}

export interface CatchUpInit {
  /** How long after its start this node waits for the members it remembers before it leads without them. */
  startSettleMs?: number
}

export class CatchUp {
  private readonly gossip: CatchUpComponents['gossip']
  private readonly store: Store
  private readonly log: Logger
  private readonly placement: Placement
  private readonly state: ReplicaState
  private readonly merge: DivergenceRepair['merge']

  constructor (components: CatchUpComponents, init: CatchUpInit = {}) {
    this.settleMs = init.startSettleMs ?? START_SETTLE_MS
    this.gossip = components.gossip
    this.store = components.store
    this.log = components.logger
    this.placement = components.placement
    this.state = components.state
    this.merge = components.merge
    this.file = join(this.store.path, 'grid', 'provisional.json')
    this.state.provisional.onChange = () => { void this.save() }
  }

  private readonly file: string
  private saving: Promise<void> = Promise.resolve()
  private readonly settleMs: number
  /** Members known but not alive when this node started (remembered from before a restart), not heard from since. */
  private readonly unheard = new Set<string>()
  private startedAt = 0
  private settling = false

  /**
   * The provisional users this node had when it stopped (a restart must not serve the UIDs it gave them: its copy is
   * no longer empty, so the catch-up would not find them again). Before the first catch-up.
   */
  async load (): Promise<void> {
    this.stopped = false
    this.startedAt = Date.now()
    this.unheard.clear()
    for (const m of this.gossip.members()) {
      if (!m.self && m.id !== this.placement.self && m.status !== 'alive' && m.status !== 'left') this.unheard.add(m.id)
    }
    this.settling = this.unheard.size > 0
    let saved: Record<string, string[]>
    try {
      saved = JSON.parse(await readFile(this.file, 'utf8')) as Record<string, string[]>
    } catch {
      return // none (or unreadable: the next change rewrites it)
    }
    for (const [user, suspects] of Object.entries(saved)) {
      if (Array.isArray(suspects) && suspects.length > 0) this.state.provisional.set(user, new Set(suspects.map(String)))
    }
  }

  /** Stops writing the provisional users (the grid stops): waits for the write under way. */
  async stop (): Promise<void> {
    this.stopped = true
    await this.saving
  }

  private stopped = false

  /**
   * Writes the provisional users, one write at a time; resolves to whether what was there at the call is on disk
   * (not once the grid stopped).
   */
  private async save (): Promise<boolean> {
    let ok = false
    this.saving = this.saving.then(async () => {
      if (this.stopped) return
      const out: Record<string, string[]> = {}
      for (const [user, suspects] of this.state.provisional) out[user] = [...suspects]
      await mkdir(dirname(this.file), { recursive: true })
      await writeFile(`${this.file}.tmp`, JSON.stringify(out), { flush: true })
      await rename(`${this.file}.tmp`, this.file)
      ok = true
    }).catch(err => { this.log.warn({ err: String(err) }, 'provisional_save_failed') })
    await this.saving
    return ok
  }

  /**
   * Before a write of `user` on this node: this node must be the user's primary and have caught up with the
   * other alive replicas (a new primary first takes what they have).
   */
  async lead (user: string, opts?: OpOptions): Promise<void> {
    this.settled()
    const primary = this.placement.primaryOf(user)
    if (primary !== this.placement.self) throw new MailError('unavailable', primary === null ? 'No node owns this user right now' : 'This node does not own the user')
    const ring = this.placement.ring().version
    let r = this.state.ready.get(user)
    // a copy dropped since (handed off, reset) needs the catch-up again, even under the same ring
    if (r !== undefined && r.ring === ring && await this.store.logPosition(user) === 0) r = undefined
    if (r === undefined || r.ring !== ring) {
      const done = this.catchUp(user, opts)
      r = { ring, done }
      this.state.ready.set(user, r)
      done.catch(() => { if (this.state.ready.get(user)?.done === done) this.state.ready.delete(user) })
    }
    await r.done
  }

  /**
   * A node that (re)starts knows the other members only as remembered, dead until heard from: its ring holds only
   * itself and the members heard so far, so it would take itself for the primary of users whose newer copies they
   * hold, and serve and change its old copy (a node SIGKILLed and restarted did, test/stress). Until every member
   * it knew at its start has been heard alive (or has left, or is forgotten) and every alive one publishes the ring
   * this node places users on, or START_SETTLE_MS has passed (then the silent ones are dead as far as anyone can
   * tell), it leads no user: a temporary failure. A first start (nobody remembered) does not wait.
   */
  private settled (): void {
    if (!this.settling) return
    for (const id of this.unheard) {
      const m = this.gossip.members().find(x => x.id === id)
      if (m === undefined || m.status === 'alive' || m.status === 'left') this.unheard.delete(id)
    }
    // and the others have heard this node back: each publishes the ring it places users on (rebalance.ts, after a
    // round under it), and until it holds ours it may still lead (and take writes for) our users
    const ring = this.placement.ring().version
    const behind = this.gossip.members().filter(m => !m.self && m.id !== this.placement.self && m.status === 'alive' && typeof m.meta?.ring === 'string' && m.meta.ring !== ring).map(m => m.id)
    if (this.unheard.size === 0 && behind.length === 0) {
      this.settling = false
      this.log.info({ ms: Date.now() - this.startedAt }, 'start_settled')
      return
    }
    if (Date.now() - this.startedAt >= this.settleMs) {
      this.settling = false
      this.log.warn({ unheard: [...this.unheard], behind }, 'start_settled_without')
      this.unheard.clear()
      return
    }
    throw new MailError('unavailable', 'This node has just started and has not heard from the rest of the grid yet; try again shortly')
  }

  /**
   * Pulls whatever other alive replicas have beyond this node's log position. Nobody had anything (a lone
   * survivor, a new node): the user starts from the first entries every node derives, which carry the same
   * UIDVALIDITY as every other copy of the user. If the user's mail may exist on a member this node could not ask
   * (one dead or cut off since the user was created), the UIDs this node gives now may name other messages
   * there: the user is provisional (sessions get a temporary failure, deliveries are taken) until such a copy has
   * been pulled or merged here, whose merge then gives our messages UIDs above both copies.
   */
  private async catchUp (user: string, opts?: OpOptions): Promise<void> {
    const { answered, unreached } = await this.pullFromReplicas(user, opts)
    if (await this.store.logPosition(user) === 0) {
      this.log.info({ user }, 'user_started_empty')
      const suspects = this.mayHold(user, answered, unreached)
      if (suspects.size > 0) {
        this.state.provisional.set(user, suspects)
        this.log.warn({ user, suspects: [...suspects] }, 'user_provisional')
        // on disk before the first UID is given (a restart must find it)
        if (!await this.save()) throw new MailError('temp', 'Could not record the user as provisional; try again')
      } else {
        this.state.provisional.delete(user)
      }
    }
    await this.store.ensureUserMail(user)
  }

  /**
   * The members that may hold a copy of `user` this node has not read: every member not gone for good that is
   * dead or suspect and was seen alive after the user was created (NEW_USER_SKEW_MS), and the replicas the
   * catch-up could not reach. None for a genuinely new user, for a grid of one, or for the queue's shards (whose
   * UIDs no client sees).
   */
  private mayHold (user: string, answered: ReadonlySet<string>, unreached: ReadonlySet<string>): Set<string> {
    const out = new Set<string>()
    if (isQueueShard(user)) return out
    const created = this.store.userCreatedAt(user) ?? 0
    for (const m of this.gossip.members()) {
      if (m.self || m.id === this.placement.self || m.status === 'left' || answered.has(m.id)) continue
      if (unreached.has(m.id) || (m.status !== 'alive' && m.lastSeen >= created - NEW_USER_SKEW_MS)) out.add(m.id)
    }
    return out
  }

  /**
   * Whether sessions must not read (or write) `user` here: this node started it empty while its mail may exist
   * elsewhere, and has not taken in such a copy yet. A member that may hold one and is forgotten meanwhile (gone
   * for good, or an hour without a sign of life) no longer counts.
   */
  provisional (user: string): boolean {
    const suspects = this.state.provisional.get(user)
    if (suspects === undefined) return false
    const known = new Map(this.gossip.members().map(m => [m.id, m.status]))
    for (const id of suspects) {
      const status = known.get(id)
      if (status === undefined || status === 'left') suspects.delete(id)
    }
    if (suspects.size > 0) return true
    this.resolve(user, 'forgotten')
    return false
  }

  private resolve (user: string, why: string, peer?: string): void {
    if (!this.state.provisional.delete(user)) return
    this.log.info({ user, why, peer }, 'user_provisional_cleared')
  }

  /** A member that may hold a copy of a provisional user answered: taken in (`took`), or nothing there we lack. */
  private compared (user: string, peer: string, took: boolean): void {
    const suspects = this.state.provisional.get(user)
    if (suspects === undefined || !suspects.has(peer)) return
    if (took) return this.resolve(user, 'merged', peer)
    suspects.delete(peer)
    if (suspects.size === 0) this.resolve(user, 'compared', peer)
  }

  private async pullFromReplicas (user: string, opts?: OpOptions): Promise<{ answered: Set<string>, unreached: Set<string> }> {
    const answered = new Set<string>()
    const unreached = new Set<string>()
    const members = this.gossip.members()
    const draining = members.filter(m => m.status === 'alive' && m.state === 'draining' && !m.self).map(m => m.id)
    // a provisional user: the members that may hold its older copy are asked too once they are back, replicas or not
    const suspects = this.state.provisional.get(user) ?? new Set<string>()
    const back = members.filter(m => m.status === 'alive' && !m.self && suspects.has(m.id)).map(m => m.id)
    for (const peer of [...new Set([...this.placement.replicasOf(user), ...draining, ...back])]) {
      if (peer === this.placement.self) continue
      try {
        const res = await this.gossip.call(peer, PROTOCOLS.position, { header: { users: [user] } }, { signal: opts?.signal })
        let theirs = Number((res.header.positions as Record<string, number>)[user] ?? 0)
        let mine = await this.store.logPosition(user)
        const at = Math.min(mine, theirs)
        if (at > 0) {
          const [ours] = await this.store.readLog(user, at, 1)
          const check = await this.gossip.call(peer, PROTOCOLS.eids, { header: { user, from: at, to: at } }, { signal: opts?.signal })
          if ((check.header.eids as Array<string | null>)[0] !== ours?.eid) {
            if (theirs > mine && await this.mergeInto(user, peer, mine, opts)) {
              // reset: their copy, ours merged in, is pulled below
              mine = await this.store.logPosition(user)
              const again = await this.gossip.call(peer, PROTOCOLS.position, { header: { users: [user] } }, { signal: opts?.signal })
              theirs = Number((again.header.positions as Record<string, number>)[user] ?? 0)
            } else {
              await this.merge(user, peer, theirs)
              answered.add(peer)
              this.compared(user, peer, true)
              continue
            }
          }
        }
        const before = mine
        while (theirs > mine) {
          // from our last entry on: the store applies the rest only if their entry there is ours (either copy
          // may have changed since the check above)
          // (`have`: its body is ours already; the answer is cut by bytes and we go on from where it ends)
          const got = await this.gossip.call(peer, PROTOCOLS.pull, { header: { user, from: Math.max(1, mine), have: mine, limit: LOG_BATCH_ENTRIES_MAX } }, { signal: opts?.signal, bulk: true })
          const entries = got.header.entries as LogEntry[]
          if (entries.length === 0 || (entries.at(-1)?.seq ?? 0) <= mine) break
          try {
            mine = await this.store.applyLog(user, entries, unpackBodies(got.header.lens, got.body))
          } catch (err) {
            if (!(err instanceof LogDivergedError)) throw err
            await this.merge(user, peer, Number(entries.at(-1)?.seq))
            mine = Infinity // merged: taken in
            break
          }
          this.log.info({ user, peer, position: mine }, 'replica_caught_up')
        }
        answered.add(peer)
        this.compared(user, peer, mine > before)
      } catch (err) {
        if (!(err instanceof RpcError)) throw err
        // An unreachable replica has nothing we can take; it will be re-mirrored from us when it returns.
        if (this.unreachable(peer, err)) { unreached.add(peer); continue }
        // Anything else (an answer it could not send, a protocol error, a failure on its side) leaves a copy we
        // have not read: leading without it would serve the user a mailbox without that mail. A temporary
        // failure instead (451, NO [UNAVAILABLE]); the next write or rebalance round tries again.
        this.log.warn({ user, peer, err: String(err) }, 'catch_up_failed')
        throw new MailError('temp', `Could not catch up from ${peer}; try again`, { cause: err })
      }
    }
    return { answered, unreached }
  }

  /**
   * Our copy diverged from `peer`'s, which is further ahead (we were away while it took writes, and ours ends in
   * entries we never shipped): asks it to merge ours into its copy and reset ours, so the messages its clients saw
   * keep their UIDs and only our few stray ones get new ones. Merging theirs into ours instead gave every message they
   * took meanwhile a new UID (test/stress: `acked-missing` after a restart). Whether it did; when not (it takes
   * another node for the primary, an older node, a failure), the caller merges the other way.
   */
  private async mergeInto (user: string, peer: string, position: number, opts?: OpOptions): Promise<boolean> {
    this.state.mergeInto.add(user)
    try {
      const res = await this.gossip.call(peer, PROTOCOLS.mergeInto, { header: { user, position } }, { signal: opts?.signal, timeoutMs: REPLICATION_TIMEOUT_MS * 2 })
      return res.header.merged === true && await this.store.logPosition(user) === 0
    } catch (err) {
      this.log.info({ user, peer, err: String(err) }, 'merge_into_failed')
      return false
    } finally {
      this.state.mergeInto.delete(user)
    }
  }

  /**
   * Whether a failed call means the replica is gone. A call that timed out after its request left is "unknown",
   * not "gone": only if the failure detector no longer holds the peer alive either (a machine that died without
   * closing its connections); a peer it still holds alive may be slow, and has a copy we must not skip.
   */
  private unreachable (peer: string, err: RpcError): boolean {
    if (err.code === 'unreachable') return true
    return err.code === 'timeout' && this.gossip.members().find(m => m.id === peer)?.status !== 'alive'
  }
}

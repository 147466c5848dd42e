// The grid on one node: placement of users on the ring, log shipping from a user's primary to its replicas
// (every acknowledged write is durable on every alive replica), catch-up of a new primary, re-mirroring after
// a membership change, directory replication to every node, and routing of deliveries to primaries.

import type { Logger } from 'pino'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Gossip, Ring, RpcMessage } from '../../gossip/types.ts'
import { createRing } from '../../gossip/ring.ts'
import { RpcError } from '../../gossip/types.ts'
import { isMailError, LogDivergedError, MailError } from '../../store/index.ts'
import type { AppendResult, DeliveryTarget, DirectoryRecord, LogAnchor, LogEntry, OpOptions, QuotaUsage, Store } from '../../store/index.ts'
import { KeyedLock } from '../../store/lock.ts'
import { entryBytes, errorReply, LOG_BATCH_BYTES_MAX, LOG_BATCH_ENTRIES_MAX, LOG_BATCH_HEADER_BYTES_MAX, LOG_SHIPMENT_HEADER_BYTES_MAX, packBodies, PROTOCOLS, throwIfError, unpackBodies } from './wire.ts'
import { EIDS_BATCH, mergeFrom } from './merge.ts'
import { PeerBatcher } from './batcher.ts'
import type { MergePeer } from './merge.ts'
import { summarizeLog } from '../../store/index.ts'
import type { LogSummary } from '../../store/index.ts'

/** A replica's copy of the log differs from ours before the point we would continue from. */
interface LogShipment { user: string, entries: LogEntry[], lens: number[], prev: { seq: number, eid: string | null }, body: Buffer, headerBytes: number }
interface DeliveryShipment { targets: DeliveryTarget[], internalDate: number, raw: Buffer }

class DivergedError extends Error {
  readonly peer: string
  readonly position: number
  constructor (peer: string, position: number) {
    super(`log of ${peer} diverged`)
    this.peer = peer
    this.position = position
  }
}

export const REPLICATION_TIMEOUT_MS = 15_000 // a write waits this long for its replicas before answering 'temp'
export const REBALANCE_INTERVAL_MS = 2_000 // how often every owned user's replicas are checked
export const DIRECTORY_SYNC_INTERVAL_MS = 3_000 // digest exchange with one random peer
export const REMIRROR_CONCURRENCY = 4 // users re-mirrored at once: the rest of the bandwidth stays with live traffic
export const RETRY_BACKOFF_MS = 200
export const POSITIONS_PER_REQUEST_MAX = 10_000 // users whose log position one request may ask for
export const MERGE_ATTEMPTS_MAX = 5 // a diverged copy that keeps taking writes is merged again, this many times

export interface GridComponents {
  gossip: Gossip
  store: Store
  logger: Logger
  now?: () => number
}

export interface GridInit {
  replicas: number // R, 1 to 5
  /** Keys other than users that are placed and replicated like a user's mail (the outbound queue's shards). */
  keys?: readonly string[]
}

export interface GridStatus {
  self: string
  ringVersion: string
  replicas: number
  members: Array<{ id: string, name: string, status: string, state: string, weight: number, host: string, addrs: string[], services: Record<string, number>, sessions: number, cpuPct: number, meta: Record<string, unknown> }>
  usersOwned: number
  usersReplicated: number
  underReplicated: number
  handoffPending: number // copies this node still holds of users it no longer replicates (handed over, then dropped)
  remirroredBytes: number
}

export class Grid {
  private readonly gossip: Gossip
  private readonly store: Store
  private readonly log: Logger
  private readonly r: number
  private readonly keys: readonly string[]
  private readonly lock = new KeyedLock()
  private readonly confirmed = new Map<string, number>() // `${user}\0${peer}` → that replica's durable log position
  private readonly ready = new Map<string, { ring: string, done: Promise<void> }>() // user → catch-up under that ring
  private readonly unsubscribe: Array<() => void> = []
  private timers: NodeJS.Timeout[] = []
  private rebalancing: Promise<void> | null = null
  private rebalanceAgain = false
  private running = false
  private under = 0
  private owned = 0
  private replicated = 0
  private foreign = 0 // copies of users this node no longer replicates, still held after the last hand-off round
  remirroredBytes = 0
  private published = ''
  private placed: { from: Ring, ring: Ring } | undefined
  // many users' shipments to one peer, and many deliveries to one primary, leave in one RPC (batcher.ts)
  private readonly logShipper: PeerBatcher<LogShipment, Record<string, unknown>>
  private readonly deliveryShipper: PeerBatcher<DeliveryShipment, Record<string, unknown>>

  constructor (components: GridComponents, init: GridInit) {
    this.gossip = components.gossip
    this.store = components.store
    this.log = components.logger.child({ ns: 'grid' })
    if (!(Number.isInteger(init.replicas) && init.replicas >= 1 && init.replicas <= 5)) throw new RangeError('replicas must be 1 to 5')
    this.r = init.replicas
    this.keys = init.keys ?? []
    this.logShipper = new PeerBatcher(async (peer, items) => {
      const { lens, body } = packBodies(items.map(i => i.body))
      const res = await this.gossip.call(peer, PROTOCOLS.logBatch, {
        header: { items: items.map((i, k) => ({ user: i.user, entries: i.entries, lens: i.lens, prev: i.prev, bytes: lens[k] })) },
        body
      })
      return res.header.results as Array<Record<string, unknown>>
    }, { itemsMax: LOG_BATCH_ENTRIES_MAX, bytesMax: LOG_BATCH_BYTES_MAX, size: i => i.body.length + 512, headerBytesMax: LOG_BATCH_HEADER_BYTES_MAX, headerSize: i => i.headerBytes })
    this.deliveryShipper = new PeerBatcher(async (peer, items) => {
      const { lens, body } = packBodies(items.map(i => i.raw))
      const res = await this.gossip.call(peer, PROTOCOLS.deliverBatch, {
        header: { items: items.map((i, k) => ({ targets: i.targets, internalDate: i.internalDate, bytes: lens[k] })) },
        body
      }, { timeoutMs: REPLICATION_TIMEOUT_MS + 5000 })
      return res.header.results as Array<Record<string, unknown>>
    }, { itemsMax: 256, bytesMax: LOG_BATCH_BYTES_MAX, size: i => i.raw.length + 512 })
  }

  get self (): string {
    return this.gossip.self
  }

  // ---- placement ---------------------------------------------------------------------------------------

  replicasOf (user: string): string[] {
    return this.placement().replicas(user, this.r)
  }

  /**
   * The ring users are placed on: alive members in state alive. A draining member (an operator stops it) is
   * left out, so its users move to the others; it stays a source for their catch-up until it leaves.
   */
  placement (): Ring {
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

  /** Marks this node draining (its users move away) or back to alive. */
  setState (state: 'alive' | 'draining' | 'leaving'): void {
    this.gossip.update({ state })
    this.scheduleRebalance()
  }

  primaryOf (user: string): string | null {
    return this.placement().primary(user)
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

  // ---- lifecycle ---------------------------------------------------------------------------------------

  async start (): Promise<void> {
    if (this.running) return
    this.running = true
    const g = this.gossip
    g.handle(PROTOCOLS.position, async req => {
      const users = Array.isArray(req.header.users) ? req.header.users.map(String) : []
      const positions: Record<string, number> = {}
      const last: Record<string, string | null> = {}
      for (const u of users.slice(0, POSITIONS_PER_REQUEST_MAX)) {
        positions[u] = await this.store.logPosition(u)
        if (req.header.last === true) last[u] = positions[u] > 0 ? (await this.store.readLog(u, positions[u], 1))[0]?.eid ?? null : null
      }
      return { header: { positions, last } }
    })
    g.handle(PROTOCOLS.logBatch, async req => {
      const items = Array.isArray(req.header.items) ? req.header.items as Array<Record<string, unknown>> : []
      const bodies = unpackBodies(items.map(i => i.bytes), req.body)
      // different users apply in parallel; their fsyncs meet in the store's group commit
      const results = await Promise.all(items.map(async (i, k) => (await this.onLog({ header: i, body: bodies[k] })).header))
      return { header: { results } }
    })
    g.handle(PROTOCOLS.deliverBatch, async req => {
      const items = Array.isArray(req.header.items) ? req.header.items as Array<Record<string, unknown>> : []
      const raws = unpackBodies(items.map(i => i.bytes), req.body)
      const results = await Promise.all(items.map(async (i, k) => {
        try {
          return { results: await this.deliverLocal(raws[k], i.targets as DeliveryTarget[], { internalDate: Number(i.internalDate) }) }
        } catch (err) {
          return errorReply(err).header
        }
      }))
      return { header: { results } }
    })
    g.handle(PROTOCOLS.eids, async req => {
      const user = String(req.header.user)
      const from = Math.max(1, Number(req.header.from))
      const to = Math.min(Number(req.header.to), from + EIDS_BATCH - 1)
      const entries = await this.store.readLog(user, from, Math.max(0, to - from + 1))
      const eids: Array<string | null> = []
      for (let s = from; s <= to; s++) eids.push(entries[s - from]?.eid ?? null)
      return { header: { eids } }
    })
    g.handle(PROTOCOLS.summary, async req => {
      const user = String(req.header.user)
      const all: LogEntry[] = []
      for (;;) {
        const part = await this.store.readLog(user, all.length + 1, 4096)
        all.push(...part)
        if (part.length < 4096) break
      }
      return { header: { summary: summarizeLog(all, Number(req.header.from)) } }
    })
    g.handle(PROTOCOLS.blobs, async req => {
      const hashes = Array.isArray(req.header.hashes) ? req.header.hashes.map(String).slice(0, LOG_BATCH_ENTRIES_MAX) : []
      const { lens, body } = packBodies(await Promise.all(hashes.map(async h => await this.store.readBlob(h))))
      return { header: { lens }, body }
    })
    g.handle(PROTOCOLS.handoff, async (req, ctx) => {
      const user = String(req.header.user)
      const position = Number(req.header.position)
      try {
        await this.lead(user)
        const [mine] = await this.store.readLog(user, position, 1)
        if (position > 0 && (mine === undefined || mine.eid !== req.header.eid)) {
          // it holds entries we do not: take them (the merge resets its copy when done)
          await this.merge(user, ctx.peer, position)
          return { header: { drop: false, merged: true } }
        }
        // its copy is a prefix of ours: it may go once every replica has ours (invariant 5)
        await this.replicate(user)
        return { header: { drop: true } }
      } catch (err) {
        return errorReply(err)
      }
    })
    g.handle(PROTOCOLS.reset, async req => {
      const user = String(req.header.user)
      const position = Number(req.header.position)
      // Never while this node takes itself for the user's primary or merges the user itself: two nodes whose
      // views differ for a moment may each merge the other's copy, and if each then reset the other, both
      // copies would be gone. The asking node retries once the views agree.
      const dropped = this.isPrimary(user) ? 'busy' : await this.dropCopy(user, { seq: position, eid: req.header.eid === null || req.header.eid === undefined ? null : String(req.header.eid) })
      // The primary merged our copy up to `position`; anything we took since would be lost by a drop, so we
      // drop only when nothing changed, and otherwise the primary merges again.
      if (dropped !== true) return { header: { reset: false, busy: dropped === 'busy', position: await this.store.logPosition(user) } }
      this.log.info({ user, by: String(req.header.by ?? ''), position }, 'replica_reset')
      return { header: { reset: true, position: 0 } }
    })
    g.handle(PROTOCOLS.pull, async req => await this.onPull(req))
    g.handle(PROTOCOLS.quota, async req => {
      try {
        return { header: { quota: await this.store.quota(String(req.header.user)) } }
      } catch (err) {
        return errorReply(err)
      }
    })
    g.handle(PROTOCOLS.directory, async req => {
      const applied = await this.store.mergeDirectory(req.header.records as DirectoryRecord[])
      return { header: { applied: applied.length } }
    })
    g.handle(PROTOCOLS.directoryDigest, async req => {
      if (req.header.digest === await this.store.directoryDigest()) return { header: { same: true } }
      if (Array.isArray(req.header.records)) await this.store.mergeDirectory(req.header.records as DirectoryRecord[])
      return { header: { records: await this.store.exportDirectory() } }
    })
    this.unsubscribe.push(this.store.onDirectoryChange(records => { void this.pushDirectory(records) }))
    // Placement depends on who is alive, their state, weight and incarnation; not on load or the meta every
    // node publishes after a rebalance (reacting to that would make rebalances trigger each other forever)
    const seen = new Map<string, string>()
    this.unsubscribe.push(g.onChange(e => {
      const m = e.member
      const sig = `${m.status}|${m.state}|${m.weight}|${m.incarnation}`
      if (seen.get(m.id) === sig) return
      seen.set(m.id, sig)
      this.scheduleRebalance()
    }))
    this.timers.push(setInterval(() => this.scheduleRebalance(), REBALANCE_INTERVAL_MS))
    this.timers.push(setInterval(() => { void this.syncDirectory() }, DIRECTORY_SYNC_INTERVAL_MS))
    for (const t of this.timers) t.unref()
    this.scheduleRebalance()
  }

  async stop (): Promise<void> {
    if (!this.running) return
    this.running = false
    for (const t of this.timers) clearInterval(t)
    this.timers = []
    for (const u of this.unsubscribe.splice(0)) u()
    await this.rebalancing?.catch(() => {})
  }

  // ---- the write path: lead, then replicate ------------------------------------------------------------

  /**
   * Before a write of `user` on this node: this node must be the user's primary and have caught up with the
   * other alive replicas (a new primary first takes what they have).
   */
  async lead (user: string, opts?: OpOptions): Promise<void> {
    const primary = this.primaryOf(user)
    if (primary !== this.self) throw new MailError('unavailable', primary === null ? 'No node owns this user right now' : 'This node does not own the user')
    const ring = this.placement().version
    let r = this.ready.get(user)
    // a copy dropped since (handed off, reset) needs the catch-up again, even under the same ring
    if (r !== undefined && r.ring === ring && await this.store.logPosition(user) === 0) r = undefined
    if (r === undefined || r.ring !== ring) {
      const done = this.catchUp(user, opts)
      r = { ring, done }
      this.ready.set(user, r)
      done.catch(() => { if (this.ready.get(user)?.done === done) this.ready.delete(user) })
    }
    await r.done
  }

  /** Pulls whatever other alive replicas have beyond this node's log position. */
  private async catchUp (user: string, opts?: OpOptions): Promise<void> {
    await this.pullFromReplicas(user, opts)
    // nobody had anything (a lone survivor, a new node): start from the first entries every node derives
    if (await this.store.logPosition(user) === 0) this.log.info({ user }, 'user_started_empty')
    await this.store.ensureUserMail(user)
  }

  private async pullFromReplicas (user: string, opts?: OpOptions): Promise<void> {
    const draining = this.gossip.members().filter(m => m.status === 'alive' && m.state === 'draining' && !m.self).map(m => m.id)
    for (const peer of [...new Set([...this.replicasOf(user), ...draining])]) {
      if (peer === this.self) continue
      try {
        const res = await this.gossip.call(peer, PROTOCOLS.position, { header: { users: [user] } }, { signal: opts?.signal })
        const theirs = Number((res.header.positions as Record<string, number>)[user] ?? 0)
        let mine = await this.store.logPosition(user)
        const at = Math.min(mine, theirs)
        if (at > 0) {
          const [ours] = await this.store.readLog(user, at, 1)
          const check = await this.gossip.call(peer, PROTOCOLS.eids, { header: { user, from: at, to: at } }, { signal: opts?.signal })
          if ((check.header.eids as Array<string | null>)[0] !== ours?.eid) {
            await this.merge(user, peer, theirs)
            continue
          }
        }
        while (theirs > mine) {
          // from our last entry on: the store applies the rest only if their entry there is ours (either copy
          // may have changed since the check above)
          const got = await this.gossip.call(peer, PROTOCOLS.pull, { header: { user, from: Math.max(1, mine), limit: LOG_BATCH_ENTRIES_MAX } }, { signal: opts?.signal })
          const entries = got.header.entries as LogEntry[]
          if (entries.length === 0 || (entries.at(-1)?.seq ?? 0) <= mine) break
          try {
            mine = await this.store.applyLog(user, entries, unpackBodies(got.header.lens, got.body))
          } catch (err) {
            if (!(err instanceof LogDivergedError)) throw err
            await this.merge(user, peer, Number(entries.at(-1)?.seq))
            break
          }
          this.log.info({ user, peer, position: mine }, 'replica_caught_up')
        }
      } catch (err) {
        // An unreachable replica has nothing we can take; it will be re-mirrored from us when it returns.
        if (!(err instanceof RpcError)) throw err
      }
    }
  }

  /** Waits until every other alive replica of `user` has this node's log durable (or fails 'temp'). */
  async replicate (user: string, opts?: OpOptions & { except?: string, merging?: boolean }): Promise<void> {
    const target = await this.store.logPosition(user)
    const deadline = Date.now() + REPLICATION_TIMEOUT_MS
    for (;;) {
      const peers = this.replicasOf(user).filter(p => p !== this.self && p !== opts?.except)
      const results = await Promise.allSettled(peers.map(async p => await this.sync(user, p, target, opts)))
      const failed = results.flatMap((r, i) => r.status === 'rejected' ? [[peers[i], r.reason] as const] : [])
      if (failed.length === 0) return
      // inside a merge, another diverged copy waits for its own merge (the rebalance finds it): no nesting
      if (opts?.merging === true && failed.every(([, reason]) => reason instanceof DivergedError)) return
      if (opts?.merging !== true) {
        for (const [, reason] of failed) {
          if (reason instanceof DivergedError) await this.merge(user, reason.peer, reason.position)
        }
        if (failed.every(([, reason]) => reason instanceof DivergedError)) return await this.replicate(user, opts)
      }
      if (Date.now() > deadline || opts?.signal?.aborted === true) {
        this.log.warn({ user, failed: failed.map(([p, e]) => ({ peer: p, err: String(e) })) }, 'replication_timeout')
        throw new MailError('temp', 'Could not reach every replica in time; try again')
      }
      // a dead replica leaves the ring within seconds, and the next round goes to its successor
      this.log.debug({ user, failed: failed.map(([p, e]) => ({ peer: p, err: String(e) })) }, 'replicate_retry')
      await sleep(RETRY_BACKOFF_MS)
    }
  }

  /** Ships log entries to one replica until its durable position reaches `target`. One shipment per pair at a time. */
  private async sync (user: string, peer: string, target: number, opts?: OpOptions): Promise<void> {
    const key = `${user}\x00${peer}`
    await this.lock.with([key], async () => {
      let pos = this.confirmed.get(key)
      if (pos !== undefined && pos >= target) return
      if (pos === undefined) {
        const res = await this.gossip.call(peer, PROTOCOLS.position, { header: { users: [user], last: true } }, { signal: opts?.signal })
        pos = Number((res.header.positions as Record<string, number>)[user] ?? 0)
        // equal positions say nothing about equal logs: their last entry must be ours at that position, or the
        // copies diverged (nothing would be shipped, so the prev check below would never see it)
        if (pos > 0 && pos <= target) {
          const [ours] = await this.store.readLog(user, pos, 1)
          if (ours?.eid !== (res.header.last as Record<string, string | null>)[user]) throw new DivergedError(peer, pos)
        } else if (pos > target) {
          // they hold entries we do not (another node decided them): the merge takes them in
          throw new DivergedError(peer, pos)
        }
      }
      while (pos < target) {
        const entries = await this.store.readLog(user, pos + 1, LOG_BATCH_ENTRIES_MAX)
        if (entries.length === 0) break
        const hashes: string[] = []
        const seen = new Set<string>()
        let size = 0
        let headerBytes = 512
        let cut = entries.length
        for (const [i, e] of entries.entries()) {
          const h = entryBytes(e)
          if (i > 0 && headerBytes + h > LOG_SHIPMENT_HEADER_BYTES_MAX) { cut = i; break }
          headerBytes += h
          if (e.op !== 'append' || seen.has(e.blob)) continue
          if (size > 0 && size + e.size > LOG_BATCH_BYTES_MAX) { cut = i; headerBytes -= h; break }
          seen.add(e.blob)
          hashes.push(e.blob)
          size += e.size
        }
        // all at once: the blob store merges neighbouring bodies into one read
        const bodies = await Promise.all(hashes.map(async h => await this.store.readBlob(h)))
        const bytes = bodies.reduce((n, b) => n + b.length, 0)
        const batch = entries.slice(0, cut)
        const { lens, body } = packBodies(bodies)
        const prevEid = pos > 0 ? (await this.store.readLog(user, pos, 1))[0]?.eid ?? null : null
        const res: RpcMessage = { header: await this.logShipper.submit(peer, { user, entries: batch, lens, prev: { seq: pos, eid: prevEid }, body, headerBytes }) }
        throwIfError(res)
        if (res.header.diverged === true) {
          this.confirmed.delete(key)
          throw new DivergedError(peer, Number(res.header.position))
        }
        const next = Number(res.header.position)
        // lower than we thought: the replica lost state, so the next round starts again from its position
        if (!Number.isSafeInteger(next) || next === pos) throw new MailError('temp', `replica ${peer} makes no progress at ${pos}`)
        this.remirroredBytes += bytes
        pos = next
      }
      this.confirmed.set(key, pos)
    })
  }

  private async onLog (req: RpcMessage): Promise<RpcMessage> {
    const user = String(req.header.user)
    const entries = req.header.entries as LogEntry[]
    const prev = req.header.prev as LogAnchor | undefined
    if (prev !== undefined && prev.seq > 0) {
      const position = await this.store.logPosition(user)
      if (position < prev.seq) return { header: { position } } // behind: resend from our position
    }
    try {
      // the store checks, under the user's lock, that the shipment continues this copy (anchor and overlap)
      const position = await this.store.applyLog(user, entries, unpackBodies(req.header.lens, req.body), prev)
      return { header: { position } }
    } catch (err) {
      if (err instanceof LogDivergedError) return { header: { position: err.position, diverged: true } }
      if (isMailError(err, 'invalid')) return { header: { position: await this.store.logPosition(user) } } // a gap: resend from here
      this.log.warn({ user, err }, 'apply_failed')
      return errorReply(err)
    }
  }

  private async onPull (req: RpcMessage): Promise<RpcMessage> {
    const user = String(req.header.user)
    const from = Number(req.header.from)
    const limit = Math.min(Number(req.header.limit) || LOG_BATCH_ENTRIES_MAX, LOG_BATCH_ENTRIES_MAX)
    const read = await this.store.readLog(user, from, limit)
    // as many as fit the answer's header budget (at least one: the caller goes on from where this ends)
    let headerBytes = 0
    let n = 0
    for (; n < read.length; n++) {
      headerBytes += entryBytes(read[n])
      if (n > 0 && headerBytes > LOG_SHIPMENT_HEADER_BYTES_MAX) break
    }
    const entries = read.slice(0, n)
    const hashes = [...new Set(entries.flatMap(e => e.op === 'append' ? [e.blob] : []))]
    const { lens, body } = packBodies(await Promise.all(hashes.map(async h => await this.store.readBlob(h))))
    return { header: { entries, lens }, body }
  }

  // ---- merge after divergence -------------------------------------------------------------------------------

  private readonly merging = new Map<string, Promise<void>>()

  /** Takes what a diverged replica has into our log (merge.ts), makes that durable on our other replicas, then resets it. */
  async merge (user: string, peer: string, theirPosition: number): Promise<void> {
    const k = `${user}\x00${peer}`
    const running = this.merging.get(k)
    if (running !== undefined) return await running
    // one merge per user at a time: two diverged copies often hold the same suffix (a replica pair on the
    // other side), and the second merge must see what the first added
    const p = this.lock.with([`${user}\x00merge`], async () => {
      const remote: MergePeer = {
        eids: async (from, to) => {
          const res = await this.gossip.call(peer, PROTOCOLS.eids, { header: { user, from, to } })
          return res.header.eids as Array<string | null>
        },
        summary: async (from) => {
          const res = await this.gossip.call(peer, PROTOCOLS.summary, { header: { user, from } })
          return res.header.summary as LogSummary
        },
        blobs: async (hashes) => {
          const out: Buffer[] = []
          for (let i = 0; i < hashes.length; i += LOG_BATCH_ENTRIES_MAX) {
            const res = await this.gossip.call(peer, PROTOCOLS.blobs, { header: { hashes: hashes.slice(i, i + LOG_BATCH_ENTRIES_MAX) } })
            out.push(...unpackBodies(res.header.lens, res.body))
          }
          return out
        }
      }
      this.log.warn({ user, peer }, 'log_diverged')
      for (let attempt = 0; attempt < MERGE_ATTEMPTS_MAX; attempt++) {
        // only the primary merges (views change while a merge runs): the new primary will merge instead
        if (!this.isPrimary(user)) throw new MailError('temp', `no longer the primary of ${user}; the merge is left to the new one`)
        const done = await mergeFrom(this.store, user, remote, theirPosition, this.log)
        await this.replicate(user, { except: peer, merging: true })
        const res = await this.gossip.call(peer, PROTOCOLS.reset, { header: { user, by: this.self, position: done.theirEnd, eid: done.theirEndEid } })
        if (res.header.reset === true) {
          this.confirmed.set(k, 0)
          return
        }
        // they take themselves for the primary or merge themselves: our views differ; the next round settles it
        if (res.header.busy === true) throw new MailError('temp', `${peer} is merging ${user} itself or leads it`)
        theirPosition = Number(res.header.position) // they took more meanwhile: merge that too
      }
      throw new MailError('temp', `merge with ${peer} did not settle`)
    }).finally(() => this.merging.delete(k))
    this.merging.set(k, p)
    await p
  }

  /**
   * Drops this node's copy of `user` if it still ends at `expect` (checked under the store's lock), unless a merge
   * of that user runs here: 'busy' then. Resets after a merge and drops after a hand-off both come through here.
   */
  private async dropCopy (user: string, expect: LogAnchor): Promise<boolean | 'busy'> {
    const key = `${user}\x00merge`
    if (this.lock.isLocked(key)) return 'busy'
    const dropped = await this.lock.with([key], async () => await this.store.dropUserMail(user, expect))
    if (dropped) this.ready.delete(user)
    return dropped
  }

  // ---- deliveries ------------------------------------------------------------------------------------------

  /** Hands each target's copy to its user's primary; resolves when every copy is durable on its replicas. */
  async deliver (raw: Buffer, targets: DeliveryTarget[], opts?: OpOptions & { internalDate?: number }): Promise<AppendResult[]> {
    const internalDate = opts?.internalDate ?? Date.now()
    const groups = new Map<string, Array<[number, DeliveryTarget]>>()
    for (const [i, t] of targets.entries()) {
      const p = this.primaryOf(t.user)
      if (p === null) throw new MailError('unavailable', 'No node owns this user right now')
      const g = groups.get(p) ?? []
      g.push([i, t])
      groups.set(p, g)
    }
    const out: AppendResult[] = new Array(targets.length)
    await Promise.all([...groups].map(async ([primary, group]) => {
      const ts = group.map(([, t]) => t)
      let results: AppendResult[]
      if (primary === this.self) {
        results = await this.deliverLocal(raw, ts, { ...opts, internalDate })
      } else {
        let res: RpcMessage
        try {
          res = { header: await this.deliveryShipper.submit(primary, { targets: ts, internalDate, raw }) }
        } catch (err) {
          throw new MailError('unavailable', `The node owning the mailbox is unreachable: ${String(err)}`)
        }
        throwIfError(res)
        results = res.header.results as AppendResult[]
      }
      group.forEach(([i], j) => { out[i] = results[j] })
    }))
    return out
  }

  async deliverLocal (raw: Buffer, targets: DeliveryTarget[], opts?: OpOptions & { internalDate?: number }): Promise<AppendResult[]> {
    const users = [...new Set(targets.map(t => t.user))]
    for (const u of users) await this.lead(u, opts)
    const results = await this.store.deliver(raw, targets, opts)
    await Promise.all(users.map(async u => await this.replicate(u, opts)))
    return results
  }

  async quota (user: string): Promise<QuotaUsage> {
    const p = this.primaryOf(user)
    if (p === null || p === this.self) return await this.store.quota(user)
    try {
      const res = await this.gossip.call(p, PROTOCOLS.quota, { header: { user } })
      throwIfError(res)
      return res.header.quota as QuotaUsage
    } catch (err) {
      if (isMailError(err)) throw err
      return await this.store.quota(user) // the owner is unreachable: our copy is the best answer we have
    }
  }

  // ---- re-mirroring ----------------------------------------------------------------------------------------

  scheduleRebalance (): void {
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

  /** For every user this node is primary of: catch up, then bring every replica to our position. */
  private async rebalance (): Promise<void> {
    const users = await this.allKeys()
    const mine = users.filter(u => this.isPrimary(u))
    await this.verifyReplicas(mine)
    let under = 0
    let replicated = 0
    const queue = [...mine]
    const worker = async (): Promise<void> => {
      for (let u = queue.shift(); u !== undefined && this.running; u = queue.shift()) {
        try {
          await this.lead(u)
          const target = await this.store.logPosition(u)
          for (const peer of this.replicasOf(u)) {
            if (peer === this.self) continue
            const key = `${u}\x00${peer}`
            if ((this.confirmed.get(key) ?? -1) >= target) continue
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
    const foreign = users.filter(u => !this.replicasOf(u).includes(this.self))
    let pending = 0
    const handoff = async (): Promise<void> => {
      for (let u = foreign.shift(); u !== undefined && this.running; u = foreign.shift()) {
        try {
          const position = await this.store.logPosition(u)
          if (position === 0) continue
          const primary = this.primaryOf(u)
          if (primary === null) { pending++; continue }
          const [last] = await this.store.readLog(u, position, 1)
          const res = await this.gossip.call(primary, PROTOCOLS.handoff, { header: { user: u, position, eid: last?.eid ?? null } }, { timeoutMs: REPLICATION_TIMEOUT_MS + 5000 })
          throwIfError(res)
          if (res.header.drop === true && !this.replicasOf(u).includes(this.self) && await this.dropCopy(u, { seq: position, eid: last?.eid ?? null }) === true) {
            this.log.info({ user: u, position }, 'replica_dropped')
            continue
          }
          // a primary that merged our copy has reset it meanwhile
          if (await this.store.logPosition(u) > 0) pending++
        } catch (err) {
          pending++
          this.log.debug({ user: u, err: String(err) }, 'handoff_pending')
        }
      }
    }
    await Promise.all(Array.from({ length: REMIRROR_CONCURRENCY }, () => handoff()))
    this.foreign = pending
    for (const u of users) if (this.replicasOf(u).includes(this.self)) replicated++
    this.owned = mine.length
    this.replicated = replicated
    this.under = under
    const meta = { ring: this.placement().version, usersOwned: this.owned, underReplicated: this.under }
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
      for (const p of this.replicasOf(u)) {
        if (p !== this.self) byPeer.set(p, [...(byPeer.get(p) ?? []), u])
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
            this.confirmed.delete(`${u}\x00${peer}`)
            if (theirs > mine) this.ready.delete(u) // they hold more than we do: catch up (or merge) on the next lead
          } else {
            this.confirmed.set(`${u}\x00${peer}`, theirs)
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
    const ring = this.placement()
    for (const u of await this.allKeys()) {
      const reps = ring.replicas(u, this.r)
      if (reps.includes(this.self)) replicated++
      if (reps[0] !== this.self) continue
      owned++
      const target = await this.store.logPosition(u)
      for (const peer of this.replicasOf(u)) {
        if (peer !== this.self && (this.confirmed.get(`${u}\x00${peer}`) ?? -1) < target) { n++; break }
      }
    }
    this.under = n
    this.owned = owned
    this.replicated = replicated
    return n
  }

  // ---- directory -------------------------------------------------------------------------------------------

  private async pushDirectory (records: DirectoryRecord[]): Promise<void> {
    const peers = this.gossip.members().filter(m => !m.self && m.status === 'alive')
    await Promise.allSettled(peers.map(async m => await this.gossip.call(m.id, PROTOCOLS.directory, { header: { records } })))
  }

  private async syncDirectory (): Promise<void> {
    const peers = this.gossip.members().filter(m => !m.self && m.status === 'alive')
    if (peers.length === 0) return
    const peer = peers[Math.floor(Math.random() * peers.length)]
    try {
      const res = await this.gossip.call(peer.id, PROTOCOLS.directoryDigest, { header: { digest: await this.store.directoryDigest() } })
      if (res.header.same === true) return
      await this.store.mergeDirectory(res.header.records as DirectoryRecord[])
      // and give them ours, so the exchange converges in one round
      await this.gossip.call(peer.id, PROTOCOLS.directory, { header: { records: await this.store.exportDirectory() } })
    } catch (err) {
      this.log.debug({ peer: peer.id, err: String(err) }, 'directory_sync_failed')
    }
  }

  // ---- status ----------------------------------------------------------------------------------------------

  status (): GridStatus {
    return {
      self: this.self,
      ringVersion: this.placement().version,
      replicas: this.r,
      members: this.gossip.members().map(m => ({
        id: m.id, name: m.name, status: m.status, state: m.state, weight: m.weight, host: m.host, addrs: m.addrs, services: m.services,
        sessions: m.load.sessions, cpuPct: m.load.cpuPct, meta: m.meta
      })),
      usersOwned: this.owned,
      usersReplicated: this.replicated,
      underReplicated: this.under,
      handoffPending: this.foreign,
      remirroredBytes: this.remirroredBytes
    }
  }
}

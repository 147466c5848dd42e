// Log shipping, the second half of the write path: the primary ships a user's new log entries (with the bodies
// they refer to) to every other alive replica and waits until each has them durable; the replica's side checks
// that a shipment continues its own copy. Also the position and pull answers the other pieces ask for.

import type { Logger } from 'pino'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Gossip, RpcMessage } from '../../gossip/types.ts'
import { isMailError, LogDivergedError, MailError } from '../../store/index.ts'
import type { LogAnchor, LogEntry, OpOptions, Store } from '../../store/index.ts'
import { entryBytes, errorReply, LOG_BATCH_BYTES_MAX, LOG_BATCH_ENTRIES_MAX, LOG_BATCH_HEADER_BYTES_MAX, LOG_SHIPMENT_HEADER_BYTES_MAX, packBodies, PROTOCOLS, throwIfError, unpackBodies } from './wire.ts'
import { PeerBatcher } from './batcher.ts'
import { POSITIONS_PER_REQUEST_MAX, REPLICATION_TIMEOUT_MS, RETRY_BACKOFF_MS } from './constants.ts'
import type { Placement } from './placement.ts'
import type { ReplicaState } from './state.ts'
import type { DivergenceRepair } from './divergence.ts'

interface LogShipment { user: string, entries: LogEntry[], lens: number[], prev: { seq: number, eid: string | null }, body: Buffer, held: string[], headerBytes: number }

/**
 * Bodies of deliveries on their way through the primary, kept so they cross the network once. A delivery that
 * enters at a replica of its user (not the primary) goes to the primary with its body, and the primary's
 * shipment of the resulting log entries comes back to that same node: the entry node keeps the body (`keep`)
 * until the primary answers, the primary knows that peer has it (`peerKeeps`, for as long as it handles the
 * delivery) and ships the entries with only the body's hash (`held`); the replica takes the body it kept, or
 * pulls it from the primary when it no longer has it (the delivery timed out on its side meanwhile).
 */
export class HeldBodies {
  private readonly own = new Map<string, { body: Buffer, refs: number }>()
  private readonly atPeer = new Map<string, number>()

  /** This node keeps `body` (whose SHA-256 is `hash`) until release(hash). */
  keep (hash: string, body: Buffer): void {
    const k = this.own.get(hash)
    if (k !== undefined) k.refs++
    else this.own.set(hash, { body, refs: 1 })
  }

  release (hash: string): void {
    const k = this.own.get(hash)
    if (k === undefined) return
    if (--k.refs <= 0) this.own.delete(hash)
  }

  body (hash: string): Buffer | undefined {
    return this.own.get(hash)?.body
  }

  /** `peer` said it keeps the body `hash` (until peerReleased). */
  peerKeeps (peer: string, hash: string): void {
    const key = `${peer}\x00${hash}`
    this.atPeer.set(key, (this.atPeer.get(key) ?? 0) + 1)
  }

  peerReleased (peer: string, hash: string): void {
    const key = `${peer}\x00${hash}`
    const n = (this.atPeer.get(key) ?? 0) - 1
    if (n <= 0) this.atPeer.delete(key)
    else this.atPeer.set(key, n)
  }

  peerHas (peer: string, hash: string): boolean {
    return this.atPeer.size > 0 && this.atPeer.has(`${peer}\x00${hash}`)
  }
}

const SHA256_HEX = /^[0-9a-f]{64}$/

/** A replica's copy of the log differs from ours before the point we would continue from. */
export class DivergedError extends Error {
  readonly peer: string
  readonly position: number
  constructor (peer: string, position: number) {
    super(`log of ${peer} diverged`)
    this.peer = peer
    this.position = position
  }
}

export interface ShippingComponents {
  gossip: Pick<Gossip, 'call' | 'handle'>
  store: Store
  logger: Logger
  placement: Placement
  state: ReplicaState
  merge: DivergenceRepair['merge']
  /** Told how long each replicate() took to have the write durable on every other alive replica (seconds). */
  onReplicated?: (seconds: number) => void
}

export class Shipping {
  private readonly gossip: ShippingComponents['gossip']
  private readonly store: Store
  private readonly log: Logger
  private readonly placement: Placement
  private readonly state: ReplicaState
  private readonly merge: DivergenceRepair['merge']
  private readonly onReplicated: ((seconds: number) => void) | undefined
  remirroredBytes = 0
  /** Bodies kept so a delivery's body crosses the network once (see HeldBodies). */
  readonly held = new HeldBodies()
  // many users' shipments to one peer leave in one RPC (batcher.ts)
  private readonly logShipper: PeerBatcher<LogShipment, Record<string, unknown>>

  constructor (components: ShippingComponents) {
    this.gossip = components.gossip
    this.store = components.store
    this.log = components.logger
    this.placement = components.placement
    this.state = components.state
    this.merge = components.merge
    this.onReplicated = components.onReplicated
    this.logShipper = new PeerBatcher(async (peer, items) => {
      const { lens, body } = packBodies(items.map(i => i.body))
      const res = await this.gossip.call(peer, PROTOCOLS.logBatch, {
        header: { items: items.map((i, k) => ({ user: i.user, entries: i.entries, lens: i.lens, prev: i.prev, bytes: lens[k], ...(i.held.length > 0 ? { held: i.held } : {}) })) },
        body
      })
      return res.header.results as Array<Record<string, unknown>>
    }, { itemsMax: LOG_BATCH_ENTRIES_MAX, bytesMax: LOG_BATCH_BYTES_MAX, size: i => i.body.length + 512, headerBytesMax: LOG_BATCH_HEADER_BYTES_MAX, headerSize: i => i.headerBytes })
  }

  /** Serves what other nodes ask of this node's copies: positions, shipped entries, pulls. */
  handle (): void {
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
    g.handle(PROTOCOLS.logBatch, async (req, ctx) => {
      const items = Array.isArray(req.header.items) ? req.header.items as Array<Record<string, unknown>> : []
      const bodies = unpackBodies(items.map(i => i.bytes), req.body)
      // different users apply in parallel; their fsyncs meet in the store's group commit
      const results = await Promise.all(items.map(async (i, k) => (await this.onLog({ header: i, body: bodies[k] }, ctx.peer)).header))
      return { header: { results } }
    })
    g.handle(PROTOCOLS.pull, async req => await this.onPull(req))
  }

  /** Waits until every other alive replica of `user` has this node's log durable (or fails 'temp'). */
  async replicate (user: string, opts?: OpOptions & { except?: string, merging?: boolean }): Promise<void> {
    const started = performance.now()
    const target = await this.store.logPosition(user)
    const deadline = Date.now() + REPLICATION_TIMEOUT_MS
    for (;;) {
      const peers = this.placement.replicasOf(user).filter(p => p !== this.placement.self && p !== opts?.except)
      const results = await Promise.allSettled(peers.map(async p => await this.sync(user, p, target, opts)))
      const failed = results.flatMap((r, i) => r.status === 'rejected' ? [[peers[i], r.reason] as const] : [])
      if (failed.length === 0) {
        if (peers.length > 0) this.onReplicated?.((performance.now() - started) / 1000)
        return
      }
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
  async sync (user: string, peer: string, target: number, opts?: OpOptions): Promise<void> {
    const key = `${user}\x00${peer}`
    await this.state.lock.with([key], async () => {
      let pos = this.state.confirmed.get(key)
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
        // the anchor (our entry at the replica's position) and the entries after it, in one read of the log
        const from = pos
        const read = await this.store.readLog(user, Math.max(1, from), LOG_BATCH_ENTRIES_MAX + (from > 0 ? 1 : 0))
        const anchor = from > 0 && read[0]?.seq === from ? read[0] : undefined
        const entries = read.filter(e => e.seq > from)
        if (entries.length === 0) break
        const hashes: string[] = []
        const held: string[] = [] // bodies the replica kept (it is the node the delivery entered at): named, not sent
        const seen = new Set<string>()
        let size = 0
        let headerBytes = 512
        let cut = entries.length
        for (const [i, e] of entries.entries()) {
          const h = entryBytes(e)
          if (i > 0 && headerBytes + h > LOG_SHIPMENT_HEADER_BYTES_MAX) { cut = i; break }
          headerBytes += h
          if (e.op !== 'append' || seen.has(e.blob)) continue
          if (this.held.peerHas(peer, e.blob)) {
            seen.add(e.blob)
            held.push(e.blob)
            headerBytes += 67
            continue
          }
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
        const prevEid = anchor?.eid ?? null
        const res: RpcMessage = { header: await this.logShipper.submit(peer, { user, entries: batch, lens, prev: { seq: pos, eid: prevEid }, body, held, headerBytes }) }
        throwIfError(res)
        if (res.header.diverged === true) {
          this.state.confirmed.delete(key)
          throw new DivergedError(peer, Number(res.header.position))
        }
        const next = Number(res.header.position)
        // lower than we thought: the replica lost state, so the next round starts again from its position
        if (!Number.isSafeInteger(next) || next === pos) throw new MailError('temp', `replica ${peer} makes no progress at ${pos}`)
        this.remirroredBytes += bytes
        pos = next
      }
      this.state.confirmed.set(key, pos)
    })
  }

  private async onLog (req: RpcMessage, from: string): Promise<RpcMessage> {
    const user = String(req.header.user)
    const entries = req.header.entries as LogEntry[]
    const prev = req.header.prev as LogAnchor | undefined
    if (prev !== undefined && prev.seq > 0) {
      const position = await this.store.logPosition(user)
      if (position < prev.seq) return { header: { position } } // behind: resend from our position
    }
    try {
      const blobs = unpackBodies(req.header.lens, req.body)
      if (Array.isArray(req.header.held)) blobs.push(...await this.heldBodies(req.header.held, from))
      // the store checks, under the user's lock, that the shipment continues this copy (anchor and overlap)
      const position = await this.store.applyLog(user, entries, blobs, prev)
      return { header: { position } }
    } catch (err) {
      if (err instanceof LogDivergedError) return { header: { position: err.position, diverged: true } }
      if (isMailError(err, 'invalid')) return { header: { position: await this.store.logPosition(user) } } // a gap: resend from here
      this.log.warn({ user, err }, 'apply_failed')
      return errorReply(err)
    }
  }

  /** The bodies a shipment named instead of sending (HeldBodies): kept here, or else pulled from the sender. */
  private async heldBodies (named: unknown[], from: string): Promise<Buffer[]> {
    const hashes = [...new Set(named.slice(0, LOG_BATCH_ENTRIES_MAX).map(String))]
    if (hashes.some(h => !SHA256_HEX.test(h))) throw new MailError('invalid', 'a held body is not named by its hash')
    const out: Buffer[] = []
    let missing: string[] = []
    for (const h of hashes) {
      const b = this.held.body(h)
      if (b !== undefined) out.push(b)
      else missing.push(h)
    }
    if (missing.length === 0) return out
    // each answer holds at least the first body asked for (divergence.ts serves PROTOCOLS.blobs); a body still
    // missing after this makes the store refuse the shipment, and the primary sends it again
    const asked = missing.length
    for (let round = 0; missing.length > 0 && round < asked; round++) {
      const res = await this.gossip.call(from, PROTOCOLS.blobs, { header: { hashes: missing } }, { bulk: true })
      const got = unpackBodies(res.header.lens, res.body)
      if (got.length === 0) break
      out.push(...got)
      missing = missing.slice(got.length)
    }
    this.log.debug({ from, pulled: asked - missing.length, missing: missing.length }, 'held_bodies_pulled')
    return out
  }

  private async onPull (req: RpcMessage): Promise<RpcMessage> {
    const user = String(req.header.user)
    const from = Number(req.header.from)
    // the caller's position: the entry there comes back as the anchor the caller's store checks the answer
    // against, and the caller holds its body already
    const have = Number.isSafeInteger(req.header.have) ? Number(req.header.have) : 0
    const limit = Math.min(Number(req.header.limit) || LOG_BATCH_ENTRIES_MAX, LOG_BATCH_ENTRIES_MAX)
    const read = await this.store.readLog(user, from, limit)
    // As many entries as fit the answer's header budget and whose new bodies fit LOG_BATCH_BYTES_MAX (one larger
    // body alone), like a shipment (sync), and always the first entry the caller lacks: it goes on from where
    // this answer ends. 512 entries of 1 MiB bodies once made one answer of 80 MiB, above the RPC body limit.
    let headerBytes = 0
    let bodyBytes = 0
    const hashes = new Set<string>()
    let fresh = 0 // entries the caller lacks, in the answer so far
    let n = 0
    for (; n < read.length; n++) {
      const e = read[n]
      headerBytes += entryBytes(e)
      if (fresh > 0 && headerBytes > LOG_SHIPMENT_HEADER_BYTES_MAX) break
      if (e.seq <= have) continue
      fresh++
      if (e.op !== 'append' || hashes.has(e.blob)) continue
      if (bodyBytes > 0 && bodyBytes + e.size > LOG_BATCH_BYTES_MAX) break
      hashes.add(e.blob)
      bodyBytes += e.size
    }
    const entries = read.slice(0, n)
    const { lens, body } = packBodies(await Promise.all([...hashes].map(async h => await this.store.readBlob(h))))
    return { header: { entries, lens }, body }
  }
}

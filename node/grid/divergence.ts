// When two copies of a user's log diverged (a partition, or views that differed around a membership change):
// the primary merges the other copy into its own (the algorithm is merge.ts), makes the result durable on its
// other replicas, then has the other copy reset under the compare-and-drop rule. Also the answers a merge asks
// of the other side (log ids, a summary, blobs, the reset), and dropCopy, which hand-off drops share.

import type { Logger } from 'pino'
import { RPC_BODY_BYTES_MAX } from '../../gossip/constants.ts'
import type { Gossip } from '../../gossip/types.ts'
import { MailError, summarizeLog } from '../../store/index.ts'
import type { LogAnchor, LogEntry, LogSummary, Store } from '../../store/index.ts'
import { entryBytes, errorReply, LOG_BATCH_BYTES_MAX, LOG_BATCH_ENTRIES_MAX, LOG_SHIPMENT_HEADER_BYTES_MAX, packBodies, PROTOCOLS, unpackBodies } from './wire.ts'
import { EIDS_BATCH, mergeFrom } from './merge.ts'
import type { MergePeer } from './merge.ts'
import { MERGE_ATTEMPTS_MAX } from './constants.ts'
import type { Placement } from './placement.ts'
import type { ReplicaState } from './state.ts'
import type { Shipping } from './shipping.ts'

export interface DivergenceComponents {
  gossip: Pick<Gossip, 'call' | 'handle'>
  store: Store
  logger: Logger
  placement: Placement
  state: ReplicaState
  replicate: Shipping['replicate']
}

export class DivergenceRepair {
  private readonly gossip: DivergenceComponents['gossip']
  private readonly store: Store
  private readonly log: Logger
  private readonly placement: Placement
  private readonly state: ReplicaState
  private readonly replicate: Shipping['replicate']
  private readonly merging = new Map<string, Promise<void>>()

  constructor (components: DivergenceComponents) {
    this.gossip = components.gossip
    this.store = components.store
    this.log = components.logger
    this.placement = components.placement
    this.state = components.state
    this.replicate = components.replicate
  }

  /** Serves the other side of a merge: log ids, a summary, blobs, and the reset of this node's copy. */
  handle (): void {
    const g = this.gossip
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
      // later pages name the end the first one summarized, so that every page describes the same stretch
      const to = Number.isSafeInteger(req.header.to) ? Number(req.header.to) : Infinity
      const all: LogEntry[] = []
      for (;;) {
        const part = await this.store.readLog(user, all.length + 1, 4096)
        all.push(...part)
        if (part.length < 4096 || all.length >= to) break
      }
      if (all.length > to) all.length = to
      const summary = summarizeLog(all, Number(req.header.from))
      // The messages it added carry their trace headers (tens of KB each at worst): 520 of 40 KB made a 21 MB
      // header, above the RPC header limit, and every merge of that user failed. As many as fit
      // LOG_SHIPMENT_HEADER_BYTES_MAX per answer (at least one); the caller asks for the rest.
      const skip = Math.max(0, Math.floor(Number(req.header.addedFrom) || 0))
      let bytes = entryBytes({ ...summary, added: [] })
      let n = skip
      for (; n < summary.added.length; n++) {
        bytes += entryBytes(summary.added[n])
        if (n > skip && bytes > LOG_SHIPMENT_HEADER_BYTES_MAX) break
      }
      return { header: { summary: { ...summary, added: summary.added.slice(skip, n) }, addedTotal: summary.added.length, endEid: all.at(-1)?.eid ?? null } }
    })
    g.handle(PROTOCOLS.blobs, async req => {
      const hashes = Array.isArray(req.header.hashes) ? req.header.hashes.map(String).slice(0, LOG_BATCH_ENTRIES_MAX) : []
      // The first bodies asked for, in order, until they reach LOG_BATCH_BYTES_MAX (a size is known only once the
      // body is read), at least one; the merge asks again from where the answer ends. A body that would take the
      // answer over the transport's limit waits for the next answer. 512 bodies of 1 MiB once made one answer of
      // 80 MiB, above that limit, and every merge of that user failed.
      const bodies: Buffer[] = []
      let bytes = 0
      for (const h of hashes) {
        if (bytes >= LOG_BATCH_BYTES_MAX) break
        const b = await this.store.readBlob(h)
        if (bodies.length > 0 && bytes + b.length > RPC_BODY_BYTES_MAX) break
        bodies.push(b)
        bytes += b.length
      }
      const { lens, body } = packBodies(bodies)
      return { header: { lens }, body }
    })
    g.handle(PROTOCOLS.mergeInto, async (req, ctx) => {
      // The user's primary, catching up, found our copy ahead of its own and diverged from it (it was down while we
      // took writes, and its copy ends in entries it never shipped): we merge its few entries into our copy, so that
      // the messages clients saw here keep their UIDs, then reset its copy, which it pulls again. Only for the node
      // we also take for the primary; otherwise it merges the other way itself.
      const user = String(req.header.user)
      if (this.placement.primaryOf(user) !== ctx.peer || this.placement.isPrimary(user)) return { header: { merged: false } }
      try {
        await this.merge(user, ctx.peer, Number(req.header.position), { forPrimary: true })
        return { header: { merged: true } }
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
      // (unless this node, catching up as the primary, asked the merging node to take its copy in: mergeInto)
      const dropped = this.placement.isPrimary(user) && !this.state.mergeInto.has(user) ? 'busy' : await this.dropCopy(user, { seq: position, eid: req.header.eid === null || req.header.eid === undefined ? null : String(req.header.eid) })
      // The primary merged our copy up to `position`; anything we took since would be lost by a drop, so we
      // drop only when nothing changed, and otherwise the primary merges again.
      if (dropped !== true) return { header: { reset: false, busy: dropped === 'busy', position: await this.store.logPosition(user) } }
      this.log.info({ user, by: String(req.header.by ?? ''), position }, 'replica_reset')
      return { header: { reset: true, position: 0 } }
    })
  }

  /**
   * Takes what a diverged replica has into our log (merge.ts), makes that durable on our other replicas, then resets it.
   * `forPrimary`: the other copy is the primary's, which asked for this while it catches up (mergeInto).
   */
  async merge (user: string, peer: string, theirPosition: number, opts?: { forPrimary?: boolean }): Promise<void> {
    const k = `${user}\x00${peer}`
    const running = this.merging.get(k)
    if (running !== undefined) return await running
    // one merge per user at a time: two diverged copies often hold the same suffix (a replica pair on the
    // other side), and the second merge must see what the first added
    const p = this.state.lock.with([`${user}\x00merge`], async () => {
      const remote: MergePeer = {
        eids: async (from, to) => {
          const res = await this.gossip.call(peer, PROTOCOLS.eids, { header: { user, from, to } })
          return res.header.eids as Array<string | null>
        },
        summary: async (from) => {
          const first = await this.gossip.call(peer, PROTOCOLS.summary, { header: { user, from } })
          const summary = first.header.summary as LogSummary
          const total = Number(first.header.addedTotal ?? summary.added.length)
          const added = [...summary.added]
          while (added.length < total) {
            const res = await this.gossip.call(peer, PROTOCOLS.summary, { header: { user, from, to: summary.to, addedFrom: added.length } })
            const page = res.header.summary as LogSummary
            if (page.to !== summary.to || res.header.endEid !== first.header.endEid || Number(res.header.addedTotal) !== total || page.added.length === 0) {
              throw new MailError('temp', `the log of ${user} on ${peer} changed while its summary was read`)
            }
            added.push(...page.added)
          }
          return { ...summary, added }
        },
        blobs: async (hashes) => {
          const res = await this.gossip.call(peer, PROTOCOLS.blobs, { header: { hashes: hashes.slice(0, LOG_BATCH_ENTRIES_MAX) } }, { bulk: true })
          const bodies = unpackBodies(res.header.lens, res.body)
          if ((hashes.length > 0 && bodies.length === 0) || bodies.length > hashes.length) throw new MailError('temp', `${peer} answered ${bodies.length} bodies for ${hashes.length}`)
          return bodies
        }
      }
      this.log.warn({ user, peer }, 'log_diverged')
      for (let attempt = 0; attempt < MERGE_ATTEMPTS_MAX; attempt++) {
        // only the primary merges (views change while a merge runs): the new primary will merge instead
        const may = this.placement.isPrimary(user) || (opts?.forPrimary === true && this.placement.primaryOf(user) === peer)
        if (!may) throw new MailError('temp', `no longer the primary of ${user}; the merge is left to the new one`)
        const done = await mergeFrom(this.store, user, remote, theirPosition, this.log)
        await this.replicate(user, { except: peer, merging: true })
        const res = await this.gossip.call(peer, PROTOCOLS.reset, { header: { user, by: this.placement.self, position: done.theirEnd, eid: done.theirEndEid } })
        if (res.header.reset === true) {
          this.state.confirmed.set(k, 0)
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
  async dropCopy (user: string, expect: LogAnchor): Promise<boolean | 'busy'> {
    const key = `${user}\x00merge`
    if (this.state.lock.isLocked(key)) return 'busy'
    const dropped = await this.state.lock.with([key], async () => await this.store.dropUserMail(user, expect))
    if (dropped) {
      this.state.ready.delete(user)
      this.state.provisional.delete(user) // its UIDs that no session saw are gone with it (catch-up.ts)
    }
    return dropped
  }
}

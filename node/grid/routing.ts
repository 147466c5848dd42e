// Routing of deliveries and quota reads to a user's primary: a delivery is grouped by primary, the local share
// goes through the write path (lead, store, replicate) and the rest leaves in batched RPCs, so it resolves only
// once every copy is durable on its replicas. Also this node's answers to such RPCs.

import { createHash } from 'node:crypto'
import type { Gossip, RpcMessage } from '../../gossip/types.ts'
import { isMailError, MailError } from '../../store/index.ts'
import type { AppendResult, DeliveryTarget, OpOptions, QuotaUsage, Store } from '../../store/index.ts'
import { errorReply, LOG_BATCH_BYTES_MAX, packBodies, PROTOCOLS, throwIfError, unpackBodies } from './wire.ts'
import { PeerBatcher } from './batcher.ts'
import { REPLICATION_TIMEOUT_MS } from './constants.ts'
import type { Placement } from './placement.ts'
import type { CatchUp } from './catch-up.ts'
import type { HeldBodies, Shipping } from './shipping.ts'

/** `hold`: this node keeps the body (SHA-256, hex) while the primary handles it: it is a replica of a target's user. */
interface DeliveryShipment { targets: DeliveryTarget[], internalDate: number, raw: Buffer, hold?: string }

const SHA256_HEX = /^[0-9a-f]{64}$/

/**
 * What a delivery filter (the user's Sieve script, node/rules) makes of one target on the user's primary, after the
 * catch-up and before anything is stored: null to store the copy as it came, or the copies to store instead (none:
 * discarded, rejected or redirected; several: fileinto more than one mailbox), each with its own bytes (editheader).
 * It may throw a MailError to refuse the delivery (a Sieve reject said in the SMTP reply).
 */
export type DeliveryFilter = (raw: Buffer, target: DeliveryTarget, opts: OpOptions & { internalDate: number }) => Promise<Array<{ raw: Buffer, target: DeliveryTarget }> | null>

/** The answer for a copy a filter did not store (discarded, redirected): no mailbox, no UID. */
export const NOT_STORED: AppendResult = { mailbox: '', uidValidity: 0, uid: 0, modseq: 0, gid: '' }

/**
 * Stores a delivery through `filter`: targets it leaves alone go in one all-or-nothing store.deliver as before; each
 * copy it makes is stored on its own. One result per target: its first stored copy's, or NOT_STORED.
 */
export async function deliverFiltered (
  deliver: (raw: Buffer, targets: DeliveryTarget[], opts?: OpOptions & { internalDate?: number }) => Promise<AppendResult[]>,
  filter: DeliveryFilter, raw: Buffer, targets: DeliveryTarget[], opts: OpOptions & { internalDate: number }
): Promise<AppendResult[]> {
  const plans = await Promise.all(targets.map(async t => await filter(raw, t, opts)))
  const plain = targets.filter((_, i) => plans[i] === null)
  const plainResults = plain.length > 0 ? await deliver(raw, plain, opts) : []
  const out: AppendResult[] = []
  let p = 0
  for (const plan of plans) {
    if (plan === null) { out.push(plainResults[p++]); continue }
    let first: AppendResult | null = null
    for (const copy of plan) {
      const [r] = await deliver(copy.raw, [copy.target], opts)
      first ??= r
    }
    out.push(first ?? NOT_STORED)
  }
  return out
}

export interface RoutingComponents {
  gossip: Pick<Gossip, 'call' | 'handle'>
  store: Store
  placement: Placement
  lead: CatchUp['lead']
  replicate: Shipping['replicate']
  /** Shipping's: a delivery's body crosses the network once when it enters at a replica (see HeldBodies). */
  held?: HeldBodies
}

export class Routing {
  private readonly gossip: RoutingComponents['gossip']
  private readonly store: Store
  private readonly placement: Placement
  private readonly lead: CatchUp['lead']
  private readonly replicate: Shipping['replicate']
  private readonly held: HeldBodies | undefined
  // many deliveries to one primary leave in one RPC (batcher.ts)
  private readonly deliveryShipper: PeerBatcher<DeliveryShipment, Record<string, unknown>>
  private filter: DeliveryFilter | null = null

  constructor (components: RoutingComponents) {
    this.gossip = components.gossip
    this.store = components.store
    this.placement = components.placement
    this.lead = components.lead
    this.replicate = components.replicate
    this.held = components.held
    this.deliveryShipper = new PeerBatcher(async (peer, items) => {
      const { lens, body } = packBodies(items.map(i => i.raw))
      const res = await this.gossip.call(peer, PROTOCOLS.deliverBatch, {
        header: { items: items.map((i, k) => ({ targets: i.targets, internalDate: i.internalDate, bytes: lens[k], ...(i.hold !== undefined ? { hold: i.hold } : {}) })) },
        body
      }, { timeoutMs: REPLICATION_TIMEOUT_MS + 5000 })
      return res.header.results as Array<Record<string, unknown>>
    }, { itemsMax: 256, bytesMax: LOG_BATCH_BYTES_MAX, size: i => i.raw.length + 512 })
  }

  /** Serves deliveries and quota reads routed to this node as the primary. */
  handle (): void {
    const g = this.gossip
    g.handle(PROTOCOLS.deliverBatch, async (req, ctx) => {
      const items = Array.isArray(req.header.items) ? req.header.items as Array<Record<string, unknown>> : []
      const raws = unpackBodies(items.map(i => i.bytes), req.body)
      const results = await Promise.all(items.map(async (i, k) => {
        // the sender keeps this body while we handle it: our shipments to it name the body instead of sending it
        const hold = typeof i.hold === 'string' && SHA256_HEX.test(i.hold) && this.held !== undefined ? i.hold : undefined
        if (hold !== undefined) this.held?.peerKeeps(ctx.peer, hold)
        try {
          return { results: await this.deliverLocal(raws[k], i.targets as DeliveryTarget[], { internalDate: Number(i.internalDate) }) }
        } catch (err) {
          return errorReply(err).header
        } finally {
          if (hold !== undefined) this.held?.peerReleased(ctx.peer, hold)
        }
      }))
      return { header: { results } }
    })
    g.handle(PROTOCOLS.quota, async req => {
      try {
        return { header: { quota: await this.store.quota(String(req.header.user)) } }
      } catch (err) {
        return errorReply(err)
      }
    })
  }

  /** Hands each target's copy to its user's primary; resolves when every copy is durable on its replicas. */
  async deliver (raw: Buffer, targets: DeliveryTarget[], opts?: OpOptions & { internalDate?: number }): Promise<AppendResult[]> {
    const internalDate = opts?.internalDate ?? Date.now()
    const groups = new Map<string, Array<[number, DeliveryTarget]>>()
    for (const [i, t] of targets.entries()) {
      const p = this.placement.primaryOf(t.user)
      if (p === null) throw new MailError('unavailable', 'No node owns this user right now')
      const g = groups.get(p) ?? []
      g.push([i, t])
      groups.set(p, g)
    }
    const out: AppendResult[] = new Array(targets.length)
    await Promise.all([...groups].map(async ([primary, group]) => {
      const ts = group.map(([, t]) => t)
      let results: AppendResult[]
      if (primary === this.placement.self) {
        results = await this.deliverLocal(raw, ts, { ...opts, internalDate })
      } else {
        let res: RpcMessage
        // a replica of a target's user receives the primary's shipment of this very body: it keeps it meanwhile
        const self = this.placement.self
        const hold = this.held !== undefined && ts.some(t => this.placement.replicasOf(t.user).includes(self)) ? createHash('sha256').update(raw).digest('hex') : undefined
        if (hold !== undefined) this.held?.keep(hold, raw)
        try {
          res = { header: await this.deliveryShipper.submit(primary, { targets: ts, internalDate, raw, ...(hold !== undefined ? { hold } : {}) }) }
        } catch (err) {
          throw new MailError('unavailable', `The node owning the mailbox is unreachable: ${String(err)}`)
        } finally {
          if (hold !== undefined) this.held?.release(hold)
        }
        throwIfError(res)
        results = res.header.results as AppendResult[]
      }
      group.forEach(([i], j) => { out[i] = results[j] })
    }))
    return out
  }

  /** Runs on this node's deliveries, as their users' primary, before they are stored (the Sieve scripts: node/rules). */
  setFilter (filter: DeliveryFilter | null): void {
    this.filter = filter
  }

  async deliverLocal (raw: Buffer, targets: DeliveryTarget[], opts?: OpOptions & { internalDate?: number }): Promise<AppendResult[]> {
    const users = [...new Set(targets.map(t => t.user))]
    for (const u of users) await this.lead(u, opts)
    const filter = this.filter
    const results = filter === null
      ? await this.store.deliver(raw, targets, opts)
      : await deliverFiltered(async (r, ts, o) => await this.store.deliver(r, ts, o), filter, raw, targets, { ...opts, internalDate: opts?.internalDate ?? Date.now() })
    await Promise.all(users.map(async u => await this.replicate(u, opts)))
    return results
  }

  async quota (user: string): Promise<QuotaUsage> {
    const p = this.placement.primaryOf(user)
    if (p === null || p === this.placement.self) return await this.store.quota(user)
    try {
      const res = await this.gossip.call(p, PROTOCOLS.quota, { header: { user } })
      throwIfError(res)
      return res.header.quota as QuotaUsage
    } catch (err) {
      if (isMailError(err)) throw err
      return await this.store.quota(user) // the owner is unreachable: our copy is the best answer we have
    }
  }
}

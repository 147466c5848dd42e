// Hand-off: a node that holds a copy of a user it no longer replicates (the ring changed) offers it to the
// user's primary, which takes in what only that copy has (merging it if it diverged) and makes its own log
// durable on every replica; only then is the old copy dropped (invariant 5: nothing is deleted before its
// replacement is confirmed). Both sides are here.

import type { Logger } from 'pino'
import type { Gossip } from '../../gossip/types.ts'
import type { Store } from '../../store/index.ts'
import { errorReply, PROTOCOLS, throwIfError } from './wire.ts'
import { REMIRROR_CONCURRENCY, REPLICATION_TIMEOUT_MS } from './constants.ts'
import type { Placement } from './placement.ts'
import type { CatchUp } from './catch-up.ts'
import type { Shipping } from './shipping.ts'
import type { DivergenceRepair } from './divergence.ts'

export interface HandOffComponents {
  gossip: Pick<Gossip, 'call' | 'handle'>
  store: Store
  logger: Logger
  placement: Placement
  lead: CatchUp['lead']
  replicate: Shipping['replicate']
  merge: DivergenceRepair['merge']
  dropCopy: DivergenceRepair['dropCopy']
}

export class HandOff {
  private readonly gossip: HandOffComponents['gossip']
  private readonly store: Store
  private readonly log: Logger
  private readonly placement: Placement
  private readonly lead: CatchUp['lead']
  private readonly replicate: Shipping['replicate']
  private readonly merge: DivergenceRepair['merge']
  private readonly dropCopy: DivergenceRepair['dropCopy']

  constructor (components: HandOffComponents) {
    this.gossip = components.gossip
    this.store = components.store
    this.log = components.logger
    this.placement = components.placement
    this.lead = components.lead
    this.replicate = components.replicate
    this.merge = components.merge
    this.dropCopy = components.dropCopy
  }

  /** The primary's side: a former replica offers its copy. */
  handle (): void {
    this.gossip.handle(PROTOCOLS.handoff, async (req, ctx) => {
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
  }

  /**
   * The former replica's side, one round: copies this node holds of users it no longer replicates are handed to
   * the primary and dropped when it confirms every replica has all of it. Resolves to the copies still held;
   * `onEmpty` hears of each user whose copy here is empty (nothing to hand back).
   */
  async handBack (users: string[], running: () => boolean, onEmpty?: (user: string) => void): Promise<number> {
    const foreign = users.filter(u => !this.placement.replicasOf(u).includes(this.placement.self))
    let pending = 0
    const handoff = async (): Promise<void> => {
      for (let u = foreign.shift(); u !== undefined && running(); u = foreign.shift()) {
        try {
          const position = await this.store.logPosition(u)
          if (position === 0) { onEmpty?.(u); continue }
          const primary = this.placement.primaryOf(u)
          if (primary === null) { pending++; continue }
          const [last] = await this.store.readLog(u, position, 1)
          const res = await this.gossip.call(primary, PROTOCOLS.handoff, { header: { user: u, position, eid: last?.eid ?? null } }, { timeoutMs: REPLICATION_TIMEOUT_MS + 5000 })
          throwIfError(res)
          if (res.header.drop === true && !this.placement.replicasOf(u).includes(this.placement.self) && await this.dropCopy(u, { seq: position, eid: last?.eid ?? null }) === true) {
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
    return pending
  }
}

// The first half of the write path: before a write of a user, this node must be the user's primary and have
// caught up with the other alive replicas (a new primary first pulls what they have, merging a copy that
// diverged), once per ring.

import type { Logger } from 'pino'
import type { Gossip } from '../../gossip/types.ts'
import { RpcError } from '../../gossip/types.ts'
import { LogDivergedError, MailError } from '../../store/index.ts'
import type { LogEntry, OpOptions, Store } from '../../store/index.ts'
import { LOG_BATCH_ENTRIES_MAX, PROTOCOLS, unpackBodies } from './wire.ts'
import type { Placement } from './placement.ts'
import type { ReplicaState } from './state.ts'
import type { DivergenceRepair } from './divergence.ts'

export interface CatchUpComponents {
  gossip: Pick<Gossip, 'call' | 'members'>
  store: Store
  logger: Logger
  placement: Placement
  state: ReplicaState
  merge: DivergenceRepair['merge']
}

export class CatchUp {
  private readonly gossip: CatchUpComponents['gossip']
  private readonly store: Store
  private readonly log: Logger
  private readonly placement: Placement
  private readonly state: ReplicaState
  private readonly merge: DivergenceRepair['merge']

  constructor (components: CatchUpComponents) {
    this.gossip = components.gossip
    this.store = components.store
    this.log = components.logger
    this.placement = components.placement
    this.state = components.state
    this.merge = components.merge
  }

  /**
   * Before a write of `user` on this node: this node must be the user's primary and have caught up with the
   * other alive replicas (a new primary first takes what they have).
   */
  async lead (user: string, opts?: OpOptions): Promise<void> {
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

  /** Pulls whatever other alive replicas have beyond this node's log position. */
  private async catchUp (user: string, opts?: OpOptions): Promise<void> {
    await this.pullFromReplicas(user, opts)
    // nobody had anything (a lone survivor, a new node): start from the first entries every node derives
    if (await this.store.logPosition(user) === 0) this.log.info({ user }, 'user_started_empty')
    await this.store.ensureUserMail(user)
  }

  private async pullFromReplicas (user: string, opts?: OpOptions): Promise<void> {
    const draining = this.gossip.members().filter(m => m.status === 'alive' && m.state === 'draining' && !m.self).map(m => m.id)
    for (const peer of [...new Set([...this.placement.replicasOf(user), ...draining])]) {
      if (peer === this.placement.self) continue
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
          // (`have`: its body is ours already; the answer is cut by bytes and we go on from where it ends)
          const got = await this.gossip.call(peer, PROTOCOLS.pull, { header: { user, from: Math.max(1, mine), have: mine, limit: LOG_BATCH_ENTRIES_MAX } }, { signal: opts?.signal })
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
        if (!(err instanceof RpcError)) throw err
        // An unreachable replica has nothing we can take; it will be re-mirrored from us when it returns.
        if (this.unreachable(peer, err)) continue
        // Anything else (an answer it could not send, a protocol error, a failure on its side) leaves a copy we
        // have not read: leading without it would serve the user a mailbox without that mail. A temporary
        // failure instead (451, NO [UNAVAILABLE]); the next write or rebalance round tries again.
        this.log.warn({ user, peer, err: String(err) }, 'catch_up_failed')
        throw new MailError('temp', `Could not catch up from ${peer}; try again`, { cause: err })
      }
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

// What the replication pieces of one node share, kept in one place and handed to each of them (shipping.ts,
// catch-up.ts, divergence.ts, rebalance.ts) so no piece holds a private copy that could disagree with another's.

import { KeyedLock } from '../../store/lock.ts'

/** The provisional users, with a hook that keeps them on disk (catch-up.ts): a restart must not forget one. */
export class ProvisionalUsers extends Map<string, Set<string>> {
  onChange: () => void = () => {}

  override set (user: string, suspects: Set<string>): this {
    super.set(user, suspects)
    this.onChange()
    return this
  }

  override delete (user: string): boolean {
    const had = super.delete(user)
    if (had) this.onChange()
    return had
  }
}

export class ReplicaState {
  // `${user}\0${peer}`: one shipment per (user, replica) pair at a time; `${user}\0merge`: one merge per user, and
  // a copy is not dropped while it is held
  readonly lock = new KeyedLock()
  readonly confirmed = new Map<string, number>() // `${user}\0${peer}` → that replica's durable log position
  readonly ready = new Map<string, { ring: string, done: Promise<void> }>() // user → catch-up under that ring
  // user → the members whose copy of the user this node has not compared with yet, for a user this node started
  // empty while the user's mail may exist on a member it could not reach (catch-up.ts): sessions may not read the
  // user here until such a copy has been pulled or merged (the UIDs given meanwhile are not final)
  readonly provisional = new ProvisionalUsers()
  // users whose copy this node (their primary, catching up) asked a replica further ahead to merge in: that replica
  // may reset it although this node leads the user (divergence.ts)
  readonly mergeInto = new Set<string>()
}

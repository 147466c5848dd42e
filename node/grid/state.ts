// What the replication pieces of one node share, kept in one place and handed to each of them (shipping.ts,
// catch-up.ts, divergence.ts, rebalance.ts) so no piece holds a private copy that could disagree with another's.

import { KeyedLock } from '../../store/lock.ts'

export class ReplicaState {
  // `${user}\0${peer}`: one shipment per (user, replica) pair at a time; `${user}\0merge`: one merge per user, and
  // a copy is not dropped while it is held
  readonly lock = new KeyedLock()
  readonly confirmed = new Map<string, number>() // `${user}\0${peer}` → that replica's durable log position
  readonly ready = new Map<string, { ring: string, done: Promise<void> }>() // user → catch-up under that ring
}

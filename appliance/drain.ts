// Drain-and-leave: what `systemctl stop` (SIGTERM) does before the node exits. The node publishes `draining`,
// then waits, bounded, until every user it is the primary of has another alive replica that is fully caught
// up (the grid's underReplicated() is 0 while another alive member exists to hold the copies), then publishes
// `leaving` and stops. Peers then mark it `left` at once instead of waiting for the failure detector, and no
// acknowledged write exists only on the leaving node.
//
// The node's half is publishing the state: MailNode has no method for it yet (see the report of issue 5:
// `setGridState(state)`); until it has, the wait still runs, on the node's own replication.

import { setTimeout as sleepMs } from 'node:timers/promises'
import type { Logger } from 'pino'
import type { NodeStatus } from '../node/types.ts'

// Under systemd's TimeoutStopSec=90 of mailgrid.service, leaving 30 s for `leaving` and the store to close.
export const DRAIN_TIMEOUT_MS = 60_000
// underReplicated() walks every user's log position: twice a second is cheap and quick enough to notice.
export const DRAIN_POLL_MS = 500

export type GridState = 'draining' | 'leaving'

export interface DrainTarget {
  status (): Promise<NodeStatus>
  /** Publishes this node's state in its heartbeat; absent on a node that cannot (no grid method yet). */
  setGridState?: (state: GridState) => void
}

export interface DrainOptions {
  logger: Logger
  timeoutMs?: number
  pollMs?: number
  now?: () => number
  sleep?: (ms: number) => Promise<unknown>
}

export type DrainOutcome =
  | 'standalone' // no grid: nothing to hand over
  | 'handedOver' // every owned user has a caught-up replica on another alive node
  | 'nowhere' // no other alive node, or R = 1: the copies cannot go anywhere, leave now
  | 'timeout' // bounded wait expired with users still under-replicated

export interface DrainResult {
  outcome: DrainOutcome
  waitedMs: number
  underReplicated: number
}

type Grid = NonNullable<NodeStatus['grid']>

function otherAlive (g: Grid): number {
  return g.members.filter(m => m.id !== g.self && m.status === 'alive' && (m.state === 'alive' || m.state === 'joining')).length
}

/** Runs the drain; never throws on a status error (a node that cannot report is left as it is). */
export async function drain (target: DrainTarget, options: DrainOptions): Promise<DrainResult> {
  const log = options.logger
  const now = options.now ?? Date.now
  const sleep = options.sleep ?? sleepMs
  const timeoutMs = options.timeoutMs ?? DRAIN_TIMEOUT_MS
  const pollMs = options.pollMs ?? DRAIN_POLL_MS
  const started = now()
  const done = (outcome: DrainOutcome, underReplicated: number): DrainResult => {
    const result = { outcome, waitedMs: now() - started, underReplicated }
    log.info({ event: 'drain_done', ...result }, outcome === 'timeout' ? 'drain timed out: leaving with users not fully handed over' : 'drained')
    return result
  }

  let status: NodeStatus
  try {
    status = await target.status()
  } catch (err) {
    log.warn({ event: 'drain_status_failed', err: String(err) }, 'cannot read the node status: leaving without a drain')
    return done('timeout', -1)
  }
  if (status.grid === null) return done('standalone', 0)

  if (target.setGridState !== undefined) target.setGridState('draining')
  else log.warn({ event: 'drain_state_unpublished' }, 'this node cannot publish `draining`: waiting for its replicas only')
  log.info({ event: 'draining', usersOwned: status.grid.usersOwned, underReplicated: status.grid.underReplicated }, 'draining')

  let under = status.grid.underReplicated
  for (;;) {
    const g = status.grid
    if (g === null) return done('standalone', 0)
    under = g.underReplicated
    if (g.replicas < 2 || otherAlive(g) === 0) return done('nowhere', under)
    if (under === 0) return done('handedOver', 0)
    if (now() - started >= timeoutMs) return done('timeout', under)
    await sleep(Math.min(pollMs, Math.max(0, timeoutMs - (now() - started))))
    try {
      status = await target.status()
    } catch (err) {
      log.warn({ event: 'drain_status_failed', err: String(err) }, 'cannot read the node status')
      return done('timeout', under)
    }
  }
}

/** After the drain: `leaving`, so peers mark this node left at once (gossip's stop says it again). */
export function announceLeaving (target: DrainTarget, log: Logger): void {
  target.setGridState?.('leaving')
  log.info({ event: 'leaving' }, 'leaving the grid')
}

// Authentication throttling for the whole grid. Each node counts failures in its own AuthThrottle; alone, N nodes
// would give a guesser N times the budget (issue 16). So every failure (and every success, which clears an
// account's count) is also told to every other alive member, and each node counts what it hears as if it had
// seen it: the check at login stays a local lookup, and the counts it reads are the grid's, a few milliseconds
// late. Telling is fire-and-forget in small batches: a lost report loses one count on one node, never a login.
//
// Why every member rather than the account's primary: the per-IP count has no owner on the ring, the login
// check then needs no round trip (a dead primary would otherwise stall every login of its users), and failures
// are few enough (each costs the guesser a password hash) that one small message per batch per peer is cheap.
// Memory stays bounded by the local throttle (AUTH_TRACKED_KEYS_MAX keys, each list capped, expired with the
// window), by the messages in flight (AUTH_REPORT_MESSAGES_INFLIGHT_MAX) and by the reports waiting for one to
// finish (AUTH_REPORTS_PENDING_MAX, the oldest dropped first).

import type { Logger } from 'pino'
import type { Gossip, RpcMessage } from '../gossip/types.ts'
import type { Throttle } from './limits.ts'

/** The RPC: { reports: [{ f: 1, ip, account } | { s: 1, account }] } → { applied }. */
export const AUTH_REPORTS_PROTOCOL = '/mailgrid/auth-reports/1.0.0'
/** Reports wait this long to leave together: one message per peer per burst, not one per failure. */
export const AUTH_REPORT_BATCH_MS = 20
/** Reports in one message; a burst above it leaves in several. */
export const AUTH_REPORTS_PER_MESSAGE_MAX = 512
/** Batches on their way at once (each to every peer); more wait in the queue below. */
export const AUTH_REPORT_MESSAGES_INFLIGHT_MAX = 4
/** Reports waiting to leave; past it the oldest are dropped (a flood is throttled locally anyway). */
export const AUTH_REPORTS_PENDING_MAX = 8192
/** A peer that does not take a report within this long misses it; nobody waits on the answer. */
export const AUTH_REPORT_TIMEOUT_MS = 2_000
/** Longest address and account name taken from a peer (an IPv6 text form is at most 45 characters). */
const IP_CHARS_MAX = 64
const ACCOUNT_CHARS_MAX = 1024 // as CREDENTIAL_BYTES_MAX in imap/commands/login.ts

type Report = { f: 1, ip: string, account: string } | { s: 1, account: string }

export interface GridThrottleComponents {
  gossip: Gossip
  logger: Logger
  /** The node's own counts, which this feeds with the grid's. */
  local: Throttle
}

export interface GridThrottle extends Throttle {
  /** Reports dropped because the outgoing queue was full, and reports sent and heard (for tests and status). */
  readonly stats: { dropped: number, sent: number, heard: number }
  /** Sends what waits and stops batching; safe to call twice. */
  stop (): void
}

export function createGridThrottle (components: GridThrottleComponents): GridThrottle {
  const { gossip, local } = components
  const log = components.logger.child({ ns: 'auth:grid' })
  const pending: Report[] = []
  const stats = { dropped: 0, sent: 0, heard: 0 }
  let timer: NodeJS.Timeout | null = null
  let inflight = 0
  let stopped = false

  gossip.handle(AUTH_REPORTS_PROTOCOL, async (req, ctx) => {
    const reports = Array.isArray(req.header.reports) ? req.header.reports.slice(0, AUTH_REPORTS_PER_MESSAGE_MAX) : []
    let applied = 0
    for (const r of reports as unknown[]) {
      const report = parseReport(r)
      if (report === null) continue
      if ('f' in report) local.fail(report.ip, report.account)
      else local.succeed('', report.account)
      applied++
    }
    stats.heard += applied
    if (applied < reports.length) log.warn({ event: 'auth_reports_malformed', peer: ctx.peer, dropped: reports.length - applied }, 'auth_reports_malformed')
    return { header: { applied } }
  })

  const flush = (): void => {
    if (timer !== null) clearTimeout(timer)
    timer = null
    const peers = gossip.members().filter(m => !m.self && m.status === 'alive').map(m => m.id)
    if (peers.length === 0) pending.length = 0 // nobody to tell: a node alone counts alone
    while (pending.length > 0 && inflight < AUTH_REPORT_MESSAGES_INFLIGHT_MAX) {
      const batch = pending.splice(0, AUTH_REPORTS_PER_MESSAGE_MAX)
      const req: RpcMessage = { header: { reports: batch } }
      stats.sent += batch.length
      inflight++
      void Promise.allSettled(peers.map(async peer => {
        try {
          await gossip.call(peer, AUTH_REPORTS_PROTOCOL, req, { timeoutMs: AUTH_REPORT_TIMEOUT_MS })
        } catch (err) {
          log.debug({ event: 'auth_report_lost', peer, reports: batch.length, err: String(err) }, 'auth_report_lost')
        }
      })).then(() => {
        inflight--
        if (pending.length > 0 && !stopped) flush()
      })
    }
  }

  const tell = (report: Report): void => {
    if (stopped) return
    if (pending.length >= AUTH_REPORTS_PENDING_MAX) {
      pending.shift()
      stats.dropped++
    }
    pending.push(report)
    if (pending.length >= AUTH_REPORTS_PER_MESSAGE_MAX) {
      if (inflight < AUTH_REPORT_MESSAGES_INFLIGHT_MAX) flush()
    } else if (timer === null) {
      timer = setTimeout(flush, AUTH_REPORT_BATCH_MS)
      timer.unref()
    }
  }

  return {
    stats,
    allowed (ip, account) {
      return local.allowed(ip, account)
    },
    fail (ip, account) {
      local.fail(ip, account)
      tell({ f: 1, ip: ip.slice(0, IP_CHARS_MAX), account: account.slice(0, ACCOUNT_CHARS_MAX) })
    },
    succeed (ip, account) {
      local.succeed(ip, account)
      tell({ s: 1, account: account.slice(0, ACCOUNT_CHARS_MAX) })
    },
    stop () {
      if (stopped) return
      flush()
      stopped = true
      pending.length = 0
    }
  }
}

function parseReport (r: unknown): Report | null {
  if (r === null || typeof r !== 'object') return null
  const o = r as Record<string, unknown>
  if (typeof o.account !== 'string' || o.account === '' || o.account.length > ACCOUNT_CHARS_MAX) return null
  if (o.f === 1) {
    if (typeof o.ip !== 'string' || o.ip.length > IP_CHARS_MAX) return null
    return { f: 1, ip: o.ip, account: o.account }
  }
  if (o.s === 1) return { s: 1, account: o.account }
  return null
}

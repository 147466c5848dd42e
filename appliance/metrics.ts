// Prometheus metrics for GET /metrics on the admin listener (issue 11, item 3). The appliance owns prom-client:
// node/ only calls NodeMetrics.inc (node/types.ts), which lands here as a counter increment on a child looked up
// once per label; everything else (queue, store, grid, disk) is read from MailNode.status() once per scrape. A
// registry per node (never prom-client's global one), so two nodes in one process count apart.

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { NodeCounter, NodeHistogram, NodeMetrics, NodeStatus } from '../node/types.ts'

export const METRIC_PREFIX = 'mailgrid_'
/** Label values that exist from the first scrape, so a rate() over a quiet protocol reads 0, not "no data". */
export const PROTOCOLS = ['smtp', 'submission', 'imap', 'pop3'] as const
export const OUTCOMES = ['sent', 'failed', 'deferred'] as const
export const MEMBER_STATUSES = ['alive', 'suspect', 'dead', 'left'] as const
// From a cached FETCH (about a millisecond) to a large APPEND or a COPY of thousands of messages (seconds)
export const COMMAND_SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

interface CounterSpec { name: string, help: string, label: 'protocol' | 'result' | null, initial: readonly string[] }

/** Each node counter as a Prometheus family: its name (units last, `_total` for counters) and its one label. */
export const COUNTERS: Readonly<Record<NodeCounter, CounterSpec>> = {
  connections: { name: 'connections_total', help: 'Connections accepted, by protocol (smtp = the MX, submission = ports 587 and 465).', label: 'protocol', initial: PROTOCOLS },
  commands: { name: 'commands_total', help: 'Protocol commands read, by protocol.', label: 'protocol', initial: PROTOCOLS },
  errors: { name: 'command_errors_total', help: 'Commands answered with a failure (SMTP 4xx/5xx, IMAP NO/BAD, POP3 -ERR), by protocol.', label: 'protocol', initial: PROTOCOLS },
  logins: { name: 'logins_total', help: 'Successful logins, by protocol.', label: 'protocol', initial: ['submission', 'imap', 'pop3'] },
  loginFailures: { name: 'login_failures_total', help: 'Refused or throttled logins, by protocol.', label: 'protocol', initial: ['submission', 'imap', 'pop3'] },
  deliveriesIn: { name: 'deliveries_in_total', help: 'Message copies stored for local users, by the SMTP listener that took the message.', label: 'protocol', initial: ['smtp', 'submission'] },
  bytesIn: { name: 'received_bytes_total', help: 'Message bytes accepted over SMTP, by listener.', label: 'protocol', initial: ['smtp', 'submission'] },
  deliveriesOut: { name: 'deliveries_out_total', help: 'Outbound delivery attempts per recipient, by outcome.', label: 'result', initial: OUTCOMES },
  bytesOut: { name: 'sent_bytes_total', help: 'Message bytes delivered to other domains.', label: null, initial: [] }
}

export interface NodeMetricsRegistry {
  /** The hook handed to createMailNode. */
  readonly node: NodeMetrics
  /** Set after the node exists: the status each scrape reads. */
  setStatus (status: () => Promise<NodeStatus>): void
  /** What /metrics serves. */
  readonly contentType: string
  render (): Promise<string>
}

export interface MetricsInit {
  /** prom-client's default process metrics (event-loop lag, heap, CPU, file descriptors); default true. */
  defaultMetrics?: boolean
}

export function createNodeMetrics (init: MetricsInit = {}): NodeMetricsRegistry {
  const registry = new Registry()
  if (init.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: METRIC_PREFIX })

  type Child = { inc (value?: number): void }
  const children = new Map<NodeCounter, Map<string, Child>>()
  const families = new Map<NodeCounter, Counter<string>>()
  for (const [key, spec] of Object.entries(COUNTERS) as Array<[NodeCounter, CounterSpec]>) {
    const c = new Counter({ name: METRIC_PREFIX + spec.name, help: spec.help, labelNames: spec.label === null ? [] : [spec.label], registers: [registry] })
    families.set(key, c)
    const byLabel = new Map<string, Child>()
    children.set(key, byLabel)
    for (const v of spec.initial) {
      const child = c.labels(v)
      child.inc(0)
      byLabel.set(v, child)
    }
    if (spec.label === null) c.inc(0)
  }

  const histograms = new Map<NodeHistogram, { family: Histogram<string>, byLabel: Map<string, { observe (v: number): void }> }>([
    ['commandSeconds', {
      family: new Histogram({
        name: METRIC_PREFIX + 'command_duration_seconds',
        help: 'Time from a command read to its reply written, by protocol (IMAP, POP3; IDLE and AUTHENTICATE left out).',
        labelNames: ['protocol'],
        buckets: COMMAND_SECONDS_BUCKETS,
        registers: [registry]
      }),
      byLabel: new Map()
    }]
  ])

  const node: NodeMetrics = {
    observe (name, label, seconds) {
      const h = histograms.get(name)
      if (h === undefined) return
      let child = h.byLabel.get(label)
      if (child === undefined) {
        child = h.family.labels(label)
        h.byLabel.set(label, child)
      }
      child.observe(seconds)
    },
    inc (name, label, value = 1) {
      const spec = COUNTERS[name]
      if (spec === undefined) return
      if (spec.label === null) { families.get(name)!.inc(value); return }
      const byLabel = children.get(name)!
      let child = byLabel.get(label)
      if (child === undefined) {
        child = families.get(name)!.labels(label)
        byLabel.set(label, child)
      }
      child.inc(value)
    }
  }

  const gauge = (name: string, help: string, labelNames: string[] = []): Gauge<string> =>
    new Gauge({ name: METRIC_PREFIX + name, help, labelNames, registers: [registry] })
  // figures the store and grid keep as running totals: counters, set to the node's own count at each scrape
  const total = (name: string, help: string): Counter<string> => new Counter({ name: METRIC_PREFIX + name, help, registers: [registry] })
  const setTotal = (c: Counter<string>, v: number): void => { c.reset(); c.inc(v) }

  const openConnections = gauge('open_connections', 'Open client connections, all protocols.')
  const users = gauge('users', 'Users in the directory.')
  const domains = gauge('domains', 'Local domains in the directory.')
  const queueMessages = gauge('queue_messages', 'Messages waiting for delivery to other domains: on the shards this node leads (scope="node") and grid-wide (scope="grid").', ['scope'])
  const queueAge = gauge('queue_oldest_age_seconds', 'Age of the oldest queued message (0 when empty), by scope as queue_messages.', ['scope'])
  const fsyncs = total('store_fsyncs_total', 'Group commits made durable (one fsync each when store.sync is on).')
  const batches = total('store_commit_batches_total', 'Atomic write batches committed (several share one fsync).')
  const diskFree = gauge('disk_free_bytes', 'Free bytes on the data disk at the last check.')
  const diskLow = gauge('disk_low', '1 while the data disk is below its free-space floor (store.minFreeBytes).')
  const members = gauge('grid_members', 'Members of the grid as this node sees them, by status.', ['status'])
  const owned = gauge('grid_users_owned', 'Users this node is the primary of.')
  const replicated = gauge('grid_users_replicated', 'Users this node holds a copy of.')
  const under = gauge('grid_under_replicated_users', 'Users with fewer complete copies than grid.replicas (the replication lag: writes are acknowledged only once on every alive replica, so what lags is a missing copy being re-mirrored).')
  const handoff = gauge('grid_handoff_pending_users', 'Copies this node still holds of users it no longer replicates, until their new holder confirms them.')
  const remirrored = total('grid_remirrored_bytes_total', 'Bytes of mail copied to restore a user\'s replicas since the node started.')

  let status: (() => Promise<NodeStatus>) | null = null

  async function observe (): Promise<void> {
    if (status === null) return
    const st = await status()
    openConnections.set(st.connections)
    users.set(st.users)
    domains.set(st.domains)
    queueMessages.set({ scope: 'node' }, st.queue.local.size)
    queueMessages.set({ scope: 'grid' }, st.queue.grid.size)
    queueAge.set({ scope: 'node' }, st.queue.local.oldestAgeMs / 1000)
    queueAge.set({ scope: 'grid' }, st.queue.grid.oldestAgeMs / 1000)
    setTotal(fsyncs, st.store.commitGroups)
    setTotal(batches, st.store.commitBatches)
    if (st.disk !== undefined) {
      diskFree.set(st.disk.freeBytes)
      diskLow.set(st.disk.low ? 1 : 0)
    }
    const g = st.grid
    if (g !== null) {
      members.reset()
      for (const s of MEMBER_STATUSES) members.set({ status: s }, 0)
      for (const m of g.members) members.inc({ status: m.status })
      owned.set(g.usersOwned)
      replicated.set(g.usersReplicated)
      under.set(g.underReplicated)
      handoff.set(g.handoffPending)
      setTotal(remirrored, g.remirroredBytes)
    }
  }

  return {
    node,
    setStatus (fn) { status = fn },
    contentType: registry.contentType,
    async render () {
      await observe()
      return await registry.metrics()
    }
  }
}

// Prometheus metrics for GET /metrics on the admin listener (issue 11, item 3). The appliance owns prom-client:
// node/ only calls NodeMetrics.inc and .observe (node/types.ts), which land here as additions to plain numbers
// (no allocation on the hot path) that prom-client renders at each scrape; everything else (queue, store, grid,
// disk) is read from MailNode.status() once per scrape. A registry per node (never prom-client's global one), so
// two nodes in one process count apart.

import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client'
import type { Metric } from 'prom-client'
import type { NodeCounter, NodeHistogram, NodeMetrics, NodeStatus } from '../node/types.ts'

export const METRIC_PREFIX = 'mailgrid_'
/** Label values that exist from the first scrape, so a rate() over a quiet protocol reads 0, not "no data". */
export const PROTOCOLS = ['smtp', 'submission', 'imap', 'pop3'] as const
export const OUTCOMES = ['sent', 'failed', 'deferred'] as const
export const MEMBER_STATUSES = ['alive', 'suspect', 'dead', 'left'] as const
/** Members given a series of their own (a grid of appliances has a handful; a label per member beyond this is noise). */
export const MEMBERS_LABELLED_MAX = 64
// From a cached FETCH (about a millisecond) to a large APPEND or a COPY of thousands of messages (seconds)
export const COMMAND_SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
// From a batched commit on an SSD (well under a millisecond) to a slow disk under load (a second and more)
export const COMMIT_SECONDS_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]

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

interface Sample { value: number, labels: Record<string, string | number>, metricName?: string }

/** A counter family kept as plain numbers, read by prom-client through get() at each scrape. */
class CellFamily {
  readonly name: string
  readonly help: string
  readonly type = 'counter'
  readonly aggregator = 'sum'
  readonly label: string | null
  private readonly cells = new Map<string, { value: number }>()
  constructor (name: string, help: string, label: string | null) {
    this.name = name
    this.help = help
    this.label = label
  }

  cell (value: string): { value: number } {
    let c = this.cells.get(value)
    if (c === undefined) this.cells.set(value, c = { value: 0 })
    return c
  }

  async get (): Promise<{ name: string, help: string, type: string, aggregator: string, values: Sample[] }> {
    const label = this.label
    const values = [...this.cells].map(([v, c]) => ({ value: c.value, labels: label === null ? {} : { [label]: v } }))
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  reset (): void { for (const c of this.cells.values()) c.value = 0 }
}

/** A histogram family with one label, as plain bucket counts; rendered cumulative with _sum and _count (Prometheus text 0.0.4). */
class HistogramFamily {
  readonly name: string
  readonly help: string
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  private readonly label: string
  private readonly bounds: readonly number[]
  private readonly byLabel = new Map<string, { counts: Float64Array, sum: number, count: number }>()
  constructor (name: string, help: string, label: string, bounds: readonly number[]) {
    this.name = name
    this.help = help
    this.label = label
    this.bounds = bounds
  }

  observe (value: string, seconds: number): void {
    let h = this.byLabel.get(value)
    if (h === undefined) this.byLabel.set(value, h = { counts: new Float64Array(this.bounds.length), sum: 0, count: 0 })
    let i = 0
    while (i < this.bounds.length && seconds > this.bounds[i]) i++
    if (i < this.bounds.length) h.counts[i]++
    h.sum += seconds
    h.count++
  }

  async get (): Promise<{ name: string, help: string, type: string, aggregator: string, values: Sample[] }> {
    const values: Sample[] = []
    for (const [v, h] of this.byLabel) {
      let cumulative = 0
      this.bounds.forEach((le, i) => {
        cumulative += h.counts[i]
        values.push({ metricName: `${this.name}_bucket`, labels: { le, [this.label]: v }, value: cumulative })
      })
      values.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf', [this.label]: v }, value: h.count })
      values.push({ metricName: `${this.name}_sum`, labels: { [this.label]: v }, value: h.sum })
      values.push({ metricName: `${this.name}_count`, labels: { [this.label]: v }, value: h.count })
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  reset (): void { this.byLabel.clear() }

  /** Over every label: how many, their mean, and the bucket bound under which `q` of them fall (null: above the last). */
  summary (q: number): { count: number, meanSeconds: number, quantileSeconds: number | null } {
    const counts = new Float64Array(this.bounds.length)
    let count = 0
    let sum = 0
    for (const h of this.byLabel.values()) {
      h.counts.forEach((c, i) => { counts[i] += c })
      count += h.count
      sum += h.sum
    }
    let cumulative = 0
    let at: number | null = null
    for (let i = 0; i < this.bounds.length && at === null; i++) {
      cumulative += counts[i]
      if (cumulative >= q * count) at = this.bounds[i]
    }
    return { count, meanSeconds: count === 0 ? 0 : sum / count, quantileSeconds: count === 0 ? 0 : at }
  }
}

export interface NodeMetricsRegistry {
  /** The hook handed to createMailNode. */
  readonly node: NodeMetrics
  /** Set after the node exists: the status each scrape reads. */
  setStatus (status: () => Promise<NodeStatus>): void
  /** This node's replication lag so far (grid_replication_duration_seconds): writes, mean, and the bucket under which 99 % fell. */
  replicationLag (): { count: number, meanSeconds: number, p99Seconds: number | null }
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

  // The families node/ counts into are plain numbers, one per label value, that prom-client reads at each scrape
  // (registered as metrics whose get() answers their values): an increment is two Map lookups and an addition,
  // where a prom-client child would build its label hash string on every call.
  const counters = new Map<NodeCounter, CellFamily>()
  for (const [key, spec] of Object.entries(COUNTERS) as Array<[NodeCounter, CounterSpec]>) {
    const family = new CellFamily(METRIC_PREFIX + spec.name, spec.help, spec.label)
    for (const v of spec.label === null ? [''] : spec.initial) family.cell(v)
    counters.set(key, family)
    registry.registerMetric(family as unknown as Metric)
  }
  const histograms = new Map<NodeHistogram, HistogramFamily>([
    ['commandSeconds', new HistogramFamily(METRIC_PREFIX + 'command_duration_seconds',
      'Time from a command read to its reply written, by protocol (SMTP, IMAP, POP3; IDLE, AUTHENTICATE and AUTH left out).', 'protocol', COMMAND_SECONDS_BUCKETS)],
    ['commitSeconds', new HistogramFamily(METRIC_PREFIX + 'store_commit_duration_seconds',
      'Time for a group commit to become durable (blob fsync and synced LevelDB write: the fsync latency).', 'store', COMMIT_SECONDS_BUCKETS)],
    ['replicationSeconds', new HistogramFamily(METRIC_PREFIX + 'grid_replication_duration_seconds',
      'Replication lag of acknowledged writes: from a write durable on its primary to durable on every other alive replica (the client waits for it).', 'to', COMMAND_SECONDS_BUCKETS)]
  ])
  for (const h of histograms.values()) registry.registerMetric(h as unknown as Metric)

  const node: NodeMetrics = {
    inc (name, label, value = 1) {
      const family = counters.get(name)
      if (family === undefined) return
      family.cell(family.label === null ? '' : label).value += value
    },
    observe (name, label, seconds) {
      histograms.get(name)?.observe(label, seconds)
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
  const combined = total('store_combined_deliveries_total', 'Deliveries written in a batch together with other deliveries to the same user that waited for its lock at the same time.')
  const diskFree = gauge('disk_free_bytes', 'Free bytes on the data disk at the last check.')
  const diskLow = gauge('disk_low', '1 while the data disk is below its free-space floor (store.minFreeBytes).')
  const members = gauge('grid_members', 'Members of the grid as this node sees them, by status.', ['status'])
  const owned = gauge('grid_users_owned', 'Users this node is the primary of.')
  const replicated = gauge('grid_users_replicated', 'Users this node holds a copy of.')
  const under = gauge('grid_under_replicated_users', 'Users with fewer complete copies than grid.replicas (the replication lag: writes are acknowledged only once on every alive replica, so what lags is a missing copy being re-mirrored).')
  const handoff = gauge('grid_handoff_pending_users', 'Copies this node still holds of users it no longer replicates, until their new holder confirms them.')
  const remirrored = total('grid_remirrored_bytes_total', 'Bytes of mail copied to restore a user\'s replicas since the node started.')
  const lastSeen = gauge('grid_member_last_seen_seconds', 'Seconds since this node last heard from each member (a heartbeat or a ping): the grid\'s view of its members.', ['member', 'status'])

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
    setTotal(combined, st.store.combinedWrites ?? 0)
    if (st.disk !== undefined) {
      diskFree.set(st.disk.freeBytes)
      diskLow.set(st.disk.low ? 1 : 0)
    }
    const g = st.grid
    if (g !== null) {
      members.reset()
      for (const s of MEMBER_STATUSES) members.set({ status: s }, 0)
      for (const m of g.members) members.inc({ status: m.status })
      lastSeen.reset()
      for (const m of g.members.slice(0, MEMBERS_LABELLED_MAX)) {
        const seen = (m as { lastSeen?: number }).lastSeen
        if (typeof seen === 'number' && seen > 0) lastSeen.set({ member: m.name === '' ? m.id : `${m.name} (${m.id.slice(-8)})`, status: m.status }, Math.max(0, (Date.now() - seen) / 1000))
      }
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
    replicationLag () {
      const s = histograms.get('replicationSeconds')!.summary(0.99)
      return { count: s.count, meanSeconds: s.meanSeconds, p99Seconds: s.quantileSeconds }
    },
    contentType: registry.contentType,
    async render () {
      await observe()
      return await registry.metrics()
    }
  }
}

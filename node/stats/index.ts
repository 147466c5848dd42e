// Statistics (issue 11): what a node did, per user, per domain and in total, in 5-minute buckets. Counted where
// the event happens (SMTP in, outbound deliveries, the spam filter's verdicts, logins) by StatsSink.add, which on
// the hot path is three Map lookups and three additions; the open bucket lives in memory and is appended to a
// file per day (DATA/stats/YYYY-MM-DD.jsonl) when it closes and at stop. Mailbox sizes are sampled once per
// bucket, when it closes, from the users this node is the primary of (each user is counted by one node).
// Grid-wide figures: the node asked gathers every live member's buckets over a small RPC and sums them; a member
// that does not answer (dead, unreachable) is listed as missing, its history simply absent from the sums.
// Files older than retentionDays are deleted. README.md in this folder describes the format and the endpoints.

import { mkdir, open, readdir, readFile, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { Gossip, Member } from '../../gossip/types.ts'
import { normalizeAddress, normalizeDomain } from '../../store/index.ts'

/** The series, in the order rows are written on disk: new series are added at the end, never renamed or moved. */
export const STATS_SERIES = [
  'received', // message copies stored for a local user (by recipient)
  'sent', // outbound recipients delivered (by sender)
  'bytesIn', // bytes of those copies (by recipient)
  'bytesOut', // bytes of messages delivered to other domains (by sender)
  'failed', // outbound recipients bounced: a permanent failure (by sender)
  'rejected', // recipients or messages refused at SMTP time: unknown user, full mailbox, spam, DMARC (by recipient)
  'quarantined', // copies filed into Junk by the spam filter or DMARC p=quarantine (by recipient)
  'logins', // successful logins, every protocol
  'loginFailures', // refused logins of an existing user
  'mailboxBytes', // bytes in the mailboxes, sampled at the end of each bucket (a gauge: the last sample counts)
  'deferred' // outbound attempts that will be retried (by sender)
] as const
export type StatSeries = typeof STATS_SERIES[number]
const INDEX: Readonly<Record<StatSeries, number>> = Object.fromEntries(STATS_SERIES.map((s, i) => [s, i])) as Record<StatSeries, number>
const GAUGES: ReadonlySet<number> = new Set([INDEX.mailboxBytes])
const newRow = (): number[] => new Array<number>(STATS_SERIES.length).fill(0)

/** 5 minutes: the seeds' bucket. */
export const STATS_STEP_MS = 300_000
export const STATS_RETENTION_DAYS_DEFAULT = 30
/** The longest range a query answers: 30 days of 5-minute buckets is 8,640 points per series. */
export const STATS_RANGE_MS_MAX = 30 * 24 * 3600_000
/** Distinct users and domains counted in one bucket; past it only the grid total counts (a flood of made-up names). */
export const STATS_KEYS_PER_BUCKET_MAX = 100_000
/** Users whose mailbox size one sample reads; more are left out of the sample (and logged). */
export const STATS_SAMPLE_USERS_MAX = 200_000
/** A member that has not answered a gather within this long is counted missing. */
export const STATS_GATHER_TIMEOUT_MS = 5_000
export const STATS_PROTOCOL = '/mailgrid/stats/1.0.0'
/** Parsed day files kept in memory (a query of 30 days reads 31). */
const DAY_CACHE_MAX = 40
const DAY_MS = 24 * 3600_000

/** What a node counts into: `address` is a user ('a@b.c'), a domain ('@b.c'), or null for the grid total only. */
export interface StatsSink {
  add (series: StatSeries, address: string | null, n?: number): void
}

export type StatsScope = { kind: 'grid' } | { kind: 'domain', name: string } | { kind: 'user', address: string }

export interface StatsResult {
  step: number
  t: number[]
  series: Record<StatSeries, number[]>
  nodes: { answered: string[], missing: string[] }
}

/** One node's nonzero buckets of one scope: [bucket start, values in STATS_SERIES order]. */
type Points = Array<[number, number[]]>

export interface StatsComponents {
  logger: Logger
  now?: () => number
  /** On a grid: asks the members for their buckets, and answers theirs. */
  gossip?: Gossip
  /** The mailbox sizes to sample at the end of a bucket: the users this node is the primary of. */
  mailboxes?: () => Promise<Array<[string, number]>>
}

export interface StatsInit {
  dir: string
  retentionDays?: number
}

export interface Stats extends StatsSink {
  start (): Promise<void>
  /** Writes the open bucket; safe to call twice. */
  stop (): Promise<void>
  /** Writes the open bucket now and samples the mailbox sizes into it (the timer does both at each boundary). */
  flush (): Promise<void>
  /** This node's buckets of a scope in [from, to). */
  local (scope: StatsScope, from: number, to: number): Promise<Points>
  /** The grid's (every live member's, summed), as dense series over [from, to). */
  query (scope: StatsScope, from: number, to: number, opts?: { signal?: AbortSignal }): Promise<StatsResult>
}

export class StatsError extends Error {}

/** How statistics and alarms name a member: its host name and the end of its peer id (host names may repeat). */
export function memberName (m: Pick<Member, 'name' | 'id'>): string {
  return m.name !== '' ? `${m.name} (${m.id.slice(-8)})` : m.id
}

/** Parses `grid`, `domain:NAME`, `user:ADDRESS`; throws StatsError on anything else. */
export function parseScope (text: string): StatsScope {
  if (text === 'grid') return { kind: 'grid' }
  const m = /^(domain|user):(.{1,320})$/.exec(text)
  if (m !== null && m[1] === 'domain') {
    const name = normalizeDomain(m[2])
    if (name !== null) return { kind: 'domain', name }
  }
  if (m !== null && m[1] === 'user') {
    const address = normalizeAddress(m[2])
    if (address !== null) return { kind: 'user', address: address.toLowerCase() }
  }
  throw new StatsError(`scope: must be grid, domain:NAME or user:ADDRESS, not ${JSON.stringify(text.slice(0, 100))}`)
}

function keyOf (scope: StatsScope): string {
  return scope.kind === 'grid' ? '' : scope.kind === 'domain' ? '@' + scope.name : scope.address
}

/** The bucket a time falls in. */
export function bucketOf (t: number): number {
  return Math.floor(t / STATS_STEP_MS) * STATS_STEP_MS
}

const dayName = (t: number): string => new Date(t).toISOString().slice(0, 10)
const DAY_FILE = /^(\d{4}-\d{2}-\d{2})\.jsonl$/

/** Adds one node's values into a bucket's: counters add, a gauge keeps the larger (two lines of one bucket, after a restart). */
function mergeInto (into: number[], add: number[], gaugesMax: boolean): void {
  for (let i = 0; i < add.length && i < STATS_SERIES.length; i++) {
    const v = add[i]
    if (typeof v !== 'number' || !Number.isFinite(v)) continue
    if (gaugesMax && GAUGES.has(i)) into[i] = Math.max(into[i] ?? 0, v)
    else into[i] = (into[i] ?? 0) + v
  }
}

export function createStats (components: StatsComponents, init: StatsInit): Stats {
  const now = components.now ?? Date.now
  const log = components.logger.child({ ns: 'stats' })
  const gossip = components.gossip
  const retentionMs = (init.retentionDays ?? STATS_RETENTION_DAYS_DEFAULT) * DAY_MS
  let bucket = bucketOf(now())
  let total = newRow()
  let rows = new Map<string, number[]>([['', total]])
  // the open bucket's rows of an address as given (user row, domain row): the next add() for it is one lookup
  let byAddress = new Map<string, number[][]>()
  let timer: NodeJS.Timeout | null = null
  let running = false
  let writing: Promise<void> = Promise.resolve()
  const days = new Map<string, { size: number, mtimeMs: number, buckets: Map<number, Map<string, number[]>> }>()

  const row = (key: string): number[] | undefined => {
    let r = rows.get(key)
    if (r === undefined) {
      if (rows.size >= STATS_KEYS_PER_BUCKET_MAX) return undefined
      r = newRow()
      rows.set(key, r)
    }
    return r
  }

  /** The rows an address counts into besides the total: its user's (when it is one) and its domain's. */
  const rowsOf = (address: string): number[][] => {
    const at = address.lastIndexOf('@')
    if (at < 0) return []
    const lower = address.toLowerCase()
    const out: number[][] = []
    const d = row(at === 0 ? lower : lower.slice(at))
    if (d !== undefined) out.push(d)
    if (at > 0) {
      const u = row(lower)
      if (u !== undefined) out.push(u)
    }
    if (byAddress.size < STATS_KEYS_PER_BUCKET_MAX) byAddress.set(address, out)
    return out
  }

  const add = (series: StatSeries, address: string | null, n = 1): void => {
    const t = now()
    if (t >= bucket + STATS_STEP_MS) rollover(t)
    const i = INDEX[series]
    total[i] += n
    if (address === null) return
    const rs = byAddress.get(address) ?? rowsOf(address)
    for (let k = 0; k < rs.length; k++) rs[k][i] += n
  }

  /** Takes the open bucket out and starts the next one; the closed one is written in the background. */
  function rollover (t: number): void {
    const closed = { t: bucket, rows }
    bucket = bucketOf(t)
    rows = new Map([['', total = newRow()]])
    byAddress = new Map()
    queueWrite(closed.t, closed.rows) // rows of zeros only are not written
  }

  function queueWrite (t: number, data: Map<string, number[]>): void {
    writing = writing.then(async () => { await write(t, data) }).catch((err: unknown) => {
      log.warn({ event: 'stats_write_failed', err: String(err) }, 'stats_write_failed')
    })
  }

  /** The mailbox sizes as rows of their own for bucket `t`: each user, each domain's sum, the node's sum. */
  function sampleRows (sample: Array<[string, number]>): Map<string, number[]> {
    const out = new Map<string, number[]>()
    const put = (key: string, v: number): void => {
      let r = out.get(key)
      if (r === undefined) out.set(key, r = new Array<number>(STATS_SERIES.length).fill(0))
      r[INDEX.mailboxBytes] += v
    }
    for (const [user, bytes] of sample) {
      const lower = user.toLowerCase()
      put(lower, bytes)
      put(lower.slice(lower.lastIndexOf('@')), bytes)
      put('', bytes)
    }
    return out
  }

  async function write (t: number, data: Map<string, number[]>): Promise<void> {
    const compact: Record<string, number[]> = {}
    for (const [k, v] of data) {
      let last = v.length
      while (last > 0 && v[last - 1] === 0) last--
      if (last > 0) compact[k] = v.slice(0, last)
    }
    if (Object.keys(compact).length === 0) return
    const fh = await open(join(init.dir, `${dayName(t)}.jsonl`), 'a')
    try {
      await fh.write(JSON.stringify({ t, r: compact }) + '\n')
    } finally {
      await fh.close()
    }
  }

  async function sampleMailboxes (): Promise<Array<[string, number]> | undefined> {
    if (components.mailboxes === undefined) return undefined
    try {
      const all = await components.mailboxes()
      if (all.length > STATS_SAMPLE_USERS_MAX) log.warn({ event: 'stats_sample_cut', users: all.length }, 'stats_sample_cut')
      return all.slice(0, STATS_SAMPLE_USERS_MAX)
    } catch (err) {
      log.warn({ event: 'stats_sample_failed', err: String(err) }, 'stats_sample_failed')
      return undefined
    }
  }

  async function prune (): Promise<void> {
    const oldest = dayName(now() - retentionMs)
    for (const name of await readdir(init.dir).catch(() => [] as string[])) {
      const m = DAY_FILE.exec(name)
      if (m !== null && m[1] < oldest) {
        await rm(join(init.dir, name), { force: true })
        days.delete(name)
        log.info({ event: 'stats_day_dropped', day: m[1] }, 'stats_day_dropped')
      }
    }
  }

  /** At a bucket boundary: writes the bucket that ended, then the mailbox sizes as they are at its end. */
  async function closeBucket (manual: boolean): Promise<void> {
    const t = now()
    if (manual || t >= bucket + STATS_STEP_MS) rollover(t)
    const sample = await sampleMailboxes()
    // on schedule (just after a boundary) the sample closes the bucket that ended; by hand, the open one
    if (sample !== undefined) queueWrite(manual ? bucketOf(t) : bucketOf(t) - STATS_STEP_MS, sampleRows(sample))
    await writing
    await prune()
  }

  function schedule (): void {
    if (!running) return
    const t = now()
    const delay = Math.max(1000, bucketOf(t) + STATS_STEP_MS - t + 50)
    timer = setTimeout(() => {
      timer = null
      closeBucket(false).catch(() => {}).finally(schedule)
    }, delay)
    timer.unref()
  }

  async function readDay (name: string): Promise<Map<number, Map<string, number[]>>> {
    const path = join(init.dir, name)
    const st = await stat(path).catch(() => null)
    if (st === null) return new Map()
    const cached = days.get(name)
    if (cached !== undefined && cached.size === st.size && cached.mtimeMs === st.mtimeMs) return cached.buckets
    const buckets = new Map<number, Map<string, number[]>>()
    const text = await readFile(path, 'utf8').catch(() => '')
    for (const line of text.split('\n')) {
      if (line === '') continue
      let v: unknown
      try { v = JSON.parse(line) } catch { continue } // a line cut by a crash
      const o = v as { t?: unknown, r?: unknown }
      if (typeof o.t !== 'number' || typeof o.r !== 'object' || o.r === null) continue
      let b = buckets.get(o.t)
      if (b === undefined) buckets.set(o.t, b = new Map())
      for (const [k, vals] of Object.entries(o.r as Record<string, unknown>)) {
        if (!Array.isArray(vals)) continue
        let r = b.get(k)
        if (r === undefined) b.set(k, r = new Array<number>(STATS_SERIES.length).fill(0))
        mergeInto(r, vals as number[], true)
      }
    }
    days.set(name, { size: st.size, mtimeMs: st.mtimeMs, buckets })
    while (days.size > DAY_CACHE_MAX) days.delete(days.keys().next().value as string)
    return buckets
  }

  async function local (scope: StatsScope, from: number, to: number): Promise<Points> {
    const key = keyOf(scope)
    const start = Math.max(bucketOf(from), bucketOf(now() - retentionMs))
    const byT = new Map<number, number[]>()
    for (let d = Math.floor(start / DAY_MS) * DAY_MS; d < to; d += DAY_MS) {
      for (const [t, b] of await readDay(`${dayName(d)}.jsonl`)) {
        const r = b.get(key)
        if (r === undefined || t < start || t >= to) continue
        let into = byT.get(t)
        if (into === undefined) byT.set(t, into = new Array<number>(STATS_SERIES.length).fill(0))
        mergeInto(into, r, true)
      }
    }
    const open = rows.get(key)
    if (open !== undefined && bucket >= start && bucket < to) {
      let into = byT.get(bucket)
      if (into === undefined) byT.set(bucket, into = new Array<number>(STATS_SERIES.length).fill(0))
      mergeInto(into, open, true)
    }
    return [...byT].sort((a, b) => a[0] - b[0])
  }

  const serve = (): void => {
    gossip?.handle(STATS_PROTOCOL, async req => {
      const h = req.header
      if (typeof h.scope !== 'string' || !Number.isSafeInteger(h.from) || !Number.isSafeInteger(h.to)) throw new Error('bad stats request')
      const from = h.from as number
      const to = h.to as number
      if (to - from > STATS_RANGE_MS_MAX + STATS_STEP_MS) throw new Error('range too long')
      const points = await local(parseScope(h.scope), from, to)
      return { header: { series: STATS_SERIES.length }, body: Buffer.from(JSON.stringify(points)) }
    })
  }

  async function query (scope: StatsScope, from: number, to: number, opts: { signal?: AbortSignal } = {}): Promise<StatsResult> {
    const start = bucketOf(from)
    const end = bucketOf(to - 1) + STATS_STEP_MS
    if (end - start > STATS_RANGE_MS_MAX + STATS_STEP_MS) throw new StatsError(`range: at most ${STATS_RANGE_MS_MAX / DAY_MS} days`)
    const answered: string[] = []
    const missing: string[] = []
    const parts: Points[] = [await local(scope, start, end)]
    if (gossip === undefined) {
      answered.push('self')
    } else {
      const me = gossip.members().find(m => m.self)
      answered.push(me !== undefined ? memberName(me) : gossip.self)
      const others = gossip.members().filter(m => !m.self && m.status !== 'left')
      await Promise.all(others.map(async m => {
        const name = memberName(m)
        if (m.status !== 'alive') { missing.push(name); return }
        try {
          const res = await gossip.call(m.id, STATS_PROTOCOL, { header: { scope: scopeText(scope), from: start, to: end } }, { timeoutMs: STATS_GATHER_TIMEOUT_MS, signal: opts.signal })
          const points = JSON.parse(Buffer.from(res.body ?? new Uint8Array()).toString('utf8')) as unknown
          if (!Array.isArray(points)) throw new Error('not a list of points')
          parts.push(points.filter((p): p is [number, number[]] => Array.isArray(p) && typeof p[0] === 'number' && Array.isArray(p[1])))
          answered.push(name)
        } catch (err) {
          log.debug({ event: 'stats_gather_missed', peer: m.id, err: String(err) }, 'stats_gather_missed')
          missing.push(name)
        }
      }))
    }
    const n = Math.round((end - start) / STATS_STEP_MS)
    const t = Array.from({ length: n }, (_, i) => start + i * STATS_STEP_MS)
    const series = Object.fromEntries(STATS_SERIES.map(s => [s, new Array<number>(n).fill(0)])) as Record<StatSeries, number[]>
    for (const points of parts) {
      for (const [bt, vals] of points) {
        const i = Math.round((bt - start) / STATS_STEP_MS)
        if (i < 0 || i >= n || bt % STATS_STEP_MS !== 0) continue
        STATS_SERIES.forEach((s, k) => {
          const v = vals[k]
          if (typeof v === 'number' && Number.isFinite(v)) series[s][i] += v // members add up: gauges too (each user sampled by one node)
        })
      }
    }
    return { step: STATS_STEP_MS, t, series, nodes: { answered: answered.sort(), missing: missing.sort() } }
  }

  return {
    add,
    local,
    query,
    async flush () { await closeBucket(true) },
    async start () {
      if (running) return
      running = true
      await mkdir(init.dir, { recursive: true })
      bucket = bucketOf(now())
      serve()
      await prune()
      schedule()
    },
    async stop () {
      if (!running) return
      running = false
      if (timer !== null) clearTimeout(timer)
      timer = null
      // the open bucket is written as it is (its mailbox sample is taken when a bucket closes on schedule)
      rollover(now())
      await writing
    }
  }
}

export function scopeText (scope: StatsScope): string {
  return scope.kind === 'grid' ? 'grid' : scope.kind === 'domain' ? `domain:${scope.name}` : `user:${scope.address}`
}

/** The result as CSV: a header row, then one row per bucket with its start in ISO 8601. */
export function statsCsv (r: StatsResult): string {
  const names = Object.keys(r.series) as StatSeries[]
  const lines = [['time', ...names].join(',')]
  r.t.forEach((t, i) => { lines.push([new Date(t).toISOString(), ...names.map(s => String(r.series[s][i]))].join(',')) })
  return lines.join('\r\n') + '\r\n'
}

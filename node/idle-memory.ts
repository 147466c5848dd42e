// Gives memory back when the node goes idle. Under load V8 grows the young generation to its maximum (64 MiB on a
// 64-bit machine with this much memory) and keeps it committed; an idle process makes no collection, and V8's own
// memory reducer did not shrink it (an idle node with 10,000 users stayed at 210 MiB of RSS for minutes, 52 MiB of
// it the young generation with 5-9 MiB in use). One full collection that reduces the footprint (V8's "last resort"
// flavour: it compacts and shrinks the young generation) brought the same node to 141 MiB. So: when the event
// loop has been nearly idle for IDLE_INTERVALS checks in a row, and the heap has grown by GROWTH_MIN_BYTES since
// the last reduction, run one; at most one per REDUCE_MIN_GAP_MS. A node under load never runs one, an idle node
// runs one per idle period, and the pause (tens of milliseconds) falls where nobody waits on the event loop.
// The young generation grows back with the next load.

import { performance } from 'node:perf_hooks'
import { getHeapStatistics, setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { Logger } from 'pino'

/** How often the event loop's utilization is read. */
export const IDLE_CHECK_MS = 5_000
/** An interval in which the event loop was busy less than this share counts as idle. */
export const IDLE_UTILIZATION_MAX = 0.02
/** Idle intervals in a row before a reduction. */
export const IDLE_INTERVALS = 3
/** Growth of the heap's committed memory since the last reduction (or the start) that makes a new one worth it. */
export const GROWTH_MIN_BYTES = 16 * 2 ** 20
/** Reductions are at least this far apart. */
export const REDUCE_MIN_GAP_MS = 30_000

type GcFunction = (options?: { type?: 'major' | 'minor', execution?: 'sync' | 'async', flavor?: 'regular' | 'last-resort' }) => unknown

/** V8's collector, as `--expose-gc` gives it to scripts (node's documented use of v8.setFlagsFromString). */
function exposedGc (): () => void {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as GcFunction
  return () => { gc({ type: 'major', execution: 'sync', flavor: 'last-resort' }) }
}

export interface IdleMemoryComponents {
  logger: Pick<Logger, 'info' | 'warn'>
  now?: () => number
  /** The event loop's utilization since the previous call (0-1). */
  utilization?: () => number
  /** The heap's committed physical memory, in bytes. */
  heapBytes?: () => number
  /** Runs a memory-reducing full collection. */
  reduce?: () => void
}

export class IdleMemory {
  readonly #logger: Pick<Logger, 'info' | 'warn'>
  readonly #now: () => number
  readonly #utilization: () => number
  readonly #heapBytes: () => number
  readonly #reduce: () => void
  #timer: NodeJS.Timeout | null = null
  #idle = 0
  /** Committed heap after the last reduction; none yet: 0, so the first idle period after the start reduces. */
  #baseline = 0
  #lastAt = -Infinity
  /** The collector failed once: never tried again. */
  #failed = false
  reductions = 0

  constructor (components: IdleMemoryComponents) {
    this.#logger = components.logger
    this.#now = components.now ?? Date.now
    this.#utilization = components.utilization ?? eventLoopUtilization()
    this.#heapBytes = components.heapBytes ?? (() => getHeapStatistics().total_physical_size)
    this.#reduce = components.reduce ?? exposedGc()
  }

  start (): void {
    if (this.#timer !== null) return
    this.#utilization() // the first interval starts now
    this.#timer = setInterval(() => { this.check() }, IDLE_CHECK_MS)
    this.#timer.unref()
  }

  stop (): void {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
  }

  /** One interval's check (the timer's; tests call it directly). True when it reduced. */
  check (): boolean {
    if (this.#failed) return false
    if (this.#utilization() > IDLE_UTILIZATION_MAX) {
      this.#idle = 0
      return false
    }
    if (++this.#idle < IDLE_INTERVALS) return false
    const before = this.#heapBytes()
    if (before < this.#baseline + GROWTH_MIN_BYTES || this.#now() - this.#lastAt < REDUCE_MIN_GAP_MS) return false
    const rss = process.memoryUsage.rss()
    const t0 = performance.now()
    try {
      this.#reduce()
    } catch (err) {
      this.#logger.warn({ event: 'memory_reduce_failed', err: (err as Error).message }, 'idle memory reduction failed')
      this.#failed = true
      this.stop()
      return false
    }
    this.#lastAt = this.#now()
    this.#baseline = this.#heapBytes()
    this.reductions++
    this.#logger.info({
      event: 'memory_reduced',
      heapBefore: before,
      heapAfter: this.#baseline,
      rssBefore: rss,
      rssAfter: process.memoryUsage.rss(),
      ms: Math.round(performance.now() - t0)
    }, 'idle: heap reduced')
    return true
  }
}

/** The event loop's utilization between calls. */
function eventLoopUtilization (): () => number {
  let last = performance.eventLoopUtilization()
  return () => {
    const now = performance.eventLoopUtilization()
    const u = performance.eventLoopUtilization(now, last).utilization
    last = now
    return u
  }
}

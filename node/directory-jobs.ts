// What the runners of jobs kept as replicated directory entries share (IMAP imports, node/migrate/imap-jobs.ts;
// mail collection, node/collect/collector.ts): a scan every so often and at once when an entry under the jobs'
// prefix changes, never two scans at a time; at most one running job per key and a bound on those in flight; a job
// begins only on the node that is its user's primary; every job is aborted on stop, and stop waits for them.
// What a job is, when it is due and what it writes back stay with each runner (its `scan`).

import type { Logger } from 'pino'
import type { DirectoryRecord } from '../store/index.ts'

export interface DirectoryJobsComponents {
  /** Directory changes (the store's onDirectoryChange): a new or changed entry is looked at at once. */
  onDirectoryChange?: (listener: (records: DirectoryRecord[]) => void) => () => void
  /** Whether this node is the user's primary now (always true off a grid). */
  isPrimary: (user: string) => boolean
  logger: Logger
}

export interface DirectoryJobsInit {
  /** The jobs' entries: a change to one under it starts a scan. */
  prefix: string
  scanMs: number
  /** Jobs this node runs at once. */
  jobsMax: number
  /** The log event when a scan fails. */
  scanFailedEvent: string
  /** One scan: reads the entries, begins the jobs due (`mayBegin`, `begin`), aborts those that should stop. */
  scan: () => Promise<void>
}

/** A running job as the runner sees it. */
export interface RunningJob<T> {
  key: string
  /** What the runner keeps with the job (e.g. its run id). */
  tag: T
  abort: () => void
}

interface Entry<T> { tag: T, abort: AbortController, done: Promise<void> }

export class DirectoryJobs<T = undefined> {
  private readonly c: DirectoryJobsComponents
  private readonly init: DirectoryJobsInit
  private readonly running = new Map<string, Entry<T>>()
  private timer: NodeJS.Timeout | null = null
  private unsubscribe: (() => void) | null = null
  private scanning = false
  private started = false

  constructor (components: DirectoryJobsComponents, init: DirectoryJobsInit) {
    this.c = components
    this.init = init
  }

  get isStarted (): boolean { return this.started }

  /** Whether no more jobs may begin now (stopped, or as many running as allowed). */
  get full (): boolean { return !this.started || this.running.size >= this.init.jobsMax }

  start (): void {
    if (this.started) return
    this.started = true
    this.timer = setInterval(() => { void this.scan() }, this.init.scanMs)
    this.timer.unref()
    this.unsubscribe = this.c.onDirectoryChange?.(records => {
      if (records.some(r => r.key.includes(this.init.prefix))) void this.scan()
    }) ?? null
    void this.scan()
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    if (this.timer !== null) clearInterval(this.timer)
    this.unsubscribe?.()
    for (const r of this.running.values()) r.abort.abort()
    await Promise.allSettled([...this.running.values()].map(r => r.done))
  }

  async scan (): Promise<void> {
    if (!this.started || this.scanning) return
    this.scanning = true
    try {
      await this.init.scan()
    } catch (err) {
      this.c.logger.warn({ err: String(err) }, this.init.scanFailedEvent)
    } finally {
      this.scanning = false
    }
  }

  /** Whether the job `key` of `user` may begin here now: started, not running already, room left, this node its user's primary. */
  mayBegin (key: string, user: string): boolean {
    return !this.full && !this.running.has(key) && this.c.isPrimary(user)
  }

  /** Runs `work` as the job `key`; its signal aborts on stop or `abort`. */
  begin (key: string, tag: T, work: (signal: AbortSignal) => Promise<void>): void {
    const abort = new AbortController()
    const entry: Entry<T> = { tag, abort, done: Promise.resolve() }
    this.running.set(key, entry)
    entry.done = work(abort.signal).finally(() => {
      if (this.running.get(key) === entry) this.running.delete(key)
    })
  }

  jobs (): Array<RunningJob<T>> {
    return [...this.running].map(([key, e]) => ({ key, tag: e.tag, abort: () => { e.abort.abort() } }))
  }
}

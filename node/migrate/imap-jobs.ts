// IMAP import jobs: the record of each (one per target user) is a replicated directory entry
// `import-imap/ADDRESS`, written by the admin API of any node; the node that is the target user's primary runs it
// (imap.ts) and writes its progress and report back into the entry. After a failover the new primary sees a job
// still `running` whose user it now leads and runs it again: the import skips what is already there, so it
// continues where the old primary stopped. A node that stops being the primary aborts its run.
//
// The entry holds the source password as given: we log in with it, so it cannot be hashed. It is never logged and
// the API never shows it (appliance/import-routes.ts).

import type { Logger } from 'pino'
import { isMailError } from '../../store/index.ts'
import type { Directory, DirectoryRecord, MailStore } from '../../store/index.ts'
import { DirectoryJobs } from '../directory-jobs.ts'
import { emptyReport, importImap } from './imap.ts'
import type { ImapSource, ImportReport } from './imap.ts'
import type { ImportQuota } from './quota.ts'

export const IMPORT_ENTRY_PREFIX = 'import-imap/'
export const IMPORT_SCAN_MS = 2000 // how often jobs are looked for besides directory changes
export const IMPORT_PROGRESS_MS = 5000 // how often a running job's report is written back
export const IMPORT_RETRY_MS = 30_000 // a run stopped by a temporary failure starts again after this
export const IMPORT_JOBS_IN_FLIGHT = 4 // imports one node runs at once

export type ImportState = 'queued' | 'running' | 'done' | 'failed'

/** The job as stored (directory entry value). */
export interface ImportJob {
  target: string
  source: ImapSource
  run: string // a new request gets a new run id; a runner whose run id is gone stops
  state: ImportState
  requested: number
  started?: number
  finished?: number
  node?: string // the node that runs or ran it
  report?: ImportReport
  error?: string
}

export interface ImportJobsComponents {
  directory: Pick<Directory, 'getEntry' | 'listEntries' | 'updateEntry'>
  /** Directory changes (the store's onDirectoryChange): a new job is seen at once. */
  onDirectoryChange?: (listener: (records: DirectoryRecord[]) => void) => () => void
  mail: MailStore
  /** The user's and the domain's quota for what is imported (node/migrate/quota.ts). */
  quota?: ImportQuota
  /** Whether this node is the user's primary now (always true off a grid). */
  isPrimary: (user: string) => boolean
  /** This node's id (the grid's peer id, or the hostname off a grid). */
  self: () => string
  logger: Logger
  now?: () => number
}

export interface ImportJobsInit {
  messageBytesMax: number
  scanMs?: number
}

export const entryName = (target: string): string => IMPORT_ENTRY_PREFIX + target

export function asJob (v: Record<string, unknown> | null): ImportJob | null {
  if (v === null || typeof v.target !== 'string' || typeof v.run !== 'string' || typeof v.source !== 'object' || v.source === null) return null
  return v as unknown as ImportJob
}

export class ImapImportJobs {
  private readonly c: ImportJobsComponents
  private readonly init: ImportJobsInit
  private readonly log: Logger
  private readonly now: () => number
  private readonly jobs: DirectoryJobs<string> // target → the run id it runs
  private readonly backoff = new Map<string, number>() // target → not before (ms)

  constructor (components: ImportJobsComponents, init: ImportJobsInit) {
    this.c = components
    this.init = init
    this.log = components.logger.child({ ns: 'migrate' })
    this.now = components.now ?? Date.now
    this.jobs = new DirectoryJobs({ onDirectoryChange: components.onDirectoryChange, isPrimary: components.isPrimary, logger: this.log }, {
      prefix: IMPORT_ENTRY_PREFIX,
      scanMs: init.scanMs ?? IMPORT_SCAN_MS,
      jobsMax: IMPORT_JOBS_IN_FLIGHT,
      scanFailedEvent: 'import_scan_failed',
      scan: async () => { await this.reconcile() }
    })
  }

  start (): void { this.jobs.start() }

  async stop (): Promise<void> { await this.jobs.stop() }

  async scan (): Promise<void> { await this.jobs.scan() }

  /** Starts the jobs this node should run, stops those it should not. */
  private async reconcile (): Promise<void> {
    const jobs = (await this.c.directory.listEntries(IMPORT_ENTRY_PREFIX)).map(e => asJob(e.value)).filter((j): j is ImportJob => j !== null)
    const live = new Map(jobs.map(j => [j.target, j]))
    for (const r of this.jobs.jobs()) {
      const j = live.get(r.key)
      if (j === undefined || j.run !== r.tag || !this.c.isPrimary(r.key)) {
        this.log.info({ target: r.key, reason: j === undefined ? 'removed' : j.run !== r.tag ? 'replaced' : 'not primary' }, 'import_stopping')
        r.abort()
      }
    }
    for (const j of jobs) {
      if (!this.jobs.isStarted) break
      if (j.state !== 'queued' && j.state !== 'running') continue
      if (!this.jobs.mayBegin(j.target, j.target)) continue
      if ((this.backoff.get(j.target) ?? 0) > this.now()) continue
      this.jobs.begin(j.target, j.run, async signal => { await this.execute(j, signal) })
    }
  }

  /** Writes to the job's entry when it still is this run. */
  private async update (j: ImportJob, change: (job: ImportJob) => void): Promise<void> {
    await this.c.directory.updateEntry(entryName(j.target), cur => {
      const now = asJob(cur)
      if (now === null || now.run !== j.run) return cur
      change(now)
      return now as unknown as Record<string, unknown>
    })
  }

  private async execute (j: ImportJob, signal: AbortSignal): Promise<void> {
    const log = this.log.child({ target: j.target, run: j.run })
    const resumed = j.state === 'running'
    let lastWrite = 0
    try {
      await this.update(j, x => { x.state = 'running'; x.started = this.now(); x.node = this.c.self(); x.error = undefined })
      log.info({ source: `${j.source.host}:${j.source.port}`, user: j.source.user, resumed }, 'import_started')
      const report = await importImap({ mail: this.c.mail, ...(this.c.quota !== undefined ? { quota: this.c.quota } : {}), logger: this.c.logger }, {
        source: j.source,
        target: j.target,
        messageBytesMax: this.init.messageBytesMax,
        signal,
        onProgress: r => {
          if (this.now() - lastWrite < IMPORT_PROGRESS_MS) return
          lastWrite = this.now()
          void this.update(j, x => { x.report = r }).catch(() => {})
        }
      })
      await this.update(j, x => { x.state = 'done'; x.finished = this.now(); x.report = report })
      this.backoff.delete(j.target)
      log.info({ copied: report.copied, skipped: report.skipped, failed: report.failed, bytes: report.bytes }, 'import_finished')
    } catch (err) {
      if (signal.aborted) {
        log.info('import_aborted')
        return
      }
      // this node no longer leads the user, or the user's mail is not ready here: the job stays running for
      // whichever node leads it next (or this one, a little later)
      if (isMailError(err, 'unavailable') || isMailError(err, 'temp')) {
        this.backoff.set(j.target, this.now() + IMPORT_RETRY_MS)
        log.warn({ err: String(err) }, 'import_paused')
        return
      }
      const message = err instanceof Error ? err.message : String(err)
      const e = err as { responseText?: string, authenticationFailed?: boolean }
      const reason = e.authenticationFailed === true ? `login to the source failed: ${e.responseText ?? message}` : (e.responseText ?? message)
      log.warn({ err: reason }, 'import_failed')
      await this.update(j, x => { x.state = 'failed'; x.finished = this.now(); x.error = reason.replace(/[\r\n]+/g, ' ').slice(0, 500); x.report ??= emptyReport() }).catch(() => {})
    }
  }
}

// node/backup: backup of the whole grid (the directory and every user's log with the bodies it names, incremental,
// content-addressed, with a manifest of SHA-256 checksums), its verification and its restore. The file format is
// format.ts; a run is writer.ts, verify.ts checks, restore.ts rebuilds. The same code runs in the CLI (reading the
// grid over the admin API) and in the node (the scheduled backup, below, reading through UserMail).

import type { Logger } from 'pino'
import type { Store } from '../../store/index.ts'
import type { Grid } from '../grid/index.ts'
import type { UserMail } from '../migrate/user-mail.ts'
import { runBackup } from './writer.ts'
import { readKeyFile } from './crypto.ts'
import type { BackupSource } from './format.ts'
import type { RestoreTarget } from './restore.ts'

export * from './format.ts'
export { backupKey, readKeyFile, BACKUP_CIPHER, BACKUP_KEY_BYTES } from './crypto.ts'
export type { BackupKey, ManifestEncryption } from './crypto.ts'
export { runBackup, BACKUP_USERS_CONCURRENCY } from './writer.ts'
export type { BackupOptions } from './writer.ts'
export { verifyBackup } from './verify.ts'
export type { VerifyReport } from './verify.ts'
export { restoreBackup, RESTORED_PREFIX } from './restore.ts'
export type { RestoreOptions, RestoreReport, RestoreTarget } from './restore.ts'

/**
 * The ring key whose primary runs the scheduled backup: one node at a time (the ring's owner of this key), and
 * another as soon as that one is gone. Not an address, so no user is placed with it.
 */
export const BACKUP_RING_KEY = '\x00backup-schedule'

/** The node's own reading of the grid: the directory from its store, each user's mail at the user's primary. */
export function nodeBackupSource (c: { store: Store, userMail: UserMail, node: string }): BackupSource {
  return {
    node: c.node,
    directory: async () => await c.store.exportDirectory(),
    users: async () => (await c.store.listUsers()).map(u => u.address),
    position: async user => await c.userMail.position(user),
    readLog: async (user, from, to) => await c.userMail.readLog(user, from, to),
    blob: async (user, hash, offset) => await c.userMail.blob(user, hash, offset)
  }
}

/** The node's own writing into the grid, for a restore the admin API drives. */
export function nodeRestoreTarget (c: { store: Store, userMail: UserMail }): RestoreTarget {
  return {
    mergeDirectory: async records => { await c.store.mergeDirectory(records) },
    directory: async () => await c.store.exportDirectory(),
    hasUser: async user => await c.store.getUser(user) !== null,
    position: async user => await c.userMail.position(user),
    restoreLog: async (user, entries, blobs, prev) => await c.userMail.restoreLog(user, entries, blobs, prev),
    mail: user => ({
      ensureMailbox: async (name, specialUse) => await c.userMail.ensureMailbox(user, name, specialUse ?? null),
      subscribe: async name => { await c.userMail.subscribe(user, name) },
      append: async (mailbox, m) => await c.userMail.append(user, mailbox, m)
    })
  }
}

export interface BackupSchedulerComponents {
  store: Store
  userMail: UserMail
  grid: Grid | null
  logger: Logger
  now?: () => number
}

export interface BackupSchedulerInit {
  dir: string
  intervalMinutes: number // 0: off
  node: string
  /** A 32-byte key file (crypto.ts): read at every run, so a missing or wrong one fails that run, said in the log. */
  keyFile?: string
}

/** The scheduled backup (config backup.dir, backup.intervalMinutes): each interval, on the one node that owns BACKUP_RING_KEY. */
export class BackupScheduler {
  private readonly c: BackupSchedulerComponents
  private readonly init: BackupSchedulerInit
  private timer: ReturnType<typeof setInterval> | null = null
  private running: Promise<void> | null = null
  private readonly abort = new AbortController()

  constructor (components: BackupSchedulerComponents, init: BackupSchedulerInit) {
    this.c = components
    this.init = init
  }

  start (): void {
    if (this.timer !== null || this.init.intervalMinutes <= 0 || this.init.dir === '') return
    this.timer = setInterval(() => { void this.tick() }, this.init.intervalMinutes * 60_000)
    this.timer.unref()
  }

  /** Whether this node is the one that runs the scheduled backup now. */
  isRunner (): boolean {
    const g = this.c.grid
    return g === null || g.primaryOf(BACKUP_RING_KEY) === g.self
  }

  async tick (): Promise<void> {
    if (this.running !== null || !this.isRunner()) return
    const log = this.c.logger
    this.running = (async () => {
      try {
        const key = this.init.keyFile === undefined ? undefined : await readKeyFile(this.init.keyFile)
        const { run } = await runBackup(nodeBackupSource({ store: this.c.store, userMail: this.c.userMail, node: this.init.node }), this.init.dir, { signal: this.abort.signal, now: this.c.now, ...(key !== undefined ? { key } : {}) })
        log.info({ event: 'backup_done', dir: this.init.dir, run: run.id, users: run.users, usersChanged: run.usersChanged, bytesWritten: run.bytesWritten, files: run.filesWritten, failed: run.failed.length }, 'scheduled backup done')
        for (const f of run.failed.slice(0, 20)) log.warn({ event: 'backup_user_failed', user: f.user, err: f.error }, 'a user was not backed up')
      } catch (err) {
        if (!this.abort.signal.aborted) log.warn({ event: 'backup_failed', dir: this.init.dir, err: String(err) }, 'scheduled backup failed')
      } finally {
        this.running = null
      }
    })()
    await this.running
  }

  async stop (): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
    this.abort.abort()
    await this.running
  }
}

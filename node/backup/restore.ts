// `mailgrid restore --from DIR`: every file is checked against the manifest's SHA-256 before it is used.
//   the whole grid   the directory records (versions kept: they win over nothing, on a fresh grid), then each user's
//                    log replayed at its primary (the store's applyLog, then replicated): the same mailboxes, UIDs,
//                    UIDVALIDITY, MODSEQs, flags, keywords, internal dates as at the backup's position
//   --user U         the same for one user (its directory record too when the grid lacks it). When the user's live
//                    log no longer continues the backup's (it lived on after the backup), replaying is impossible
//                    without losing what came after: each mailbox is restored as Restored/NAME beside the live one
//   --mailbox NAME   one mailbox of the user as it was at the backup's position, into Restored/NAME: its messages
//                    with their flags, keywords and internal dates (new UIDs in that folder)

import { domainOf, isMailError } from '../../store/index.ts'
import type { DirectoryRecord, LogAnchor, LogEntry } from '../../store/index.ts'
import { importGid } from '../migrate/maildir.ts'
import type { MailTarget } from '../migrate/types.ts'
import { BackupError, blobPath, readChecked, readManifest, unlockManifest } from './format.ts'
import type { BackupKey } from './crypto.ts'
import type { Manifest } from './format.ts'
import { parseSegment } from './verify.ts'

export const RESTORE_BATCH_ENTRIES = 256
export const RESTORE_BATCH_BYTES = 8 * 1024 * 1024 // bodies per batch (one larger body goes alone)
export const RESTORE_USERS_CONCURRENCY = 4
export const RESTORE_WAIT_MS = 60_000 // for the user's primary to know the user (the directory reaches it by push)
export const RESTORED_PREFIX = 'Restored'

export interface RestoreTarget {
  mergeDirectory (records: DirectoryRecord[]): Promise<void>
  /** The grid's directory records now, tombstones included. */
  directory (): Promise<DirectoryRecord[]>
  /** Whether the grid's directory has this user now. */
  hasUser (user: string): Promise<boolean>
  /** The user's log position at its primary (creating its first entries there when it has none). */
  position (user: string): Promise<LogAnchor>
  restoreLog (user: string, entries: LogEntry[], blobs: Buffer[], prev?: LogAnchor): Promise<number>
  mail (user: string): MailTarget
}

export interface RestoreReport {
  users: number
  entries: number
  messages: number // messages added by a mailbox restore
  mailboxes: string[] // Restored/... folders written
  problems: string[]
}

export interface RestoreOptions {
  user?: string
  mailbox?: string
  signal?: AbortSignal
  onUser?: (user: string) => void
  /** The key of an encrypted backup (crypto.ts); refused when it is not the backup's. */
  key?: BackupKey
}

async function directoryOf (dir: string, m: Manifest): Promise<DirectoryRecord[]> {
  if (m.directory === null) throw new BackupError('the backup has no directory file')
  try {
    return JSON.parse((await readChecked(dir, m, m.directory)).toString('utf8')) as DirectoryRecord[]
  } catch (err) {
    if (err instanceof BackupError) throw err
    throw new BackupError(`${m.directory}: not valid JSON`)
  }
}

/** A user's backed-up log, segment by segment (each checked before it is read). */
async function * entriesOf (dir: string, m: Manifest, user: string): AsyncIterable<LogEntry> {
  const u = m.users[user]
  if (u === undefined) throw new BackupError(`${user}: not in this backup`)
  let expect = 1
  for (const s of u.segments) {
    for (const e of parseSegment(s, await readChecked(dir, m, s))) {
      if (e.seq !== expect) throw new BackupError(`${s}: entry ${e.seq} where ${expect} was expected`)
      expect++
      yield e
    }
  }
  if (expect - 1 !== u.position) throw new BackupError(`${user}: the backup's log ends at ${expect - 1}, the manifest says ${u.position}`)
}

async function retrying<T> (fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  const end = Date.now() + RESTORE_WAIT_MS
  for (;;) {
    try {
      return await fn()
    } catch (err) {
      // the directory is still on its way to the user's primary, or the primary changes: wait (over the admin API
      // the kind arrives as the message only)
      const kind = (err as { kind?: string }).kind
      const transient = kind === 'notFound' || kind === 'unavailable' || kind === 'temp' || /No such user|does not own|No node owns|try again|recovered/i.test(String((err as Error).message))
      if (Date.now() > end || !transient) throw err
      signal?.throwIfAborted()
      await new Promise(resolve => setTimeout(resolve, 500))
    }
  }
}

/** Replays the user's log at its primary; false when the live log does not continue the backup's. */
async function replayUser (dir: string, m: Manifest, target: RestoreTarget, user: string, report: RestoreReport, signal?: AbortSignal): Promise<boolean> {
  const live = await retrying(async () => await target.position(user), signal)
  let batch: LogEntry[] = []
  let blobs = new Map<string, Buffer>()
  let bytes = 0
  let prev: LogAnchor | undefined
  let checked = live.seq === 0
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return
    await retrying(async () => await target.restoreLog(user, batch, [...blobs.values()], prev), signal)
    report.entries += batch.filter(e => e.seq > live.seq).length
    const last = batch.at(-1) as LogEntry
    prev = { seq: last.seq, eid: last.eid ?? null }
    batch = []
    blobs = new Map()
    bytes = 0
  }
  for await (const e of entriesOf(dir, m, user)) {
    signal?.throwIfAborted()
    if (e.seq < live.seq) { prev = { seq: e.seq, eid: e.eid ?? null }; continue }
    if (e.seq === live.seq) {
      if ((e.eid ?? null) !== live.eid) return false
      checked = true
      prev = { seq: e.seq, eid: e.eid ?? null }
      continue
    }
    if (e.op === 'append' && !blobs.has(e.blob)) {
      const body = await readChecked(dir, m, blobPath(e.blob))
      if (bytes > 0 && bytes + body.length > RESTORE_BATCH_BYTES) await flush()
      blobs.set(e.blob, body)
      bytes += body.length
    }
    batch.push(e)
    if (batch.length >= RESTORE_BATCH_ENTRIES) await flush()
  }
  // the live log is longer than the backup's: it went on after the backup
  if (!checked) return false
  await flush()
  return true
}

/** The mailbox named `name` at the backup's position: its records, from a replay of the user's log. */
async function mailboxAt (dir: string, m: Manifest, user: string, name: string): Promise<Map<number, Extract<LogEntry, { op: 'append' }>> | null> {
  const names = new Map<string, string>()
  for await (const e of entriesOf(dir, m, user)) {
    if (e.op === 'mailboxCreate' || e.op === 'mailboxRename') names.set(e.mailbox, e.name)
    if (e.op === 'mailboxDelete') names.delete(e.mailbox)
  }
  const id = [...names].find(([, n]) => n === name)?.[0]
  if (id === undefined) return null
  const recs = new Map<number, Extract<LogEntry, { op: 'append' }>>()
  for await (const e of entriesOf(dir, m, user)) {
    if (e.op === 'append' && e.mailbox === id) recs.set(e.uid, e)
    if (e.op === 'flags' && e.mailbox === id) {
      for (const [uid, flags] of e.changes) {
        const r = recs.get(uid)
        if (r !== undefined) recs.set(uid, { ...r, flags })
      }
    }
    if (e.op === 'expunge' && e.mailbox === id) for (const uid of e.uids) recs.delete(uid)
    if (e.op === 'mailboxDelete' && e.mailbox === id) recs.clear()
  }
  return recs
}

/** Every mailbox name of the user at the backup's position. */
async function mailboxNames (dir: string, m: Manifest, user: string): Promise<string[]> {
  const names = new Map<string, string>()
  for await (const e of entriesOf(dir, m, user)) {
    if (e.op === 'mailboxCreate' || e.op === 'mailboxRename') names.set(e.mailbox, e.name)
    if (e.op === 'mailboxDelete') names.delete(e.mailbox)
  }
  return [...names.values()].sort()
}

async function restoreMailbox (dir: string, m: Manifest, target: RestoreTarget, user: string, name: string, report: RestoreReport): Promise<void> {
  const recs = await mailboxAt(dir, m, user, name)
  if (recs === null) throw new BackupError(`${user} had no mailbox ${name} at the backup's position`)
  const to = `${RESTORED_PREFIX}/${name}`
  const mail = target.mail(user)
  await retrying(async () => await mail.ensureMailbox(to))
  for (const r of [...recs.values()].sort((a, b) => a.uid - b.uid)) {
    const body = await readChecked(dir, m, blobPath(r.blob))
    const raw = r.prefix === '' ? body : Buffer.concat([Buffer.from(r.prefix), body])
    let res
    try {
      res = await mail.append(to, { raw, flags: r.flags, internalDate: r.internalDate, gid: importGid('restore', to, r.gid) })
    } catch (err) {
      // the user has no room for it (node/migrate/quota.ts): said, and the rest goes on
      if (!isMailError(err, 'noQuota')) throw err
      report.problems.push(`${to}: message ${r.uid} not restored: ${err.message}`)
      continue
    }
    if (!res.existed) report.messages++
  }
  report.mailboxes.push(to)
}

export async function restoreBackup (dir: string, target: RestoreTarget, opts: RestoreOptions = {}): Promise<RestoreReport> {
  const m = await readManifest(dir)
  if (m === null) throw new BackupError(`${dir}: no manifest.json (not a backup)`)
  unlockManifest(m, opts.key, dir)
  const report: RestoreReport = { users: 0, entries: 0, messages: 0, mailboxes: [], problems: [] }
  const records = await directoryOf(dir, m)
  const live = (key: string): DirectoryRecord | undefined => records.find(r => r.key === key && r.value.deleted !== true)

  if (opts.user !== undefined) {
    const user = Object.keys(m.users).find(u => u.toLowerCase() === opts.user?.toLowerCase())
    if (user === undefined) throw new BackupError(`${opts.user}: not in this backup`)
    if (!await target.hasUser(user)) {
      const mine = [live(`dd\x00${domainOf(user)}`), live(`du\x00${user}`)].filter((r): r is DirectoryRecord => r !== undefined)
      await target.mergeDirectory(mine)
      if (!await target.hasUser(user)) {
        // deleted since the backup: the tombstone is newer than the backup's record, so the record comes back
        // with a version just above what the grid holds (the directory's last-writer-wins merge takes it)
        const now = new Map((await target.directory()).map(r => [r.key, r.value.ver]))
        await target.mergeDirectory(mine.map(r => ({ key: r.key, value: { ...r.value, ver: Math.max(r.value.ver, (now.get(r.key) ?? 0) + 1) } })))
      }
    }
    report.users = 1
    if (opts.mailbox !== undefined) {
      await restoreMailbox(dir, m, target, user, opts.mailbox, report)
      return report
    }
    if (!await replayUser(dir, m, target, user, report, opts.signal)) {
      for (const name of await mailboxNames(dir, m, user)) await restoreMailbox(dir, m, target, user, name, report)
    }
    return report
  }
  if (opts.mailbox !== undefined) throw new BackupError('--mailbox needs --user')

  await target.mergeDirectory(records)
  const users = Object.keys(m.users).filter(u => live(`du\x00${u}`) !== undefined)
  const queue = [...users]
  const worker = async (): Promise<void> => {
    for (let user = queue.shift(); user !== undefined; user = queue.shift()) {
      opts.signal?.throwIfAborted()
      if (await replayUser(dir, m, target, user, report, opts.signal)) report.users++
      else report.problems.push(`${user}: the grid's copy has other history than the backup (not a fresh grid?): left as it is; restore it with --user`)
      opts.onUser?.(user)
    }
  }
  await Promise.all(Array.from({ length: RESTORE_USERS_CONCURRENCY }, worker))
  return report
}

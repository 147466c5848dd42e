// One backup run: the directory, then every user's log from where the previous run stopped up to the position its
// primary has now (read once at the start of the user's turn: the user's backup is that prefix of its log, a
// consistent state), with the bodies its new append entries name that the backup does not hold yet. A user whose
// log no longer continues what the backup holds (its copy was reset after a merge) is taken again from position 1.
// Files are written durably under temporary names and renamed; the manifest last, so an interrupted run leaves
// the previous manifest, and the next run writes what is missing. Owner-only (0600 files, 0700 directories): the
// directory file holds password hashes, DKIM private keys and the passwords of collected accounts. With a key
// (crypto.ts) every file is sealed as it is written; the first run records the key's id in the manifest, and a later
// run with another key, or none, is refused before it writes anything.

import { createHash } from 'node:crypto'
import { mkdir, open, rename, rm } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { LogEntry } from '../../store/index.ts'
import { BACKUP_CIPHER, checkKey, seal, sealer } from './crypto.ts'
import type { BackupKey, Sealer } from './crypto.ts'
import { blobPath, emptyManifest, MANIFEST, readManifest, segmentPath, sha256, writeDurable } from './format.ts'
import type { BackupSource, Manifest, RunRecord, UserBackup } from './format.ts'

export const BACKUP_USERS_CONCURRENCY = 4 // users read at once (each a chain of bounded requests to its primary)
export const BLOB_READS_IN_FLIGHT = 8 // bodies of one user read at once

export interface BackupOptions {
  signal?: AbortSignal
  now?: () => number
  onUser?: (user: string, entries: number) => void
  /** Seal every file with this key (crypto.ts); an existing backup must have been written with the same one. */
  key?: BackupKey
}

type Added = (path: string, bytes: number, hash: string, plain?: string) => void

/** A file being written, sealed when there is a key: the bytes on disk are counted and hashed for the manifest. */
class FileOut {
  readonly disk = createHash('sha256')
  readonly plain = createHash('sha256')
  bytes = 0
  private readonly seal: Sealer | null
  private readonly fh: FileHandle
  private constructor (fh: FileHandle, seal: Sealer | null) {
    this.fh = fh
    this.seal = seal
  }

  static async open (file: string, path: string, key: BackupKey | undefined): Promise<FileOut> {
    const out = new FileOut(await open(file, 'w', 0o600), key === undefined ? null : sealer(key, path))
    if (out.seal !== null) await out.raw(out.seal.head)
    return out
  }

  private async raw (b: Buffer): Promise<void> {
    if (b.length === 0) return
    this.disk.update(b)
    this.bytes += b.length
    await this.fh.write(b)
  }

  async write (data: Buffer | string): Promise<void> {
    const b = typeof data === 'string' ? Buffer.from(data) : data
    this.plain.update(b)
    await this.raw(this.seal === null ? b : this.seal.update(b))
  }

  /** Ends the file durably; resolves to what the manifest records. */
  async finish (): Promise<{ bytes: number, sha256: string, plain?: string }> {
    if (this.seal !== null) await this.raw(this.seal.final())
    await this.fh.sync()
    const sealed = this.seal !== null
    return { bytes: this.bytes, sha256: this.disk.digest('hex'), ...(sealed ? { plain: this.plain.digest('hex') } : {}) }
  }

  async close (): Promise<void> { await this.fh.close() }
}

export async function runBackup (source: BackupSource, dir: string, opts: BackupOptions = {}): Promise<{ manifest: Manifest, run: RunRecord }> {
  const now = opts.now ?? Date.now
  const started = new Date(now()).toISOString()
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const existing = await readManifest(dir)
  if (existing !== null) checkKey(existing.encryption, opts.key, dir)
  const manifest = existing ?? { ...emptyManifest(source.node, started), ...(opts.key !== undefined ? { encryption: { cipher: BACKUP_CIPHER, keyId: opts.key.id } } : {}) }
  const key = opts.key
  const id = (manifest.runs.at(-1)?.id ?? 0) + 1
  const run: RunRecord = { id, started, finished: '', node: source.node, users: 0, usersChanged: 0, filesWritten: 0, bytesWritten: 0, blobsWritten: 0, entriesWritten: 0, failed: [] }
  const added: Added = (path, bytes, hash, plain) => {
    manifest.files[path] = { bytes, sha256: hash, run: id, ...(plain !== undefined ? { plainSha256: plain } : {}) }
    run.filesWritten++
    run.bytesWritten += bytes
  }

  // the directory: a new file only when it changed
  const records = (await source.directory()).sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : 0)
  const dirText = JSON.stringify(records)
  const dirHash = sha256(dirText)
  const prevDir = manifest.directory
  const prevEntry = prevDir === null ? undefined : manifest.files[prevDir]
  if (prevDir === null || (prevEntry?.plainSha256 ?? prevEntry?.sha256) !== dirHash) {
    const path = join('directory', `${String(id).padStart(6, '0')}.json`)
    await mkdir(join(dir, 'directory'), { recursive: true, mode: 0o700 })
    const data = key === undefined ? Buffer.from(dirText) : seal(key, path, dirText)
    await writeDurable(join(dir, path), data)
    added(path, data.length, sha256(data), key === undefined ? undefined : dirHash)
    manifest.directory = path
    if (prevDir !== null) {
      delete manifest.files[prevDir]
      await rm(join(dir, prevDir), { force: true })
    }
  }

  const users = await source.users()
  run.users = users.length
  const pending = new Set<string>() // bodies being written by this run (two users may share one)
  const queue = [...users]
  const worker = async (): Promise<void> => {
    for (let user = queue.shift(); user !== undefined; user = queue.shift()) {
      opts.signal?.throwIfAborted()
      // one user that cannot be read now (its primary unreachable) does not stop the others: it is reported, and
      // the next run takes it from where the backup holds it
      try {
        const n = await backupUser(source, dir, manifest, user, added, pending, run, key)
        if (n > 0) run.usersChanged++
        run.entriesWritten += n
        opts.onUser?.(user, n)
      } catch (err) {
        opts.signal?.throwIfAborted()
        run.failed.push({ user, error: err instanceof Error ? err.message : String(err) })
      }
    }
  }
  await Promise.all(Array.from({ length: BACKUP_USERS_CONCURRENCY }, worker))

  run.finished = new Date(now()).toISOString()
  manifest.runs.push(run)
  manifest.updated = run.finished
  manifest.node = source.node
  await writeDurable(join(dir, MANIFEST), JSON.stringify(manifest, null, 1))
  return { manifest, run }
}

async function backupUser (source: BackupSource, dir: string, manifest: Manifest, user: string, added: Added, pending: Set<string>, run: RunRecord, key: BackupKey | undefined): Promise<number> {
  const at = await source.position(user)
  let prior: UserBackup | undefined = manifest.users[user]
  if (prior !== undefined && prior.position > 0) {
    // the backup must be a prefix of the user's log as it is now: the same entry at the backup's last position
    const [there] = at.seq >= prior.position ? await source.readLog(user, prior.position, prior.position) : []
    if (there === undefined || (there.eid ?? null) !== prior.eid) {
      for (const s of prior.segments) {
        delete manifest.files[s]
        await rm(join(dir, s), { force: true })
      }
      prior = undefined
    }
  }
  const from = (prior?.position ?? 0) + 1
  if (at.seq < from) {
    manifest.users[user] = prior ?? { position: 0, eid: null, segments: [] }
    return 0
  }
  const path = segmentPath(user, from, at.seq)
  await mkdir(join(dir, dirname(path)), { recursive: true, mode: 0o700 })
  const tmp = join(dir, `${path}.tmp`)
  const out = await FileOut.open(tmp, path, key)
  let written: { bytes: number, sha256: string, plain?: string }
  let last: LogEntry | undefined
  let count = 0
  try {
    for (let next = from; next <= at.seq;) {
      const page = await source.readLog(user, next, at.seq)
      if (page.length === 0) throw new Error(`log of ${user} ends at ${next - 1}, below ${at.seq}`)
      // the page's bodies, BLOB_READS_IN_FLIGHT at a time (each a chain of bounded reads at the primary)
      const hashes = [...new Set(page.flatMap(e => e.op === 'append' ? [e.blob] : []))]
      for (let i = 0; i < hashes.length; i += BLOB_READS_IN_FLIGHT) {
        await Promise.all(hashes.slice(i, i + BLOB_READS_IN_FLIGHT).map(async h => { await backupBlob(source, dir, manifest, user, h, added, pending, run, key) }))
      }
      await out.write(page.map(e => JSON.stringify(e) + '\n').join(''))
      last = page.at(-1)
      count += page.length
      next = (last as LogEntry).seq + 1
    }
    written = await out.finish()
  } finally {
    await out.close()
  }
  await rename(tmp, join(dir, path))
  added(path, written.bytes, written.sha256, written.plain)
  manifest.users[user] = { position: at.seq, eid: last?.eid ?? null, segments: [...(prior?.segments ?? []), path] }
  return count
}

async function backupBlob (source: BackupSource, dir: string, manifest: Manifest, user: string, hash: string, added: Added, pending: Set<string>, run: RunRecord, key: BackupKey | undefined): Promise<void> {
  const path = blobPath(hash)
  if (manifest.files[path] !== undefined || pending.has(hash)) return
  pending.add(hash)
  try {
    await mkdir(join(dir, dirname(path)), { recursive: true, mode: 0o700 })
    const tmp = join(dir, `${path}.tmp`)
    const out = await FileOut.open(tmp, path, key)
    let written: { bytes: number, sha256: string, plain?: string }
    let offset = 0
    try {
      for (;;) {
        const { data, size } = await source.blob(user, hash, offset)
        if (data.length > 0) {
          await out.write(data)
          offset += data.length
        }
        if (offset >= size || data.length === 0) break
      }
      written = await out.finish()
    } finally {
      await out.close()
    }
    // the body's name is the SHA-256 of its plaintext
    const got = written.plain ?? written.sha256
    if (got !== hash) throw new Error(`body ${hash} of ${user} read back as ${got}`)
    await rename(tmp, join(dir, path))
    added(path, written.bytes, written.sha256, written.plain)
    run.blobsWritten++
  } finally {
    pending.delete(hash)
  }
}

// The backup directory, on disk:
//   DIR/manifest.json                      what the backup holds (below), rewritten atomically at the end of a run
//   DIR/directory/RUN.json                 the directory (domains, users with password hashes, aliases, DKIM keys):
//                                          every record with its version, as the grid replicates them
//   DIR/users/UHASH/FROM-TO.jsonl          a stretch of one user's log (one entry a line), FROM..TO inclusive
//   DIR/blobs/HH/HASH                      a message body, named by its SHA-256 (stored once, whoever refers to it)
// With a key (crypto.ts), every file but the manifest is sealed (AES-256-GCM); the manifest's checksums are of the
// sealed bytes, so `backup verify` checks them without the key.
// A user's mail is its log: the segments of a user, in order, are its log from position 1 to the manifest's
// position; replaying them (the store's applyLog) rebuilds its mailboxes exactly: UIDs, UIDVALIDITY, MODSEQs,
// flags, keywords, internal dates, global ids.

import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { open, readFile, rename, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { DirectoryRecord, LogAnchor, LogEntry } from '../../store/index.ts'
import { checkKey, unseal } from './crypto.ts'
import type { BackupKey, ManifestEncryption } from './crypto.ts'

export const BACKUP_FORMAT = 'mailgrid-backup/1'
export const MANIFEST = 'manifest.json'

/** A file of the backup: its size and SHA-256 as on disk (sealed, when encrypted), and then its plaintext's SHA-256. */
export interface FileEntry { bytes: number, sha256: string, run: number, plainSha256?: string }

export interface UserBackup {
  position: number
  eid: string | null
  /** Paths of the user's log segments, in log order; together they hold entries 1..position. */
  segments: string[]
}

export interface RunRecord {
  id: number
  started: string
  finished: string
  node: string
  users: number
  usersChanged: number
  filesWritten: number
  bytesWritten: number // of the files this run wrote (the manifest apart)
  blobsWritten: number
  entriesWritten: number
  /** Users this run could not read (their primary unreachable, ...): the backup holds them as of an earlier run. */
  failed: Array<{ user: string, error: string }>
}

export interface Manifest {
  format: typeof BACKUP_FORMAT
  created: string
  updated: string
  node: string
  directory: string | null // path of the directory file
  /** Present when the files are sealed (crypto.ts); absent: plain files. */
  encryption?: ManifestEncryption
  users: Record<string, UserBackup>
  files: Record<string, FileEntry>
  runs: RunRecord[]
}

/** What a backup reads: the directory here, each user's log and bodies at the node that holds the user (its primary). */
export interface BackupSource {
  readonly node: string
  directory (): Promise<DirectoryRecord[]>
  users (): Promise<string[]>
  position (user: string): Promise<LogAnchor>
  /** Entries from..to (inclusive), a bounded page, at least one when any. */
  readLog (user: string, from: number, to: number): Promise<LogEntry[]>
  blob (user: string, hash: string, offset: number): Promise<{ data: Buffer, size: number }>
}

export function sha256 (b: Buffer | string): string {
  return createHash('sha256').update(b).digest('hex')
}

export async function fileSha256 (path: string): Promise<{ sha256: string, bytes: number }> {
  // most files (bodies, segments) are small: one read; a large one streamed
  if ((await stat(path)).size <= 8 * 1024 * 1024) {
    const data = await readFile(path)
    return { sha256: sha256(data), bytes: data.length }
  }
  const h = createHash('sha256')
  let bytes = 0
  for await (const c of createReadStream(path, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
    h.update(c)
    bytes += c.length
  }
  return { sha256: h.digest('hex'), bytes }
}

export function userDir (user: string): string {
  return join('users', sha256(user.toLowerCase()).slice(0, 16))
}

export function blobPath (hash: string): string {
  return join('blobs', hash.slice(0, 2), hash)
}

export function segmentPath (user: string, from: number, to: number): string {
  return join(userDir(user), `${String(from).padStart(12, '0')}-${String(to).padStart(12, '0')}.jsonl`)
}

export function emptyManifest (node: string, now: string): Manifest {
  return { format: BACKUP_FORMAT, created: now, updated: now, node, directory: null, users: {}, files: {}, runs: [] }
}

export class BackupError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'BackupError'
  }
}

export async function readManifest (dir: string): Promise<Manifest | null> {
  let text: string
  try {
    text = await readFile(join(dir, MANIFEST), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
  let m: Manifest
  try {
    m = JSON.parse(text) as Manifest
  } catch {
    throw new BackupError(`${join(dir, MANIFEST)} is not valid JSON (corrupted?)`)
  }
  if (m.format !== BACKUP_FORMAT || typeof m.users !== 'object' || typeof m.files !== 'object' || !Array.isArray(m.runs)) {
    throw new BackupError(`${join(dir, MANIFEST)} is not a ${BACKUP_FORMAT} manifest`)
  }
  return m
}

/** Writes a file durably and atomically (a temporary name, fsync, rename). */
export async function writeDurable (path: string, data: Buffer | string): Promise<void> {
  const tmp = `${path}.tmp`
  const fh = await open(tmp, 'w', 0o600)
  try {
    await fh.writeFile(data)
    await fh.sync()
  } finally {
    await fh.close()
  }
  await rename(tmp, path)
}

// the key that opens a manifest's files, given once by whoever opened the backup (restore, verify)
const unlocked = new WeakMap<Manifest, BackupKey>()

/** Gives the key for an encrypted backup's files (checked against the manifest's key id); refuses a key a plain backup does not need. */
export function unlockManifest (manifest: Manifest, key: BackupKey | undefined, what: string): void {
  checkKey(manifest.encryption, key, what)
  if (key !== undefined) unlocked.set(manifest, key)
}

/**
 * Reads a file the manifest lists, checking its checksum first, and opens it when the backup is encrypted (the key
 * given by unlockManifest); throws BackupError when it does not match, or does not open.
 */
export async function readChecked (dir: string, manifest: Manifest, path: string): Promise<Buffer> {
  const f = manifest.files[path]
  if (f === undefined) throw new BackupError(`${path}: not in the manifest`)
  let data: Buffer
  try {
    data = await readFile(join(dir, path))
  } catch (err) {
    throw new BackupError(`${path}: ${(err as Error).message}`)
  }
  if (data.length !== f.bytes || sha256(data) !== f.sha256) throw new BackupError(`${path}: checksum mismatch (corrupted)`)
  if (manifest.encryption === undefined) return data
  const key = unlocked.get(manifest)
  if (key === undefined) throw new BackupError(`${path}: the backup is encrypted; give its key (--key-file)`)
  return unseal(key, path, data)
}

// `mailgrid backup verify DIR`: every file the manifest lists is there with its size and SHA-256 (a body's name is
// its SHA-256 too), every user's segments hold its log from 1 to its position without a gap, and every body an
// append entry names is in the backup. An encrypted backup's checksums are of the sealed files, checked without
// the key; with the key every file is also opened (its GCM tag authenticates it) and its plaintext checked against
// the manifest (a body against its name), and the logs are read; without it the report says the contents were not
// read.

import { join } from 'node:path'
import { BackupError, blobPath, fileSha256, readChecked, readManifest, sha256, unlockManifest } from './format.ts'
import type { BackupKey } from './crypto.ts'
import type { Manifest } from './format.ts'
import type { LogEntry } from '../../store/index.ts'

export interface VerifyReport {
  ok: boolean
  files: number
  bytes: number
  users: number
  /** The files are sealed (crypto.ts). */
  encrypted: boolean
  /** Whether the logs and bodies were read (false: an encrypted backup checked without its key). */
  contentsChecked: boolean
  problems: string[]
}

/** Parses a segment's lines; throws BackupError on a malformed line. */
export function parseSegment (path: string, data: Buffer): LogEntry[] {
  const out: LogEntry[] = []
  for (const [i, line] of data.toString('utf8').split('\n').entries()) {
    if (line === '') continue
    try {
      out.push(JSON.parse(line) as LogEntry)
    } catch {
      throw new BackupError(`${path}: line ${i + 1} is not JSON`)
    }
  }
  return out
}

export async function verifyBackup (dir: string, opts: { key?: BackupKey } = {}): Promise<VerifyReport & { manifest: Manifest | null }> {
  const report: VerifyReport = { ok: false, files: 0, bytes: 0, users: 0, encrypted: false, contentsChecked: false, problems: [] }
  let manifest: Manifest | null
  try {
    manifest = await readManifest(dir)
  } catch (err) {
    report.problems.push((err as Error).message)
    return { ...report, manifest: null }
  }
  if (manifest === null) {
    report.problems.push(`${dir}: no manifest.json (not a backup)`)
    return { ...report, manifest: null }
  }
  report.encrypted = manifest.encryption !== undefined
  report.contentsChecked = !report.encrypted || opts.key !== undefined
  if (opts.key !== undefined) {
    try {
      unlockManifest(manifest, opts.key, dir)
    } catch (err) {
      report.problems.push((err as Error).message)
      return { ...report, contentsChecked: false, manifest }
    }
  }
  for (const [path, f] of Object.entries(manifest.files)) {
    report.files++
    try {
      const got = await fileSha256(join(dir, path))
      report.bytes += got.bytes
      if (got.bytes !== f.bytes || got.sha256 !== f.sha256) report.problems.push(`${path}: checksum mismatch (corrupted)`)
      if (!report.encrypted && path.startsWith('blobs/') && path.split('/').at(-1) !== got.sha256) report.problems.push(`${path}: content does not match its name`)
      if (report.encrypted && report.contentsChecked && got.bytes === f.bytes && got.sha256 === f.sha256) {
        let plain = ''
        try {
          plain = sha256(await readChecked(dir, manifest, path))
        } catch (err) {
          report.problems.push((err as Error).message) // it names the file
          continue
        }
        if (plain !== f.plainSha256 || (path.startsWith('blobs/') && path.split('/').at(-1) !== plain)) report.problems.push(`${path}: opened, but the content does not match the manifest`)
      }
    } catch (err) {
      report.problems.push(`${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : (err as Error).message}`)
    }
  }
  if (manifest.directory === null || manifest.files[manifest.directory] === undefined) report.problems.push('the directory file is not in the manifest')
  for (const [user, u] of Object.entries(manifest.users)) {
    report.users++
    if (!report.contentsChecked) continue
    let expect = 1
    for (const s of u.segments) {
      let entries: LogEntry[]
      try {
        entries = parseSegment(s, await readChecked(dir, manifest, s))
      } catch (err) {
        report.problems.push(`${user}: ${(err as Error).message}`)
        break
      }
      for (const e of entries) {
        if (e.seq !== expect) { report.problems.push(`${user}: ${s} has entry ${e.seq} where ${expect} was expected`); break }
        expect++
        if (e.op === 'append' && manifest.files[blobPath(e.blob)] === undefined) report.problems.push(`${user}: entry ${e.seq} names body ${e.blob}, not in the backup`)
      }
    }
    if (expect - 1 !== u.position) report.problems.push(`${user}: segments end at ${expect - 1}, the manifest says ${u.position}`)
  }
  report.ok = report.problems.length === 0
  return { ...report, manifest }
}

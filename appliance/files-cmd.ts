// `mailgrid import maildir|mbox`, `mailgrid export`, `mailgrid backup`, `mailgrid backup verify`, `mailgrid
// restore`: the files are on the machine the CLI runs on; the mail goes to and comes from the grid through the
// admin API of the node it talks to (this machine's, or --url), in bounded requests (appliance/mail-client.ts).

import { stat } from 'node:fs/promises'
import type { AdminClient } from './client.ts'
import { CliError } from './client.ts'
import { importMaildir } from '../node/migrate/maildir.ts'
import { importMbox } from '../node/migrate/mbox.ts'
import { exportMaildir, exportMbox } from '../node/migrate/export.ts'
import type { ExportReport, ImportReport } from '../node/migrate/types.ts'
import { BackupError, readKeyFile, restoreBackup, runBackup, verifyBackup } from '../node/backup/index.ts'
import type { BackupKey } from '../node/backup/index.ts'
import { httpBackupSource, httpMailSource, httpMailTarget, httpRestoreTarget } from './mail-client.ts'

export class FilesUsageError extends Error {}

export interface FilesCtx {
  values: Record<string, string | boolean | undefined>
  args: string[]
  api: () => Promise<AdminClient>
  stdout: { write (s: string): unknown }
}

function need (v: string | boolean | undefined, what: string): string {
  if (typeof v !== 'string' || v === '') throw new FilesUsageError(`${what} is needed`)
  return v
}

function out (ctx: FilesCtx, json: unknown, lines: string[]): void {
  ctx.stdout.write(ctx.values.json === true ? JSON.stringify(json, null, 2) + '\n' : lines.map(l => l + '\n').join(''))
}

const mb = (n: number): string => `${(n / 1024 / 1024).toFixed(2)} MB`

function rate (n: number, bytes: number, ms: number): string {
  const s = Math.max(ms, 1) / 1000
  return `${(n / s).toFixed(1)} msg/s, ${(bytes / 1024 / 1024 / s).toFixed(2)} MB/s`
}

function skippedLines (r: ImportReport | ExportReport): string[] {
  return r.skipped.slice(0, 50).map(s => `  skipped ${s.folder}: ${s.item}: ${s.reason}`)
}

async function mustExist (path: string, kind: 'dir' | 'file'): Promise<void> {
  const st = await stat(path).catch(() => null)
  if (st === null || (kind === 'dir' ? !st.isDirectory() : !st.isFile())) throw new CliError(`${path}: no such ${kind === 'dir' ? 'directory' : 'file'}`)
}

/** `import maildir DIR --to ADDRESS` and `import mbox FILE --to ADDRESS --folder NAME`. */
export async function importFilesCommand (ctx: FilesCtx): Promise<void> {
  const [kind, path] = ctx.args
  if (path === undefined || ctx.args.length > 2) throw new FilesUsageError(`import ${kind} takes one ${kind === 'maildir' ? 'directory' : 'file'}`)
  const to = need(ctx.values.to, '--to ADDRESS')
  const target = httpMailTarget(await ctx.api(), to)
  const started = Date.now()
  let r: ImportReport
  if (kind === 'maildir') {
    await mustExist(path, 'dir')
    r = await importMaildir(path, target)
  } else {
    await mustExist(path, 'file')
    r = await importMbox(path, need(ctx.values.folder, '--folder NAME'), target)
  }
  const ms = Date.now() - started
  out(ctx, { ...r, ms }, [
    `imported ${r.messages} messages (${mb(r.bytes)}) into ${r.folders} folders of ${to}; ${r.existing} were there already; ${r.uidsKept} kept their UIDs`,
    `  ${rate(r.messages, r.bytes, ms)}`,
    ...skippedLines(r)
  ])
}

/** `export ADDRESS --maildir DIR` or `--mbox DIR`. */
export async function exportCommand (ctx: FilesCtx): Promise<void> {
  const [address] = ctx.args
  if (address === undefined || ctx.args.length > 1) throw new FilesUsageError('export takes one ADDRESS')
  const maildir = ctx.values.maildir
  const mbox = ctx.values.mbox
  if ((maildir === undefined) === (mbox === undefined)) throw new FilesUsageError('export needs --maildir DIR or --mbox DIR')
  const source = httpMailSource(await ctx.api(), address)
  const started = Date.now()
  const r = typeof maildir === 'string' ? await exportMaildir(source, maildir) : await exportMbox(source, need(mbox, '--mbox DIR'))
  const ms = Date.now() - started
  out(ctx, { ...r, ms }, [
    `exported ${r.messages} messages (${mb(r.bytes)}) in ${r.folders} folders of ${address} to ${String(maildir ?? mbox)}`,
    `  ${rate(r.messages, r.bytes, ms)}`,
    ...skippedLines(r)
  ])
}

/** The backup key of --key-file (node/backup/crypto.ts), if given. */
async function keyOf (ctx: FilesCtx): Promise<BackupKey | undefined> {
  const f = ctx.values['key-file']
  if (f === undefined) return undefined
  if (typeof f !== 'string' || f === '') throw new FilesUsageError('--key-file takes a file (32 bytes: head -c 32 /dev/urandom > FILE)')
  try {
    return await readKeyFile(f)
  } catch (err) {
    if (err instanceof BackupError) throw new CliError(err.message)
    throw err
  }
}

/** `backup --to DIR` and `backup verify DIR`. */
export async function backupCommand (ctx: FilesCtx): Promise<boolean> {
  if (ctx.args[0] === 'verify') {
    const dir = ctx.args[1]
    if (dir === undefined || ctx.args.length > 2) throw new FilesUsageError('backup verify takes one DIR')
    const key = await keyOf(ctx)
    const r = await verifyBackup(dir, key !== undefined ? { key } : {})
    const { manifest: _m, ...report } = r
    out(ctx, report, [
      r.ok ? `backup ${dir}: OK (${r.files} files, ${mb(r.bytes)}, ${r.users} users${r.encrypted ? r.contentsChecked ? ', encrypted, contents checked with the key' : ', encrypted: checksums only, give --key-file to check the contents' : ''})` : `backup ${dir}: ${r.problems.length} problems`,
      ...r.problems.slice(0, 100).map(p => `  ${p}`)
    ])
    return r.ok
  }
  if (ctx.args.length > 0) throw new FilesUsageError('backup takes --to DIR (or: backup verify DIR)')
  const dir = need(ctx.values.to, '--to DIR')
  const key = await keyOf(ctx)
  const api = await ctx.api()
  const st = await api.request('GET', '/v1/status') as { hostname?: string }
  const started = Date.now()
  let run
  try {
    ({ run } = await runBackup(httpBackupSource(api, st.hostname ?? api.url), dir, key !== undefined ? { key } : {}))
  } catch (err) {
    if (err instanceof BackupError) throw new CliError(err.message)
    throw err
  }
  const ms = Date.now() - started
  out(ctx, { ...run, ms }, [
    `backup run ${run.id} into ${dir}: ${run.users} users (${run.usersChanged} changed), ${run.entriesWritten} log entries, ${run.blobsWritten} bodies, ${run.filesWritten} files, ${mb(run.bytesWritten)} written`,
    `  ${(run.bytesWritten / 1024 / 1024 / (Math.max(ms, 1) / 1000)).toFixed(2)} MB/s`,
    ...run.failed.slice(0, 100).map(f => `  not backed up now: ${f.user}: ${f.error}`)
  ])
  return run.failed.length === 0
}

/** `restore --from DIR [--user ADDRESS [--mailbox NAME]]`. */
export async function restoreCommand (ctx: FilesCtx): Promise<boolean> {
  if (ctx.args.length > 0) throw new FilesUsageError('restore takes --from DIR [--user ADDRESS [--mailbox NAME]]')
  const dir = need(ctx.values.from, '--from DIR')
  const user = typeof ctx.values.user === 'string' ? ctx.values.user : undefined
  const mailbox = typeof ctx.values.mailbox === 'string' ? ctx.values.mailbox : undefined
  if (mailbox !== undefined && user === undefined) throw new FilesUsageError('--mailbox needs --user')
  const key = await keyOf(ctx)
  const started = Date.now()
  let r
  try {
    r = await restoreBackup(dir, httpRestoreTarget(await ctx.api()), { ...(user !== undefined ? { user } : {}), ...(mailbox !== undefined ? { mailbox } : {}), ...(key !== undefined ? { key } : {}) })
  } catch (err) {
    if (err instanceof BackupError) throw new CliError(`restore refused: ${err.message}`)
    throw err
  }
  const ms = Date.now() - started
  out(ctx, { ...r, ms }, [
    `restored ${r.users} users (${r.entries} log entries)${r.mailboxes.length > 0 ? `, ${r.messages} messages into ${r.mailboxes.join(', ')}` : ''}`,
    ...r.problems.map(p => `  ${p}`)
  ])
  return r.problems.length === 0
}

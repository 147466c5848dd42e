// `mailgrid import imap` and `mailgrid collect`: the CLI side of node/migrate/imap-jobs.ts and node/collect. The
// import is started through the admin API of any node and runs on the target user's primary; the command waits
// for it and prints each user's report (interrupting the command leaves the import running: the same command
// again waits on it).

import { readFile } from 'node:fs/promises'
import type { AdminClient } from './client.ts'
import { CliError } from './client.ts'

export const IMPORT_POLL_MS = 1000
export const CSV_LINES_MAX = 100_000
export const CSV_BYTES_MAX = 16 * 1024 * 1024

export class MigrateUsageError extends Error {}

export interface MigrateCtx {
  values: Record<string, string | boolean | undefined>
  args: string[]
  api: () => Promise<AdminClient>
  stdout: { write (s: string): unknown }
  readPassword: () => Promise<string>
  now?: () => number
  sleep?: (ms: number) => Promise<void>
}

const COMMON = ['data', 'config', 'json', 'help', 'url', 'token', 'fingerprint', 'profile']

function only (values: MigrateCtx['values'], allowed: string[], command: string): void {
  for (const k of Object.keys(values)) if (values[k] !== undefined && !COMMON.includes(k) && !allowed.includes(k)) throw new MigrateUsageError(`--${k} does not apply to ${command}`)
}

async function firstLine (file: string): Promise<string> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new CliError(`cannot read ${file}: ${(err as Error).message}`)
  }
  const line = text.split('\n')[0].replace(/\r$/, '')
  if (line === '') throw new CliError(`${file}: the first line is empty`)
  return line
}

const mb = (n: number): string => `${(n / 1048576).toFixed(1)} MB`

interface JobView {
  target: string
  state: string
  source: { host: string, port: number, user: string }
  error?: string
  report?: {
    folders: number, messages: number, copied: number, bytes: number, skipped: number, overQuota?: number, failed: number
    perFolder: Array<{ source: string, target: string, messages: number, copied: number, skipped: number, overQuota?: number, failed: number }>
    errors: Array<{ folder: string, uid?: number, reason: string }>
    notes: string[]
  }
}

export function reportLines (j: JobView): string[] {
  const out = [`${j.target} <- ${j.source.user} at ${j.source.host}:${j.source.port}: ${j.state}${j.error !== undefined ? ` (${j.error})` : ''}`]
  const r = j.report
  if (r === undefined) return out
  out.push(`  folders ${r.folders}, messages ${r.messages}: copied ${r.copied} (${mb(r.bytes)}), skipped ${r.skipped} (already here)${(r.overQuota ?? 0) > 0 ? `, skipped ${r.overQuota ?? 0} (over quota)` : ''}, failed ${r.failed}`)
  for (const f of r.perFolder) out.push(`  ${f.source} -> ${f.target}: ${f.messages} ${f.messages === 1 ? 'message' : 'messages'}, ${f.copied} copied, ${f.skipped} skipped${(f.overQuota ?? 0) > 0 ? `, ${f.overQuota ?? 0} over quota` : ''}, ${f.failed} failed`)
  for (const e of r.errors) out.push(`  error: ${e.folder}${e.uid !== undefined ? ` uid ${e.uid}` : ''}: ${e.reason}`)
  const problems = r.failed + (r.overQuota ?? 0)
  if (problems > r.errors.length) out.push(`  (${problems - r.errors.length} more errors not listed)`)
  for (const n of r.notes) out.push(`  note: ${n}`)
  return out
}

/** `import imap --from URL (--user U --password-file F --to ADDRESS | --csv FILE) [--ca-file F] [--insecure] [--no-wait]` */
export async function importImapCommand (ctx: MigrateCtx): Promise<boolean> {
  const v = ctx.values
  only(v, ['from', 'user', 'password-file', 'password', 'to', 'csv', 'ca-file', 'insecure', 'no-wait'], 'import imap')
  if (ctx.args.length > 0) throw new MigrateUsageError('import imap takes no arguments')
  const from = v.from
  if (typeof from !== 'string') throw new MigrateUsageError('import imap needs --from imaps://HOST[:PORT]')
  const ca = typeof v['ca-file'] === 'string' ? await readFile(v['ca-file'], 'utf8').catch((err: Error) => { throw new CliError(`cannot read ${String(v['ca-file'])}: ${err.message}`) }) : undefined
  const jobs: Array<{ user: string, password: string, to: string }> = []
  if (typeof v.csv === 'string') {
    for (const k of ['user', 'password-file', 'password', 'to']) if (v[k] !== undefined) throw new MigrateUsageError(`--${k} and --csv: the CSV file names them`)
    const text = await readFile(v.csv, 'utf8').catch((err: Error) => { throw new CliError(`cannot read ${String(v.csv)}: ${err.message}`) })
    if (Buffer.byteLength(text) > CSV_BYTES_MAX) throw new CliError(`${v.csv}: larger than ${CSV_BYTES_MAX} bytes`)
    const lines = text.split('\n').map(l => l.replace(/\r$/, '')).filter(l => l.trim() !== '' && !l.trimStart().startsWith('#'))
    if (lines.length > CSV_LINES_MAX) throw new CliError(`${v.csv}: more than ${CSV_LINES_MAX} lines`)
    for (const [i, l] of lines.entries()) {
      const cells = l.split(',').map(c => c.trim())
      if (cells.length !== 3 || cells.some(c => c === '')) throw new CliError(`${v.csv} line ${i + 1}: expected "source user,password file or password,target address"`)
      // the second cell names a file when one exists by that name, else it is the password itself
      const password = await readFile(cells[1], 'utf8').then(t => t.split('\n')[0].replace(/\r$/, ''), () => cells[1])
      jobs.push({ user: cells[0], password, to: cells[2] })
    }
  } else {
    if (typeof v.user !== 'string' || typeof v.to !== 'string') throw new MigrateUsageError('import imap needs --user U and --to ADDRESS (or --csv FILE)')
    const password = typeof v['password-file'] === 'string' ? await firstLine(v['password-file']) : typeof v.password === 'string' ? await ctx.readPassword() : null
    if (password === null) throw new MigrateUsageError('import imap needs --password-file FILE (or --password -)')
    jobs.push({ user: v.user, password, to: v.to })
  }
  const api = await ctx.api()
  const started: string[] = []
  for (const j of jobs) {
    const { job } = await api.request('POST', '/v1/imports/imap', { from, user: j.user, password: j.password, to: j.to, ...(ca !== undefined ? { ca } : {}), ...(v.insecure === true ? { insecure: true } : {}) })
    started.push(job.target as string)
    if (v.json !== true) ctx.stdout.write(`import of ${j.user} into ${job.target as string}: ${job.state === 'running' ? 'running (joined)' : 'started'}\n`)
  }
  if (v['no-wait'] === true) return true
  const sleep = ctx.sleep ?? (async (ms: number) => { await new Promise(resolve => setTimeout(resolve, ms)) })
  const finished = new Map<string, JobView>()
  while (finished.size < started.length) {
    for (const t of started) {
      if (finished.has(t)) continue
      const { job } = await api.request('GET', `/v1/imports/imap/${encodeURIComponent(t)}`) as { job: JobView }
      if (job.state === 'done' || job.state === 'failed') finished.set(t, job)
    }
    if (finished.size < started.length) await sleep(IMPORT_POLL_MS)
  }
  const all = started.map(t => finished.get(t)!)
  if (v.json === true) ctx.stdout.write(JSON.stringify(all, null, 2) + '\n')
  else for (const j of all) ctx.stdout.write(reportLines(j).map(l => l + '\n').join(''))
  return all.every(j => j.state === 'done' && (j.report?.failed ?? 0) === 0)
}

interface AccountView {
  id: string, protocol: string, host: string, port: number, tls: string, username: string, folder: string, source: string, leave: boolean, intervalMinutes: number
  state: { lastRunAt: number, lastOkAt: number, lastError: string, lastCount: number, total: number }
}

const when = (ms: number): string => ms === 0 ? 'never' : new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z')

export function accountLines (a: AccountView): string[] {
  return [
    `${a.id}  ${a.protocol} ${a.username}@${a.host}:${a.port} (${a.tls})${a.protocol === 'imap' ? ` folder ${a.source}` : ''} -> ${a.folder}, every ${a.intervalMinutes} min, ${a.leave ? 'left on the server' : 'deleted there'}`,
    `    last run ${when(a.state.lastRunAt)}, last success ${when(a.state.lastOkAt)}, ${a.state.lastCount} last time, ${a.state.total} in all${a.state.lastError !== '' ? `; error: ${a.state.lastError}` : ''}`
  ]
}

/** `collect add|list|del|run ADDRESS ...` */
export async function collectCommand (ctx: MigrateCtx): Promise<void> {
  const [sub, address, id, ...extra] = ctx.args
  const v = ctx.values
  if (address === undefined) throw new MigrateUsageError('collect needs a subcommand (add, list, del, run) and an ADDRESS')
  const base = `/v1/users/${encodeURIComponent(address)}/collect`
  const print = (json: unknown, lines: string[]): void => { ctx.stdout.write(v.json === true ? JSON.stringify(json, null, 2) + '\n' : lines.map(l => l + '\n').join('')) }
  switch (sub) {
    case 'add': {
      only(v, ['protocol', 'host', 'port', 'tls', 'username', 'password', 'folder', 'source-folder', 'delete', 'interval', 'ca-file', 'insecure'], 'collect add')
      if (id !== undefined) throw new MigrateUsageError('collect add takes one ADDRESS')
      for (const k of ['protocol', 'host', 'username', 'password']) if (typeof v[k] !== 'string') throw new MigrateUsageError(`collect add needs --${k}`)
      const num = (k: string): number | undefined => {
        if (v[k] === undefined) return undefined
        if (!/^\d+$/.test(String(v[k]))) throw new MigrateUsageError(`--${k}: a whole number`)
        return Number(v[k])
      }
      const ca = typeof v['ca-file'] === 'string' ? await readFile(v['ca-file'], 'utf8') : undefined
      const { account } = await (await ctx.api()).request('POST', base, {
        protocol: v.protocol,
        host: v.host,
        ...(v.port !== undefined ? { port: num('port') } : {}),
        ...(v.tls !== undefined ? { tls: v.tls } : {}),
        username: v.username,
        password: await ctx.readPassword(),
        ...(v.folder !== undefined ? { folder: v.folder } : {}),
        ...(v['source-folder'] !== undefined ? { source: v['source-folder'] } : {}),
        leave: v.delete !== true,
        ...(v.interval !== undefined ? { intervalMinutes: num('interval') } : {}),
        ...(ca !== undefined ? { ca } : {}),
        ...(v.insecure === true ? { insecure: true } : {})
      })
      return print(account, [`added collection account ${account.id as string} for ${address}`])
    }
    case 'list': {
      only(v, [], 'collect list')
      if (id !== undefined) throw new MigrateUsageError('collect list takes one ADDRESS')
      const { accounts } = await (await ctx.api()).request('GET', base) as { accounts: AccountView[] }
      return print(accounts, accounts.length === 0 ? ['no collection accounts'] : accounts.flatMap(accountLines))
    }
    case 'del':
    case 'run': {
      only(v, [], `collect ${sub}`)
      if (id === undefined || extra.length > 0) throw new MigrateUsageError(`collect ${sub} takes ADDRESS and ID`)
      const api = await ctx.api()
      const out = sub === 'del' ? await api.request('DELETE', `${base}/${encodeURIComponent(id)}`) : await api.request('POST', `${base}/${encodeURIComponent(id)}/run`)
      return print(out, [sub === 'del' ? `deleted collection account ${id}` : `collection account ${id} runs now (see collect list)`])
    }
    default:
      throw new MigrateUsageError(sub === undefined ? 'missing collect subcommand (add, list, del, run)' : `unknown collect subcommand: ${sub}`)
  }
}

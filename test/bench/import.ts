// `npm run bench:import`: import over IMAP, mailgrid against Dovecot's tools, on the same data in the same run.
// The source is a private Dovecot (test/helpers/dovecot.ts, startDovecotSource) filled with the import tests' mailbox
// (test/migrate/imap-fixture.ts: 13 folders, flags, keywords, dates; BENCH_IMPORT_MESSAGES messages, a few of
// 2-5 MB). Three copies of it, each into an empty account:
//   - mailgrid: `mailgrid import imap` (the CLI) into a node as `npm start` runs it (appliance/cli.ts start, a
//     one-node grid, fsync on); the time is the job's own, from its start to its end on the node;
//   - imapflow script: IMAP to IMAP into a second private Dovecot, folder by folder (LIST, CREATE, FETCH of
//     flags, date and bytes, APPEND with flags and date), one connection each side, what imapsync-style copying does;
//   - doveadm backup: Dovecot's dsync from the source's Maildir into the second Dovecot's (local, not over IMAP).
// Prints msg/s and MB/s for each, and the same as JSON on the last line.

import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { ImapFlow } from 'imapflow'
import { createTestCa } from '../helpers/ca.ts'
import { startDovecotSource } from '../helpers/dovecot.ts'
import { tempDir } from '../helpers/tmp.ts'
import { client, populate } from '../migrate/imap-fixture.ts'
import { seedUsers, startShipped } from './mailgrid.ts'

const run = promisify(execFile)
const MESSAGES = Number(process.env.BENCH_IMPORT_MESSAGES ?? 2000)
const LARGE = Number(process.env.BENCH_IMPORT_LARGE ?? 5)
const cleanups: Array<() => Promise<void>> = []
const t = { after: (fn: () => Promise<void>) => { cleanups.push(fn) } }
const log = (s: string): void => { process.stderr.write(s + '\n') }

async function copyWithImapflow (from: ImapFlow, to: ImapFlow): Promise<number> {
  let n = 0
  for (const f of await from.list()) {
    if (f.flags.has('\\Noselect') || f.flags.has('\\NonExistent')) continue
    if (f.path.toUpperCase() !== 'INBOX') await to.mailboxCreate(f.path).catch(() => {})
    if (f.subscribed === true) await to.mailboxSubscribe(f.path)
    const box = await from.mailboxOpen(f.path, { readOnly: true })
    if (box.exists === 0) continue
    const batch: Array<{ source: Buffer, flags: string[], date: Date }> = []
    for await (const m of from.fetch('1:*', { uid: true, flags: true, internalDate: true, source: true })) {
      batch.push({ source: m.source!, flags: [...(m.flags ?? [])].filter(x => x !== '\\Recent'), date: m.internalDate as Date })
    }
    for (const m of batch) await to.append(f.path, m.source, m.flags, m.date)
    n += batch.length
  }
  return n
}

try {
  const dir = await tempDir(t, 'mailgrid-bench-import-')
  const ca = await createTestCa()
  const source = await startDovecotSource({ users: [{ user: 'alice', password: 'pw' }], ca })
  t.after(async () => { await source.stop() })
  const target = await startDovecotSource({ users: [{ user: 'alice', password: 'pw' }, { user: 'bob', password: 'pw' }], ca })
  t.after(async () => { await target.stop() })
  log(`bench:import: ${source.version}; filling the source with ${MESSAGES} messages (${LARGE} of 2-5 MB)`)
  const src = client(source.imapPort, 'alice', 'pw')
  await src.connect()
  const stats = await populate(src, { messages: MESSAGES, large: LARGE })
  await src.logout()
  const mb = stats.bytes / 1048576
  log(`bench:import: ${stats.messages} messages, ${mb.toFixed(1)} MB in ${stats.folders} folders`)
  const rows: Array<{ tool: string, seconds: number, messages: number }> = []

  // mailgrid: the CLI against a shipped node
  const data = join(dir, 'mailgrid')
  await seedUsers(data, 'bench.test', ['alice@bench.test'], 'pw')
  const node = await startShipped(data, { sync: true, logFile: join(dir, 'mailgrid.log') })
  t.after(async () => { await node.stop() })
  await writeFile(join(dir, 'pw'), 'pw\n')
  const wall = performance.now()
  const cli = await run(process.execPath, ['appliance/cli.ts', 'import', 'imap', '--from', `imap://127.0.0.1:${source.imapPort}`, '--user', 'alice', '--password-file', join(dir, 'pw'), '--to', 'alice@bench.test', '--data', data, '--json'], { maxBuffer: 64 * 1024 * 1024 })
  const cliSeconds = (performance.now() - wall) / 1000
  const [job] = JSON.parse(cli.stdout) as Array<{ started: number, finished: number, report: { copied: number, failed: number } }>
  if (job.report.failed > 0) throw new Error(`mailgrid import failed for ${job.report.failed} messages: ${cli.stdout.slice(0, 2000)}`)
  rows.push({ tool: 'mailgrid import imap (shipped node, fsync on)', seconds: (job.finished - job.started) / 1000, messages: job.report.copied })
  log(`bench:import: mailgrid ${rows[0].seconds.toFixed(2)} s (CLI wall time with its 1 s polling: ${cliSeconds.toFixed(2)} s)`)

  // imapflow IMAP-to-IMAP into the second Dovecot
  const a = client(source.imapPort, 'alice', 'pw')
  const b = client(target.imapPort, 'alice', 'pw')
  await a.connect()
  await b.connect()
  let start = performance.now()
  const copied = await copyWithImapflow(a, b)
  rows.push({ tool: 'imapflow script IMAP to IMAP into Dovecot', seconds: (performance.now() - start) / 1000, messages: copied })
  await a.logout()
  await b.logout()

  // doveadm backup -R (dsync pulling: bob becomes a copy, the source is only read) from the source's Maildir
  start = performance.now()
  try {
    await run('/usr/bin/doveadm', ['-c', join(target.dir, 'dovecot.conf'), 'backup', '-R', '-u', 'bob', `maildir:${join(source.dir, 'mail', 'alice')}`], { maxBuffer: 16 * 1024 * 1024 })
    rows.push({ tool: 'doveadm backup (dsync, local Maildir to Maildir)', seconds: (performance.now() - start) / 1000, messages: stats.messages })
  } catch (err) {
    log(`bench:import: doveadm backup did not run: ${String((err as { stderr?: string }).stderr ?? err).trim().split('\n').slice(-2).join(' / ')}`)
  }

  process.stdout.write(`\n${'tool'.padEnd(52)} ${'seconds'.padStart(8)} ${'msg/s'.padStart(8)} ${'MB/s'.padStart(7)}\n`)
  for (const r of rows) {
    process.stdout.write(`${r.tool.padEnd(52)} ${r.seconds.toFixed(2).padStart(8)} ${(r.messages / r.seconds).toFixed(0).padStart(8)} ${(mb / r.seconds).toFixed(1).padStart(7)}\n`)
  }
  process.stdout.write(JSON.stringify({ messages: stats.messages, megabytes: Number(mb.toFixed(2)), folders: stats.folders, rows: rows.map(r => ({ ...r, msgPerSecond: Math.round(r.messages / r.seconds), mbPerSecond: Number((mb / r.seconds).toFixed(2)) })) }) + '\n')
} finally {
  for (const c of cleanups.reverse()) await c().catch(err => { log(`cleanup: ${String(err)}`) })
}

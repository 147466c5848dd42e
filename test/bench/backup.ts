// npm run bench:backup — import, export and backup figures (issue 15) against Dovecot on the same data.
// One node as `npm start` runs it (a one-node grid, a process of its own, fsync on), driven by the CLI in this
// process over the admin API on loopback, as an operator runs it:
//   import   mailgrid import maildir of a generated Maildir (BENCH_BACKUP_MESSAGES messages, 1-60 KB, 3 folders)
//   export   mailgrid export --maildir of that account
//   backup   mailgrid backup --to (first run: everything; then an unchanged run)
// Dovecot (Debian's, a private instance serving the exported Maildir):
//   doveadm backup (dsync) of the account into an empty Maildir; cp -a of the Maildir
// Prints msg/s and MB/s for each. BENCH_BACKUP_MESSAGES (default 2000).

import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmod, mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ProcCluster } from '../helpers/cluster.ts'
import { isDovecotInstalled, NOBODY_ID, startDovecot } from '../helpers/dovecot.ts'
import { cli, TOKEN } from '../migrate/helpers.ts'

const COUNT = Number(process.env.BENCH_BACKUP_MESSAGES ?? 2000)
const USER = 'bench@example.com'
const FOLDERS = ['', '.Work', '.Archive.2023']

function message (i: number): Buffer {
  const size = 1024 + ((i * 7919) % 60) * 1024 // 1-60 KB, mean about 30 KB
  const head = `From: sender${i % 50}@example.org\nTo: ${USER}\nSubject: bench message ${i}\nMessage-ID: <${i}.bench@example.org>\nDate: Thu, 02 Jan 2020 03:04:05 +0000\n\n`
  const text = randomBytes(size).toString('base64').match(/.{1,76}/g)?.join('\n') ?? ''
  return Buffer.from(head + text.slice(0, size) + '\n')
}

async function generate (root: string): Promise<{ bytes: number }> {
  let bytes = 0
  for (const f of FOLDERS) for (const s of ['cur', 'new', 'tmp']) await mkdir(join(root, f, s), { recursive: true })
  for (let i = 0; i < COUNT; i++) {
    const f = FOLDERS[i % FOLDERS.length]
    const raw = message(i)
    bytes += raw.length
    const file = join(root, f, 'cur', `${1600000000 + i}.M${i}P1.bench,S=${raw.length}:2,${i % 3 === 0 ? 'S' : i % 3 === 1 ? 'FS' : ''}`)
    await writeFile(file, raw)
    const t = 1600000000 + i * 60
    await utimes(file, t, t)
  }
  return { bytes }
}

function line (what: string, ms: number, messages: number, bytes: number): string {
  const s = ms / 1000
  return `${what.padEnd(34)} ${s.toFixed(2).padStart(8)} s ${(messages / s).toFixed(0).padStart(7)} msg/s ${(bytes / 1024 / 1024 / s).toFixed(2).padStart(8)} MB/s`
}

async function timed (fn: () => Promise<unknown> | unknown): Promise<number> {
  const t0 = performance.now()
  await fn()
  return performance.now() - t0
}

const dir = await mkdtemp(join(tmpdir(), 'mailgrid-bench-backup-'))
await chmod(dir, 0o755)
const cluster = new ProcCluster({ clusterKey: randomBytes(16).toString('hex'), replicas: 2, setup: { domain: 'example.com', users: [USER], password: 'pw' } })
const rows: string[] = []
try {
  const src = join(dir, 'source')
  const { bytes } = await generate(src)
  const node = await cluster.start('n1', join(dir, 'node'), { setup: true, env: { MAILGRID_TEST_ADMIN: TOKEN } })
  await cluster.formed(1, 60_000)
  const url = `http://127.0.0.1:${node.ports.admin}`
  const run = async (args: string[]): Promise<void> => {
    const r = await cli(url, args)
    if (r.code !== 0) throw new Error(`mailgrid ${args.join(' ')}: ${r.err}`)
  }
  rows.push(line('mailgrid import maildir', await timed(async () => { await run(['import', 'maildir', src, '--to', USER]) }), COUNT, bytes))
  const exported = join(dir, 'export')
  rows.push(line('mailgrid export --maildir', await timed(async () => { await run(['export', USER, '--maildir', exported]) }), COUNT, bytes))
  const backup = join(dir, 'backup')
  rows.push(line('mailgrid backup (first run)', await timed(async () => { await run(['backup', '--to', backup]) }), COUNT, bytes))
  rows.push(line('mailgrid backup (nothing new)', await timed(async () => { await run(['backup', '--to', backup]) }), COUNT, bytes))
  rows.push(line('mailgrid backup verify', await timed(async () => { await run(['backup', 'verify', backup]) }), COUNT, bytes))
  const copy = join(dir, 'cp')
  rows.push(line('cp -a of the Maildir (+ sync)', await timed(() => { execFileSync('cp', ['-a', exported, copy]); execFileSync('sync') }), COUNT, bytes))
  if (isDovecotInstalled()) {
    execFileSync('chown', ['-R', `${NOBODY_ID}:${NOBODY_ID}`, exported])
    const dovecot = await startDovecot({ users: [{ user: USER, password: 'pw', mail: exported }] })
    try {
      const dest = join(dir, 'dsync')
      await mkdir(dest)
      execFileSync('chown', [`${NOBODY_ID}:${NOBODY_ID}`, dest])
      rows.push(line('Dovecot doveadm backup (dsync)', await timed(async () => { await dovecot.doveadm(['backup', '-u', USER, `maildir:${dest}/Maildir`]) }), COUNT, bytes))
      rows.push(line('Dovecot doveadm backup (nothing new)', await timed(async () => { await dovecot.doveadm(['backup', '-u', USER, `maildir:${dest}/Maildir`]) }), COUNT, bytes))
    } finally {
      await dovecot.stop()
    }
  }
  process.stdout.write(`bench:backup — ${COUNT} messages, ${(bytes / 1024 / 1024).toFixed(1)} MB, 3 folders, one node (fsync on), CLI over the admin API on loopback\n${rows.join('\n')}\n`)
} finally {
  await cluster.stopAll()
  await rm(dir, { recursive: true, force: true })
}

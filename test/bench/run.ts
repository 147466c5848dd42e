// npm run bench: SMTP ingest of one node with fsync on, measured from a separate load process over loopback.
// For each message size it starts a fresh node (its own process and data dir), sends MESSAGES messages over
// CONNECTIONS pipelined connections to USERS users, and reports accepted msg/s, MB/s and DATA-to-250
// latency; then it stops the node and checks that every acknowledged message is in its mailbox.
//
// Parameters (environment): BENCH_MESSAGES (default 10000), BENCH_CONNECTIONS (50), BENCH_USERS (100),
// BENCH_SIZES (comma-separated bytes, default 10240,30720), BENCH_SYNC (1; 0 turns fsync off for comparison).

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { cpus, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { createStore } from '../../store/index.ts'
import { percentile, runSmtpLoad } from '../helpers/smtp-load.ts'

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 10_000)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50)
const USERS = Number(process.env.BENCH_USERS ?? 100)
const SIZES = (process.env.BENCH_SIZES ?? '10240,30720').split(',').map(Number)
const SYNC = process.env.BENCH_SYNC !== '0'
const DEADLINE_MS = 300_000

const users = Array.from({ length: USERS }, (_, i) => `user${i}@bench.test`)

async function startNode (dir: string): Promise<{ child: ChildProcess, ports: Record<string, number> }> {
  const setup = JSON.stringify({ domain: 'bench.test', users, password: 'pw' })
  const child = spawn(process.execPath, [join(import.meta.dirname, '..', 'helpers', 'node-proc.ts'), dir, setup], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, MAILGRID_SYNC: SYNC ? '1' : '0' }
  })
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  const ports = await new Promise<Record<string, number>>((resolve, reject) => {
    lines.on('line', l => { if (l.startsWith('READY ')) resolve(JSON.parse(l.slice(6))) })
    child.once('exit', code => reject(new Error(`node exited with ${code}`)))
  })
  return { child, ports }
}

async function cpuSeconds (pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises')
  const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1].split(' ')
  return (Number(stat[11]) + Number(stat[12])) / 100 // utime + stime in clock ticks (USER_HZ = 100)
}

interface Row {
  size: number
  acked: number
  failed: number
  msgPerSec: number
  mbPerSec: number
  p50: number
  p99: number
  stored: number
  serverCpuPct: number
}

async function one (size: number): Promise<Row> {
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-bench-'))
  try {
    const { child, ports } = await startNode(dir)
    const cpu0 = await cpuSeconds(child.pid as number)
    const res = await runSmtpLoad({
      port: ports.smtp, connections: CONNECTIONS, messages: MESSAGES, sizeBytes: size,
      recipient: i => users[i % users.length], deadlineMs: DEADLINE_MS
    })
    const cpu1 = await cpuSeconds(child.pid as number)
    await new Promise(resolve => { child.once('exit', resolve); child.kill('SIGTERM') })
    const store = createStore({}, { path: dir })
    await store.start()
    let stored = 0
    for (const u of users) stored += (await store.getMailbox(u, 'INBOX'))?.messages ?? 0
    await store.stop()
    const lat = res.latenciesMs.sort((a, b) => a - b)
    return {
      size,
      acked: res.acked,
      failed: res.failed + res.unknown,
      msgPerSec: res.acked / (res.elapsedMs / 1000),
      mbPerSec: res.bytes / 1e6 / (res.elapsedMs / 1000),
      p50: percentile(lat, 50),
      p99: percentile(lat, 99),
      stored,
      serverCpuPct: 100 * (cpu1 - cpu0) / (res.elapsedMs / 1000)
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

console.log(`mailgrid SMTP ingest: ${MESSAGES} messages, ${CONNECTIONS} connections, ${USERS} users, fsync ${SYNC ? 'on' : 'off'}; ` +
  `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`)
console.log('| size | accepted | msg/s | MB/s | p50 ms | p99 ms | server CPU % | stored = accepted |')
console.log('|---|---|---|---|---|---|---|---|')
let lost = false
for (const size of SIZES) {
  const r = await one(size)
  if (r.stored !== r.acked) lost = true
  console.log(`| ${(r.size / 1024).toFixed(0)} KB | ${r.acked} (${r.failed} not) | ${r.msgPerSec.toFixed(0)} | ${r.mbPerSec.toFixed(1)} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.serverCpuPct.toFixed(0)} | ${r.stored === r.acked ? 'yes' : `NO: ${r.stored}`} |`)
}
if (lost) {
  console.error('bench: the number of stored messages differs from the number acknowledged')
  process.exit(1)
}

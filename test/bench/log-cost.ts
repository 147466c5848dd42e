// npm run bench:log — what the info log costs the node as it ships (issue 13: at most 5 % of ingest). Two nodes
// as `npm start` runs them (mailgrid.ts startShipped: one-node grid, fsync on), one at log level info (a line per
// message, `smtp_delivered`, plus a line per connection) and one at warn (no line per message), fed the same SMTP
// load in turns (info, warn, warn, info, ...), each run measured as msg/s and as the node's CPU per acknowledged
// message (utime + stime from /proc, the figure that does not move with what else runs on a shared machine).
// Parameters: BENCH_LOG_MESSAGES [5000] per run, BENCH_LOG_ROUNDS [2] (each round is one run per level),
// BENCH_LOG_SIZE [10240] bytes, BENCH_LOG_CONNECTIONS [50], BENCH_LOG_USERS [100]. Prints the figures; writes nothing.

import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SCRYPT_LOG_N } from '../../store/password.ts'
import { benchDns, cpuSeconds, seedUsers, startShipped } from './mailgrid.ts'
import type { MailgridNode } from './mailgrid.ts'
import { ingest } from './phases.ts'
import type { IngestResult } from './phases.ts'

const env = (k: string, d: number): number => { const v = Number(process.env[k] ?? d); if (!Number.isFinite(v) || v <= 0) throw new Error(`${k} must be a positive number`); return v }
const MESSAGES = env('BENCH_LOG_MESSAGES', 5000)
const ROUNDS = env('BENCH_LOG_ROUNDS', 2)
const SIZE = env('BENCH_LOG_SIZE', 10_240)
const CONNECTIONS = env('BENCH_LOG_CONNECTIONS', 50)
const USERS = Array.from({ length: env('BENCH_LOG_USERS', 100) }, (_, i) => `user${i}@bench.test`)
const PASSWORD = 'bench-pw'
const LEVELS = ['info', 'warn'] as const
const DEADLINE_MS = 600_000

const root = await mkdtemp(join(tmpdir(), 'mailgrid-bench-log-'))
const nodes = new Map<string, MailgridNode>()
const runs = new Map<string, IngestResult[]>(LEVELS.map(l => [l, []]))
const dns = await benchDns()
if ('why' in dns) console.log(`note: ${dns.why}`)
try {
  for (const level of LEVELS) {
    const dir = join(root, level)
    await seedUsers(dir, 'bench.test', USERS, PASSWORD, SCRYPT_LOG_N)
    const node = await startShipped(dir, { sync: true, logFile: join(root, `${level}.log`), logLevel: level, ...('server' in dns ? { dnsServer: dns.server } : {}) })
    nodes.set(level, node)
  }
  let firstId = 0
  for (let round = 0; round < ROUNDS; round++) {
    for (const level of round % 2 === 0 ? LEVELS : [...LEVELS].reverse()) {
      const node = nodes.get(level) as MailgridNode
      const r = await ingest({ smtp: node.ports.smtp, imap: node.ports.imap, pop3: node.ports.pop3 }, {
        sizeBytes: SIZE, messages: MESSAGES, connections: CONNECTIONS, users: USERS, password: PASSWORD, firstId,
        deadlineMs: DEADLINE_MS, visibleDeadlineMs: DEADLINE_MS, cpu: async () => await cpuSeconds(node.pid)
      })
      firstId += MESSAGES
      runs.get(level)?.push(r)
      console.log(`${level.padEnd(4)} round ${round + 1}: ${r.acked}/${MESSAGES} acked, ${r.msgPerSec.toFixed(0)} msg/s, ${r.cpuMsPerMsg?.toFixed(3) ?? 'n/a'} ms CPU per message` +
        (r.missing !== null && r.missing > 0 ? `, ${r.missing} MISSING` : ''))
    }
  }
  for (const level of LEVELS) {
    const lines = (await readFile(join(root, `${level}.log`), 'utf8')).split('\n').filter(l => l !== '').length
    console.log(`${level}: ${lines} log lines written`)
  }
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length
  const cpu = (l: string): number => mean((runs.get(l) ?? []).map(r => r.cpuMsPerMsg ?? NaN))
  const rate = (l: string): number => mean((runs.get(l) ?? []).map(r => r.msgPerSec))
  console.log(`mean CPU per message: info ${cpu('info').toFixed(3)} ms, warn ${cpu('warn').toFixed(3)} ms: info costs ${(100 * (cpu('info') / cpu('warn') - 1)).toFixed(1)} % more CPU per message (goal ≤ 5 %)`)
  console.log(`mean msg/s: info ${rate('info').toFixed(0)}, warn ${rate('warn').toFixed(0)} (${(100 * (1 - rate('info') / rate('warn'))).toFixed(1)} % fewer at info; wall-clock rates on a shared machine are noisy)`)
} finally {
  for (const n of nodes.values()) await n.stop()
  if ('stop' in dns) await dns.stop()
  await rm(root, { recursive: true, force: true })
}

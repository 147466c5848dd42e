// The mailgrid side of the benchmark: users created through the store before the node starts, the node in a
// child process, its RSS and CPU read from /proc. Two kinds of node:
// - shipped (startShipped): what `npm start` runs, `node appliance/cli.ts start` under the shipped V8 flags
//   (appliance/node-flags.ts): a one-node grid, JSON logs at the default level info, fsync on, users with the
//   production scrypt cost, its log in a file; only the ports and the connection limits (raised for the load
//   generator) come from the bench, through the environment.
// - standalone (startMailgrid): test/bench/node-proc.ts, the mail node alone (no grid, logging off, scrypt cost
//   2^10), kept as a labelled extra row and for the memory phase's 5,000 logins.

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { closeSync, existsSync, openSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { envName, SERVICE_NAMES, WEB_NAMES } from '../../appliance/config.ts'
import { NODE_FLAGS } from '../../appliance/node-flags.ts'
import { createStore, isMailError } from '../../store/index.ts'
import { isDnsmasqInstalled, startDns } from '../helpers/dns.ts'
import { freePort } from '../helpers/ports.ts'

const START_TIMEOUT_MS = 120_000 // opening a store of 10,000 users on a busy 2-core machine
const STOP_TIMEOUT_MS = 60_000
const USER_BATCH = 64 // concurrent addUser calls while seeding (they share group commits)
const SEED_PARALLEL = 32 // deliveries in flight while seeding a mailbox

const REPO = resolve(import.meta.dirname, '..', '..')
const POLL_MS = 100
const SHIPPED_CONNECTIONS_MAX = 20_000 // the load generator's 50 connections plus its IMAP watchers, from one address

export interface MailgridNode {
  pid: number
  ports: Record<string, number>
  stop: () => Promise<void>
  /** SIGKILL, resolved once the process is gone (startShipped's nodes only). */
  kill?: () => Promise<void>
}

/** Users and their domain, written through the store before the node starts; `scryptLogN` 10 unless given. */
export async function seedUsers (dir: string, domain: string, users: string[], password: string, scryptLogN = 10): Promise<void> {
  const store = createStore({}, { path: dir, scryptLogN })
  await store.start()
  try {
    try {
      await store.addDomain(domain)
    } catch (err) {
      if (!isMailError(err, 'exists')) throw err
    }
    for (let i = 0; i < users.length; i += USER_BATCH) {
      await Promise.all(users.slice(i, i + USER_BATCH).map(address => store.addUser({ address, password })))
    }
  } finally {
    await store.stop()
  }
}

/**
 * Delivers `count` messages into a user's INBOX straight through the store of a node not yet started (the store's
 * own delivery, what the SMTP server calls after the 250; no fsync per message, the store is closed after): the
 * fast way to give the node a large mailbox. Not a measurement. Returns the seconds it took.
 */
export async function seedMessages (dir: string, user: string, count: number, message: (i: number) => Buffer): Promise<number> {
  const t0 = performance.now()
  const store = createStore({}, { path: dir, sync: false })
  await store.start()
  try {
    for (let i = 0; i < count; i += SEED_PARALLEL) {
      const batch: Array<Promise<unknown>> = []
      for (let j = i; j < Math.min(count, i + SEED_PARALLEL); j++) batch.push(store.deliver(message(j), [{ user, prefix: '' }]))
      await Promise.all(batch)
    }
  } finally {
    await store.stop()
  }
  return (performance.now() - t0) / 1000
}

/** Counts of INBOX messages per user, read from the store of a stopped node. */
export async function storedCounts (dir: string, users: string[]): Promise<Map<string, number>> {
  const store = createStore({}, { path: dir })
  await store.start()
  const out = new Map<string, number>()
  try {
    for (const u of users) out.set(u, (await store.getMailbox(u, 'INBOX'))?.messages ?? 0)
  } finally {
    await store.stop()
  }
  return out
}

export async function startMailgrid (dir: string, opts: { sync: boolean, env?: Record<string, string> }): Promise<MailgridNode> {
  // The shipped V8 flags (appliance/node-flags.ts), then BENCH_NODE_ARGS: Node flags for the node (e.g. "--cpu-prof
  // --cpu-prof-dir=/tmp/prof" to profile it; a later flag wins).
  const flags = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(s => s !== '')
  const child = spawn(process.execPath, [...NODE_FLAGS, ...flags, join(import.meta.dirname, 'node-proc.ts'), dir], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, ...opts.env, MAILGRID_SYNC: opts.sync ? '1' : '0' }
  })
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  const ports = await new Promise<Record<string, number>>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`node did not start in ${START_TIMEOUT_MS} ms`)) }, START_TIMEOUT_MS)
    lines.on('line', l => { if (l.startsWith('READY ')) { clearTimeout(timer); resolve(JSON.parse(l.slice(6))) } })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`node exited with ${code}`)) })
  })
  return { pid: child.pid as number, ports, stop: async () => { await stopChild(child) } }
}

/**
 * mailgrid as `npm start` runs it on the data directory `dir` (seeded beforehand): `node appliance/cli.ts start`
 * with no configuration file, every setting at its default except the listening ports (SMTP, IMAP, POP3 on free
 * loopback ports, the others on port 0), the connection limits, and fsync when `sync` is false (comparison only).
 * `logLevel` (default: the default, info) sets MAILGRID_LOG_LEVEL; its JSON log goes to `logFile`.
 */
export async function startShipped (dir: string, opts: { sync: boolean, logFile: string, logLevel?: string, dnsServer?: string, env?: Record<string, string> }): Promise<MailgridNode> {
  const ports = { smtp: await freePort(), imap: await freePort(), pop3: await freePort() }
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MAILGRID_') && v !== undefined) env[k] = v
  for (const s of [...SERVICE_NAMES, ...WEB_NAMES, 'managesieve']) env[envName(`listen.${s}.port`)] = '0'
  Object.assign(env, {
    [envName('listen.smtp.port')]: String(ports.smtp),
    [envName('listen.imap.port')]: String(ports.imap),
    [envName('listen.pop3.port')]: String(ports.pop3),
    [envName('limits.connectionsPerIpMax')]: String(SHIPPED_CONNECTIONS_MAX),
    [envName('limits.connectionsMax')]: String(SHIPPED_CONNECTIONS_MAX),
    MAILGRID_ADMIN_PORT: '0',
    MAILGRID_GRID_LISTEN: '/ip4/127.0.0.1/tcp/0',
    MAILGRID_HOSTNAME: 'mx.bench.test',
    ...(opts.sync ? {} : { [envName('store.sync')]: 'false' }),
    ...(opts.logLevel === undefined ? {} : { [envName('log.level')]: opts.logLevel }),
    // BENCH_WORKERS: the `workers` option (SMTP worker processes) for a comparison; the shipped default otherwise
    ...(process.env.BENCH_WORKERS === undefined ? {} : { [envName('workers')]: process.env.BENCH_WORKERS }),
    // BENCH_INBOUND_THREADS: the `inbound.threads` option (the sender checks' threads) for a comparison
    ...(process.env.BENCH_INBOUND_THREADS === undefined ? {} : { [envName('inbound.threads')]: process.env.BENCH_INBOUND_THREADS }),
    // the node checks SPF/DKIM/DMARC of every inbound message: a resolver that answers (benchDns) stands for a
    // machine with working DNS; an unreachable one would make each message wait for DNS timeouts
    ...(opts.dnsServer === undefined ? {} : { [envName('outbound.dnsServers')]: opts.dnsServer }),
    // a grid member's settings (bench:grid): its grid listener, bootstrap list, cluster key, R
    ...opts.env
  })
  const flags = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(s => s !== '')
  const fd = openSync(opts.logFile, 'a')
  let child: ChildProcess
  try {
    child = spawn(process.execPath, [...NODE_FLAGS, ...flags, join(REPO, 'appliance', 'cli.ts'), 'start', '--data', dir], { cwd: REPO, env, stdio: ['ignore', fd, fd] })
  } finally {
    closeSync(fd)
  }
  const node: MailgridNode = {
    pid: child.pid as number,
    ports,
    stop: async () => { await stopChild(child) },
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = new Promise(resolve => child.once('exit', resolve))
      child.kill('SIGKILL')
      await exited
    }
  }
  // admin.json is written once every service listens, just before the `ready` log line
  const deadline = performance.now() + START_TIMEOUT_MS
  while (!existsSync(join(dir, 'admin.json'))) {
    if (child.exitCode !== null || child.signalCode !== null || performance.now() > deadline) {
      await node.stop()
      const tail = (await readFile(opts.logFile, 'utf8').catch(() => '')).split('\n').slice(-10).join('\n')
      throw new Error(`shipped node ${child.exitCode !== null ? `exited with ${child.exitCode}` : `not ready in ${START_TIMEOUT_MS} ms`}\n${tail}`)
    }
    await new Promise(resolve => setTimeout(resolve, POLL_MS))
  }
  return node
}

/**
 * The load generator's sender domain as most mail's senders publish theirs: an SPF record that authorizes the
 * load generator's address (loopback) and a DMARC record (p=none), so the node's SPF and DMARC checks take the
 * path of most received mail (records found, parsed and evaluated: spf=pass, dmarc=pass by SPF alignment) rather
 * than NXDOMAIN. The HELO name (load.test) has no record, as most clients' names have none.
 * BENCH_SENDER_RECORDS=0 serves no records at all (every lookup NXDOMAIN), as the bench did before 2026-12-06.
 */
export const SENDER_RECORDS = [
  { name: 'bench.test', text: 'v=spf1 ip4:127.0.0.0/8 ip6:::1 -all' },
  { name: '_dmarc.bench.test', text: 'v=DMARC1; p=none; rua=mailto:dmarc@bench.test' }
]

/**
 * A private resolver for the shipped node (test/helpers/dns.ts: dnsmasq, no upstream) serving SENDER_RECORDS; any
 * other *.test name answers NXDOMAIN at once. Null (with the reason) when dnsmasq is missing.
 */
export async function benchDns (extra: Array<{ name: string, text: string }> = []): Promise<{ server: string, stop: () => Promise<void> } | { why: string }> {
  if (!isDnsmasqInstalled()) return { why: 'dnsmasq is not installed: the shipped node uses the system resolver' }
  const dns = await startDns({ records: process.env.BENCH_SENDER_RECORDS === '0' ? {} : { txt: [...SENDER_RECORDS, ...extra] } })
  return { server: dns.server, stop: async () => { await dns.stop() } }
}


async function stopChild (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise(resolve => child.once('exit', resolve))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS)
  await exited
  clearTimeout(timer)
}

/** Resident set size of a process in bytes (VmRSS). */
export async function rssBytes (pid: number): Promise<number> {
  const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))
  return m === null ? NaN : Number(m[1]) * 1024
}

/** Proportional set size in bytes (shared pages divided among sharers), for summing over many processes. */
export async function pssBytes (pid: number): Promise<number> {
  try {
    const m = /Pss:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/smaps_rollup`, 'utf8'))
    return m === null ? 0 : Number(m[1]) * 1024
  } catch {
    return 0 // the process ended meanwhile
  }
}

/** User plus system CPU seconds of a process. */
export async function cpuSeconds (pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // and its running child processes' (the node's SMTP workers, node/smtp/workers.ts)
  const children = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '')).split(' ').filter(x => x !== '').map(Number)
  return (Number(f[11]) + Number(f[12])) / 100 + await treeCpuSeconds(children) // utime + stime, in USER_HZ = 100 ticks
}

/**
 * CPU seconds of a set of processes: utime + stime of each, plus the time of its children it has reaped (cutime +
 * cstime), so a system that forks short-lived workers (Postfix's smtpd and cleanup, Dovecot's lmtp) is counted
 * whole when the set is every process under its masters, read at the start and at the end of a measurement.
 */
export async function treeCpuSeconds (pids: number[]): Promise<number> {
  let s = 0
  for (const pid of pids) {
    try {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      s += (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100 // USER_HZ ticks
    } catch {} // ended meanwhile: its time is in its parent's reaped children from now on
  }
  return s
}

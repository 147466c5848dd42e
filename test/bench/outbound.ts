// The outbound figure of issue 10: N messages submitted for a remote domain, timed from the first submission
// until every one of them is at the receiving MTA, for mailgrid and for Postfix relaying the same messages to
// the same receiver, interleaved. Part of `npm run bench` (run.ts); alone: `npm run bench:outbound`.
//
// - The receiver: a private Postfix on 127.0.0.5 accepting any address of remote.test into one catch-all
//   Maildir (test/helpers/postfix.ts). Arrivals are counted by Message-ID from that Maildir, incrementally
//   (each new file is read once, its first 8 KiB), and the moment of arrival is the file's mtime, so the
//   figure does not depend on how often the directory is looked at.
// - mailgrid as it ships: `node appliance/cli.ts start` (what `npm start` runs: a one-node grid, JSON logs at
//   info, fsync on), its domain and user made through the admin API as `mailgrid domain add` / `user add` do
//   (so the domain has a DKIM key and every message is signed), outbound.port pointing at the receiver and
//   outbound.dnsServers at a private dnsmasq serving remote.test's MX. Submission on its port with AUTH PLAIN
//   (plaintext on loopback, allowed by default).
// - The peer: a second private Postfix (peer.ts startRelayPeer) relaying to the receiver, as shipped otherwise.
// Each client connection logs in before the clock starts (one scrypt check each on mailgrid); then all
// connections send pipelined MAIL/RCPT/DATA until N messages are acknowledged.
//
// Parameters (environment, defaults in brackets): BENCH_OUTBOUND_MESSAGES [5000], BENCH_OUTBOUND_SIZE [10240]
// bytes, BENCH_OUTBOUND_CONNECTIONS [4] submission connections, BENCH_OUTBOUND_ROUNDS [1] (median shown; the
// order alternates), BENCH_OUTBOUND_WARMUP [20] untimed messages per system first, BENCH_PEER [1].
// BENCH_NODE_ARGS passes Node flags to the mailgrid node (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof");
// BENCH_KEEP_OUTBOUND=1 keeps its data directory and log.

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { closeSync, existsSync, openSync } from 'node:fs'
import { mkdir, mkdtemp, open, readdir, readFile, rm } from 'node:fs/promises'
import { connect } from 'node:net'
import type { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { envName, SERVICE_NAMES, WEB_NAMES } from '../../appliance/config.ts'
import { NODE_FLAGS } from '../../appliance/node-flags.ts'
import { isDnsmasqInstalled, startDns } from '../helpers/dns.ts'
import type { DnsServer } from '../helpers/dns.ts'
import { isPostfixInstalled, startPostfix } from '../helpers/postfix.ts'
import type { PostfixServer } from '../helpers/postfix.ts'
import { makeMessage } from '../helpers/smtp-load.ts'
import { descendants, startRelayPeer } from './peer.ts'
import type { RelayPeer } from './peer.ts'
import { fmt } from './report.ts'
import type { Figure, Row } from './report.ts'
import { freePort } from '../helpers/ports.ts'

const REPO = resolve(import.meta.dirname, '..', '..')
const CLI = join(REPO, 'appliance', 'cli.ts')
const RECEIVER_HOST = '127.0.0.5' // any 127/8 address works on Linux; apart from the systems' own 127.0.0.1
const REMOTE_DOMAIN = 'remote.test'
const RECEIVER_NAME = `mx.${REMOTE_DOMAIN}`
const LOCAL_DOMAIN = 'bench.test'
const SENDER = `load@${LOCAL_DOMAIN}` // the From of smtp-load's makeMessage, and the authenticated user
const PASSWORD = 'bench-outbound-pw'
const RECIPIENTS = 100 // distinct remote addresses, round robin
const SCAN_INTERVAL_MS = 100 // between looks at the receiver's Maildir
const HEAD_BYTES = 8192 // read of each arrived file: Message-ID is in the original head, below ~2 KiB of trace and DKIM
const READ_CONCURRENCY = 32 // files read at once while scanning
const SETTLE_MS = 3000 // after the last expected arrival, a last look for late duplicates
const ARRIVAL_FLOOR_MSG_PER_S = 20 // the wait for arrivals is 60 s + N / this: bounded even when delivery crawls
const ARRIVAL_BASE_MS = 60_000
const SUBMIT_DEADLINE_MS = 600_000
const SMTP_REPLY_TIMEOUT_MS = 120_000 // one reply; a stalled server fails the run instead of hanging it
const NODE_START_TIMEOUT_MS = 120_000
const NODE_STOP_TIMEOUT_MS = 60_000
const ADMIN_TIMEOUT_MS = 30_000
const POLL_MS = 100

export interface OutboundParams {
  messages: number
  sizeBytes: number
  connections: number
  rounds: number
  warmup: number
  peer: boolean
}

export interface OutboundRun {
  who: 'mailgrid' | 'peer'
  messages: number
  acked: number
  failed: number
  unknown: number
  firstFailure: string | null
  /** First submission to the last 250. */
  acceptSeconds: number
  acceptMsgPerSec: number
  /** First submission to the arrival of the last acknowledged message (its first copy); null when some are missing. */
  deliveredSeconds: number | null
  deliveredMsgPerSec: number | null
  /** Distinct Message-IDs of this run at the receiver. */
  delivered: number
  /** Acknowledged, not at the receiver when the wait ended. */
  missing: number
  /** Copies beyond the first, by Message-ID. */
  duplicates: number
  /** Not acknowledged (no answer) yet delivered. */
  deliveredUnacked: number
  /** Most first copies that arrived in one wall-clock second, and the median over the busy seconds. */
  peakPerSecond: number
  medianPerSecond: number
  /** First copies arrived in each second after the first submission (a plateau at a round number is a rate cap). */
  arrivalsPerSecond: number[]
  /** CPU seconds of the submitting system's processes (mailgrid: the node; peer: the Postfix master and children). */
  cpuSeconds: number
  note: string | null
}

export interface OutboundResult {
  rows: Row[]
  runs: OutboundRun[]
  notes: string[]
  /** mailgrid: acknowledged but never at the receiver, and duplicates (null when not measured). */
  mailgrid: { missing: number, duplicates: number } | null
  /** mailgrid's delivered msg/s over the peer's (null when either is missing). */
  ratio: number | null
}

// ---- the receiver's Maildir, counted by Message-ID -----------------------------------------------------------

class Arrivals {
  private readonly newDir: string
  private readonly seen = new Set<string>()
  /** Load id → arrival times (ms since the epoch: the file's mtime), one per copy. */
  readonly copies = new Map<number, number[]>()
  foreign = 0

  constructor (receiver: PostfixServer) {
    this.newDir = join(receiver.dir, 'mail', REMOTE_DOMAIN, 'new')
  }

  async scan (): Promise<void> {
    const names = (await readdir(this.newDir).catch(() => [] as string[])).filter(n => !this.seen.has(n))
    for (let i = 0; i < names.length; i += READ_CONCURRENCY) {
      await Promise.all(names.slice(i, i + READ_CONCURRENCY).map(async n => { await this.read(n) }))
    }
  }

  private async read (name: string): Promise<void> {
    const fh = await open(join(this.newDir, name), 'r')
    try {
      const buf = Buffer.alloc(HEAD_BYTES)
      const { bytesRead } = await fh.read(buf, 0, HEAD_BYTES, 0)
      const st = await fh.stat()
      this.seen.add(name)
      const head = buf.subarray(0, bytesRead).toString('latin1')
      const m = /^Message-ID:\s*<load-(\d+)@bench\.test>/im.exec(head)
      if (m === null) { this.foreign++; return }
      const id = Number(m[1])
      this.copies.set(id, [...(this.copies.get(id) ?? []), st.mtimeMs])
    } finally {
      await fh.close()
    }
  }

  /** Scans until every id has a copy or the deadline passes; true when all arrived. */
  async waitFor (ids: Iterable<number>, deadlineMs: number): Promise<boolean> {
    const pending = new Set(ids)
    const deadline = performance.now() + deadlineMs
    for (;;) {
      await this.scan()
      for (const id of pending) if (this.copies.has(id)) pending.delete(id)
      if (pending.size === 0) return true
      if (performance.now() > deadline) return false
      await sleep(SCAN_INTERVAL_MS)
    }
  }
}

// ---- a submission client with AUTH and pipelining ------------------------------------------------------------

class SmtpConn {
  private readonly socket: Socket
  private buf = ''
  private readonly want: Array<(line: string) => void> = []
  dead = false

  constructor (socket: Socket) {
    this.socket = socket
    socket.setEncoding('latin1')
    socket.setNoDelay(true)
    socket.on('data', (d: string) => {
      this.buf += d
      let i: number
      while ((i = this.buf.indexOf('\r\n')) >= 0) {
        const line = this.buf.slice(0, i)
        this.buf = this.buf.slice(i + 2)
        if (/^\d{3}-/.test(line)) continue // a multi-line reply: its last line decides
        this.want.shift()?.(line)
      }
    })
    const die = (): void => {
      this.dead = true
      for (const w of this.want.splice(0)) w('')
    }
    socket.on('close', die)
    socket.on('error', die)
    socket.setTimeout(SMTP_REPLY_TIMEOUT_MS, () => socket.destroy())
  }

  reply (): Promise<string> {
    if (this.dead) return Promise.resolve('')
    return new Promise(resolve => this.want.push(resolve))
  }

  write (data: string | Buffer): void {
    if (!this.dead) this.socket.write(data)
  }

  close (): void {
    this.socket.destroy()
  }

  /** Connect, greeting, EHLO and, when asked, AUTH PLAIN (RFC 4954). Throws with the server's line. */
  static async open (port: number, auth: { user: string, pass: string } | null): Promise<SmtpConn> {
    const c = new SmtpConn(connect({ port, host: '127.0.0.1' }))
    const expect = async (what: string, code: string): Promise<void> => {
      const line = await c.reply()
      if (!line.startsWith(code)) { c.close(); throw new Error(`${what} → ${line === '' ? 'connection closed' : line}`) }
    }
    await expect('greeting', '220')
    c.write('EHLO load.bench.test\r\n')
    await expect('EHLO', '250')
    if (auth !== null) {
      c.write(`AUTH PLAIN ${Buffer.from(`\0${auth.user}\0${auth.pass}`).toString('base64')}\r\n`)
      await expect('AUTH PLAIN', '235')
    }
    return c
  }
}

interface SubmitResult { acked: number[], failed: number, unknown: number, firstFailure: string | null, startedAt: number, acceptSeconds: number }

/** Every connection logs in first; then the clock starts and they share `messages` submissions. */
async function submit (o: { port: number, auth: { user: string, pass: string } | null, connections: number, messages: number, firstId: number, sizeBytes: number }): Promise<SubmitResult> {
  const conns = await Promise.all(Array.from({ length: o.connections }, async () => await SmtpConn.open(o.port, o.auth)))
  const res: SubmitResult = { acked: [], failed: 0, unknown: 0, firstFailure: null, startedAt: Date.now(), acceptSeconds: 0 }
  let next = 0
  const t0 = performance.now()
  const deadline = t0 + SUBMIT_DEADLINE_MS
  await Promise.all(conns.map(async c => {
    while (!c.dead && next < o.messages && performance.now() < deadline) {
      const id = o.firstId + next++
      const rcpt = `r${id % RECIPIENTS}@${REMOTE_DOMAIN}`
      const r1 = c.reply(); const r2 = c.reply(); const r3 = c.reply()
      c.write(`MAIL FROM:<${SENDER}>\r\nRCPT TO:<${rcpt}>\r\nDATA\r\n`) // RFC 2920 pipelining
      const [a, b, d] = [await r1, await r2, await r3]
      if (!a.startsWith('250') || !b.startsWith('250') || !d.startsWith('354')) {
        if (c.dead) { res.unknown++; break }
        res.failed++
        res.firstFailure ??= [a, b, d].find(l => !/^(250|354)/.test(l)) ?? null
        if (d.startsWith('354')) { c.write('.\r\n'); await c.reply() }
        c.write('RSET\r\n')
        await c.reply()
        continue
      }
      const done = c.reply()
      c.write(Buffer.concat([makeMessage(id, rcpt, o.sizeBytes), Buffer.from('.\r\n')]))
      const r = await done
      if (r.startsWith('250')) res.acked.push(id)
      else if (r === '') res.unknown++
      else { res.failed++; res.firstFailure ??= r }
    }
    if (!c.dead) { const bye = c.reply(); c.write('QUIT\r\n'); await bye }
    c.close()
  }))
  res.acceptSeconds = (performance.now() - t0) / 1000
  return res
}

// ---- mailgrid as `npm start` runs it -------------------------------------------------------------------------

interface ShippedNode {
  pid: number
  submission: number
  logFile: string
  /** null while it runs; else how it ended (a node that dies mid-run explains missing messages). */
  exited: () => string | null
  stop: () => Promise<void>
}

async function startShippedNode (root: string, o: { outboundPort: number, dnsServer: string }): Promise<ShippedNode> {
  const dataDir = join(root, 'data')
  await mkdir(dataDir)
  const logFile = join(root, 'node.log')
  const submission = await freePort('127.0.0.1')
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MAILGRID_') && v !== undefined) env[k] = v
  for (const s of [...SERVICE_NAMES, ...WEB_NAMES, 'managesieve']) env[envName(`listen.${s}.port`)] = '0' // every service on, on free ports
  Object.assign(env, {
    [envName('listen.submission.port')]: String(submission),
    MAILGRID_ADMIN_PORT: '0',
    MAILGRID_GRID_LISTEN: '/ip4/127.0.0.1/tcp/0',
    MAILGRID_HOSTNAME: `mx.${LOCAL_DOMAIN}`,
    [envName('outbound.port')]: String(o.outboundPort),
    [envName('outbound.dnsServers')]: o.dnsServer
  })
  const flags = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(s => s !== '')
  const fd = openSync(logFile, 'a')
  let child: ChildProcess
  try {
    child = spawn(process.execPath, [...NODE_FLAGS, ...flags, CLI, 'start', '--data', dataDir], { cwd: REPO, env, stdio: ['ignore', fd, fd] })
  } finally {
    closeSync(fd)
  }
  let ended: string | null = null
  let stopping = false
  child.once('exit', (code, signal) => { if (!stopping) ended = `exited with ${signal ?? code} at ${new Date().toISOString()}` })
  const stop = async (): Promise<void> => {
    stopping = true
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise(resolve => child.once('exit', resolve))
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), NODE_STOP_TIMEOUT_MS)
    await exited
    clearTimeout(timer)
  }
  try {
    // admin.json is written once every service listens, just before the `ready` log line
    const deadline = performance.now() + NODE_START_TIMEOUT_MS
    while (!existsSync(join(dataDir, 'admin.json'))) {
      if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode}`)
      if (performance.now() > deadline) throw new Error(`not ready in ${NODE_START_TIMEOUT_MS} ms`)
      await sleep(POLL_MS)
    }
    const { url } = JSON.parse(await readFile(join(dataDir, 'admin.json'), 'utf8')) as { url: string }
    const token = (await readFile(join(dataDir, 'admin.token'), 'utf8')).trim()
    await admin(url, token, '/v1/domains', { name: LOCAL_DOMAIN }) // with its first DKIM key, as `domain add`
    await admin(url, token, '/v1/users', { address: SENDER, password: PASSWORD })
  } catch (err) {
    await stop()
    const tail = (await readFile(logFile, 'utf8').catch(() => '')).split('\n').slice(-10).join('\n')
    throw new Error(`mailgrid node: ${msg(err)}\n${tail}`)
  }
  return { pid: child.pid as number, submission, logFile, exited: () => ended, stop }
}

async function admin (url: string, token: string, path: string, body: unknown): Promise<void> {
  const r = await fetch(url + path, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(ADMIN_TIMEOUT_MS)
  })
  if (r.status !== 201) throw new Error(`POST ${path} → ${r.status} ${await r.text()}`)
}

// ---- one measured run, and the phase -------------------------------------------------------------------------

interface System {
  who: 'mailgrid' | 'peer'
  port: number
  auth: { user: string, pass: string } | null
  cpu: () => Promise<number>
  /** Why the system is gone, when it went away by itself. */
  died: () => Promise<string | null>
}

async function measure (sys: System, arrivals: Arrivals, o: { messages: number, sizeBytes: number, connections: number, firstId: number }): Promise<OutboundRun> {
  const cpu0 = await sys.cpu()
  const s = await submit({ port: sys.port, auth: sys.auth, connections: o.connections, messages: o.messages, firstId: o.firstId, sizeBytes: o.sizeBytes })
  const all = await arrivals.waitFor(s.acked, ARRIVAL_BASE_MS + 1000 * o.messages / ARRIVAL_FLOOR_MSG_PER_S)
  const cpu = await sys.cpu() - cpu0
  await sleep(SETTLE_MS)
  await arrivals.scan()
  const acked = new Set(s.acked)
  let delivered = 0
  let duplicates = 0
  let deliveredUnacked = 0
  let last = 0
  const perSecond = new Map<number, number>()
  const series: number[] = []
  for (let id = o.firstId; id < o.firstId + o.messages; id++) {
    const copies = arrivals.copies.get(id)
    if (copies === undefined) continue
    delivered++
    duplicates += copies.length - 1
    if (!acked.has(id)) deliveredUnacked++
    const first = Math.min(...copies)
    if (acked.has(id)) last = Math.max(last, first)
    const sec = Math.floor(first / 1000)
    perSecond.set(sec, (perSecond.get(sec) ?? 0) + 1)
    const k = Math.max(0, Math.floor((first - s.startedAt) / 1000))
    while (series.length <= k) series.push(0)
    series[k]++
  }
  const missing = s.acked.filter(id => !arrivals.copies.has(id)).length
  const deliveredSeconds = all && s.acked.length > 0 ? (last - s.startedAt) / 1000 : null
  const busy = [...perSecond.values()].sort((a, b) => a - b)
  const notes: string[] = []
  if (s.failed + s.unknown > 0) notes.push(`${s.failed} refused, ${s.unknown} without an answer${s.firstFailure !== null ? ` (first: ${s.firstFailure})` : ''}`)
  if (missing > 0) notes.push(`${missing} acknowledged messages not at the receiver after the wait`)
  if (duplicates > 0) notes.push(`${duplicates} duplicate copies at the receiver`)
  const died = await sys.died()
  if (died !== null) notes.push(`the ${sys.who} system ${died}`)
  return {
    who: sys.who,
    messages: o.messages,
    acked: s.acked.length,
    failed: s.failed,
    unknown: s.unknown,
    firstFailure: s.firstFailure,
    acceptSeconds: s.acceptSeconds,
    acceptMsgPerSec: s.acked.length / s.acceptSeconds,
    deliveredSeconds,
    deliveredMsgPerSec: deliveredSeconds === null ? null : s.acked.length / deliveredSeconds,
    delivered,
    missing,
    duplicates,
    deliveredUnacked,
    peakPerSecond: busy.at(-1) ?? 0,
    medianPerSecond: busy[Math.floor(busy.length / 2)] ?? 0,
    arrivalsPerSecond: series,
    cpuSeconds: cpu,
    note: notes.length === 0 ? null : notes.join('; ')
  }
}

/** Runs the whole outbound comparison; never throws (a part that cannot run becomes n/a with its reason). */
export async function outboundPhase (p: OutboundParams, log: (s: string) => void): Promise<OutboundResult> {
  const notes: string[] = []
  const runs: OutboundRun[] = []
  const group = `Outbound ${Math.round(p.sizeBytes / 1024)} KB to a remote MTA, ${p.connections} conn, ${p.messages.toLocaleString('en-US')} msgs`
  const naRows = (why: string): OutboundResult => {
    notes.push(`outbound: ${why}`)
    return { rows: rowsOf(group, { mailgrid: [], peer: [] }, { mailgrid: why, peer: why }), runs, notes, mailgrid: null, ratio: null }
  }
  if (!isPostfixInstalled()) return naRows('no receiving MTA (Debian\'s postfix is not installed)')
  if (!isDnsmasqInstalled()) return naRows('no DNS server (Debian\'s dnsmasq-base is not installed)')

  const stops: Array<() => Promise<void>> = []
  const root = await mkdtemp(join(tmpdir(), 'mailgrid-bench-outbound-'))
  // BENCH_KEEP_OUTBOUND=1 keeps the node's data and log (and says where)
  stops.push(async () => { if (process.env.BENCH_KEEP_OUTBOUND === '1') log(`outbound: kept ${root}`); else await rm(root, { recursive: true, force: true }) })
  const why: Record<string, string> = { mailgrid: 'not run', peer: p.peer ? 'not run' : 'not run (BENCH_PEER=0)' }
  const byWho: Record<string, OutboundRun[]> = { mailgrid: [], peer: [] }
  try {
    const receiver = await startPostfix({ domains: [REMOTE_DOMAIN], host: RECEIVER_HOST, hostname: RECEIVER_NAME })
    stops.push(receiver.stop)
    const dns: DnsServer = await startDns({
      records: { mx: [{ name: REMOTE_DOMAIN, host: RECEIVER_NAME, preference: 10 }], address: [{ name: RECEIVER_NAME, address: RECEIVER_HOST }] }
    })
    stops.push(dns.stop)
    const arrivals = new Arrivals(receiver)
    const systems: System[] = []
    try {
      const node = await startShippedNode(root, { outboundPort: receiver.port, dnsServer: dns.server })
      stops.push(node.stop)
      systems.push({
        who: 'mailgrid',
        port: node.submission,
        auth: { user: SENDER, pass: PASSWORD },
        cpu: async () => await treeCpuSeconds([node.pid]),
        died: async () => {
          const how = node.exited()
          if (how === null) return null
          const tail = (await readFile(node.logFile, 'utf8').catch(() => '')).split('\n').filter(l => l !== '').slice(-5).join(' | ')
          return `${how}; its log ended: ${tail.slice(-2000)}`
        }
      })
      log(`outbound: mailgrid node (appliance/cli.ts start) pid ${node.pid}, submission port ${node.submission}, log ${node.logFile}`)
    } catch (err) {
      why.mailgrid = msg(err)
      log(`outbound: mailgrid FAILED to start: ${msg(err)}`)
    }
    if (p.peer) {
      try {
        const relay: RelayPeer = await startRelayPeer({ relayTo: { host: RECEIVER_HOST, port: receiver.port }, hostname: `relay.${LOCAL_DOMAIN}` })
        stops.push(relay.stop)
        systems.push({
          who: 'peer',
          port: relay.port,
          auth: null,
          cpu: async () => await treeCpuSeconds(await relay.pids()),
          died: async () => (await relay.pids()).length === 0 ? 'Postfix master is gone' : null
        })
        notes.push(`outbound peer: Postfix ${relay.version} relaying to the receiver (relayhost [${RECEIVER_HOST}]:${receiver.port}, smtp_tls_security_level = may), ` +
          'clients from mynetworks without AUTH, Postfix defaults otherwise; mailgrid DKIM-signs every message, Postfix signs none')
      } catch (err) {
        why.peer = msg(err)
        log(`outbound: peer FAILED to start: ${msg(err)}`)
      }
    }
    let nextId = 1_000_000 // above the ingest phases' ids; each run takes a fresh range
    for (const sys of systems) {
      if (p.warmup <= 0) continue
      const w = await measure(sys, arrivals, { messages: p.warmup, sizeBytes: p.sizeBytes, connections: Math.min(p.connections, p.warmup), firstId: nextId })
      nextId += p.warmup
      log(`outbound: ${sys.who} warm-up of ${p.warmup}: ${w.delivered} delivered${w.note !== null ? ` (${w.note})` : ''}`)
    }
    for (let round = 0; round < p.rounds; round++) {
      const order = round % 2 === 0 ? systems : [...systems].reverse()
      for (const sys of order) {
        try {
          const r = await measure(sys, arrivals, { messages: p.messages, sizeBytes: p.sizeBytes, connections: p.connections, firstId: nextId })
          nextId += p.messages
          runs.push(r)
          byWho[sys.who].push(r)
          if (r.note !== null) notes.push(`outbound ${sys.who}: ${r.note}`)
          log(`outbound: ${sys.who.padEnd(8)} ${r.acked}/${r.messages} acked in ${r.acceptSeconds.toFixed(1)} s (${r.acceptMsgPerSec.toFixed(0)} msg/s); ` +
            `all at the receiver at ${r.deliveredSeconds?.toFixed(1) ?? 'n/a'} s → ${r.deliveredMsgPerSec?.toFixed(0) ?? 'n/a'} msg/s; ` +
            `peak ${r.peakPerSecond}/s, median ${r.medianPerSecond}/s; ${r.duplicates} duplicates, ${r.missing} missing; CPU ${r.cpuSeconds.toFixed(1)} s`)
        } catch (err) {
          why[sys.who] = msg(err)
          notes.push(`outbound ${sys.who}: ${msg(err)}`)
          log(`outbound: ${sys.who} FAILED: ${msg(err)}`)
        }
      }
    }
    if (arrivals.foreign > 0) notes.push(`outbound: ${arrivals.foreign} files at the receiver without a load Message-ID (bounces?)`)
  } catch (err) {
    why.mailgrid = why.peer = msg(err)
    notes.push(`outbound: ${msg(err)}`)
    log(`outbound: FAILED ${msg(err)}`)
  } finally {
    for (const s of stops.splice(0).reverse()) await s().catch(() => {})
  }
  const mg = byWho.mailgrid
  const pe = byWho.peer
  const med = (rs: OutboundRun[]): number | null => {
    const v = rs.map(r => r.deliveredMsgPerSec)
    if (v.length === 0 || v.some(x => x === null)) return null
    return median(v as number[])
  }
  const a = med(mg)
  const b = med(pe)
  return {
    rows: rowsOf(group, byWho, why),
    runs,
    notes,
    mailgrid: mg.length === 0 ? null : { missing: sum(mg.map(r => r.missing)), duplicates: sum(mg.map(r => r.duplicates)) },
    ratio: a === null || b === null || b === 0 ? null : a / b
  }
}

function rowsOf (group: string, byWho: Record<string, OutboundRun[]>, why: Record<string, string>): Row[] {
  const fig = (who: string, f: (r: OutboundRun) => number | null): Figure => {
    const list = byWho[who] ?? []
    if (list.length === 0) return { na: why[who] ?? 'not run' }
    const v = list.map(f)
    if (v.some(x => x === null)) return { na: list.find(r => f(r) === null)?.note ?? 'no figure' }
    return median(v as number[])
  }
  const row = (label: string, unit: string, better: 'higher' | 'lower', f: (r: OutboundRun) => number | null): Row =>
    ({ group, label, unit, better, mailgrid: fig('mailgrid', f), peer: fig('peer', f) })
  return [
    row('delivered (acked / time from first submission until all at the receiver)', 'msg/s', 'higher', r => r.deliveredMsgPerSec),
    row('all at the receiving MTA, from first submission', 's', 'lower', r => r.deliveredSeconds),
    row('submission accepted', 'msg/s', 'higher', r => r.acceptMsgPerSec),
    row('busiest second at the receiver', 'msg/s', 'higher', r => r.peakPerSecond),
    row('duplicates at the receiver (by Message-ID)', 'msgs', 'lower', r => r.duplicates),
    row('acknowledged, missing at the receiver', 'msgs', 'lower', r => r.missing),
    row('CPU of the sending system (Postfix: master and children)', 's', 'lower', r => r.cpuSeconds)
  ]
}

/** utime + stime of each process, plus the reaped children of the first (Postfix's master reaps its workers); NaN when the first is gone. */
async function treeCpuSeconds (pids: number[]): Promise<number> {
  let s = 0
  for (const [i, pid] of pids.entries()) {
    try {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      s += (Number(f[11]) + Number(f[12]) + (i === 0 ? Number(f[13]) + Number(f[14]) : 0)) / 100 // USER_HZ ticks
    } catch { // ended meanwhile: a worker is counted in its parent's reaped children; the root, nowhere
      if (i === 0) return NaN
    }
  }
  return s
}

function median (a: number[]): number { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)] }
function sum (a: number[]): number { return a.reduce((x, y) => x + y, 0) }
function msg (err: unknown): string { return err instanceof Error ? err.message : String(err) }
async function sleep (ms: number): Promise<void> { await new Promise(resolve => setTimeout(resolve, ms)) }

export function outboundParamsFromEnv (): OutboundParams {
  const env = (k: string, d: number): number => { const v = Number(process.env[k] ?? d); if (!Number.isFinite(v) || v < 0) throw new Error(`${k} must be a number`); return v }
  return {
    messages: Math.max(1, env('BENCH_OUTBOUND_MESSAGES', 5000)),
    sizeBytes: env('BENCH_OUTBOUND_SIZE', 10_240),
    connections: Math.max(1, env('BENCH_OUTBOUND_CONNECTIONS', 4)),
    rounds: Math.max(1, env('BENCH_OUTBOUND_ROUNDS', 1)),
    warmup: env('BENCH_OUTBOUND_WARMUP', 20),
    peer: process.env.BENCH_PEER !== '0'
  }
}

// `npm run bench:outbound`: this phase alone; the figures on stdout (BENCHMARKS.md is left as it is).
if (import.meta.main) {
  const t0 = performance.now()
  const log = (s: string): void => { console.log(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${s}`) }
  const p = outboundParamsFromEnv()
  log(`outbound: ${p.messages} × ${p.sizeBytes} B over ${p.connections} connections, ${p.rounds} round(s), warm-up ${p.warmup}`)
  const r = await outboundPhase(p, log)
  console.log('')
  for (const row of r.rows) console.log(`${row.group} | ${row.label}: mailgrid ${fmt(row.mailgrid)} ${row.unit}, peer ${fmt(row.peer)}`)
  console.log(`mailgrid / peer (delivered msg/s): ${r.ratio === null ? 'n/a' : `${r.ratio.toFixed(2)}×`} (goal ≥ 1.00×)`)
  for (const n of r.notes) console.log(`note: ${n}`)
  console.log(JSON.stringify({ params: p, runs: r.runs }, null, 2))
  if (r.mailgrid === null || r.mailgrid.missing > 0) process.exitCode = 1
}

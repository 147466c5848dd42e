// npm run bench: mailgrid beside Postfix + Dovecot on one machine, both with fsync on, measured with the same
// clients and interleaved (each measurement of mailgrid is followed by the same one of the peer). Installs the
// peer from Debian's packages when missing and runs it as a private instance on loopback (peer.ts); without it,
// mailgrid is measured alone and the output says why. Writes BENCHMARKS.md and bench-results.json (BENCH_OUT,
// default the repo root). Exits non-zero if any acknowledged message is missing. `--render` rewrites
// BENCHMARKS.md from bench-results.json and test/bench/ANALYSIS.md without measuring.
//
// Parameters (environment, defaults in brackets): BENCH_MESSAGES [20000] per ingest run, BENCH_CONNECTIONS [50],
// BENCH_USERS [100] ingest recipients, BENCH_SIZES [10240,30720] bytes, BENCH_ROUNDS [1] ingest rounds (the table
// shows the median), BENCH_BIG_MESSAGES [50000] and BENCH_BIG_SIZE [10240] for the one big mailbox (SELECT, full
// FETCH, POP3), BENCH_MIXED_CLIENTS [10], BENCH_MIXED_OPS [2000] per client, BENCH_IDLE_USERS [10000],
// BENCH_IDLE_SESSIONS [5000], BENCH_PEER [1] (0: mailgrid alone), BENCH_SYNC [1] (0: fsync off, comparison only),
// Before each measured run the bench waits (at most 60 s) until the machine is quiet: under 10 % of its cores busy
// over a second (phases.ts settle), so one phase's leftovers (LevelDB compacting the big mailbox's fill) are not the
// next one's cost.
// BENCH_READ_ROUNDS [3] runs of each read-only phase (full FETCH, POP3 RETR) per system, interleaved, after a first
// (cold) run of each that is reported on its own row; median shown.
// BENCH_SORT_REPEATS [5] runs of each SORT/THREAD command on the big mailbox (the first, and the median of the rest);
// BENCH_SORT_NEW_MAIL [100] messages delivered over SMTP before each command once more (the first after new mail).
// BENCH_BIG_FILL [direct]: how the big mailbox is filled: the same messages delivered through mailgrid's store
// before its node starts and written into Dovecot's Maildir then indexed by doveadm (fast; the fill is not a
// measurement), or `smtp`: over SMTP into both (a single-mailbox ingest figure for both; slow on the peer).
// BENCH_BUSY_CONNECTIONS [200]: the busy-MX phase's connections (the first size once more, into the shipped node, a
// second one with `workers: -1`, and the peer; 0 skips it).
// BENCH_INGEST_WARMUP [5000]: messages of the first size sent over SMTP into each system (the shipped node, the peer,
// and each node a phase starts) before its first measured ingest, not counted: a node serves mail all day, so its
// figure is the warm one (its JIT has compiled the delivery path, the peer has started its smtpd and LMTP
// processes), as the read phases' warm rows, the grid bench and the ladder measure; 0 measures from the start.
// BENCH_ONLY [all]: a comma list of phases to run (ingest, select, fetch, mixed, pop3, sort, busy, standalone,
// outbound, memory); the big mailbox is filled when a phase on it runs; write such partial runs elsewhere (BENCH_OUT).
// The outbound figure (issue 10, outbound.ts; alone: `npm run bench:outbound`): BENCH_OUTBOUND_MESSAGES [5000],
// BENCH_OUTBOUND_SIZE [10240], BENCH_OUTBOUND_CONNECTIONS [4], BENCH_OUTBOUND_ROUNDS [1], BENCH_OUTBOUND_WARMUP [20].

import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { describeMachine } from './machine.ts'
import { benchDns, cpuSeconds, pssBytes, rssBytes, seedMessages, seedUsers, startMailgrid, startShipped, storedCounts, treeCpuSeconds } from './mailgrid.ts'
import type { MailgridNode } from './mailgrid.ts'
import { outboundParamsFromEnv, outboundPhase } from './outbound.ts'
import type { OutboundResult } from './outbound.ts'
import { ensurePeerInstalled, startPeer } from './peer.ts'
import type { Peer } from './peer.ts'
import { fullFetch, idleSessions, ingest, mixed, msg, pop3RetrAll, selectTime, settle, sleep, SORT_THREAD_COMMANDS, sortThread } from './phases.ts'
import type { IngestResult, SystemPorts } from './phases.ts'
import { fmt, renderMarkdown } from './report.ts'
import { makeMessage, runSmtpLoad } from '../helpers/smtp-load.ts'
import { SCRYPT_LOG_N } from '../../store/password.ts'
import { envName } from '../../appliance/config.ts'
import type { Figure, Row, Target } from './report.ts'

const env = (k: string, d: number): number => { const v = Number(process.env[k] ?? d); if (!Number.isFinite(v) || v < 0) throw new Error(`${k} must be a number`); return v }
const P = {
  messages: env('BENCH_MESSAGES', 20_000),
  connections: env('BENCH_CONNECTIONS', 50),
  busyConnections: env('BENCH_BUSY_CONNECTIONS', 200),
  users: env('BENCH_USERS', 100),
  sizes: (process.env.BENCH_SIZES ?? '10240,30720').split(',').map(Number),
  rounds: Math.max(1, env('BENCH_ROUNDS', 1)),
  ingestWarmup: env('BENCH_INGEST_WARMUP', 5000),
  readRounds: Math.max(1, env('BENCH_READ_ROUNDS', 3)),
  bigMessages: env('BENCH_BIG_MESSAGES', 50_000),
  bigSize: env('BENCH_BIG_SIZE', 10_240),
  mixedClients: env('BENCH_MIXED_CLIENTS', 10),
  mixedOps: env('BENCH_MIXED_OPS', 2000),
  idleUsers: env('BENCH_IDLE_USERS', 10_000),
  idleSessions: env('BENCH_IDLE_SESSIONS', 5000),
  // how long the memory phase lets the node sit idle before reading its RSS (idle, and again with the IDLE sessions
  // open): an idle node gives back the young generation V8 grew under load after about 15 s (node/idle-memory.ts)
  idleSettleMs: env('BENCH_IDLE_SETTLE_MS', 25_000),
  sortRepeats: Math.max(2, env('BENCH_SORT_REPEATS', 5)),
  bigFill: process.env.BENCH_BIG_FILL === 'smtp' ? 'smtp' : 'direct',
  sortNewMail: env('BENCH_SORT_NEW_MAIL', 100),
  only: new Set((process.env.BENCH_ONLY ?? '').split(',').map(s => s.trim()).filter(s => s !== '')),
  peer: process.env.BENCH_PEER !== '0',
  sync: process.env.BENCH_SYNC !== '0',
  outbound: outboundParamsFromEnv()
}
const DOMAIN = 'bench.test'
/** The read phases' CPU row: the server's CPU over the command alone (not the login), of the run the row above reports. */
const COMMAND_CPU_LABEL = 'same run, server CPU per message (the command alone: no login)'
const PASSWORD = 'bench-pw'
const INGEST_DEADLINE_MS = 600_000 // one ingest run; at the peer's ~500 msg/s, 50,000 messages take ~100 s
const VISIBLE_DEADLINE_MS = 900_000 // the peer's queue drains after the last 250; bounded, then counted as missing
const MIXED_DEADLINE_MS = 120_000
// BENCH_MIXED_ONLY=search|store|fetch: the mixed phase sends that kind of its commands alone (a diagnostic; the row says so)
const MIXED_ONLY = ((k?: string) => k === 'search' || k === 'store' || k === 'fetch' ? k : undefined)(process.env.BENCH_MIXED_ONLY)
const IDLE_DEADLINE_MS = 600_000
const SELECT_REPEATS = 3
const FD_HEADROOM = 1000 // descriptors beyond the IDLE sessions: load connections, files, the store
const REPO = resolve(import.meta.dirname, '..', '..')
const OUT = resolve(process.env.BENCH_OUT ?? REPO)
mkdirSync(OUT, { recursive: true }) // a BENCH_OUT that does not exist yet (else the run fails at its very end)
/** Whether a phase runs (BENCH_ONLY). */
const phase = (name: string): boolean => P.only.size === 0 || P.only.has(name)

// `node test/bench/run.ts --render`: rewrites BENCHMARKS.md from bench-results.json (after editing ANALYSIS.md).
if (process.argv.includes('--render')) {
  const saved = JSON.parse(readFileSync(join(OUT, 'bench-results.json'), 'utf8'))
  writeBenchmarks(renderMarkdown({ ...saved, analysisFile: join(REPO, 'test', 'bench', 'ANALYSIS.md') }))
  console.log(`rewrote ${join(OUT, 'BENCHMARKS.md')}`)
  process.exit(0)
}

raiseFileLimit()

const t0 = performance.now()
const log = (s: string): void => { console.log(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${s}`) }
const machine = describeMachine(REPO)
const notes: string[] = []
const raw: Record<string, unknown> = {}
const rows: Row[] = []
const users = Array.from({ length: P.users }, (_, i) => `user${i}@${DOMAIN}`)
const big = `big@${DOMAIN}`
const expectedMg = new Map<string, number>() // acknowledged by mailgrid per user over the whole run
let lossFree = true
let nextId = 0
/** The systems warmed already (warmUp): 'peer', or a node's pid. */
const warmed = new Set<string>()
let outbound: OutboundResult | null = null

log(`machine: ${machine.cores} × ${machine.cpuModel}, ${machine.ramGiB} GiB, ${machine.disk}, fsync ${machine.fsyncMs.toFixed(2)} ms, load ${machine.loadAvg1m.toFixed(2)}`)

// The peer: installed if missing, started privately; its absence is reported, not fatal.
let peer: Peer | null = null
let peerWhy = 'not run (BENCH_PEER=0)'
if (P.peer) {
  const why = await ensurePeerInstalled(log)
  if (why !== null) {
    peerWhy = `not measured: ${why}`
  } else {
    try {
      peer = await startPeer({ domain: DOMAIN, users: [...users, big], password: PASSWORD })
      peerWhy = `Postfix ${peer.versions.postfix} (smtpd, LMTP delivery) + Dovecot ${peer.versions.dovecot} (LMTP, IMAP, POP3), ` +
        'Maildir, virtual users, their defaults otherwise (Postfix fsyncs queue files, Dovecot mail_fsync = optimized), private instances on 127.0.0.1'
    } catch (err) {
      peerWhy = `not measured: ${msg(err)}`
    }
  }
  log(`peer: ${peerWhy}`)
}
const stopAll: Array<() => Promise<void>> = []
const cleanup = async (): Promise<void> => { for (const s of stopAll.splice(0).reverse()) await s().catch(() => {}) }
process.once('SIGINT', () => { cleanup().finally(() => process.exit(130)) })
if (peer !== null) stopAll.push(peer.stop)

const dirA = await mkdtemp(join(tmpdir(), 'mailgrid-bench-'))
stopAll.push(async () => { await rm(dirA, { recursive: true, force: true }) })
let nodeA: MailgridNode | null = null
try {
  // the node as it ships: `npm start` (one-node grid, log level info), its users hashed at the production cost
  await seedUsers(dirA, DOMAIN, [...users, big], PASSWORD, SCRYPT_LOG_N)
  // The big mailbox filled before the node starts (BENCH_BIG_FILL=direct): the same messages for both systems,
  // through mailgrid's store and into Dovecot's Maildir, with the trace lines a final delivery adds
  const bigPhase = P.bigMessages > 0 && ['select', 'fetch', 'pop3', 'sort'].some(phase)
  const bigFirstId = nextId
  const bigMessage = (i: number): Buffer => Buffer.concat([
    Buffer.from(`Return-Path: <load@bench.test>\r\nDelivered-To: ${big}\r\nReceived: from load.test by bench.test with ESMTP id bench${bigFirstId + i}; ${new Date().toUTCString()}\r\n`),
    makeMessage(bigFirstId + i, big, P.bigSize)])
  if (bigPhase && P.bigFill === 'direct') {
    nextId += P.bigMessages
    const seconds = await seedMessages(dirA, big, P.bigMessages, bigMessage)
    expectedMg.set(big, P.bigMessages)
    raw.bigFillMailgridDirectSeconds = seconds
    log(`mailgrid big mailbox: ${P.bigMessages} messages delivered through its store before the node starts in ${seconds.toFixed(1)} s (fill, not measured)`)
    notes.push(`mailgrid: the ${P.bigMessages.toLocaleString('en-US')}-message mailbox was delivered through the store before the node started ` +
      `(${seconds.toFixed(0)} s), not sent over SMTP (BENCH_BIG_FILL=smtp does that)`)
  }
  const dns = await benchDns()
  if ('why' in dns) notes.push(dns.why)
  else stopAll.push(dns.stop)
  nodeA = await startShipped(dirA, { sync: P.sync, logFile: `${dirA}.log`, ...('server' in dns ? { dnsServer: dns.server } : {}) })
  log(`mailgrid: node as \`npm start\` runs it (appliance/cli.ts start), pid ${nodeA.pid}, log ${dirA}.log`)
  const mgNode = nodeA
  stopAll.push(async () => { await mgNode.stop() })
  const mgPorts: SystemPorts = { smtp: nodeA.ports.smtp, imap: nodeA.ports.imap, pop3: nodeA.ports.pop3 }
  const peerPorts: SystemPorts | null = peer === null ? null : peer.ports

  if (peer !== null) {
    await sleep(2000)
    raw.peerIdlePssBytes = await sumPss(await peer.pids())
  }

  if (P.ingestWarmup > 0 && (['ingest', 'busy', 'standalone'].some(phase))) {
    notes.push(`ingest figures are warm: each system (and each node a phase starts) took ${P.ingestWarmup.toLocaleString('en-US')} messages of ` +
      `${kb(P.sizes[0] ?? 10_240)} over SMTP before its first measured ingest, not counted (BENCH_INGEST_WARMUP; 0 measures from the start)`)
  }
  // SMTP ingest, one size at a time, mailgrid then the peer (swapped on odd rounds).
  for (const size of phase('ingest') ? P.sizes : []) {
    const runs: Record<string, IngestResult[]> = { mailgrid: [], peer: [] }
    for (let round = 0; round < P.rounds; round++) {
      const order: Array<'mailgrid' | 'peer'> = round % 2 === 0 ? ['mailgrid', 'peer'] : ['peer', 'mailgrid']
      for (const who of order) {
        const ports = who === 'mailgrid' ? mgPorts : peerPorts
        if (ports === null) continue
        await warmUp(who, ports)
        await quiet(`${who} ingest ${kb(size)}`)
        const r = await ingestOne(who, ports, { sizeBytes: size, messages: P.messages, users })
        runs[who].push(r)
      }
    }
    raw[`ingest_${size}`] = strip(runs)
    const g = `SMTP ingest ${kb(size)}, ${P.connections} conn, ${P.messages.toLocaleString('en-US')} msgs`
    ingestRows(g, runs)
  }

  // The big mailbox: one user. BENCH_BIG_FILL=smtp fills both over SMTP (a single-mailbox ingest figure on the
  // way; 50,000 messages took Postfix and LMTP 5-20 minutes); by default (direct) mailgrid's was filled above and the
  // peer gets the same messages written straight into its Maildir, indexed by doveadm (peer.ts fillMaildir).
  const fill: Record<string, IngestResult[]> = { mailgrid: [], peer: [] }
  for (const who of ['mailgrid', 'peer'] as const) {
    const ports = who === 'mailgrid' ? mgPorts : peerPorts
    if (ports === null || !bigPhase || who === 'mailgrid' && P.bigFill === 'direct') continue
    if (who === 'peer' && peer !== null && P.bigFill === 'direct') {
      const f = await peer.fillMaildir(big, P.bigMessages, bigMessage)
      raw.bigFillPeerMaildir = f
      log(`peer     big mailbox: ${P.bigMessages} messages written into its Maildir in ${f.writeSeconds.toFixed(1)} s, doveadm index ${f.indexSeconds.toFixed(1)} s (fill, not measured)`)
      notes.push(`peer: the ${P.bigMessages.toLocaleString('en-US')}-message mailbox was written into Dovecot's Maildir and indexed with doveadm index ` +
        `(${f.writeSeconds.toFixed(0)} s + ${f.indexSeconds.toFixed(0)} s), not sent over SMTP (BENCH_BIG_FILL=smtp does that)`)
      continue
    }
    fill[who].push(await ingestOne(who, ports, { sizeBytes: P.bigSize, messages: P.bigMessages, users: [big] }))
  }
  raw.bigFill = strip(fill)
  if (fill.mailgrid.length + fill.peer.length > 0) ingestRows(`SMTP into one mailbox ${kb(P.bigSize)}, ${P.bigMessages.toLocaleString('en-US')} msgs`, fill, true,
    raw.bigFillPeerMaildir === undefined ? 'peer not running' : 'filled directly (BENCH_BIG_FILL)')

  const bigLabel = `${P.bigMessages.toLocaleString('en-US')} × ${kb(P.bigSize)}`
  if (phase('select')) await pair('select', async ports => await selectTime(ports.imap, big, PASSWORD, SELECT_REPEATS), (mg, pe) => {
    rows.push(row('IMAP', `SELECT of a ${bigLabel} mailbox, first`, 'ms', 'lower', mg, pe, v => v.firstMs))
    rows.push(row('IMAP', `SELECT of the same, median of ${SELECT_REPEATS}`, 'ms', 'lower', mg, pe, v => v.medianMs))
  })
  // The read-only phases (full FETCH, POP3 RETR) as SORT and THREAD below: the first run of each system alone (its
  // code and caches cold: mailgrid's JIT compiles the phase's code paths during it), then BENCH_READ_ROUNDS runs in
  // turns, their median reported as the warm figure. A node serves these commands all day: the warm figure is what
  // its users see; the first is reported too.
  const readRounds = P.readRounds
  const medianOf = readRounds > 1 ? `, median of the next ${readRounds}` : ', the next run'
  if (phase('fetch')) {
    const fetchLabel = `UID FETCH 1:* (FLAGS BODY.PEEK[]) of ${bigLabel}`
    await pair('fullFetchFirst', async (ports, cpu) => await fullFetch(ports.imap, big, PASSWORD, cpu), (mg, pe) => {
      rows.push(row('IMAP', `${fetchLabel}, first`, 'msg/s', 'higher', mg, pe, v => v.messages / v.seconds))
    })
    await pair('fullFetch', async (ports, cpu) => await fullFetch(ports.imap, big, PASSWORD, cpu), (mg, pe) => {
      rows.push(row('IMAP', `${fetchLabel}${medianOf}`, 'msg/s', 'higher', mg, pe, v => v.messages / v.seconds))
      rows.push(row('IMAP', 'same, throughput', 'MB/s', 'higher', mg, pe, v => v.bytes / 1e6 / v.seconds))
      rows.push(row('IMAP', COMMAND_CPU_LABEL, 'µs', 'lower', mg, pe, commandCpuPerMessage))
    }, readRounds, v => v.messages / v.seconds)
  }
  if (phase('mixed')) await pair('mixed', async ports => await mixed(ports.imap, users, PASSWORD, { clients: P.mixedClients, opsPerClient: P.mixedOps, deadlineMs: MIXED_DEADLINE_MS, ...(MIXED_ONLY !== undefined ? { only: MIXED_ONLY } : {}) }), (mg, pe) => {
    rows.push(row('IMAP', `${MIXED_ONLY === undefined ? 'mixed SEARCH / STORE / header FETCH' : `the mixed load's ${MIXED_ONLY.toUpperCase()} commands alone`}, ${P.mixedClients} sessions`, 'ops/s', 'higher', mg, pe, v => v.opsPerSec))
  })
  if (phase('pop3')) {
    const retrLabel = `RETR of a whole ${bigLabel} maildrop (pipelined)`
    await pair('pop3First', async (ports, cpu) => await pop3RetrAll(ports.pop3, big, PASSWORD, cpu), (mg, pe) => {
      rows.push(row('POP3', `${retrLabel}, first`, 'msg/s', 'higher', mg, pe, v => v.messages / v.seconds))
    })
    await pair('pop3', async (ports, cpu) => await pop3RetrAll(ports.pop3, big, PASSWORD, cpu), (mg, pe) => {
      rows.push(row('POP3', `${retrLabel}${medianOf}`, 'msg/s', 'higher', mg, pe, v => v.messages / v.seconds))
      rows.push(row('POP3', 'same, throughput', 'MB/s', 'higher', mg, pe, v => v.bytes / 1e6 / v.seconds))
      rows.push(row('POP3', COMMAND_CPU_LABEL, 'µs', 'lower', mg, pe, commandCpuPerMessage))
    }, readRounds, v => v.messages / v.seconds)
  }
  // SORT and THREAD of the big mailbox (issue 12): the first command of each builds what the server keeps
  if (phase('sort')) {
    // then, per command, BENCH_SORT_NEW_MAIL messages over SMTP first: the first command after new mail
    const addMail = (ports: SystemPorts) => async (): Promise<number> => {
      const who = ports.smtp === mgPorts.smtp ? 'mailgrid' : 'peer'
      const r = await runSmtpLoad({ port: ports.smtp, connections: 4, messages: P.sortNewMail, sizeBytes: P.bigSize, firstId: nextId, recipient: () => big, deadlineMs: INGEST_DEADLINE_MS })
      nextId += P.sortNewMail
      if (who === 'mailgrid') expectedMg.set(big, (expectedMg.get(big) ?? 0) + r.acked)
      return r.acked
    }
    await pair('sortThread', async ports => await sortThread(ports.imap, big, PASSWORD, P.sortRepeats, P.sortNewMail > 0 ? addMail(ports) : undefined), (mg, pe) => {
      for (const name of Object.keys(SORT_THREAD_COMMANDS)) {
        rows.push(row('IMAP', `UID ${name} UTF-8 ALL of ${bigLabel}, first`, 'ms', 'lower', mg, pe, v => v.firstMs[name]))
        rows.push(row('IMAP', `UID ${name} UTF-8 ALL, median of the next ${P.sortRepeats - 1}`, 'ms', 'lower', mg, pe, v => v.medianMs[name]))
        if (P.sortNewMail > 0) rows.push(row('IMAP', `UID ${name} UTF-8 ALL, first after ${P.sortNewMail} new messages`, 'ms', 'lower', mg, pe, v => v.afterNewMailMs[name]))
      }
    })
  }
  if (phase('busy')) await busyPhase(mgPorts, peerPorts, 'server' in dns ? dns.server : undefined)
  raw.mailgridCpuSecondsTotal = await cpuSeconds(nodeA.pid)
  raw.mailgridRssAfterLoadBytes = await rssBytes(nodeA.pid)

  // Nothing acknowledged is lost: the store of the stopped node holds at least every acknowledged message.
  await nodeA.stop()
  nodeA = null
  const stored = await storedCounts(dirA, [...users, big])
  let missing = 0
  for (const [u, n] of expectedMg) missing += Math.max(0, n - (stored.get(u) ?? 0))
  raw.mailgridStoreCheck = { acknowledged: sum(expectedMg.values()), stored: sum(stored.values()), missing }
  if (missing > 0) { lossFree = false; notes.push(`mailgrid: ${missing} acknowledged messages missing from the store after stop`) }
  log(`mailgrid store check: ${sum(stored.values())} stored, ${sum(expectedMg.values())} acknowledged, ${missing} missing`)
} catch (err) {
  notes.push(`the run stopped early: ${msg(err)}`)
  lossFree = false
  log(`ERROR ${msg(err)}`)
} finally {
  // everything started for the main phases, the private dnsmasq included (a child left running kept the bench alive)
  await cleanup()
  await rm(`${dirA}.log`, { force: true })
}

// The standalone node (the mail node alone: no grid, logging off), an extra row beside the shipped node's figure
if (phase('standalone')) await standalonePhase()

// Outbound (issue 10): its own receiving Postfix, dnsmasq, mailgrid node as `npm start` runs it and relaying
// Postfix; the two systems take turns like the phases above.
if (phase('outbound')) {
  outbound = await outboundPhase(P.outbound, log)
  rows.push(...outbound.rows)
  notes.push(...outbound.notes)
  raw.outbound = outbound.runs
  if (outbound.mailgrid !== null && outbound.mailgrid.missing > 0) lossFree = false
}

// Memory: a fresh node with many users, idle, then with many IDLE sessions (mailgrid only).
if (phase('memory')) await memoryPhase()

const durationSeconds = (performance.now() - t0) / 1000
raw.loadAvgAtEnd = loadavg()
notes.push(`load average (1, 5, 15 min) at the end: ${loadavg().map(x => x.toFixed(2)).join(', ')}`)
const targets = checkTargets()
const params: Record<string, string | number | boolean> = {
  BENCH_MESSAGES: P.messages, BENCH_CONNECTIONS: P.connections, BENCH_BUSY_CONNECTIONS: P.busyConnections, BENCH_USERS: P.users, BENCH_SIZES: P.sizes.join(','),
  BENCH_ROUNDS: P.rounds, BENCH_INGEST_WARMUP: P.ingestWarmup, BENCH_READ_ROUNDS: P.readRounds, BENCH_BIG_MESSAGES: P.bigMessages, BENCH_BIG_SIZE: P.bigSize, BENCH_MIXED_CLIENTS: P.mixedClients,
  BENCH_MIXED_OPS: P.mixedOps, BENCH_SORT_REPEATS: P.sortRepeats, BENCH_BIG_FILL: P.bigFill, BENCH_SORT_NEW_MAIL: P.sortNewMail, BENCH_IDLE_USERS: P.idleUsers, BENCH_IDLE_SESSIONS: P.idleSessions, BENCH_IDLE_SETTLE_MS: P.idleSettleMs, BENCH_SYNC: P.sync,
  BENCH_OUTBOUND_MESSAGES: P.outbound.messages, BENCH_OUTBOUND_SIZE: P.outbound.sizeBytes, BENCH_OUTBOUND_CONNECTIONS: P.outbound.connections,
  BENCH_OUTBOUND_ROUNDS: P.outbound.rounds, BENCH_OUTBOUND_WARMUP: P.outbound.warmup,
  'SMTP client': 'test/helpers/smtp-load.ts: persistent connections, MAIL+RCPT+DATA pipelined (RFC 2920), one recipient per message',
  'visibility check': 'STATUS INBOX (MESSAGES) per recipient over IMAP every 50 ms after the last 250, until every acknowledged message is counted',
  'mailgrid node': 'as `npm start` runs it (appliance/cli.ts start, a child process: one-node grid, log level info to a file, fsync on, users at the production scrypt cost 2^15), ' +
    'connection limits raised to 20,000 and ports chosen by the bench through the environment; the "standalone node" rows and the memory phase use test/bench/node-proc.ts ' +
    '(the mail node alone: no grid, logging off, scrypt cost 2^10, so 5,000 IDLE logins stay short)',
  'server CPU': 'utime + stime from /proc from the first SMTP connection to the last 250: mailgrid\'s node process; the peer\'s every process under the Postfix and Dovecot masters, with the time of the workers they reaped',
  'outbound': 'test/bench/outbound.ts: mailgrid as `npm start` runs it (appliance/cli.ts start, one-node grid, log level info) and a private Postfix relaying, ' +
    'both to one private receiving Postfix on 127.0.0.5 (MX of remote.test from a private dnsmasq for mailgrid, relayhost for Postfix); ' +
    'submission with AUTH PLAIN to mailgrid, from mynetworks to Postfix, connections logged in before the clock starts; arrivals counted by Message-ID in the receiver\'s Maildir, timed by file mtime',
  'file descriptors': `soft limit ${fileLimit()}`
}
const report = { machine, params, peer: peerWhy, rows, targets, notes, durationSeconds, lossFree, analysisFile: join(REPO, 'test', 'bench', 'ANALYSIS.md') }
writeBenchmarks(renderMarkdown(report))
writeFileSync(join(OUT, 'bench-results.json'), JSON.stringify({ machine, params, peer: peerWhy, rows, targets, notes, durationSeconds, lossFree, raw }, null, 2) + '\n')
console.log('')
for (const r of rows) console.log(`${r.group} | ${r.label}: mailgrid ${fmt(r.mailgrid)} ${r.unit}, peer ${fmt(r.peer)}`)
for (const n of notes) console.log(`note: ${n}`)
log(`wrote ${join(OUT, 'BENCHMARKS.md')} and bench-results.json in ${Math.round(durationSeconds)} s`)
if (!lossFree) {
  console.error('bench: acknowledged messages are missing, or the run did not complete (see notes)')
  process.exit(1)
}

// ---------------------------------------------------------------------------------------------------------

/** The CPU seconds so far of a system's processes: the mailgrid node, or every process under the peer's masters. */
function systemCpu (who: 'mailgrid' | 'peer', node: MailgridNode | null = nodeA): (() => Promise<number>) | undefined {
  if (who === 'mailgrid') return node === null ? undefined : async () => await cpuSeconds(node.pid)
  const p = peer
  return p === null ? undefined : async () => await treeCpuSeconds(await p.pids())
}

/**
 * BENCH_INGEST_WARMUP messages of the first size into a system before its first measured ingest (once per system),
 * through the same load generator and accounting as a measured run (every acknowledged message must be visible,
 * and the node's are counted in its store at the end), its figures not kept.
 */
async function warmUp (who: 'mailgrid' | 'peer', ports: SystemPorts, node: MailgridNode | null = nodeA): Promise<void> {
  const key = who === 'peer' ? 'peer' : String(node?.pid)
  if (P.ingestWarmup === 0 || warmed.has(key)) return
  warmed.add(key)
  const r = await ingestOne(who, ports, { sizeBytes: P.sizes[0] ?? 10_240, messages: P.ingestWarmup, users, label: 'warm-up' }, node)
  if (r.acked !== P.ingestWarmup) throw new Error(`${who}: warm-up acknowledged ${r.acked} of ${P.ingestWarmup} messages`)
}

async function ingestOne (who: 'mailgrid' | 'peer', ports: SystemPorts, o: { sizeBytes: number, messages: number, users: string[], connections?: number, label?: string }, node: MailgridNode | null = nodeA): Promise<IngestResult> {
  const cpu0 = who === 'mailgrid' && node !== null ? await cpuSeconds(node.pid) : 0
  const { label: _label, ...load } = o
  const r = await ingest(ports, {
    ...load, connections: o.connections ?? P.connections, password: PASSWORD, firstId: nextId,
    deadlineMs: INGEST_DEADLINE_MS, visibleDeadlineMs: VISIBLE_DEADLINE_MS, cpu: systemCpu(who, node)
  })
  nextId += o.messages
  // the load's own CPU when measured (from the first connection: the watcher's logins before it are left out)
  const cpu = who !== 'mailgrid' || node === null ? null : 100 * (r.cpuSeconds ?? (await cpuSeconds(node.pid) - cpu0)) / r.acceptSeconds
  // the main node's messages, checked in its store at the end (another node's run is checked over IMAP only)
  if (who === 'mailgrid' && node === nodeA) for (const [u, n] of r.expected) expectedMg.set(u, (expectedMg.get(u) ?? 0) + n)
  if (r.missing !== null && r.missing > 0) { lossFree = false; notes.push(`${who}: ${r.visibleNote ?? ''}`) }
  if (r.visibleNote !== null && (r.missing ?? 0) === 0) notes.push(`${who}, ${kb(o.sizeBytes)} ingest: ${r.visibleNote}`)
  if (r.failed + r.unknown > 0) notes.push(`${who}, ${kb(o.sizeBytes)} ingest: ${r.failed} refused, ${r.unknown} without an answer`)
  ;(r as IngestResult & { serverCpuPct?: number | null }).serverCpuPct = cpu
  log(`${who.padEnd(8)} ${o.label === undefined ? '' : `${o.label} `}ingest ${kb(o.sizeBytes)} → ${o.users.length} users: ${r.acked}/${o.messages} acked, ${r.msgPerSec.toFixed(0)} msg/s, ` +
    `${r.mbPerSec.toFixed(1)} MB/s, p50 ${r.p50Ms.toFixed(1)} ms, p99 ${r.p99Ms.toFixed(1)} ms, all visible at ${r.visibleSeconds?.toFixed(1) ?? 'n/a'} s` +
    (cpu !== null ? `, server CPU ${cpu.toFixed(0)} %` : '') + (r.cpuMsPerMsg !== null ? `, ${r.cpuMsPerMsg.toFixed(3)} ms CPU per message` : ''))
  return r
}

function ingestRows (g: string, runs: Record<string, IngestResult[]>, short = false, peerNa = 'peer not running'): void {
  const fig = (who: string, f: (r: IngestResult) => number | null, why: (r: IngestResult) => string): Figure => {
    const list = runs[who]
    if (list.length === 0) return { na: who === 'peer' ? peerNa : 'not run' }
    const vals = list.map(f)
    if (vals.some(v => v === null)) return { na: why(list[vals.findIndex(v => v === null)]) }
    return median(vals as number[])
  }
  const r = (label: string, unit: string, better: 'higher' | 'lower', f: (x: IngestResult) => number | null): void => {
    const why = (x: IngestResult): string => x.visibleNote ?? 'no figure'
    rows.push({ group: g, label, unit, better, mailgrid: fig('mailgrid', f, why), peer: fig('peer', f, why) })
  }
  r('accepted', 'msg/s', 'higher', x => x.msgPerSec)
  if (!short) r('accepted', 'MB/s', 'higher', x => x.mbPerSec)
  if (!short) r('DATA to 250, p50', 'ms', 'lower', x => x.p50Ms)
  if (!short) r('DATA to 250, p99', 'ms', 'lower', x => x.p99Ms)
  if (!short) r('server CPU per acknowledged message (mailgrid: the node; peer: all its processes)', 'ms', 'lower', x => x.cpuMsPerMsg)
  if (!short) r('machine busy during the run (both cores, every process, the load generator too; /proc/stat)', '%', 'higher', x => x.machineBusy === null ? null : 100 * x.machineBusy)
  if (!short) r('the load generator\'s own share of that (this process\' CPU over the run, of both cores)', '%', 'lower', x => 100 * x.loadCpuSeconds / x.acceptSeconds / cpus().length)
  r('all visible over IMAP, from first connection', 's', 'lower', x => x.visibleSeconds)
  r('end to end (acked / time until all visible)', 'msg/s', 'higher', x => x.visibleMsgPerSec)
}

/** Runs one measurement on mailgrid, then on the peer; a failure becomes "n/a (reason)" for that system. */
/**
 * One measurement of both systems. With `rounds` > 1 (read-only phases), the systems take turns in the order
 * A B B A A B ..., and the run with the median of `rank` stands for each: one run of each, back to back, is
 * at the mercy of whatever else the machine did in those seconds (the peer's own full FETCH moved by 2 × between
 * whole bench runs). Every run is kept in bench-results.json.
 */
/** Waits for the machine to be quiet before a measured run (phases.ts settle); says so when it waited or gave up. */
async function quiet (what: string): Promise<void> {
  const s = await settle()
  if (s.seconds > 1.5) log(`${what}: waited ${s.seconds.toFixed(0)} s for the machine to be quiet (last second ${(100 * s.busy).toFixed(0)} % busy)`)
}

async function pair<T> (name: string, fn: (ports: SystemPorts, cpu: (() => Promise<number>) | undefined) => Promise<T>, emit: (mg: T | { na: string }, pe: T | { na: string }) => void, rounds = 1, rank?: (v: T) => number): Promise<void> {
  const runs: Record<string, Array<T | { na: string }>> = { mailgrid: [], peer: [] }
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? ['mailgrid', 'peer'] as const : ['peer', 'mailgrid'] as const
    for (const who of order) {
      const ports = who === 'mailgrid' ? (nodeA === null ? null : { smtp: nodeA.ports.smtp, imap: nodeA.ports.imap, pop3: nodeA.ports.pop3 }) : (peer?.ports ?? null)
      if (ports === null) { runs[who].push({ na: who === 'peer' ? 'peer not running' : 'node not running' }); continue }
      try {
        await quiet(`${who} ${name}`)
        // the server's CPU over the phase (the node; every process under the peer's masters), beside its rate
        const cpu = systemCpu(who)
        const cpu0 = cpu === undefined ? null : await cpu()
        const v = await fn(ports, cpu)
        if (cpu !== undefined && cpu0 !== null && typeof v === 'object' && v !== null) (v as Record<string, unknown>).serverCpuSeconds = await cpu() - cpu0
        runs[who].push(v)
        log(`${who.padEnd(8)} ${name}${rounds > 1 ? ` (${round + 1}/${rounds})` : ''}: ${JSON.stringify(v)}`)
      } catch (err) {
        runs[who].push({ na: msg(err) })
        notes.push(`${who} ${name}: ${msg(err)}`)
        log(`${who.padEnd(8)} ${name}: FAILED ${msg(err)}`)
      }
    }
  }
  const pick = (xs: Array<T | { na: string }>): T | { na: string } => {
    const ok = xs.filter((x): x is T => !(typeof x === 'object' && x !== null && 'na' in x))
    if (ok.length === 0 || rank === undefined) return ok[0] ?? xs[0]
    const sorted = [...ok].sort((a, b) => rank(a) - rank(b))
    return sorted[Math.floor((sorted.length - 1) / 2)]
  }
  const res = { mailgrid: pick(runs.mailgrid), peer: pick(runs.peer) }
  raw[name] = rounds > 1 ? { ...res, runs } : res
  emit(res.mailgrid, res.peer)
}

function row<T> (group: string, label: string, unit: string, better: 'higher' | 'lower', mg: T | { na: string }, pe: T | { na: string }, f: (v: T) => number | { na: string }): Row {
  const fig = (v: T | { na: string }): Figure => (typeof v === 'object' && v !== null && 'na' in v) ? v : f(v)
  return { group, label, unit, better, mailgrid: fig(mg), peer: fig(pe) }
}

function commandCpuPerMessage (v: { messages: number, commandCpuSeconds?: number }): number | { na: string } {
  return v.commandCpuSeconds === undefined || v.messages === 0 ? { na: 'no CPU figure' } : 1e6 * v.commandCpuSeconds / v.messages
}

/**
 * The first ingest size once more, into the standalone node (test/bench/node-proc.ts: the mail node alone, no
 * grid, logging off, scrypt 2^10), as a labelled extra row beside the shipped node's; the peer's figure is the
 * one of the same size measured above.
 */
async function standalonePhase (): Promise<void> {
  const size = P.sizes[0]
  if (size === undefined || P.messages === 0) return
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-bench-standalone-'))
  let node: MailgridNode | null = null
  const g = `SMTP ingest ${kb(size)}, ${P.connections} conn, ${P.messages.toLocaleString('en-US')} msgs`
  const peerRow = rows.find(x => x.group === g && x.label === 'accepted' && x.unit === 'msg/s')
  const peerCpu = rows.find(x => x.group === g && x.label.startsWith('server CPU'))
  let accepted: Figure = { na: 'not run' }
  let cpuMs: Figure = { na: 'not run' }
  try {
    await seedUsers(dir, DOMAIN, users, PASSWORD)
    node = await startMailgrid(dir, { sync: P.sync })
    const ports = { smtp: node.ports.smtp, imap: node.ports.imap, pop3: node.ports.pop3 }
    await warmUp('mailgrid', ports, node)
    await quiet(`mailgrid (standalone) ingest ${kb(size)}`)
    const r = await ingestOne('mailgrid', ports, { sizeBytes: size, messages: P.messages, users }, node)
    raw.standaloneIngest = { ...r, expected: undefined }
    accepted = r.msgPerSec
    cpuMs = r.cpuMsPerMsg ?? { na: 'no CPU figure' }
  } catch (err) {
    accepted = cpuMs = { na: msg(err) }
    notes.push(`standalone node: ${msg(err)}`)
  } finally {
    await node?.stop()
    await rm(dir, { recursive: true, force: true })
  }
  rows.push({ group: `${g}, standalone node (no grid, logging off: not what ships)`, label: 'accepted', unit: 'msg/s', better: 'higher', mailgrid: accepted, peer: peerRow?.peer ?? { na: 'peer not measured' } })
  rows.push({ group: `${g}, standalone node (no grid, logging off: not what ships)`, label: 'server CPU per acknowledged message', unit: 'ms', better: 'lower', mailgrid: cpuMs, peer: peerCpu?.peer ?? { na: 'peer not measured' } })
}

/**
 * A busy MX: the first ingest size again with BENCH_BUSY_CONNECTIONS (200) connections at once, into the shipped
 * node, into a second shipped node started with `workers: -1` (one SMTP worker process per core but one), and into
 * the peer, in that order. With 50 connections a worker raised no throughput on this machine (the sessions' 250s wait
 * for the primary's group commit, and the two processes took turns); these rows show what it does when more clients
 * send at once. The second node's messages are checked over IMAP (the ingest's visibility count), not in the store.
 */
async function busyPhase (mgPorts: SystemPorts, peerPorts: SystemPorts | null, dnsServer: string | undefined): Promise<void> {
  const size = P.sizes[0]
  if (size === undefined || P.messages === 0 || P.busyConnections === 0) return
  const connections = P.busyConnections
  const o = { sizeBytes: size, messages: P.messages, users, connections }
  const g = `SMTP ingest ${kb(size)}, ${connections} conn, ${P.messages.toLocaleString('en-US')} msgs (a busy MX)`
  const workers = Math.max(1, cpus().length - 1)
  const runs: { shipped: IngestResult | { na: string }, workers: IngestResult | { na: string }, peer: IngestResult | { na: string } } = {
    shipped: { na: 'not run' }, workers: { na: 'not run' }, peer: { na: peerPorts === null ? 'peer not running' : 'not run' }
  }
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-bench-workers-'))
  let node: MailgridNode | null = null
  try {
    await warmUp('mailgrid', mgPorts)
    await quiet(`mailgrid ingest ${kb(size)}, ${connections} conn`)
    runs.shipped = await ingestOne('mailgrid', mgPorts, o)
    await seedUsers(dir, DOMAIN, users, PASSWORD, SCRYPT_LOG_N)
    node = await startShipped(dir, { sync: P.sync, logFile: `${dir}.log`, env: { [envName('workers')]: '-1' }, ...(dnsServer === undefined ? {} : { dnsServer }) })
    log(`mailgrid: a second node as \`npm start\` runs it with workers -1 (${workers} SMTP worker process${workers === 1 ? '' : 'es'}), pid ${node.pid}`)
    const workerPorts = { smtp: node.ports.smtp, imap: node.ports.imap, pop3: node.ports.pop3 }
    await warmUp('mailgrid', workerPorts, node)
    await quiet(`mailgrid (workers -1) ingest ${kb(size)}, ${connections} conn`)
    runs.workers = await ingestOne('mailgrid', workerPorts, o, node)
    if (peerPorts !== null) {
      await warmUp('peer', peerPorts)
      await quiet(`peer ingest ${kb(size)}, ${connections} conn`)
      runs.peer = await ingestOne('peer', peerPorts, o)
    }
  } catch (err) {
    notes.push(`busy MX phase: ${msg(err)}`)
  } finally {
    await node?.stop()
    await rm(dir, { recursive: true, force: true })
    await rm(`${dir}.log`, { force: true })
  }
  const plain = (r: IngestResult | { na: string }): unknown => { if ('na' in r) return r; const { expected: _e, ...rest } = r; return rest }
  raw.busyIngest = { connections, workers, shipped: plain(runs.shipped), workersNode: plain(runs.workers), peer: plain(runs.peer) }
  const fig = (r: IngestResult | { na: string }, f: (x: IngestResult) => number | null): Figure => 'na' in r ? r : f(r) ?? { na: 'no figure' }
  const three = (group: string, mg: IngestResult | { na: string }): void => {
    rows.push({ group, label: 'accepted', unit: 'msg/s', better: 'higher', mailgrid: fig(mg, x => x.msgPerSec), peer: fig(runs.peer, x => x.msgPerSec) })
    rows.push({ group, label: 'server CPU per acknowledged message (mailgrid: the node, its workers included; peer: all its processes)', unit: 'ms', better: 'lower', mailgrid: fig(mg, x => x.cpuMsPerMsg), peer: fig(runs.peer, x => x.cpuMsPerMsg) })
    rows.push({ group, label: 'machine busy during the run (both cores, every process, the load generator too; /proc/stat)', unit: '%', better: 'higher', mailgrid: fig(mg, x => x.machineBusy === null ? null : 100 * x.machineBusy), peer: fig(runs.peer, x => x.machineBusy === null ? null : 100 * x.machineBusy) })
  }
  three(g, runs.shipped)
  three(`${g}, workers -1 (${workers} SMTP worker process${workers === 1 ? '' : 'es'}; not the default)`, runs.workers)
}

async function memoryPhase (): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-bench-mem-'))
  let node: MailgridNode | null = null
  const idleUsers = Array.from({ length: P.idleUsers }, (_, i) => `idle${i}@${DOMAIN}`)
  let idle: Figure = { na: 'not run' }
  let sessions: Figure = { na: 'not run' }
  try {
    log(`memory: creating ${P.idleUsers} users through the store`)
    await seedUsers(dir, DOMAIN, idleUsers, PASSWORD)
    node = await startMailgrid(dir, { sync: P.sync })
    await sleep(3000)
    const pid = node.pid
    const atStart = await rssBytes(pid)
    raw.idleRssAtStartBytes = atStart
    await sleep(Math.max(0, P.idleSettleMs - 3000))
    idle = await rssBytes(pid) / 2 ** 20
    log(`memory: idle node with ${P.idleUsers} users: RSS ${fmt(atStart / 2 ** 20)} MiB 3 s after the start, ${fmt(idle)} MiB after ${P.idleSettleMs / 1000} s`)
    const r = await idleSessions(node.ports.imap, idleUsers, PASSWORD, P.idleSessions, IDLE_DEADLINE_MS, async () => {
      raw.idleSessionsRssAtOnceBytes = await rssBytes(pid)
      await sleep(P.idleSettleMs)
      return await rssBytes(pid)
    })
    raw.idleSessions = r
    if (r.opened < P.idleSessions) {
      sessions = { na: `only ${r.opened} of ${P.idleSessions} sessions opened: ${r.failed ?? 'deadline'}` }
      notes.push(`mailgrid IDLE sessions: ${r.failed ?? 'deadline'}`)
    } else {
      sessions = r.bytes / 2 ** 20
    }
    log(`memory: ${r.opened} IDLE sessions opened in ${r.setupSeconds.toFixed(1)} s: RSS ${(Number(raw.idleSessionsRssAtOnceBytes) / 2 ** 20).toFixed(0)} MiB at once, ${(r.bytes / 2 ** 20).toFixed(0)} MiB after ${P.idleSettleMs / 1000} s${r.failed !== null ? `; failed: ${r.failed}` : ''}`)
  } catch (err) {
    notes.push(`memory phase: ${msg(err)}`)
    log(`memory: FAILED ${msg(err)}`)
  } finally {
    await node?.stop()
    await rm(dir, { recursive: true, force: true })
  }
  const peerIdle: Figure = typeof raw.peerIdlePssBytes === 'number'
    ? raw.peerIdlePssBytes / 2 ** 20
    : { na: 'peer not running' }
  rows.push({ group: 'Memory', label: `idle node with ${P.idleUsers.toLocaleString('en-US')} users (mailgrid: RSS of the standalone node ${P.idleSettleMs / 1000} s after its start; peer: PSS sum of all its processes, ${P.users + 1} users)`, unit: 'MiB', better: 'lower', mailgrid: idle, peer: peerIdle })
  rows.push({ group: 'Memory', label: `with ${P.idleSessions.toLocaleString('en-US')} concurrent IMAP IDLE sessions (RSS of the standalone node, ${P.idleSettleMs / 1000} s after the last one opened)`, unit: 'MiB', better: 'lower', mailgrid: sessions, peer: { na: 'not measured: Dovecot forks one imap process per session' } })
}

function checkTargets (): Target[] {
  const find = (group: string, label: string, unit: string): Row | undefined => rows.find(r => r.group.startsWith(group) && r.label.startsWith(label) && r.unit === unit)
  const num = (f: Figure | undefined): number | null => typeof f === 'number' ? f : null
  const out: Target[] = []
  const ing = find(`SMTP ingest ${kb(10240)}`, 'accepted', 'msg/s')
  const e2e = find(`SMTP ingest ${kb(10240)}`, 'end to end', 'msg/s')
  const mg = num(ing?.mailgrid)
  const pe = num(ing?.peer)
  out.push({ what: 'SMTP ingest 10 KB, fsync on', goal: '≥ 1,800 msg/s', reached: mg === null ? 'n/a' : `${fmt(mg)} msg/s`, met: mg === null ? null : mg >= 1800 })
  out.push({ what: 'SMTP ingest 10 KB vs peer', goal: '≥ 1.5 × peer', reached: mg === null || pe === null ? 'n/a' : `${(mg / pe).toFixed(2)} ×`, met: mg === null || pe === null ? null : mg >= 1.5 * pe })
  out.push({ what: 'SMTP ingest 10 KB, as shipped (issue 13)', goal: '≥ 3,000 msg/s', reached: mg === null ? 'n/a' : `${fmt(mg)} msg/s`, met: mg === null ? null : mg >= 3000 })
  out.push({ what: 'SMTP ingest 10 KB vs peer (issue 13)', goal: '≥ 3 × peer', reached: mg === null || pe === null ? 'n/a' : `${(mg / pe).toFixed(2)} ×`, met: mg === null || pe === null ? null : mg >= 3 * pe })
  const busy = num(find(`SMTP ingest ${kb(10240)}`, 'machine busy', '%')?.mailgrid)
  out.push({ what: 'machine busy during mailgrid\'s ingest (issue 13)', goal: '≥ 95 %', reached: busy === null ? 'n/a' : `${busy.toFixed(0)} %`, met: busy === null ? null : busy >= 95 })
  const mge = num(e2e?.mailgrid)
  out.push({ what: 'end to end equals accepted', goal: 'every accepted message visible at the last 250', reached: mge === null || mg === null ? 'n/a' : `${fmt(mge)} vs ${fmt(mg)} msg/s`, met: mge === null || mg === null ? null : mge >= 0.95 * mg })
  // the warm figure (the median after each system's first run), as for SORT and THREAD below
  for (const [g, l, what] of [['IMAP', 'UID FETCH', 'IMAP full fetch, warm'], ['POP3', 'RETR', 'POP3 RETR, warm']] as const) {
    const r = rows.find(x => x.group.startsWith(g) && x.label.startsWith(l) && !x.label.endsWith(', first') && x.unit === 'msg/s')
    const a = num(r?.mailgrid)
    const b = num(r?.peer)
    out.push({ what, goal: '≥ Dovecot', reached: a === null || b === null ? 'n/a' : `${(a / b).toFixed(2)} ×`, met: a === null || b === null ? null : a >= b })
  }
  for (const name of Object.keys(SORT_THREAD_COMMANDS)) {
    const r = find('IMAP', `UID ${name} UTF-8 ALL, median`, 'ms')
    const a = num(r?.mailgrid)
    const b = num(r?.peer)
    out.push({ what: `${name} of the big mailbox, warm (issue 12)`, goal: '≥ 1.0 × Dovecot (time ≤ Dovecot\'s)', reached: a === null || b === null ? 'n/a' : `${(b / a).toFixed(2)} ×`, met: a === null || b === null ? null : a <= b })
  }
  const mem = num(find('Memory', 'idle', 'MiB')?.mailgrid)
  out.push({ what: `RSS idle, ${P.idleUsers.toLocaleString('en-US')} users`, goal: '< 200 MB', reached: mem === null ? 'n/a' : `${fmt(mem * 2 ** 20 / 1e6)} MB`, met: mem === null ? null : mem * 2 ** 20 < 200e6 })
  const withIdle = num(find('Memory', `with ${P.idleSessions.toLocaleString('en-US')} concurrent`, 'MiB')?.mailgrid)
  out.push({ what: `${P.idleSessions.toLocaleString('en-US')} IDLE sessions above the idle node (issue 13)`, goal: '≤ 200 MiB', reached: mem === null || withIdle === null ? 'n/a' : `${fmt(withIdle - mem)} MiB`, met: mem === null || withIdle === null ? null : withIdle - mem <= 200 })
  const ob = outbound
  out.push({ what: 'outbound delivery vs Postfix relaying (issue 10)', goal: '≥ 1.0 × Postfix', reached: ob?.ratio == null ? 'n/a' : `${ob.ratio.toFixed(2)} ×`, met: ob?.ratio == null ? null : ob.ratio >= 1 })
  out.push({
    what: 'outbound: every message delivered once (issue 10)',
    goal: '0 duplicates, 0 missing',
    reached: ob?.mailgrid == null ? 'n/a' : `${ob.mailgrid.duplicates} duplicates, ${ob.mailgrid.missing} missing`,
    met: ob?.mailgrid == null ? null : ob.mailgrid.duplicates === 0 && ob.mailgrid.missing === 0
  })
  out.push({ what: 'no acknowledged message lost', goal: 'none', reached: lossFree ? 'none lost' : 'see notes', met: lossFree })
  return out
}

async function sumPss (pids: number[]): Promise<number> {
  let s = 0
  for (const p of pids) s += await pssBytes(p)
  return s
}

function strip (runs: Record<string, IngestResult[]>): unknown {
  return Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, v.map(({ expected: _e, ...rest }) => rest)]))
}

function kb (n: number): string { return `${Math.round(n / 1024)} KB` }
/** Writes BENCHMARKS.md, keeping the sections `npm run bench:grid` and `npm run bench:ladder` put there (between their markers). */
function writeBenchmarks (md: string): void {
  let old = ''
  try { old = readFileSync(join(OUT, 'BENCHMARKS.md'), 'utf8') } catch {}
  let out = md
  for (const name of ['grid', 'ladder', 'ladder-signed']) {
    const kept = new RegExp(`<!-- ${name}:start -->[\\s\\S]*<!-- ${name}:end -->\\n?`).exec(old)?.[0]
    if (kept !== undefined) out = `${out.trimEnd()}\n\n${kept}`
  }
  writeFileSync(join(OUT, 'BENCHMARKS.md'), out)
}

function median (a: number[]): number { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)] }
function sum (it: Iterable<number>): number { let s = 0; for (const n of it) s += n; return s }

function fileLimit (): number {
  const m = /Max open files\s+(\d+|unlimited)/.exec(readFileSync('/proc/self/limits', 'utf8'))
  return m === null || m[1] === 'unlimited' ? Infinity : Number(m[1])
}

/**
 * The IDLE test holds BENCH_IDLE_SESSIONS client sockets here and as many in the node. When the soft limit on
 * file descriptors is below that, the bench re-executes itself under `ulimit -n` raised (up to the hard limit),
 * and says so.
 */
function raiseFileLimit (): void {
  const want = P.idleSessions + FD_HEADROOM
  if (fileLimit() >= want || process.env.BENCH_ULIMIT_RAISED === '1') return
  const hard = Number(execFileSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim().replace('unlimited', String(want)))
  const to = Math.min(want, hard)
  console.log(`bench: raising the open-file limit from ${fileLimit()} to ${to} (ulimit -n) for ${P.idleSessions} IDLE sessions`)
  const r = spawnSync('sh', ['-c', `ulimit -n ${to} && exec "$0" "$@"`, process.execPath, ...process.execArgv, process.argv[1], ...process.argv.slice(2)], {
    stdio: 'inherit', env: { ...process.env, BENCH_ULIMIT_RAISED: '1' }
  })
  process.exit(r.status ?? 1)
}

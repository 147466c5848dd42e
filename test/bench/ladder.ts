// npm run bench:ladder — where the shipped node's CPU per message goes, one layer taken off at a time (issue 13:
// "where the time goes now"). Six SMTP systems, all up at once and fed the same load in turns (order reversed every
// round), each run measured as msg/s and as the system's CPU per acknowledged message (utime + stime from /proc,
// which does not move with what else the machine does as much as the rates do):
//
//   shipped   the node as `npm start` runs it (mailgrid.ts startShipped: one-node grid, log level info, fsync,
//             sender checks against a resolver that serves the sender domain's SPF and DMARC records)
//   warn      the same at log level warn (no line per message)
//   no-grid   the same with grid.enabled false as well
//   checks    the mail node with the sender checks (node-proc.ts with BENCH_NODE_CHECKS_DNS: no grid, no log, none
//             of the appliance's other services: admin, web, metrics, stats, Sieve)
//   node      the mail node alone (node-proc.ts: `npm run bench`'s standalone row)
//   null      a durable null MX (null-mx.ts: smtp-server, append, fdatasync before the 250; nothing else)
//
// and one variant, measured in the same turns but not a layer: `main`, the shipped node with `inbound.threads: 0`
// (the sender checks in the main thread instead of on one thread per core but one, node/mailauth/threads.ts), so
// every run shows whether the check thread, the default since session 22, pays on this machine (ANALYSIS.md).
//
// A layer's cost is its CPU per message minus the next layer's, so the costs add up to the shipped node's figure.
// Every acknowledged message is counted afterwards: over IMAP for the mail nodes (phases.ts ingest), by the null
// MX's own count when it stops. Prints the runs and a table, and a last line `RESULT {json}`; writes
// bench-ladder.json and the table into BENCHMARKS.md between the ladder markers (bench-ladder-signed.json and the
// ladder-signed markers for the signed load; in BENCH_OUT, default the repository; `npm run bench` and
// `npm run bench:grid` keep the sections). `--render` rewrites the section from the JSON without measuring.
// Parameters: BENCH_LADDER_MESSAGES [10000] per run, BENCH_LADDER_ROUNDS [2], BENCH_LADDER_WARMUP [3000] messages
// per system before the first round, BENCH_LADDER_SIZE [10240] bytes, BENCH_LADDER_CONNECTIONS [50],
// BENCH_LADDER_USERS [10]. BENCH_LADDER_SIGNED=1: every message DKIM-signed by the sender domain (RSA-2048,
// relaxed/relaxed, as most received mail is; the key record served by the same private resolver), signed before each
// run and outside its measured window; the shipped node's log must then show dkim=pass for every delivery.

import { spawn } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { cpus, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { dkimSign } from 'mailauth'
import { envName } from '../../appliance/config.ts'
import { NODE_FLAGS } from '../../appliance/node-flags.ts'
import { SCRYPT_LOG_N } from '../../store/password.ts'
import { makeMessage, runSmtpLoad } from '../helpers/smtp-load.ts'
import { benchDns, cpuSeconds, seedUsers, startMailgrid, startShipped } from './mailgrid.ts'
import { ingest, machineTimes, settle } from './phases.ts'

const env = (k: string, d: number): number => { const v = Number(process.env[k] ?? d); if (!Number.isSafeInteger(v) || v <= 0) throw new Error(`${k} must be a positive integer`); return v }
const MESSAGES = env('BENCH_LADDER_MESSAGES', 10_000)
const ROUNDS = env('BENCH_LADDER_ROUNDS', 2)
const WARMUP = env('BENCH_LADDER_WARMUP', 3000)
const SIZE = env('BENCH_LADDER_SIZE', 10_240)
const CONNECTIONS = env('BENCH_LADDER_CONNECTIONS', 50)
const DOMAIN = 'bench.test' // the load generator's sender domain too, whose records benchDns serves
const USERS = Array.from({ length: env('BENCH_LADDER_USERS', 10) }, (_, i) => `user${i}@${DOMAIN}`)
const PASSWORD = 'bench-ladder-pw'
const DEADLINE_MS = 600_000
const START_TIMEOUT_MS = 60_000
const SIGNED = process.env.BENCH_LADDER_SIGNED === '1'
const DKIM_SELECTOR = 'ladder'

interface System { id: string, label: string, pid: number, ports: { smtp: number, imap?: number, pop3?: number }, stop: () => Promise<void>, stored?: () => number | null, log?: string }
interface Run { msgPerSec: number, cpuMsPerMsg: number, machineBusy: number | null, acked: number, lost: number | null }

const LABELS: Record<string, string> = {
  shipped: 'the node as `npm start` runs it (one-node grid, log info, sender checks)',
  warn: 'the same at log level warn',
  'no-grid': 'the same with the grid off',
  checks: 'the mail node with the sender checks (no grid, no log, no other service)',
  node: 'the mail node alone (`npm run bench`\'s standalone node)',
  null: 'a durable null MX (smtp-server, append, fdatasync)'
}
const LAYER_COST: Record<string, string> = {
  shipped: 'the info log line per message',
  warn: 'the one-node grid (lead, replicate to nobody, the grid\'s store wrapper)',
  'no-grid': 'the appliance\'s other services and wiring (Sieve lookup, stats, metrics, admin)',
  checks: 'the sender checks (SPF, DKIM, DMARC, ARC)',
  node: 'the mail node\'s own pipeline (recipients, MIME analysis, trace fields, store, index, group commit)',
  null: 'smtp-server, the bytes and their fdatasync'
}

/** The null MX in its own process; `stored` is its count of durable messages once it has stopped. */
async function startNullMx (file: string): Promise<System> {
  const child = spawn(process.execPath, [...NODE_FLAGS, join(import.meta.dirname, 'null-mx.ts'), file], { stdio: ['ignore', 'pipe', 'inherit'] })
  const lines = createInterface({ input: child.stdout })
  let stored: number | null = null
  const ports = await new Promise<{ smtp: number }>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error('null MX did not start')) }, START_TIMEOUT_MS)
    lines.on('line', l => {
      if (l.startsWith('READY ')) { clearTimeout(timer); resolve(JSON.parse(l.slice(6))) }
      const m = /^STORED (\d+)$/.exec(l)
      if (m !== null) stored = Number(m[1])
    })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`null MX exited with ${code}`)) })
  })
  const exited = new Promise(resolve => child.once('exit', resolve))
  return {
    id: 'null',
    label: LABELS.null,
    pid: child.pid as number,
    ports,
    stop: async () => { if (child.exitCode === null) child.kill('SIGTERM'); await exited; await new Promise(resolve => setImmediate(resolve)) },
    stored: () => stored
  }
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2 }

const OUT = resolve(process.env.BENCH_OUT ?? join(import.meta.dirname, '..', '..'))

interface Layer { id: string, label: string, cost: string, msgPerSec: number, cpuMsPerMsg: number, machineBusy: number | null, layerMs: number, runs: Run[] }
interface Variant { id: string, label: string, msgPerSec: number, cpuMsPerMsg: number, machineBusy: number | null, runs: Run[] }
interface Ladder { date: string, machine: string, signed?: boolean, messages: number, rounds: number, warmup: number, sizeBytes: number, connections: number, users: number, lossFree: boolean, layers: Layer[], variants?: Variant[] }

/** Systems measured beside the layers, not part of the chain of differences. */
const VARIANTS: Record<string, string> = {
  main: 'the node as `npm start` runs it but with `inbound.threads: 0` (the sender checks in the main thread, not on a thread)'
}

async function measureLadder (): Promise<Ladder> {
  const root = await mkdtemp(join(tmpdir(), 'mailgrid-bench-ladder-'))
  const systems: System[] = []
  const runs = new Map<string, Run[]>()
  let nullAcked = 0
  // the sender domain's DKIM key (SIGNED): a fresh RSA-2048 pair, its public half in the resolver
  const keys = SIGNED ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : null
  const privatePem = keys === null ? '' : keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const dkimRecord = keys === null ? [] : [{ name: `${DKIM_SELECTOR}._domainkey.${DOMAIN}`, text: `v=DKIM1; k=rsa; p=${keys.publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}` }]
  const dns = await benchDns(dkimRecord)
  if ('why' in dns) console.log(`note: ${dns.why}`)
  const dnsServer = 'server' in dns ? dns.server : undefined
  let failed = false
  try {
    const shipped = async (id: string, logLevel: string | undefined, extra: Record<string, string>): Promise<void> => {
      const dir = join(root, id)
      await seedUsers(dir, DOMAIN, USERS, PASSWORD, SCRYPT_LOG_N)
      const n = await startShipped(dir, { sync: true, logFile: `${dir}.log`, env: extra, ...(logLevel === undefined ? {} : { logLevel }), ...(dnsServer === undefined ? {} : { dnsServer }) })
      systems.push({ id, label: LABELS[id] ?? VARIANTS[id], pid: n.pid, ports: { smtp: n.ports.smtp, imap: n.ports.imap, pop3: n.ports.pop3 }, stop: n.stop, log: `${dir}.log` })
    }
    const standalone = async (id: string, extra: Record<string, string>): Promise<void> => {
      const dir = join(root, id)
      await seedUsers(dir, DOMAIN, USERS, PASSWORD)
      const n = await startMailgrid(dir, { sync: true, env: extra })
      systems.push({ id, label: LABELS[id], pid: n.pid, ports: { smtp: n.ports.smtp, imap: n.ports.imap, pop3: n.ports.pop3 }, stop: n.stop })
    }
    await shipped('shipped', undefined, {})
    await shipped('main', undefined, { [envName('inbound.threads')]: '0' })
    await shipped('warn', 'warn', {})
    await shipped('no-grid', 'warn', { [envName('grid.enabled')]: 'false' })
    await standalone('checks', dnsServer === undefined ? {} : { BENCH_NODE_CHECKS_DNS: dnsServer })
    await standalone('node', {})
    systems.push(await startNullMx(join(root, 'null-mx.dat')))

    let firstId = 0
    /** The run's messages, signed beforehand when SIGNED (the signing is the sender's work, not measured). */
    const prepare = async (messages: number): Promise<{ message?: (id: number, rcpt: string) => Buffer }> => {
      if (!SIGNED) return {}
      const signed = new Map<number, Buffer>()
      for (let id = firstId; id < firstId + messages; id++) {
        const raw = makeMessage(id, USERS[id % USERS.length], SIZE)
        const sig = { signingDomain: DOMAIN, selector: DKIM_SELECTOR, privateKey: privatePem }
        const res = await dkimSign(raw, { ...sig, canonicalization: 'relaxed/relaxed', signatureData: [sig] })
        signed.set(id, Buffer.concat([Buffer.from(res.signatures), raw]))
      }
      return { message: id => signed.get(id) as Buffer }
    }
    const measure = async (s: System, messages: number): Promise<Run> => {
      const prepared = await prepare(messages)
      if (s.id === 'null') {
        const cpu0 = await cpuSeconds(s.pid)
        const m0 = await machineTimes()
        const r = await runSmtpLoad({ port: s.ports.smtp, connections: CONNECTIONS, messages, sizeBytes: SIZE, firstId, recipient: i => USERS[i % USERS.length], deadlineMs: DEADLINE_MS, ...prepared })
        const m1 = await machineTimes()
        const cpu = await cpuSeconds(s.pid) - cpu0
        firstId += messages
        nullAcked += r.acked
        const busy = m0 === null || m1 === null || m1.total <= m0.total ? null : (m1.busy - m0.busy) / (m1.total - m0.total)
        return { msgPerSec: r.acked / (r.elapsedMs / 1000), cpuMsPerMsg: 1000 * cpu / Math.max(1, r.acked), machineBusy: busy, acked: r.acked, lost: null }
      }
      const r = await ingest({ smtp: s.ports.smtp, imap: s.ports.imap as number, pop3: s.ports.pop3 as number }, {
        sizeBytes: SIZE, messages, connections: CONNECTIONS, users: USERS, password: PASSWORD, firstId,
        deadlineMs: DEADLINE_MS, visibleDeadlineMs: DEADLINE_MS, cpu: async () => await cpuSeconds(s.pid), ...prepared
      })
      firstId += messages
      return { msgPerSec: r.msgPerSec, cpuMsPerMsg: r.cpuMsPerMsg ?? NaN, machineBusy: r.machineBusy, acked: r.acked, lost: r.missing }
    }

    for (const s of systems) {
      const w = await measure(s, WARMUP)
      console.log(`warm-up ${s.id}: ${w.acked}/${WARMUP} acked, ${w.msgPerSec.toFixed(0)} msg/s`)
      if (w.acked !== WARMUP || (w.lost ?? 0) > 0) failed = true
    }
    for (let round = 0; round < ROUNDS; round++) {
      for (const s of round % 2 === 0 ? systems : [...systems].reverse()) {
        await settle(30_000)
        const r = await measure(s, MESSAGES)
        const list = runs.get(s.id) ?? []
        list.push(r)
        runs.set(s.id, list)
        if (r.acked !== MESSAGES || (r.lost ?? 0) > 0) failed = true
        console.log(`round ${round + 1} ${s.id.padEnd(8)} ${r.acked}/${MESSAGES} acked, ${r.msgPerSec.toFixed(0)} msg/s, ${r.cpuMsPerMsg.toFixed(3)} ms CPU per message, ` +
          `machine ${r.machineBusy === null ? 'n/a' : (100 * r.machineBusy).toFixed(0)} % busy${r.lost !== null && r.lost > 0 ? `, ${r.lost} acknowledged and MISSING` : ''}`)
      }
    }
    // signed mail must have been checked as such: the shipped nodes log each delivery with its DKIM result
    for (const id of ['shipped', 'main']) {
      const log = systems.find(s => s.id === id)?.log
      if (!SIGNED || log === undefined) continue
      const lines = (await readFile(log, 'utf8')).split('\n').filter(l => l.includes('"smtp_delivered"'))
      const pass = lines.filter(l => l.includes('"dkim":"pass"')).length
      console.log(`${id === 'shipped' ? 'shipped node' : `shipped node with the checks in the main thread`}: ${pass} of ${lines.length} deliveries with dkim=pass`)
      if (lines.length === 0 || pass !== lines.length) failed = true
    }
  } finally {
    for (const s of systems) await s.stop()
    if ('stop' in dns) await dns.stop()
    await rm(root, { recursive: true, force: true })
  }

  const nullSystem = systems.find(s => s.id === 'null')
  const nullStored = nullSystem?.stored?.() ?? null
  if (nullStored === null || nullStored < nullAcked) {
    console.log(`null MX: ${nullAcked} acknowledged, ${nullStored ?? 'no count'} stored`)
    failed = true
  }

  const ids = systems.map(s => s.id).filter(id => VARIANTS[id] === undefined)
  const variantIds = systems.map(s => s.id).filter(id => VARIANTS[id] !== undefined)
  const cpu = (id: string): number => median((runs.get(id) ?? []).map(r => r.cpuMsPerMsg))
  const rate = (id: string): number => median((runs.get(id) ?? []).map(r => r.msgPerSec))
  const busy = (id: string): number | null => { const xs = (runs.get(id) ?? []).map(r => r.machineBusy); return xs.some(x => x === null) ? null : median(xs as number[]) }
  const top = cpu('shipped')
  console.log(`\n${MESSAGES.toLocaleString('en-US')} × ${SIZE / 1024} KB per run, ${CONNECTIONS} connections, ${ROUNDS} rounds (medians), after ${WARMUP.toLocaleString('en-US')} warm-up messages each\n`)
  console.log('| system | msg/s | CPU per message | machine busy | the layer | its CPU per message | share of the shipped node\'s |')
  console.log('| --- | --- | --- | --- | --- | --- | --- |')
  const result: Record<string, { msgPerSec: number, cpuMsPerMsg: number, machineBusy: number | null, layerMs: number }> = {}
  for (const [i, id] of ids.entries()) {
    const below = i + 1 < ids.length ? cpu(ids[i + 1]) : 0
    const layer = cpu(id) - below
    result[id] = { msgPerSec: rate(id), cpuMsPerMsg: cpu(id), machineBusy: busy(id), layerMs: layer }
    const b = busy(id)
    console.log(`| ${LABELS[id]} | ${rate(id).toFixed(0)} | ${cpu(id).toFixed(3)} ms | ${b === null ? 'n/a' : `${(100 * b).toFixed(0)} %`} | ${LAYER_COST[id]} | ${(1000 * layer).toFixed(0)} µs | ${(100 * layer / top).toFixed(0)} % |`)
  }
  for (const id of variantIds) {
    const b = busy(id)
    console.log(`variant: ${VARIANTS[id]}: ${rate(id).toFixed(0)} msg/s, ${cpu(id).toFixed(3)} ms per message, machine ${b === null ? 'n/a' : `${(100 * b).toFixed(0)} %`} busy`)
  }
  return {
    date: new Date().toISOString(),
    machine: `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'cpu'}`,
    signed: SIGNED,
    messages: MESSAGES, rounds: ROUNDS, warmup: WARMUP, sizeBytes: SIZE, connections: CONNECTIONS, users: USERS.length,
    lossFree: !failed,
    layers: ids.map(id => ({ id, label: LABELS[id], cost: LAYER_COST[id], runs: runs.get(id) ?? [], ...result[id] })),
    variants: variantIds.map(id => ({ id, label: VARIANTS[id], msgPerSec: rate(id), cpuMsPerMsg: cpu(id), machineBusy: busy(id), runs: runs.get(id) ?? [] }))
  }
}

const render = process.argv.includes('--render')
// the signed load has a JSON file and a section of its own
const NAME = SIGNED ? 'ladder-signed' : 'ladder'
const ladder: Ladder = render ? JSON.parse(await readFile(join(OUT, `bench-${NAME}.json`), 'utf8')) as Ladder : await measureLadder()
if (!render) {
  await mkdir(OUT, { recursive: true })
  await writeFile(join(OUT, `bench-${NAME}.json`), JSON.stringify(ladder, null, 2) + '\n')
}
const top = ladder.layers[0].cpuMsPerMsg
const rows = ladder.layers.map(l => `| ${l.label} | ${l.msgPerSec.toFixed(0)} | ${l.cpuMsPerMsg.toFixed(3)} ms | ${l.machineBusy === null ? 'n/a' : `${(100 * l.machineBusy).toFixed(0)} %`} | ${l.cost} | ${(1000 * l.layerMs).toFixed(0)} µs | ${(100 * l.layerMs / top).toFixed(0)} % |`).join('\n')
const perRun = [...ladder.layers, ...(ladder.variants ?? [])].map(l => `${l.id} ${l.runs.map(r => r.cpuMsPerMsg.toFixed(3)).join(', ')}`).join('; ')
const shippedLayer = ladder.layers[0]
const variantText = (ladder.variants ?? []).map(v => `Measured in the same turns, not a layer: ${v.label}, ${v.msgPerSec.toFixed(0)} msg/s (${(v.msgPerSec / shippedLayer.msgPerSec).toFixed(2)}× the shipped node's) at ${v.cpuMsPerMsg.toFixed(3)} ms per message (${v.cpuMsPerMsg >= shippedLayer.cpuMsPerMsg ? '+' : '−'}${Math.abs(1000 * (v.cpuMsPerMsg - shippedLayer.cpuMsPerMsg)).toFixed(0)} µs), the machine ${v.machineBusy === null ? 'n/a' : `${(100 * v.machineBusy).toFixed(0)} %`} busy.`).join(' ')
const section = `<!-- ${NAME}:start -->
## Where the shipped node's CPU goes, one layer at a time${ladder.signed === true ? ', DKIM-signed mail' : ''} (npm run bench:ladder${ladder.signed === true ? ', BENCH_LADDER_SIGNED=1' : ''}, ${ladder.date.slice(0, 10)})

${ladder.machine}; ${ladder.messages.toLocaleString('en-US')} ${ladder.signed === true ? 'messages DKIM-signed by the sender domain (RSA-2048, relaxed/relaxed; signed before each run, outside it; every delivery of the shipped node logged dkim=pass)' : 'unsigned messages'} of ${ladder.sizeBytes} bytes per run to ${ladder.users} users over ${ladder.connections} connections, fsync on, all from one sender whose domain publishes SPF and DMARC records (a private resolver serves them: spf=pass, dmarc=pass); ${ladder.layers.length + (ladder.variants?.length ?? 0)} systems up at once, measured in turns (${ladder.rounds} ${ladder.rounds === 1 ? 'round' : 'rounds, order reversed every round'}, medians shown) after ${ladder.warmup.toLocaleString('en-US')} warm-up messages each. CPU = utime + stime of the system's process (and its threads) from /proc over the run, per acknowledged message; a layer's cost is its CPU per message minus the next row's, so the costs add up to the first row's figure (a negative one is the machine's swing between runs, larger than that layer). Every acknowledged message was counted afterwards (over IMAP; the null MX by its own count): ${ladder.lossFree ? 'none missing' : '**some missing or refused: see the run\'s output**'}.

| system | msg/s | CPU per message | machine busy | the layer this row adds to the next | its CPU per message | share of the shipped node's |
| --- | --- | --- | --- | --- | --- | --- |
${rows}
${variantText === '' ? '' : `\n${variantText}\n`}
CPU per message in each run: ${perRun}.
<!-- ${NAME}:end -->
`
let md = ''
try { md = await readFile(join(OUT, 'BENCHMARKS.md'), 'utf8') } catch {}
const marked = new RegExp(`<!-- ${NAME}:start -->[\\s\\S]*<!-- ${NAME}:end -->\\n?`)
md = marked.test(md) ? md.replace(marked, section) : md.trim() === '' ? section : `${md.trimEnd()}\n\n${section}`
await writeFile(join(OUT, 'BENCHMARKS.md'), md)
const result = Object.fromEntries(ladder.layers.map(l => [l.id, { msgPerSec: l.msgPerSec, cpuMsPerMsg: l.cpuMsPerMsg, machineBusy: l.machineBusy, layerMs: l.layerMs }]))
const variants = Object.fromEntries((ladder.variants ?? []).map(v => [v.id, { msgPerSec: v.msgPerSec, cpuMsPerMsg: v.cpuMsPerMsg, machineBusy: v.machineBusy }]))
console.log(`\nRESULT ${JSON.stringify({ lossFree: ladder.lossFree, signed: ladder.signed === true, messages: ladder.messages, rounds: ladder.rounds, sizeBytes: ladder.sizeBytes, connections: ladder.connections, systems: result, variants })}`)
if (!ladder.lossFree) process.exitCode = 1

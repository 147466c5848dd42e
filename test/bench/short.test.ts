// A short pass of each benchmark (`npm run bench`, `npm run bench:grid`, `npm run bench:ladder`), so CI sees a
// bench that no longer runs (a node that does not start as shipped, a phase that throws, a lost message) before
// someone runs the long modes. Small parameters, results written to a temporary folder (BENCH_OUT), never into
// the repository. The figures of so short a run mean nothing and are not asserted; what is asserted is that every
// phase ran, every acknowledged message was stored, and the grid's failover and re-mirroring were measured.

import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { test } from 'node:test'
import { tempDir } from '../helpers/tmp.ts'

const REPO = resolve(import.meta.dirname, '..', '..')
const RUN_TIMEOUT_MS = 600_000 // one short pass; about a minute each on the 2-core CI machine

async function run (script: string, env: Record<string, string>): Promise<{ code: number | null, out: string }> {
  const child = spawn(process.execPath, [join(REPO, script)], { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (b: Buffer) => { out += b.toString() })
  child.stderr.on('data', (b: Buffer) => { out += b.toString() })
  const timer = setTimeout(() => child.kill('SIGTERM'), RUN_TIMEOUT_MS)
  const code = await new Promise<number | null>(resolve => child.once('exit', c => resolve(c)))
  clearTimeout(timer)
  return { code, out }
}

interface Row { group: string, label: string, mailgrid: number | null, peer: number | null }

test('npm run bench, a short pass: every phase runs and no acknowledged message is lost', async (t) => {
  const out = await tempDir(t, 'bench-short-')
  const r = await run('test/bench/run.ts', {
    BENCH_OUT: out,
    BENCH_MESSAGES: '300',
    BENCH_SIZES: '10240',
    BENCH_USERS: '20',
    BENCH_BIG_MESSAGES: '400',
    BENCH_READ_ROUNDS: '1',
    BENCH_MIXED_CLIENTS: '2',
    BENCH_MIXED_OPS: '40',
    BENCH_IDLE_USERS: '200',
    BENCH_IDLE_SESSIONS: '50',
    BENCH_SORT_REPEATS: '2',
    BENCH_SORT_NEW_MAIL: '5',
    BENCH_OUTBOUND_MESSAGES: '100',
    BENCH_OUTBOUND_WARMUP: '5',
    BENCH_INGEST_WARMUP: '40'
  })
  assert.equal(r.code, 0, r.out.slice(-4000))
  // every system is warmed once before its first measured ingest: the shipped node, the workers node, the standalone
  // node, and the peer when it runs
  const warmups = r.out.match(/^\[ *\d+ s\] (mailgrid|peer) +warm-up ingest 10 KB → 20 users: 40\/40 acked/gm) ?? []
  assert.equal(warmups.filter(l => l.includes('mailgrid')).length, 3, r.out)
  if (!r.out.includes('peer not running')) assert.equal(warmups.filter(l => l.includes('peer')).length, 1, r.out)
  const results = JSON.parse(await readFile(join(out, 'bench-results.json'), 'utf8')) as { rows: Row[], lossFree: unknown }
  assert.equal(results.lossFree, true)
  const row = (group: string, label: string): Row => {
    const found = results.rows.find(x => x.group.startsWith(group) && x.label.startsWith(label))
    assert.ok(found !== undefined, `no row "${group}" / "${label}" in ${results.rows.map(x => `${x.group} / ${x.label}`).join('\n')}`)
    return found
  }
  const measured = [
    row('SMTP ingest 10 KB', 'accepted'),
    row('IMAP', 'UID FETCH 1:* (FLAGS BODY.PEEK[])'),
    row('IMAP', 'mixed SEARCH / STORE'),
    row('POP3', 'RETR of a whole'),
    row('IMAP', 'UID SORT (DATE)'),
    row('IMAP', 'UID THREAD=REFERENCES'),
    row('Outbound', 'delivered'),
    row('Memory', 'with 50 concurrent IMAP IDLE sessions')
  ]
  for (const x of measured) assert.ok(typeof x.mailgrid === 'number' && x.mailgrid > 0, `${x.group} / ${x.label}: ${JSON.stringify(x.mailgrid)}`)
  // the read phases' server CPU over the command alone (may round to 0 ticks in so short a run, but is measured)
  for (const group of ['IMAP', 'POP3']) {
    const cpu = row(group, 'same run, server CPU per message')
    assert.ok(typeof cpu.mailgrid === 'number' && cpu.mailgrid >= 0, `${group} CPU row: ${JSON.stringify(cpu.mailgrid)}`)
  }
  // the peer (Postfix + Dovecot, installed by .ci/run) is measured beside mailgrid when it is installed
  if (!r.out.includes('peer not running')) assert.ok(typeof measured[0].peer === 'number' && measured[0].peer > 0, `peer: ${JSON.stringify(measured[0].peer)}`)
  assert.equal(row('Outbound', 'acknowledged, missing at the receiver').mailgrid, 0)
  assert.match(r.out, /mailgrid store check: (\d+) stored, \1 acknowledged, 0 missing/)
  const md = await readFile(join(out, 'BENCHMARKS.md'), 'utf8')
  assert.match(md, /SMTP ingest 10 KB/)
  assert.match(md, /Ingest measured warm:\*\* every system took 40 messages over SMTP before its first measured ingest/)
})

test('npm run bench:grid, a short pass: shipped nodes, ingest on one and three, failover and re-mirroring measured', async (t) => {
  const out = await tempDir(t, 'bench-grid-short-')
  const r = await run('test/bench/grid.ts', {
    BENCH_OUT: out,
    BENCH_GRID_MESSAGES: '300',
    BENCH_GRID_WARMUP: '60',
    BENCH_GRID_USERS: '20',
    BENCH_GRID_ROUNDS: '2'
  })
  assert.equal(r.code, 0, r.out.slice(-4000))
  const g = JSON.parse(await readFile(join(out, 'bench-grid.json'), 'utf8')) as {
    nodes: string
    ingest: { oneNode: { acked: number, cpuMsPerMsg: number }, threeNodesR2: { acked: number, cpuMsPerMsg: number, cpuSecondsByNode: number[] } }
    side: { acked: number, cpuSecondsByNode: number[], perMessage: { commitBatches: number } }
    rounds: { oneNode: number[], side: number[], threeNodesR2: number[] }
    failoverMs: number
    remirror: { bytes: number, mbPerSec: number }
  }
  assert.equal(g.nodes, 'shipped')
  assert.equal(g.ingest.oneNode.acked, 300)
  assert.equal(g.ingest.threeNodesR2.acked, 300)
  assert.equal(g.ingest.threeNodesR2.cpuSecondsByNode.length, 3)
  assert.ok(g.ingest.threeNodesR2.cpuSecondsByNode.every(c => c > 0), 'every node of the grid did work')
  // the control: three one-node grids side by side, each with its share; every message stored once there
  assert.equal(g.side.acked, 300)
  assert.ok(g.side.cpuSecondsByNode.length === 3 && g.side.cpuSecondsByNode.every(c => c > 0), 'every side-by-side node did work')
  // every message stored once there: one batch each, or fewer where deliveries to one user waited for its lock together
  assert.ok(g.side.perMessage.commitBatches > 0.2 && g.side.perMessage.commitBatches < 1.05, `at most one store batch per message side by side: ${g.side.perMessage.commitBatches}`)
  assert.deepEqual([g.rounds.oneNode.length, g.rounds.side.length, g.rounds.threeNodesR2.length], [2, 2, 2])
  assert.ok(Number.isFinite(g.failoverMs) && g.failoverMs > 0)
  assert.ok(g.remirror.bytes > 0, 're-mirroring shipped bytes')
  const md = await readFile(join(out, 'BENCHMARKS.md'), 'utf8')
  assert.match(md, /## The grid/)
  assert.match(md, /three one-node grids side by side/)
})

test('npm run bench:ladder, a short pass: every layer from the shipped node to the null MX measured, nothing lost', async (t) => {
  const out = await tempDir(t, 'bench-ladder-short-')
  const r = await run('test/bench/ladder.ts', {
    BENCH_OUT: out,
    BENCH_LADDER_MESSAGES: '200',
    BENCH_LADDER_ROUNDS: '1',
    BENCH_LADDER_WARMUP: '50',
    BENCH_LADDER_USERS: '4'
  })
  assert.equal(r.code, 0, r.out.slice(-4000))
  const line = r.out.split('\n').find(l => l.startsWith('RESULT '))
  assert.ok(line !== undefined, r.out.slice(-4000))
  const res = JSON.parse(line.slice('RESULT '.length)) as { lossFree: boolean, systems: Record<string, { msgPerSec: number, cpuMsPerMsg: number, layerMs: number }>, variants: Record<string, { msgPerSec: number, cpuMsPerMsg: number }> }
  assert.equal(res.lossFree, true)
  assert.deepEqual(Object.keys(res.systems), ['shipped', 'warn', 'no-grid', 'checks', 'node', 'null'])
  for (const [id, s] of Object.entries(res.systems)) {
    assert.ok(s.msgPerSec > 0 && s.cpuMsPerMsg > 0, `${id}: ${JSON.stringify(s)}`)
  }
  // the variant beside the layers: the shipped node with the checks on a thread, measured in the same turns
  assert.deepEqual(Object.keys(res.variants), ['main'])
  assert.ok(res.variants.main.msgPerSec > 0 && res.variants.main.cpuMsPerMsg > 0, JSON.stringify(res.variants))
  // the layers' costs add up to the shipped node's CPU per message
  const sum = Object.values(res.systems).reduce((a, s) => a + s.layerMs, 0)
  assert.ok(Math.abs(sum - res.systems.shipped.cpuMsPerMsg) < 1e-9, `${sum} against ${res.systems.shipped.cpuMsPerMsg}`)
  assert.match(r.out, /\| a durable null MX/)
  const md = await readFile(join(out, 'BENCHMARKS.md'), 'utf8')
  assert.match(md, /<!-- ladder:start -->\n## Where the shipped node's CPU goes[\s\S]*\| a durable null MX[\s\S]*<!-- ladder:end -->/)
  assert.match(md, /Measured in the same turns, not a layer: the node as `npm start` runs it but with `inbound.threads: 0`/)
  assert.match(md, /none missing/)
})

test('npm run bench:ladder with DKIM-signed mail, a short pass: every delivery checked dkim=pass, nothing lost', async (t) => {
  const out = await tempDir(t, 'bench-ladder-signed-short-')
  const r = await run('test/bench/ladder.ts', {
    BENCH_OUT: out,
    BENCH_LADDER_SIGNED: '1',
    BENCH_LADDER_MESSAGES: '100',
    BENCH_LADDER_ROUNDS: '1',
    BENCH_LADDER_WARMUP: '20',
    BENCH_LADDER_USERS: '4'
  })
  assert.equal(r.code, 0, r.out.slice(-4000))
  assert.match(r.out, /shipped node: (\d+) of \1 deliveries with dkim=pass/)
  assert.match(r.out, /shipped node with the checks in the main thread: (\d+) of \1 deliveries with dkim=pass/)
  const line = r.out.split('\n').find(l => l.startsWith('RESULT '))
  assert.ok(line !== undefined, r.out.slice(-4000))
  const res = JSON.parse(line.slice('RESULT '.length)) as { lossFree: boolean, signed: boolean }
  assert.equal(res.lossFree, true)
  assert.equal(res.signed, true)
  const md = await readFile(join(out, 'BENCHMARKS.md'), 'utf8')
  assert.match(md, /<!-- ladder-signed:start -->\n## Where the shipped node's CPU goes, one layer at a time, DKIM-signed mail[\s\S]*<!-- ladder-signed:end -->/)
  assert.doesNotMatch(md, /<!-- ladder:start -->/)
})

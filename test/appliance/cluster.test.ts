// `mailgrid cluster up|status|down`: argument handling in-process, then real node processes on loopback:
// a three-node grid forms, a user added on node 1 reaches node 3, `down` stops every process; and a grid
// that cannot form is reported and leaves no process behind. Every command runs as its own process.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { main } from '../../appliance/commands.ts'
import { nodePorts, PORT_OFFSETS } from '../../appliance/cluster.ts'
import type { ClusterFile } from '../../appliance/cluster.ts'

const ROOT = new URL('../..', import.meta.url).pathname
const NODE = join(ROOT, 'node_modules', '.bin', 'node')
const CLI = join(ROOT, 'appliance', 'cli.ts')
const COMMAND_TIMEOUT_MS = 45_000 // cluster up waits at most --timeout (30 s here) plus its own start
const REPLICATION_WAIT_MS = 15_000 // the directory reaches the other nodes at once, or by the 3 s digest exchange
const FORM_TIMEOUT_S = '30'

/**
 * A base port for this run: random in 21000-31000 (below the ephemeral range, away from the default 20000
 * a person may be using), so parallel runs rarely meet; cluster up refuses a taken port anyway.
 */
function basePort (): number {
  return 21000 + 100 * Math.floor(Math.random() * 100)
}

function env (): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MAILGRID_') && v !== undefined) out[k] = v
  return out
}

function cli (args: string[], stdin = ''): Promise<{ out: string, err: string, code: number }> {
  return new Promise(resolve => {
    const p = execFile(NODE, [CLI, ...args], { cwd: ROOT, env: env(), timeout: COMMAND_TIMEOUT_MS }, (error, out, err) => {
      resolve({ out, err, code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1 })
    })
    p.stdin?.end(stdin)
  })
}

async function run (args: string[]): Promise<{ out: string, err: string, code: number }> {
  const io = { out: '', err: '' }
  const code = await main(args, {
    stdout: { write: (s: string) => { io.out += s } },
    stderr: { write: (s: string) => { io.err += s } },
    stdin: Readable.from([]),
    env: {}
  })
  return { ...io, code }
}

/** Whether pid is a live process running something with `marker` on its command line (not a zombie). */
async function runs (pid: number, marker: string): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    if (/\)\s+Z/.test(stat)) return false
    return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).includes(marker)
  } catch {
    return false
  }
}

/** The processes (not zombies) whose command line names `marker`, from /proc. */
async function runningWith (marker: string): Promise<number[]> {
  const pids = (await readdir('/proc')).filter(d => /^\d+$/.test(d)).map(Number)
  const found: number[] = []
  for (const pid of pids) if (pid !== process.pid && await runs(pid, marker)) found.push(pid)
  return found
}

/** Last resort after a failed test: SIGKILL whatever still runs a config of this temp dir. */
async function killLeftovers (pids: number[], dir: string): Promise<void> {
  for (const pid of pids) {
    if (await runs(pid, dir)) {
      try { process.kill(pid, 'SIGKILL') } catch {}
    }
  }
}

async function until<T> (what: string, ms: number, probe: () => Promise<T | null>): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await probe()
    if (v !== null) return v
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms} ms`)
    await sleep(200)
  }
}

test('node K gets base + 100*K + a fixed offset per service, all distinct', () => {
  const p1 = nodePorts(20000, 1)
  assert.deepEqual(p1, { smtp: 20125, submission: 20187, smtps: 20165, pop3: 20110, pop3s: 20195, imap: 20143, imaps: 20193, http: 20181, https: 20144, admin: 20180, grid: 20146, managesieve: 20190 })
  const all = [1, 2, 3].flatMap(k => Object.values(nodePorts(20000, k)))
  assert.equal(new Set(all).size, all.length)
  assert.ok(Object.values(PORT_OFFSETS).every(o => o >= 0 && o < 100))
})

test('cluster command line errors exit 2; a missing cluster exits 1', async () => {
  const usage = [
    ['cluster'], ['cluster', 'frob'], ['cluster', 'up', '--dir', 'x'], ['cluster', 'up', '--nodes', '3'],
    ['cluster', 'up', '--nodes', '0', '--dir', 'x'], ['cluster', 'up', '--nodes', '17', '--dir', 'x'],
    ['cluster', 'up', '--nodes', 'three', '--dir', 'x'], ['cluster', 'up', '--nodes', '3', '--dir', 'x', '--replicas', '6'],
    ['cluster', 'up', '--nodes', '3', '--dir', 'x', '--base-port', '80'], ['cluster', 'up', '--nodes', '3', '--dir', 'x', '--password', 'p'],
    ['cluster', 'down'], ['cluster', 'status'], ['cluster', 'down', '--dir', 'x', '--nodes', '3'], ['cluster', 'down', 'extra', '--dir', 'x'],
    ['user', 'list', '--nodes', '3']
  ]
  for (const args of usage) {
    const r = await run(args)
    assert.equal(r.code, 2, args.join(' '))
    assert.match(r.err, /^mailgrid: .+\nUsage: mailgrid /, args.join(' '))
  }
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-nocluster-'))
  try {
    for (const sub of ['down', 'status']) {
      const r = await run(['cluster', sub, '--dir', dir])
      assert.deepEqual([r.code, r.err], [1, `mailgrid: no cluster in ${dir} (no cluster.json; start one with: mailgrid cluster up --nodes 3 --dir ${dir})\n`])
    }
    const high = await run(['cluster', 'up', '--nodes', '3', '--dir', dir, '--base-port', '65300'])
    assert.deepEqual([high.code, high.err], [1, 'mailgrid: --base-port 65300 leaves no room for 3 nodes (highest port 65699 > 65535)\n'])
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('cluster up refuses a taken port before starting anything', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-busy-cluster-'))
  const blocker = createServer()
  const base = basePort()
  const taken = nodePorts(base, 2).imap
  await new Promise<void>((resolve, reject) => { blocker.once('error', reject); blocker.listen(taken, '127.0.0.1', resolve) })
  try {
    const r = await run(['cluster', 'up', '--nodes', '2', '--dir', dir, '--base-port', String(base)])
    assert.deepEqual([r.code, r.err], [1, `mailgrid: port ${taken} (node2 imap) is in use; choose another --base-port\n`])
    await assert.rejects(readFile(join(dir, 'cluster.json')), { code: 'ENOENT' })
  } finally {
    await new Promise(resolve => blocker.close(resolve))
    await rm(dir, { recursive: true, force: true })
  }
})

test('a local grid of three processes: up, a user added on node 1 reaches node 3, status, down', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-cluster-'))
  let pids: number[] = []
  try {
    const up = await cli(['cluster', 'up', '--nodes', '3', '--dir', dir, '--base-port', String(basePort()), '--timeout', FORM_TIMEOUT_S])
    assert.equal(up.code, 0, up.err)
    assert.match(up.out, /^a grid of 3 nodes is up on 127\.0\.0\.1 \(R=2\)/)

    const cluster = JSON.parse(await readFile(join(dir, 'cluster.json'), 'utf8')) as ClusterFile
    pids = cluster.nodes.map(n => n.pid)
    assert.equal(cluster.replicas, 2)
    assert.deepEqual(cluster.nodes.map(n => n.name), ['node1', 'node2', 'node3'])
    for (const [i, n] of cluster.nodes.entries()) {
      assert.match(n.id ?? '', /^12D3KooW\w+$/, 'a libp2p peer id')
      assert.ok(await runs(n.pid, n.config), `${n.name} runs its config`)
      assert.equal(n.dataDir, join(dir, `node${i + 1}`))
      assert.deepEqual(Object.keys(n.ports).sort(), ['admin', 'grid', 'http', 'https', 'imap', 'imaps', 'managesieve', 'pop3', 'pop3s', 'smtp', 'smtps', 'submission'])
      assert.deepEqual(n.ports, nodePorts(cluster.basePort, i + 1))
      assert.equal(await readFile(join(n.dataDir, 'cluster.key'), 'utf8'), await readFile(join(dir, 'cluster.key'), 'utf8'), 'one key')
    }
    const ids = cluster.nodes.map(n => n.id).sort()
    assert.equal(new Set(ids).size, 3)

    for (const n of cluster.nodes) {
      const st = await cli(['status', '--json', '--data', n.dataDir])
      assert.equal(st.code, 0, st.err)
      const grid = JSON.parse(st.out).grid
      assert.equal(grid.self, n.id)
      assert.deepEqual(grid.members.filter((m: { status: string }) => m.status === 'alive').map((m: { id: string }) => m.id).sort(), ids)
      const services = JSON.parse(st.out).services as Array<{ name: string, port: number }>
      for (const s of services) assert.equal(s.port, n.ports[s.name as keyof typeof n.ports])
    }
    const text = await cli(['status', '--data', cluster.nodes[0].dataDir])
    assert.match(text.out, /^grid {9}ring [0-9a-f]{8}, 3 of 3 members alive, R=2$/m)
    assert.match(text.out, /^\* node1\.localhost +\S{8} +alive +alive /m)

    const [n1, , n3] = cluster.nodes
    assert.equal((await cli(['domain', 'add', 'grid.example', '--data', n1.dataDir])).code, 0)
    const add = await cli(['user', 'add', 'alice@grid.example', '--password', '-', '--data', n1.dataDir], 'a-password\n')
    assert.equal(add.code, 0, add.err)
    const listed = await until('alice on node 3', REPLICATION_WAIT_MS, async () => {
      const r = await cli(['user', 'list', '--data', n3.dataDir])
      return r.code === 0 && r.out.startsWith('alice@grid.example\t') ? r.out : null
    })
    assert.match(listed, /^alice@grid\.example\tquota unlimited\tmessages unlimited\tactive\n$/)

    // user where: the same placement from two nodes' views, and the primary it names is the node that owns her.
    const where = await cli(['user', 'where', 'Alice@grid.example', '--json', '--data', n1.dataDir])
    assert.equal(where.code, 0, where.err)
    const placed = JSON.parse(where.out) as { address: string, current: boolean, replicas: Array<{ role: string, id: string }> }
    assert.equal(placed.address, 'alice@grid.example')
    assert.deepEqual(placed.replicas.map(r => r.role), ['primary', 'replica'])
    assert.ok(placed.replicas.every(r => ids.includes(r.id)))
    assert.equal(new Set(placed.replicas.map(r => r.id)).size, 2)
    const fromNode3 = JSON.parse((await cli(['user', 'where', 'alice@grid.example', '--json', '--data', n3.dataDir])).out)
    assert.deepEqual(fromNode3.replicas, placed.replicas)
    const primary = cluster.nodes.find(n => n.id === placed.replicas[0].id)!
    await until('the primary counts alice as owned', REPLICATION_WAIT_MS, async () => {
      const st = JSON.parse((await cli(['status', '--json', '--data', primary.dataDir])).out)
      return st.grid.usersOwned === 1 ? true : null
    })
    const text3 = await cli(['user', 'where', 'alice@grid.example', '--data', n3.dataDir])
    assert.match(text3.out, new RegExp(`^alice@grid\\.example  R=2, ring [0-9a-f]{8}\n  primary  ${primary.name}\\.localhost `))

    const view = await cli(['cluster', 'status', '--dir', dir])
    assert.equal(view.code, 0, view.err)
    assert.equal(view.out.match(/3 of 3 members alive/g)?.length, 3, view.out)

    const again = await cli(['cluster', 'up', '--nodes', '3', '--dir', dir])
    assert.equal(again.code, 1)
    assert.match(again.err, /^mailgrid: a cluster already runs in /)

    const down = await cli(['cluster', 'down', '--dir', dir])
    assert.equal(down.code, 0, down.err)
    assert.equal(down.out, cluster.nodes.map(n => `${n.name} (pid ${n.pid}): stopped\n`).join(''))
    for (const n of cluster.nodes) assert.equal(await runs(n.pid, n.config), false, `${n.name} is gone`)
    for (const n of cluster.nodes) assert.match(await readFile(n.log, 'utf8'), /"event":"stopped"/, `${n.name} stopped cleanly`)
    const twice = await cli(['cluster', 'down', '--dir', dir])
    assert.equal(twice.out, cluster.nodes.map(n => `${n.name} (pid ${n.pid}): was not running\n`).join(''))
  } finally {
    await cli(['cluster', 'down', '--dir', dir])
    await killLeftovers(pids, dir)
    await rm(dir, { recursive: true, force: true })
  }
})

test('a node that cannot start: cluster up says which and why, stops the others, exits 1', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-cluster-fail-'))
  const node1Pid = async (): Promise<number> =>
    Number(/"pid":(\d+)/.exec(await readFile(join(dir, 'node1', 'node.log'), 'utf8').catch(() => ''))?.[1] ?? 0)
  try {
    // The store of node 2 cannot open: its index is a file where a directory belongs.
    await mkdir(join(dir, 'node2'), { recursive: true })
    await writeFile(join(dir, 'node2', 'index'), 'not a database')
    const r = await cli(['cluster', 'up', '--nodes', '2', '--dir', dir, '--base-port', String(basePort()), '--timeout', FORM_TIMEOUT_S])
    assert.equal(r.code, 1)
    assert.match(r.err, /^ {2}node2 exited; the end of .*node2\/node\.log:\n/)
    assert.match(r.err, /\nmailgrid: node2 stopped before the grid formed; stopped the nodes it started/)
    await assert.rejects(readFile(join(dir, 'cluster.json')), { code: 'ENOENT' })
    // node 1 may be stopped before it logged a line (node 2 can fail first on a loaded machine): what counts is
    // that no process runs its config any more
    assert.deepEqual(await runningWith(join(dir, 'node1', 'mailgrid.toml')), [], 'node 1 was stopped')
  } finally {
    await killLeftovers([await node1Pid(), ...await runningWith(dir)], dir)
    await rm(dir, { recursive: true, force: true })
  }
})

// The grid's idle CPU: three-node grids (R=2, node processes as test/helpers/cluster.ts starts them, logging at
// info) from one or more checkouts, USERS users with MSGS_PER_USER messages of 2 KB each delivered over SMTP, then
// utime + stime of every node from /proc over ROUNDS windows of WINDOW_S seconds, the same windows for every tree
// (so a before/after pair shares the machine's load). Prints CPU-seconds per second per node.
// usage: node test/bench/grid-idle.ts USERS MSGS_PER_USER WINDOW_S ROUNDS /abs/treeA [/abs/treeB ...]
// PROF=dir: every node of the first tree runs with --cpu-prof into dir (the profiler adds CPU of its own).
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ProcCluster, ProcNode } from '../helpers/cluster.ts'
import type { LoadInit, LoadResult } from '../helpers/smtp-load.ts'

type Helpers = {
  ProcCluster: new (...args: ConstructorParameters<typeof ProcCluster>) => ProcCluster
  until: (what: string, fn: () => Promise<boolean>, timeoutMs?: number, everyMs?: number) => Promise<number>
}

const [usersS, msgsS, windowS, roundsS, ...trees] = process.argv.slice(2)
const USERS = Array.from({ length: Number(usersS) }, (_, i) => `u${i}@idle.test`)
const MSGS = Number(msgsS)
const WIN = Number(windowS) * 1000
const ROUNDS = Number(roundsS)
const TICK = 100 // USER_HZ

function cpu (pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'latin1')
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ')
  return (Number(rest[11]) + Number(rest[12])) / TICK
}

const grids: Array<{ tree: string, cluster: ProcCluster, nodes: ProcNode[] }> = []
try {
  for (const [ti, tree] of trees.entries()) {
    const { ProcCluster: Cluster, until } = await import(`${tree}/test/helpers/cluster.ts`) as Helpers
    const { runSmtpLoad } = await import(`${tree}/test/helpers/smtp-load.ts`) as { runSmtpLoad: (init: LoadInit) => Promise<LoadResult> }
    process.chdir(tree)
    const dir = await mkdtemp(join(tmpdir(), 'h3-idle-'))
    const cluster = new Cluster({ clusterKey: randomBytes(16).toString('hex'), replicas: 2, setup: { domain: 'idle.test', users: USERS, password: 'pw' } })
    const env: Record<string, string> = { MAILGRID_TEST_LOG: 'info' }
    if (ti === 0 && process.env.PROF !== undefined) env.NODE_OPTIONS = `--cpu-prof --cpu-prof-dir=${process.env.PROF}`
    const nodes: ProcNode[] = []
    for (let k = 1; k <= 3; k++) nodes.push(await cluster.start(`n${k}`, join(dir, `n${k}`), { setup: k === 1, env, onLog: () => {} }))
    grids.push({ tree, cluster, nodes })
    await cluster.formed(3, 60_000)
    await until('directory', async () => (await Promise.all(nodes.map(async n => (await n.status()).users))).every(c => c === USERS.length), 300_000, 500)
    if (MSGS > 0) {
      const per = Math.ceil(USERS.length * MSGS / 3)
      const r = await Promise.all(nodes.map(async (n, k) => await runSmtpLoad({ port: n.ports.smtp, connections: 6, messages: per, sizeBytes: 2048, firstId: k * per, recipient: i => USERS[i % USERS.length], deadlineMs: 600_000 })))
      console.log(`${tree}: seeded ${r.reduce((s, x) => s + x.acked, 0)} messages`)
    }
    await until('replicated', async () => (await Promise.all(nodes.map(async n => (await n.status()).grid?.underReplicated))).every(u => u === 0), 300_000, 500)
    console.log(`${tree}: ready ${dir}`)
  }
  await new Promise(resolve => setTimeout(resolve, 10_000)) // settle
  const sums = grids.map(() => [] as number[])
  for (let r = 0; r < ROUNDS; r++) {
    const c0 = grids.map(g => g.nodes.map(n => cpu(n.child.pid as number)))
    const t0 = performance.now()
    await new Promise(resolve => setTimeout(resolve, WIN))
    const secs = (performance.now() - t0) / 1000
    const load = readFileSync('/proc/loadavg', 'latin1').split(' ')[0]
    for (const [gi, g] of grids.entries()) {
      const per = g.nodes.map((n, i) => (cpu(n.child.pid as number) - c0[gi][i]) / secs)
      sums[gi].push(...per)
      console.log(`round ${r + 1} load ${load} ${g.tree}: ${per.map((x: number) => x.toFixed(4)).join(' + ')} CPU-s/s per node`)
    }
  }
  for (const [gi, g] of grids.entries()) {
    const s = [...sums[gi]].sort((a, b) => a - b)
    console.log(`${g.tree}: per node min ${s[0].toFixed(4)} median ${s[Math.floor(s.length / 2)].toFixed(4)} max ${s[s.length - 1].toFixed(4)} mean ${(s.reduce((a, b) => a + b, 0) / s.length).toFixed(4)}`)
  }
} finally {
  for (const g of grids) await g.cluster.stopAll()
}

// Real grid nodes as separate processes on loopback (test/helpers/node-proc.ts with a grid config), for
// cluster tests that kill them with SIGKILL. Each node has its own data dir and ephemeral ports; the first
// node's libp2p address is every later node's bootstrap.

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { appendFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { createInterface } from 'node:readline'
import type { NodeStatus } from '../../node/types.ts'

export interface ProcNode {
  name: string
  dir: string
  child: ChildProcess
  ports: Record<string, number>
  id: string
  addrs: string[]
  status (): Promise<NodeStatus>
  /** Writes a command line to the node (node-proc.ts) and resolves to the rest of its next line starting `ANSWER `. */
  ask (command: string, answer: string): Promise<string>
  alive: boolean
}

export interface ClusterInit {
  clusterKey: string
  replicas: number
  deadAfterMs?: number
  setup?: { domain: string, users: string[], password: string }
}

export class ProcCluster {
  readonly nodes: ProcNode[] = []
  private readonly init: ClusterInit
  private bootstrap: string[] = []

  constructor (init: ClusterInit) {
    this.init = init
  }

  /** `env`: more environment for this node (MAILGRID_TEST_STORE, MAILGRID_TEST_LOG); `onLog`: each JSON log line it prints. */
  async start (name: string, dir: string, opts: { clusterKey?: string, setup?: boolean, env?: Record<string, string>, onLog?: (line: string) => void } = {}): Promise<ProcNode> {
    // every live node is a bootstrap peer (a node restarted after the first one moved must still find the grid)
    const peers = this.nodes.filter(n => n.alive && n.name !== name)
    const grid = {
      clusterKey: opts.clusterKey ?? this.init.clusterKey,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      bootstrap: peers.length > 0 ? peers.flatMap(n => n.addrs.map(a => a.includes('/p2p/') ? a : `${a}/p2p/${n.id}`)) : this.bootstrap,
      mdns: false,
      replicas: this.init.replicas,
      weight: 1,
      advertiseHost: '127.0.0.1',
      ...(this.init.deadAfterMs !== undefined ? { deadAfterMs: this.init.deadAfterMs } : {})
    }
    const args = ['test/helpers/node-proc.ts', dir]
    if (opts.setup === true && this.init.setup !== undefined) args.push(JSON.stringify(this.init.setup))
    const child = spawn(process.execPath, args, {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: { ...process.env, MAILGRID_TEST_GRID: JSON.stringify(grid), ...opts.env }
    })
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
    const waiting: Array<(s: NodeStatus) => void> = []
    const answers = new Map<string, Array<(rest: string) => void>>()
    const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} did not start in 60 s`)), 60_000)
      lines.on('line', l => {
        if (l.startsWith('READY ')) { clearTimeout(timer); resolve(JSON.parse(l.slice(6))) }
        const word = /^([A-Z]+) /.exec(l)?.[1]
        if (l.startsWith('STATUS ')) waiting.shift()?.(JSON.parse(l.slice(7)))
        else if (word !== undefined && (answers.get(word)?.length ?? 0) > 0) answers.get(word)?.shift()?.(l.slice(word.length + 1))
        else if (l.startsWith('{')) {
          opts.onLog?.(l)
          if (process.env.MAILGRID_CLUSTER_LOG !== undefined) appendFileSync(process.env.MAILGRID_CLUSTER_LOG, `${name} ${l}\n`)
        }
      })
      child.once('exit', code => { clearTimeout(timer); reject(new Error(`${name} exited with ${code}`)) })
    })
    const node: ProcNode = {
      name,
      dir,
      child,
      ports: Object.fromEntries(Object.entries(ready).filter(([, v]) => typeof v === 'number')) as Record<string, number>,
      id: String(ready.id),
      addrs: ready.addrs as string[],
      alive: true,
      async status () {
        return await new Promise<NodeStatus>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`${name}: no status in 10 s`)), 10_000)
          waiting.push(s => { clearTimeout(timer); resolve(s) })
          child.stdin?.write('status\n')
        })
      },
      async ask (command: string, answer: string) {
        return await new Promise<string>((resolve, reject) => {
          const queue = answers.get(answer) ?? []
          answers.set(answer, queue)
          const waiter = (rest: string): void => { clearTimeout(timer); resolve(rest) }
          const timer = setTimeout(() => {
            queue.splice(queue.indexOf(waiter), 1) // a late answer must not go to the next caller
            reject(new Error(`${name}: no ${answer} in 10 s`))
          }, 10_000)
          queue.push(waiter)
          child.stdin?.write(`${command}\n`)
        })
      }
    }
    child.once('exit', () => { node.alive = false })
    if (this.bootstrap.length === 0) this.bootstrap = node.addrs.map(a => a.includes('/p2p/') ? a : `${a}/p2p/${node.id}`)
    const old = this.nodes.findIndex(n => n.name === name)
    if (old >= 0) this.nodes[old] = node
    else this.nodes.push(node)
    return node
  }

  /** Cuts the grid into groups (test hook in the transport: each node refuses the others' connections). */
  partition (...groups: ProcNode[][]): void {
    for (const g of groups) {
      const others = groups.filter(x => x !== g).flat().map(n => n.id)
      for (const n of g) n.child.stdin?.write(`block ${others.join(',')}\n`)
    }
  }

  heal (): void {
    for (const n of this.nodes) if (n.alive) n.child.stdin?.write('block\n')
  }

  async kill (node: ProcNode, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!node.alive) return
    const exited = new Promise(resolve => node.child.once('exit', resolve))
    node.child.kill(signal)
    await exited
  }

  async stopAll (): Promise<void> {
    await Promise.all(this.nodes.map(async n => await this.kill(n, 'SIGTERM')))
  }

  /** Waits until every live node sees `count` alive members and they agree on the ring. */
  async formed (count: number, timeoutMs = 30_000): Promise<void> {
    const end = Date.now() + timeoutMs
    for (;;) {
      const live = this.nodes.filter(n => n.alive)
      const views = await Promise.all(live.map(async n => await n.status()))
      const ok = views.every(v => v.grid !== null && v.grid.members.filter(m => m.status === 'alive').length === count) &&
        new Set(views.map(v => v.grid?.ringVersion)).size === 1
      if (ok) return
      if (Date.now() > end) throw new Error(`grid did not form with ${count} members: ${JSON.stringify(views.map(v => v.grid?.members.map(m => [m.name, m.id.slice(-6), m.status])))}`)
      await new Promise(resolve => setTimeout(resolve, 200))
    }
  }
}

export async function until (what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 30_000, everyMs = 200): Promise<number> {
  const start = Date.now()
  while (!(await fn())) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, everyMs))
  }
  return Date.now() - start
}

/**
 * A formed grid of node processes named n1, n2, ... under `dir` (R=2, a fresh cluster key, `users` of example.com
 * with password `pw` set up through the first), stopped after the test; resolves once every node has the directory.
 */
export async function startGrid (t: { after: (fn: () => Promise<void>) => void }, dir: string, count: number, users: string[]): Promise<{ cluster: ProcCluster, nodes: ProcNode[] }> {
  const cluster = new ProcCluster({ clusterKey: randomBytes(16).toString('hex'), replicas: 2, setup: { domain: 'example.com', users, password: 'pw' } })
  t.after(async () => { await cluster.stopAll() })
  const nodes: ProcNode[] = []
  for (let k = 1; k <= count; k++) nodes.push(await cluster.start(`n${k}`, `${dir}/n${k}`, { setup: k === 1 }))
  await cluster.formed(count)
  await until('the directory on every node', async () => (await Promise.all(nodes.map(async n => (await n.status()).users))).every(c => c === users.length), 30_000)
  return { cluster, nodes }
}

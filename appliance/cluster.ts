// `mailgrid cluster up|down|status`: a grid of N node processes on this machine's loopback, for trying
// mailgrid and for multi-process tests. Each node is an ordinary `mailgrid start --config DIR/nodeK/mailgrid.toml`
// run detached, with its own data dir, log and ports, the same cluster key, and every other node as its
// bootstrap list. `up` returns once every node sees every other alive and records the grid in DIR/cluster.json;
// `down` stops the processes named there (only those still running the config it wrote).

import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { stringify } from 'smol-toml'
import type { GridStatus } from '../node/grid/index.ts'
import type { ServiceName } from '../node/types.ts'
import { CliError, connect } from './client.ts'
import { SERVICE_NAMES, WEB_NAMES } from './config.ts'
import type { WebName } from './config.ts'
import { gridLines, shortId, table } from './gridview.ts'
import { NODE_FLAGS } from './node-flags.ts'
import { CLUSTER_KEY_FILE, ensureClusterKey, processAlive } from './runtime.ts'

export const CLUSTER_FILE = 'cluster.json'
export const NODE_CONFIG_FILE = 'mailgrid.toml'
export const NODE_LOG_FILE = 'node.log'
export const CLUSTER_NODES_MAX = 16 // one machine: each node is a process of ~150 MiB RSS
export const CLUSTER_BASE_PORT_DEFAULT = 20000 // below Linux's ephemeral range (32768-60999), clear of `npm start`'s 2xxx, 7946, 8080
export const PORT_STRIDE = 100 // node K listens on base + 100*K + offset
export const BASE_PORT_MIN = 1024 // unprivileged ports only
export const CLUSTER_FORM_TIMEOUT_MS = 60_000 // three nodes form in 5-10 s on a loaded 2-core VM; this leaves room
export const CLUSTER_POLL_MS = 300
export const STATUS_REQUEST_TIMEOUT_MS = 2_000 // one poll of one node's admin API
export const CLUSTER_STOP_TIMEOUT_MS = 15_000 // SIGTERM grace: a node closes sessions, the grid and the store
export const KILL_WAIT_MS = 5_000 // after SIGKILL, the kernel needs only moments
const LOG_TAIL_LINES = 5
const LOOPBACK = '127.0.0.1'

export type PortName = ServiceName | WebName | 'admin' | 'grid' | 'managesieve'

/**
 * The last two digits of each service's standard port, so 20125 reads as node 1's port 25; the autoconfig web
 * listeners, whose 80 and 443 are taken by admin and imap, get 81 and 44.
 */
export const PORT_OFFSETS: Readonly<Record<PortName, number>> = {
  smtp: 25, submission: 87, smtps: 65, pop3: 10, pop3s: 95, imap: 43, imaps: 93, http: 81, https: 44, admin: 80, grid: 46, managesieve: 90
}

export interface ClusterNode {
  name: string // node1, node2, ...
  id: string | null // the libp2p peer id, once the node answered
  pid: number
  dataDir: string
  config: string
  log: string
  ports: Record<PortName, number>
}

export interface ClusterFile {
  createdAt: string
  replicas: number
  basePort: number
  nodes: ClusterNode[]
}

export interface ClusterIo {
  stdout: { write (s: string): unknown }
  stderr: { write (s: string): unknown }
  env: Record<string, string | undefined>
}

export interface UpOptions {
  dir: string
  nodes: number
  replicas: number
  basePort: number
  timeoutMs: number
  json: boolean
}

const CLI = fileURLToPath(new URL('./cli.ts', import.meta.url))

export function nodePorts (basePort: number, k: number): Record<PortName, number> {
  const ports = {} as Record<PortName, number>
  for (const [name, offset] of Object.entries(PORT_OFFSETS) as Array<[PortName, number]>) ports[name] = basePort + PORT_STRIDE * k + offset
  return ports
}

/** Whether nothing listens on 127.0.0.1:port (bound and released at once). */
function portFree (port: number): Promise<boolean> {
  return new Promise(resolve => {
    const srv = createServer()
    srv.once('error', () => resolve(false))
    srv.listen({ host: LOOPBACK, port, exclusive: true }, () => srv.close(() => resolve(true)))
  })
}

const PROC = existsSync('/proc/self/cmdline')

/**
 * Whether the process recorded for this node still runs it: alive, not a zombie, and (where /proc tells)
 * running our config file, so a recycled pid is never signalled.
 */
async function runs (node: Pick<ClusterNode, 'pid' | 'config'>): Promise<boolean> {
  if (!Number.isSafeInteger(node.pid) || node.pid <= 0 || !processAlive(node.pid)) return false
  if (!PROC) return true
  try {
    const stat = await readFile(`/proc/${node.pid}/stat`, 'utf8')
    if (/\)\s+Z/.test(stat)) return false
    return (await readFile(`/proc/${node.pid}/cmdline`, 'utf8')).split('\0').includes(node.config)
  } catch {
    return false
  }
}

async function readCluster (dir: string): Promise<ClusterFile | null> {
  let text: string
  try {
    text = await readFile(join(dir, CLUSTER_FILE), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
  try {
    const c = JSON.parse(text) as ClusterFile
    if (!Array.isArray(c.nodes)) throw new Error('no nodes')
    return c
  } catch {
    throw new CliError(`${join(dir, CLUSTER_FILE)} is not a cluster file`)
  }
}

async function writeCluster (dir: string, cluster: ClusterFile): Promise<void> {
  const path = join(dir, CLUSTER_FILE)
  await writeFile(`${path}.tmp`, JSON.stringify(cluster, null, 2) + '\n')
  await rename(`${path}.tmp`, path)
}

function nodeToml (dir: string, node: ClusterNode, bootstrap: string[], replicas: number): string {
  const listen: Record<string, unknown> = { host: LOOPBACK }
  for (const s of SERVICE_NAMES) listen[s] = { port: node.ports[s] }
  // a cluster.json from before the web listeners has no ports for them: they stay off
  for (const s of WEB_NAMES) listen[s] = node.ports[s] === undefined ? { enabled: false } : { port: node.ports[s] }
  listen.managesieve = node.ports.managesieve === undefined ? { enabled: false } : { port: node.ports.managesieve }
  const body = stringify({
    dataDir: node.dataDir,
    hostname: `${node.name}.localhost`,
    listen,
    admin: { host: LOOPBACK, port: node.ports.admin },
    grid: { enabled: true, listen: [`/ip4/${LOOPBACK}/tcp/${node.ports.grid}`], bootstrap, mdns: false, replicas }
  })
  return `# Written by \`mailgrid cluster up --dir ${dir}\`: ${node.name} of a local grid. The cluster key is in\n` +
    `# ${CLUSTER_KEY_FILE} beside this file. Restart this node alone with: mailgrid start --config ${node.config}\n\n${body}\n`
}

/** Every MAILGRID_* variable of the caller is dropped: the node's config file is the whole truth. */
function childEnv (env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(env)) if (v !== undefined && !k.startsWith('MAILGRID_')) out[k] = v
  return out
}

async function spawnNode (node: ClusterNode, env: Record<string, string>): Promise<number> {
  const log = await open(node.log, 'a')
  try {
    const child = spawn(process.execPath, [...NODE_FLAGS, CLI, 'start', '--config', node.config], {
      cwd: node.dataDir, env, detached: true, stdio: ['ignore', log.fd, log.fd]
    })
    const pid = await new Promise<number>((resolve, reject) => {
      child.once('error', reject)
      child.once('spawn', () => resolve(child.pid ?? 0))
    })
    child.unref()
    return pid
  } finally {
    await log.close()
  }
}

async function logTail (path: string): Promise<string[]> {
  const text = await readFile(path, 'utf8').catch(() => '')
  return text.trimEnd().split('\n').slice(-LOG_TAIL_LINES)
}

type Probe = { kind: 'exited' } | { kind: 'waiting', why: string } | { kind: 'status', grid: GridStatus | null, id: string | null }

async function probe (node: ClusterNode): Promise<Probe> {
  if (!await runs(node)) return { kind: 'exited' }
  try {
    const st = await (await connect(node.dataDir, { timeoutMs: STATUS_REQUEST_TIMEOUT_MS })).request('GET', '/v1/status')
    const grid = (st.grid ?? null) as GridStatus | null
    return { kind: 'status', grid, id: grid?.self ?? null }
  } catch (err) {
    return { kind: 'waiting', why: (err as Error).message }
  }
}

function aliveIds (grid: GridStatus | null): Set<string> {
  return new Set((grid?.members ?? []).filter(m => m.status === 'alive').map(m => m.id))
}

/** What keeps the grid from being formed, one line per node that is not there yet. */
function missing (nodes: ClusterNode[], probes: Probe[]): string[] {
  const lines: string[] = []
  probes.forEach((p, i) => {
    const n = nodes[i]
    if (p.kind === 'exited') lines.push(`${n.name}: exited (see ${n.log})`)
    else if (p.kind === 'waiting') lines.push(`${n.name}: admin API not answering yet (${p.why})`)
    else if (p.grid === null) lines.push(`${n.name}: runs without a grid`)
    else {
      const alive = aliveIds(p.grid)
      if (alive.size === nodes.length) return
      const absent = nodes.filter(o => o.id === null || !alive.has(o.id)).map(o => o.id === null ? `${o.name} (not identified yet)` : o.name)
      lines.push(`${n.name}: sees ${alive.size} of ${nodes.length} members alive; missing ${absent.join(', ')}`)
    }
  })
  return lines
}

export async function clusterUp (opts: UpOptions, io: ClusterIo): Promise<void> {
  const dir = resolve(opts.dir)
  const last = opts.basePort + PORT_STRIDE * opts.nodes + PORT_STRIDE - 1
  if (last > 65535) throw new CliError(`--base-port ${opts.basePort} leaves no room for ${opts.nodes} nodes (highest port ${last} > 65535)`)
  await mkdir(dir, { recursive: true })
  const previous = await readCluster(dir)
  for (const n of previous?.nodes ?? []) {
    if (await runs(n)) throw new CliError(`a cluster already runs in ${dir} (${n.name}, pid ${n.pid}); stop it with: mailgrid cluster down --dir ${dir}`)
  }

  const nodes: ClusterNode[] = []
  for (let k = 1; k <= opts.nodes; k++) {
    const dataDir = join(dir, `node${k}`)
    nodes.push({
      name: `node${k}`, id: null, pid: 0, dataDir, config: join(dataDir, NODE_CONFIG_FILE), log: join(dataDir, NODE_LOG_FILE), ports: nodePorts(opts.basePort, k)
    })
  }
  for (const n of nodes) {
    for (const [service, port] of Object.entries(n.ports)) {
      if (!await portFree(port)) throw new CliError(`port ${port} (${n.name} ${service}) is in use; choose another --base-port`)
    }
  }

  const key = await ensureClusterKey(dir)
  for (const n of nodes) {
    await mkdir(n.dataDir, { recursive: true })
    const keyFile = join(n.dataDir, CLUSTER_KEY_FILE)
    await writeFile(keyFile, key + '\n', { mode: 0o600 })
    await chmod(keyFile, 0o600)
    const bootstrap = nodes.filter(o => o !== n).map(o => `/ip4/${LOOPBACK}/tcp/${o.ports.grid}`)
    await writeFile(n.config, nodeToml(dir, n, bootstrap, opts.replicas))
  }

  const cluster: ClusterFile = { createdAt: new Date().toISOString(), replicas: opts.replicas, basePort: opts.basePort, nodes }
  const env = childEnv(io.env)
  try {
    for (const n of nodes) n.pid = await spawnNode(n, env)
  } finally {
    // Written before waiting, so `cluster down` finds the processes even if this command is interrupted.
    await writeCluster(dir, cluster)
  }

  const fail = async (why: string, detail: string[]): Promise<never> => {
    for (const line of detail) io.stderr.write(`  ${line}\n`)
    await stopNodes(nodes)
    await rm(join(dir, CLUSTER_FILE), { force: true })
    throw new CliError(`${why}; stopped the nodes it started (logs: ${join(dir, 'nodeK', NODE_LOG_FILE)})`)
  }
  const deadline = Date.now() + opts.timeoutMs
  for (;;) {
    const probes = await Promise.all(nodes.map(probe))
    probes.forEach((p, i) => { if (p.kind === 'status' && p.id !== null) nodes[i].id = p.id })
    const exited = nodes.filter((_, i) => probes[i].kind === 'exited')
    if (exited.length > 0) {
      const detail: string[] = []
      for (const n of exited) detail.push(`${n.name} exited; the end of ${n.log}:`, ...(await logTail(n.log)).map(l => `  ${l}`))
      await fail(`${exited.map(n => n.name).join(', ')} stopped before the grid formed`, detail)
    }
    const gaps = missing(nodes, probes)
    if (gaps.length === 0) break
    if (Date.now() >= deadline) await fail(`the grid did not form within ${Math.round(opts.timeoutMs / 1000)} s`, gaps)
    await sleep(CLUSTER_POLL_MS)
  }
  await writeCluster(dir, cluster)

  if (opts.json) {
    io.stdout.write(JSON.stringify(cluster, null, 2) + '\n')
    return
  }
  const rows = [['NAME', 'ID', 'PID', 'SMTP', 'SUBMISSION', 'IMAP', 'POP3', 'ADMIN', 'GRID', 'DATA']]
  for (const n of nodes) {
    rows.push([n.name, shortId(n.id ?? ''), String(n.pid), ...(['smtp', 'submission', 'imap', 'pop3', 'admin', 'grid'] as const).map(p => String(n.ports[p])), n.dataDir])
  }
  io.stdout.write([
    `a grid of ${nodes.length} nodes is up on ${LOOPBACK} (R=${opts.replicas}); details in ${join(dir, CLUSTER_FILE)}`,
    ...table(rows),
    `add users on any node: mailgrid user add ADDRESS --password - --data ${nodes[0].dataDir}`,
    `stop the grid: mailgrid cluster down --dir ${dir}`
  ].join('\n') + '\n')
}

type StopOutcome = 'stopped' | 'killed' | 'not running' | 'still running'

/** SIGTERM to every node still running, SIGKILL to those alive after CLUSTER_STOP_TIMEOUT_MS. */
async function stopNodes (nodes: ClusterNode[]): Promise<StopOutcome[]> {
  const outcomes: StopOutcome[] = []
  const pending: number[] = []
  for (const [i, n] of nodes.entries()) {
    if (await runs(n)) {
      try {
        process.kill(n.pid, 'SIGTERM')
      } catch {}
      pending.push(i)
      outcomes.push('stopped')
    } else {
      outcomes.push('not running')
    }
  }
  const waitGone = async (ids: number[], ms: number): Promise<number[]> => {
    const until = Date.now() + ms
    let left = ids
    while (left.length > 0 && Date.now() < until) {
      await sleep(100)
      const alive = await Promise.all(left.map(async i => await runs(nodes[i])))
      left = left.filter((_, j) => alive[j])
    }
    return left
  }
  const stubborn = await waitGone(pending, CLUSTER_STOP_TIMEOUT_MS)
  for (const i of stubborn) {
    try {
      process.kill(nodes[i].pid, 'SIGKILL')
    } catch {}
    outcomes[i] = 'killed'
  }
  for (const i of await waitGone(stubborn, KILL_WAIT_MS)) outcomes[i] = 'still running'
  return outcomes
}

async function needCluster (dir: string): Promise<ClusterFile> {
  const cluster = await readCluster(resolve(dir))
  if (cluster === null) throw new CliError(`no cluster in ${dir} (no ${CLUSTER_FILE}; start one with: mailgrid cluster up --nodes 3 --dir ${dir})`)
  return cluster
}

export async function clusterDown (dir: string, json: boolean, io: ClusterIo): Promise<void> {
  const cluster = await needCluster(dir)
  const outcomes = await stopNodes(cluster.nodes)
  const report = cluster.nodes.map((n, i) => ({ name: n.name, pid: n.pid, outcome: outcomes[i] }))
  const what: Record<StopOutcome, string> = {
    stopped: 'stopped',
    killed: `killed (still running ${CLUSTER_STOP_TIMEOUT_MS / 1000} s after SIGTERM)`,
    'not running': 'was not running',
    'still running': 'still running after SIGKILL'
  }
  io.stdout.write(json ? JSON.stringify(report, null, 2) + '\n' : report.map(r => `${r.name} (pid ${r.pid}): ${what[r.outcome]}\n`).join(''))
  if (outcomes.includes('still running')) throw new CliError('some nodes could not be stopped')
}

export async function clusterStatus (dir: string, json: boolean, io: ClusterIo): Promise<void> {
  const cluster = await needCluster(dir)
  const views = await Promise.all(cluster.nodes.map(async n => {
    if (!await runs(n)) return { node: n, running: false, status: null, error: null }
    try {
      const status = await (await connect(n.dataDir, { timeoutMs: STATUS_REQUEST_TIMEOUT_MS })).request('GET', '/v1/status')
      return { node: n, running: true, status, error: null }
    } catch (err) {
      return { node: n, running: true, status: null, error: (err as Error).message }
    }
  }))
  if (json) {
    io.stdout.write(JSON.stringify(views.map(v => ({ name: v.node.name, pid: v.node.pid, running: v.running, status: v.status, error: v.error })), null, 2) + '\n')
    return
  }
  const lines: string[] = []
  for (const v of views) {
    const head = `${v.node.name} (pid ${v.node.pid}, admin port ${v.node.ports.admin}, data ${v.node.dataDir})`
    if (!v.running) lines.push(`${head}: not running`)
    else if (v.status === null) lines.push(`${head}: not answering (${v.error ?? ''})`)
    else lines.push(`${head}: users ${v.status.users as number}, connections ${v.status.connections as number}`, ...gridLines(v.status.grid ?? null).map(l => l === '' ? l : `  ${l}`), '')
  }
  io.stdout.write(lines.map(l => l + '\n').join(''))
}

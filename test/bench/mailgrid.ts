// The mailgrid side of the benchmark: users created through the store before the node starts (low scrypt cost,
// as the tests use), the node in a child process (node-proc.ts), its RSS and CPU read from /proc.

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { createStore, isMailError } from '../../store/index.ts'

const START_TIMEOUT_MS = 120_000 // opening a store of 10,000 users on a busy 2-core machine
const STOP_TIMEOUT_MS = 60_000
const USER_BATCH = 64 // concurrent addUser calls while seeding (they share group commits)

export interface MailgridNode {
  pid: number
  ports: Record<string, number>
  stop: () => Promise<void>
}

export async function seedUsers (dir: string, domain: string, users: string[], password: string): Promise<void> {
  const store = createStore({}, { path: dir, scryptLogN: 10 })
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

export async function startMailgrid (dir: string, opts: { sync: boolean }): Promise<MailgridNode> {
  // BENCH_NODE_ARGS passes Node flags to the node (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile it).
  const flags = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(s => s !== '')
  const child = spawn(process.execPath, [...flags, join(import.meta.dirname, 'node-proc.ts'), dir], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, MAILGRID_SYNC: opts.sync ? '1' : '0' }
  })
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  const ports = await new Promise<Record<string, number>>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`node did not start in ${START_TIMEOUT_MS} ms`)) }, START_TIMEOUT_MS)
    lines.on('line', l => { if (l.startsWith('READY ')) { clearTimeout(timer); resolve(JSON.parse(l.slice(6))) } })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`node exited with ${code}`)) })
  })
  return { pid: child.pid as number, ports, stop: async () => { await stopChild(child) } }
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
  return (Number(f[11]) + Number(f[12])) / 100 // utime + stime, in USER_HZ = 100 ticks
}

// Helpers for multi-host gossip tests: hosts on loopback in this process, a host in a child process (for
// SIGKILL), and bounded waiting on a condition.

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { createGossip } from '../../gossip/index.ts'
import type { Gossip, GossipInit, LoadSample, MemberStatus } from '../../gossip/index.ts'
import { tempDir } from '../helpers/tmp.ts'

export const KEY = 'test-cluster-key'

/** A fixed load sample, so tests do not spend CPU shelling out to systeminformation. */
export const sampleLoad = async (): Promise<LoadSample> => ({
  cpuPct: 1, memUsedBytes: 1, memTotalBytes: 2, diskFreeBytes: 3, netRxBytesPerSec: 0, netTxBytesPerSec: 0, sessions: 0
})

/** A test context, or anything that runs cleanups later (suite-level hooks). */
export interface Cleanups {
  after: (fn: () => Promise<void>) => void
}

export interface TestHost {
  gossip: Gossip
  dataDir: string
  addr: string
}

export function addrOf (g: Gossip): string {
  const a = g.member(g.self)?.addrs[0]
  if (a === undefined) throw new Error('host has no address')
  return a
}

/** Creates and starts a host; it is stopped when the test ends. */
export async function startHost (t: Cleanups, init: Partial<GossipInit> = {}, dataDir?: string): Promise<TestHost> {
  // the host stops before its directory goes: node:test runs after-hooks in the order they were added, and a
  // host still running writes its member list into the directory being removed (rm fails with ENOTEMPTY)
  const stops: Array<() => Promise<void>> = []
  const dir = dataDir ?? await tempDir({ after: (fn: () => Promise<void>) => { t.after(async () => { for (const s of stops) await s(); await fn() }) } }, 'mailgrid-gossip-')
  const gossip = createGossip({ sampleLoad }, { clusterKey: KEY, dataDir: dir, weight: 1, ...init })
  if (dataDir === undefined) stops.push(async () => { await gossip.stop() })
  else t.after(async () => { await gossip.stop() })
  await gossip.start()
  return { gossip, dataDir: dir, addr: addrOf(gossip) }
}

/** Polls `cond` every 25 ms until it holds; fails after `timeoutMs`. Returns the elapsed time. */
export async function waitFor (cond: () => boolean, timeoutMs: number, what: string): Promise<number> {
  const start = Date.now()
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 25))
  }
  return Date.now() - start
}

export function statusOf (g: Gossip, id: string): MemberStatus | undefined {
  return g.member(id)?.status
}

/** Every host sees every other as alive. */
export function formed (hosts: Gossip[]): boolean {
  return hosts.every(h => hosts.every(o => statusOf(h, o.self) === 'alive'))
}

export interface ChildHost {
  proc: ChildProcess
  id: string
  addr: string
}

/** A host in its own process (test/gossip/host-proc.ts), for SIGKILL. Killed when the test ends. */
export async function startChildHost (t: Cleanups, init: Partial<GossipInit>): Promise<ChildHost> {
  const dataDir = await tempDir(t, 'mailgrid-gossip-child-')
  const proc = spawn(process.execPath, [new URL('./host-proc.ts', import.meta.url).pathname, JSON.stringify({ clusterKey: KEY, dataDir, weight: 1, ...init })], {
    stdio: ['ignore', 'pipe', 'inherit']
  })
  t.after(async () => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL') })
  const lines = createInterface({ input: proc.stdout as NodeJS.ReadableStream })
  const timer = setTimeout(() => { proc.kill('SIGKILL') }, 20_000)
  try {
    const [line] = await Promise.race([
      once(lines, 'line') as Promise<[string]>,
      once(proc, 'exit').then(([code]) => { throw new Error(`child host exited with ${String(code)}`) })
    ])
    const ready = JSON.parse(line.replace(/^READY /, '')) as { id: string, addr: string }
    return { proc, ...ready }
  } finally {
    clearTimeout(timer)
  }
}

// The load sample a node gossips, and the capacity weight it claims on the ring. Sampling runs in the
// background every LOAD_REFRESH_MS (systeminformation shells out and reads /proc, far too slow for a
// heartbeat); a heartbeat copies the latest sample. Nothing places users by it (the weight is computed once, the
// disk alarm is store/disk.ts's): it is what `mailgrid grid` and the console show. On Linux a sample is three
// small reads of /proc and one statfs; systeminformation is used only elsewhere.

import { readFile, statfs } from 'node:fs/promises'
import { availableParallelism, totalmem } from 'node:os'
import si from 'systeminformation'
import type { LoadSample } from './types.ts'

const GIB = 1024 ** 3

/**
 * Capacity weight from the machine: 0.4·cores/4 + 0.3·RAM/8 GiB + 0.3·free disk/256 GiB, so a 4-core PC with
 * 8 GiB of RAM and 256 GiB free weighs 1.0, and twice everything weighs 2.0. Mail storage is mostly bounded by
 * disk and IMAP load by cores and page cache, hence the mix. Rounded to a tenth and floored at 0.1 so that free
 * disk drifting by a few bytes does not change the ring (the weight is computed once, at start).
 */
export function capacityWeight (cores: number, memTotalBytes: number, diskFreeBytes: number): number {
  const w = 0.4 * cores / 4 + 0.3 * (memTotalBytes / GIB) / 8 + 0.3 * (diskFreeBytes / GIB) / 256
  return Math.max(0.1, Math.round(w * 10) / 10)
}

export async function diskFreeBytes (dir: string): Promise<number> {
  const s = await statfs(dir)
  return s.bavail * s.bsize
}

export async function machineWeight (dataDir: string): Promise<number> {
  return capacityWeight(availableParallelism(), totalmem(), await diskFreeBytes(dataDir))
}

export function emptyLoad (): LoadSample {
  return { cpuPct: 0, memUsedBytes: 0, memTotalBytes: totalmem(), diskFreeBytes: 0, netRxBytesPerSec: 0, netTxBytesPerSec: 0, sessions: 0 }
}

// On Linux, CPU and network counters are read from /proc without blocking: systeminformation's currentLoad
// runs `cat /proc/stat` with execSync and networkStats execSyncs per interface, stalling the event loop (every
// session of the node) for the length of a child process at each sample (seen in the outbound bench's profile).
interface Counters { at: number, busy: number, total: number, rx: number, tx: number, memTotal: number, memUsed: number }
let last: Counters | null = null

async function procCounters (now: number): Promise<Counters | null> {
  try {
    const [stat, dev, meminfo] = await Promise.all([readFile('/proc/stat', 'latin1'), readFile('/proc/net/dev', 'latin1'), readFile('/proc/meminfo', 'latin1')])
    // cpu  user nice system idle iowait irq softirq steal ...: busy is all but idle and iowait
    const cpu = /^cpu\s+(.*)$/m.exec(stat)?.[1].trim().split(/\s+/).map(Number) ?? []
    const total = cpu.slice(0, 8).reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0)
    const busy = total - (cpu[3] ?? 0) - (cpu[4] ?? 0)
    let rx = 0
    let tx = 0
    for (const line of dev.split('\n').slice(2)) {
      const m = /^\s*([^:\s]+):\s*(.*)$/.exec(line)
      if (m === null || m[1] === 'lo') continue
      const f = m[2].trim().split(/\s+/).map(Number)
      rx += f[0] ?? 0
      tx += f[8] ?? 0
    }
    // used as systeminformation counts it ("active"): total less MemAvailable (older kernels: MemFree + Buffers + Cached)
    const kib = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(meminfo)?.[1] ?? NaN) * 1024
    const memTotal = kib('MemTotal')
    const available = kib('MemAvailable')
    const memUsed = memTotal - (Number.isFinite(available) ? available : kib('MemFree') + kib('Buffers') + kib('Cached'))
    return { at: now, busy, total, rx, tx, memTotal, memUsed }
  } catch {
    return null
  }
}

async function linuxSample (): Promise<{ cpuPct: number, rx: number, tx: number, memTotal: number, memUsed: number } | null> {
  const now = Date.now()
  const c = await procCounters(now)
  if (c === null || !Number.isFinite(c.memTotal) || !Number.isFinite(c.memUsed)) return null
  const prev = last
  last = c
  const mem = { memTotal: c.memTotal, memUsed: c.memUsed }
  if (prev === null || c.total <= prev.total || c.at <= prev.at) return { cpuPct: 0, rx: 0, tx: 0, ...mem }
  const secs = (c.at - prev.at) / 1000
  return { cpuPct: 100 * (c.busy - prev.busy) / (c.total - prev.total), rx: Math.max(0, c.rx - prev.rx) / secs, tx: Math.max(0, c.tx - prev.tx) / secs, ...mem }
}

/** One sample of the machine (sessions left at 0: the caller knows those). */
export async function sampleLoad (dataDir: string): Promise<LoadSample> {
  const [linux, disk] = await Promise.all([
    process.platform === 'linux' ? linuxSample() : Promise.resolve(null), diskFreeBytes(dataDir).catch(() => 0)
  ])
  let cpuPct = linux?.cpuPct ?? 0
  let rx = linux?.rx ?? 0
  let tx = linux?.tx ?? 0
  let memUsed = linux?.memUsed ?? 0
  let memTotal = linux?.memTotal ?? 0
  if (linux === null) {
    const [cpu, net, mem] = await Promise.all([si.currentLoad(), si.networkStats('*'), si.mem()])
    cpuPct = cpu.currentLoad
    memUsed = mem.active
    memTotal = mem.total
    for (const n of net) {
      if (n.iface === 'lo') continue
      rx += n.rx_sec ?? 0
      tx += n.tx_sec ?? 0
    }
  }
  const round = (x: number): number => Number.isFinite(x) ? Math.max(0, Math.round(x)) : 0
  return {
    cpuPct: Number.isFinite(cpuPct) ? Math.round(cpuPct * 10) / 10 : 0,
    memUsedBytes: round(memUsed),
    memTotalBytes: round(memTotal),
    diskFreeBytes: round(disk),
    netRxBytesPerSec: round(rx),
    netTxBytesPerSec: round(tx),
    sessions: 0
  }
}

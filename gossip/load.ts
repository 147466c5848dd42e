// The load sample a node gossips, and the capacity weight it claims on the ring. Sampling runs in the
// background every LOAD_REFRESH_MS (systeminformation shells out and reads /proc, far too slow for a
// heartbeat); a heartbeat copies the latest sample.

import { statfs } from 'node:fs/promises'
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

/** One sample of the machine (sessions left at 0: the caller knows those). */
export async function sampleLoad (dataDir: string): Promise<LoadSample> {
  const [cpu, mem, net, disk] = await Promise.all([
    si.currentLoad(), si.mem(), si.networkStats('*'), diskFreeBytes(dataDir).catch(() => 0)
  ])
  let rx = 0
  let tx = 0
  for (const n of net) {
    if (n.iface === 'lo') continue
    rx += n.rx_sec ?? 0
    tx += n.tx_sec ?? 0
  }
  const round = (x: number): number => Number.isFinite(x) ? Math.max(0, Math.round(x)) : 0
  return {
    cpuPct: Number.isFinite(cpu.currentLoad) ? Math.round(cpu.currentLoad * 10) / 10 : 0,
    memUsedBytes: round(mem.active),
    memTotalBytes: round(mem.total),
    diskFreeBytes: round(disk),
    netRxBytesPerSec: round(rx),
    netTxBytesPerSec: round(tx),
    sessions: 0
  }
}

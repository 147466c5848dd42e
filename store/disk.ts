// The free-space check of the data disk. A store that runs out of space answers 452 and recovers when space
// returns; this watch acts before that: below a floor the node is "low" (logged `disk_low`, shown in status,
// and told to the grid, which then places no new users and no new copies on it), and it is "ok" again only
// DISK_RECOVER_MARGIN above the floor (`disk_ok`), so a disk hovering at the floor does not flap.

import { readFile, rename, rm, statfs, writeFile } from 'node:fs/promises'
import type { Logger } from 'pino'

/** The floor when none is configured: 1 GiB, or 5 % of the data filesystem when that is smaller (a small disk). */
export const DISK_FLOOR_BYTES_DEFAULT = 1024 ** 3
export const DISK_FLOOR_FRACTION_DEFAULT = 0.05
/** Back to ok at the floor plus 10 % of it: a margin bigger than one large message on any floor worth having. */
export const DISK_RECOVER_MARGIN = 0.1
/** statfs is one system call: every 2 s costs nothing and lets the grid hear of a filling disk within seconds. */
export const DISK_CHECK_MS = 2000

/**
 * The floor for a filesystem of `totalBytes`: `minFreeBytes` when it is positive; 0 (off) when it is 0; and when it is
 * negative (the default), the smaller of DISK_FLOOR_BYTES_DEFAULT and DISK_FLOOR_FRACTION_DEFAULT of the filesystem.
 */
export function diskFloorBytes (minFreeBytes: number, totalBytes: number): number {
  if (minFreeBytes >= 0) return minFreeBytes
  return Math.min(DISK_FLOOR_BYTES_DEFAULT, Math.floor(totalBytes * DISK_FLOOR_FRACTION_DEFAULT))
}

export interface DiskState {
  low: boolean
  since: number // ms: when it became low (0 while ok)
  freeBytes: number // available to the node (statfs bavail), at the last check
  totalBytes: number
  floorBytes: number // 0: the check is off
}

/** What statfs says, in the units the watch needs (a test replaces it). */
export type DiskSpace = (path: string) => Promise<{ freeBytes: number, totalBytes: number }>

export async function diskSpace (path: string): Promise<{ freeBytes: number, totalBytes: number }> {
  const s = await statfs(path)
  return { freeBytes: s.bavail * s.bsize, totalBytes: s.blocks * s.bsize }
}

export interface DiskWatchComponents {
  logger: Logger
  now?: () => number
  space?: DiskSpace
}

export interface DiskWatchInit {
  /** The data dir (any path on the filesystem to watch). */
  path: string
  /** Bytes that must stay free: negative = the default rule (diskFloorBytes), 0 = off. */
  minFreeBytes: number
  checkMs?: number
  /**
   * A small file that holds `since` while the disk is low, so a node restarted while low keeps the instant it went
   * low (users created after it stay off it; the grid reads `since` to tell them from the ones it holds).
   */
  statePath?: string
}

export class DiskWatch {
  private readonly log: Logger
  private readonly now: () => number
  private readonly space: DiskSpace
  private readonly init: DiskWatchInit
  private readonly listeners = new Set<(s: DiskState) => void>()
  private timer: NodeJS.Timeout | undefined
  private checking: Promise<void> | undefined
  private current: DiskState = { low: false, since: 0, freeBytes: 0, totalBytes: 0, floorBytes: 0 }
  private remembered: number | undefined // `since` of a low disk before this start, used by the first check only

  constructor (components: DiskWatchComponents, init: DiskWatchInit) {
    this.log = components.logger
    this.now = components.now ?? Date.now
    this.space = components.space ?? diskSpace
    this.init = init
  }

  get state (): DiskState {
    return { ...this.current }
  }

  /** Called after every change between low and ok (not on every check). Returns the unsubscribe function. */
  onChange (listener: (s: DiskState) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  /** The first check, then one every checkMs. Twice-safe. */
  async start (): Promise<void> {
    if (this.timer !== undefined) return
    this.remembered = await this.recall()
    this.timer = setInterval(() => { void this.check() }, this.init.checkMs ?? DISK_CHECK_MS)
    this.timer.unref()
    await this.check()
  }

  stop (): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** One check now (checks never overlap: a second caller waits for the one running). */
  async check (): Promise<void> {
    if (this.checking !== undefined) return await this.checking
    this.checking = this.measure().finally(() => { this.checking = undefined })
    await this.checking
  }

  private async measure (): Promise<void> {
    let space: { freeBytes: number, totalBytes: number }
    try {
      space = await this.space(this.init.path)
    } catch (err) {
      // a failed statfs tells nothing about space: keep the last state, and say so
      this.log.warn({ event: 'disk_check_failed', path: this.init.path, err: String(err) }, 'cannot read the free space')
      return
    }
    const floorBytes = diskFloorBytes(this.init.minFreeBytes, space.totalBytes)
    const was = this.current
    let low = was.low
    if (floorBytes === 0) low = false
    else if (!was.low && space.freeBytes < floorBytes) low = true
    else if (was.low && space.freeBytes >= floorBytes + Math.round(floorBytes * DISK_RECOVER_MARGIN)) low = false
    const remembered = this.remembered
    this.remembered = undefined
    this.current = { low, since: low ? (was.low ? was.since : remembered ?? this.now()) : 0, ...space, floorBytes }
    if (low === was.low) {
      if (!low && remembered !== undefined) await this.remember(null) // it came back while the node was down
      return
    }
    await this.remember(low ? this.current.since : null)
    const fields = { path: this.init.path, freeBytes: space.freeBytes, totalBytes: space.totalBytes, floorBytes }
    if (low) this.log.warn({ event: 'disk_low', ...fields }, 'free space below the floor: no new users or copies on this node')
    else this.log.info({ event: 'disk_ok', ...fields }, 'free space back above the floor')
    for (const l of this.listeners) {
      try {
        l(this.state)
      } catch (err) {
        this.log.error({ event: 'disk_listener_failed', err }, 'a disk listener threw')
      }
    }
  }

  private async recall (): Promise<number | undefined> {
    if (this.init.statePath === undefined) return undefined
    try {
      const since = (JSON.parse(await readFile(this.init.statePath, 'utf8')) as { since?: unknown }).since
      return typeof since === 'number' && Number.isFinite(since) && since > 0 ? since : undefined
    } catch {
      return undefined // none (the usual case) or unreadable: the next low state starts now
    }
  }

  /** Best effort: a low disk may refuse even this small write, and then a restart only loses the old `since`. */
  private async remember (since: number | null): Promise<void> {
    const path = this.init.statePath
    if (path === undefined) return
    try {
      if (since === null) {
        await rm(path, { force: true })
      } else {
        await writeFile(`${path}.tmp`, JSON.stringify({ since }))
        await rename(`${path}.tmp`, path)
      }
    } catch (err) {
      this.log.warn({ event: 'disk_state_not_saved', path, err: String(err) }, 'cannot keep the disk state for a restart')
    }
  }
}

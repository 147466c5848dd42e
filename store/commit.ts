// Group commit: concurrent writers each hand in one atomic batch; batches queued while an fsync is under way
// are merged into the next one, so N concurrent deliveries cost one blob-file fdatasync and one LevelDB
// synced write instead of N. Order is preserved: a batch never becomes durable before one submitted earlier.

import type { AbstractBatchOperation } from 'abstract-level'

export type BatchOp = AbstractBatchOperation<any, string, any>

export interface CommitTarget {
  batch (ops: BatchOp[], options: { sync: boolean }): Promise<void>
}

export const GROUP_OPS_MAX = 20_000 // one LevelDB write stays bounded in memory and latency

interface Pending {
  ops: BatchOp[]
  resolve: () => void
  reject: (err: unknown) => void
}

export class GroupCommit {
  private readonly db: CommitTarget
  private readonly beforeSync: () => Promise<void>
  private readonly sync: boolean
  private queue: Pending[] = []
  private running = false
  groups = 0
  batches = 0

  private readonly observe: ((seconds: number) => void) | undefined
  /** Told of each batch once it is durable, before its writer resumes (the store's record cache keeps up so). */
  onDurable: ((ops: BatchOp[]) => void) | undefined
  /** Told when a group failed, with its operations: what of it is on disk is not known. */
  onFailed: ((ops: BatchOp[]) => void) | undefined

  /** `observe`: told how long each group took to become durable (the blob fsync and the synced LevelDB write). */
  constructor (db: CommitTarget, beforeSync: () => Promise<void>, sync = true, observe?: (seconds: number) => void) {
    this.db = db
    this.beforeSync = beforeSync
    this.sync = sync
    this.observe = observe
  }

  submit (ops: BatchOp[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ ops, resolve, reject })
      if (!this.running) void this.drain()
    })
  }

  private async drain (): Promise<void> {
    this.running = true
    try {
      while (this.queue.length > 0) {
        const group: Pending[] = []
        let n = 0
        while (this.queue.length > 0 && (group.length === 0 || n + this.queue[0].ops.length <= GROUP_OPS_MAX)) {
          const p = this.queue.shift() as Pending
          group.push(p)
          n += p.ops.length
        }
        try {
          const started = performance.now()
          if (this.sync) await this.beforeSync()
          await this.db.batch(group.flatMap(p => p.ops), { sync: this.sync })
          this.observe?.((performance.now() - started) / 1000)
          this.groups++
          this.batches += group.length
          if (this.onDurable !== undefined) {
            try {
              for (const p of group) this.onDurable(p.ops)
            } catch {
              this.onFailed?.(group.flatMap(p => p.ops))
            }
          }
          for (const p of group) p.resolve()
        } catch (err) {
          this.onFailed?.(group.flatMap(p => p.ops))
          for (const p of group) p.reject(err)
        }
      }
    } finally {
      this.running = false
    }
  }
}

// Group commit: concurrent writers each hand in one atomic batch; batches queued while an fsync is under way
// are merged into the next one, so N concurrent deliveries cost one blob-file fdatasync and one LevelDB
// synced write instead of N. Order is preserved: a batch never becomes durable before one submitted earlier.
// A batch may name writes it needs (the bodies it indexes, still on their way to their segment file): it commits
// only if they all succeeded, and fails alone if one did not.

import type { AbstractBatchOperation } from 'abstract-level'

export type BatchOp = AbstractBatchOperation<any, string, any>

export interface CommitTarget {
  batch (ops: BatchOp[], options: { sync: boolean }): Promise<void>
}

export const GROUP_OPS_MAX = 20_000 // one LevelDB write stays bounded in memory and latency

interface Pending {
  ops: BatchOp[]
  needs: ReadonlyArray<Promise<unknown>> | undefined
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

  /** Commits `ops` durably in the next group, once every write in `needs` has succeeded (else rejects with its error). */
  submit (ops: BatchOp[], needs?: ReadonlyArray<Promise<unknown>>): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ ops, needs: needs === undefined || needs.length === 0 ? undefined : needs, resolve, reject })
      if (!this.running) void this.drain()
    })
  }

  private async drain (): Promise<void> {
    this.running = true
    try {
      while (this.queue.length > 0) {
        let group: Pending[] = []
        let n = 0
        while (this.queue.length > 0 && (group.length === 0 || n + this.queue[0].ops.length <= GROUP_OPS_MAX)) {
          const p = this.queue.shift() as Pending
          group.push(p)
          n += p.ops.length
        }
        if (group.some(p => p.needs !== undefined)) group = await this.withNeedsMet(group)
        if (group.length === 0) continue
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

  /** The group's batches whose needed writes all succeeded; each other one fails alone (nothing of it was written). */
  private async withNeedsMet (group: Pending[]): Promise<Pending[]> {
    const met: Pending[] = []
    for (const p of group) {
      try {
        if (p.needs !== undefined) await Promise.all(p.needs)
        met.push(p)
      } catch (err) {
        this.onFailed?.(p.ops)
        p.reject(err)
      }
    }
    return met
  }
}

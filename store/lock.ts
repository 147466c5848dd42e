// Per-key async mutual exclusion. A user's writes are ordered by holding that user's lock from reading its
// state to the durable commit of the batch; writes of different users proceed in parallel (and share fsyncs
// through the group committer).

export class KeyedLock {
  private readonly tails = new Map<string, Promise<void>>()

  /** Runs fn while holding the locks of all keys (taken in sorted order, so two callers cannot deadlock). */
  async with<T> (keys: string[], fn: () => Promise<T>): Promise<T> {
    const sorted = [...new Set(keys)].sort()
    const releases: Array<() => void> = []
    try {
      for (const k of sorted) releases.push(await this.acquire(k))
      return await fn()
    } finally {
      for (const r of releases.reverse()) r()
    }
  }

  private async acquire (key: string): Promise<() => void> {
    const prev = this.tails.get(key) ?? Promise.resolve()
    let release!: () => void
    const mine = new Promise<void>(resolve => { release = resolve })
    const tail = prev.then(() => mine)
    this.tails.set(key, tail)
    await prev
    return () => {
      release()
      if (this.tails.get(key) === tail) this.tails.delete(key)
    }
  }

  isLocked (key: string): boolean {
    return this.tails.has(key)
  }
}

// Coalesces point reads: the gets asked for in one turn of the event loop go to LevelDB as one multi-get. A
// SEARCH that evaluates a batch of messages together, or a FETCH that prepares several responses ahead, then
// costs one thread-pool round trip per batch instead of one per message (profiles of SEARCH SUBJECT showed the
// node idle half the time, waiting on a get per message).

/** Keys per multi-get: bounds one read's memory and latency (a few hundred structures of a few KiB). */
export const BATCH_GET_KEYS_MAX = 512

interface Waiting<V> {
  key: string
  resolve: (value: V | undefined) => void
  reject: (err: unknown) => void
}

export class BatchGet<V> {
  private readonly getMany: (keys: string[]) => Promise<Array<V | undefined>>
  private pending: Array<Waiting<V>> = []
  private scheduled = false

  constructor (getMany: (keys: string[]) => Promise<Array<V | undefined>>) {
    this.getMany = getMany
  }

  /** The value of one key; each caller gets its own decoded copy, so callers may change what they get. */
  get (key: string): Promise<V | undefined> {
    return new Promise((resolve, reject) => {
      this.pending.push({ key, resolve, reject })
      if (!this.scheduled) {
        this.scheduled = true
        // setImmediate, not a microtask: gets asked for after a chain of awaits in the same turn still join
        setImmediate(() => { this.flush() })
      }
    })
  }

  private flush (): void {
    this.scheduled = false
    const all = this.pending
    this.pending = []
    for (let i = 0; i < all.length; i += BATCH_GET_KEYS_MAX) {
      const group = all.slice(i, i + BATCH_GET_KEYS_MAX)
      this.getMany(group.map(w => w.key)).then(values => {
        group.forEach((w, j) => { w.resolve(values[j]) })
      }, err => {
        for (const w of group) w.reject(err)
      })
    }
  }
}

// Group shipping to a peer, like group commit: while one request to a peer is in flight, the items submitted
// for that peer queue up and leave together in the next request. Under load this turns many small RPCs
// (one per delivery, one per replicated write) into few large ones. An item submitted while the peer has room
// waits for the end of the current turn of the event loop (setImmediate), so the items one event produces (the
// writes one group commit made durable, the deliveries of one batch) leave together instead of the first alone.

export interface BatcherInit<Q> {
  itemsMax: number
  bytesMax: number
  size: (item: Q) => number
  /** A second budget for what items put into the request's header (JSON), checked like bytesMax. */
  headerBytesMax?: number
  headerSize?: (item: Q) => number
  inFlightMax?: number // requests in flight per peer at once (default 2: one being answered, one being filled)
}

interface Waiting<Q, R> {
  item: Q
  resolve: (r: R) => void
  reject: (e: unknown) => void
}

export class PeerBatcher<Q, R> {
  private readonly send: (peer: string, items: Q[]) => Promise<R[]>
  private readonly init: BatcherInit<Q>
  private readonly queues = new Map<string, Array<Waiting<Q, R>>>()
  private readonly inFlight = new Map<string, number>()
  private readonly scheduled = new Set<string>()

  constructor (send: (peer: string, items: Q[]) => Promise<R[]>, init: BatcherInit<Q>) {
    this.send = send
    this.init = init
  }

  submit (peer: string, item: Q): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const q = this.queues.get(peer) ?? []
      q.push({ item, resolve, reject })
      this.queues.set(peer, q)
      if (this.scheduled.has(peer)) return
      this.scheduled.add(peer)
      setImmediate(() => {
        this.scheduled.delete(peer)
        this.pump(peer)
      })
    })
  }

  private pump (peer: string): void {
    const q = this.queues.get(peer)
    if (q === undefined || q.length === 0) return
    const busy = this.inFlight.get(peer) ?? 0
    if (busy >= (this.init.inFlightMax ?? 2)) return
    const batch: Array<Waiting<Q, R>> = []
    let bytes = 0
    let header = 0
    while (q.length > 0 && batch.length < this.init.itemsMax) {
      const n = this.init.size(q[0].item)
      const h = this.init.headerSize?.(q[0].item) ?? 0
      if (batch.length > 0 && (bytes + n > this.init.bytesMax || header + h > (this.init.headerBytesMax ?? Infinity))) break
      batch.push(q.shift() as Waiting<Q, R>)
      bytes += n
      header += h
    }
    if (q.length === 0) this.queues.delete(peer)
    this.inFlight.set(peer, busy + 1)
    this.send(peer, batch.map(w => w.item)).then(results => {
      batch.forEach((w, i) => {
        if (i < results.length) w.resolve(results[i])
        else w.reject(new Error('batch answer is short'))
      })
    }, err => {
      for (const w of batch) w.reject(err)
    }).finally(() => {
      const left = (this.inFlight.get(peer) ?? 1) - 1
      if (left <= 0) this.inFlight.delete(peer)
      else this.inFlight.set(peer, left)
      this.pump(peer)
    })
  }
}

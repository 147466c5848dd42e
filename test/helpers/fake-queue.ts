// An in-memory OutboundQueue for the appliance's tests (admin routes, CLI formatting): the operator's calls on
// a list of items, recorded, with the behaviour the interface promises. The queue itself is tested end to end
// in test/outbound/.

import type { OutboundQueue, QueueItem, QueueStats } from '../../node/outbound/types.ts'

export class FakeQueue implements OutboundQueue {
  items: QueueItem[]
  /** Shards this node leads: their items count in stats().local. */
  localShards: Set<string>
  readonly calls: string[] = []
  private readonly now: () => number

  constructor (items: QueueItem[], opts: { localShards?: string[], now?: () => number } = {}) {
    this.items = items.map(i => structuredClone(i))
    this.localShards = new Set(opts.localShards ?? items.map(i => i.shard))
    this.now = opts.now ?? Date.now
  }

  async list (): Promise<QueueItem[]> {
    this.calls.push('list')
    return structuredClone(this.items)
  }

  async show (id: string): Promise<QueueItem | null> {
    this.calls.push(`show ${id}`)
    return structuredClone(this.items.find(i => i.id === id) ?? null)
  }

  async retry (id: string): Promise<number> {
    this.calls.push(`retry ${id}`)
    let n = 0
    for (const i of this.items) {
      if ((id === 'all' || i.id === id) && !i.held) {
        i.nextAttemptAt = this.now()
        n++
      }
    }
    return n
  }

  async delete (id: string): Promise<boolean> {
    this.calls.push(`delete ${id}`)
    const before = this.items.length
    this.items = this.items.filter(i => i.id !== id)
    return this.items.length < before
  }

  async hold (id: string): Promise<boolean> {
    this.calls.push(`hold ${id}`)
    const i = this.items.find(x => x.id === id)
    if (i === undefined) return false
    i.held = true
    i.nextAttemptAt = 0
    return true
  }

  async release (id: string): Promise<boolean> {
    this.calls.push(`release ${id}`)
    const i = this.items.find(x => x.id === id)
    if (i === undefined) return false
    i.held = false
    i.nextAttemptAt = this.now()
    return true
  }

  async stats (): Promise<{ local: QueueStats, grid: QueueStats }> {
    const of = (items: QueueItem[]): QueueStats => ({
      size: items.length,
      oldestAgeMs: items.length === 0 ? 0 : this.now() - Math.min(...items.map(i => i.queuedAt))
    })
    return { local: of(this.items.filter(i => this.localShards.has(i.shard))), grid: of(this.items) }
  }
}

/** A queued message with every field set; `over` replaces some. */
export function queueItem (over: Partial<QueueItem> & { id: string }): QueueItem {
  return {
    shard: 'q0',
    from: 'alice@example.com',
    domain: 'example.org',
    rcpts: [{ address: 'bob@example.org', state: 'pending' }],
    size: 2048,
    queuedAt: 0,
    attempts: 0,
    nextAttemptAt: 0,
    held: false,
    lastError: '',
    delayNotified: false,
    ...over
  }
}

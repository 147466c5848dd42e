// An in-process stand-in for gossip/: several grid nodes in one test process share a MemoryNetwork that
// decides who can reach whom. Killing a node or cutting the network is one call and is seen by every
// member at once, so grid logic (replication, failover, re-mirroring, merge) is tested deterministically;
// the libp2p implementation is tested on its own and under the multi-process cluster tests.

import { Duplex, PassThrough } from 'node:stream'
import { createRing } from '../../gossip/ring.ts'
import { RPC_BODY_BYTES_MAX, RPC_HEADER_BYTES_MAX } from '../../gossip/constants.ts'
import { RpcError } from '../../gossip/types.ts'
import type {
  Gossip, Member, MemberInfo, MembershipEvent, MemberStatus, Ring, RpcCallOptions, RpcHandler, RpcMessage, StreamHandler
} from '../../gossip/types.ts'

export class MemoryNetwork {
  readonly nodes = new Map<string, MemoryGossip>()
  private readonly cut = new Set<string>() // "a|b" pairs that cannot talk

  create (id: string, weight = 1): MemoryGossip {
    const g = new MemoryGossip(this, id, weight)
    this.nodes.set(id, g)
    return g
  }

  reachable (a: string, b: string): boolean {
    if (a === b) return true
    const na = this.nodes.get(a)
    const nb = this.nodes.get(b)
    return na?.running === true && nb?.running === true && !this.cut.has(`${a}|${b}`)
  }

  /** Every node re-evaluates its view and tells its listeners what changed. */
  settle (): void {
    for (const n of this.nodes.values()) if (n.running) n.refresh()
  }

  /** Splits the grid: nodes in different groups cannot reach each other. */
  partition (...groups: string[][]): void {
    for (const g1 of groups) {
      for (const g2 of groups) {
        if (g1 === g2) continue
        for (const a of g1) for (const b of g2) this.cut.add(`${a}|${b}`)
      }
    }
    this.settle()
  }

  heal (): void {
    this.cut.clear()
    this.settle()
  }
}

function copy (m: RpcMessage): RpcMessage {
  // what crosses the wire is bytes: no shared objects between nodes, and the real transport's limits hold
  const json = JSON.stringify(m.header)
  if (Buffer.byteLength(json) > RPC_HEADER_BYTES_MAX) throw new RpcError('protocol', `header of ${Buffer.byteLength(json)} bytes exceeds ${RPC_HEADER_BYTES_MAX}`)
  if (m.body !== undefined && m.body.byteLength > RPC_BODY_BYTES_MAX) throw new RpcError('protocol', `body of ${m.body.byteLength} bytes exceeds ${RPC_BODY_BYTES_MAX}`)
  return { header: JSON.parse(json), ...(m.body !== undefined ? { body: Buffer.from(m.body) } : {}) }
}

export class MemoryGossip implements Gossip {
  readonly self: string
  private readonly net: MemoryNetwork
  running = false
  incarnation = 0
  private info: MemberInfo
  private readonly handlers = new Map<string, RpcHandler>()
  private readonly streamHandlers = new Map<string, StreamHandler>()
  private readonly listeners = new Set<(e: MembershipEvent) => void>()
  private view = new Map<string, Member>()

  constructor (net: MemoryNetwork, id: string, weight: number) {
    this.net = net
    this.self = id
    this.info = {
      id, incarnation: 0, name: id, addrs: [], host: '127.0.0.1', services: {}, weight, state: 'alive',
      load: { cpuPct: 0, memUsedBytes: 0, memTotalBytes: 0, diskFreeBytes: 0, netRxBytesPerSec: 0, netTxBytesPerSec: 0, sessions: 0 },
      meta: {}
    }
  }

  get published (): MemberInfo {
    return this.info
  }

  async start (): Promise<void> {
    if (this.running) return
    this.running = true
    this.incarnation++
    this.info = { ...this.info, incarnation: this.incarnation }
    this.net.settle()
  }

  async stop (): Promise<void> {
    if (!this.running) return
    this.info = { ...this.info, state: 'leaving' }
    this.running = false
    this.net.settle()
  }

  /**
   * Before start: the members a restarted node knew (gossip/ keeps the list on disk), entered as dead until heard
   * from, as gossip/detector.ts `remember` does. Cut the node off first to hold it in that state (partition).
   */
  remember (ids: string[]): void {
    for (const id of ids) {
      const n = this.net.nodes.get(id)
      if (n === undefined || id === this.self || this.view.has(id)) continue
      this.view.set(id, { ...n.published, status: 'dead', lastSeen: Date.now(), self: false })
    }
  }

  /** SIGKILL: gone without a word. */
  kill (): void {
    this.running = false
    this.net.settle()
  }

  refresh (): void {
    const next = new Map<string, Member>()
    for (const [id, n] of this.net.nodes) {
      const prev = this.view.get(id)
      const up = this.net.reachable(this.self, id)
      if (!up && prev === undefined) continue
      const status: MemberStatus = up ? (n.published.state === 'leaving' ? 'left' : 'alive') : (n.published.state === 'leaving' ? 'left' : 'dead')
      const m: Member = { ...(up ? n.published : prev as Member), status, lastSeen: Date.now(), self: id === this.self }
      next.set(id, m)
      if (prev === undefined) this.emit({ type: 'join', member: m })
      else if (prev.status !== status) this.emit({ type: 'status', member: m, from: prev.status })
      else if (prev.incarnation !== m.incarnation || prev.state !== m.state) this.emit({ type: 'update', member: m })
    }
    this.view = next
  }

  private emit (e: MembershipEvent): void {
    for (const l of this.listeners) l(e)
  }

  members (): Member[] {
    return [...this.view.values()]
  }

  memberCounts (): { known: number, alive: number } {
    let known = 0
    let alive = 0
    for (const m of this.view.values()) {
      if (m.status === 'left') continue
      known++
      if (m.status === 'alive') alive++
    }
    return { known, alive }
  }

  member (id: string): Member | undefined {
    return this.view.get(id)
  }

  ring (): Ring {
    return createRing(this.members().filter(m => m.status === 'alive' && (m.state === 'alive' || m.state === 'draining')).map(m => ({ id: m.id, weight: m.weight })))
  }

  onChange (listener: (event: MembershipEvent) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  update (info: Partial<Pick<MemberInfo, 'state' | 'weight' | 'services' | 'host' | 'meta'>> & { sessions?: number }): void {
    const { sessions, ...rest } = info
    this.info = { ...this.info, ...rest, load: { ...this.info.load, sessions: sessions ?? this.info.load.sessions } }
    this.net.settle()
  }

  handle (protocol: string, handler: RpcHandler): void {
    this.handlers.set(protocol, handler)
  }

  async call (peer: string, protocol: string, req: RpcMessage, opts?: RpcCallOptions): Promise<RpcMessage> {
    if (!this.running || !this.net.reachable(this.self, peer)) throw new RpcError('unreachable', `peer ${peer} unreachable`)
    const target = this.net.nodes.get(peer)
    const handler = target?.handlers.get(protocol)
    if (handler === undefined) throw new RpcError('refused', `peer ${peer} does not speak ${protocol}`)
    const ac = new AbortController()
    opts?.signal?.addEventListener('abort', () => ac.abort(), { once: true })
    await new Promise(resolve => setImmediate(resolve))
    const sent = copy(req) // a request over the limit fails at the caller, as in gossip/rpc.ts
    let res: RpcMessage
    try {
      res = copy(await handler(sent, { peer: this.self, signal: ac.signal }))
    } catch (err) {
      throw new RpcError('remote', err instanceof Error ? err.message : String(err))
    }
    // an answer from a peer that died or was cut off meanwhile never arrives
    if (!this.running || !this.net.reachable(this.self, peer)) throw new RpcError('unreachable', `peer ${peer} unreachable`)
    return res
  }

  handleStream (protocol: string, handler: StreamHandler): void {
    this.streamHandlers.set(protocol, handler)
  }

  async openStream (peer: string, protocol: string): Promise<Duplex> {
    if (!this.running || !this.net.reachable(this.self, peer)) throw new RpcError('unreachable', `peer ${peer} unreachable`)
    const handler = this.net.nodes.get(peer)?.streamHandlers.get(protocol)
    if (handler === undefined) throw new RpcError('refused', `peer ${peer} does not speak ${protocol}`)
    const aToB = new PassThrough()
    const bToA = new PassThrough()
    const a = Duplex.from({ readable: bToA, writable: aToB })
    const b = Duplex.from({ readable: aToB, writable: bToA })
    handler(b, { peer: this.self })
    return a
  }

  block (peers: string[]): void {
    this.net.partition([this.self], peers)
  }
}

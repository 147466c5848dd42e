// The Gossip service: one libp2p host, the membership view kept by the failure detector, heartbeats on a
// gossipsub topic, direct pings to the silent, discovery (bootstrap list, mDNS, addresses learned from
// heartbeats), the placement ring over the living, RPC and raw streams, and the partition test hook.

import { hostname } from 'node:os'
import type { Duplex } from 'node:stream'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import type { ConnectionGater, PeerId, PrivateKey } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import { pino } from 'pino'
import type { Logger } from 'pino'
import {
  DEAD_AFTER_MS, DEFAULT_LISTEN, DISK_LOW_MEMBERS_MAX, FORGET_AFTER_MS, HEARTBEAT_MS, LOAD_REFRESH_MS, MEMBER_ADDRS_MAX, PING_TIMEOUT_MS, RPC_INBOUND_STREAMS_MAX,
  RPC_OUTBOUND_STREAMS_MAX, SUSPECT_AFTER_HEARTBEATS
} from './constants.ts'
import { FailureDetector } from './detector.ts'
import { streamToDuplex } from './duplex.ts'
import { decodeHeartbeat, encodeHeartbeat } from './heartbeat.ts'
import { createHost } from './host.ts'
import type { Host } from './host.ts'
import { loadKnownMembers, loadOrCreatePeerKey, membersTopic, nextIncarnation, saveKnownMembers } from './identity.ts'
import { emptyLoad, machineWeight, sampleLoad } from './load.ts'
import { createRing } from './ring.ts'
import { openStream, RpcEndpoint } from './rpc.ts'
import type {
  DiskLow, Gossip, LoadSample, Member, MemberInfo, MembershipEvent, NodeState, Ring, RpcCallOptions, RpcHandler, RpcMessage, RpcStats, StreamHandler
} from './types.ts'
import { RpcError } from './types.ts'

export interface GossipInit {
  /** The grid's shared secret: keys the private network and names the membership topic. */
  clusterKey: string
  /** Holds peer.key (the identity) and incarnation. */
  dataDir: string
  /** libp2p listen multiaddrs; default DEFAULT_LISTEN. */
  listen?: string[]
  /** Multiaddrs dialled at start and re-dialled while not connected (with or without /p2p/<id>). */
  bootstrap?: string[]
  mdns?: boolean
  heartbeatMs?: number
  /** Default SUSPECT_AFTER_HEARTBEATS × heartbeatMs. */
  suspectAfterMs?: number
  /** Default DEAD_AFTER_MS, counted from the last sign of life. */
  deadAfterMs?: number
  forgetAfterMs?: number
  pingTimeoutMs?: number
  /** Capacity share; default from cores, RAM and free disk (load.ts capacityWeight). */
  weight?: number
  name?: string
  host?: string
  services?: Record<string, number>
  /** State published at start; default 'alive'. */
  state?: NodeState
  meta?: Record<string, unknown>
  /**
   * RPC channels to peers move to direct connections (direct.ts: sealed records on a TCP connection of their own,
   * keyed over the libp2p channel) once open; default true. Their listener binds the first listen address's IP.
   */
  direct?: boolean
}

/** The IP a direct channel listener binds: that of the first TCP listen address, or null when there is none. */
export function directHost (listen: string[]): string | null {
  for (const a of listen) {
    const m = /^\/ip[46]\/([^/]+)\/tcp\//.exec(a)
    if (m !== null) return m[1]
  }
  return null
}

export interface GossipComponents {
  logger?: Logger
  now?: () => number
  /** Replaces the systeminformation sampler (tests). */
  sampleLoad?: (dataDir: string) => Promise<LoadSample>
}

/** Re-dial period for bootstrap peers and members we are not connected to. */
const DISCOVERY_MS = 2000
/** Dead members are re-dialled this much less often than living ones (a healed partition is found by this). */
const DEAD_REDIAL_EVERY = 3
/** The member list is written to disk at most this often (and at stop). */
const MEMBERS_SAVE_MS = 1000
const MEMBERS_REFRESH_MS = 60_000
/** How long one discovery dial may take. */
const DIAL_TIMEOUT_MS = 3000
/** `meta` must leave room in a heartbeat (HEARTBEAT_BYTES_MAX) for addresses, services and load. */
const META_BYTES_MAX = 8 * 1024
const LOOPBACK = /^\/(ip4\/127\.|ip6\/::1\/)/
const IP_OF = /^\/ip[46]\/([^/]+)\//

export class GossipService implements Gossip {
  readonly self: string
  readonly #log: Logger
  readonly #now: () => number
  readonly #sample: (dataDir: string) => Promise<LoadSample>
  readonly #init: GossipInit
  readonly #key: PrivateKey
  readonly #topic: string
  readonly #heartbeatMs: number
  readonly #suspectAfterMs: number
  readonly #deadAfterMs: number
  readonly #pingTimeoutMs: number
  readonly #listeners = new Set<(e: MembershipEvent) => void>()
  readonly #rpcHandlers = new Map<string, RpcHandler>()
  readonly #streamHandlers = new Map<string, StreamHandler>()
  readonly #blocked = new Set<string>()
  readonly #pinging = new Set<string>()
  readonly #dialing = new Set<string>()
  readonly #bootstrapPeers = new Map<string, string>()
  readonly #timers: Array<ReturnType<typeof setInterval>> = []
  readonly #gater: ConnectionGater

  #state: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new'
  #starting: Promise<void> | undefined
  #stopping: Promise<void> | undefined
  #host: Host | undefined
  #rpc: RpcEndpoint | undefined
  #detector: FailureDetector | undefined
  #saveTimer: NodeJS.Timeout | undefined
  #info: Omit<MemberInfo, 'addrs' | 'load'>
  #load: LoadSample = emptyLoad()
  #sessions = 0
  #seq = 0
  #ring: Ring | undefined
  #discoveryRound = 0
  #hostSet: boolean

  constructor (components: GossipComponents, init: GossipInit) {
    if (typeof init.clusterKey !== 'string' || init.clusterKey.length === 0) throw new Error('gossip: clusterKey is required')
    this.#init = init
    this.#log = (components.logger ?? pino({ level: 'silent' })).child({ ns: 'gossip' })
    this.#now = components.now ?? Date.now
    this.#sample = components.sampleLoad ?? sampleLoad
    this.#heartbeatMs = init.heartbeatMs ?? HEARTBEAT_MS
    this.#suspectAfterMs = init.suspectAfterMs ?? SUSPECT_AFTER_HEARTBEATS * this.#heartbeatMs
    this.#deadAfterMs = init.deadAfterMs ?? DEAD_AFTER_MS
    this.#pingTimeoutMs = init.pingTimeoutMs ?? Math.min(PING_TIMEOUT_MS, this.#heartbeatMs)
    if (!(this.#deadAfterMs > this.#suspectAfterMs)) throw new Error('gossip: deadAfterMs must exceed suspectAfterMs')
    this.#key = loadOrCreatePeerKey(init.dataDir)
    this.self = peerIdFromPrivateKey(this.#key).toString()
    this.#topic = membersTopic(init.clusterKey)
    this.#hostSet = init.host !== undefined
    if (Buffer.byteLength(JSON.stringify(init.meta ?? {})) > META_BYTES_MAX) throw new RangeError(`gossip: meta exceeds ${META_BYTES_MAX} bytes`)
    this.#info = {
      id: this.self,
      incarnation: 0,
      name: init.name ?? hostname(),
      host: init.host ?? '127.0.0.1',
      services: { ...init.services },
      weight: init.weight ?? 1,
      state: init.state ?? 'alive',
      meta: { ...init.meta }
    }
    const blocked = (peer: PeerId): boolean => this.#blocked.has(peer.toString())
    this.#gater = {
      denyDialPeer: blocked,
      denyInboundEncryptedConnection: blocked,
      denyOutboundEncryptedConnection: blocked,
      denyInboundUpgradedConnection: blocked,
      denyOutboundUpgradedConnection: blocked
    }
  }

  async start (): Promise<void> {
    if (this.#state === 'running') return
    if (this.#starting !== undefined) return await this.#starting
    if (this.#state !== 'new' && this.#state !== 'stopped') throw new Error(`gossip: cannot start while ${this.#state}`)
    this.#state = 'starting'
    this.#starting = this.#start().finally(() => { this.#starting = undefined })
    await this.#starting
  }

  async #start (): Promise<void> {
    try {
      const incarnation = await nextIncarnation(this.#init.dataDir)
      const weight = this.#init.weight ?? await machineWeight(this.#init.dataDir)
      this.#info = { ...this.#info, incarnation, weight }
      this.#seq = 0
      const host = await createHost({
        privateKey: this.#key,
        clusterKey: this.#init.clusterKey,
        listen: this.#init.listen ?? [DEFAULT_LISTEN],
        mdns: this.#init.mdns === true,
        gater: this.#gater,
        meshHeartbeatMs: Math.min(1000, this.#heartbeatMs)
      })
      this.#host = host
      const listen = this.#init.listen ?? [DEFAULT_LISTEN]
      this.#rpc = new RpcEndpoint(host, {
        directHost: this.#init.direct === false ? null : directHost(listen),
        onDirect: (e) => {
          // a failure to open is logged the first time and then at each doubling of the count (one a minute at most)
          if (e.event === 'open') this.#log.info({ peer: e.peer }, 'rpc_direct_open')
          else if (e.event === 'ended') this.#log.info({ peer: e.peer }, 'rpc_direct_ended')
          else if (((e.failures ?? 1) & ((e.failures ?? 1) - 1)) === 0) this.#log.warn({ peer: e.peer, failures: e.failures, err: e.err }, 'rpc_direct_failed: calls stay on libp2p (is TCP between the nodes filtered?)')
        }
      })
      // without its listener (the address cannot be bound) calls stay on the libp2p channels
      await this.#rpc.start().catch((err: unknown) => { this.#log.warn({ err }, 'rpc_direct_unavailable') })
      this.#detector = new FailureDetector(this.#selfInfo(), {
        suspectAfterMs: this.#suspectAfterMs, deadAfterMs: this.#deadAfterMs, forgetAfterMs: this.#init.forgetAfterMs ?? FORGET_AFTER_MS
      }, this.#now())
      // members known before a restart count as dead until heard from (and are dialled like any dead member)
      for (const k of await loadKnownMembers(this.#init.dataDir)) this.#detector.remember(k.info, k.lastSeen, this.#now())
      this.#ring = undefined
      host.services.pubsub.addEventListener('message', this.#onPubsubMessage)
      host.services.pubsub.addEventListener('subscription-change', this.#onSubscriptionChange)
      host.addEventListener('peer:discovery', this.#onDiscovery)
      await host.start()
      host.services.pubsub.subscribe(this.#topic)
      for (const [protocol, handler] of this.#rpcHandlers) await this.#rpc.handle(protocol, handler)
      for (const [protocol, handler] of this.#streamHandlers) await this.#registerStream(protocol, handler)
      this.#state = 'running'
      this.#timers.push(setInterval(() => { this.#publish() }, this.#heartbeatMs))
      this.#timers.push(setInterval(() => { this.#tick() }, Math.max(50, Math.min(250, Math.floor(this.#heartbeatMs / 4)))))
      this.#timers.push(setInterval(() => { this.#discover() }, DISCOVERY_MS))
      this.#timers.push(setInterval(() => { this.#refreshLoad() }, LOAD_REFRESH_MS))
      // the living's last-seen times age on disk too: refresh them now and then, not only on membership events
      this.#timers.push(setInterval(() => { this.#scheduleSave() }, MEMBERS_REFRESH_MS))
      this.#refreshLoad()
      this.#discover()
      this.#publish()
      this.#log.info({ peer: this.self, incarnation, weight, addrs: host.getMultiaddrs().map(String) }, 'gossip_started')
    } catch (err) {
      await this.#teardown()
      this.#state = 'stopped'
      throw err
    }
  }

  async stop (): Promise<void> {
    if (this.#starting !== undefined) await this.#starting.catch(() => {})
    if (this.#state === 'new' || this.#state === 'stopped') return
    if (this.#stopping !== undefined) return await this.#stopping
    this.#state = 'stopping'
    this.#stopping = (async () => {
      this.#clearTimers()
      await this.#saveMembers()
      // Say goodbye so peers mark us `left` at once instead of waiting deadAfterMs.
      this.#info = { ...this.#info, state: 'leaving' }
      await this.#publishNow().catch(() => {})
      await this.#teardown()
      this.#state = 'stopped'
      this.#log.info({ peer: this.self }, 'gossip_stopped')
    })().finally(() => { this.#stopping = undefined })
    await this.#stopping
  }

  async #teardown (): Promise<void> {
    this.#clearTimers()
    const host = this.#host
    await this.#rpc?.stop()
    if (host !== undefined) {
      host.services.pubsub.removeEventListener('message', this.#onPubsubMessage)
      host.services.pubsub.removeEventListener('subscription-change', this.#onSubscriptionChange)
      host.removeEventListener('peer:discovery', this.#onDiscovery)
      await host.stop()
    }
    this.#host = undefined
    this.#rpc = undefined
    this.#pinging.clear()
    this.#dialing.clear()
  }

  #clearTimers (): void {
    for (const t of this.#timers.splice(0)) clearInterval(t)
  }

  // ---- membership ----

  members (): Member[] {
    return this.#detector?.members(this.#now()) ?? [{ ...this.#selfInfo(), status: 'alive', lastSeen: this.#now(), self: true }]
  }

  memberCounts (): { known: number, alive: number } {
    return this.#detector?.counts() ?? { known: 1, alive: 1 }
  }

  member (id: string): Member | undefined {
    if (this.#detector === undefined) return id === this.self ? this.members()[0] : undefined
    return this.#detector.member(id, this.#now())
  }

  ring (): Ring {
    if (this.#ring === undefined) {
      const nodes = this.members()
        .filter(m => m.status === 'alive' && (m.state === 'alive' || m.state === 'draining'))
        .map(m => ({ id: m.id, weight: m.weight }))
      this.#ring = createRing(nodes)
    }
    return this.#ring
  }

  /** Drops a dead member for good (FailureDetector.forget) and from the list kept on disk; false unless it is dead here. */
  async forget (id: string): Promise<boolean> {
    if (this.#detector?.forget(id) !== true) return false
    this.#ring = undefined
    await this.#saveMembers()
    this.#log.info({ peer: id }, 'member_forgotten')
    return true
  }

  onChange (listener: (event: MembershipEvent) => void): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  update (info: Partial<Pick<MemberInfo, 'state' | 'weight' | 'services' | 'host' | 'meta'>> & { sessions?: number, diskLow?: DiskLow | null }): void {
    if (info.weight !== undefined && !(Number.isFinite(info.weight) && info.weight > 0)) throw new RangeError('gossip: weight must be positive')
    if (info.meta !== undefined && Buffer.byteLength(JSON.stringify(info.meta)) > META_BYTES_MAX) throw new RangeError(`gossip: meta exceeds ${META_BYTES_MAX} bytes`)
    if (info.sessions !== undefined) this.#sessions = Math.max(0, Math.floor(info.sessions))
    const next = { ...this.#info }
    if (info.state !== undefined) next.state = info.state
    if (info.weight !== undefined) next.weight = info.weight
    if (info.services !== undefined) next.services = { ...info.services }
    if (info.host !== undefined) {
      next.host = info.host
      this.#hostSet = true
    }
    if (info.meta !== undefined) next.meta = { ...info.meta }
    if (info.diskLow === null) delete next.diskLow
    else if (info.diskLow !== undefined) {
      if (info.diskLow.members.length > DISK_LOW_MEMBERS_MAX) throw new RangeError(`gossip: diskLow lists more than ${DISK_LOW_MEMBERS_MAX} members`)
      next.diskLow = structuredClone(info.diskLow)
    }
    this.#info = next
    if (this.#detector !== undefined) this.#emit(this.#detector.setSelf(this.#selfInfo(), this.#now()))
    if (this.#state === 'running') this.#publish()
  }

  #selfInfo (): MemberInfo {
    // Loopback addresses are useless to other machines (and would reach whatever listens there), so they are
    // gossiped only when they are all this node has, as on a single-machine test grid.
    const all = this.#host?.getMultiaddrs().map(String) ?? []
    const routable = all.filter(a => !LOOPBACK.test(a))
    const addrs = (routable.length > 0 ? routable : all).slice(0, MEMBER_ADDRS_MAX)
    // Without a configured host, the first gossiped IP address is where this node's services are reachable.
    const host = this.#hostSet ? this.#info.host : (addrs.map(a => IP_OF.exec(a)?.[1]).find(ip => ip !== undefined) ?? this.#info.host)
    return { ...this.#info, host, addrs, load: { ...this.#load, sessions: this.#sessions } }
  }

  /** Keeps the member list on disk, at most once a second, for the next start (loadKnownMembers). */
  #scheduleSave (): void {
    if (this.#saveTimer !== undefined) return
    this.#saveTimer = setTimeout(() => {
      this.#saveTimer = undefined
      void this.#saveMembers()
    }, MEMBERS_SAVE_MS)
    this.#saveTimer.unref()
  }

  async #saveMembers (): Promise<void> {
    clearTimeout(this.#saveTimer)
    this.#saveTimer = undefined
    const d = this.#detector
    if (d === undefined) return
    const known = d.members(this.#now()).filter(m => !m.self && m.status !== 'left')
    try {
      await saveKnownMembers(this.#init.dataDir, known.map(({ status, lastSeen, self, ...info }) => ({ info, lastSeen })))
    } catch (err) {
      this.#log.warn({ err }, 'members_save_failed')
    }
  }

  #emit (events: MembershipEvent[]): void {
    if (events.length === 0) return
    this.#scheduleSave()
    this.#ring = undefined
    for (const e of events) {
      this.#log.debug({ event: e.type, member: e.member.id, status: e.member.status, from: 'from' in e ? e.from : undefined }, 'member_changed')
      for (const l of this.#listeners) {
        try {
          l(e)
        } catch (err) {
          this.#log.error({ err }, 'membership_listener_failed')
        }
      }
    }
  }

  #publish (): void {
    this.#publishNow().catch((err: unknown) => { this.#log.debug({ err }, 'heartbeat_publish_failed') })
  }

  async #publishNow (): Promise<void> {
    const host = this.#host
    if (host === undefined) return
    const info = this.#selfInfo()
    this.#detector?.setSelf(info, this.#now())
    await host.services.pubsub.publish(this.#topic, encodeHeartbeat({ seq: ++this.#seq, info }))
  }

  readonly #onPubsubMessage = (evt: CustomEvent<{ type: string, topic: string, data: Uint8Array, from?: PeerId }>): void => {
    const msg = evt.detail
    if (msg.topic !== this.#topic || msg.type !== 'signed' || msg.from === undefined || this.#detector === undefined) return
    const from = msg.from.toString()
    if (this.#blocked.has(from)) return
    let hb
    try {
      hb = decodeHeartbeat(msg.data, from)
    } catch (err) {
      this.#log.warn({ peer: from, err: (err as Error).message }, 'heartbeat_rejected')
      return
    }
    const known = this.#detector.has(from)
    this.#emit(this.#detector.heard(hb.info, hb.seq, this.#now()))
    if (!known) this.#dialMember(hb.info.id, hb.info.addrs)
  }

  readonly #onSubscriptionChange = (): void => {
    // A new subscriber: tell it about us now rather than at the next beat, so joins take one round trip.
    if (this.#state === 'running') this.#publish()
  }

  readonly #onDiscovery = (evt: CustomEvent<{ id: PeerId, multiaddrs: Multiaddr[] }>): void => {
    const { id, multiaddrs } = evt.detail
    this.#dialMember(id.toString(), multiaddrs.map(String))
  }

  #tick (): void {
    const d = this.#detector
    if (d === undefined || this.#state !== 'running') return
    this.#emit(d.tick(this.#now()))
    for (const id of d.needsPing(this.#now())) {
      if (this.#pinging.has(id)) continue
      this.#pinging.add(id)
      void this.#ping(id).then(ok => {
        this.#pinging.delete(id)
        if (this.#detector === d && this.#state === 'running') this.#emit(d.pinged(id, ok, this.#now()))
      })
    }
  }

  async #ping (id: string): Promise<boolean> {
    const host = this.#host
    if (host === undefined || this.#blocked.has(id)) return false
    try {
      await host.services.ping.ping(peerIdFromString(id), { signal: AbortSignal.timeout(this.#pingTimeoutMs) })
      return true
    } catch {
      return false
    }
  }

  #refreshLoad (): void {
    this.#sample(this.#init.dataDir).then(
      load => { this.#load = load },
      (err: unknown) => { this.#log.debug({ err }, 'load_sample_failed') }
    )
  }

  // ---- discovery ----

  #discover (): void {
    const host = this.#host
    if (host === undefined || this.#state !== 'running') return
    this.#discoveryRound++
    for (const addr of this.#init.bootstrap ?? []) {
      let ma: Multiaddr
      try {
        ma = multiaddr(addr)
      } catch {
        continue
      }
      // An address without /p2p/<id> is remembered under the peer it turned out to be, so it is not re-dialled
      // (opening a duplicate connection) while that peer is connected.
      const peer = ma.getComponents().findLast(c => c.name === 'p2p')?.value ?? this.#bootstrapPeers.get(addr)
      if (peer === this.self) continue
      if (peer !== undefined && this.#connected(peer)) continue
      this.#dial(peer ?? addr, [ma], id => { this.#bootstrapPeers.set(addr, id) })
    }
    for (const m of this.#detector?.members(this.#now()) ?? []) {
      if (m.self || m.status === 'left' || this.#connected(m.id)) continue
      if (m.status === 'dead' && this.#discoveryRound % DEAD_REDIAL_EVERY !== 0) continue
      this.#dialMember(m.id, m.addrs)
    }
  }

  #connected (peer: string): boolean {
    try {
      return (this.#host?.getConnections(peerIdFromString(peer)).length ?? 0) > 0
    } catch {
      return false
    }
  }

  #dialMember (id: string, addrs: string[]): void {
    if (id === this.self || this.#connected(id)) return
    const mas: Multiaddr[] = []
    for (const a of addrs) {
      try {
        const ma = multiaddr(a)
        const p = ma.getComponents().findLast(c => c.name === 'p2p')?.value
        mas.push(p === undefined ? ma.encapsulate(`/p2p/${id}`) : ma)
      } catch {}
    }
    if (mas.length > 0) this.#dial(id, mas)
  }

  #dial (key: string, addrs: Multiaddr[], onConnected?: (peer: string) => void): void {
    const host = this.#host
    if (host === undefined || this.#dialing.has(key) || this.#blocked.has(key)) return
    this.#dialing.add(key)
    host.dial(addrs, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) }).then(
      conn => {
        onConnected?.(conn.remotePeer.toString())
        this.#log.debug({ peer: key }, 'peer_dialled')
      },
      (err: unknown) => { this.#log.debug({ peer: key, err: (err as Error).message }, 'peer_dial_failed') }
    ).finally(() => { this.#dialing.delete(key) })
  }

  // ---- rpc and streams ----

  handle (protocol: string, handler: RpcHandler): void {
    this.#rpcHandlers.set(protocol, handler)
    if (this.#state === 'running' && this.#rpc !== undefined) {
      this.#rpc.handle(protocol, handler).catch((err: unknown) => { this.#log.error({ err, protocol }, 'rpc_handle_failed') })
    }
  }

  /** Calls by carrier and the direct channels open (rpc.ts), for tests and benchmarks. */
  rpcStats (): RpcStats | null {
    return this.#rpc?.stats() ?? null
  }

  async call (peer: string, protocol: string, req: RpcMessage, opts?: RpcCallOptions): Promise<RpcMessage> {
    const rpc = this.#rpc
    if (rpc === undefined || this.#state !== 'running') throw new RpcError('unreachable', 'gossip is not running')
    if (this.#blocked.has(peer)) throw new RpcError('unreachable', `${peer} is blocked`)
    return await rpc.call(peer, protocol, req, opts)
  }

  handleStream (protocol: string, handler: StreamHandler): void {
    this.#streamHandlers.set(protocol, handler)
    if (this.#state === 'running') {
      this.#registerStream(protocol, handler).catch((err: unknown) => { this.#log.error({ err, protocol }, 'stream_handle_failed') })
    }
  }

  async #registerStream (protocol: string, handler: StreamHandler): Promise<void> {
    await this.#host?.handle(protocol, (stream, connection) => {
      const duplex = streamToDuplex(stream)
      try {
        handler(duplex, { peer: connection.remotePeer.toString() })
      } catch (err) {
        this.#log.error({ err, protocol }, 'stream_handler_failed')
        duplex.destroy(err as Error)
      }
    }, { maxInboundStreams: RPC_INBOUND_STREAMS_MAX, maxOutboundStreams: RPC_OUTBOUND_STREAMS_MAX, force: true })
  }

  async openStream (peer: string, protocol: string, opts: RpcCallOptions = {}): Promise<Duplex> {
    const rpc = this.#rpc
    const host = this.#host
    if (rpc === undefined || host === undefined || this.#state !== 'running') throw new RpcError('unreachable', 'gossip is not running')
    if (this.#blocked.has(peer)) throw new RpcError('unreachable', `${peer} is blocked`)
    const stream = await rpc.track(opts, async (signal, why) => await openStream(host, peer, protocol, signal, why))
    const duplex = streamToDuplex(stream)
    const callerSignal = opts.signal
    if (callerSignal !== undefined) {
      // The caller's signal governs the stream's whole life, not just its opening.
      const onAbort = (): void => { duplex.destroy(new RpcError('aborted', 'aborted by the caller')) }
      callerSignal.addEventListener('abort', onAbort, { once: true })
      duplex.once('close', () => { callerSignal.removeEventListener('abort', onAbort) })
    }
    return duplex
  }

  block (peers: string[]): void {
    this.#blocked.clear()
    for (const p of peers) this.#blocked.add(p)
    const host = this.#host
    if (host === undefined) return
    for (const p of peers) {
      let id: PeerId
      try {
        id = peerIdFromString(p)
      } catch {
        continue
      }
      host.hangUp(id).catch(() => {})
    }
    this.#log.info({ peers }, 'peers_blocked')
  }
}

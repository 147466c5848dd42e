// Request/response between nodes. Two carriers, the same envelope and error semantics:
//
// 1. A channel per peer (MUX_PROTOCOL): one long-lived libp2p stream that each node opens to each peer it calls,
//    carrying every ordinary call with an id. Opening a libp2p stream costs more than the call itself (stream
//    negotiation, the peer store merged, window and FIN frames each a noise message and a socket write: about
//    1.4 ms of CPU for both ends of an empty call, ANALYSIS.md), and the grid makes one to two calls per message.
//    Wire, each direction: frames (gossip/frames.ts) of a JSON envelope, followed by one body frame when the
//    envelope says `b: 1`.
//      request:  { "i": id, "p": protocol, "h": {...}, "b"?: 1 }
//      cancel:   { "i": id, "x": 1 }                       (the caller gave up: the handler's signal fires)
//      answer:   { "i": id, "s": "ok", "h": {...}, "b"?: 1 }  or  { "i": id, "s": "error", "c": code, "m": message }
//    Writes are serialized per channel, so an envelope and its body are never split by another message. A call
//    over a large body (above MUX_BODY_BYTES_MAX) or marked `bulk` (catch-up pulls, merge blob fetches: answers
//    of up to 16 MiB) takes a stream of its own instead, so it never holds up the small calls behind it. A peer
//    that does not serve the channel (an older version) is called a stream per call for a while.
// 2. A stream per call (the protocol id itself): a frame holding a JSON envelope, then optionally a frame holding
//    the binary body, then the sender half-closes (yamux FIN); a body is present exactly when a second frame
//    arrived before the close.
//      request envelope:  { "header": {...} }
//      response envelope: { "status": "ok", "header": {...} }  or  { "status": "error", "code": "...", "message": "..." }
// A handler that throws becomes status error, code `remote`, with its message only (no stack crosses the wire).
// Limits: RPC_HEADER_BYTES_MAX per envelope, RPC_BODY_BYTES_MAX per body, RPC_INBOUND_STREAMS_MAX concurrent
// inbound streams per protocol and connection (and calls in progress per channel), RPC_REQUEST_READ_MS for a
// request on a stream of its own to arrive.
// A timeout is reported as `timeout`, and a connection lost after the request left as `unreachable`: in both
// cases the request may or may not have been executed, so callers carry idempotency keys.

import { peerIdFromString } from '@libp2p/peer-id'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import type { Libp2p } from 'libp2p'
import {
  RPC_BODY_BYTES_MAX, RPC_HEADER_BYTES_MAX, RPC_INBOUND_STREAMS_MAX, RPC_OUTBOUND_STREAMS_MAX, RPC_REQUEST_READ_MS, RPC_STOP_HANDLERS_MS,
  RPC_TIMEOUT_MS
} from './constants.ts'
import { FrameError, FrameReader, StreamClosedError, writeFrames } from './frames.ts'
import { connectDirect, DIRECT_PROTOCOL, DirectListener } from './direct.ts'
import type { SealedSocket } from './direct.ts'
import { RpcError } from './types.ts'
import type { RpcCallOptions, RpcHandler, RpcMessage, RpcStats } from './types.ts'

/** Longest error message sent back to a caller. */
const ERROR_MESSAGE_CHARS_MAX = 1000

/** Unread bytes a reader tolerates: one envelope, one body, and framing. */
const READ_BUFFER_BYTES_MAX = RPC_HEADER_BYTES_MAX + RPC_BODY_BYTES_MAX + 16

const WIRE_ERROR_CODES: ReadonlySet<string> = new Set<RpcError['code']>(['remote', 'refused', 'protocol'])

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

function isObject (x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x)
}

function parseEnvelope (bytes: Uint8Array): Record<string, unknown> {
  let v: unknown
  try {
    v = JSON.parse(decoder.decode(bytes))
  } catch {
    throw new FrameError('envelope is not JSON')
  }
  if (!isObject(v)) throw new FrameError('envelope is not an object')
  return v
}

function messageFrames (envelope: Record<string, unknown>, body: Uint8Array | undefined): Uint8Array[] {
  const head = encoder.encode(JSON.stringify(envelope))
  if (head.byteLength > RPC_HEADER_BYTES_MAX) throw new RpcError('protocol', `header of ${head.byteLength} bytes exceeds ${RPC_HEADER_BYTES_MAX}`)
  if (body !== undefined && body.byteLength > RPC_BODY_BYTES_MAX) throw new RpcError('protocol', `body of ${body.byteLength} bytes exceeds ${RPC_BODY_BYTES_MAX}`)
  return body === undefined ? [head] : [head, body]
}

/** Reads an envelope, an optional body and the clean end of the stream. */
async function readMessage (reader: FrameReader, signal: AbortSignal): Promise<{ envelope: Record<string, unknown>, body?: Uint8Array }> {
  const head = await reader.next(RPC_HEADER_BYTES_MAX, signal)
  if (head === null) throw new FrameError('stream ended before the header')
  const envelope = parseEnvelope(head)
  const body = await reader.next(RPC_BODY_BYTES_MAX, signal)
  if (body === null) return { envelope }
  if (await reader.next(0, signal) !== null) throw new FrameError('trailing frames after the body')
  return { envelope, body }
}

type Dialer = Pick<Libp2p, 'dialProtocol'>

/** The channel protocol: a peer's ordinary calls on one long-lived stream (see the top of this file). */
export const MUX_PROTOCOL = '/mailgrid/rpc/2.0.0'

/** Request bodies above this take a stream of their own, so they never hold up the small calls on a channel. */
export const MUX_BODY_BYTES_MAX = 1024 * 1024

/** Channel streams a peer may have open to us per connection: it keeps one; a replacement may overlap the old. */
const MUX_INBOUND_STREAMS_MAX = 8

/** After a peer refused the channel (an older version), calls to it take a stream each for this long. */
const MUX_RETRY_MS = 60_000

interface Answer { envelope: Record<string, unknown>, body?: Uint8Array }

/** Rejects with the signal's reason when it fires first. */
async function raced<T> (p: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted()
  let onAbort = (): void => {}
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => {
      onAbort = () => { reject(signal.reason) }
      signal.addEventListener('abort', onAbort, { once: true })
    })])
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}

/** Serializes writes on one stream: an envelope and its body leave together, never split by another message. */
class Writer {
  readonly #stream: Stream
  #tail: Promise<void> = Promise.resolve()
  constructor (stream: Stream) {
    this.#stream = stream
  }

  send (frames: Uint8Array[]): Promise<void> {
    const p = this.#tail.then(async () => { await writeFrames(this.#stream, frames) })
    this.#tail = p.catch(() => {})
    return p
  }
}

/** What a channel's frames travel on: a libp2p stream (streamCarrier) or a direct connection (direct.ts). */
interface Carrier {
  /** The next frame, or null at a clean end. */
  next: (maxBytes: number, signal?: AbortSignal) => Promise<Uint8Array | null>
  /** Frames that leave together, never split by another message's. */
  send: (frames: Uint8Array[]) => Promise<void>
  abort: (err: Error) => void
  close: () => Promise<void>
  /** Stops listening (the carrier itself may live on). */
  detach: () => void
  readonly live: boolean
}

function streamCarrier (stream: Stream): Carrier {
  const reader = new FrameReader(stream, READ_BUFFER_BYTES_MAX)
  const writer = new Writer(stream)
  return {
    next: async (maxBytes, signal) => await reader.next(maxBytes, signal),
    send: async frames => { await writer.send(frames) },
    abort: err => { stream.abort(err) },
    close: async () => { await stream.close() },
    detach: () => { reader.detach() },
    get live () { return stream.status === 'open' || stream.status === 'closing' }
  }
}

function directCarrier (conn: SealedSocket): Carrier {
  return {
    next: async (maxBytes, signal) => await conn.next(maxBytes, signal),
    send: async frames => { await conn.send(frames) },
    abort: err => { conn.abort(err) },
    close: async () => { await conn.close() },
    detach: () => {},
    get live () { return conn.open }
  }
}

/** After a direct channel failed to open or ended, calls to that peer stay on the libp2p channel this long, doubled
 * for each failure in a row up to DIRECT_RETRY_MAX_MS (a firewall that drops the port costs one try a minute). */
const DIRECT_RETRY_MS = 5_000
const DIRECT_RETRY_MAX_MS = 60_000

/** What happened to a direct channel, for the node's log. */
export interface DirectEvent { peer: string, event: 'open' | 'failed' | 'ended', failures?: number, err?: unknown }

/** The caller's end of a channel: one carrier to a peer, calls matched to answers by id. */
class Channel {
  readonly #carrier: Carrier
  readonly #pending = new Map<number, { resolve: (a: Answer) => void, reject: (e: unknown) => void }>()
  readonly #onDead: (ch: Channel) => void
  #nextId = 1
  #dead: Error | null = null

  constructor (carrier: Carrier, onDead: (ch: Channel) => void) {
    this.#carrier = carrier
    this.#onDead = onDead
    void this.#read()
  }

  get dead (): boolean {
    return this.#dead !== null
  }

  /** Sends a request and resolves to its answer; the signal's reason rejects it (and tells the peer to stop). */
  async request (protocol: string, req: RpcMessage, signal: AbortSignal): Promise<Answer> {
    if (this.#dead !== null) throw this.#dead
    const id = this.#nextId++
    const frames = messageFrames({ i: id, p: protocol, h: req.header, ...(req.body === undefined ? {} : { b: 1 }) }, req.body)
    signal.throwIfAborted()
    return await new Promise<Answer>((resolve, reject) => {
      const onAbort = (): void => {
        if (!this.#pending.delete(id)) return
        this.#carrier.send(messageFrames({ i: id, x: 1 }, undefined)).catch(() => {})
        reject(signal.reason)
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.#pending.set(id, {
        resolve: a => { signal.removeEventListener('abort', onAbort); resolve(a) },
        reject: e => { signal.removeEventListener('abort', onAbort); reject(e) }
      })
      this.#carrier.send(frames).catch((err: unknown) => { this.kill(err) })
    })
  }

  async #read (): Promise<void> {
    try {
      for (;;) {
        const head = await this.#carrier.next(RPC_HEADER_BYTES_MAX)
        if (head === null) throw new StreamClosedError('the peer closed the channel')
        const envelope = parseEnvelope(head)
        let body: Uint8Array | undefined
        if (envelope.b === 1) {
          const b = await this.#carrier.next(RPC_BODY_BYTES_MAX)
          if (b === null) throw new FrameError('channel ended before a body')
          body = b
        }
        const id = envelope.i
        const waiting = typeof id === 'number' ? this.#pending.get(id) : undefined
        if (waiting === undefined) continue // the answer to a call that gave up
        this.#pending.delete(id as number)
        waiting.resolve(body === undefined ? { envelope } : { envelope, body })
      }
    } catch (err) {
      this.kill(err)
    }
  }

  /** Ends the channel: every call waiting on it fails with `err` (mapped by the caller). */
  kill (err: unknown): void {
    if (this.#dead !== null) return
    this.#dead = err instanceof Error ? err : new Error(String(err))
    this.#onDead(this)
    this.#carrier.detach()
    for (const w of this.#pending.values()) w.reject(this.#dead)
    this.#pending.clear()
    if (this.#carrier.live) this.#carrier.abort(this.#dead)
  }
}

/** A peer's channel: the libp2p one, and the direct one agreed on it (direct.ts) once open. */
interface ChannelEntry {
  opening: Promise<Channel>
  channel?: Channel
  direct?: Channel
  directOpening?: boolean
  /** No direct channel is tried before this time (one failed or ended lately). */
  directAfter?: number
  /** Failures to open one in a row. */
  directFailures?: number
}

export interface RpcEndpointInit {
  /** Direct channels (direct.ts): the address their listener binds, as the libp2p listener's ('0.0.0.0' for all); null: none. */
  directHost?: string | null
  /** Told when a direct channel opens, fails to open or ends (the node logs it). */
  onDirect?: (e: DirectEvent) => void
}

/** Tracks calls and served requests so stop() can abort them all. */
export class RpcEndpoint {
  readonly #libp2p: Pick<Libp2p, 'dialProtocol' | 'handle' | 'unhandle' | 'getConnections'>
  readonly #inflight = new Set<AbortController>()
  /** Handlers running for requests served here: stop() waits for them (RPC_STOP_HANDLERS_MS at most). */
  readonly #handling = new Set<Promise<unknown>>()
  #stopping = false
  readonly #protocols = new Set<string>()
  readonly #handlers = new Map<string, RpcHandler>()
  readonly #channels = new Map<string, ChannelEntry>()
  readonly #muxRefused = new Map<string, number>()
  readonly #directHost: string | null
  readonly #onDirect: (e: DirectEvent) => void
  #direct: DirectListener | null = null
  #muxServed = false
  readonly #stats: RpcStats = { direct: 0, channel: 0, stream: 0, directOpen: 0, directServed: 0 }

  constructor (libp2p: Pick<Libp2p, 'dialProtocol' | 'handle' | 'unhandle' | 'getConnections'>, init: RpcEndpointInit = {}) {
    this.#libp2p = libp2p
    this.#directHost = init.directHost ?? null
    this.#onDirect = init.onDirect ?? (() => {})
  }

  /** Starts the direct channels' listener, when they are on. */
  async start (): Promise<void> {
    if (this.#directHost === null || this.#direct !== null) return
    const listener = new DirectListener({
      host: this.#directHost,
      bufferMax: READ_BUFFER_BYTES_MAX,
      onConnection: (peer, conn) => {
        this.#stats.directServed++
        const carrier = directCarrier(conn)
        conn.onEnd(() => { this.#stats.directServed-- })
        void this.#serveCarrier(carrier, peer, false)
      }
    })
    await listener.start()
    this.#direct = listener
  }

  /** Calls by carrier so far, and the direct channels open now in each direction. */
  stats (): RpcStats {
    let open = 0
    for (const e of this.#channels.values()) if (e.direct !== undefined && !e.direct.dead) open++
    return { ...this.#stats, directOpen: open }
  }

  async handle (protocol: string, handler: RpcHandler): Promise<void> {
    this.#protocols.add(protocol)
    this.#handlers.set(protocol, handler)
    await this.#libp2p.handle(protocol, (stream, connection) => { void this.#serve(stream, connection, handler) }, {
      maxInboundStreams: RPC_INBOUND_STREAMS_MAX, maxOutboundStreams: RPC_OUTBOUND_STREAMS_MAX, force: true
    })
    if (!this.#muxServed) {
      this.#muxServed = true
      this.#protocols.add(MUX_PROTOCOL)
      await this.#libp2p.handle(MUX_PROTOCOL, (stream, connection) => { void this.#serveChannel(stream, connection) }, {
        maxInboundStreams: MUX_INBOUND_STREAMS_MAX, maxOutboundStreams: RPC_OUTBOUND_STREAMS_MAX, force: true
      })
    }
  }

  async stop (): Promise<void> {
    this.#stopping = true
    for (const ac of this.#inflight) ac.abort(new RpcError('aborted', 'gossip stopped'))
    this.#inflight.clear()
    for (const c of [...this.#channels.values()]) {
      c.direct?.kill(new RpcError('aborted', 'gossip stopped'))
      c.channel?.kill(new RpcError('aborted', 'gossip stopped'))
    }
    this.#channels.clear()
    await this.#direct?.stop()
    this.#direct = null
    // The handlers still running were told (their signals are aborted); their answers go nowhere now, but what
    // they write must be done before the node closes its store.
    if (this.#handling.size > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined
      await Promise.race([
        Promise.allSettled([...this.#handling]),
        new Promise<void>(resolve => { timer = setTimeout(resolve, RPC_STOP_HANDLERS_MS) })
      ])
      clearTimeout(timer)
    }
    const protocols = [...this.#protocols]
    this.#protocols.clear()
    this.#handlers.clear()
    this.#muxServed = false
    if (protocols.length > 0) await this.#libp2p.unhandle(protocols).catch(() => {})
  }

  async call (peer: string, protocol: string, req: RpcMessage, opts: RpcCallOptions = {}): Promise<RpcMessage> {
    return await this.track(opts, async (signal, why) => {
      const own = opts.bulk === true || (req.body?.byteLength ?? 0) > MUX_BODY_BYTES_MAX || (this.#muxRefused.get(peer) ?? 0) > Date.now()
      if (!own) {
        let channel: Channel | null
        try {
          channel = await this.#channel(peer, signal, why)
        } catch (err) {
          throw mapError(err, signal, why, peer)
        }
        if (channel !== null) {
          const entry = this.#channels.get(peer)
          if (entry?.direct !== undefined && !entry.direct.dead) {
            channel = entry.direct
            this.#stats.direct++
          } else {
            this.#stats.channel++
            if (entry !== undefined && entry.channel === channel) this.#openDirect(peer, entry, channel)
          }
          let answer: Answer
          try {
            answer = await channel.request(protocol, req, signal)
          } catch (err) {
            throw mapError(err, signal, why, peer)
          }
          return answerOf(answer.envelope, answer.body, { status: 's', header: 'h', code: 'c', message: 'm' })
        }
      }
      this.#stats.stream++
      return await this.#callStream(peer, protocol, req, signal, why)
    })
  }

  /**
   * Agrees a direct channel with `peer` over its libp2p channel (a ticket, direct.ts) and connects it, in the
   * background: calls go on over the libp2p channel until it is open. It ends with the libp2p channel.
   */
  #openDirect (peer: string, entry: ChannelEntry, channel: Channel): void {
    if (this.#directHost === null || entry.directOpening === true || (entry.directAfter ?? 0) > Date.now()) return
    entry.directOpening = true
    const ac = new AbortController()
    const timer = setTimeout(() => { ac.abort(new RpcError('timeout', 'direct channel not open in time')) }, RPC_TIMEOUT_MS)
    this.#inflight.add(ac)
    const failed = (retryMs: number): void => {
      const n = entry.directFailures = (entry.directFailures ?? 0) + 1
      entry.directAfter = Date.now() + Math.min(DIRECT_RETRY_MAX_MS, Math.max(retryMs, DIRECT_RETRY_MS * 2 ** (n - 1)))
    }
    void (async () => {
      const answer = await channel.request(DIRECT_PROTOCOL, { header: {} }, ac.signal)
      const grant = answerOf(answer.envelope, answer.body, { status: 's', header: 'h', code: 'c', message: 'm' }).header
      const host = this.#remoteHost(peer)
      if (host === null) throw new RpcError('unreachable', 'no address of the peer to connect to')
      const conn = await connectDirect(host, grant as { port: number, ticket: string, secret: string }, READ_BUFFER_BYTES_MAX, ac.signal)
      let ended = false
      const direct = new Channel(directCarrier(conn), dead => {
        if (entry.direct === dead) entry.direct = undefined
        ended = true
        entry.directAfter = Date.now() + DIRECT_RETRY_MS
        if (!channel.dead && this.#channels.get(peer) === entry) this.#onDirect({ peer, event: 'ended' })
      })
      if (channel.dead || this.#channels.get(peer) !== entry) direct.kill(new RpcError('unreachable', 'the libp2p channel ended'))
      else if (!ended) {
        entry.direct = direct
        entry.directFailures = 0
        this.#onDirect({ peer, event: 'open' })
      }
    })().catch((err: unknown) => {
      // a peer that does not serve direct channels (an older version, or off) is not asked again for a while
      const refused = err instanceof RpcError && err.code === 'refused'
      failed(refused ? MUX_RETRY_MS : DIRECT_RETRY_MS)
      if (!refused && !channel.dead) this.#onDirect({ peer, event: 'failed', failures: entry.directFailures, err })
    }).finally(() => {
      entry.directOpening = false
      clearTimeout(timer)
      this.#inflight.delete(ac)
    })
  }

  /** The address of an open libp2p connection to `peer`: its direct channel connects there. */
  #remoteHost (peer: string): string | null {
    let id: PeerId
    try {
      id = peerIdFromString(peer)
    } catch {
      return null
    }
    for (const c of this.#libp2p.getConnections(id)) {
      if (c.status !== 'open') continue
      const m = /^\/ip[46]\/([^/]+)\/tcp\//.exec(c.remoteAddr.toString())
      if (m !== null) return m[1]
    }
    return null
  }

  /** The open channel to a peer, opened on first use; null when the peer does not serve channels. */
  async #channel (peer: string, signal: AbortSignal, why: () => 'aborted' | 'timeout'): Promise<Channel | null> {
    let entry = this.#channels.get(peer)
    if (entry === undefined) {
      const ac = new AbortController()
      const timer = setTimeout(() => { ac.abort(new RpcError('timeout', `no channel to ${peer} within ${RPC_TIMEOUT_MS} ms`)) }, RPC_TIMEOUT_MS)
      this.#inflight.add(ac)
      const e: ChannelEntry = {
        opening: openStream(this.#libp2p, peer, MUX_PROTOCOL, ac.signal, () => 'timeout').then(stream => {
          const ch = new Channel(streamCarrier(stream), dead => {
            // the direct channel was agreed on this one: it ends with it
            e.direct?.kill(new RpcError('unreachable', 'the libp2p channel ended'))
            if (this.#channels.get(peer)?.channel === dead) this.#channels.delete(peer)
          })
          e.channel = ch
          return ch
        }).finally(() => {
          clearTimeout(timer)
          this.#inflight.delete(ac)
        })
      }
      e.opening.catch(() => { if (this.#channels.get(peer) === e) this.#channels.delete(peer) })
      this.#channels.set(peer, e)
      entry = e
    }
    try {
      return await raced(entry.opening, signal)
    } catch (err) {
      if (err instanceof RpcError && err.code === 'refused' && !signal.aborted) {
        this.#muxRefused.set(peer, Date.now() + MUX_RETRY_MS)
        return null
      }
      // as for a stream of its own: nothing was sent yet, so running out of time means the peer was not reached
      if (signal.aborted && why() === 'timeout') throw new RpcError('unreachable', `timed out connecting to ${peer}`, { cause: err })
      throw err
    }
  }

  async #callStream (peer: string, protocol: string, req: RpcMessage, signal: AbortSignal, why: () => 'aborted' | 'timeout'): Promise<RpcMessage> {
    const stream = await openStream(this.#libp2p, peer, protocol, signal, why, { lazy: true })
    const reader = new FrameReader(stream, READ_BUFFER_BYTES_MAX)
    const onAbort = (): void => { stream.abort(new Error(`call ${why()}`)) }
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      await writeFrames(stream, messageFrames({ header: req.header }, req.body), signal)
      await stream.close({ signal })
      const { envelope, body } = await readMessage(reader, signal)
      return answerOf(envelope, body, { status: 'status', header: 'header', code: 'code', message: 'message' })
    } catch (err) {
      throw mapError(err, signal, why, peer)
    } finally {
      signal.removeEventListener('abort', onAbort)
      reader.detach()
      if (stream.status === 'open' || stream.status === 'closing') stream.abort(new Error('call finished'))
    }
  }

  /**
   * Runs `fn` under a signal that fires on the caller's abort, on the timeout, or on stop(); `why()` names
   * which. Used by call() and by openStream() callers.
   */
  async track<T> (opts: RpcCallOptions, fn: (signal: AbortSignal, why: () => 'aborted' | 'timeout') => Promise<T>): Promise<T> {
    const ac = new AbortController()
    let reason: 'aborted' | 'timeout' = 'aborted'
    const timeoutMs = opts.timeoutMs ?? RPC_TIMEOUT_MS
    const timer = setTimeout(() => {
      reason = 'timeout'
      ac.abort(new RpcError('timeout', `no answer within ${timeoutMs} ms`))
    }, timeoutMs)
    const onCallerAbort = (): void => { ac.abort(new RpcError('aborted', 'aborted by the caller')) }
    opts.signal?.addEventListener('abort', onCallerAbort, { once: true })
    if (opts.signal?.aborted === true) onCallerAbort()
    this.#inflight.add(ac)
    try {
      return await fn(ac.signal, () => reason)
    } finally {
      clearTimeout(timer)
      opts.signal?.removeEventListener('abort', onCallerAbort)
      this.#inflight.delete(ac)
    }
  }

  /** Runs a handler for a request served here, tracked for stop(); once stopping, refuses to start one. */
  #run (handler: RpcHandler, req: RpcMessage, ctx: Parameters<RpcHandler>[1]): Promise<RpcMessage> {
    if (this.#stopping) return Promise.reject(new RpcError('refused', 'this node is stopping'))
    let p: Promise<RpcMessage>
    try {
      p = handler(req, ctx)
    } catch (err) {
      return Promise.reject(err)
    }
    this.#handling.add(p)
    const forget = (): void => { this.#handling.delete(p) }
    p.then(forget, forget)
    return p
  }

  async #serve (stream: Stream, connection: Connection, handler: RpcHandler): Promise<void> {
    const ac = new AbortController()
    this.#inflight.add(ac)
    const reader = new FrameReader(stream, READ_BUFFER_BYTES_MAX)
    const onClose = (evt: Event & { error?: Error }): void => { if (evt.error != null) ac.abort(evt.error) }
    stream.addEventListener('close', onClose as never)
    const readTimer = setTimeout(() => { ac.abort(new FrameError('request not received in time')) }, RPC_REQUEST_READ_MS)
    try {
      let req: RpcMessage
      try {
        const { envelope, body } = await readMessage(reader, ac.signal)
        if (!isObject(envelope.header)) throw new FrameError('request header is not an object')
        req = body === undefined ? { header: envelope.header } : { header: envelope.header, body }
      } finally {
        clearTimeout(readTimer)
      }
      let frames: Uint8Array[]
      try {
        const res = await this.#run(handler, req, { peer: connection.remotePeer.toString(), signal: ac.signal })
        if (!isObject(res?.header)) throw new Error('handler returned no header')
        frames = messageFrames({ status: 'ok', header: res.header }, res.body)
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err)
        frames = messageFrames({ status: 'error', code: 'remote', message: message.slice(0, ERROR_MESSAGE_CHARS_MAX) }, undefined)
      }
      await writeFrames(stream, frames, ac.signal)
      await stream.close({ signal: ac.signal })
    } catch (err) {
      // A malformed request gets a protocol error if the stream can still carry one; anything else resets it.
      if (err instanceof FrameError && stream.writeStatus === 'writable') {
        try {
          await writeFrames(stream, messageFrames({ status: 'error', code: 'protocol', message: err.message }, undefined), ac.signal)
          await stream.close({ signal: ac.signal })
          return
        } catch {}
      }
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      stream.removeEventListener('close', onClose as never)
      reader.detach()
      this.#inflight.delete(ac)
    }
  }

  /** Serves a channel a peer opened: requests in, answers out in whatever order the handlers finish. */
  async #serveChannel (stream: Stream, connection: Connection): Promise<void> {
    await this.#serveCarrier(streamCarrier(stream), connection.remotePeer.toString(), true)
  }

  /**
   * Serves a channel on `carrier`: a libp2p one (`grants`: it may be asked for a direct channel's ticket, which
   * is good only while it lives) or a direct one.
   */
  async #serveCarrier (carrier: Carrier, peer: string, grants: boolean): Promise<void> {
    const running = new Map<number, AbortController>()
    const closed = new AbortController() // the channel ended: every handler on it is aborted
    this.#inflight.add(closed)
    const answer = (id: number, envelope: Record<string, unknown>, body?: Uint8Array): void => {
      carrier.send(messageFrames({ i: id, ...envelope, ...(body === undefined ? {} : { b: 1 }) }, body)).catch((err: unknown) => {
        carrier.abort(err instanceof Error ? err : new Error(String(err)))
      })
    }
    try {
      for (;;) {
        const head = await carrier.next(RPC_HEADER_BYTES_MAX, closed.signal)
        if (head === null) break
        const envelope = parseEnvelope(head)
        const id = envelope.i
        if (typeof id !== 'number' || !Number.isSafeInteger(id)) throw new FrameError('envelope without an id')
        if (envelope.x === 1) {
          running.get(id)?.abort(new RpcError('aborted', 'the caller gave up'))
          continue
        }
        let body: Uint8Array | undefined
        if (envelope.b === 1) {
          const b = await carrier.next(RPC_BODY_BYTES_MAX, closed.signal)
          if (b === null) throw new FrameError('channel ended before a body')
          body = b
        }
        if (typeof envelope.p !== 'string' || !isObject(envelope.h)) throw new FrameError('malformed request envelope')
        if (envelope.p === DIRECT_PROTOCOL && grants && this.#direct !== null) {
          answer(id, { s: 'ok', h: this.#direct.issue(peer, closed.signal) })
          continue
        }
        const handler = this.#handlers.get(envelope.p)
        if (handler === undefined) {
          answer(id, { s: 'error', c: 'refused', m: `does not serve ${envelope.p.slice(0, 200)}` })
          continue
        }
        if (running.size >= RPC_INBOUND_STREAMS_MAX) {
          answer(id, { s: 'error', c: 'refused', m: `more than ${RPC_INBOUND_STREAMS_MAX} calls in progress on this channel` })
          continue
        }
        const ac = new AbortController()
        const onClosed = (): void => { ac.abort(closed.signal.reason) }
        closed.signal.addEventListener('abort', onClosed, { once: true })
        running.set(id, ac)
        const req: RpcMessage = body === undefined ? { header: envelope.h } : { header: envelope.h, body }
        void this.#run(handler, req, { peer, signal: ac.signal }).then(res => {
          if (!isObject(res?.header)) throw new Error('handler returned no header')
          return { s: 'ok', h: res.header, body: res.body }
        }).catch((err: unknown) => {
          const message = err instanceof Error ? err.message : String(err)
          return { s: 'error', c: 'remote', m: message.slice(0, ERROR_MESSAGE_CHARS_MAX), body: undefined }
        }).then(({ body: resBody, ...envelope }) => {
          running.delete(id)
          closed.signal.removeEventListener('abort', onClosed)
          if (ac.signal.aborted) return // the caller gave up or the channel ended: nobody waits for this answer
          try {
            answer(id, envelope, resBody)
          } catch (err) { // an answer over the limits
            answer(id, { s: 'error', c: 'remote', m: (err as Error).message.slice(0, ERROR_MESSAGE_CHARS_MAX) })
          }
        })
      }
      await carrier.close().catch(() => {})
    } catch (err) {
      // A malformed frame cannot be matched to a call: the channel ends, and the caller opens a new one.
      carrier.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      closed.abort(new RpcError('unreachable', 'channel closed'))
      this.#inflight.delete(closed)
      carrier.detach()
    }
  }
}

/** A call's result from an answer envelope (field names differ between the two carriers). */
function answerOf (envelope: Record<string, unknown>, body: Uint8Array | undefined, k: { status: string, header: string, code: string, message: string }): RpcMessage {
  const header = envelope[k.header]
  if (envelope[k.status] === 'ok' && isObject(header)) return body === undefined ? { header } : { header, body }
  if (envelope[k.status] === 'error') {
    const c = envelope[k.code]
    const m = envelope[k.message]
    const code = typeof c === 'string' && WIRE_ERROR_CODES.has(c) ? c as RpcError['code'] : 'remote'
    throw new RpcError(code, typeof m === 'string' ? m.slice(0, ERROR_MESSAGE_CHARS_MAX) : 'remote error')
  }
  throw new FrameError('malformed response envelope')
}

export async function openStream (
  libp2p: Dialer, peer: string, protocol: string, signal: AbortSignal, why: () => 'aborted' | 'timeout', opts: { lazy?: boolean } = {}
): Promise<Stream> {
  let id: PeerId
  try {
    id = peerIdFromString(peer)
  } catch {
    throw new RpcError('unreachable', `not a peer id: ${peer.slice(0, 80)}`)
  }
  try {
    // lazy: the protocol name leaves with the first frame instead of waiting a round trip for its echo (a request
    // is written before anything is read); a peer that does not serve it then fails the call at the first read
    return await libp2p.dialProtocol(id, protocol, { signal, maxOutboundStreams: RPC_OUTBOUND_STREAMS_MAX, ...(opts.lazy === true ? { negotiateFully: false } : {}) })
  } catch (err) {
    // Nothing was sent yet, so running out of time here means the peer could not be reached in time.
    if (signal.aborted && why() === 'aborted') throw new RpcError('aborted', `aborted opening ${protocol} to ${peer}`, { cause: err })
    if (signal.aborted) throw new RpcError('unreachable', `timed out connecting to ${peer} for ${protocol}`, { cause: err })
    if ((err as Error).name === 'UnsupportedProtocolError') throw new RpcError('refused', `${peer} does not serve ${protocol}`, { cause: err })
    throw new RpcError('unreachable', `cannot reach ${peer}: ${(err as Error).message}`, { cause: err })
  }
}

function mapError (err: unknown, signal: AbortSignal, why: () => 'aborted' | 'timeout', peer: string): RpcError {
  if (err instanceof RpcError) return err
  if (signal.aborted) {
    const r = signal.reason
    if (r instanceof RpcError) return r
    return new RpcError(why(), why() === 'timeout' ? 'timed out' : 'aborted', { cause: err })
  }
  if (err instanceof FrameError) return new RpcError('protocol', err.message, { cause: err })
  if ((err as Error)?.name === 'UnsupportedProtocolError') return new RpcError('refused', `${peer} does not serve this protocol`, { cause: err })
  return new RpcError('unreachable', `connection to ${peer} lost: ${(err as Error)?.message ?? String(err)}`, { cause: err })
}

// Request/response over libp2p streams, one stream per call.
//
// Wire, both directions: a frame holding a JSON envelope, then optionally a frame holding the binary body, then
// the sender half-closes (yamux FIN); a body is present exactly when a second frame arrived before the close.
//   request envelope:  { "header": {...} }
//   response envelope: { "status": "ok", "header": {...} }  or  { "status": "error", "code": "...", "message": "..." }
// A handler that throws becomes status error, code `remote`, with its message only (no stack crosses the wire).
// Limits: RPC_HEADER_BYTES_MAX per envelope, RPC_BODY_BYTES_MAX per body, RPC_INBOUND_STREAMS_MAX concurrent
// inbound streams per protocol and connection, RPC_REQUEST_READ_MS for a request to arrive.
// A timeout is reported as `timeout`, and a connection lost after the request left as `unreachable`: in both
// cases the request may or may not have been executed, so callers carry idempotency keys.

import { peerIdFromString } from '@libp2p/peer-id'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import type { Libp2p } from 'libp2p'
import {
  RPC_BODY_BYTES_MAX, RPC_HEADER_BYTES_MAX, RPC_INBOUND_STREAMS_MAX, RPC_OUTBOUND_STREAMS_MAX, RPC_REQUEST_READ_MS, RPC_TIMEOUT_MS
} from './constants.ts'
import { FrameError, FrameReader, writeFrames } from './frames.ts'
import { RpcError } from './types.ts'
import type { RpcCallOptions, RpcHandler, RpcMessage } from './types.ts'

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

/** Tracks calls and served requests so stop() can abort them all. */
export class RpcEndpoint {
  readonly #libp2p: Pick<Libp2p, 'dialProtocol' | 'handle' | 'unhandle'>
  readonly #inflight = new Set<AbortController>()
  readonly #protocols = new Set<string>()

  constructor (libp2p: Pick<Libp2p, 'dialProtocol' | 'handle' | 'unhandle'>) {
    this.#libp2p = libp2p
  }

  async handle (protocol: string, handler: RpcHandler): Promise<void> {
    this.#protocols.add(protocol)
    await this.#libp2p.handle(protocol, (stream, connection) => { void this.#serve(stream, connection, handler) }, {
      maxInboundStreams: RPC_INBOUND_STREAMS_MAX, maxOutboundStreams: RPC_OUTBOUND_STREAMS_MAX, force: true
    })
  }

  async stop (): Promise<void> {
    for (const ac of this.#inflight) ac.abort(new RpcError('aborted', 'gossip stopped'))
    this.#inflight.clear()
    const protocols = [...this.#protocols]
    this.#protocols.clear()
    if (protocols.length > 0) await this.#libp2p.unhandle(protocols).catch(() => {})
  }

  async call (peer: string, protocol: string, req: RpcMessage, opts: RpcCallOptions = {}): Promise<RpcMessage> {
    return await this.track(opts, async (signal, why) => {
      const stream = await openStream(this.#libp2p, peer, protocol, signal, why, { lazy: true })
      const reader = new FrameReader(stream, READ_BUFFER_BYTES_MAX)
      const onAbort = (): void => { stream.abort(new Error(`call ${why()}`)) }
      signal.addEventListener('abort', onAbort, { once: true })
      try {
        await writeFrames(stream, messageFrames({ header: req.header }, req.body), signal)
        await stream.close({ signal })
        const { envelope, body } = await readMessage(reader, signal)
        if (envelope.status === 'ok' && isObject(envelope.header)) return body === undefined ? { header: envelope.header } : { header: envelope.header, body }
        if (envelope.status === 'error') {
          const code = typeof envelope.code === 'string' && WIRE_ERROR_CODES.has(envelope.code) ? envelope.code as RpcError['code'] : 'remote'
          const message = typeof envelope.message === 'string' ? envelope.message.slice(0, ERROR_MESSAGE_CHARS_MAX) : 'remote error'
          throw new RpcError(code, message)
        }
        throw new FrameError('malformed response envelope')
      } catch (err) {
        throw mapError(err, signal, why, peer)
      } finally {
        signal.removeEventListener('abort', onAbort)
        reader.detach()
        if (stream.status === 'open' || stream.status === 'closing') stream.abort(new Error('call finished'))
      }
    })
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
        const res = await handler(req, { peer: connection.remotePeer.toString(), signal: ac.signal })
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

// Direct channels: the RPC channel's frames (rpc.ts) over a TCP connection of their own between two nodes, sealed
// with AES-256-GCM, instead of over a libp2p stream. Why: under a libp2p stream a frame crosses yamux, noise's
// ChaCha20-Poly1305 and the protector's ChaCha20, each with its own framing, buffers and events; a call with a
// 10 KB body cost 230-250 µs of CPU for both ends (test/bench/rpc.ts on the 2-vCPU Intel machine), the same call
// as sealed records on a socket of its own 45-65 µs. The grid makes about one such call per message.
//
// Trust is not weakened. The key is agreed over the libp2p channel, which noise authenticates (the peer's id) and
// the cluster key's protector guards: the caller asks the peer for a ticket over it, and the peer answers with a
// port, a random 16-byte ticket and a random 32-byte secret that only the two of them know. The caller connects
// to the address its libp2p connection to the peer has, sends the ticket in the clear, and from then on each side
// seals with its direction's key (HKDF-SHA256 of the secret, salted with the ticket). A ticket is good once and
// for TICKET_MS; a connection that names no ticket, a spent one or an unknown one is closed before it is read
// further; a record that does not open (forged, replayed, reordered: the nonce is a counter per direction) ends
// the connection. A direct channel lives no longer than the libp2p channel it was agreed on: when that one ends
// (the peer is blocked, the connection lost), so does the direct one, on both sides.
//
// Wire, after the 16-byte ticket: records, each a 4-byte big-endian length, then that many bytes of ciphertext and
// its 16-byte tag. A record's plaintext is frames (frames.ts: a varint length, then the bytes): everything the
// channel was asked to send in one turn of the event loop, sealed and written as one record (at once past
// RECORD_FLUSH_BYTES).

import { createCipheriv, createDecipheriv, createSecretKey, hkdfSync, randomBytes } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { createServer, connect } from 'node:net'
import type { Server, Socket } from 'node:net'
import { encodeVarint, FrameBuffer, FrameError, StreamClosedError } from './frames.ts'

/** The protocol a caller asks for a ticket with, on its libp2p channel to the peer. */
export const DIRECT_PROTOCOL = '/mailgrid/direct/1.0.0'

export const TICKET_BYTES = 16
const SECRET_BYTES = 32
const TAG_BYTES = 16
/** How long a ticket may wait for its connection. */
export const TICKET_MS = 10_000
/** Tickets issued and not yet used, per node: beyond it the oldest is forgotten. */
const TICKETS_MAX = 256
/** Connections that have not named their ticket yet. */
const UNNAMED_MAX = 64
/** A record's plaintext is written at once when this much is waiting, else at the end of the turn. */
export const RECORD_FLUSH_BYTES = 128 * 1024
/** Largest record accepted: a channel's largest message (header and body limits of rpc.ts) fits in it. */
export const RECORD_BYTES_MAX = 96 * 1024 * 1024

export interface DirectKeys { send: KeyObject, receive: KeyObject }

/** The two directions' keys of a ticket's connection, as the side named by `role` uses them. */
export function directKeys (secret: Uint8Array, ticket: Uint8Array, role: 'caller' | 'server'): DirectKeys {
  const derive = (info: string): KeyObject => createSecretKey(Buffer.from(hkdfSync('sha256', secret, ticket, info, 32)))
  const toServer = derive('mailgrid direct caller to server')
  const toCaller = derive('mailgrid direct server to caller')
  return role === 'caller' ? { send: toServer, receive: toCaller } : { send: toCaller, receive: toServer }
}

function nonce (n: number): Buffer {
  const iv = Buffer.alloc(12)
  iv.writeUInt32BE(Math.floor(n / 2 ** 32), 4)
  iv.writeUInt32BE(n >>> 0, 8)
  return iv
}

/**
 * Frames over a socket as sealed records (see the top of this file). The interface rpc.ts's channels use:
 * `next` (the next frame), `send` (frames that leave together), `abort`, `close`.
 */
export class SealedSocket {
  readonly #socket: Socket
  readonly #keys: DirectKeys
  readonly #frames: FrameBuffer
  #sent = 0
  #received = 0
  #pending: Buffer[] = []
  #pendingBytes = 0
  #flushScheduled = false
  /** Senders whose frames are pending, and those whose record is written but waits for the socket to drain. */
  #waiters: Array<{ resolve: () => void, reject: (e: Error) => void }> = []
  #draining: Array<{ resolve: () => void, reject: (e: Error) => void }> = []
  #input: Buffer[] = []
  #inputBytes = 0
  #closed: Error | null = null
  readonly #onEnd: Array<(err: Error | null) => void> = []

  /** `head`: bytes already read off the socket that belong to the records (after the ticket). */
  constructor (socket: Socket, keys: DirectKeys, bufferMax: number, head?: Buffer) {
    this.#socket = socket
    this.#keys = keys
    this.#frames = new FrameBuffer(bufferMax)
    socket.setNoDelay(true)
    socket.on('data', this.#onData)
    socket.on('end', () => { this.#finish(null) })
    socket.on('close', () => { this.#finish(new StreamClosedError('direct connection closed')) })
    socket.on('error', (err) => { this.#finish(new StreamClosedError(`direct connection: ${err.message}`, { cause: err })) })
    socket.on('drain', () => {
      const w = this.#draining
      this.#draining = []
      for (const x of w) x.resolve()
    })
    if (head !== undefined && head.length > 0) this.#onData(head)
  }

  get open (): boolean {
    return this.#closed === null
  }

  /** Runs once when the connection ends: null for the peer's clean end, else why. */
  onEnd (fn: (err: Error | null) => void): void {
    if (this.#closed !== null) fn(this.#closed)
    else this.#onEnd.push(fn)
  }

  readonly #onData = (chunk: Buffer): void => {
    if (this.#closed !== null) return
    this.#input.push(chunk)
    this.#inputBytes += chunk.length
    try {
      for (;;) {
        if (this.#inputBytes < 4) return
        if (this.#input[0].length < 4) this.#input = [Buffer.concat(this.#input)]
        const len = this.#input[0].readUInt32BE(0)
        if (len < TAG_BYTES || len > RECORD_BYTES_MAX) throw new FrameError(`direct record of ${len} bytes`)
        if (this.#inputBytes < 4 + len) return
        const all = this.#input.length === 1 ? this.#input[0] : Buffer.concat(this.#input)
        const record = all.subarray(4, 4 + len)
        const rest = all.subarray(4 + len)
        this.#input = rest.length > 0 ? [rest] : []
        this.#inputBytes = rest.length
        const plain = this.#open(record)
        if (!this.#frames.push(plain)) throw this.#frames.failed!
      }
    } catch (err) {
      this.abort(err instanceof Error ? err : new Error(String(err)))
    }
  }

  #open (record: Buffer): Buffer {
    const d = createDecipheriv('aes-256-gcm', this.#keys.receive, nonce(this.#received++), { authTagLength: TAG_BYTES })
    d.setAuthTag(record.subarray(record.length - TAG_BYTES))
    const head = d.update(record.subarray(0, record.length - TAG_BYTES))
    try {
      const tail = d.final()
      return tail.length === 0 ? head : Buffer.concat([head, tail])
    } catch {
      throw new FrameError('a direct record did not open (forged, replayed or out of order)')
    }
  }

  /** The next frame, or null when the peer ended the connection cleanly at a frame boundary. */
  async next (maxBytes: number, signal?: AbortSignal): Promise<Uint8Array | null> {
    return await this.#frames.next(maxBytes, signal)
  }

  /** Frames that leave together, in one record with whatever else this turn sends; resolves once written. */
  async send (frames: Uint8Array[]): Promise<void> {
    if (this.#closed !== null) throw this.#closed
    for (const f of frames) {
      const prefix = Buffer.from(encodeVarint(f.byteLength))
      this.#pending.push(prefix, Buffer.isBuffer(f) ? f : Buffer.from(f.buffer, f.byteOffset, f.byteLength))
      this.#pendingBytes += prefix.length + f.byteLength
    }
    const written = new Promise<void>((resolve, reject) => { this.#waiters.push({ resolve, reject }) })
    if (this.#pendingBytes >= RECORD_FLUSH_BYTES) this.#flush()
    else if (!this.#flushScheduled) {
      this.#flushScheduled = true
      setImmediate(() => { this.#flush() })
    }
    await written
  }

  #flush (): void {
    this.#flushScheduled = false
    if (this.#pending.length === 0 || this.#closed !== null) return
    const plain = this.#pending.length === 1 ? this.#pending[0] : Buffer.concat(this.#pending, this.#pendingBytes)
    this.#pending = []
    this.#pendingBytes = 0
    const c = createCipheriv('aes-256-gcm', this.#keys.send, nonce(this.#sent++), { authTagLength: TAG_BYTES })
    const body = c.update(plain)
    c.final()
    const tag = c.getAuthTag()
    const head = Buffer.allocUnsafe(4)
    head.writeUInt32BE(body.length + TAG_BYTES, 0)
    this.#socket.cork()
    this.#socket.write(head)
    this.#socket.write(body)
    const ok = this.#socket.write(tag)
    this.#socket.uncork()
    const w = this.#waiters
    this.#waiters = []
    if (ok) for (const x of w) x.resolve()
    else this.#draining.push(...w)
  }

  #finish (err: Error | null): void {
    if (this.#closed !== null) return
    this.#closed = err ?? new StreamClosedError('direct connection ended')
    if (err === null) this.#frames.end()
    else this.#frames.fail(err)
    const w = [...this.#waiters, ...this.#draining]
    this.#waiters = []
    this.#draining = []
    for (const x of w) x.reject(this.#closed)
    for (const fn of this.#onEnd.splice(0)) fn(err)
    if (!this.#socket.destroyed) this.#socket.destroy()
  }

  /** Ends the connection at once: reads and writes waiting fail with `err`. */
  abort (err: Error): void {
    this.#finish(err)
  }

  /** Writes what is pending and ends our side; the peer sees a clean end. */
  async close (): Promise<void> {
    if (this.#closed !== null) return
    this.#flush()
    await new Promise<void>((resolve) => { this.#socket.end(resolve) })
  }
}

interface Ticket { peer: string, secret: Buffer, expires: number, ended: AbortSignal }

/** The server side: one listener per node, the tickets it issued, the connections they opened. */
export class DirectListener {
  readonly #host: string
  readonly #bufferMax: number
  readonly #onConnection: (peer: string, conn: SealedSocket, ended: AbortSignal) => void
  readonly #tickets = new Map<string, Ticket>()
  readonly #sockets = new Set<Socket>()
  #server: Server | null = null
  #port = 0
  #unnamed = 0

  constructor (init: { host: string, bufferMax: number, onConnection: (peer: string, conn: SealedSocket, ended: AbortSignal) => void }) {
    this.#host = init.host
    this.#bufferMax = init.bufferMax
    this.#onConnection = init.onConnection
  }

  get port (): number {
    return this.#port
  }

  async start (): Promise<void> {
    const server = createServer({ noDelay: true }, (socket) => { this.#accept(socket) })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ host: this.#host, port: 0 }, () => { server.off('error', reject); resolve() })
    })
    server.on('error', () => {})
    this.#server = server
    this.#port = (server.address() as { port: number }).port
  }

  async stop (): Promise<void> {
    const server = this.#server
    this.#server = null
    this.#tickets.clear()
    for (const s of this.#sockets) s.destroy()
    this.#sockets.clear()
    if (server !== null) await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  }

  /** A ticket for `peer`, good once, for TICKET_MS, and not after `ended` fires (its libp2p channel ended). */
  issue (peer: string, ended: AbortSignal): { port: number, ticket: string, secret: string } {
    const now = Date.now()
    for (const [k, t] of this.#tickets) if (t.expires <= now || t.ended.aborted) this.#tickets.delete(k)
    while (this.#tickets.size >= TICKETS_MAX) this.#tickets.delete(this.#tickets.keys().next().value!)
    const ticket = randomBytes(TICKET_BYTES)
    const secret = randomBytes(SECRET_BYTES)
    this.#tickets.set(ticket.toString('hex'), { peer, secret, expires: now + TICKET_MS, ended })
    return { port: this.#port, ticket: ticket.toString('base64'), secret: secret.toString('base64') }
  }

  #accept (socket: Socket): void {
    this.#sockets.add(socket)
    socket.on('close', () => { this.#sockets.delete(socket) })
    socket.on('error', () => {})
    if (this.#unnamed >= UNNAMED_MAX) {
      socket.destroy()
      return
    }
    this.#unnamed++
    let named = false
    let head: Buffer = Buffer.alloc(0)
    const giveUp = (): void => {
      if (named) return
      named = true
      this.#unnamed--
      socket.destroy()
    }
    const timer = setTimeout(giveUp, TICKET_MS)
    socket.on('close', () => { clearTimeout(timer); if (!named) { named = true; this.#unnamed-- } })
    const onData = (chunk: Buffer): void => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk])
      if (head.length < TICKET_BYTES) return
      socket.off('data', onData)
      socket.pause()
      clearTimeout(timer)
      named = true
      this.#unnamed--
      const ticket = head.subarray(0, TICKET_BYTES)
      const key = ticket.toString('hex')
      const t = this.#tickets.get(key)
      this.#tickets.delete(key)
      if (t === undefined || t.expires <= Date.now() || t.ended.aborted) {
        socket.destroy()
        return
      }
      const conn = new SealedSocket(socket, directKeys(t.secret, ticket, 'server'), this.#bufferMax, head.subarray(TICKET_BYTES))
      const onEnded = (): void => { conn.abort(new StreamClosedError('the libp2p channel it was agreed on ended')) }
      t.ended.addEventListener('abort', onEnded, { once: true })
      conn.onEnd(() => { t.ended.removeEventListener('abort', onEnded) })
      socket.resume()
      this.#onConnection(t.peer, conn, t.ended)
    }
    socket.on('data', onData)
  }
}

/** The caller's side: connects to a ticket's port at `host` and names the ticket; resolves once connected. */
export async function connectDirect (host: string, grant: { port: number, ticket: string, secret: string }, bufferMax: number, signal: AbortSignal): Promise<SealedSocket> {
  const ticket = Buffer.from(grant.ticket, 'base64')
  const secret = Buffer.from(grant.secret, 'base64')
  if (ticket.length !== TICKET_BYTES || secret.length !== SECRET_BYTES || !Number.isInteger(grant.port) || grant.port <= 0 || grant.port > 65535) {
    throw new FrameError('malformed direct grant')
  }
  signal.throwIfAborted()
  const socket = connect({ host, port: grant.port, noDelay: true })
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => { socket.destroy(); reject(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
    socket.once('connect', () => { signal.removeEventListener('abort', onAbort); resolve() })
    socket.once('error', (err) => { signal.removeEventListener('abort', onAbort); socket.destroy(); reject(err) })
  })
  socket.write(ticket)
  return new SealedSocket(socket, directKeys(secret, ticket, 'caller'), bufferMax)
}

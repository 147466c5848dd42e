// One client connection: the socket (plain, then TLS after STLS or from the start), the line reader, and
// writes that respect back-pressure. Reading is pull-based and paused while too much unread input waits,
// so neither a client that floods nor one that never reads can grow our memory.

import { TLSSocket } from 'node:tls'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { SecureContext } from 'node:tls'
import { err, LineReader } from './codec.ts'
import { splice } from '../splice.ts'
import type { LineResult } from './codec.ts'
import { INPUT_BUFFER_BYTES_MAX, OVERLONG_DISCARD_BYTES_MAX, TLS_HANDSHAKE_TIMEOUT_MS } from './constants.ts'

/** Said to the client when the primary running its forwarded session goes away. */
export const FORWARD_LOST_TEXT = 'The server holding this mailbox went away, please reconnect'

export interface ConnectionInit {
  idleTimeoutMs: number
  onIdle: () => void
  onError: (err: Error) => void
}

export class Pop3Connection {
  socket: Socket
  secure = false
  closed = false
  readonly remoteAddress: string
  private ended = false
  private paused = false
  private corked = false
  private readonly reader = new LineReader(OVERLONG_DISCARD_BYTES_MAX)
  private wake: (() => void) | null = null
  private drainWaiters: Array<() => void> = []
  private readonly init: ConnectionInit

  constructor (socket: Socket, init: ConnectionInit) {
    this.socket = socket
    this.init = init
    this.remoteAddress = socket.remoteAddress ?? ''
    this.attach(socket)
  }

  private readonly onData = (chunk: Buffer): void => {
    this.reader.push(chunk)
    if (this.reader.buffered > INPUT_BUFFER_BYTES_MAX && !this.paused) {
      this.paused = true
      this.socket.pause()
    }
    this.notify()
  }

  private readonly onEnd = (): void => {
    this.ended = true
    this.notify()
  }

  private readonly onClose = (): void => {
    this.closed = true
    this.ended = true
    this.notify()
    const waiters = this.drainWaiters
    this.drainWaiters = []
    for (const w of waiters) w()
  }

  private readonly onDrain = (): void => {
    const waiters = this.drainWaiters
    this.drainWaiters = []
    for (const w of waiters) w()
  }

  private readonly onTimeout = (): void => {
    this.init.onIdle()
  }

  private readonly onErrorEvent = (err: Error): void => {
    this.init.onError(err)
    this.socket.destroy()
  }

  private attach (socket: Socket): void {
    socket.on('data', this.onData)
    socket.on('end', this.onEnd)
    socket.on('close', this.onClose)
    socket.on('drain', this.onDrain)
    socket.on('timeout', this.onTimeout)
    socket.on('error', this.onErrorEvent)
    socket.setTimeout(this.init.idleTimeoutMs)
  }

  private detach (socket: Socket): void {
    socket.off('data', this.onData)
    socket.off('end', this.onEnd)
    socket.off('close', this.onClose)
    socket.off('drain', this.onDrain)
    socket.off('timeout', this.onTimeout)
    socket.off('error', this.onErrorEvent)
    socket.setTimeout(0)
  }

  private notify (): void {
    const w = this.wake
    this.wake = null
    w?.()
  }

  /** The next input line under `maxBytes` (terminator included), or null once the client is gone. */
  async nextLine (maxBytes: number): Promise<LineResult | null> {
    for (;;) {
      if (this.closed) return null
      const r = this.reader.take(maxBytes)
      if (this.paused && this.reader.buffered <= INPUT_BUFFER_BYTES_MAX / 2) {
        this.paused = false
        this.socket.resume()
      }
      if (r !== null) return r
      if (this.ended) return null
      await new Promise<void>(resolve => { this.wake = resolve })
    }
  }

  /** Writes, and waits for the socket to drain when its buffer is full. Does nothing once closed. */
  async send (data: string | Buffer): Promise<void> {
    if (this.closed || this.socket.destroyed) return
    if (!this.corked) {
      // What is written until the tick's promise jobs have run (the answers to pipelined commands whose data
      // was ready, a message's status line, body and terminator) leaves in one system call. Back-pressure is
      // unchanged: past the high-water mark write() returns false and we wait for drain.
      const socket = this.socket
      this.corked = true
      socket.cork()
      process.nextTick(() => {
        this.corked = false
        socket.uncork()
      })
    }
    if (this.socket.write(data)) return
    await new Promise<void>(resolve => {
      if (this.closed) resolve()
      else this.drainWaiters.push(resolve)
    })
  }

  /**
   * Starts TLS on this connection (implicit TLS, or after "+OK" to STLS). Input buffered before the handshake
   * is dropped (RFC 2595 3.1, the STARTTLS command-injection attack). Resolves false when the handshake fails.
   */
  async startTls (secureContext: SecureContext): Promise<boolean> {
    const raw = this.socket
    this.detach(raw)
    this.reader.clear()
    raw.on('error', () => {}) // errors surface on the TLS socket; this keeps a late one from crashing us
    if (this.paused) {
      this.paused = false
      raw.resume()
    }
    const tls = new TLSSocket(raw, { isServer: true, secureContext })
    this.socket = tls
    this.attach(tls)
    const done = await new Promise<boolean>(resolve => {
      const timer = setTimeout(() => { finish(false) }, TLS_HANDSHAKE_TIMEOUT_MS)
      const finish = (v: boolean): void => {
        clearTimeout(timer)
        tls.off('secure', onSecure)
        tls.off('close', onGone)
        resolve(v)
      }
      const onSecure = (): void => { finish(true) }
      const onGone = (): void => { finish(false) }
      tls.on('secure', onSecure)
      tls.on('close', onGone)
    })
    if (!done) {
      tls.destroy()
      raw.destroy()
      return false
    }
    this.secure = true
    return true
  }

  /**
   * Says a last line and hangs up, without waiting on a client that does not read: with output still queued
   * the connection is simply destroyed.
   */
  endWith (text: string): void {
    if (this.closed || this.socket.writableLength > 0) {
      this.destroy()
      return
    }
    this.socket.end(text)
    this.closed = true
    this.notify()
  }

  /**
   * Ends the connection after pending writes are flushed. Input from then on is read and dropped: a paused
   * socket would keep a client that is still sending from ever seeing our end.
   */
  end (): void {
    if (this.closed) return
    this.socket.off('data', this.onData)
    this.reader.clear()
    this.socket.resume()
    this.socket.end()
    this.closed = true
    this.notify()
  }

  destroy (): void {
    this.socket.destroy()
    this.closed = true
    this.notify()
  }

  /**
   * The session was forwarded to the user's primary (node/grid/forward.ts): from now on bytes pass both ways
   * untouched, input not yet read first, until either side closes. TLS stays here. Resolves when both are closed.
   */
  async splice (upstream: Duplex): Promise<void> {
    const socket = this.socket
    socket.pause() // bytes arriving meanwhile wait in the socket for the pipe
    this.detach(socket) // and the primary runs the idle timer now
    socket.on('error', () => {}) // splice closes both on an error
    const pending = this.reader.takeAll()
    this.paused = false
    this.closed = true
    this.notify()
    // RFC 3206: a temporary failure, so the client logs in again (and reaches the user's new primary)
    await splice(socket, upstream, pending, { farewell: err(FORWARD_LOST_TEXT, 'SYS/TEMP') })
  }
}

/**
 * The byte edge of one IMAP connection: reads from the socket into a handler, writes compiled
 * responses in order with backpressure (stream literals included), and performs the two
 * in-place transport changes IMAP has: STARTTLS (RFC 3501 section 6.2.1) and COMPRESS=DEFLATE
 * (RFC 4978). It knows nothing of commands.
 *
 * While a command runs, input is held here rather than left unread in the socket: a paused socket with
 * unread bytes never reports the client's FIN, so a client that left while its command waited (on a dead
 * primary, a slow replica) would keep its connection slot until the command ended. Past
 * HELD_INPUT_BYTES_MAX the socket is paused after all, so a client that floods still waits in the kernel.
 */
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { TLSSocket } from 'node:tls'
import type { SecureContext } from 'node:tls'
import { constants as zlibConstants, createDeflateRaw, createInflateRaw } from 'node:zlib'
import type { DeflateRaw, InflateRaw } from 'node:zlib'
import { compileStatus } from './protocol/compiler.ts'
import type { Part } from './protocol/compiler.ts'
import { splice } from '../splice.ts'

/**
 * Input read and kept while a command runs. Pipelined commands are small (a line each; Thunderbird and
 * imapflow pipeline a handful), so 16 KiB holds them; a literal streamed ahead (LITERAL+) fills it and then
 * waits in the kernel.
 */
export const HELD_INPUT_BYTES_MAX = 16 * 1024

/** Said to the client when the primary running its forwarded session goes away (RFC 5530 UNAVAILABLE). */
export const FORWARD_LOST_TEXT = 'The server holding this mailbox went away; please reconnect'

export interface ConnectionHandlers {
  onData: (chunk: Buffer) => void
  onClose: () => void
  onError: (err: Error) => void
}

/** Raised when a stream literal yields a different number of bytes than it announced. */
export class LiteralSizeMismatch extends Error {}

export class Connection {
  readonly remoteAddress: string
  #raw: Socket
  #socket: Socket
  #handlers: ConnectionHandlers
  #inflate: InflateRaw | null = null
  #deflate: DeflateRaw | null = null
  #writeChain: Promise<void> = Promise.resolve()
  #closed = false
  #paused = false
  #corked = false
  #timeoutMs = -1
  #timeoutListening = false
  #onTimeout: (() => void) | null = null
  #held: Buffer[] = []
  #heldBytes = 0
  #socketPaused = false
  secure: boolean

  constructor (socket: Socket, secure: boolean, handlers: ConnectionHandlers) {
    this.#raw = socket
    this.#socket = socket
    this.secure = secure
    this.remoteAddress = socket.remoteAddress ?? 'unknown'
    this.#handlers = handlers
    this.#attach(socket)
  }

  get compressed (): boolean {
    return this.#deflate !== null
  }

  get closed (): boolean {
    return this.#closed
  }

  #attach (socket: Socket): void {
    socket.on('data', (chunk: Buffer) => this.#receive(chunk))
    socket.on('error', (err) => this.#handlers.onError(err))
    socket.on('close', () => this.#onClose())
  }

  #onClose (): void {
    if (this.#closed) return
    this.#closed = true
    this.#inflate?.destroy()
    this.#deflate?.destroy()
    this.#handlers.onClose()
  }

  /**
   * Closes an idle session: `onTimeout` runs after `ms` without a byte in either direction. Called before and after
   * every command; the socket's timer is set only when `ms` changes (the socket restarts it on every read and
   * write itself), and one listener calls the latest handler: re-arming the timer and replacing the listener per
   * command was 2-3 % of a busy node's time.
   */
  setTimeout (ms: number, onTimeout: () => void): void {
    this.#onTimeout = onTimeout
    if (!this.#timeoutListening) {
      this.#timeoutListening = true
      this.#raw.on('timeout', () => { this.#onTimeout?.() })
    }
    if (ms !== this.#timeoutMs) {
      this.#timeoutMs = ms
      this.#raw.setTimeout(ms)
    }
  }

  #receive (chunk: Buffer): void {
    if (!this.#paused && this.#held.length === 0) {
      this.#feed(chunk)
      return
    }
    this.#held.push(chunk)
    this.#heldBytes += chunk.length
    if (this.#heldBytes >= HELD_INPUT_BYTES_MAX && !this.#socketPaused) {
      this.#socketPaused = true
      this.#socket.pause()
    }
  }

  #feed (chunk: Buffer): void {
    if (this.#inflate !== null) this.#inflate.write(chunk)
    else this.#handlers.onData(chunk)
  }

  /** Hands held input on, in order, until a command pauses the connection again. */
  #drain (): void {
    while (!this.#paused && this.#held.length > 0 && !this.#closed) {
      const chunk = this.#held.shift() as Buffer
      this.#heldBytes -= chunk.length
      this.#feed(chunk)
    }
    if (!this.#paused && this.#held.length === 0 && this.#socketPaused) {
      this.#socketPaused = false
      this.#socket.resume()
    }
  }

  /**
   * Stops handing input on while a command runs. The socket keeps being read (up to HELD_INPUT_BYTES_MAX) so
   * that a client's close is seen, and its slot freed, whatever the command waits on.
   */
  pause (): void {
    if (this.#paused) return
    this.#paused = true
    this.#inflate?.pause()
  }

  resume (): void {
    if (!this.#paused) return
    this.#paused = false
    this.#inflate?.resume()
    // later: the caller is the session's read loop, which must see the held bytes as new input
    if (this.#held.length > 0) queueMicrotask(() => this.#drain())
    else this.#drain()
  }

  /** Takes the input held while a command ran (a forwarded session passes it on). */
  #takeHeld (): Buffer {
    const held = Buffer.concat(this.#held)
    this.#held = []
    this.#heldBytes = 0
    return held
  }

  /** Queues a response; resolves when it has been handed to the socket. */
  write (parts: Part[] | Buffer): Promise<void> {
    const list = Buffer.isBuffer(parts) ? [parts] : parts
    const next = this.#writeChain.then(() => this.#writeParts(list))
    this.#writeChain = next.catch(() => {})
    return next
  }

  async #writeParts (parts: Part[]): Promise<void> {
    if (this.#closed) return
    for (const part of parts) {
      if (Buffer.isBuffer(part)) {
        await this.#writeChunk(part)
        continue
      }
      let sent = 0
      try {
        for await (const chunk of part.open()) {
          if (sent + chunk.length > part.size) throw new LiteralSizeMismatch('literal longer than announced')
          sent += chunk.length
          await this.#writeChunk(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk))
          if (this.#closed) return
        }
        // The literal's size was announced: a shorter source would desynchronise the client.
        if (sent !== part.size) throw new LiteralSizeMismatch('literal shorter than announced')
      } catch (err) {
        // Half a literal is on the wire: no later byte could be parsed right, so the only safe
        // answer is to drop the connection (the command's error is still logged by the caller).
        this.destroy()
        throw err
      }
    }
    if (this.#deflate !== null) {
      const deflate = this.#deflate
      await new Promise<void>((resolve) => deflate.flush(zlibConstants.Z_SYNC_FLUSH, () => resolve()))
    }
  }

  #writeChunk (chunk: Buffer): Promise<void> {
    const sink = this.#deflate ?? this.#socket
    if (this.#closed || sink.destroyed) return Promise.resolve()
    if (!this.#corked && sink === this.#socket) {
      // Everything written until the current tick's promise jobs have run (a command's untagged responses and
      // its tagged reply, the FETCH responses already prepared) leaves in one system call, not one each.
      // Back-pressure is unchanged: past the high-water mark write() still returns false and we wait for drain.
      this.#corked = true
      sink.cork()
      process.nextTick(() => {
        this.#corked = false
        sink.uncork()
      })
    }
    if (sink.write(chunk)) return Promise.resolve()
    return new Promise((resolve) => {
      const done = (): void => {
        sink.off('drain', done)
        this.#socket.off('close', done)
        resolve()
      }
      sink.on('drain', done)
      this.#socket.on('close', done)
    })
  }

  /** Waits until everything queued has been written. */
  flush (): Promise<void> {
    return this.#writeChain
  }

  /**
   * RFC 3501 section 6.2.1 / RFC 2595 section 3.1: after the OK to STARTTLS the next byte from
   * the client is the TLS handshake; anything pipelined before it was discarded by the caller.
   */
  async startTls (context: SecureContext): Promise<void> {
    await this.flush()
    const plain = this.#socket
    plain.removeAllListeners('data')
    plain.removeAllListeners('close')
    plain.removeAllListeners('error')
    // sent in the clear after STARTTLS: dropped like the parser's pipelined bytes (RFC 2595 section 3.1)
    this.#takeHeld()
    this.#socketPaused = false
    const secure = new TLSSocket(plain, { isServer: true, secureContext: context })
    this.#socket = secure
    this.secure = true
    this.#attach(secure)
    plain.on('close', () => this.#onClose())
    await new Promise<void>((resolve, reject) => {
      secure.once('secure', () => resolve())
      secure.once('error', reject)
      secure.once('close', () => reject(new Error('closed during TLS handshake')))
    })
  }

  /**
   * RFC 4978 section 3: compression starts right after the OK; bytes the client sent after the
   * command are already compressed, so the caller passes them back in as `pending`.
   */
  async startCompression (pending: Buffer): Promise<void> {
    await this.flush()
    const inflate = createInflateRaw()
    const deflate = createDeflateRaw({ level: 6 })
    // pipe keeps the socket's backpressure; end: false because LOGOUT ends the socket itself.
    deflate.pipe(this.#socket, { end: false })
    deflate.on('error', (err) => this.#handlers.onError(err))
    inflate.on('data', (chunk: Buffer) => this.#handlers.onData(chunk))
    inflate.on('error', (err) => this.#handlers.onError(err))
    this.#inflate = inflate
    this.#deflate = deflate
    if (this.#paused) inflate.pause()
    // held input came after `pending`, and is compressed too: it reaches the inflater when the command ends
    if (pending.length > 0) inflate.write(pending)
  }

  /** Writes what is queued, then closes. Safe to call twice. */
  async end (): Promise<void> {
    if (this.#closed) return
    try {
      await this.flush()
    } catch {
      // A failing write is no reason not to close.
    }
    if (this.#deflate !== null) {
      const deflate = this.#deflate
      await new Promise<void>((resolve) => deflate.flush(zlibConstants.Z_SYNC_FLUSH, () => resolve()))
    }
    this.#socket.end()
    const socket = this.#socket
    setTimeout(() => socket.destroy(), 2000).unref()
  }

  destroy (): void {
    this.#socket.destroy()
    this.#raw.destroy()
  }

  /**
   * The session was forwarded to the user's primary (node/grid/forward.ts): stop reading commands and pass
   * bytes both ways until either side closes. TLS stays here; `pending` is what the client sent after the
   * login. Resolves when both are closed.
   */
  async splice (upstream: Duplex, pending: Buffer): Promise<void> {
    // paused first: bytes arriving meanwhile wait in the socket for the pipe
    this.#socket.pause()
    this.#socket.removeAllListeners('data')
    this.#raw.setTimeout(0) // the primary runs the session's timers now
    this.#timeoutMs = 0
    this.#onTimeout = null
    const held = this.#takeHeld()
    this.#socketPaused = false
    await this.flush()
    // the primary loses nothing the client sent: first what the parser had, then what waited here
    const farewell = compileStatus('*', 'BYE', FORWARD_LOST_TEXT, { name: 'UNAVAILABLE' })
    await splice(this.#socket, upstream, held.length === 0 ? pending : Buffer.concat([pending, held]), { farewell })
  }
}

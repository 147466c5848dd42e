// A peer stream dressed as a socket, so the protocol servers can run an adopted (forwarded) session on it with
// the same code as a client socket: it adds what those servers use from net.Socket and a Duplex lacks — the
// client's address (from the forwarding header, not the peer's) and an idle timer (setTimeout and 'timeout',
// armed by read and write activity as net.Socket's is). Bytes pass through with back-pressure both ways.

import { Duplex } from 'node:stream'

export interface StreamSocketInit {
  /** The client's address as the edge node saw it. */
  remoteAddress: string
  /** false: end our side when the peer ends its side, as net.Server does by default (IMAP); true for POP3. */
  allowHalfOpen?: boolean
}

export class StreamSocket extends Duplex {
  readonly remoteAddress: string
  readonly remotePort = 0
  #inner: Duplex
  #timeoutMs = 0
  #timer: NodeJS.Timeout | null = null
  #sawEnd = false

  constructor (inner: Duplex, init: StreamSocketInit) {
    super({ allowHalfOpen: init.allowHalfOpen ?? false })
    this.#inner = inner
    this.remoteAddress = init.remoteAddress
    inner.on('data', (chunk: Buffer) => {
      this.#touch()
      if (!this.push(chunk)) inner.pause()
    })
    inner.on('end', () => {
      this.#sawEnd = true
      this.push(null)
    })
    inner.on('error', (err) => this.destroy(err))
    inner.on('close', () => {
      // A peer stream closed before it ended (reset, peer gone): the session is over.
      if (!this.#sawEnd || !this.writableEnded) this.destroy()
    })
  }

  override _read (): void {
    this.#inner.resume()
  }

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.#touch()
    if (this.#inner.write(chunk)) {
      callback()
      return
    }
    const done = (): void => {
      this.#inner.off('drain', done)
      this.#inner.off('close', done)
      callback()
    }
    this.#inner.on('drain', done)
    this.#inner.on('close', done)
  }

  override _final (callback: (err?: Error | null) => void): void {
    this.#inner.end()
    callback()
  }

  override _destroy (err: Error | null, callback: (err?: Error | null) => void): void {
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    this.#inner.destroy()
    callback(err)
  }

  /** net.Socket semantics: 'timeout' after `ms` without activity; 0 disables. The socket is not closed by it. */
  setTimeout (ms: number, onTimeout?: () => void): this {
    this.#timeoutMs = ms
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    if (onTimeout !== undefined) this.once('timeout', onTimeout)
    if (ms > 0 && !this.destroyed) {
      this.#timer = setTimeout(() => this.emit('timeout'), ms)
      this.#timer.unref()
    }
    return this
  }

  setNoDelay (): this {
    return this
  }

  setKeepAlive (): this {
    return this
  }

  #touch (): void {
    if (this.#timer !== null && this.#timeoutMs > 0) this.#timer.refresh()
  }
}

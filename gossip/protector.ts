// The grid's connection protector: the layer right above TCP, under noise, that keeps every machine without the
// cluster key out (libp2p's "private network"), in place of @libp2p/pnet. Every node of a grid runs this code, so
// the protector is ours to choose; nodes of an older release (with pnet) cannot connect to nodes with this one
// (the nonce exchange has the same shape, and what follows decrypts to garbage, so noise fails): upgrade all nodes.
//
// The construction is pnet's (a stream cipher keyed by the cluster key and a random nonce per direction, exchanged
// in the clear; integrity and peer authentication are noise's, above), with two differences:
//
// 1. The cipher is node:crypto's ChaCha20 (OpenSSL, native) instead of XSalsa20 in WebAssembly, which ran over
//    every byte a second time under noise. Each direction's key is HKDF-SHA-256 of the cluster key with that
//    direction's 24-byte nonce as salt and the direction (dialer's or listener's) in the info, and the counter
//    starts at 0: a key is never used for two directions or two connections (barring a 192-bit nonce collision),
//    and a peer that echoes our nonce back (reflection) gets a different key for its direction.
//
// 2. Writes are coalesced: everything the connection is asked to send in one turn of the event loop (yamux frame
//    headers and data, noise's length prefixes and ciphertexts, window updates: about 7 buffers per RPC call,
//    each a `write` syscall of @libp2p/tcp's `sendData`, which writes the buffers of a list one by one) is
//    concatenated, encrypted in one call and handed to the socket as one buffer, at `setImmediate` or as soon as
//    COALESCE_BYTES are pending, and always before the transport's connection is closed. The connection reports
//    back-pressure from the socket's last write.
//
// Each side sends its nonce and then, already encrypted, a 16-byte check value (one write, so the handshake is one
// round trip as pnet's): a peer whose check does not decrypt to the value (another key, no protector, our own bytes
// reflected back) is refused at once, before noise and any protocol (and without the key, noise's handshake would
// fail anyway: its messages decrypt to garbage). Nonce and check must arrive within `timeoutMs`.

import { createCipheriv, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto'
import type { Cipheriv } from 'node:crypto'
import type { AbortOptions, ConnectionProtector, MessageStream, MultiaddrConnection } from '@libp2p/interface'
import { AbstractMultiaddrConnection, byteStream } from '@libp2p/utils'
import type { SendResult } from '@libp2p/utils'
import type { Uint8ArrayList } from 'uint8arraylist'

export const PROTECTOR_NONCE_BYTES = 24
/** Flush pending writes at once when this many bytes wait (a noise message is at most 64 KiB). */
const COALESCE_BYTES = 128 * 1024
const CIPHER = 'chacha20'
const ZERO_IV = Buffer.alloc(16) // OpenSSL's chacha20 IV: 32-bit block counter (0) then the 96-bit nonce (0)
/** The first 16 bytes of each direction's stream, checked by the receiver: a peer without the key is refused at once. */
const CHECK = Buffer.from('mailgrid/protect')

/** The protector's 32-byte key for a cluster key: deterministic, so every node with the key agrees. */
export function protectorKey (clusterKey: string): Buffer {
  if (clusterKey.length === 0) throw new Error('the cluster key is empty')
  return Buffer.from(hkdfSync('sha256', clusterKey, 'mailgrid/protector', 'chacha20-key-v1', 32))
}

function directionCipher (key: Buffer, nonce: Uint8Array, dialer: boolean): Cipheriv {
  const k = Buffer.from(hkdfSync('sha256', key, nonce, dialer ? 'mailgrid/protector/dialer' : 'mailgrid/protector/listener', 32))
  return createCipheriv(CIPHER, k, ZERO_IV)
}

interface ProtectedInit {
  maConn: MessageStream
  outbound: Cipheriv
  inbound: Cipheriv
  log: MultiaddrConnection['log']
}

class ProtectedConnection extends AbstractMultiaddrConnection {
  private readonly maConn: MessageStream
  private readonly outbound: Cipheriv
  private readonly inbound: Cipheriv
  private pending: Uint8Array[] = []
  private pendingBytes = 0
  private flushScheduled = false
  /** The socket's last write asked us to wait for 'drain'. */
  private full = false

  constructor (init: ProtectedInit) {
    const remoteAddr = (init.maConn as Partial<MultiaddrConnection>).remoteAddr
    if (remoteAddr === undefined) throw new Error('the protector needs a connection with a remote address')
    super({ log: init.log, remoteAddr, direction: init.maConn.direction })
    this.maConn = init.maConn
    this.outbound = init.outbound
    this.inbound = init.inbound
    // libp2p's Connection closes the transport's connection itself (after the muxer), not this one: what is still
    // pending here (a goodbye published just before a stop, a muxer's last frames) is written before that close.
    const rawClose = this.maConn.close.bind(this.maConn)
    this.maConn.close = async (options?: AbortOptions): Promise<void> => {
      this.flushNow()
      await rawClose(options)
    }
    this.maConn.addEventListener('message', evt => {
      const data = evt.data
      // noise's reader (@libp2p/utils LengthPrefixedDecoder with noise's uint16BEDecode) ends every pass over what
      // it was handed by asking for the length of an empty buffer, which throws and catches a RangeError: with a
      // stack captured, that was 2.6-3.1 % of a grid node's busy time under bench:grid (8 µs per pass, 1.3 without
      // a stack). Errors made while this chunk is handed up synchronously (noise, yamux, the streams' listeners)
      // carry their name and message but no stack.
      const limit = Error.stackTraceLimit
      Error.stackTraceLimit = 0
      try {
        if (data instanceof Uint8Array) this.onData(this.inbound.update(data))
        else for (const buf of data) this.onData(this.inbound.update(buf))
      } finally {
        Error.stackTraceLimit = limit
      }
    })
    this.maConn.addEventListener('drain', () => {
      this.full = false
      this.onMuxerDrain()
    })
    this.maConn.addEventListener('close', evt => {
      this.pending = []
      this.pendingBytes = 0
      if (evt.error != null) {
        if (evt.local === true) this.abort(evt.error)
        else this.onRemoteReset()
      } else {
        this.onTransportClosed()
      }
    })
  }

  private readonly flushNow = (): void => {
    this.flushScheduled = false
    if (this.pendingBytes === 0) return
    const plain = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending, this.pendingBytes)
    this.pending = []
    this.pendingBytes = 0
    if (this.maConn.status !== 'open') return // closed under us: 'close' follows
    const sealed = this.outbound.update(plain)
    try {
      if (!this.maConn.send(sealed)) this.full = true
    } catch (err) {
      this.abort(err as Error)
    }
  }

  sendData (data: Uint8ArrayList): SendResult {
    for (const buf of data) {
      if (buf.byteLength === 0) continue
      this.pending.push(buf)
      this.pendingBytes += buf.byteLength
    }
    if (this.pendingBytes >= COALESCE_BYTES) this.flushNow()
    else if (!this.flushScheduled && this.pendingBytes > 0) {
      this.flushScheduled = true
      setImmediate(this.flushNow)
    }
    return { sentBytes: data.byteLength, canSendMore: !this.full }
  }

  async sendClose (options?: AbortOptions): Promise<void> {
    this.flushNow()
    await this.maConn.close(options)
  }

  sendReset (err: Error): void {
    this.pending = []
    this.pendingBytes = 0
    this.maConn.abort(err)
  }

  sendPause (): void {
    this.maConn.pause()
  }

  sendResume (): void {
    this.maConn.resume()
  }
}

class ClusterProtector implements ConnectionProtector {
  readonly [Symbol.toStringTag] = 'mailgrid/protector'
  private readonly key: Buffer
  private readonly timeoutMs: number

  constructor (clusterKey: string, timeoutMs: number) {
    this.key = protectorKey(clusterKey)
    this.timeoutMs = timeoutMs
  }

  async protect (connection: MessageStream, options?: AbortOptions): Promise<MessageStream> {
    const log = connection.log.newScope('protector')
    const localNonce = randomBytes(PROTECTOR_NONCE_BYTES)
    const signal = options?.signal ?? AbortSignal.timeout(this.timeoutMs)
    const dialer = connection.direction === 'outbound'
    const outbound = directionCipher(this.key, localNonce, dialer)
    const bytes = byteStream(connection)
    const [remote] = await Promise.all([
      bytes.read({ bytes: PROTECTOR_NONCE_BYTES + CHECK.byteLength, signal }),
      bytes.write(Buffer.concat([localNonce, outbound.update(CHECK)]), { signal })
    ])
    const hello = remote.subarray()
    const inbound = directionCipher(this.key, hello.subarray(0, PROTECTOR_NONCE_BYTES), !dialer)
    if (!timingSafeEqual(inbound.update(hello.subarray(PROTECTOR_NONCE_BYTES)), CHECK)) {
      const err = new Error('the peer does not have the cluster key')
      log('%s', err.message)
      connection.abort(err)
      throw err
    }
    log('exchanged nonces')
    return new ProtectedConnection({
      maConn: bytes.unwrap(),
      outbound,
      inbound,
      log
    })
  }
}

/** The protector for libp2p's `connectionProtector`, keyed by the cluster key. */
export function clusterProtector (init: { clusterKey: string, timeoutMs: number }): () => ConnectionProtector {
  return () => new ClusterProtector(init.clusterKey, init.timeoutMs)
}

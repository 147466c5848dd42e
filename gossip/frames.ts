// Length-prefixed frames on a libp2p 3 stream: an unsigned-varint length (as libp2p's own protocols and
// it-length-prefixed use) followed by that many bytes. The reader enforces a per-frame limit before
// buffering the frame, so a hostile length costs nothing; the writer respects the stream's back-pressure.

import { Uint8ArrayList } from 'uint8arraylist'
import type { Stream } from '@libp2p/interface'

/** A frame broke the protocol: bad length, over the limit, truncated, or trailing bytes. */
export class FrameError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'FrameError'
  }
}

/** The stream ended in a reset or an abort, not a clean close. */
export class StreamClosedError extends Error {
  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'StreamClosedError'
  }
}

/** 10 bytes encode any 64-bit length; ours are < 2^31, so more than 5 is malformed. */
const VARINT_BYTES_MAX = 5

/** Largest slice handed to `send()` at once, so a big body yields to back-pressure between slices. */
const SEND_SLICE_BYTES = 256 * 1024

export function encodeVarint (n: number): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0 || n >= 2 ** 31) throw new RangeError('frame length out of range')
  const out: number[] = []
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80)
    n >>>= 7
  }
  out.push(n)
  return Uint8Array.from(out)
}

/**
 * Frames out of bytes pushed in: the parser and the wait for more, whatever carries the bytes (a libp2p stream
 * below, a sealed socket in direct.ts). `push` fails the buffer when more than `bufferMax` bytes wait unread.
 */
export class FrameBuffer {
  readonly #buf = new Uint8ArrayList()
  #ended = false
  #error: Error | undefined
  #wake: (() => void) | undefined
  readonly #bufferMax: number

  constructor (bufferMax: number) {
    this.#bufferMax = bufferMax
  }

  /** Appends received bytes; false (and the buffer failed) when the peer floods past the limit. */
  push (data: Uint8Array | Uint8ArrayList): boolean {
    this.#buf.append(data)
    if (this.#buf.byteLength > this.#bufferMax) {
      this.fail(new FrameError(`peer sent more than ${this.#bufferMax} unread bytes`))
      this.#buf.consume(this.#buf.byteLength)
      return false
    }
    this.#poke()
    return true
  }

  /** The bytes ended cleanly: the last frame read ends the frames. */
  end (): void {
    this.#ended = true
    this.#poke()
  }

  /** The bytes ended in an error: every read from now on throws it (the first one given). */
  fail (err: Error): void {
    this.#error ??= err
    this.#poke()
  }

  get failed (): Error | undefined {
    return this.#error
  }

  #poke (): void {
    const w = this.#wake
    this.#wake = undefined
    w?.()
  }

  async #more (signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => { reject(signal?.reason) }
      this.#wake = () => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      }
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  /** The next frame, or null when the bytes ended cleanly at a frame boundary. */
  async next (maxBytes: number, signal?: AbortSignal): Promise<Uint8Array | null> {
    for (;;) {
      if (this.#error !== undefined) throw this.#error
      const header = this.#parseLength(maxBytes)
      if (header !== undefined) {
        const [len, skip] = header
        if (this.#buf.byteLength >= skip + len) {
          const frame = this.#buf.subarray(skip, skip + len)
          this.#buf.consume(skip + len)
          return frame
        }
      }
      if (this.#ended) {
        if (this.#buf.byteLength === 0) return null
        throw new FrameError('stream ended inside a frame')
      }
      await this.#more(signal)
    }
  }

  /** [length, bytes of the prefix], or undefined if the prefix is incomplete. */
  #parseLength (maxBytes: number): [number, number] | undefined {
    let n = 0
    for (let i = 0; i < VARINT_BYTES_MAX; i++) {
      if (i >= this.#buf.byteLength) return undefined
      const b = this.#buf.get(i)
      n += (b & 0x7f) * 2 ** (7 * i)
      if ((b & 0x80) === 0) {
        if (n > maxBytes) throw new FrameError(`frame of ${n} bytes exceeds the limit of ${maxBytes}`)
        return [n, i + 1]
      }
    }
    throw new FrameError('malformed frame length')
  }
}

/** Reads frames off a stream. Listens from construction on, so create it before the peer can answer. */
export class FrameReader {
  readonly #stream: Stream
  readonly #frames: FrameBuffer

  /** `bufferMax`: bytes received but not yet read beyond which the peer is flooding and the stream is reset. */
  constructor (stream: Stream, bufferMax: number) {
    this.#stream = stream
    this.#frames = new FrameBuffer(bufferMax)
    stream.addEventListener('message', this.#onMessage)
    stream.addEventListener('end', this.#onEnd)
    stream.addEventListener('close', this.#onClose)
    if (stream.readableEnded) this.#frames.end()
  }

  readonly #onMessage = (evt: { data: Uint8Array | Uint8ArrayList }): void => {
    if (!this.#frames.push(evt.data)) this.#stream.abort(this.#frames.failed!)
  }

  readonly #onEnd = (): void => {
    this.#frames.end()
  }

  readonly #onClose = (evt: Event & { error?: Error }): void => {
    if (evt.error != null) this.#frames.fail(new StreamClosedError(`stream ${this.#stream.status}: ${evt.error.message}`, { cause: evt.error }))
    else if (this.#stream.readableEnded) this.#frames.end()
  }

  detach (): void {
    this.#stream.removeEventListener('message', this.#onMessage as never)
    this.#stream.removeEventListener('end', this.#onEnd)
    this.#stream.removeEventListener('close', this.#onClose as never)
  }

  /** The next frame, or null when the stream ended cleanly at a frame boundary. */
  async next (maxBytes: number, signal?: AbortSignal): Promise<Uint8Array | null> {
    return await this.#frames.next(maxBytes, signal)
  }
}

/**
 * Sends frames, waiting for 'drain' whenever the stream asks for it. Frames that fit SEND_SLICE_BYTES together
 * (an RPC's header and a body of ordinary mail) leave in one `send()`, with their length prefixes: every send
 * becomes a yamux frame, a noise message and a socket write of its own, and that per-send cost, four times per
 * message, was a large part of a grid's CPU per acknowledged message (bench:grid profile, ANALYSIS.md).
 */
export async function writeFrames (stream: Stream, frames: Uint8Array[], signal?: AbortSignal): Promise<void> {
  const prefixes = frames.map(f => encodeVarint(f.byteLength))
  const total = frames.reduce((n, f, i) => n + prefixes[i].byteLength + f.byteLength, 0)
  if (total <= SEND_SLICE_BYTES) {
    const one = new Uint8Array(total)
    let off = 0
    for (const [i, f] of frames.entries()) {
      one.set(prefixes[i], off)
      off += prefixes[i].byteLength
      one.set(f, off)
      off += f.byteLength
    }
    signal?.throwIfAborted()
    if (!stream.send(one)) await stream.onDrain({ signal })
    return
  }
  for (const f of frames) {
    const parts = [encodeVarint(f.byteLength)]
    for (let off = 0; off < f.byteLength; off += SEND_SLICE_BYTES) parts.push(f.subarray(off, off + SEND_SLICE_BYTES))
    for (const p of parts) {
      signal?.throwIfAborted()
      if (!stream.send(p)) await stream.onDrain({ signal })
    }
  }
}

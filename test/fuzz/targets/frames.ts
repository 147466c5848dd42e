// The grid's RPC framing: gossip/frames.ts FrameReader over a stream that delivers the input in random
// messages, read with a random per-frame limit, compared with a reference decoder written from the format
// (unsigned varint of at most 5 bytes, then that many bytes); then the RPC payload decoding of node/grid/wire.ts
// on what was read: the first frame as the JSON envelope, unpackBodies(header.lens, second frame) and
// throwIfError(header). Allowed refusals: FrameError, StreamClosedError, MailError; anything else escapes.

import fc from 'fast-check'
import { encodeVarint, FrameError, FrameReader, StreamClosedError } from '../../../gossip/frames.ts'
import type { Stream } from '@libp2p/interface'
import { throwIfError, unpackBodies } from '../../../node/grid/wire.ts'
import { isMailError } from '../../../store/index.ts'
import { rng } from '../engine.ts'
import type { FuzzInput, FuzzTarget } from '../engine.ts'
import { loadCorpus } from '../corpus.ts'

/** A stream that FrameReader can listen to: message, end and close events, abort, status. */
class FakeStream extends EventTarget {
  status = 'open'
  readableEnded = false
  aborted: Error | null = null
  abort (err: Error): void {
    this.aborted = err
    this.status = 'aborted'
  }

  deliver (data: Uint8Array): void {
    this.dispatchEvent(Object.assign(new Event('message'), { data }))
  }

  end (): void {
    this.readableEnded = true
    this.dispatchEvent(new Event('end'))
    this.dispatchEvent(new Event('close'))
  }

  reset (): void {
    this.status = 'reset'
    this.dispatchEvent(Object.assign(new Event('close'), { error: new Error('stream reset') }))
  }
}

/** The format, decoded the slow way: frames, and whether the input is malformed. */
function reference (data: Buffer, maxBytes: number): { frames: Buffer[], error: boolean } {
  const frames: Buffer[] = []
  let pos = 0
  while (pos < data.length) {
    let n = 0
    let i = 0
    for (;;) {
      if (i === 5) return { frames, error: true }
      if (pos + i >= data.length) return { frames, error: true }
      const b = data[pos + i]!
      n += (b & 0x7f) * 2 ** (7 * i)
      i++
      if ((b & 0x80) === 0) break
    }
    if (n > maxBytes) return { frames, error: true }
    if (pos + i + n > data.length) return { frames, error: true }
    frames.push(data.subarray(pos + i, pos + i + n))
    pos += i + n
  }
  return { frames, error: false }
}

function allowed (err: unknown): boolean {
  return err instanceof FrameError || err instanceof StreamClosedError || isMailError(err)
}

export async function runFrames ({ data, knob }: FuzzInput): Promise<void> {
  const r = rng(knob)
  const maxBytes = [16 * 1024 * 1024, 64, 1024, r.int(300)][knob & 3]!
  const reset = (knob & 4) !== 0 && (knob & 8) !== 0
  const stream = new FakeStream()
  const reader = new FrameReader(stream as unknown as Stream, 1024 * 1024)
  for (let off = 0; off < data.length;) {
    const n = 1 + r.int(r.next() < 0.5 && data.length <= 8192 ? 3 : 512)
    stream.deliver(data.subarray(off, off + n))
    off += n
  }
  if (reset) stream.reset()
  else stream.end()
  const frames: Buffer[] = []
  let failed: unknown = null
  try {
    for (;;) {
      const frame = await reader.next(maxBytes)
      if (frame === null) break
      frames.push(Buffer.from(frame))
      if (frames.length > data.length + 1) throw new Error('more frames than bytes')
    }
  } catch (err) {
    if (!allowed(err)) throw err
    failed = err
  }
  reader.detach()
  if (!reset) {
    const ref = reference(data, maxBytes)
    if (ref.error !== (failed !== null)) throw new Error(`reader ${failed === null ? 'accepted' : 'refused'} what the format ${ref.error ? 'refuses' : 'accepts'}`)
    if (ref.frames.length !== frames.length || ref.frames.some((f, i) => !f.equals(frames[i]!))) throw new Error('frames differ from the reference decoding')
  }

  // the RPC payload: envelope JSON, bodies
  const head = frames[0]
  if (head === undefined) return
  let envelope: unknown
  try {
    envelope = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(head))
  } catch {
    return
  }
  if (typeof envelope !== 'object' || envelope === null || Array.isArray(envelope)) return
  const header = (envelope as { header?: unknown }).header
  if (typeof header !== 'object' || header === null || Array.isArray(header)) return
  const h = header as Record<string, unknown>
  try {
    const bodies = unpackBodies(h.lens, frames[1])
    const total = bodies.reduce((s, b) => s + b.length, 0)
    if (total > (frames[1]?.length ?? 0)) throw new Error('bodies longer than the payload')
  } catch (err) {
    if (!allowed(err)) throw err
  }
  try {
    throwIfError({ header: h })
  } catch (err) {
    if (!isMailError(err)) throw err
  }
}

const lensArb = fc.oneof(
  fc.array(fc.nat({ max: 40 }), { maxLength: 5 }),
  fc.array(fc.oneof(fc.integer(), fc.double(), fc.constantFrom(-1, 2 ** 53, Number.MAX_SAFE_INTEGER, 0.5), fc.string({ maxLength: 3 }), fc.constant(null)), { maxLength: 4 }),
  fc.constantFrom(null, 'x', 5, {})
)
const errorArb = fc.option(fc.record({ kind: fc.oneof(fc.constantFrom('temp', 'notFound', 'noQuota', 'bogus', '__proto__', 'constructor'), fc.integer()), message: fc.oneof(fc.string({ maxLength: 10 }), fc.constant(null), fc.integer()) }))
const envelopeArb = fc.tuple(lensArb, errorArb, fc.uint8Array({ maxLength: 120 })).map(([lens, error, body]) => {
  const header: Record<string, unknown> = { lens }
  if (error !== null) header.error = error
  const head = Buffer.from(JSON.stringify({ header }))
  return Buffer.concat([encodeVarint(head.length), head, encodeVarint(body.length), Buffer.from(body)])
})

export const frames: FuzzTarget = {
  name: 'frames',
  grammar: fc.oneof(envelopeArb, fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 4 }).map(fs => Buffer.concat(fs.flatMap(f => [encodeVarint(f.length), Buffer.from(f)])))),
  corpus: loadCorpus('frames'),
  dictionary: ['\u0080', '\u00ff\u00ff\u00ff\u00ff\u000f', '\u0000', '{"header":{"lens":[1,2]}}', '"lens":[-1]', '"error":{"kind":"temp"}', '\u0080\u0080\u0080\u0080\u0080\u0001'],
  inputBytesMax: 64 * 1024,
  run: runFrames
}

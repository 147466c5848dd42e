// Node-to-node RPC and raw streams between two hosts on loopback: bodies, errors, timeouts, aborts,
// hostile frames, back-pressure, half-close and resets.

import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import type { Duplex } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import { RpcError } from '../../gossip/index.ts'
import type { Gossip } from '../../gossip/index.ts'
import { RPC_HEADER_BYTES_MAX, RPC_INBOUND_STREAMS_MAX } from '../../gossip/constants.ts'
import { encodeVarint } from '../../gossip/frames.ts'
import { MUX_PROTOCOL } from '../../gossip/rpc.ts'
import { formed, startHost, waitFor } from './helpers.ts'
import type { Cleanups } from './helpers.ts'

const FAST = { heartbeatMs: 250, suspectAfterMs: 750, deadAfterMs: 1500 }

async function pair (t: Cleanups): Promise<[Gossip, Gossip]> {
  const a = await startHost(t, FAST)
  const b = await startHost(t, { ...FAST, bootstrap: [a.addr] })
  await waitFor(() => formed([a.gossip, b.gossip]), 5000, 'the pair to form')
  return [a.gossip, b.gossip]
}

const isRpc = (code: RpcError['code']) => (err: unknown): boolean => {
  assert.ok(err instanceof RpcError, `expected an RpcError, got ${String(err)}`)
  assert.equal(err.code, code, err.message)
  return true
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

/** Reads a Duplex to its end. */
async function readAll (d: Duplex): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of d) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

describe('rpc', { timeout: 60_000 }, () => {
  let a: Gossip
  let b: Gossip
  const cleanups: Array<() => Promise<void>> = []
  after(async () => { for (const fn of cleanups.reverse()) await fn() })
  before(async () => {
    // One pair for the whole suite, stopped when it ends.
    [a, b] = await pair({ after: fn => { cleanups.push(fn) } })
    a.handle('/t/echo/1.0.0', async (req, ctx) => ({ header: { echo: req.header, peer: ctx.peer, bodyBytes: req.body?.byteLength ?? null }, body: req.body }))
    a.handle('/t/fail/1.0.0', async () => { throw new Error('mailbox store is on fire') })
    a.handle('/t/wait/1.0.0', async (_req, ctx) => {
      await new Promise<void>(resolve => { ctx.signal.addEventListener('abort', () => { resolve() }, { once: true }) })
      waitAborted++
      return { header: {} }
    })
  })
  let waitAborted = 0

  it('round-trips a header and a 1 MiB body, both ways', async () => {
    const body = randomBytes(1024 * 1024)
    const res = await b.call(a.self, '/t/echo/1.0.0', { header: { op: 'put', n: 1, nested: { s: 'é' } }, body })
    assert.deepEqual(res.header, { echo: { op: 'put', n: 1, nested: { s: 'é' } }, peer: b.self, bodyBytes: body.byteLength })
    assert.equal(sha(res.body ?? new Uint8Array()), sha(body))
    b.handle('/t/back/1.0.0', async req => ({ header: { ok: true }, body: req.body }))
    const back = await a.call(b.self, '/t/back/1.0.0', { header: {}, body })
    assert.equal(sha(back.body ?? new Uint8Array()), sha(body))
  })

  it('keeps "no body" apart from "empty body"', async () => {
    const none = await b.call(a.self, '/t/echo/1.0.0', { header: {} })
    assert.equal(none.header.bodyBytes, null)
    assert.equal(none.body, undefined)
    const empty = await b.call(a.self, '/t/echo/1.0.0', { header: {}, body: new Uint8Array(0) })
    assert.equal(empty.header.bodyBytes, 0)
    assert.equal(empty.body?.byteLength, 0)
  })

  it('runs many calls concurrently', async () => {
    const results = await Promise.all(Array.from({ length: 50 }, async (_, i) => await b.call(a.self, '/t/echo/1.0.0', { header: { i } })))
    assert.deepEqual(results.map(r => (r.header.echo as { i: number }).i), Array.from({ length: 50 }, (_, i) => i))
  })

  it('maps a throwing handler to `remote` with its message and no stack', async () => {
    await assert.rejects(b.call(a.self, '/t/fail/1.0.0', { header: {} }), (err: unknown) => {
      isRpc('remote')(err)
      assert.equal((err as Error).message, 'mailbox store is on fire')
      assert.ok(!(err as Error).message.includes('rpc.test.ts'))
      return true
    })
  })

  it('times out, and the handler sees its signal aborted', async () => {
    const before = waitAborted
    const t0 = Date.now()
    await assert.rejects(b.call(a.self, '/t/wait/1.0.0', { header: {} }, { timeoutMs: 300 }), isRpc('timeout'))
    assert.ok(Date.now() - t0 < 2000)
    await waitFor(() => waitAborted === before + 1, 2000, 'the handler to be aborted')
  })

  it('is aborted by the caller, before and during the call', async () => {
    await assert.rejects(b.call(a.self, '/t/echo/1.0.0', { header: {} }, { signal: AbortSignal.abort() }), isRpc('aborted'))
    const before = waitAborted
    const ac = new AbortController()
    setTimeout(() => { ac.abort() }, 100)
    await assert.rejects(b.call(a.self, '/t/wait/1.0.0', { header: {} }, { signal: ac.signal }), isRpc('aborted'))
    await waitFor(() => waitAborted === before + 1, 2000, 'the handler to be aborted')
  })

  it('refuses a protocol nobody serves, and cannot reach a peer nobody knows', async () => {
    await assert.rejects(b.call(a.self, '/t/nothing/1.0.0', { header: {} }), isRpc('refused'))
    await assert.rejects(b.call('12D3KooWKnDdG3iXw9eTFijk3EWSunZcFi54Zka4wmtqtt6rPxc8', '/t/echo/1.0.0', { header: {} }, { timeoutMs: 2000 }), isRpc('unreachable'))
    await assert.rejects(b.call('not a peer id', '/t/echo/1.0.0', { header: {} }), isRpc('unreachable'))
  })

  it('bounds concurrent inbound streams per protocol', async t => {
    const extra = 8
    const calls = Array.from({ length: RPC_INBOUND_STREAMS_MAX + extra }, async () =>
      await b.call(a.self, '/t/wait/1.0.0', { header: {} }, { timeoutMs: 2000 }).then(() => 'ok', (err: RpcError) => err.code))
    const codes = await Promise.all(calls)
    const count = (c: string): number => codes.filter(x => x === c).length
    assert.equal(count('timeout'), RPC_INBOUND_STREAMS_MAX, codes.filter(x => x !== 'timeout').join(','))
    assert.equal(codes.length - count('timeout'), extra)
    assert.ok(codes.every(c => c === 'timeout' || c === 'unreachable' || c === 'refused'))
    t.diagnostic(`over the bound: ${codes.filter(c => c !== 'timeout').join(', ')}`)
  })

  it('refuses to send a header over the limit', async () => {
    await assert.rejects(b.call(a.self, '/t/echo/1.0.0', { header: { pad: 'x'.repeat(RPC_HEADER_BYTES_MAX) } }), isRpc('protocol'))
  })

  it('answers hostile frames with a protocol error and keeps serving', async () => {
    // Speak raw bytes on an RPC protocol: a length prefix far over the header limit.
    const raw = await b.openStream(a.self, '/t/echo/1.0.0')
    raw.end(Buffer.from([0xff, 0xff, 0xff, 0x7f]))
    assert.match((await readAll(raw)).toString('utf8'), new RegExp(`"status":"error","code":"protocol","message":"frame of \\d+ bytes exceeds the limit of ${RPC_HEADER_BYTES_MAX}"`))
    // Not JSON.
    const raw2 = await b.openStream(a.self, '/t/echo/1.0.0')
    raw2.end(Buffer.concat([Buffer.from([3]), Buffer.from('{{{')]))
    assert.match((await readAll(raw2)).toString('utf8'), /"code":"protocol","message":"envelope is not JSON"/)
    // Cut inside a frame.
    const raw3 = await b.openStream(a.self, '/t/echo/1.0.0')
    raw3.end(Buffer.from([100, 1, 2, 3]))
    assert.match((await readAll(raw3)).toString('utf8'), /"code":"protocol","message":"stream ended inside a frame"/)
    assert.deepEqual((await b.call(a.self, '/t/echo/1.0.0', { header: { still: 'up' } })).header.echo, { still: 'up' })
  })
})

/** Frames (varint length + bytes) of a buffer holding whole frames. */
function splitFrames (buf: Buffer): Buffer[] {
  const out: Buffer[] = []
  let off = 0
  while (off < buf.length) {
    let n = 0
    let shift = 0
    let b: number
    do { b = buf[off++]; n += (b & 0x7f) * 2 ** shift; shift += 7 } while ((b & 0x80) !== 0)
    out.push(buf.subarray(off, off + n))
    off += n
  }
  return out
}

const frame = (b: Uint8Array): Buffer => Buffer.concat([encodeVarint(b.byteLength), b])
const json = (o: unknown): Buffer => frame(Buffer.from(JSON.stringify(o)))

describe('the channel a peer\'s calls share', { timeout: 60_000 }, () => {
  it('carries requests by id, answers out of order, refuses unknown protocols and ends on a malformed frame', async t => {
    const [a, b] = await pair(t)
    let release = (): void => {}
    const held = new Promise<void>(resolve => { release = resolve })
    a.handle('/t/echo/1.0.0', async req => ({ header: { echo: req.header }, body: req.body }))
    a.handle('/t/held/1.0.0', async () => { await held; return { header: { late: true } } })
    const raw = await b.openStream(a.self, MUX_PROTOCOL)
    const got: Buffer[] = []
    raw.on('data', (c: Buffer) => { got.push(c) })
    const ended = new Promise<void>(resolve => { raw.once('close', () => { resolve() }) })
    raw.on('error', () => {})
    // id 1 waits for its handler; id 2 (with a body) and id 3 (nobody serves it) are answered before it
    raw.write(Buffer.concat([
      json({ i: 1, p: '/t/held/1.0.0', h: {} }),
      json({ i: 2, p: '/t/echo/1.0.0', h: { n: 2 }, b: 1 }), frame(Buffer.from('body two')),
      json({ i: 3, p: '/t/nothing/1.0.0', h: {} })
    ]))
    // answers by id, each with its body frame when it says it has one
    const answers = (): Map<number, { env: Record<string, unknown>, body?: string }> => {
      const out = new Map<number, { env: Record<string, unknown>, body?: string }>()
      const frames = splitFrames(Buffer.concat(got))
      for (let k = 0; k < frames.length; k++) {
        const env = JSON.parse(frames[k].toString()) as Record<string, unknown>
        out.set(env.i as number, env.b === 1 ? { env, body: frames[++k]?.toString() } : { env })
      }
      return out
    }
    await waitFor(() => answers().size >= 2 && answers().get(2)?.body !== undefined, 5000, 'two answers (one with a body)')
    assert.deepEqual(answers().get(2), { env: { i: 2, s: 'ok', h: { echo: { n: 2 } }, b: 1 }, body: 'body two' })
    assert.equal(answers().get(3)?.env.c, 'refused')
    assert.equal(answers().has(1), false)
    release()
    await waitFor(() => answers().size >= 3, 5000, 'the held answer')
    assert.deepEqual(answers().get(1), { env: { i: 1, s: 'ok', h: { late: true } } })
    // a request without an id cannot be answered: the channel ends, and ordinary calls open a new one
    raw.write(json({ p: '/t/echo/1.0.0', h: {} }))
    await ended
    assert.deepEqual((await b.call(a.self, '/t/echo/1.0.0', { header: { after: 1 } })).header.echo, { after: 1 })
  })

  it('fails the calls in flight when the connection drops, then serves again on a new channel', async t => {
    const [a, b] = await pair(t)
    a.handle('/t/echo/1.0.0', async req => ({ header: { echo: req.header } }))
    a.handle('/t/never/1.0.0', async (_req, ctx) => await new Promise((_resolve, reject) => { ctx.signal.addEventListener('abort', () => { reject(new Error('aborted')) }, { once: true }) }))
    assert.deepEqual((await b.call(a.self, '/t/echo/1.0.0', { header: { n: 1 } })).header.echo, { n: 1 })
    const pending = b.call(a.self, '/t/never/1.0.0', { header: {} }, { timeoutMs: 20_000 })
    await new Promise(resolve => setTimeout(resolve, 200))
    const t0 = Date.now()
    b.block([a.self])
    await assert.rejects(pending, isRpc('unreachable'))
    assert.ok(Date.now() - t0 < 10_000, 'the call failed with the connection, not at its timeout')
    b.block([])
    await waitFor(() => formed([a, b]), 15_000, 'the pair to form again')
    assert.deepEqual((await b.call(a.self, '/t/echo/1.0.0', { header: { n: 2 } }, { timeoutMs: 10_000 })).header.echo, { n: 2 })
  })

  it('stops only once the handlers it serves have finished, on the shared channel and on a stream of their own', async t => {
    // A node closes its store after gossip stops: a handler still writing (a replica applying a shipment) has to
    // finish first, or its write fails on a closed file.
    const [a, b] = await pair(t)
    let started = 0
    let finished = 0
    a.handle('/t/slow/1.0.0', async () => {
      started++
      await new Promise(resolve => setTimeout(resolve, 2_000)) // ignores its signal, as a store write does
      finished++
      return { header: {} }
    })
    const calls = [
      b.call(a.self, '/t/slow/1.0.0', { header: {} }),
      b.call(a.self, '/t/slow/1.0.0', { header: {} }, { bulk: true })
    ]
    for (const c of calls) c.catch(() => {})
    await waitFor(() => started === 2, 5_000, 'both handlers to start')
    await a.stop()
    assert.equal(finished, 2, 'gossip stopped while its handlers were still running')
    for (const c of calls) await assert.rejects(c) // their answers go nowhere: the caller sees the node leave
  })

  it('fails at once the calls a handler makes while its node stops', async t => {
    const [a, b] = await pair(t)
    b.handle('/t/echo/1.0.0', async req => ({ header: { echo: req.header } }))
    let started = false
    let outcome: unknown = null
    a.handle('/t/onward/1.0.0', async () => {
      started = true
      await new Promise(resolve => setTimeout(resolve, 500))
      // the node is stopping by now (stop() waits for this handler): a call onward must fail at once, not dial a
      // channel that stop() is closing and hold the stop until its timeout
      const t0 = Date.now()
      outcome = await a.call(b.self, '/t/echo/1.0.0', { header: {} }).then(() => 'answered', (err: unknown) => err)
      return { header: { ms: Date.now() - t0 } }
    })
    b.call(a.self, '/t/onward/1.0.0', { header: {} }).catch(() => {})
    await waitFor(() => started, 5_000, 'the handler to start')
    await a.stop()
    assert.ok(isRpc('unreachable')(outcome))
  })

  it('does not wait forever for a handler that never settles', async t => {
    const [a, b] = await pair(t)
    let started = false
    a.handle('/t/stuck/1.0.0', async () => { started = true; return await new Promise<never>(() => {}) })
    b.call(a.self, '/t/stuck/1.0.0', { header: {} }).catch(() => {})
    await waitFor(() => started, 5_000, 'the handler to start')
    await a.stop() // bounded by RPC_STOP_HANDLERS_MS; the suite's timeout fails the test if it hangs
  })

  it('carries a large request on a stream of its own, and bulk calls too', async t => {
    const [a, b] = await pair(t)
    a.handle('/t/echo/1.0.0', async req => ({ header: {}, body: req.body }))
    const big = randomBytes(3 * 1024 * 1024)
    assert.equal(sha((await b.call(a.self, '/t/echo/1.0.0', { header: {}, body: big })).body ?? new Uint8Array()), sha(big))
    const small = randomBytes(100)
    assert.equal(sha((await b.call(a.self, '/t/echo/1.0.0', { header: {}, body: small }, { bulk: true })).body ?? new Uint8Array()), sha(small))
  })
})

describe('streams', { timeout: 60_000 }, () => {
  it('echo 5 MiB each way, with back-pressure while the far end does not read', async t => {
    const [a, b] = await pair(t)
    let serverSide: Duplex | undefined
    a.handleStream('/t/stream/1.0.0', (stream) => { serverSide = stream }) // does not read yet
    const client = await b.openStream(a.self, '/t/stream/1.0.0')
    const data = randomBytes(5 * 1024 * 1024)
    const CHUNK = 64 * 1024
    let accepted = 0
    const writing = (async () => {
      for (let off = 0; off < data.byteLength; off += CHUNK) {
        const ok = client.write(data.subarray(off, off + CHUNK))
        accepted = off + CHUNK
        if (!ok) await once(client, 'drain')
      }
      client.end()
    })()
    await waitFor(() => serverSide !== undefined, 3000, 'the server side')
    // The writer must stall: it stops gaining ground while nobody reads, well short of everything.
    let last = -1
    let stableSince = Date.now()
    await waitFor(() => {
      if (accepted !== last) { last = accepted; stableSince = Date.now() }
      return Date.now() - stableSince > 400
    }, 5000, 'the writer to stall')
    t.diagnostic(`writer stalled after ${accepted} bytes`)
    assert.ok(accepted < data.byteLength, `back-pressure: ${accepted} of ${data.byteLength} accepted without a reader`)

    // Now echo: the server pipes what it reads back; the client reads the echo while still writing.
    const server = serverSide as Duplex
    server.pipe(server)
    const [echoed] = await Promise.all([readAll(client), writing])
    assert.equal(echoed.byteLength, data.byteLength)
    assert.equal(sha(echoed), sha(data))
    await waitFor(() => client.destroyed && server.destroyed, 3000, 'both ends to close')
  })

  it('half-close: the client ends its side and still receives the answer', async t => {
    const [a, b] = await pair(t)
    a.handleStream('/t/half/1.0.0', (stream) => {
      void readAll(stream).then(got => {
        // The request is complete only at end of input; answer after it, then close.
        stream.end(`got ${got.byteLength} bytes: ${got.toString('utf8')}`)
      })
    })
    const c = await b.openStream(a.self, '/t/half/1.0.0')
    c.end('a LOGOUT')
    assert.equal((await readAll(c)).toString('utf8'), 'got 8 bytes: a LOGOUT')
  })

  it('a reset on either side reaches the other as an error', async t => {
    const [a, b] = await pair(t)
    const serverErrors: Error[] = []
    let server: Duplex | undefined
    a.handleStream('/t/reset/1.0.0', (stream) => {
      server = stream
      stream.on('error', err => { serverErrors.push(err) })
      stream.resume()
    })
    // The client goes away without a clean end: the server must not wait forever.
    const c1 = await b.openStream(a.self, '/t/reset/1.0.0')
    c1.write('hello')
    await waitFor(() => server !== undefined, 3000, 'the server side')
    c1.destroy()
    await waitFor(() => serverErrors.length === 1 && server?.destroyed === true, 3000, 'the server to see the reset')
    assert.equal((serverErrors[0] as Error & { code?: string }).code, 'ECONNRESET')

    // The server fails: the client sees an error, not a clean end.
    const first = server
    const c2 = await b.openStream(a.self, '/t/reset/1.0.0')
    c2.write('hello')
    await waitFor(() => server !== first, 3000, 'the second server side')
    const clientError = once(c2, 'error')
    ;(server as Duplex).destroy(new Error('backend died'))
    const [err] = await clientError as [Error & { code?: string }]
    assert.equal(err.code, 'ECONNRESET')
  })

  it('the caller signal aborts an open stream', async t => {
    const [a, b] = await pair(t)
    let server: Duplex | undefined
    a.handleStream('/t/abort/1.0.0', (stream) => { server = stream; stream.on('error', () => {}); stream.resume() })
    const ac = new AbortController()
    const c = await b.openStream(a.self, '/t/abort/1.0.0', { signal: ac.signal })
    c.on('error', () => {})
    c.write('x')
    await waitFor(() => server !== undefined, 3000, 'the server side')
    ac.abort()
    await waitFor(() => c.destroyed && server?.destroyed === true, 3000, 'both ends to close')
    assert.ok(c.errored instanceof RpcError && c.errored.code === 'aborted')
  })
})

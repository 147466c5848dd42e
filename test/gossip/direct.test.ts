// Direct channels (gossip/direct.ts): a peer's RPC calls move from the libp2p channel to a sealed TCP connection
// keyed over it. Calls answer as before; the connection lives no longer than the libp2p channel; a connection
// without a good ticket, with a spent one or with the wrong keys is closed and reaches no handler; records survive
// any chunking and a forged or replayed one ends the connection.

import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { EventEmitter, once } from 'node:events'
import { connect } from 'node:net'
import type { Socket } from 'node:net'
import { describe, it } from 'node:test'
import { RpcError } from '../../gossip/index.ts'
import type { Gossip, RpcStats } from '../../gossip/index.ts'
import { connectDirect, DIRECT_PROTOCOL, directKeys, SealedSocket, TICKET_BYTES } from '../../gossip/direct.ts'
import { encodeVarint } from '../../gossip/frames.ts'
import { formed, startHost, waitFor } from './helpers.ts'
import type { Cleanups } from './helpers.ts'

const FAST = { heartbeatMs: 250, suspectAfterMs: 750, deadAfterMs: 1500 }
const ECHO = '/test/echo/1.0.0'
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

async function pair (t: Cleanups, direct: { a?: boolean, b?: boolean } = {}): Promise<[Gossip, Gossip, { calls: number }]> {
  const a = await startHost(t, { ...FAST, direct: direct.a ?? true })
  const b = await startHost(t, { ...FAST, bootstrap: [a.addr], direct: direct.b ?? true })
  await waitFor(() => formed([a.gossip, b.gossip]), 5000, 'the pair to form')
  const served = { calls: 0 }
  a.gossip.handle(ECHO, async req => {
    served.calls++
    if (req.header.fail === true) throw new Error('asked to fail')
    return { header: { n: req.body?.byteLength ?? -1, sha: req.body === undefined ? null : sha(req.body), echo: req.header.echo } }
  })
  return [a.gossip, b.gossip, served]
}

function stats (g: Gossip): RpcStats {
  const s = g.rpcStats?.()
  assert.ok(s !== null && s !== undefined, 'the host reports its RPC stats')
  return s
}

/** Calls until the caller's channel to the peer is direct (it opens in the background after a first call). */
async function untilDirect (a: Gossip, b: Gossip): Promise<void> {
  const start = Date.now()
  while (stats(b).directOpen === 0) {
    if (Date.now() - start > 10_000) throw new Error('no direct channel within 10 s')
    await b.call(a.self, ECHO, { header: { echo: 'warm' } })
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

describe('direct channels', { timeout: 60_000 }, () => {
  it('carry the calls once open: headers, bodies of every size, errors and concurrency, as the libp2p channel did', async (t) => {
    const [a, b, served] = await pair(t)
    await untilDirect(a, b)
    assert.equal(stats(a).directServed, 1, 'the peer serves one direct connection')
    const before = stats(b)
    const bodies = [new Uint8Array(0), randomBytes(1), randomBytes(10_240), randomBytes(200_000), randomBytes(1024 * 1024)]
    for (const body of bodies) {
      const res = await b.call(a.self, ECHO, { header: { echo: `n${body.byteLength}` }, body })
      assert.deepEqual(res.header, { n: body.byteLength, sha: sha(body), echo: `n${body.byteLength}` })
    }
    const none = await b.call(a.self, ECHO, { header: { echo: 'é' } })
    assert.deepEqual(none.header, { n: -1, sha: null, echo: 'é' })
    await assert.rejects(b.call(a.self, ECHO, { header: { fail: true } }), (err: unknown) => err instanceof RpcError && err.code === 'remote' && err.message === 'asked to fail')
    // many calls in flight at once, answered each to its own caller
    const many = await Promise.all(Array.from({ length: 200 }, async (_, i) => {
      const body = randomBytes(i * 37)
      const res = await b.call(a.self, ECHO, { header: { echo: i }, body })
      return res.header.echo === i && res.header.sha === sha(body)
    }))
    assert.ok(many.every(Boolean), 'every answer matched its call')
    const after = stats(b)
    assert.equal(after.direct - before.direct, bodies.length + 2 + 200, 'every call took the direct channel')
    assert.equal(after.channel, before.channel, 'none took the libp2p channel')
    assert.ok(served.calls >= bodies.length + 202)
  })

  it('end with the libp2p channel they were agreed on: a blocked peer is cut off on both sides', async (t) => {
    const [a, b, served] = await pair(t)
    await untilDirect(a, b)
    a.block([b.self])
    await waitFor(() => stats(a).directServed === 0, 5000, 'the blocking side to close the direct connection')
    await waitFor(() => stats(b).directOpen === 0, 5000, 'the caller to see its direct channel end')
    const count = served.calls
    await assert.rejects(b.call(a.self, ECHO, { header: {} }, { timeoutMs: 2000 }), (err: unknown) => err instanceof RpcError)
    assert.equal(served.calls, count, 'no call reached the blocked side')
    a.block([])
    await waitFor(() => formed([a, b]), 10_000, 'the pair to form again')
    await untilDirect(a, b)
    const res = await b.call(a.self, ECHO, { header: { echo: 'back' } })
    assert.equal(res.header.echo, 'back')
  })

  it('are not used with a peer that does not serve them: calls stay on the libp2p channel', async (t) => {
    const [a, b] = await pair(t, { a: false })
    for (let i = 0; i < 20; i++) {
      const res = await b.call(a.self, ECHO, { header: { echo: i } })
      assert.equal(res.header.echo, i)
      await new Promise(resolve => setTimeout(resolve, 10))
    }
    assert.equal(stats(b).direct, 0)
    assert.equal(stats(b).directOpen, 0)
    assert.ok(stats(b).channel >= 20)
  })

  it('accept a connection only with a ticket issued over the libp2p channel, once, and with its keys', async (t) => {
    // b does not open direct channels itself, so its calls of DIRECT_PROTOCOL reach a over the libp2p channel
    const [a, b, served] = await pair(t, { b: false })
    const grant = async (): Promise<{ port: number, ticket: string, secret: string }> => {
      const res = await b.call(a.self, DIRECT_PROTOCOL, { header: {} })
      return res.header as { port: number, ticket: string, secret: string }
    }
    const noFrame = (r: unknown): boolean => r === null || r === 'failed'
    const closedWithin = async (s: Socket, ms: number): Promise<boolean> => await Promise.race([
      once(s, 'close').then(() => true), new Promise<boolean>(resolve => setTimeout(() => resolve(false), ms))
    ])
    const g1 = await grant()
    assert.ok(g1.port > 0)
    // a ticket nobody issued: closed
    const stranger = connect({ host: '127.0.0.1', port: g1.port })
    stranger.on('error', () => {})
    await once(stranger, 'connect')
    stranger.write(randomBytes(TICKET_BYTES))
    stranger.write(randomBytes(100))
    assert.ok(await closedWithin(stranger, 3000), 'a made-up ticket is closed')
    // the right ticket, the wrong secret: the first record does not open, the connection ends, no handler runs
    const count = served.calls
    const wrong = await connectDirect('127.0.0.1', { ...g1, secret: randomBytes(32).toString('base64') }, 1 << 20, AbortSignal.timeout(3000))
    const ended = new Promise<Error | null>(resolve => { wrong.onEnd(resolve) })
    await wrong.send([Buffer.from(JSON.stringify({ i: 1, p: ECHO, h: {} }))]).catch(() => {})
    await ended // the server closed it
    assert.ok(noFrame(await wrong.next(1024).catch(() => 'failed')), 'no answer came')
    assert.equal(served.calls, count, 'no handler ran')
    // that ticket is spent now, even though its keys never worked
    const spent = await connectDirect('127.0.0.1', g1, 1 << 20, AbortSignal.timeout(3000))
    await spent.send([Buffer.from(JSON.stringify({ i: 1, p: ECHO, h: { echo: 'x' } }))]).catch(() => {})
    assert.ok(noFrame(await spent.next(1024).catch(() => 'failed')), 'a spent ticket is refused')
    // a fresh ticket with its keys: served like a channel
    const g2 = await grant()
    const servedBefore = served.calls
    const good = await connectDirect('127.0.0.1', g2, 1 << 20, AbortSignal.timeout(3000))
    await good.send([Buffer.from(JSON.stringify({ i: 7, p: ECHO, h: { echo: 'ok' } }))])
    const answer = JSON.parse(Buffer.from((await good.next(1 << 20))!).toString())
    assert.deepEqual(answer, { i: 7, s: 'ok', h: { n: -1, sha: null, echo: 'ok' } })
    assert.equal(served.calls, servedBefore + 1)
    // a ticket issued on a libp2p channel that ended since is refused
    const g3 = await grant()
    a.block([b.self])
    await new Promise(resolve => setTimeout(resolve, 1000)) // block hangs up at once; loopback closes in well under that
    const late = await connectDirect('127.0.0.1', g3, 1 << 20, AbortSignal.timeout(3000))
    await late.send([Buffer.from(JSON.stringify({ i: 1, p: ECHO, h: {} }))]).catch(() => {})
    assert.ok(noFrame(await late.next(1024).catch(() => 'failed')), 'a ticket of an ended channel is refused')
    assert.equal(served.calls, servedBefore + 1, 'no handler ran for any refused connection')
    // and a connection already open on a ticket of that channel was closed by the server with it
    const read = await Promise.race([good.next(1024).catch(() => 'failed'), new Promise(resolve => setTimeout(() => resolve('still open'), 3000))])
    assert.ok(noFrame(read), 'the open direct connection ended with its channel')
  })
})

/** A socket stand-in: what one side writes is collected; what it receives is emitted as 'data' by the test. */
class FakeSocket extends EventEmitter {
  written: Buffer[] = []
  destroyed = false
  setNoDelay (): this { return this }
  cork (): void {}
  uncork (): void {}
  write (b: Buffer): boolean { this.written.push(Buffer.from(b)); return true }
  end (cb?: () => void): void { cb?.() }
  destroy (): void { this.destroyed = true }
  take (): Buffer { const all = Buffer.concat(this.written); this.written = []; return all }
}

function sealedPair (): { tx: SealedSocket, txSock: FakeSocket, rx: SealedSocket, rxSock: FakeSocket } {
  const secret = randomBytes(32)
  const ticket = randomBytes(TICKET_BYTES)
  const txSock = new FakeSocket()
  const rxSock = new FakeSocket()
  const tx = new SealedSocket(txSock as unknown as Socket, directKeys(secret, ticket, 'caller'), 1 << 22)
  const rx = new SealedSocket(rxSock as unknown as Socket, directKeys(secret, ticket, 'server'), 1 << 22)
  return { tx, txSock, rx, rxSock }
}

describe('sealed records', () => {
  it('give back the frames sent, in order, however the bytes are cut', async () => {
    let seed = 12345
    const rand = (n: number): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n }
    for (let round = 0; round < 50; round++) {
      const { tx, txSock, rx, rxSock } = sealedPair()
      const frames: Buffer[] = []
      const sends: Array<Promise<void>> = []
      for (let turn = 0; turn < 1 + rand(4); turn++) {
        const batch = Array.from({ length: 1 + rand(5) }, () => randomBytes(rand(4) === 0 ? rand(300_000) : rand(2000)))
        frames.push(...batch)
        sends.push(tx.send(batch))
        await new Promise(resolve => setImmediate(resolve)) // each turn's frames leave as one record
      }
      await Promise.all(sends)
      const wire = txSock.take()
      for (let at = 0; at < wire.length;) {
        const n = 1 + rand(rand(2) === 0 ? 7 : 70_000)
        rxSock.emit('data', wire.subarray(at, at + n))
        at += n
      }
      for (const f of frames) assert.equal(sha((await rx.next(1 << 22))!), sha(f))
      rxSock.emit('end')
      assert.equal(await rx.next(1 << 22), null, 'a clean end after the last frame')
    }
  })

  it('end the connection on a forged, replayed or reordered record, and on a record over the limit', async () => {
    const cases: Array<[string, (r1: Buffer, r2: Buffer) => Buffer[]]> = [
      ['a flipped bit', (r1) => { const x = Buffer.from(r1); x[x.length - 20] ^= 1; return [x] }],
      ['a replayed record', (r1) => [r1, r1]],
      ['records out of order', (r1, r2) => [r2, r1]],
      ['a length over the limit', () => [Buffer.from([0xff, 0xff, 0xff, 0xff])]],
      ['a length under a tag', () => [Buffer.from([0, 0, 0, 3, 1, 2, 3])]]
    ]
    for (const [what, make] of cases) {
      const { tx, txSock, rx, rxSock } = sealedPair()
      await tx.send([Buffer.from('one')])
      const r1 = txSock.take()
      await tx.send([Buffer.from('two')])
      const r2 = txSock.take()
      const wire = make(r1, r2)
      const ended = new Promise<Error | null>(resolve => { rx.onEnd(resolve) })
      const got: string[] = []
      const reading = (async () => { for (;;) { const f = await rx.next(1024); if (f === null) return; got.push(Buffer.from(f).toString()) } })().catch(() => {})
      for (const w of wire) rxSock.emit('data', w)
      const err = await ended
      await reading
      assert.ok(err instanceof Error, `${what}: the connection ended in an error`)
      assert.ok(rxSock.destroyed, `${what}: the socket was destroyed`)
      assert.ok(got.length <= 1 && got.every(g => g === 'one'), `${what}: nothing but the first genuine frame was read (${got.join(',')})`)
    }
  })

  it('refuse frames over the reader\'s limit', async () => {
    const { tx, txSock, rx, rxSock } = sealedPair()
    const big = randomBytes(5000)
    await tx.send([big])
    rxSock.emit('data', txSock.take())
    await assert.rejects(rx.next(4096), /exceeds the limit/)
    assert.ok(encodeVarint(5000).length === 2)
  })
})

// StreamSocket: a peer stream with the socket behaviour the protocol servers rely on — the idle timer of
// net.Socket (fires after inactivity, reset by reads and writes, off at 0), back-pressure both ways, end and
// destroy passed through, and a peer stream dropped before its end closing the socket.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { Duplex, PassThrough } from 'node:stream'
import { StreamSocket } from '../../node/grid/index.ts'

function pair (): { near: Duplex, far: Duplex } {
  const ab = new PassThrough()
  const ba = new PassThrough()
  const near = Duplex.from({ readable: ba, writable: ab })
  const far = Duplex.from({ readable: ab, writable: ba })
  near.on('error', () => {})
  far.on('error', () => {})
  return { near, far }
}

test('bytes both ways, the client address from the header, end passed on', async () => {
  const { near, far } = pair()
  const s = new StreamSocket(near, { remoteAddress: '192.0.2.7' })
  assert.equal(s.remoteAddress, '192.0.2.7')
  far.write('hello')
  const [chunk] = await once(s, 'data') as [Buffer]
  assert.equal(chunk.toString(), 'hello')
  s.end('bye')
  let got = ''
  far.on('data', (c: Buffer) => { got += c.toString() })
  await once(far, 'end')
  assert.equal(got, 'bye')
})

test('the idle timer: fires after inactivity, activity pushes it back, 0 turns it off', async () => {
  const { near, far } = pair()
  const s = new StreamSocket(near, { remoteAddress: '192.0.2.7' })
  s.on('data', () => {})
  let fired = 0
  s.on('timeout', () => { fired++ })
  const started = Date.now()
  s.setTimeout(150)
  // traffic every 50 ms for 300 ms keeps it from firing
  for (let i = 0; i < 6; i++) {
    await new Promise(resolve => setTimeout(resolve, 50))
    if (i % 2 === 0) far.write('x')
    else s.write('y')
  }
  assert.equal(fired, 0)
  await once(s, 'timeout')
  assert.ok(Date.now() - started >= 300 + 100, 'fired only after a quiet period')
  assert.equal(s.destroyed, false, 'a timeout does not close the socket by itself')
  s.setTimeout(0)
  const before = fired
  await new Promise(resolve => setTimeout(resolve, 250))
  assert.equal(fired, before)
  s.destroy()
})

test('a peer stream dropped before its end closes the socket; destroying the socket drops the stream', async () => {
  let { near, far } = pair()
  let s = new StreamSocket(near, { remoteAddress: '192.0.2.7' })
  s.on('error', () => {})
  const closed = new Promise(resolve => s.once('close', resolve)) // once() would reject on the 'error' before it
  far.destroy()
  await closed
  ;({ near, far } = pair())
  s = new StreamSocket(near, { remoteAddress: '192.0.2.7' })
  s.destroy()
  if (!far.closed) await new Promise(resolve => far.once('close', resolve))
  assert.ok(near.destroyed)
})

test('back-pressure: a socket nobody reads stops reading the peer stream', async () => {
  const { near, far } = pair()
  const s = new StreamSocket(near, { remoteAddress: '192.0.2.7' })
  s.resume()
  s.pause() // flowing once, then nobody reads: only the stream buffers may fill
  const chunk = Buffer.alloc(64 * 1024)
  let accepted = 0
  // without back-pressure every chunk would drain into the socket's buffer; with it the writer stalls
  for (let i = 0; i < 200; i++) {
    accepted += chunk.length
    if (far.write(chunk)) continue
    const drained = await Promise.race([
      new Promise<boolean>(resolve => far.once('drain', () => resolve(true))),
      new Promise<boolean>(resolve => setTimeout(() => resolve(false), 50))
    ])
    if (!drained) break
  }
  assert.ok(accepted < 2 * 1024 * 1024, `the writer stalled after ${accepted} bytes`)
  s.destroy()
})

// The cluster protector (gossip/protector.ts) between bare libp2p hosts: hosts with the cluster key exchange bytes
// intact through it (small writes coalesced, large ones past the flush threshold, back-pressure), and a host with
// another key, without a protector, or a peer that reflects our own bytes back, never gets a connection.

import { strict as assert } from 'node:assert'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
import { after, describe, it } from 'node:test'
import { noise } from '@libp2p/noise'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import type { Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import { clusterProtector, protectorKey } from '../../gossip/protector.ts'

const KEY = `protector-test-${process.pid}`
const ECHO = '/mailgrid/test/echo/1.0.0'
const STEP_MS = 10_000

const hosts: Libp2p[] = []
after(async () => { for (const h of hosts) await h.stop() })

async function host (clusterKey: string | null): Promise<Libp2p> {
  const h = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    ...(clusterKey !== null ? { connectionProtector: clusterProtector({ clusterKey, timeoutMs: 3000 }) } : {}),
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()]
  })
  hosts.push(h)
  await h.handle(ECHO, (stream: Stream) => {
    stream.addEventListener('message', evt => {
      if (!stream.send(evt.data)) {
        stream.pause()
        stream.onDrain().then(() => { stream.resume() }, () => {})
      }
    })
    stream.addEventListener('remoteCloseWrite', () => { void stream.close().catch(() => {}) })
  })
  return h
}

/** Sends `chunks` through an echo stream and returns what came back. */
async function echo (from: Libp2p, to: Libp2p, chunks: Uint8Array[]): Promise<Buffer> {
  const stream = await from.dialProtocol(to.getMultiaddrs()[0], ECHO, { signal: AbortSignal.timeout(STEP_MS) })
  const got: Buffer[] = []
  const done = new Promise<void>((resolve, reject) => {
    stream.addEventListener('message', evt => {
      const d = evt.data
      got.push(Buffer.from(d instanceof Uint8Array ? d : d.subarray()))
    })
    stream.addEventListener('close', evt => { if (evt.error != null) reject(evt.error); else resolve() })
  })
  for (const c of chunks) if (!stream.send(c)) await stream.onDrain()
  await stream.close()
  await done
  return Buffer.concat(got)
}

describe('cluster protector', () => {
  it('derives its key deterministically, differently per cluster key, and refuses an empty one', () => {
    assert.deepEqual(protectorKey('secret'), protectorKey('secret'))
    assert.equal(protectorKey('secret').byteLength, 32)
    assert.notDeepEqual(protectorKey('secret'), protectorKey('secret2'))
    assert.throws(() => protectorKey(''))
  })

  it('carries bytes intact between hosts with the cluster key: many small writes, large ones, both directions', async () => {
    const a = await host(KEY)
    const b = await host(KEY)
    // 2,000 small writes (coalesced per event-loop turn), then 4 MiB in 1 MiB writes (past the flush threshold and
    // yamux's window: back-pressure), then odd sizes
    const small = Array.from({ length: 2000 }, (_, i) => randomBytes(1 + (i % 97)))
    const large = Array.from({ length: 4 }, () => randomBytes(1024 * 1024))
    const odd = [randomBytes(65535), randomBytes(65537), randomBytes(131071), randomBytes(1)]
    for (const chunks of [small, large, odd]) {
      assert.deepEqual(await echo(a, b, chunks), Buffer.concat(chunks))
      assert.deepEqual(await echo(b, a, chunks), Buffer.concat(chunks))
    }
    // ten streams at once on one connection
    const all = await Promise.all(Array.from({ length: 10 }, async (_, i) => {
      const chunks = Array.from({ length: 50 }, () => randomBytes(100 + i * 300))
      return { want: Buffer.concat(chunks), got: await echo(a, b, chunks) }
    }))
    for (const { want, got } of all) assert.deepEqual(got, want)
    assert.equal(a.getConnections(b.peerId).length, 1)
  })

  it('a host with another cluster key, a key one character off, or no protector gets no connection', async () => {
    const a = await host(KEY)
    for (const [label, key] of [['another cluster key', randomBytes(16).toString('hex')], ['a key one character off', KEY.slice(0, -1) + (KEY.endsWith('0') ? '1' : '0')], ['no protector', null]] as const) {
      const x = await host(key)
      await assert.rejects(x.dialProtocol(a.getMultiaddrs()[0], ECHO, { signal: AbortSignal.timeout(STEP_MS) }), `${label}: the stream opened`)
      assert.equal(x.getConnections().length, 0, `${label}: no connection stays open`)
      await assert.rejects(a.dialProtocol(x.getMultiaddrs()[0], ECHO, { signal: AbortSignal.timeout(STEP_MS) }), `${label}: dialed by a grid host, the stream opened`)
      assert.equal(a.getConnections(x.peerId).length, 0, `${label}: no connection stays open on the grid host`)
    }
  })

  it('a peer that reflects our own bytes back (nonce included) gets no connection', async () => {
    const a = await host(KEY)
    const server = createServer(sock => { sock.on('error', () => {}); sock.pipe(sock) })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    after(() => { server.close() })
    const port = (server.address() as AddressInfo).port
    await assert.rejects(a.dial(multiaddr(`/ip4/127.0.0.1/tcp/${port}`), { signal: AbortSignal.timeout(STEP_MS) }))
    assert.equal(a.getConnections().length, 0)
  })
})

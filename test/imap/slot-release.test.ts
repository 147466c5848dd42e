// The edge of an IMAP connection while a command waits (issue 16): a client that leaves is seen at once, even
// with input it pipelined behind the waiting command, so its connection slot comes back; held input is still
// served in order when the command ends, and passed on when the session is forwarded; a forwarded session
// whose primary goes away gets `* BYE [UNAVAILABLE]`, one that ends cleanly does not.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Duplex, PassThrough } from 'node:stream'
import { createImapServer } from '../../node/imap/index.ts'
import { createAuthenticator } from '../../node/auth.ts'
import { AuthThrottle, ConnectionLimiter } from '../../node/limits.ts'
import { RawClient } from '../helpers/client.ts'
import { until } from '../helpers/cluster.ts'
import { fixture, PASSWORD, tagged, untaggedLine, USER } from './helpers.ts'

/** Both ends of an in-memory stream: what the edge writes comes out of `remote`, and the other way round. */
function pipePair (): { edge: Duplex, remote: Duplex } {
  const toRemote = new PassThrough()
  const toEdge = new PassThrough()
  const edge = Duplex.from({ readable: toEdge, writable: toRemote })
  const remote = Duplex.from({ readable: toRemote, writable: toEdge })
  remote.on('error', () => {}) // destroying one end aborts the other
  return { edge, remote }
}

async function serverWith (t: Parameters<typeof fixture>[0], route: (user: string) => Promise<Duplex | null>): Promise<{ port: number, limiter: ConnectionLimiter }> {
  const f = await fixture(t)
  const limiter = new ConnectionLimiter()
  const auth = createAuthenticator({ directory: f.store, throttle: new AuthThrottle({ perIp: 10_000, perAccount: 10_000 }) })
  const server = createImapServer({ store: f.store, auth, logger: f.logger, limiter, router: async (user) => await route(user) }, {
    endpoint: { host: '127.0.0.1', port: 0 }, allowInsecureAuthOnLoopback: true
  })
  const { port } = await server.listen()
  t.after(async () => { await server.close() })
  return { port, limiter }
}

test('a client that leaves while its LOGIN waits, with a command pipelined behind it, frees its slot at once', async (t) => {
  let routed = 0
  const { port, limiter } = await serverWith(t, async () => { routed++; return await new Promise<never>(() => {}) }) // a primary that never answers
  const c = await RawClient.connect(port)
  await c.read(untaggedLine)
  c.write(`a1 LOGIN ${USER} "${PASSWORD}"\r\n`)
  await until('the login waits on the primary', () => routed === 1, 5_000, 10)
  c.write('a2 SELECT INBOX\r\n') // a second segment: read while a1 waits
  await new Promise(resolve => setTimeout(resolve, 50))
  assert.equal(limiter.count, 1)
  c.close()
  const ms = await until('the slot comes back', () => limiter.count === 0, 2_000, 10)
  t.diagnostic(`slot back ${ms} ms after the client left`)
})

test('input held while a command waits is served in order when it ends', async (t) => {
  let release: (() => void) | null = null
  const { port } = await serverWith(t, async () => { await new Promise<void>(resolve => { release = resolve }); return null })
  const c = await RawClient.connect(port)
  await c.read(untaggedLine)
  c.write(`a1 LOGIN ${USER} "${PASSWORD}"\r\n`)
  await until('the login waits', () => release !== null, 5_000, 10)
  c.write('a2 NOOP\r\n')
  await new Promise(resolve => setTimeout(resolve, 20))
  c.write('a3 SELECT INBOX\r\na4 LOGOUT\r\n')
  await new Promise(resolve => setTimeout(resolve, 50))
  ;(release as unknown as () => void)()
  const out = await c.read(tagged('a4'))
  const tags = [...out.matchAll(/^(a\d) (OK|NO|BAD)/gm)].map(m => `${m[1]} ${m[2]}`)
  assert.deepEqual(tags, ['a1 OK', 'a2 OK', 'a3 OK', 'a4 OK'], out)
})

test('a forwarded session gets what the client sent while the login waited; a lost primary ends it with BYE, a clean end without', async (t) => {
  const pairs: Array<{ edge: Duplex, remote: Duplex }> = []
  let resolveRoute: ((d: Duplex) => void) | null = null
  const { port, limiter } = await serverWith(t, async () => {
    const p = pipePair()
    pairs.push(p)
    return await new Promise<Duplex>(resolve => { resolveRoute = () => resolve(p.edge) })
  })
  for (const how of ['lost', 'ended'] as const) {
    resolveRoute = null
    const c = await RawClient.connect(port)
    await c.read(untaggedLine)
    c.write(`a1 LOGIN ${USER} "${PASSWORD}"\r\n`)
    await until('the login is routed', () => resolveRoute !== null, 5_000, 10)
    c.write('a2 NOOP\r\n')
    await new Promise(resolve => setTimeout(resolve, 20))
    const { remote } = pairs[pairs.length - 1]
    let got = ''
    remote.on('data', (d: Buffer) => { got += d.toString('latin1') })
    ;(resolveRoute as unknown as (d: Duplex) => void)(pairs[pairs.length - 1].edge)
    await until('the primary has the pipelined command', () => got === 'a2 NOOP\r\n', 2_000, 10)
    remote.write('a1 OK Authenticated\r\na2 OK NOOP completed\r\n')
    assert.match(await c.read(tagged('a2')), /a1 OK[^]*a2 OK/)
    if (how === 'lost') pairs[pairs.length - 1].edge.destroy() // the stream to the primary dies without an end
    else remote.end('* BYE Logging out\r\n')
    const rest = await c.read(() => false, 3_000).catch((err: Error) => err.message)
    if (how === 'lost') assert.match(rest, /^\* BYE \[UNAVAILABLE\] /m, 'the client is told the server went away')
    else assert.equal(rest, '* BYE Logging out\r\n', 'a clean end passes the primary\'s own goodbye, and nothing more')
    assert.ok(c.closed, `the client is disconnected (${how})`)
    await until('the slot comes back', () => limiter.count === 0, 2_000, 10)
  }
})

// Forwarding over the real transport: two mail nodes built by createMailNode (node/index.ts wires the forwarder),
// joined by libp2p on loopback. A user's IMAP and POP3 sessions opened on the node that is not the primary run
// on the primary over a libp2p stream: APPEND, FETCH byte-identical, COMPRESS, POP3 RETR, and the session count
// reaches the heartbeat.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ImapFlow } from 'imapflow'
import { createRing } from '../../gossip/ring.ts'
import type { GridStatus } from '../../node/grid/index.ts'
import { RawClient } from '../helpers/client.ts'
import { until } from '../helpers/grid-node.ts'
import { startNode } from '../helpers/node.ts'
import type { TestNode } from '../helpers/node.ts'

const KEY = 'forward-test-key'
const PASSWORD = 'secret'
const USERS = Array.from({ length: 8 }, (_, i) => `f${i}@example.com`)

async function gridOf (n: TestNode): Promise<GridStatus> {
  const g = (await n.node.status()).grid
  assert.ok(g !== null)
  return g
}

async function startGridNode (t: { after: (fn: () => Promise<void>) => void }, bootstrap: string[]): Promise<TestNode> {
  return await startNode(t, {
    plaintextAuthOnLoopback: true,
    grid: { clusterKey: KEY, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap, mdns: false, replicas: 2, weight: 1, advertiseHost: '127.0.0.1' }
  })
}

test('libp2p: a session logged in on the non-primary node runs on the primary', async (t) => {
  const a = await startGridNode(t, [])
  const first = await gridOf(a)
  const addr = first.members.find(m => m.id === first.self)?.addrs[0]
  assert.ok(addr !== undefined)
  const b = await startGridNode(t, [addr])
  await until('two members alive on both nodes', async () =>
    (await Promise.all([a, b].map(async n => (await gridOf(n)).members.filter(m => m.status === 'alive').length))).every(c => c === 2), 20_000)
  await a.node.store.addDomain('example.com')
  for (const u of USERS) await a.node.store.addUser({ address: u, password: PASSWORD })
  await until('the directory on b', async () => (await b.node.store.listUsers()).length === USERS.length, 20_000)

  const ga = await gridOf(a)
  const ring = createRing(ga.members.filter(m => m.status === 'alive').map(m => ({ id: m.id, weight: m.weight })))
  // which node is a user's primary depends on the nodes' random peer ids (with 8 users all of them had b as primary
  // in one run of 256): the edge is whichever node is not the user's primary
  const user = USERS[0]
  const primaryId = ring.primary(user)
  const gb = await gridOf(b)
  assert.ok(primaryId === ga.self || primaryId === gb.self, `${user}'s primary is one of the two nodes`)
  const primary = primaryId === ga.self ? a : b
  const edge = primary === a ? b : a
  t.diagnostic(`${user}'s primary is the ${primary === a ? 'first' : 'second'} node started`)

  const raw = Buffer.from('From: x@example.org\r\nSubject: over libp2p\r\n\r\nbody\r\n..dots\r\n')
  const client = new ImapFlow({ host: '127.0.0.1', port: edge.port('imap'), secure: false, doSTARTTLS: false, auth: { user, pass: PASSWORD }, logger: false })
  client.on('error', () => {})
  await client.connect()
  t.after(async () => { await client.logout().catch(() => client.close()) })
  assert.ok((client as unknown as { _deflate?: unknown })._deflate, 'COMPRESS negotiated through the forward')
  const appended = await client.append('INBOX', raw, ['\\Flagged'])
  assert.ok(appended !== false && appended.uid !== undefined)
  const uid = appended.uid
  await client.mailboxOpen('INBOX')
  const m = await client.fetchOne(String(uid), { source: true }, { uid: true })
  assert.ok(m !== undefined && m !== false && m.source !== undefined && m.source.equals(raw), 'byte-identical')
  // the write was made on the primary and is on the other replica (here: the edge) too
  for (const n of [primary, edge]) {
    const box = await n.node.store.getMailbox(user, 'INBOX')
    assert.ok(box !== null)
    const rec = await n.node.store.getMessage(user, box.id, uid)
    assert.ok(rec !== null && rec.flags.includes('\\Flagged'))
  }
  await until('the session count in the primary\'s heartbeat', async () =>
    ((await gridOf(edge)).members.find(x => x.id === primaryId)?.sessions ?? 0) >= 1, 15_000)
  await client.logout()

  const pop = await RawClient.connect(edge.port('pop3'))
  t.after(() => { pop.close() })
  const line = (buf: string): boolean => buf.endsWith('\r\n')
  await pop.read(line)
  await pop.cmd(`USER ${user}`, line)
  assert.match(await pop.cmd(`PASS ${PASSWORD}`, line), /^\+OK Logged in, 1 messages/)
  const retr = await pop.cmd('RETR 1', buf => buf.endsWith('\r\n.\r\n'))
  assert.equal(retr, `+OK ${raw.length} octets\r\n${raw.toString('latin1').replace('\r\n..dots', '\r\n...dots')}.\r\n`)
  assert.match(await pop.cmd('QUIT', line), /^\+OK/)
  assert.ok(await pop.waitClosed())
})

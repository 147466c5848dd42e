// Grid logic in one process: three nodes with real LevelDB stores on an in-memory network. Deliveries are
// routed to primaries and replicated before they resolve; a killed node's users are taken over and
// re-mirrored; a returning node catches up; the directory reaches every node.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { Grid } from '../../node/grid/index.ts'
import { createStore } from '../../store/index.ts'
import type { Store } from '../../store/index.ts'
import { MemoryNetwork } from '../helpers/memory-gossip.ts'
import type { MemoryGossip } from '../helpers/memory-gossip.ts'
import { tempDir } from '../helpers/tmp.ts'

interface TestNode { id: string, store: Store, gossip: MemoryGossip, grid: Grid }

const logger = pino({ level: process.env.MAILGRID_TEST_LOG ?? 'silent' })
const USERS = Array.from({ length: 30 }, (_, i) => `u${i}@example.com`)

async function until (what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 25))
  }
}

async function startNode (net: MemoryNetwork, dir: string, id: string, existing?: MemoryGossip): Promise<TestNode> {
  const store = createStore({}, { path: `${dir}/${id}`, scryptLogN: 4 })
  await store.start()
  const gossip = existing ?? net.create(id)
  const grid = new Grid({ gossip, store, logger }, { replicas: 2 })
  await gossip.start()
  await grid.start()
  return { id, store, gossip, grid }
}

async function stopNode (n: TestNode): Promise<void> {
  await n.grid.stop()
  await n.store.stop()
}

/** Three nodes A, B, C on one in-memory network, with the example.com users on every node. */
async function threeNodes (t: { after: (fn: () => Promise<void>) => void }): Promise<{ dir: string, net: MemoryNetwork, nodes: TestNode[] }> {
  const nodes: TestNode[] = []
  // registered before tempDir's removal: after hooks run in the order they were added
  t.after(async () => { for (const n of nodes) await stopNode(n).catch(() => {}) })
  const dir = await tempDir(t)
  const net = new MemoryNetwork()
  nodes.push(await startNode(net, dir, 'A'), await startNode(net, dir, 'B'), await startNode(net, dir, 'C'))
  await nodes[0].store.addDomain('example.com')
  for (const u of USERS) await nodes[0].store.addUser({ address: u, password: 'pw' })
  await until('directory on every node', async () => (await Promise.all(nodes.map(async n => (await n.store.listUsers()).length))).every(c => c === USERS.length))
  return { dir, net, nodes }
}

const raw = (i: number): Buffer => Buffer.from(`Subject: message ${i}\r\nX-Id: ${i}\r\n\r\nbody ${i}\r\n`)

async function ids (store: Store, user: string): Promise<Set<string>> {
  const box = await store.getMailbox(user, 'INBOX')
  if (box === null) return new Set()
  const out = new Set<string>()
  for (const r of await store.listMessages(user, box.id)) {
    const m = /X-Id: (\d+)/.exec((await store.readMessage(r)).toString())
    if (m !== null) out.add(m[1])
  }
  return out
}

test('three nodes, R=2: replication, failover, re-mirroring, catch-up', async (t) => {
  // the directory written on one node reaches every node (threeNodes waits for it)
  const { dir, net, nodes } = await threeNodes(t)

  // deliveries through every node land on the user's replicas, durable before the call resolves
  const acked = new Map<string, string>()
  for (let i = 0; i < 90; i++) {
    const via = nodes[i % 3]
    const user = USERS[i % USERS.length]
    await via.grid.deliver(raw(i), [{ user, prefix: '' }])
    acked.set(String(i), user)
    for (const rep of via.grid.replicasOf(user)) {
      const holder = nodes.find(n => n.id === rep) as TestNode
      assert.ok((await ids(holder.store, user)).has(String(i)), `message ${i} on replica ${rep} of ${user} when acknowledged`)
    }
  }
  const owned = new Map(nodes.map(n => [n.id, USERS.filter(u => n.grid.isPrimary(u)).length]))
  assert.ok([...owned.values()].every(c => c > 0), `every node owns users: ${JSON.stringify([...owned])}`)

  // kill the primary of u0: its users move, the others keep serving, and R copies come back
  const victim = nodes.find(n => n.grid.isPrimary(USERS[0])) as TestNode
  victim.gossip.kill()
  const survivors = nodes.filter(n => n !== victim)
  for (let i = 90; i < 150; i++) {
    const via = survivors[i % 2]
    const user = USERS[i % USERS.length]
    await via.grid.deliver(raw(i), [{ user, prefix: '' }])
    acked.set(String(i), user)
  }
  for (const s of survivors) s.grid.scheduleRebalance()
  await until('no under-replicated users on the survivors', async () =>
    (await Promise.all(survivors.map(async s => await s.grid.underReplicated()))).every(n => n === 0))
  for (const [id, user] of acked) {
    for (const s of survivors) assert.ok((await ids(s.store, user)).has(id), `message ${id} of ${user} on survivor ${s.id}`)
  }

  // the victim returns with its old data, catches up, and the ring is whole again
  await stopNode(victim)
  const back = await startNode(net, dir, victim.id, victim.gossip)
  nodes[nodes.indexOf(victim)] = back
  for (const n of nodes) n.grid.scheduleRebalance()
  await until('the returning node holds everything it replicates', async () => {
    for (const u of USERS) {
      if (!back.grid.replicasOf(u).includes(back.id)) continue
      const primary = nodes.find(n => n.grid.isPrimary(u)) as TestNode
      if (await back.store.logPosition(u) !== await primary.store.logPosition(u)) return false
    }
    return true
  })
  for (const [id, user] of acked) {
    for (const rep of back.grid.replicasOf(user)) {
      const holder = nodes.find(n => n.id === rep) as TestNode
      assert.ok((await ids(holder.store, user)).has(id), `after the return: message ${id} of ${user} on ${rep}`)
    }
  }
})

test('a write through the grid store answers only after the replica has it, and fails over', async (t) => {
  const dir = await tempDir(t)
  const net = new MemoryNetwork()
  const a = await startNode(net, dir, 'A')
  const b = await startNode(net, dir, 'B')
  t.after(async () => { await stopNode(a).catch(() => {}); await stopNode(b).catch(() => {}) })
  await a.store.addDomain('example.com')
  await a.store.addUser({ address: 'bob@example.com', password: 'pw' })
  await until('user on B', async () => await b.store.getUser('bob@example.com') !== null)
  const primary = a.grid.isPrimary('bob@example.com') ? a : b
  const other = primary === a ? b : a
  await assert.rejects(other.grid.lead('bob@example.com'), /does not own/)
  const [res] = await primary.grid.deliverLocal(raw(1), [{ user: 'bob@example.com', prefix: '' }])
  const box = await other.store.getMailbox('bob@example.com', 'INBOX')
  assert.ok(box !== null)
  assert.equal((await other.store.getMessage('bob@example.com', box.id, res.uid))?.gid, res.gid)

  primary.gossip.kill()
  await other.grid.deliver(raw(2), [{ user: 'bob@example.com', prefix: '' }])
  assert.deepEqual([...await ids(other.store, 'bob@example.com')].sort(), ['1', '2'])
})

test('a draining node hands its users over before it leaves', async (t) => {
  const { nodes } = await threeNodes(t)
  for (let i = 0; i < 60; i++) await nodes[i % 3].grid.deliver(raw(i), [{ user: USERS[i % USERS.length], prefix: '' }])

  const leaving = nodes[0]
  const before = USERS.filter(u => leaving.grid.isPrimary(u))
  assert.ok(before.length > 0)
  leaving.grid.setState('draining')
  const others = nodes.slice(1)
  await until('the draining node owns nothing and every user has R copies elsewhere', async () => {
    for (const n of nodes) n.grid.scheduleRebalance()
    if (USERS.some(u => others.every(o => !o.grid.isPrimary(u)))) return false
    return (await Promise.all(others.map(async o => await o.grid.underReplicated()))).every(x => x === 0)
  })
  for (let i = 0; i < 60; i++) {
    const user = USERS[i % USERS.length]
    for (const o of others) assert.ok((await ids(o.store, user)).has(String(i)), `message ${i} of ${user} on ${o.id} after the drain`)
  }
})

test('a replica far behind catches up in shipments that fit the transport, whatever its entries carry', async (t) => {
  const { dir, net, nodes } = await threeNodes(t)
  const user = USERS[7]
  const [primaryId, replicaId] = nodes[0].grid.replicasOf(user)
  const primary = nodes.find(n => n.id === primaryId) as TestNode
  const away = nodes.find(n => n.id === replicaId) as TestNode
  await primary.grid.deliver(raw(0), [{ user, prefix: '' }])
  // the replica goes away; 520 messages arrive, each with a 40 KB trace header in its log entry: 512 such entries
  // in one shipment would be a 20 MB request header, above what the transport carries (gossip/constants.ts)
  away.gossip.kill()
  await stopNode(away)
  const trace = `X-Trace: ${'t'.repeat(40 * 1024)}\r\n`
  for (let i = 1; i <= 520; i++) await primary.grid.deliver(raw(i), [{ user, prefix: trace }])
  const target = await primary.store.logPosition(user)
  // it returns as a replica of the user again: the primary ships the whole gap
  const back = await startNode(net, dir, away.id, away.gossip)
  nodes[nodes.indexOf(away)] = back
  await until('the returned replica holds the whole log', async () => {
    primary.grid.scheduleRebalance()
    return await back.store.logPosition(user) >= target
  }, 60_000)
  assert.equal((await ids(back.store, user)).size, 521)
})

test('a burst to one user through every node: deliveries built into shared batches, each acknowledged once, both copies the same', async (t) => {
  const { nodes } = await threeNodes(t)
  const user = USERS[3]
  const primary = nodes.find(n => n.grid.isPrimary(user)) as TestNode
  const before = primary.store.stats()
  const n = 60
  // all at once, entering through all three nodes: the primary's store takes the ones that wait for the user's lock
  // together (store/mail.ts writeCombined)
  const results = await Promise.all(Array.from({ length: n }, async (_, i) => await nodes[i % 3].grid.deliver(raw(1000 + i), [{ user, prefix: '' }])))
  const after = primary.store.stats()
  assert.ok(after.combinedWrites - before.combinedWrites > 0, 'some deliveries shared a batch on the primary')
  assert.ok(after.commitBatches - before.commitBatches < n, `the primary wrote ${after.commitBatches - before.commitBatches} batches for ${n} deliveries`)
  const uids = results.map(r => r[0].uid).sort((a, b) => a - b)
  assert.deepEqual(uids, Array.from({ length: n }, (_, i) => i + 1))
  // acknowledged means on both replicas, with the same UIDs for the same messages and the same log position
  const copies = await Promise.all(primary.grid.replicasOf(user).map(async id => {
    const holder = nodes.find(x => x.id === id) as TestNode
    const box = await holder.store.getMailbox(user, 'INBOX')
    assert.ok(box !== null)
    const recs = await holder.store.listMessages(user, box.id)
    const byUid = await Promise.all(recs.map(async r => `${r.uid}:${/X-Id: (\d+)/.exec((await holder.store.readMessage(r)).toString())?.[1] ?? '?'}`))
    return { byUid, position: await holder.store.logPosition(user) }
  }))
  assert.equal(copies.length, 2)
  assert.equal(copies[0].byUid.length, n)
  assert.deepEqual(copies[0], copies[1])
})

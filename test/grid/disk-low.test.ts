// A member low on disk in a grid of four, through the real replication, re-mirroring and hand-off (in-memory network,
// real LevelDB stores): C goes low; B dies; the survivors restore R copies without making any new copy on C, while C
// keeps every user it held (and takes their new mail); users added afterwards stay off C; C recovers and takes its
// share back, the stand-ins dropping their copies only after C has them. Every acknowledged message stays on every
// replica of its user throughout.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { createRing } from '../../gossip/ring.ts'
import { Grid } from '../../node/grid/index.ts'
import { createStore } from '../../store/index.ts'
import type { Store } from '../../store/index.ts'
import { MemoryNetwork } from '../helpers/memory-gossip.ts'
import type { MemoryGossip } from '../helpers/memory-gossip.ts'
import { until } from '../helpers/grid-node.ts'
import { tempDir } from '../helpers/tmp.ts'

interface TestNode { id: string, store: Store, gossip: MemoryGossip, grid: Grid }

const logger = pino({ level: process.env.MAILGRID_TEST_LOG ?? 'silent' })
const OLD = Array.from({ length: 40 }, (_, i) => `old${i}@example.com`)
const NEW = Array.from({ length: 20 }, (_, i) => `new${i}@example.com`)
const R = 2
const SETTLE_MS = 30_000

async function startNode (net: MemoryNetwork, dir: string, id: string): Promise<TestNode> {
  const store = createStore({}, { path: `${dir}/${id}`, scryptLogN: 4 })
  await store.start()
  const gossip = net.create(id)
  const grid = new Grid({ gossip, store, logger }, { replicas: R })
  await gossip.start()
  await grid.start()
  return { id, store, gossip, grid }
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

/** Every user's copies are on exactly its replicas, with every acknowledged message, on every live node's view. */
async function settled (live: TestNode[], users: string[]): Promise<boolean> {
  for (const u of users) {
    const reps = live[0].grid.replicasOf(u)
    if (live.some(n => n.grid.replicasOf(u).join() !== reps.join())) return false
    for (const n of live) if ((await n.store.logPosition(u) > 0) !== reps.includes(n.id)) return false
  }
  return (await Promise.all(live.map(async n => await n.grid.underReplicated()))).every(x => x === 0)
}

test('a member low on disk takes no new copies after a death and no new users, keeps its own, and takes its share back', { timeout: 120_000 }, async (t) => {
  const dir = await tempDir(t)
  const net = new MemoryNetwork()
  const nodes = [await startNode(net, dir, 'A'), await startNode(net, dir, 'B'), await startNode(net, dir, 'C'), await startNode(net, dir, 'D')]
  t.after(async () => { for (const n of nodes) { await n.grid.stop().catch(() => {}); await n.store.stop().catch(() => {}) } })
  const [, b, c] = nodes
  await nodes[0].store.addDomain('example.com')
  for (const u of OLD) await nodes[0].store.addUser({ address: u, password: 'pw' })
  await until('the directory on every node', async () => (await Promise.all(nodes.map(async n => (await n.store.listUsers()).length))).every(x => x === OLD.length))

  const acked = new Map<string, string>()
  let next = 0
  const deliver = async (via: TestNode, users: string[]): Promise<void> => {
    for (const u of users) {
      await via.grid.deliver(raw(next), [{ user: u, prefix: '' }])
      acked.set(String(next++), u)
    }
  }
  const allOnReplicas = async (live: TestNode[]): Promise<void> => {
    for (const [id, u] of acked) {
      for (const rep of live[0].grid.replicasOf(u)) {
        const holder = live.find(n => n.id === rep) as TestNode
        assert.ok((await ids(holder.store, u)).has(id), `message ${id} of ${u} on its replica ${rep}`)
      }
    }
  }
  await deliver(nodes[0], OLD)
  const all4 = createRing(nodes.map(n => ({ id: n.id, weight: 1 })))
  const heldByC = new Set(OLD.filter(u => all4.replicas(u, R).includes('C')))
  assert.ok(heldByC.size > 5)
  await until('every copy where the ring puts it', async () => await settled(nodes, OLD), SETTLE_MS)
  for (const u of OLD) assert.equal(await c.store.logPosition(u) > 0, heldByC.has(u), `${u} on C exactly when C replicates it`)

  // C's disk goes low; every node sees it, and nothing moves
  const version = nodes[0].grid.placement().version
  c.grid.setDiskLow({ since: Date.now(), floorBytes: 1 })
  await until('every node to see the alarm', () => nodes.every(n => n.grid.placement().version !== version))
  for (const u of OLD) assert.deepEqual(nodes[0].grid.replicasOf(u), all4.replicas(u, R), `${u} keeps its replicas`)

  // B dies: its users are re-mirrored, none onto C, though the plain ring over A, C, D would put some there
  b.gossip.kill()
  const live = nodes.filter(n => n !== b)
  const threeLeft = createRing(live.map(n => ({ id: n.id, weight: 1 })))
  const wouldGoToC = OLD.filter(u => !heldByC.has(u) && threeLeft.replicas(u, R).includes('C'))
  assert.ok(wouldGoToC.length > 0, 'the plain ring would give C new copies')
  for (const u of OLD) {
    const reps = live[0].grid.replicasOf(u)
    assert.equal(reps.includes('C'), heldByC.has(u), `${u}: on C exactly when it was before`)
    assert.equal(reps.length, R)
  }
  await deliver(live[0], OLD)
  await until('R copies of every user on A, C, D, and none new on C', async () => await settled(live, OLD), SETTLE_MS)
  for (const u of OLD) assert.equal(await c.store.logPosition(u) > 0, heldByC.has(u), `${u} on C exactly when it was before`)
  await allOnReplicas(live)

  // users added now stay off C
  for (const u of NEW) await nodes[0].store.addUser({ address: u, password: 'pw' })
  await until('the new users on every live node', async () => (await Promise.all(live.map(async n => (await n.store.listUsers()).length))).every(x => x === OLD.length + NEW.length))
  assert.ok(NEW.some(u => threeLeft.replicas(u, R).includes('C')), 'the plain ring would place some on C')
  await deliver(live[1], NEW)
  for (const u of NEW) {
    const reps = live[0].grid.replicasOf(u)
    assert.ok(!reps.includes('C'), `${u} is not placed on C`)
    // C may still hold the empty first state every node makes from the directory record, never the message
    const primary = live.find(n => n.id === reps[0]) as TestNode
    assert.ok(await c.store.logPosition(u) < await primary.store.logPosition(u), `C has no copy of ${u}'s message`)
  }
  await until('C to hold nothing of the new users', async () => (await Promise.all(NEW.map(async u => await c.store.logPosition(u)))).every(p => p === 0), SETTLE_MS)

  // C recovers: the plain ring again, copies brought to C before the stand-ins drop theirs
  c.grid.setDiskLow(null)
  await until('the plain ring over A, C, D', () => live.every(n => n.grid.placement().version === threeLeft.version))
  await until('copies where the plain ring puts them', async () => await settled(live, [...OLD, ...NEW]), SETTLE_MS)
  for (const u of [...OLD, ...NEW]) assert.deepEqual(live[0].grid.replicasOf(u), threeLeft.replicas(u, R))
  await allOnReplicas(live)
})

// Partitions, in one process on the in-memory network: both sides accept deliveries (and, in a two-node
// grid, changes); after the heal every acknowledged message is present once, no UID that a client saw on
// either side names a different message afterwards, and the replicas converge to the same state.

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

async function until (what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 25))
  }
}

async function cluster (t: { after: (fn: () => Promise<void>) => void }, ids: string[], users: string[]): Promise<{ net: MemoryNetwork, nodes: TestNode[] }> {
  const dir = await tempDir(t)
  const net = new MemoryNetwork()
  const nodes: TestNode[] = []
  for (const id of ids) {
    const store = createStore({}, { path: `${dir}/${id}`, scryptLogN: 4 })
    await store.start()
    const gossip = net.create(id)
    const grid = new Grid({ gossip, store, logger }, { replicas: 2 })
    await gossip.start()
    await grid.start()
    nodes.push({ id, store, gossip, grid })
  }
  t.after(async () => { for (const n of nodes) { await n.grid.stop(); await n.store.stop() } })
  await nodes[0].store.addDomain('example.com')
  for (const u of users) await nodes[0].store.addUser({ address: u, password: 'pw' })
  await until('directory everywhere', async () => (await Promise.all(nodes.map(async n => (await n.store.listUsers()).length))).every(c => c === users.length))
  return { net, nodes }
}

const raw = (i: number): Buffer => Buffer.from(`Subject: m${i}\r\nX-Id: ${i}\r\n\r\nbody ${i}\r\n`)

/** uid → X-Id of a user's INBOX, as the user's primary on that node's side shows it. */
async function view (store: Store, user: string): Promise<Map<number, string>> {
  const box = await store.getMailbox(user, 'INBOX')
  const out = new Map<number, string>()
  if (box === null) return out
  for (const r of await store.listMessages(user, box.id)) {
    const m = /X-Id: (\d+)/.exec((await store.readMessage(r)).toString())
    out.set(r.uid, m?.[1] ?? '?')
  }
  return out
}

async function snapshot (store: Store, user: string): Promise<unknown> {
  const boxes = await store.listMailboxes(user)
  // `loc` (where this node keeps the body) is node-local; everything else must be equal on every replica
  const msgs = await Promise.all(boxes.map(async b => (await store.listMessages(user, b.id)).map(({ loc, ...r }) => r)))
  return { boxes, msgs, pos: await store.logPosition(user) }
}

async function checkHealed (nodes: TestNode[], users: string[], acked: Map<string, string>, seen: Array<[string, number, string]>): Promise<void> {
  const byId = (id: string): TestNode => nodes.find(n => n.id === id) as TestNode
  let lag = ''
  await until('replicas converged', async () => {
    for (const n of nodes) n.grid.scheduleRebalance()
    for (const u of users) {
      const reps = nodes[0].grid.replicasOf(u).map(byId)
      // a node that is not a replica and still holds a copy (one it took on its side of the cut) has not handed it
      // over yet: what only it has reaches the primary by that hand-off's merge, so the replicas agreeing is not
      // the end (the minority's copy of a user it did not replicate was merged a moment after this check once)
      for (const n of nodes) {
        if (!reps.includes(n) && await n.store.logPosition(u) > 0) { lag = `${u}: ${n.id} still holds a copy it does not replicate`; return false }
      }
      const [a, b] = await Promise.all(reps.map(async r => JSON.stringify(await snapshot(r.store, u))))
      if (a !== b) { lag = `${u}: ${a.slice(-300)} VS ${b.slice(-300)}`; return false }
    }
    return true
  }).catch(err => { throw new Error(`${String(err)}; ${lag}`) })
  for (const u of users) {
    const primary = byId(nodes[0].grid.primaryOf(u) as string)
    const v = await view(primary.store, u)
    const ids = [...v.values()]
    assert.equal(new Set(ids).size, ids.length, `${u}: no message twice`)
    for (const [id, user] of acked) if (user === u) assert.ok(ids.includes(id), `${u}: acknowledged message ${id} present`)
    for (const [user, uid, id] of seen) {
      if (user !== u) continue
      const now = v.get(uid)
      assert.ok(now === undefined || now === id, `${u}: UID ${uid} was ${id} on one side and is ${now} now`)
    }
  }
}

test('three nodes: a minority node and the majority both take mail; after the heal nothing is lost', async (t) => {
  const users = Array.from({ length: 12 }, (_, i) => `p${i}@example.com`)
  const { net, nodes } = await cluster(t, ['A', 'B', 'C'], users)
  const acked = new Map<string, string>()
  let n = 0
  for (const u of users) { await nodes[n % 3].grid.deliver(raw(n), [{ user: u, prefix: '' }]); acked.set(String(n), u); n++ }

  net.partition(['A'], ['B', 'C'])
  const seen: Array<[string, number, string]> = []
  for (let round = 0; round < 3; round++) {
    for (const u of users) {
      for (const side of [nodes[0], nodes[1]]) {
        await side.grid.deliver(raw(n), [{ user: u, prefix: '' }])
        acked.set(String(n), u)
        n++
      }
    }
  }
  for (const u of users) {
    for (const side of [nodes[0], nodes[1]]) {
      const p = side.grid.primaryOf(u) as string
      for (const [uid, id] of await view(nodes.find(x => x.id === p)?.store as Store, u)) seen.push([u, uid, id])
    }
  }
  // the minority side refuses mailbox changes; the majority side makes them
  const { replicatedMailStore } = await import('../../node/grid/index.ts')
  const u = users.find(x => nodes[0].grid.isPrimary(x) && nodes[1].grid.isPrimary(x)) ?? users[0]
  const minority = replicatedMailStore(nodes[0].grid, nodes[0].store)
  const boxA = await nodes[0].store.getMailbox(u, 'INBOX')
  assert.ok(boxA !== null)
  await assert.rejects(minority.storeFlags(u, boxA.id, [1], 'add', ['\\Flagged']), (err: Error & { kind?: string }) => err.kind === 'unavailable')
  await minority.append(u, 'INBOX', { raw: raw(9999) }) // new mail is still taken
  acked.set('9999', u)
  const majorityNode = nodes.find(x => x.id === nodes[1].grid.primaryOf(u)) as TestNode
  const majority = replicatedMailStore(majorityNode.grid, majorityNode.store)
  const boxB = await majorityNode.store.getMailbox(u, 'INBOX')
  assert.ok(boxB !== null)
  await majority.storeFlags(u, boxB.id, [1], 'add', ['\\Flagged'])

  net.heal()
  await checkHealed(nodes, users, acked, seen)
})

test('two nodes cut apart both take over; flags and expunges merge after the heal', async (t) => {
  const users = ['x@example.com', 'y@example.com', 'z@example.com']
  const { net, nodes } = await cluster(t, ['A', 'B'], users)
  const acked = new Map<string, string>()
  let n = 0
  for (const u of users) for (let k = 0; k < 3; k++) { await nodes[0].grid.deliver(raw(n), [{ user: u, prefix: '' }]); acked.set(String(n), u); n++ }

  net.partition(['A'], ['B'])
  const seen: Array<[string, number, string]> = []
  for (const u of users) {
    for (const side of nodes) {
      await side.grid.deliver(raw(n), [{ user: u, prefix: '' }])
      acked.set(String(n), u)
      n++
      for (const [uid, id] of await view(side.store, u)) seen.push([u, uid, id])
    }
  }
  // on A's side: mark everything seen; on B's side: expunge the first message
  const u0 = users[0]
  const boxA = await nodes[0].store.getMailbox(u0, 'INBOX')
  const boxB = await nodes[1].store.getMailbox(u0, 'INBOX')
  assert.ok(boxA !== null && boxB !== null)
  await nodes[0].store.storeFlags(u0, boxA.id, [1, 2, 3], 'add', ['\\Seen'])
  await nodes[1].store.expunge(u0, boxB.id, [1])
  acked.delete('0') // expunged on purpose

  net.heal()
  await checkHealed(nodes, users, acked, seen)
  const primary = nodes.find(x => x.id === nodes[0].grid.primaryOf(u0)) as TestNode
  const box = await primary.store.getMailbox(u0, 'INBOX')
  assert.ok(box !== null)
  const recs = await primary.store.listMessages(u0, box.id)
  const ids = await view(primary.store, u0)
  assert.ok(![...ids.values()].includes('0'), 'the expunge made on one side holds')
  for (const r of recs) {
    if (['1', '2'].includes(ids.get(r.uid) as string)) assert.ok(r.flags.includes('\\Seen'), 'the flags set on the other side hold')
  }
})

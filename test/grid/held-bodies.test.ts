// A delivery that enters at a replica of its user (not the primary) crosses the network once: the entry node keeps
// the body while the primary handles it, and the primary's shipment of the new entries names the body instead of
// sending it back (shipping.ts HeldBodies). The replica stores the body it kept, durably before its answer: the
// message is there when the primary dies right after. A replica that no longer has the body pulls it.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import pino from 'pino'
import { Grid } from '../../node/grid/index.ts'
import { PROTOCOLS } from '../../node/grid/wire.ts'
import { createStore } from '../../store/index.ts'
import type { Store } from '../../store/index.ts'
import type { RpcMessage } from '../../gossip/types.ts'
import { MemoryNetwork } from '../helpers/memory-gossip.ts'
import type { MemoryGossip } from '../helpers/memory-gossip.ts'
import { tempDir } from '../helpers/tmp.ts'

interface TestNode { id: string, store: Store, gossip: MemoryGossip, grid: Grid }
interface Sent { from: string, to: string, protocol: string, req: RpcMessage }

const logger = pino({ level: process.env.MAILGRID_TEST_LOG ?? 'silent' })
const USERS = Array.from({ length: 12 }, (_, i) => `h${i}@example.com`)

async function until (what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 25))
  }
}

/** Three nodes; every call a node makes is recorded in `sent`. */
async function threeNodes (t: { after: (fn: () => Promise<void>) => void }): Promise<{ nodes: TestNode[], sent: Sent[] }> {
  const dir = await tempDir(t)
  const net = new MemoryNetwork()
  const sent: Sent[] = []
  const nodes: TestNode[] = []
  for (const id of ['A', 'B', 'C']) {
    const store = createStore({}, { path: `${dir}/${id}`, scryptLogN: 4 })
    await store.start()
    const gossip = net.create(id)
    const call = gossip.call.bind(gossip)
    gossip.call = async (peer, protocol, req, opts) => {
      sent.push({ from: id, to: peer, protocol, req })
      return await call(peer, protocol, req, opts)
    }
    const grid = new Grid({ gossip, store, logger }, { replicas: 2 })
    await gossip.start()
    await grid.start()
    nodes.push({ id, store, gossip, grid })
  }
  t.after(async () => {
    for (const n of nodes) {
      await n.grid.stop().catch(() => {})
      await n.store.stop().catch(() => {})
    }
  })
  await nodes[0].store.addDomain('example.com')
  for (const u of USERS) await nodes[0].store.addUser({ address: u, password: 'pw' })
  await until('directory on every node', async () => (await Promise.all(nodes.map(async n => (await n.store.listUsers()).length))).every(c => c === USERS.length))
  await until('one ring everywhere', () => nodes.every(n => USERS.every(u => n.grid.replicasOf(u).length === 2 && n.grid.replicasOf(u)[0] === nodes[0].grid.replicasOf(u)[0])))
  return { nodes, sent }
}

/** A user whose replicas are `entry` (not the primary) and another node, the primary. */
function replicaUser (nodes: TestNode[], entry: TestNode): { user: string, primary: TestNode } {
  for (const user of USERS) {
    const [p, r] = entry.grid.replicasOf(user)
    if (r === entry.id) return { user, primary: nodes.find(n => n.id === p) as TestNode }
  }
  throw new Error(`no user has ${entry.id} as its second replica`)
}

const message = (tag: string): Buffer => Buffer.from(`Subject: ${tag}\r\nX-Tag: ${tag}\r\n\r\n${tag} `.padEnd(4000, 'x') + '\r\n')

async function inbox (store: Store, user: string): Promise<string[]> {
  const box = await store.getMailbox(user, 'INBOX')
  if (box === null) return []
  return await Promise.all((await store.listMessages(user, box.id)).map(async r => (await store.readMessage(r)).toString()))
}

/** The log shipments `from` sent `to` for `user`, as the items they carried and the body bytes of their calls. */
function shipments (sent: Sent[], from: string, to: string, user: string): Array<{ held: unknown, lens: unknown, bodyBytes: number }> {
  return sent.filter(s => s.from === from && s.to === to && s.protocol === PROTOCOLS.logBatch).flatMap(s =>
    (s.req.header.items as Array<Record<string, unknown>>).filter(i => i.user === user).map(i => ({ held: i.held, lens: i.lens, bodyBytes: s.req.body?.byteLength ?? 0 })))
}

test('a delivery entering at a replica is shipped back without its body, and the replica has it when the primary dies', async (t) => {
  const { nodes, sent } = await threeNodes(t)
  const entry = nodes[1]
  const { user, primary } = replicaUser(nodes, entry)
  const raw = message('held-1')
  const hash = createHash('sha256').update(raw).digest('hex')
  sent.length = 0
  const [r] = await entry.grid.deliver(raw, [{ user, prefix: '' }])
  assert.ok(r.uid > 0)
  // the body went to the primary once, and came back by name only
  const forward = sent.filter(s => s.from === entry.id && s.to === primary.id && s.protocol === PROTOCOLS.deliverBatch)
  assert.equal(forward.length, 1)
  assert.equal((forward[0].req.header.items as Array<Record<string, unknown>>)[0].hold, hash)
  const back = shipments(sent, primary.id, entry.id, user)
  assert.ok(back.length >= 1, 'the primary shipped the entry to the entry node')
  assert.deepEqual(back.map(s => s.held), [[hash], ...back.slice(1).map(s => s.held)])
  assert.deepEqual(back[0].lens, [], 'no body in the shipment')
  assert.ok(sent.every(s => s.protocol !== PROTOCOLS.blobs), 'nothing pulled: the entry node kept the body')
  // durable on the entry node when the delivery resolved: the primary dies, the message is read from the copy
  primary.gossip.kill()
  const got = await inbox(entry.store, user)
  assert.deepEqual(got, [raw.toString()])
  assert.deepEqual(await entry.store.readBlob(hash), raw)
  // and the survivor takes the user over with it
  const survivors = nodes.filter(n => n !== primary)
  await until('the entry node leads the user', () => entry.grid.isPrimary(user) || survivors.some(n => n.grid.isPrimary(user)))
  const owner = survivors.find(n => n.grid.isPrimary(user)) as TestNode
  await owner.grid.deliver(message('held-2'), [{ user, prefix: '' }])
  assert.deepEqual((await inbox(owner.store, user)).map(m => /X-Tag: (\S+)/.exec(m)?.[1]).sort(), ['held-1', 'held-2'])
})

test('a body a shipment names but the replica no longer keeps is pulled from the primary', async (t) => {
  const { nodes, sent } = await threeNodes(t)
  const entry = nodes[2]
  const { user, primary } = replicaUser(nodes, entry)
  // the entry node forgets what it keeps (as when its delivery timed out while the primary went on)
  const held = (entry.grid as unknown as { shipping: { held: { body: (h: string) => Buffer | undefined } } }).shipping.held
  held.body = () => undefined
  const raw = message('pulled-1')
  const hash = createHash('sha256').update(raw).digest('hex')
  sent.length = 0
  await entry.grid.deliver(raw, [{ user, prefix: '' }])
  assert.deepEqual(shipments(sent, primary.id, entry.id, user)[0]?.held, [hash], 'the shipment named the body')
  const pulls = sent.filter(s => s.from === entry.id && s.to === primary.id && s.protocol === PROTOCOLS.blobs)
  assert.deepEqual(pulls.map(p => p.req.header.hashes), [[hash]])
  assert.deepEqual(await inbox(entry.store, user), [raw.toString()])
  assert.deepEqual(await entry.store.readBlob(hash), raw)
  // a node that is not a replica of the user keeps nothing and gets no shipment of it
  const other = nodes.find(n => n !== entry && n !== primary) as TestNode
  sent.length = 0
  await other.grid.deliver(message('plain-1'), [{ user, prefix: '' }])
  const item = (sent.find(s => s.from === other.id && s.protocol === PROTOCOLS.deliverBatch)?.req.header.items as Array<Record<string, unknown>>)[0]
  assert.equal(item.hold, undefined)
  const plain = shipments(sent, primary.id, entry.id, user)
  assert.equal(plain[0]?.held, undefined)
  assert.equal((plain[0]?.lens as number[]).length, 1, 'the body is shipped as before')
  assert.equal((await inbox(entry.store, user)).length, 2)
})

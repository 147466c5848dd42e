// The rebalance round skips users whose replicas confirmed their log position (rebalance.ts): the skip must never
// hide a replica that lost its copy. The users' primaries take no writes, so no log position moves. A replica
// that comes back (a new incarnation) with an empty disk gets its copies back at once, well before the periodic
// full round; one that loses a copy with no membership change at all gets it back from the full round.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { rm } from 'node:fs/promises'
import pino from 'pino'
import { Grid } from '../../node/grid/index.ts'
import { REBALANCE_FULL_INTERVAL_MS, REBALANCE_INTERVAL_MS } from '../../node/grid/constants.ts'
import { createStore } from '../../store/index.ts'
import type { Store } from '../../store/index.ts'
import { MemoryNetwork } from '../helpers/memory-gossip.ts'
import type { MemoryGossip } from '../helpers/memory-gossip.ts'
import { until } from '../helpers/grid-node.ts'
import { tempDir } from '../helpers/tmp.ts'

interface TestNode { id: string, store: Store, gossip: MemoryGossip, grid: Grid }

const logger = pino({ level: process.env.MAILGRID_TEST_LOG ?? 'silent' })
const USERS = Array.from({ length: 12 }, (_, i) => `s${i}@example.com`)

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

const raw = (i: number): Buffer => Buffer.from(`Subject: message ${i}\r\nX-Id: ${i}\r\n\r\nbody ${i}\r\n`)


interface Lost { nodes: TestNode[], back: TestNode, held: string[], positions: Map<string, number> }

/** Three nodes with mail, settled; then `victim` (B) loses its disk, `restart` says how it comes back. */
async function loseReplica (t: { after: (fn: () => Promise<void>) => void }, restart: (victim: TestNode, dir: string, net: MemoryNetwork) => Promise<TestNode>): Promise<Lost> {
  const dir = await tempDir(t)
  const net = new MemoryNetwork()
  const nodes = [await startNode(net, dir, 'A'), await startNode(net, dir, 'B'), await startNode(net, dir, 'C')]
  t.after(async () => { for (const n of nodes) await stopNode(n).catch(() => {}) })
  await nodes[0].store.addDomain('example.com')
  for (const u of USERS) await nodes[0].store.addUser({ address: u, password: 'pw' })
  await until('directory on every node', async () => (await Promise.all(nodes.map(async n => (await n.store.listUsers()).length))).every(c => c === USERS.length))
  for (let i = 0; i < 36; i++) await nodes[i % 3].grid.deliver(raw(i), [{ user: USERS[i % USERS.length], prefix: '' }])
  await until('every user confirmed on its replicas', async () =>
    (await Promise.all(nodes.map(async n => await n.grid.underReplicated()))).every(n => n === 0))
  // a few periodic rounds, so every owned user is settled (skipped) at its position
  await new Promise(resolve => setTimeout(resolve, 3 * REBALANCE_INTERVAL_MS))
  const victim = nodes[1]
  const held = USERS.filter(u => victim.grid.replicasOf(u).includes(victim.id) && !victim.grid.isPrimary(u))
  assert.ok(held.length > 0, 'B replicates users it is not primary of')
  const positions = new Map<string, number>()
  for (const u of held) {
    const primary = nodes.find(n => n.grid.isPrimary(u)) as TestNode
    positions.set(u, await primary.store.logPosition(u))
    assert.ok((positions.get(u) ?? 0) > 0, `${u} has mail`)
  }
  await stopNode(victim)
  await rm(`${dir}/${victim.id}`, { recursive: true, force: true })
  const back = await restart(victim, dir, net)
  nodes[1] = back
  return { nodes, back, held, positions }
}

async function assertBack ({ nodes, back, held, positions }: Lost, timeoutMs: number): Promise<void> {
  await until('every copy B replicates back at its primary\'s position', async () => {
    for (const u of held) if (await back.store.logPosition(u) !== positions.get(u)) return false
    return true
  }, timeoutMs)
  for (const u of held) {
    const primary = nodes.find(n => n.grid.isPrimary(u)) as TestNode
    assert.equal(await primary.store.logPosition(u), positions.get(u), `${u}: the primary's log did not move`)
    const box = await back.store.getMailbox(u, 'INBOX')
    assert.ok(box !== null, `${u}: INBOX on B`)
    assert.equal((await back.store.listMessages(u, box.id)).length, 3, `${u}: its three messages on B`)
  }
  await until('nothing under-replicated', async () =>
    (await Promise.all(nodes.map(async n => await n.grid.underReplicated()))).every(n => n === 0))
}

test('a replica back with an empty disk (a new incarnation) is re-mirrored at once, although no primary\'s log moved', async (t) => {
  const lost = await loseReplica(t, async (victim, dir, net) => {
    victim.gossip.kill()
    return await startNode(net, dir, victim.id, victim.gossip)
  })
  await assertBack(lost, REBALANCE_FULL_INTERVAL_MS / 2)
})

test('a copy lost with no membership change comes back by the full round', async (t) => {
  // the process keeps running as far as the grid can tell: same incarnation, never seen dead
  const lost = await loseReplica(t, async (victim, dir, net) => await startNode(net, dir, victim.id, victim.gossip))
  await assertBack(lost, REBALANCE_FULL_INTERVAL_MS + 30_000)
})

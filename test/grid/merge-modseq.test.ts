// A merge after a partition numbers its changes above both sides' MODSEQs (RFC 7162 3.1.2: a message's MODSEQ,
// and a mailbox's HIGHESTMODSEQ, never go down). Found by the history check of the process-level fault test
// (test/cluster/chaos.test.ts): a client of one side saw a message at MODSEQ 146; the primary that merged that
// side's log after the heal gave it 143, from its own, lower counter, so a CONDSTORE client syncing from 146
// would never hear of the change.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { Grid, replicatedMailStore } from '../../node/grid/index.ts'
import { createStore } from '../../store/index.ts'
import type { Store } from '../../store/index.ts'
import { MemoryNetwork } from '../helpers/memory-gossip.ts'
import { until } from '../helpers/grid-node.ts'
import { tempDir } from '../helpers/tmp.ts'

const logger = pino({ level: process.env.MAILGRID_TEST_LOG ?? 'silent' })
const USER = 'm@example.com'
const FLAG_CHANGES = 20 // on one side only, so its MODSEQs run well ahead of the other's

const raw = (i: number): Buffer => Buffer.from(`Subject: m${i}\r\nX-Id: ${i}\r\n\r\nbody ${i}\r\n`)

/** X-Id → MODSEQ of the user's INBOX on this store, and the INBOX's HIGHESTMODSEQ (-1: no INBOX, as a copy that
 * was just reset has none until the primary rebuilds it). */
async function modseqs (store: Store): Promise<{ byId: Map<string, number>, highest: number }> {
  const box = await store.getMailbox(USER, 'INBOX')
  if (box === null) return { byId: new Map(), highest: -1 }
  const byId = new Map<string, number>()
  for (const r of await store.listMessages(USER, box.id)) byId.set(/X-Id: (\d+)/.exec((await store.readMessage(r)).toString())?.[1] ?? '?', r.modseq)
  return { byId, highest: box.highestModseq }
}

test('after a partition, the merge gives what it changes MODSEQs above both sides\' (no MODSEQ goes down)', async (t) => {
  const dir = await tempDir(t)
  const net = new MemoryNetwork()
  const nodes: Array<{ id: string, store: Store, grid: Grid }> = []
  for (const id of ['A', 'B']) {
    const store = createStore({}, { path: `${dir}/${id}`, scryptLogN: 4 })
    await store.start()
    const gossip = net.create(id)
    const grid = new Grid({ gossip, store, logger }, { replicas: 2 })
    await gossip.start()
    await grid.start()
    nodes.push({ id, store, grid })
  }
  t.after(async () => { for (const n of nodes) { await n.grid.stop(); await n.store.stop() } })
  await nodes[0].store.addDomain('example.com')
  await nodes[0].store.addUser({ address: USER, password: 'pw' })
  await until('the user on both nodes', async () => (await Promise.all(nodes.map(async n => (await n.store.listUsers()).length))).every(c => c === 1))
  for (let i = 0; i < 3; i++) await nodes[0].grid.deliver(raw(i), [{ user: USER, prefix: '' }])

  // the primary of the whole grid merges after the heal; the other side runs its MODSEQs ahead while cut off
  const primary = nodes.find(n => n.grid.isPrimary(USER))
  assert.ok(primary !== undefined)
  const other = nodes.find(n => n !== primary) as typeof primary
  net.partition(['A'], ['B'])
  await until('the other side takes the user over', () => other.grid.isPrimary(USER))
  await other.grid.deliver(raw(10), [{ user: USER, prefix: '' }])
  const mail = replicatedMailStore(other.grid, other.store)
  const box = await other.store.getMailbox(USER, 'INBOX')
  assert.ok(box !== null)
  for (let i = 0; i < FLAG_CHANGES; i++) await mail.storeFlags(USER, box.id, [1], 'add', [`$k${i}`])
  await primary.grid.deliver(raw(20), [{ user: USER, prefix: '' }]) // both sides numbered a UID 4
  const seen = await modseqs(other.store)
  assert.ok(seen.highest > FLAG_CHANGES, 'the other side ran ahead')

  net.heal()
  await until('both copies equal, with every message', async () => {
    for (const n of nodes) n.grid.scheduleRebalance()
    const [a, b] = await Promise.all(nodes.map(async n => await modseqs(n.store)))
    return a.byId.size === 5 && JSON.stringify([...a.byId].sort()) === JSON.stringify([...b.byId].sort()) && a.highest === b.highest
  }, 30_000)
  const after = await modseqs(primary.store)
  assert.ok(after.highest >= 0, 'the primary has the INBOX')
  assert.ok(after.highest >= seen.highest, `HIGHESTMODSEQ ${after.highest} after the merge, ${seen.highest} on the other side before`)
  for (const [id, modseq] of seen.byId) {
    assert.ok((after.byId.get(id) ?? 0) >= modseq, `message ${id}: MODSEQ ${after.byId.get(id)} after the merge, ${modseq} on the other side before`)
  }
})

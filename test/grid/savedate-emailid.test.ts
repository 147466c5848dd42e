// A message's SAVEDATE (RFC 8514) and EMAILID (RFC 8474) are the same on every replica and survive a failover, the
// catch-up of a returning node and the merge after a partition: the save date travels in the append entry (and in
// a merge's summary, which re-adds the other side's messages with it), the EMAILID is a digest of the bytes.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { Grid, replicatedMailStore } from '../../node/grid/index.ts'
import { emailObjectId } from '../../node/imap/object-ids.ts'
import { createStore } from '../../store/index.ts'
import type { Store } from '../../store/index.ts'
import { MemoryNetwork } from '../helpers/memory-gossip.ts'
import { until } from '../helpers/grid-node.ts'
import { tempDir } from '../helpers/tmp.ts'

const logger = pino({ level: process.env.MAILGRID_TEST_LOG ?? 'silent' })
const USER = 's@example.com'
const raw = (i: number): Buffer => Buffer.from(`Subject: m${i}\r\nX-Id: ${i}\r\n\r\nbody ${i}\r\n`)
const OLD = Date.UTC(2001, 0, 1) // an internal date far from any save date

/** X-Id → [save date, EMAILID] of the user's messages in every mailbox of this store. */
async function dates (store: Store): Promise<Map<string, [number | undefined, string]>> {
  const out = new Map<string, [number | undefined, string]>()
  for (const box of await store.listMailboxes(USER)) {
    for (const r of await store.listMessages(USER, box.id)) {
      out.set(`${box.name}/${/X-Id: (\d+)/.exec((await store.readMessage(r)).toString())?.[1] ?? '?'}`, [r.saved, emailObjectId(r)])
    }
  }
  return out
}

const same = (a: Map<string, unknown>, b: Map<string, unknown>): boolean => JSON.stringify([...a].sort()) === JSON.stringify([...b].sort())

test('SAVEDATE and EMAILID: replicated, kept by a failover, a catch-up and the merge after a partition', async (t) => {
  const dir = await tempDir(t)
  const net = new MemoryNetwork()
  // each node has its own clock, minutes apart, so a save date made again anywhere would show
  const clocks: Record<string, number> = { A: Date.UTC(2026, 5, 1, 8), B: Date.UTC(2026, 5, 1, 9) }
  const nodes: Array<{ id: string, store: Store, grid: Grid }> = []
  for (const id of ['A', 'B']) {
    const store = createStore({ now: () => (clocks[id] += 1000) }, { path: `${dir}/${id}`, scryptLogN: 4 })
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
  const primary = nodes.find(n => n.grid.isPrimary(USER))!
  const other = nodes.find(n => n !== primary)!
  const mail = replicatedMailStore(primary.grid, primary.store)
  await mail.append(USER, 'INBOX', { raw: raw(1), internalDate: OLD })
  const inbox = (await primary.store.getMailbox(USER, 'INBOX'))!
  await mail.copy(USER, inbox.id, [1], 'Archive')
  const first = await dates(primary.store)
  assert.equal(first.size, 2)
  for (const [, [saved]] of first) assert.ok(saved !== undefined && saved !== OLD)
  assert.notEqual(first.get('INBOX/1')![0], first.get('Archive/1')![0], 'the copy has its own save date')
  assert.equal(first.get('INBOX/1')![1], first.get('Archive/1')![1], 'and the same EMAILID')
  // replicated: the replica holds the same save dates (not its own clock's) and EMAILIDs
  await until('the replica has both messages', async () => (await dates(other.store)).size === 2)
  assert.ok(same(await dates(other.store), first))

  // failover: the primary is cut off, the other node takes the user over and adds a message while cut off
  net.partition([primary.id], [other.id])
  await until('the other side takes the user over', () => other.grid.isPrimary(USER))
  const theirs = replicatedMailStore(other.grid, other.store)
  await theirs.append(USER, 'INBOX', { raw: raw(2), internalDate: OLD })
  const taken = await dates(other.store)
  assert.ok(same(new Map([...taken].filter(([k]) => k !== 'INBOX/2')), first), 'the old messages keep theirs after the failover')
  const saved2 = taken.get('INBOX/2')!
  // and the first side takes one too (a delivery is accepted on both sides of a partition)
  await primary.grid.deliver(raw(3), [{ user: USER, prefix: '' }])

  // heal: the merge re-adds one side's message on the other's copy: with the save date it had, not the merge's time
  net.heal()
  await until('both copies equal, with every message', async () => {
    for (const n of nodes) n.grid.scheduleRebalance()
    const [a, b] = await Promise.all(nodes.map(async n => await dates(n.store)))
    return a.size === 4 && same(a, b)
  }, 30_000)
  const merged = await dates(primary.store)
  assert.deepEqual(merged.get('INBOX/2'), saved2)
  assert.deepEqual(merged.get('INBOX/1'), first.get('INBOX/1'))
  assert.deepEqual(merged.get('Archive/1'), first.get('Archive/1'))
  assert.ok(merged.get('INBOX/3')![0] !== undefined)
})

// User attributes (MailStore.setAttrs): stored and bounded by the store, replicated with the user's log, and kept
// from both sides by the merge after a partition (the same winner for a key both sides changed, whichever merges).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { Grid, replicatedMailStore } from '../../node/grid/index.ts'
import { attrWins, createStore, isMailError } from '../../store/index.ts'
import type { Store } from '../../store/index.ts'
import { MemoryNetwork } from '../helpers/memory-gossip.ts'
import { until } from '../helpers/grid-node.ts'
import { tempDir } from '../helpers/tmp.ts'

const logger = pino({ level: process.env.MAILGRID_TEST_LOG ?? 'silent' })
const USER = 'a@example.com'

test('attributes: set, list by prefix, remove, bounds, dropped with the user', async (t) => {
  const dir = await tempDir(t)
  const store = createStore({}, { path: dir, scryptLogN: 4 })
  await store.start()
  t.after(async () => { await store.stop() })
  await store.addDomain('example.com')
  await store.addUser({ address: USER, password: 'pw' })
  await store.setAttrs(USER, [{ key: 'sieve/script/one', value: 'keep;' }, { key: 'sieve/script/two', value: 'discard;' }, { key: 'sieve/active', value: 'one' }])
  assert.equal(await store.getAttr(USER, 'sieve/active'), 'one')
  assert.deepEqual((await store.listAttrs(USER, 'sieve/script/')).map(a => [a.key, a.value]), [['sieve/script/one', 'keep;'], ['sieve/script/two', 'discard;']])
  assert.equal((await store.listAttrs(USER, '')).length, 3)
  const log = await store.readLog(USER, 1, 1000)
  assert.equal(log.filter(e => e.op === 'attr').length, 3, 'one log entry per key')
  await store.setAttrs(USER, [{ key: 'sieve/script/two', value: null }])
  assert.equal(await store.getAttr(USER, 'sieve/script/two'), null)
  await assert.rejects(store.setAttrs(USER, [{ key: 'x', value: 'y'.repeat(300 * 1024) }]), (e: unknown) => isMailError(e, 'tooBig'))
  await assert.rejects(store.setAttrs(USER, [{ key: 'bad\x00key', value: 'y' }]), (e: unknown) => isMailError(e, 'invalid'))
  // 1 MiB per user: five values of 250 KiB do not fit
  const big = 'z'.repeat(250 * 1024)
  await assert.rejects((async () => { for (let i = 0; i < 5; i++) await store.setAttrs(USER, [{ key: `big/${i}`, value: big }]) })(), (e: unknown) => isMailError(e, 'limit'))
  await assert.rejects(store.setAttrs('nobody@example.com', [{ key: 'k', value: 'v' }]), (e: unknown) => isMailError(e, 'notFound'))
  await store.deleteUser(USER)
  await store.addUser({ address: USER, password: 'pw' })
  assert.deepEqual(await store.listAttrs(USER, ''), [], 'a deleted user\'s attributes went with it')
})

test('attrWins: later change first, then the greater value; never both ways', () => {
  assert.equal(attrWins({ value: 'a', at: 2 }, { value: 'b', at: 1 }), true)
  assert.equal(attrWins({ value: 'b', at: 1 }, { value: 'a', at: 2 }), false)
  assert.equal(attrWins({ value: 'b', at: 1 }, { value: 'a', at: 1 }), true)
  assert.equal(attrWins({ value: 'a', at: 1 }, { value: 'b', at: 1 }), false)
  assert.equal(attrWins({ value: null, at: 1 }, { value: 'a', at: 1 }), false)
  assert.equal(attrWins({ value: 'a', at: 1 }, { value: null, at: 1 }), true)
  assert.equal(attrWins({ value: 'a', at: 1 }, { value: 'a', at: 1 }), false)
})

test('attributes replicate with the log, and a merge after a partition keeps both sides\' changes', async (t) => {
  const dir = await tempDir(t)
  const net = new MemoryNetwork()
  let clock = 1_000_000
  const nodes: Array<{ id: string, store: Store, grid: Grid }> = []
  for (const id of ['A', 'B']) {
    const store = createStore({ now: () => clock }, { path: `${dir}/${id}`, scryptLogN: 4 })
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
  const primary = nodes.find(n => n.grid.isPrimary(USER))
  assert.ok(primary !== undefined)
  const other = nodes.find(n => n !== primary) as typeof primary
  await replicatedMailStore(primary.grid, primary.store).setAttrs(USER, [{ key: 'sieve/script/s', value: 'keep;' }, { key: 'sieve/active', value: 's' }])
  assert.equal(await other.store.getAttr(USER, 'sieve/active'), 's', 'durable on the replica when setAttrs resolved')

  net.partition(['A'], ['B'])
  await until('the other side takes the user over', () => other.grid.isPrimary(USER))
  // each side changes its own key, and both change one key: the later change wins
  clock += 10
  await replicatedMailStore(primary.grid, primary.store).setAttrs(USER, [{ key: 'p/only', value: 'P' }, { key: 'both', value: 'from-primary' }])
  clock += 10
  await replicatedMailStore(other.grid, other.store).setAttrs(USER, [{ key: 'o/only', value: 'O' }, { key: 'both', value: 'from-other' }, { key: 'sieve/active', value: null }])
  net.heal()
  const want = JSON.stringify([['both', 'from-other'], ['o/only', 'O'], ['p/only', 'P'], ['sieve/script/s', 'keep;']])
  await until('both copies hold both sides\' attributes', async () => {
    for (const n of nodes) n.grid.scheduleRebalance()
    const got = await Promise.all(nodes.map(async n => JSON.stringify((await n.store.listAttrs(USER, '')).map(a => [a.key, a.value]))))
    return got.every(g => g === want)
  }, 30_000)
})

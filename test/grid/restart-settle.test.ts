// A node restarted behind the other replicas of a user (found by the IMAP stress tester, node/imap/README.md): it
// knows the other members only as remembered, dead until heard from, so its first ring holds only itself and it took
// itself for the primary of every user, serving and changing the old copy it had before it heard the replica that
// took the writes meanwhile. Now it leads no user until it has heard the members it remembers (or the settle time
// passed), and then catches up from them first.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { Grid } from '../../node/grid/index.ts'
import { createStore, isMailError } from '../../store/index.ts'
import type { Store } from '../../store/index.ts'
import { MemoryNetwork } from '../helpers/memory-gossip.ts'
import type { MemoryGossip } from '../helpers/memory-gossip.ts'
import { tempDir } from '../helpers/tmp.ts'

const logger = pino({ level: process.env.MAILGRID_TEST_LOG ?? 'silent' })

interface TestNode { id: string, store: Store, gossip: MemoryGossip, grid: Grid }

async function until (what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 25))
  }
}

const raw = (i: number): Buffer => Buffer.from(`Subject: m${i}\r\nX-Id: ${i}\r\n\r\nbody ${i}\r\n`)

async function ids (store: Store, user: string): Promise<string[]> {
  const box = await store.getMailbox(user, 'INBOX')
  if (box === null) return []
  const out: string[] = []
  for (const r of await store.listMessages(user, box.id)) out.push(/X-Id: (\d+)/.exec((await store.readMessage(r)).toString())?.[1] ?? '?')
  return out.sort()
}

/**
 * Three nodes (R=2) and a user with one message; the user's primary is killed, two more messages are taken by the
 * others, and it is started again on its store, remembering the others but cut off from them (not heard yet).
 */
async function restartBehind (t: { after: (fn: () => Promise<void>) => void }, startSettleMs: number, stray = false): Promise<{ net: MemoryNetwork, restarted: TestNode, user: string, others: TestNode[] }> {
  const dir = await tempDir(t)
  const net = new MemoryNetwork()
  const nodes: TestNode[] = []
  const open = async (id: string, settle?: number, remember?: string[]): Promise<TestNode> => {
    const store = createStore({}, { path: `${dir}/${id}`, scryptLogN: 4 })
    await store.start()
    const gossip = net.create(id)
    if (remember !== undefined) gossip.remember(remember)
    const grid = new Grid({ gossip, store, logger: logger.child({ node: id }) }, { replicas: 2, ...(settle !== undefined ? { startSettleMs: settle } : {}) })
    await gossip.start()
    await grid.start()
    return { id, store, gossip, grid }
  }
  for (const id of ['A', 'B', 'C']) nodes.push(await open(id))
  const live = new Set(nodes)
  t.after(async () => { for (const n of live) { await n.grid.stop(); await n.store.stop() } })
  const user = 'u@example.com'
  await nodes[0].store.addDomain('example.com')
  await nodes[0].store.addUser({ address: user, password: 'pw' })
  await until('directory everywhere', async () => (await Promise.all(nodes.map(async n => (await n.store.listUsers()).length))).every(c => c === 1))
  await nodes[0].grid.deliver(raw(0), [{ user, prefix: '' }])

  const victim = nodes.find(n => n.id === nodes[0].grid.primaryOf(user)) as TestNode
  const others = nodes.filter(n => n !== victim)
  await until('the primary holds the first message', async () => (await ids(victim.store, user)).includes('0'))
  // `stray`: killed after a write was durable on its disk and before it was shipped (nobody acknowledged it)
  if (stray) await victim.store.append(user, 'INBOX', { raw: raw(9) })
  // SIGKILL: its store is closed as the process dies; the others take the user over and take two messages
  victim.gossip.kill()
  live.delete(victim)
  await victim.grid.stop()
  await victim.store.stop()
  for (const i of [1, 2]) await others[0].grid.deliver(raw(i), [{ user, prefix: '' }])

  // the restart: the others remembered (dead until heard from) and not heard yet
  net.partition([victim.id], others.map(n => n.id))
  const restarted = await open(victim.id, startSettleMs, others.map(n => n.id))
  live.add(restarted)
  assert.deepEqual(await ids(restarted.store, user), stray ? ['0', '9'] : ['0'], 'the restarted node holds the old copy')
  assert.deepEqual(restarted.grid.replicasOf(user), [restarted.id], 'its ring holds only itself')
  return { net, restarted, user, others }
}

test('a restarted node leads no user before it has heard the members it remembers, then catches up first', async (t) => {
  const { net, restarted, user } = await restartBehind(t, 600_000)
  // it takes itself for the primary, but must neither serve nor change its old copy
  await assert.rejects(restarted.grid.lead(user), (err: unknown) => isMailError(err) && err.kind === 'unavailable')
  await assert.rejects(restarted.grid.deliver(raw(3), [{ user, prefix: '' }]), (err: unknown) => isMailError(err))
  assert.deepEqual(await ids(restarted.store, user), ['0'], 'nothing written on the old copy')

  net.heal()
  assert.equal(restarted.grid.primaryOf(user), restarted.id, 'the primary again once it hears the others')
  // once the others are heard and place users on the same ring (they published it after a rebalance round)
  await until('the restarted node leads', async () => await restarted.grid.lead(user).then(() => true, (err: unknown) => { if (isMailError(err) && err.kind === 'unavailable') return false; throw err }))
  assert.deepEqual(await ids(restarted.store, user), ['0', '1', '2'], 'caught up with the writes taken while it was down')
  await restarted.grid.deliver(raw(3), [{ user, prefix: '' }])
  assert.deepEqual(await ids(restarted.store, user), ['0', '1', '2', '3'])
})

test('a restarted node whose remembered members stay silent leads alone once the settle time has passed', async (t) => {
  const { restarted, user } = await restartBehind(t, 5000)
  await assert.rejects(restarted.grid.lead(user), (err: unknown) => isMailError(err) && err.kind === 'unavailable')
  // the others never answer: after the settle time they count as dead, as the failure detector would have them
  await until('the node leads alone', async () => await restarted.grid.lead(user).then(() => true, () => false))
  await restarted.grid.deliver(raw(3), [{ user, prefix: '' }])
  assert.deepEqual(await ids(restarted.store, user), ['0', '3'])
})

/** X-Id → UID of a user's INBOX on a node. */
async function uids (store: Store, user: string): Promise<Map<string, number>> {
  const box = await store.getMailbox(user, 'INBOX')
  const out = new Map<string, number>()
  if (box === null) return out
  for (const r of await store.listMessages(user, box.id)) out.set(/X-Id: (\d+)/.exec((await store.readMessage(r)).toString())?.[1] ?? '?', r.uid)
  return out
}

test('a restarted node whose copy ends in an entry it never shipped takes the others\' copy with its UIDs, its stray message above them', async (t) => {
  const { net, restarted, user, others } = await restartBehind(t, 600_000, true)
  const ahead = others.find(n => n.grid.primaryOf(user) === n.id) as TestNode
  const acknowledged = await uids(ahead.store, user)
  assert.deepEqual([...acknowledged.keys()].sort(), ['0', '1', '2'])
  const strayUid = (await uids(restarted.store, user)).get('9') as number
  net.heal()
  await until('the restarted node leads', async () => await restarted.grid.lead(user).then(() => true, (err: unknown) => { if (isMailError(err) && err.kind === 'unavailable') return false; throw err }))
  const now = await uids(restarted.store, user)
  // the UIDs the others answered for the messages they took keep naming them (merging the other way gave every one
  // of them a new UID), except where the stray message had taken the same UID: both move up (merge.ts)
  for (const id of ['0', '1', '2']) {
    const was = acknowledged.get(id) as number
    if (was === strayUid) assert.ok((now.get(id) ?? 0) > Math.max(...acknowledged.values()), `message ${id}, UID ${was} on both sides, moves above`)
    else assert.equal(now.get(id), was, `message ${id} keeps UID ${was}`)
  }
  const mine = now.get('9')
  assert.ok(mine !== undefined && mine > Math.max(...acknowledged.values()), `the stray message is kept, above them (UID ${mine})`)
  // and the replicas agree
  await until('replicas agree', async () => {
    for (const n of [restarted, ...others]) n.grid.scheduleRebalance()
    const reps = restarted.grid.replicasOf(user).map(id => [restarted, ...others].find(n => n.id === id) as TestNode)
    const all = await Promise.all(reps.map(async r => JSON.stringify([...(await uids(r.store, user))].sort())))
    return all.every(x => x === all[0])
  })
})

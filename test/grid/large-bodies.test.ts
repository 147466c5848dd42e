// Large bodies between grid nodes, in one process on the in-memory network (which enforces the transport's
// limits, gossip/constants.ts): a new primary's catch-up pull and a merge's blob fetch must fit the RPC body limit
// whatever the user's messages weigh, a merge's summary the header limit whatever their trace headers weigh, and a replica whose answer fails for any reason but being unreachable must
// fail the write temporarily, never let the new primary serve the user an empty mailbox.
// Found while splitting grid.ts: 512 entries of 1 MiB bodies made one 80 MiB pull answer; the RPC failed, the
// failure was taken for "replica unreachable", and the new primary started the user empty.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import pino from 'pino'
import { createRing } from '../../gossip/ring.ts'
import type { RpcHandler } from '../../gossip/types.ts'
import { Grid, PROTOCOLS } from '../../node/grid/index.ts'
import { LOG_BATCH_BYTES_MAX } from '../../node/grid/wire.ts'
import { createStore, isMailError } from '../../store/index.ts'
import type { LogEntry, Store } from '../../store/index.ts'
import { MemoryNetwork } from '../helpers/memory-gossip.ts'
import type { MemoryGossip } from '../helpers/memory-gossip.ts'
import { tempDir } from '../helpers/tmp.ts'

interface TestNode { id: string, store: Store, gossip: MemoryGossip, grid: Grid }
interface Event { node: string, msg: string, user?: string, err?: unknown }

const MIB = 1024 * 1024
const USERS = Array.from({ length: 200 }, (_, i) => `u${i}@example.com`)

async function until (what: string, fn: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

/** Nodes on one in-memory network whose grid events are kept (MAILGRID_TEST_LOG=info prints them too). */
function harness (t: { after: (fn: () => Promise<void>) => void }): {
  net: MemoryNetwork
  events: Event[]
  start: (id: string, wrap?: (g: MemoryGossip) => void) => Promise<TestNode>
} {
  const net = new MemoryNetwork()
  const events: Event[] = []
  const nodes: TestNode[] = []
  const echo = process.env.MAILGRID_TEST_LOG !== undefined
  const sink = new Writable({
    write (chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) {
        if (line === '') continue
        if (echo) process.stderr.write(line + '\n')
        events.push(JSON.parse(line) as Event)
      }
      done()
    }
  })
  const logger = pino({ level: 'info' }, sink)
  let dir: Promise<string> | undefined
  t.after(async () => { for (const n of nodes) { await n.grid.stop().catch(() => {}); await n.store.stop().catch(() => {}) } })
  return {
    net,
    events,
    start: async (id, wrap) => {
      dir ??= tempDir(t)
      const store = createStore({}, { path: `${await dir}/${id}`, scryptLogN: 4 })
      await store.start()
      const gossip = net.create(id)
      wrap?.(gossip)
      const grid = new Grid({ gossip, store, logger: logger.child({ node: id }) }, { replicas: 2 })
      await gossip.start()
      await grid.start()
      const n = { id, store, gossip, grid }
      nodes.push(n)
      return n
    }
  }
}

async function addUsers (nodes: TestNode[], users: string[]): Promise<void> {
  await nodes[0].store.addDomain('example.com')
  for (const u of users) await nodes[0].store.addUser({ address: u, password: 'pw' })
  await until('the directory on every node', async () => (await Promise.all(nodes.map(async n => (await n.store.listUsers()).length))).every(c => c === users.length), 10_000)
}

/** A message of about `bytes` whose body differs from every other one (bodies are stored by hash). */
const big = (i: number, bytes = MIB): Buffer => Buffer.from(`Subject: m${i}\r\nX-Id: ${i}\r\n\r\n${'x'.repeat(bytes)}\r\n`)

async function inbox (store: Store, user: string): Promise<number> {
  const box = await store.getMailbox(user, 'INBOX')
  return box === null ? 0 : (await store.listMessages(user, box.id)).length
}

test('a new primary catches up a user whose first 512 log entries carry more than the RPC body limit', async (t) => {
  const { events, start } = harness(t)
  const a = await start('A')
  const b = await start('B')
  // a user that D leads once it joins
  const ring = createRing(['A', 'B', 'D'].map(id => ({ id, weight: 1 })))
  const user = USERS.find(u => ring.primary(u) === 'D') as string
  await addUsers([a, b], [user])
  // 80 messages of 1 MiB: one pull answer of up to 512 entries would carry 80 MiB, above the 64 MiB limit
  for (let i = 0; i < 80; i++) await a.grid.deliver(big(i), [{ user, prefix: '' }])
  const holder = a.grid.primaryOf(user) === 'A' ? a : b
  const target = await holder.store.logPosition(user)
  const d = await start('D')
  assert.equal(d.grid.primaryOf(user), 'D')
  // D's rebalance round leads the user: pull first, then replicate
  await until('D holds the whole log', async () => await d.store.logPosition(user) >= target, 20_000).catch(async err => {
    assert.fail(`${(err as Error).message}: D at ${await d.store.logPosition(user)} of ${target}, ${await inbox(d.store, user)} messages`)
  })
  assert.equal(await inbox(d.store, user), 80)
  assert.deepEqual(events.filter(e => e.node === 'D' && e.msg === 'user_started_empty' && e.user === user), [], 'D never served the user empty')
})

test('a merge takes in more than the RPC body limit of bodies only the other side has', async (t) => {
  const { net, events, start } = harness(t)
  const a = await start('A')
  const b = await start('B')
  // A leads the user once the two sides meet again, so A's merge must fetch B's bodies
  const ring = createRing(['A', 'B'].map(id => ({ id, weight: 1 })))
  const user = USERS.find(u => ring.primary(u) === 'A') as string
  await addUsers([a, b], [user])
  await a.grid.deliver(big(0, 10), [{ user, prefix: '' }])
  net.partition(['A'], ['B'])
  await a.grid.deliver(big(1, 10), [{ user, prefix: '' }])
  for (let i = 2; i < 82; i++) await b.grid.deliver(big(i), [{ user, prefix: '' }])
  net.heal()
  await until('A merged B\'s copy and B holds A\'s log again', async () => {
    a.grid.scheduleRebalance()
    return await inbox(a.store, user) === 82 && await b.store.logPosition(user) === await a.store.logPosition(user)
  }, 20_000).catch(async err => {
    const failed = events.filter(e => e.msg === 'merge_failed' || e.msg === 'log_diverged').slice(0, 3)
    assert.fail(`${(err as Error).message}: A has ${await inbox(a.store, user)} of 82 messages; ${JSON.stringify(failed)}`)
  })
  assert.equal(await inbox(b.store, user), 82)
})

test('a merge whose summary carries more than the RPC header limit of trace headers', async (t) => {
  const { net, events, start } = harness(t)
  const a = await start('A')
  const b = await start('B')
  const ring = createRing(['A', 'B'].map(id => ({ id, weight: 1 })))
  const user = USERS.find(u => ring.primary(u) === 'A') as string
  await addUsers([a, b], [user])
  await a.grid.deliver(big(0, 10), [{ user, prefix: '' }])
  net.partition(['A'], ['B'])
  await a.grid.deliver(big(1, 10), [{ user, prefix: '' }])
  // 450 messages on B's side, each with a 40 KB trace header: the summary of what B did is an 18 MB header
  const trace = `X-Trace: ${'t'.repeat(40 * 1024)}\r\n`
  for (let i = 2; i < 452; i++) await b.grid.deliver(big(i, 10), [{ user, prefix: trace }])
  net.heal()
  await until('A merged B\'s copy and B holds A\'s log again', async () => {
    a.grid.scheduleRebalance()
    return await inbox(a.store, user) === 452 && await b.store.logPosition(user) === await a.store.logPosition(user)
  }, 20_000).catch(async err => {
    const failed = events.filter(e => e.msg === 'merge_failed' || e.msg === 'catch_up_failed').slice(0, 2)
    assert.fail(`${(err as Error).message}: A has ${await inbox(a.store, user)} of 452 messages; ${JSON.stringify(failed)}`)
  })
})

test('pull and blob answers stay within the body budget, one oversized body alone, and always make progress', async (t) => {
  const { net, start } = harness(t)
  const a = await start('A')
  await addUsers([a], ['v@example.com'])
  const user = 'v@example.com'
  // bodies above the budget alone, and small ones between them
  const sizes = [10, 20 * MIB, 10, 20 * MIB, 10, 10]
  for (const [i, n] of sizes.entries()) await a.grid.deliver(big(i, n), [{ user, prefix: '' }])
  const end = await a.store.logPosition(user)
  // a bare peer that asks as a grid node would; 'joining', so it is in nobody's ring
  const peer = net.create('T')
  peer.update({ state: 'joining' })
  await peer.start()
  t.after(async () => { await peer.stop() })

  // the catch-up's way: from our last entry on (it anchors the answer), until the end of their log
  const got: LogEntry[] = []
  let mine = 0
  const answers: number[] = []
  while (mine < end) {
    const res = await peer.call('A', PROTOCOLS.pull, { header: { user, from: Math.max(1, mine), have: mine, limit: 512 } })
    const entries = res.header.entries as LogEntry[]
    const lens = res.header.lens as number[]
    const body = res.body?.byteLength ?? 0
    assert.ok(body <= LOG_BATCH_BYTES_MAX || lens.length === 1, `an answer of ${body} bytes holds ${lens.length} bodies`)
    const fresh = entries.filter(e => e.seq > mine)
    assert.ok(fresh.length > 0, `the answer from ${mine} goes beyond it`)
    // bodies of the entries it carries, except the one we hold already (the anchor)
    const hashes = new Set(fresh.flatMap(e => e.op === 'append' ? [e.blob] : []))
    assert.equal(lens.length, hashes.size)
    got.push(...fresh)
    mine = fresh.at(-1)?.seq as number
    answers.push(body)
  }
  assert.deepEqual(got.map(e => e.seq), Array.from({ length: end }, (_, i) => i + 1))
  assert.ok(answers.length >= 2, `${answers.length} answers`)

  // a blob answer: bodies in order until they reach the budget (their sizes are known only once read), at least
  // one; the caller asks again from where it ended
  const blobs = got.flatMap(e => e.op === 'append' ? [{ hash: e.blob, size: e.size }] : [])
  const ask = async (hashes: string[]): Promise<number> => ((await peer.call('A', PROTOCOLS.blobs, { header: { hashes } })).header.lens as number[]).length
  assert.equal(await ask(blobs.map(b => b.hash)), 2) // small, large: the budget is reached
  assert.equal(await ask(blobs.slice(1).map(b => b.hash)), 1) // large alone
  assert.equal(await ask(blobs.filter(b => b.size < MIB).map(b => b.hash)), 4)
})

test('a replica whose pull answer fails (not unreachable) fails the write temporarily; the next try takes its copy', async (t) => {
  const { events, start } = harness(t)
  // every node's pull answer fails while `failing` is set (as an answer above the transport's limit did)
  let failing = false
  const faulty = (g: MemoryGossip): void => {
    const handle = g.handle.bind(g)
    g.handle = (protocol: string, handler: RpcHandler) => {
      handle(protocol, protocol !== PROTOCOLS.pull
        ? handler
        : async (req, ctx) => {
          if (failing) throw new Error('injected: the answer could not be sent')
          return await handler(req, ctx)
        })
    }
  }
  const a = await start('A', faulty)
  const b = await start('B', faulty)
  const ring = createRing(['A', 'B', 'D'].map(id => ({ id, weight: 1 })))
  const user = USERS.find(u => ring.primary(u) === 'D') as string
  await addUsers([a, b], [user])
  for (let i = 0; i < 5; i++) await a.grid.deliver(big(i, 10), [{ user, prefix: '' }])
  const target = await (a.grid.primaryOf(user) === 'A' ? a : b).store.logPosition(user)
  failing = true
  const d = await start('D', faulty)
  await until('the user in D\'s directory', async () => (await d.store.listUsers()).length === 1, 10_000)
  await assert.rejects(d.grid.lead(user), (err: unknown) => isMailError(err, 'temp'))
  // (D holds the first entries every node derives from the directory record, and nothing else yet)
  assert.equal(await inbox(d.store, user), 0)
  failing = false
  await d.grid.lead(user)
  assert.ok(await d.store.logPosition(user) >= target)
  assert.equal(await inbox(d.store, user), 5)
  assert.deepEqual(events.filter(e => e.node === 'D' && e.msg === 'user_started_empty' && e.user === user), [])
})

// A delivery's body goes to its segment file while the delivery's batch is built and queued for the group commit
// (store/blobs.ts appendLater, store/commit.ts needs): the batch commits only once the body's write succeeded, and a
// batch whose body could not be written fails alone, leaving no record that points at bytes that are not there.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createStore } from '../../store/index.ts'
import type { Store } from '../../store/index.ts'
import { tempDir } from '../helpers/tmp.ts'

const A = 'anna@example.com'
const B = 'bert@example.com'
const C = 'cleo@example.com'

async function open (dir: string): Promise<Store> {
  const s = createStore({}, { path: dir, scryptLogN: 10 })
  await s.start()
  return s
}

const message = (tag: string): Buffer => Buffer.from(`From: x@example.org\r\nSubject: ${tag}\r\nMessage-ID: <${tag}@example.org>\r\n\r\nbody of ${tag}\r\n`)

interface Inside {
  blobs: { current: { fh: { writev: (bufs: Buffer[], pos: number) => Promise<{ bytesWritten: number }> } } | null }
  committer: { submit: (...a: unknown[]) => Promise<void>, queue: unknown[] }
  db: { batch: (...a: unknown[]) => Promise<void> }
}

async function setUp (t: { after: (fn: () => Promise<void>) => void }): Promise<{ store: Store, inside: Inside, dir: string }> {
  const dir = await tempDir(t)
  const store = await open(dir)
  let stopped = false
  t.after(async () => { if (!stopped) await store.stop() })
  const stop = store.stop.bind(store)
  store.stop = async () => { stopped = true; await stop() }
  await store.addDomain('example.com')
  await store.addUser({ address: A, password: 'secret' })
  await store.addUser({ address: B, password: 'secret' })
  await store.addUser({ address: C, password: 'secret' })
  // the first body opens the segment file whose writes the tests below hold or fail
  await store.deliver(message('first'), [{ user: A, prefix: '' }])
  return { store, inside: store as unknown as Inside, dir }
}

async function until (what: string, ok: () => boolean): Promise<void> {
  const end = Date.now() + 5000
  while (!ok()) {
    if (Date.now() > end) assert.fail(`timed out waiting until ${what}`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}

async function subjects (store: Store, user: string): Promise<string[]> {
  const box = await store.getMailbox(user, 'INBOX')
  assert.ok(box !== null)
  const out: string[] = []
  for (const r of await store.listMessages(user, box.id)) {
    const raw = await store.readMessage(r)
    out.push(/Subject: (\S+)/.exec(raw.toString('latin1'))?.[1] ?? '?')
  }
  return out
}

test('a delivery\'s batch is queued for the commit while its body is still being written, and commits only after', async (t) => {
  const { store, inside } = await setUp(t)
  const fh = inside.blobs.current?.fh
  assert.ok(fh !== undefined)
  const realWritev = fh.writev.bind(fh)
  let release: () => void = () => {}
  const held = new Promise<void>(resolve => { release = resolve })
  let writes = 0
  fh.writev = async (bufs, pos) => { writes++; await held; return await realWritev(bufs, pos) }
  const realSubmit = inside.committer.submit.bind(inside.committer)
  let submitted = 0
  inside.committer.submit = async (...a: unknown[]) => { submitted++; return await realSubmit(...a) }

  let done = false
  const delivery = store.deliver(message('held'), [{ user: B, prefix: '' }]).then(r => { done = true; return r })
  try {
    // the body's write is under way and held; the batch that indexes it is already with the committer
    await until('the body is being written', () => writes === 1)
    await until('the batch is submitted', () => submitted === 1)
    await new Promise(resolve => setTimeout(resolve, 50))
    assert.equal(done, false, 'acknowledged before its body was written')
    assert.deepEqual(await subjects(store, B), [], 'visible before its body was written')
  } finally {
    release() // also when an assertion failed: the store's stop waits for the write
  }
  const [r] = await delivery
  assert.equal(r.uid, 1)
  fh.writev = realWritev
  assert.deepEqual(await subjects(store, B), ['held'])
})

test('a batch whose body could not be written fails alone; the others of its commit group are durable', async (t) => {
  const { store, inside, dir } = await setUp(t)
  const fh = inside.blobs.current?.fh
  assert.ok(fh !== undefined)
  const realWritev = fh.writev.bind(fh)
  fh.writev = async (bufs, pos) => {
    if (bufs.some(b => b.includes('body of poison'))) throw new Error('injected body write failure')
    return await realWritev(bufs, pos)
  }
  // hold the LevelDB write of a first batch (bert's), so that the next two (anna's, cleo's) queue up and are taken as
  // one group
  const realBatch = inside.db.batch
  let release: () => void = () => {}
  const held = new Promise<void>(resolve => { release = resolve })
  let batches = 0
  inside.db.batch = async function (this: unknown, ...a: unknown[]) {
    if (batches++ === 0) await held
    return await realBatch.apply(inside.db, a)
  }
  const first = store.deliver(message('before'), [{ user: B, prefix: '' }])
  await until('the first group is being written', () => batches === 1)
  const poisoned = store.deliver(message('poison'), [{ user: A, prefix: '' }])
  poisoned.catch(() => {})
  // the good body is written in a turn of its own (a turn's bodies go in one write)
  await new Promise(resolve => setImmediate(resolve))
  await new Promise(resolve => setTimeout(resolve, 10))
  const good = store.deliver(message('good'), [{ user: C, prefix: '' }])
  try {
    await until('both batches wait for the next group', () => inside.committer.queue.length === 2)
  } finally {
    release()
  }
  await first
  await assert.rejects(poisoned, /injected body write failure/)
  const [g] = await good
  assert.equal(g.uid, 1)
  assert.equal(batches, 2, 'the good batch was committed in one group after the held one')
  inside.db.batch = realBatch
  fh.writev = realWritev

  // nothing of the failed one: anna's INBOX holds her first message only, and her next one takes UID 2
  assert.deepEqual(await subjects(store, A), ['first'])
  assert.deepEqual(await subjects(store, B), ['before'])
  assert.deepEqual(await subjects(store, C), ['good'])
  const next = await store.deliver(message('after'), [{ user: A, prefix: '' }])
  assert.equal(next[0].uid, 2)
  await store.stop()
  const again = await open(dir)
  t.after(async () => { await again.stop() })
  assert.deepEqual(await subjects(again, A), ['first', 'after'])
  assert.deepEqual(await subjects(again, B), ['before'])
  assert.deepEqual(await subjects(again, C), ['good'])
})

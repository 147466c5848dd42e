// Deliveries of one user that wait for its lock together are built into one batch (store/mail.ts writeCombined):
// every one still answers with its own UID only once durable, a delivery that cannot be taken (no such mailbox,
// quota full, aborted) fails alone, and a failed commit fails every delivery of the batch and leaves the store as it
// was on disk.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createStore, isMailError, COMBINE_MAX } from '../../store/index.ts'
import type { MailEvent, Store } from '../../store/index.ts'
import { tempDir } from '../helpers/tmp.ts'

const USER = 'bob@example.com'

async function open (dir: string): Promise<Store> {
  const s = createStore({}, { path: dir, scryptLogN: 10 })
  await s.start()
  return s
}

async function withUser (t: { after: (fn: () => Promise<void>) => void }, quota: { quotaMessages?: number } = {}): Promise<{ store: Store, dir: string }> {
  const dir = await tempDir(t)
  const store = await open(dir)
  let stopped = false
  t.after(async () => { if (!stopped) await store.stop() })
  await store.addDomain('example.com')
  await store.addUser({ address: USER, password: 'secret', ...quota })
  const stop = store.stop.bind(store)
  store.stop = async () => { stopped = true; await stop() }
  return { store, dir }
}

const message = (i: number): Buffer => Buffer.from(`From: a@example.org\r\nTo: ${USER}\r\nSubject: message ${i}\r\nMessage-ID: <m${i}@example.org>\r\n\r\nbody ${i}\r\n`)
const prefix = (i: number): string => `Received: by mx.test id ${i}\r\n`

async function inbox (store: Store): Promise<{ id: string, messages: number, uidNext: number }> {
  const box = await store.getMailbox(USER, 'INBOX')
  assert.ok(box !== null)
  return box as unknown as { id: string, messages: number, uidNext: number }
}

test('concurrent deliveries to one user: one batch, each its own UID, all durable and readable after a restart', async (t) => {
  const { store, dir } = await withUser(t)
  const events: MailEvent[] = []
  store.subscribe(USER, e => { events.push(e) })
  const before = store.stats()
  const n = 40
  const results = await Promise.all(Array.from({ length: n }, async (_, i) => await store.deliver(message(i), [{ user: USER, prefix: prefix(i) }])))
  const after = store.stats()
  // all forty arrived in one turn: the first takes the lock, the rest wait and are built together
  assert.ok(after.commitBatches - before.commitBatches < n, `batches ${after.commitBatches - before.commitBatches} for ${n} deliveries`)
  assert.ok(after.combinedWrites - before.combinedWrites >= n - 1, `combined ${after.combinedWrites - before.combinedWrites}`)
  // each its own UID (in the order the deliveries reached the lock), each announced once it was durable
  const uids = results.map(r => r[0].uid)
  assert.deepEqual([...uids].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i + 1))
  assert.equal(new Set(results.map(r => r[0].gid)).size, n)
  const announced = events.flatMap(e => e.type === 'append' ? e.uids : [])
  assert.deepEqual([...announced].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i + 1))
  const box = await inbox(store)
  assert.equal(box.messages, n)
  assert.equal(box.uidNext, n + 1)
  await store.stop()

  const again = await open(dir)
  t.after(async () => { await again.stop() })
  const box2 = await again.getMailbox(USER, 'INBOX')
  assert.equal(box2?.messages, n)
  const recs = await again.listMessages(USER, box2!.id)
  assert.deepEqual(recs.map(r => r.uid), Array.from({ length: n }, (_, i) => i + 1))
  const uidOf = new Map(results.map((r, i) => [r[0].uid, i]))
  for (const r of recs) {
    const i = uidOf.get(r.uid) as number
    assert.equal(r.prefix, prefix(i))
    assert.equal(r.size, message(i).length + Buffer.byteLength(prefix(i)))
    const raw = await again.readMessage(r)
    assert.equal(raw.toString(), prefix(i) + message(i).toString())
  }
  const q = await again.quota(USER)
  assert.equal(q.usedMessages, n)
})

test('a delivery the batch cannot take fails alone: full quota, no such mailbox, aborted while waiting', async (t) => {
  const { store } = await withUser(t, { quotaMessages: 5 })
  const aborted = new AbortController()
  const calls = Array.from({ length: 10 }, async (_, i) => await store.deliver(message(i), [{ user: USER, prefix: prefix(i), ...(i === 1 ? { mailbox: 'Nowhere' } : {}) }], i === 2 ? { signal: aborted.signal } : undefined))
  aborted.abort(new Error('client went away'))
  const settled = await Promise.allSettled(calls)
  const kinds = settled.map(s => s.status === 'fulfilled' ? 'ok' : isMailError(s.reason) ? s.reason.kind : (s.reason as Error).message)
  assert.equal(kinds[1], 'nonExistent')
  assert.equal(kinds[2], 'client went away')
  // quota: five of the other eight are taken (in the order they reached the lock), three find it full
  const rest = kinds.filter((_, i) => i !== 1 && i !== 2)
  assert.deepEqual([rest.filter(k => k === 'ok').length, rest.filter(k => k === 'noQuota').length], [5, 3], JSON.stringify(kinds))
  const uids = settled.flatMap(s => s.status === 'fulfilled' ? [s.value[0].uid] : [])
  assert.deepEqual([...uids].sort((a, b) => a - b), [1, 2, 3, 4, 5])
  const box = await inbox(store)
  assert.equal(box.messages, 5)
  assert.equal((await store.quota(USER)).usedMessages, 5)
  // the store goes on: one more is refused for quota
  await assert.rejects(store.deliver(message(99), [{ user: USER, prefix: '' }]), (e: unknown) => isMailError(e) && e.kind === 'noQuota')
})

test('a failed commit fails every delivery of the batch; the store is left as on disk and goes on', async (t) => {
  const { store, dir } = await withUser(t)
  await store.deliver(message(0), [{ user: USER, prefix: '' }])
  const db = (store as unknown as { db: { batch: (...a: unknown[]) => Promise<void> } }).db
  const real = db.batch
  let failures = 0
  db.batch = async function (this: unknown, ...a: unknown[]) {
    if (failures++ === 0) throw new Error('injected write failure')
    return await real.apply(db, a)
  }
  const settled = await Promise.allSettled(Array.from({ length: 8 }, async (_, i) => await store.deliver(message(i + 1), [{ user: USER, prefix: '' }])))
  assert.ok(settled.every(s => s.status === 'rejected' && /injected write failure/.test(String(s.reason))), JSON.stringify(settled.map(s => s.status)))
  db.batch = real
  // nothing of the failed batch counts: the next delivery takes UID 2, and a restart shows two messages
  const next = await store.deliver(message(50), [{ user: USER, prefix: '' }])
  assert.equal(next[0].uid, 2)
  assert.equal((await inbox(store)).messages, 2)
  await store.stop()
  const again = await open(dir)
  t.after(async () => { await again.stop() })
  const box = await again.getMailbox(USER, 'INBOX')
  assert.equal(box?.messages, 2)
  assert.deepEqual((await again.listMessages(USER, box!.id)).map(r => r.uid), [1, 2])
})

test('a burst beyond COMBINE_MAX is split into batches of at most that many', async (t) => {
  const { store } = await withUser(t)
  const n = COMBINE_MAX * 2 + 5
  const before = store.stats()
  const results = await Promise.all(Array.from({ length: n }, async (_, i) => await store.deliver(message(i), [{ user: USER, prefix: '' }])))
  const after = store.stats()
  assert.deepEqual(results.map(r => r[0].uid).sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i + 1))
  const batches = after.commitBatches - before.commitBatches
  assert.ok(batches >= Math.ceil(n / COMBINE_MAX) && batches < n, `batches ${batches} for ${n}`)
  assert.equal((await inbox(store)).messages, n)
})

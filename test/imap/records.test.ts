// readRecords: the records of a UID list from a real store, against the obvious answer (every record of the mailbox
// whose UID is in the list), for lists dense and sparse, with UIDs the mailbox no longer has (expunged) and UIDs
// repeated. Random lists, fast-check.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { createStore } from '../../store/index.ts'
import { readRecords, recordBatches } from '../../node/imap/records.ts'
import { tempDir } from '../helpers/tmp.ts'

const U = 'bob@example.com'

test('readRecords gives the records of the listed UIDs that exist, once each, in UID order', async (t) => {
  const dir = await tempDir(t)
  const store = createStore({}, { path: dir, scryptLogN: 4, sync: false })
  await store.start()
  t.after(async () => { await store.stop() })
  await store.addDomain('example.com')
  await store.addUser({ address: U, password: 'x' })
  await store.ensureUserMail(U)
  for (let i = 1; i <= 300; i++) await store.deliver(Buffer.from(`Subject: m${i}\r\n\r\nbody\r\n`), [{ user: U, prefix: '' }])
  const inbox = (await store.getMailbox(U, 'INBOX'))!
  // holes: every seventh message and a run
  await store.expunge(U, inbox.id, [...Array.from({ length: 42 }, (_, i) => 7 * (i + 1)), ...Array.from({ length: 20 }, (_, i) => 100 + i)])
  const all = await store.listMessages(U, inbox.id)
  const present = new Set(all.map((r) => r.uid))
  await fc.assert(fc.asyncProperty(
    fc.oneof(
      fc.array(fc.integer({ min: 1, max: 320 }), { maxLength: 400 }),
      fc.tuple(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 0, max: 120 })).map(([a, n]) => Array.from({ length: n }, (_, i) => a + i))
    ),
    async (list) => {
      const uids = [...list].sort((a, b) => a - b) // ascending, repeats kept
      const got = (await readRecords(store, U, inbox.id, uids)).map((r) => r.uid)
      const want = [...new Set(uids)].filter((u) => present.has(u))
      assert.deepEqual(got, want)
    }), { numRuns: 300 })
  // in batches: the whole mailbox, in order
  const batched: number[] = []
  for await (const batch of recordBatches(store, U, inbox.id, [...Array(330).keys()].map((i) => i + 1))) batched.push(...batch.map((r) => r.uid))
  assert.deepEqual(batched, all.map((r) => r.uid))
})

// A merge carries the other side's MOVEs. MOVE keeps a message's global id (a new record in the target, an expunge
// in the source), so a log summary of it showed neither an added message nor an expunged one, and the merge left
// the message in its old mailbox: the client's acknowledged MOVE was undone and the UID its COPYUID named held
// nothing. Two copies of one log on two stores, diverged after a common prefix, as a grid leaves them.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { mergeFrom } from '../../node/grid/merge.ts'
import type { MergePeer } from '../../node/grid/merge.ts'
import { createStore, summarizeLog } from '../../store/index.ts'
import type { LogEntry, Store } from '../../store/index.ts'
import { tempDir } from '../helpers/tmp.ts'

const USER = 'mv@example.com'
const raw = (i: number): Buffer => Buffer.from(`Subject: m${i}\r\nX-Id: ${i}\r\n\r\nbody ${i}\r\n`)

async function readAll (store: Store): Promise<LogEntry[]> {
  return await store.readLog(USER, 1, 100_000)
}

/** X-Id → mailbox name, over the user's mailboxes. */
async function placement (store: Store): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for (const box of await store.listMailboxes(USER)) {
    for (const r of await store.listMessages(USER, box.id)) out.set(/X-Id: (\d+)/.exec((await store.readMessage(r)).toString())?.[1] ?? '?', box.name)
  }
  return out
}

/** The other copy, as divergence.ts serves it to a merge. */
function peerOf (store: Store): MergePeer {
  return {
    eids: async (from, to) => {
      const entries = await store.readLog(USER, from, to - from + 1)
      return Array.from({ length: to - from + 1 }, (_, i) => entries[i]?.eid ?? null)
    },
    summary: async (from) => summarizeLog(await readAll(store), from),
    blobs: async (hashes) => await Promise.all(hashes.map(async h => await store.readBlob(h)))
  }
}

test('a merge moves what the other side moved (MOVE keeps the global id)', async (t) => {
  const dir = await tempDir(t)
  const stores: Store[] = []
  for (const id of ['A', 'B']) {
    const store = createStore({}, { path: `${dir}/${id}`, scryptLogN: 4 })
    await store.start()
    t.after(async () => { await store.stop() })
    await store.addDomain('example.com')
    await store.addUser({ address: USER, password: 'pw' })
    stores.push(store)
  }
  const [a, b] = stores as [Store, Store]
  await a.createMailbox(USER, 'Kept')
  for (let i = 1; i <= 3; i++) await a.append(USER, 'INBOX', { raw: raw(i) })
  // B is A's replica: the same log, entry for entry
  const entries = await readAll(a)
  assert.equal(await b.dropUserMail(USER), true) // its own mailboxes of addUser: a replica holds only the primary's log
  assert.equal(await b.logPosition(USER), 0, 'the replica starts empty')
  const blobs = await Promise.all([...new Set(entries.flatMap(e => e.op === 'append' ? [e.blob] : []))].map(async h => await a.readBlob(h)))
  await b.applyLog(USER, entries, blobs)
  const common = await a.logPosition(USER)

  // diverged: B moved message 2 to Archive (a client was told OK); A took a new message
  const inbox = await b.getMailbox(USER, 'INBOX')
  assert.ok(inbox !== null)
  const two = (await b.listMessages(USER, inbox.id))[1]!
  await b.move(USER, inbox.id, [two.uid], 'Kept')
  await a.append(USER, 'INBOX', { raw: raw(4) })
  assert.equal((await placement(b)).get('2'), 'Kept')

  const done = await mergeFrom(a, USER, peerOf(b), await b.logPosition(USER), pino({ level: 'silent' }))
  assert.equal(done.common, common)
  const after = await placement(a)
  assert.deepEqual([...after].sort(), [['1', 'INBOX'], ['2', 'Kept'], ['3', 'INBOX'], ['4', 'INBOX']])
  assert.equal(done.relocated, 1)
})

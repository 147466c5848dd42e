// The change log describes a user's mail completely: a second store that applies the first one's log (in
// random batch sizes, with retries of already-applied parts) ends in exactly the same state. This is what
// replication and re-mirroring rely on. Random operation sequences, fast-check.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { createStore, LogDivergedError } from '../../store/index.ts'
import type { Store } from '../../store/index.ts'
import { tempDir } from '../helpers/tmp.ts'

const U = 'bob@example.com'

type Op =
  | { op: 'append', box: number, flags: string[], body: number }
  | { op: 'flags', box: number, uids: number[], mode: 'set' | 'add' | 'remove', flags: string[] }
  | { op: 'expunge', box: number, uids: number[] }
  | { op: 'copy' | 'move', box: number, uids: number[], to: number }
  | { op: 'create', name: number }
  | { op: 'rename', box: number, name: number }
  | { op: 'delete', box: number }
  | { op: 'subscribe', box: number, on: boolean }

const flag = fc.constantFrom('\\Seen', '\\Flagged', '\\Answered', '$Label1', 'Junk')
const uids = fc.array(fc.integer({ min: 1, max: 12 }), { maxLength: 4 })
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('append' as const), box: fc.nat(5), flags: fc.array(flag, { maxLength: 2 }), body: fc.nat(3) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('flags' as const), box: fc.nat(5), uids, mode: fc.constantFrom('set' as const, 'add' as const, 'remove' as const), flags: fc.array(flag, { maxLength: 2 }) }) },
  fc.record({ op: fc.constant('expunge' as const), box: fc.nat(5), uids }),
  fc.record({ op: fc.constantFrom('copy' as const, 'move' as const), box: fc.nat(5), uids, to: fc.nat(5) }),
  fc.record({ op: fc.constant('create' as const), name: fc.nat(4) }),
  fc.record({ op: fc.constant('rename' as const), box: fc.nat(5), name: fc.nat(4) }),
  fc.record({ op: fc.constant('delete' as const), box: fc.nat(5) }),
  fc.record({ op: fc.constant('subscribe' as const), box: fc.nat(5), on: fc.boolean() })
)

async function run (store: Store, ops: Op[]): Promise<void> {
  for (const o of ops) {
    const boxes = await store.listMailboxes(U)
    const box = boxes[('box' in o ? o.box : 0) % boxes.length]
    try {
      switch (o.op) {
        case 'append': await store.append(U, box.name, { raw: Buffer.from(`Subject: ${o.body}\r\n\r\nbody ${o.body}\r\n`), flags: o.flags }); break
        case 'flags': await store.storeFlags(U, box.id, o.uids, o.mode, o.flags); break
        case 'expunge': await store.expunge(U, box.id, o.uids); break
        case 'copy': await store.copy(U, box.id, o.uids, boxes[o.to % boxes.length].name); break
        case 'move': await store.move(U, box.id, o.uids, boxes[o.to % boxes.length].name); break
        case 'create': await store.createMailbox(U, `Folder${o.name}/Sub`); break
        case 'rename': await store.renameMailbox(U, box.name, `Renamed${o.name}`); break
        case 'delete': await store.deleteMailbox(U, box.name); break
        case 'subscribe': await store.setSubscribed(U, box.name, o.on); break
      }
    } catch (err) {
      if (!(err instanceof Error && err.name === 'MailError')) throw err // refusals (exists, hasChildren, ...) are fine
    }
  }
}

async function snapshot (store: Store): Promise<unknown> {
  const boxes = await store.listMailboxes(U)
  return {
    boxes,
    // `loc` says where this node keeps the body: node-local, not part of the replicated state
    messages: await Promise.all(boxes.map(async b => (await store.listMessages(U, b.id)).map(({ loc, ...r }) => r))),
    subs: (await store.listSubscriptions(U)).sort(),
    quota: await store.quota(U),
    changes: await Promise.all(boxes.map(async b => await store.changesSince(U, b.id, 0)))
  }
}

test('a store that applies another store\'s log reaches the same state', async (t) => {
  const dir = await tempDir(t)
  let n = 0
  await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 25 }), fc.integer({ min: 1, max: 7 }), async (ops, chunk) => {
    n++
    const a = createStore({}, { path: `${dir}/a${n}`, scryptLogN: 4 })
    const b = createStore({}, { path: `${dir}/b${n}`, scryptLogN: 4 })
    await a.start()
    await b.start()
    try {
      await a.addDomain('example.com')
      await a.addUser({ address: U, password: 'x' })
      await run(a, ops)
      const log = await a.readLog(U, 0, 100_000)
      const blobs = new Map<string, Buffer>()
      for (const e of log) if (e.op === 'append' && !blobs.has(e.blob)) blobs.set(e.blob, await a.readBlob(e.blob))
      // ship in chunks, re-sending the previous chunk each time (a retry after a lost answer)
      for (let i = 0; i < log.length; i += chunk) {
        const part = log.slice(Math.max(0, i - chunk), i + chunk)
        const need = await b.missingBlobs(part.flatMap(e => e.op === 'append' ? [e.blob] : []))
        await b.applyLog(U, part, need.map(h => blobs.get(h) as Buffer))
      }
      assert.equal(await b.logPosition(U), log.length)
      assert.deepEqual(await snapshot(b), await snapshot(a))
    } finally {
      await a.stop()
      await b.stop()
    }
  }), { numRuns: 40 })
})

/** Two started stores in a test's temporary dir; the first holds the domain and user U. */
async function twoStores (t: { after: (fn: () => Promise<void>) => void }): Promise<[Store, Store]> {
  const dir = await tempDir(t)
  const a = createStore({}, { path: `${dir}/a`, scryptLogN: 4 })
  const b = createStore({}, { path: `${dir}/b`, scryptLogN: 4 })
  await a.start()
  await b.start()
  t.after(async () => { await a.stop(); await b.stop() })
  await a.addDomain('example.com')
  await a.addUser({ address: U, password: 'x' })
  return [a, b]
}

test('applyLog refuses a gap and an entry whose body is missing', async (t) => {
  const [a, b] = await twoStores(t)
  await a.append(U, 'INBOX', { raw: Buffer.from('Subject: x\r\n\r\ny\r\n') })
  const log = await a.readLog(U, 0, 1000)
  await assert.rejects(b.applyLog(U, log.slice(2)), /log gap/)
  await assert.rejects(b.applyLog(U, log), /needs body/)
  assert.equal(await b.logPosition(U), 0, 'a refused batch leaves nothing behind')
  const append = log.find(e => e.op === 'append')
  assert.ok(append?.op === 'append')
  await b.applyLog(U, log, [await a.readBlob(append.blob)])
  assert.equal(await b.logPosition(U), log.length)
})

test('applyLog splices no foreign copy: the anchor and every entry it already holds must be its own', async (t) => {
  const [a, b] = await twoStores(t)
  await b.mergeDirectory(await a.exportDirectory())
  // two copies that share the first entries every node derives, then each decides its own
  await a.append(U, 'INBOX', { raw: Buffer.from('Subject: a\r\n\r\na\r\n') })
  await b.ensureUserMail(U)
  await b.append(U, 'INBOX', { raw: Buffer.from('Subject: b\r\n\r\nb\r\n') })
  const logA = await a.readLog(U, 0, 1000)
  const logB = await b.readLog(U, 0, 1000)
  const n = logB.length
  assert.equal(logA.length, n)
  assert.notEqual(logA[n - 1].eid, logB[n - 1].eid)
  await a.append(U, 'INBOX', { raw: Buffer.from('Subject: a2\r\n\r\na2\r\n') })
  const next = (await a.readLog(U, n + 1, 10))
  const blobs = await Promise.all(next.flatMap(e => e.op === 'append' ? [e.blob] : []).map(async h => await a.readBlob(h)))
  // a's entry after its position n, anchored at a's entry n: b holds another entry there
  await assert.rejects(b.applyLog(U, next, blobs, { seq: n, eid: logA[n - 1].eid ?? null }), (err: unknown) => err instanceof LogDivergedError && err.position === n)
  // the same, with the overlap carried in the batch instead of an anchor
  await assert.rejects(b.applyLog(U, [logA[n - 1], ...next], blobs), LogDivergedError)
  assert.equal(await b.logPosition(U), n, 'nothing applied')
  assert.deepEqual((await b.readLog(U, n, 1))[0].eid, logB[n - 1].eid)
  // a conditional drop happens only where the copy still ends
  assert.equal(await b.dropUserMail(U, { seq: n, eid: logA[n - 1].eid ?? null }), false)
  assert.equal(await b.dropUserMail(U, { seq: n - 1, eid: logB[n - 1].eid ?? null }), false)
  assert.equal(await b.logPosition(U), n)
  assert.equal(await b.dropUserMail(U, { seq: n, eid: logB[n - 1].eid ?? null }), true)
  assert.equal(await b.logPosition(U), 0)
  // rebuilt from a, the same shipment applies
  await b.applyLog(U, logA, await Promise.all(logA.flatMap(e => e.op === 'append' ? [e.blob] : []).map(async h => await a.readBlob(h))))
  assert.equal(await b.applyLog(U, next, blobs, { seq: n, eid: logA[n - 1].eid ?? null }), n + next.length)
})

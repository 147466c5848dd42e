// The read paths the benchmark showed hot: message records carry where this node keeps the body (derived when
// the entry is applied, so a replica's records point into its own files), the header block is kept beside the
// structure, concurrent structure reads are coalesced, and the directory is served from memory but never stale
// after a write or a merge.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { createStore } from '../../store/index.ts'
import { INDEX_MESSAGES_MIN } from '../../store/mail.ts'
import type { Store } from '../../store/index.ts'
import { tempDir } from '../helpers/tmp.ts'

const U = 'bob@example.com'

async function open (t: { after: (fn: () => Promise<void>) => void }, name: string): Promise<Store> {
  const dir = await tempDir(t)
  const s = createStore({}, { path: `${dir}/${name}`, scryptLogN: 4, sync: false })
  await s.start()
  t.after(async () => { await s.stop() })
  return s
}

test('records carry the body location, on the primary and on a replica that stored bodies in another order', async (t) => {
  const a = await open(t, 'a')
  const b = await open(t, 'b')
  for (const s of [a, b]) await s.addDomain('example.com')
  await a.addUser({ address: U, password: 'x' })
  const raws = [0, 1, 2].map(i => Buffer.from(`Subject: m${i}\r\nFrom: <a@example.com>\r\n\r\nbody ${i} ${'y'.repeat(i * 100)}\r\n`))
  for (const raw of raws) await a.deliver(raw, [{ user: U, prefix: 'Received: by test\r\n' }])
  const inbox = (await a.getMailbox(U, 'INBOX'))!
  await a.copy(U, inbox.id, [1, 2, 3], 'Archive')
  const log = await a.readLog(U, 0, 1000)
  // the replica gets the bodies in reverse order, so its offsets differ from the primary's
  const blobs = [...new Set(log.flatMap(e => e.op === 'append' ? [e.blob] : []))].reverse()
  await b.applyLog(U, log, await Promise.all(blobs.map(async h => await a.readBlob(h))))
  for (const s of [a, b]) {
    for (const box of await s.listMailboxes(U)) {
      for (const rec of await s.listMessages(U, box.id)) {
        assert.ok(rec.loc !== undefined, `${box.name} ${rec.uid} has a location`)
        const whole = await s.readMessage(rec)
        assert.equal(whole.length, rec.size)
        assert.equal(whole.toString(), 'Received: by test\r\n' + raws[(rec.uid - 1) % 3].toString())
        // a record from before locations existed reads the same through the index
        const { loc: _loc, ...old } = rec
        assert.deepEqual(await s.readMessage(old), whole)
      }
    }
  }
  const recA = (await a.listMessages(U, inbox.id))[0]
  const recB = (await b.listMessages(U, inbox.id))[0]
  assert.notDeepEqual(recA.loc, recB.loc, 'each node points into its own files')
  assert.ok(log.every(e => !('loc' in e)), 'locations never enter the log')
})

test('a copy of the header block is kept, prefix included, and concurrent reads agree', async (t) => {
  const s = await open(t, 's')
  await s.addDomain('example.com')
  await s.addUser({ address: U, password: 'x' })
  const raw = Buffer.from('Subject: =?utf-8?q?caf=C3=A9?=\r\nX-Bytes: \xe9t\xe9\r\n\r\nbody\r\n', 'latin1')
  await s.deliver(raw, [{ user: U, prefix: 'Received: by test\r\n' }])
  await s.deliver(Buffer.from('Subject: second\r\n\r\nb\r\n'), [{ user: U, prefix: '' }])
  const inbox = (await s.getMailbox(U, 'INBOX'))!
  const recs = await s.listMessages(U, inbox.id)
  const metas = await Promise.all([...recs, ...recs].map(async r => await s.getMeta(r)))
  const headers = await Promise.all([...recs, ...recs].map(async r => await s.readHeader!(r)))
  for (const [i, meta] of metas.entries()) {
    const rec = recs[i % 2]
    const whole = await s.readMessage(rec)
    assert.deepEqual(headers[i], whole.subarray(0, meta.root.headerEnd))
  }
  assert.notEqual(metas[0], metas[2], 'each caller gets its own copy')
  // a header above the kept size is not copied: callers read it from the message
  const huge = Buffer.from(`Subject: big\r\nX-Long: ${'h'.repeat(40 * 1024)}\r\n\r\nbody\r\n`)
  await s.deliver(huge, [{ user: U, prefix: '' }])
  const last = (await s.listMessages(U, inbox.id)).at(-1)!
  assert.equal(await s.readHeader!(last), null)
})

test('the directory is read from memory and follows writes, deletes and merges', async (t) => {
  const a = await open(t, 'a')
  const b = await open(t, 'b')
  await a.addDomain('example.com')
  await a.addUser({ address: U, password: 'x' })
  await a.addAlias('sales@example.com', [U])
  await b.mergeDirectory(await a.exportDirectory())
  for (const s of [a, b]) {
    assert.equal(await s.isLocalDomain('example.com'), true)
    assert.deepEqual(await s.resolveRecipient('Sales@Example.com'), [U])
  }
  await a.setQuota(U, { messages: 1 })
  await b.mergeDirectory(await a.exportDirectory())
  for (const s of [a, b]) {
    assert.equal((await s.getUser(U))?.quotaMessages, 1)
    await s.deliver(Buffer.from('Subject: 1\r\n\r\nx\r\n'), [{ user: U, prefix: '' }])
    await assert.rejects(s.deliver(Buffer.from('Subject: 2\r\n\r\nx\r\n'), [{ user: U, prefix: '' }]), /Quota/)
  }
  // a failed write leaves the cached record as it was
  await assert.rejects(a.addUser({ address: 'sales@example.com', password: 'x' }), /alias/)
  assert.equal(await a.getUser('sales@example.com'), null)
  await a.deleteAlias('sales@example.com')
  await a.deleteUser(U)
  await b.mergeDirectory(await a.exportDirectory())
  for (const s of [a, b]) {
    assert.deepEqual(await s.resolveRecipient('sales@example.com'), [])
    assert.equal(await s.getUser(U), null)
    assert.equal(await s.verifyPassword(U, 'x'), null)
  }
  // and survives a restart (loaded from LevelDB at start)
  await a.stop()
  await a.start()
  assert.equal(await a.getUser(U), null)
  assert.equal(await a.isLocalDomain('example.com'), true)
})

test('the in-memory UID and flag index agrees with the records after any sequence of changes, on a replica too', async (t) => {
  const dir = await tempDir(t)
  type Op = { op: 'append' | 'flags' | 'expunge' | 'copy' | 'move' | 'create' | 'delete' | 'rename', box: number, uids: number[], flags: string[] }
  const op = fc.record({
    op: fc.constantFrom('append', 'append', 'append', 'flags', 'expunge', 'copy', 'move', 'create', 'delete', 'rename') as fc.Arbitrary<Op['op']>,
    box: fc.nat(4),
    uids: fc.array(fc.integer({ min: 1, max: 10 }), { maxLength: 4 }),
    flags: fc.array(fc.constantFrom('\\Seen', '\\Flagged', '$Work'), { maxLength: 2 })
  })
  let n = 0
  await fc.assert(fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 30 }), fc.boolean(), async (ops, warm) => {
    n++
    const a = createStore({}, { path: `${dir}/a${n}`, scryptLogN: 4, sync: false })
    const b = createStore({}, { path: `${dir}/b${n}`, scryptLogN: 4, sync: false })
    await a.start()
    await b.start()
    try {
      await a.addDomain('example.com')
      await a.addUser({ address: U, password: 'x' })
      const check = async (s: Store): Promise<void> => {
        for (const box of await s.listMailboxes(U)) {
          const recs = await s.listMessages(U, box.id)
          assert.deepEqual(await s.listFlags!(U, box.id), { uids: recs.map(r => r.uid), flags: recs.map(r => r.flags) })
        }
      }
      if (warm) await check(a) // index built before the changes, then kept up to date by them
      for (const o of ops) {
        const boxes = await a.listMailboxes(U)
        const box = boxes[o.box % boxes.length]
        const to = boxes[(o.box + 1) % boxes.length]
        try {
          switch (o.op) {
            case 'append': await a.append(U, box.name, { raw: Buffer.from(`Subject: ${o.uids.length}\r\n\r\nx\r\n`), flags: o.flags }); break
            case 'flags': await a.storeFlags(U, box.id, o.uids, o.uids.length % 2 === 0 ? 'add' : 'set', o.flags); break
            case 'expunge': await a.expunge(U, box.id, o.uids); break
            case 'copy': await a.copy(U, box.id, o.uids, to.name); break
            case 'move': await a.move(U, box.id, o.uids, to.name); break
            case 'create': await a.createMailbox(U, `F${o.box}`); break
            case 'delete': await a.deleteMailbox(U, box.name); break
            case 'rename': await a.renameMailbox(U, box.name, `R${o.box}`); break
          }
        } catch (err) {
          if (!(err instanceof Error && err.name === 'MailError')) throw err
        }
        if (warm) await check(a)
      }
      await check(a)
      const log = await a.readLog(U, 0, 100_000)
      const hashes = [...new Set(log.flatMap(e => e.op === 'append' ? [e.blob] : []))]
      await b.applyLog(U, log, await Promise.all(hashes.map(async h => await a.readBlob(h))))
      await check(b)
      // a store opened afresh builds the index from the records
      await a.stop()
      const again = createStore({}, { path: `${dir}/a${n}`, scryptLogN: 4, sync: false })
      await again.start()
      try { await check(again) } finally { await again.stop() }
    } finally {
      await a.stop()
      await b.stop()
    }
  }), { numRuns: 30 })
})

test('reads asked for together are merged, and a bad one fails alone', async (t) => {
  const s = await open(t, 's')
  await s.addDomain('example.com')
  await s.addUser({ address: U, password: 'x' })
  const raws = Array.from({ length: 40 }, (_, i) => Buffer.from(`Subject: ${i}\r\n\r\n${String(i).repeat(50 + i * 300)}\r\n`))
  for (const raw of raws) await s.deliver(raw, [{ user: U, prefix: i(raw) }])
  function i (raw: Buffer): string { return `X-N: ${raw.length}\r\n` }
  const inbox = (await s.getMailbox(U, 'INBOX'))!
  const recs = await s.listMessages(U, inbox.id)
  // the last body, said to be longer than what the segment holds: merged with its neighbours, it fails the
  // merged read, and then alone
  const last = recs[recs.length - 1]
  const bad = { ...last, loc: { ...last.loc!, len: last.loc!.len + 1000 } }
  const got = await Promise.allSettled([...recs.slice(0, 7), bad, ...recs.slice(7)].map(async r => await s.readMessage(r)))
  assert.equal(got[7].status, 'rejected')
  assert.match(String((got[7] as PromiseRejectedResult).reason), /truncated/)
  const ok = got.filter((g, k) => k !== 7)
  ok.forEach((g, k) => {
    assert.equal(g.status, 'fulfilled')
    assert.equal((g as PromiseFulfilledResult<Buffer>).value.toString(), i(raws[k]) + raws[k].toString())
  })
  // the same bodies asked for twice at once (overlapping ranges), beside disjoint ones
  const twice = await Promise.all([...recs.slice(0, 10), ...recs.slice(5, 15)].map(async r => await s.readMessage(r)))
  twice.forEach((b, k) => { const n = k < 10 ? k : k - 5; assert.equal(b.toString(), i(raws[n]) + raws[n].toString()) })
})

test('a large mailbox opened afresh gets its index built once, then kept by later writes', async (t) => {
  const dir = await tempDir(t)
  const path = `${dir}/s`
  const first = createStore({}, { path, scryptLogN: 4, sync: false })
  await first.start()
  await first.addDomain('example.com')
  await first.addUser({ address: U, password: 'x' })
  const n = INDEX_MESSAGES_MIN + 20
  for (let i = 0; i < n; i += 50) {
    await Promise.all(Array.from({ length: Math.min(50, n - i) }, async (_, j) => await first.deliver(Buffer.from(`Subject: ${i + j}\r\n\r\nx\r\n`), [{ user: U, prefix: '', flags: (i + j) % 3 === 0 ? ['\\Seen'] : [] }])))
  }
  await first.stop()
  const s = createStore({}, { path, scryptLogN: 4, sync: false })
  await s.start()
  t.after(async () => { await s.stop() })
  const inbox = (await s.getMailbox(U, 'INBOX'))!
  const same = async (): Promise<void> => {
    const recs = await s.listMessages(U, inbox.id)
    assert.deepEqual(await s.listFlags!(U, inbox.id), { uids: recs.map(r => r.uid), flags: recs.map(r => r.flags) })
  }
  await same() // built from the records
  await s.storeFlags(U, inbox.id, [2, 5, 700], 'add', ['$Done'])
  await s.expunge(U, inbox.id, [3, 9, n])
  await s.deliver(Buffer.from('Subject: late\r\n\r\nx\r\n'), [{ user: U, prefix: '' }])
  await same() // kept by the writes
})

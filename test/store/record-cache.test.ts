// The message records kept in memory (store/record-cache.ts) must never be stale: after any local change, any
// change applied from another node's log, a fill that raced with commits, and a restart, what the store answers
// from memory is what LevelDB holds.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { createStore } from '../../store/index.ts'
import type { MessageRecord, Store } from '../../store/index.ts'
import { RecordCache } from '../../store/record-cache.ts'
import { tempDir } from '../helpers/tmp.ts'

const U = 'bob@example.com'

interface Inside {
  recordCache: RecordCache
  readMessages: (user: string, mailboxId: string) => Promise<MessageRecord[]>
}
const inside = (s: Store): Inside => s as unknown as Inside

async function open (path: string): Promise<Store> {
  const s = createStore({}, { path, scryptLogN: 4, sync: false })
  await s.start()
  return s
}

const raw = (i: number): Buffer => Buffer.from(`Subject: m${i}\r\nFrom: <a@example.com>\r\n\r\nbody ${i}\r\n`)

/** Every mailbox of U: what a cached read answers (filling the cache first) equals what LevelDB holds. */
async function agrees (s: Store, label: string): Promise<void> {
  for (const box of await s.listMailboxes(U)) {
    const disk = await inside(s).readMessages(U, box.id)
    const top = disk.length > 0 ? disk[disk.length - 1]!.uid : 1
    const ranged = await s.listMessages(U, box.id, { from: 1, to: top + 5 }) // fills
    assert.ok(inside(s).recordCache.has(U, box.id), `${label}: ${box.name} is kept after a ranged read`)
    assert.deepEqual(ranged, disk, `${label}: ${box.name} ranged`)
    assert.deepEqual(await s.listMessages(U, box.id), disk, `${label}: ${box.name} listing`)
    const uids = disk.map(r => r.uid)
    assert.deepEqual(await s.getMessages(U, box.id, [...uids, top + 1, 0]), disk, `${label}: ${box.name} by UIDs`)
    for (const r of disk) assert.deepEqual(await s.getMessage(U, box.id, r.uid), r, `${label}: ${box.name} ${r.uid}`)
    assert.equal(await s.getMessage(U, box.id, top + 1), null)
  }
}

type Op =
  | { k: 'deliver', n: number }
  | { k: 'flags', pick: number[], op: 'add' | 'remove' | 'set', flag: string }
  | { k: 'expunge', pick: number[] }
  | { k: 'copy', pick: number[] }
  | { k: 'move', pick: number[] }
  | { k: 'mailbox', create: boolean }
  | { k: 'drop' }

const pick = fc.array(fc.nat({ max: 30 }), { minLength: 1, maxLength: 6 })
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('deliver' as const), n: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('flags' as const), pick, op: fc.constantFrom('add' as const, 'remove' as const, 'set' as const), flag: fc.constantFrom('\\Seen', '\\Flagged', 'kw') }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('expunge' as const), pick }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('copy' as const), pick }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('move' as const), pick }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('mailbox' as const), create: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('drop' as const) }) }
)

test('kept records follow every change on the primary and on a replica applying its log, and a restart', async (t) => {
  const dir = await tempDir(t)
  let runs = 0
  let n = 0
  await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 25 }), async (ops) => {
    const run = runs++
    const a = await open(`${dir}/a${run}`)
    let b = await open(`${dir}/b${run}`)
    try {
      for (const s of [a, b]) await s.addDomain('example.com')
      await a.addUser({ address: U, password: 'x' })
      let shipped = 0
      const ship = async (): Promise<void> => {
        const log = await a.readLog(U, shipped + 1, 10_000)
        const blobs = [...new Set(log.flatMap(e => e.op === 'append' ? [e.blob] : []))]
        shipped = await b.applyLog(U, log, await Promise.all(blobs.map(async h => await a.readBlob(h))))
      }
      await ship()
      const inbox = (await a.getMailbox(U, 'INBOX'))!
      for (const s of [a, b]) await agrees(s, 'start')
      for (const [i, op] of ops.entries()) {
        const uids = async (): Promise<number[]> => (await a.listMessages(U, inbox.id)).map(r => r.uid)
        const chosen = async (p: number[]): Promise<number[]> => { const all = await uids(); return all.length === 0 ? [] : p.map(x => all[x % all.length]!) }
        switch (op.k) {
          case 'deliver': for (let j = 0; j < op.n; j++) await a.deliver(raw(n++), [{ user: U, prefix: 'Received: x\r\n' }]); break
          case 'flags': await a.storeFlags(U, inbox.id, await chosen(op.pick), op.op, [op.flag]); break
          case 'expunge': await a.expunge(U, inbox.id, await chosen(op.pick)); break
          case 'copy': await a.copy(U, inbox.id, await chosen(op.pick), 'Archive'); break
          case 'move': await a.move(U, inbox.id, await chosen(op.pick), 'Trash'); break
          case 'mailbox':
            if (op.create) await a.createMailbox(U, `F${i}`).then(async () => { await a.copy(U, inbox.id, await uids(), `F${i}`) })
            else for (const m of await a.listMailboxes(U)) if (m.name.startsWith('F')) await a.deleteMailbox(U, m.name)
            break
          case 'drop': await b.dropUserMail(U); shipped = 0; break
        }
        await agrees(a, `primary after ${i} ${op.k}`)
        await ship()
        await agrees(b, `replica after ${i} ${op.k}`)
      }
      // a restart starts with nothing kept and reads what the disk holds
      const before = await Promise.all((await b.listMailboxes(U)).map(async m => await b.listMessages(U, m.id)))
      await b.stop()
      b = await open(`${dir}/b${run}`)
      assert.equal(inside(b).recordCache.size, 0)
      const after = await Promise.all((await b.listMailboxes(U)).map(async m => await b.listMessages(U, m.id, { from: 1, to: 1e9 })))
      assert.deepEqual(after, before)
      await agrees(b, 'replica after a restart')
    } finally {
      await a.stop()
      await b.stop()
    }
  }), { numRuns: 12 })
})

test('a fill that races with commits is kept, with the commits applied over what it read', async (t) => {
  const dir = await tempDir(t)
  const s = await open(`${dir}/s`)
  t.after(async () => { await s.stop() })
  await s.addDomain('example.com')
  await s.addUser({ address: U, password: 'x' })
  for (let i = 0; i < 200; i++) await s.deliver(raw(i), [{ user: U, prefix: '' }])
  const inbox = (await s.getMailbox(U, 'INBOX'))!
  const cache = inside(s).recordCache
  for (let round = 0; round < 30; round++) {
    cache.drop(U)
    // fills started before, between and after concurrent writes of the same mailbox
    const work: Array<Promise<unknown>> = []
    for (let j = 0; j < 4; j++) {
      work.push(s.listMessages(U, inbox.id, { from: 1, to: 10 }))
      work.push(s.storeFlags(U, inbox.id, [1 + ((round * 7 + j * 13) % 200)], 'add', [`k${round}`]))
      work.push(s.getMessages(U, inbox.id, [2, 50, 150]))
      if (j === 1) work.push(s.deliver(raw(1000 + round), [{ user: U, prefix: '' }]))
      if (j === 2) work.push(s.expunge(U, inbox.id, [3 + round]))
    }
    await Promise.all(work)
    const disk = await inside(s).readMessages(U, inbox.id)
    // a fill that overlapped commits is kept all the same (the commits replayed over it), and holds them
    assert.ok(cache.has(U, inbox.id), `round ${round}: kept`)
    assert.deepEqual(await s.listMessages(U, inbox.id), disk, `round ${round}`)
    await agrees(s, `round ${round}`)
  }
})

test('the cache stays within its byte bound, dropping the least recently used mailbox', () => {
  const c = new RecordCache(100_000)
  const rec = (uid: number): MessageRecord => ({ uid, gid: 'g' + uid, flags: ['\\Seen'], modseq: uid, internalDate: 0, size: 10, blob: 'b'.repeat(64), prefix: '' })
  const fill = async (box: string, count: number): Promise<void> => { await c.fill(U, box, async () => Array.from({ length: count }, (_, i) => rec(i + 1))) }
  return (async () => {
    await fill('1', 100)
    await fill('2', 100)
    assert.ok(c.has(U, '1') && c.has(U, '2'))
    c.range(U, '1') // 1 is now the most recently used
    await fill('3', 100)
    assert.ok(c.bytes <= 100_000, `${c.bytes} bytes`)
    assert.ok(c.has(U, '1') && c.has(U, '3') && !c.has(U, '2'))
    await fill('big', 1000) // more than its share of the room: not kept
    // and the store asks before it reads a whole mailbox for a range: one this large is read range by range
    assert.ok(c.fits(100) && !c.fits(1000))
    assert.ok(!c.has(U, 'big'))
    // kept records are frozen: a caller cannot change what others read
    const [r] = c.range(U, '1', 1, 1)!
    assert.throws(() => { (r as { flags: string[] }).flags.push('x') })
  })()
})

// The filter of stored bodies (store/blob-filter.ts): it may answer "maybe" of a body that is not stored, never
// "not stored" of one that is, whether the body came from the scan of the index, was added while a scan ran, or was
// added before a scan at twice the size started and became durable after it (the pending hashes). And in the store:
// a body delivered again, after a restart, is still stored once.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { BlobFilter } from '../../store/blob-filter.ts'
import { createStore } from '../../store/index.ts'
import { tempDir } from '../helpers/tmp.ts'
import { prng } from '../helpers/prng.ts'

const hash = (): string => randomBytes(32).toString('hex')

/** A body index that a test fills and can hold back (a scan waits for `release`). */
function source (): { stored: string[], release: () => void, held: boolean, scans: number, hashes: (signal: AbortSignal) => AsyncIterable<string[]> } {
  let release = (): void => {}
  const s = {
    stored: [] as string[],
    held: false,
    scans: 0,
    release: () => { release() },
    hashes: async function * (signal: AbortSignal): AsyncGenerator<string[]> {
      s.scans++
      const snapshot = [...s.stored] // an iterator's snapshot: what is stored when the scan starts
      if (s.held) await new Promise<void>(resolve => { release = resolve })
      for (let i = 0; i < snapshot.length && !signal.aborted; i += 100) yield snapshot.slice(i, i + 100)
    }
  }
  return s
}

async function until (what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (cond()) return
    await new Promise(resolve => setTimeout(resolve, 5))
  }
  assert.fail(`not ${what}`)
}

test('no false "not stored": scanned, added during the scan, pending across a regrowth; few false "maybe"s', async () => {
  const src = source()
  for (let i = 0; i < 3000; i++) src.stored.push(hash())
  const f = new BlobFilter(src)
  src.held = true
  f.start(1 << 12) // 4,096 bits: the 3,000 bodies outgrow it at once
  const during = Array.from({ length: 50 }, hash)
  for (const h of during) { f.add(h); src.stored.push(h) } // stored after the scan's snapshot
  assert.equal(f.mayHold(hash()), true, 'before the first scan ends, every answer is "maybe"')
  src.release()
  src.held = false
  // the scan finds 3,050 bodies in 4,096 bits, and loads again at 16 bits per body
  await until('loaded at its size', () => f.loaded && f.bits >= 3050 * 16 && !f.scanning)
  assert.ok(src.scans >= 2)
  for (const h of src.stored) assert.equal(f.mayHold(h), true)
  for (const h of during) assert.equal(f.mayHold(h), true)

  // pending across a regrowth: added, not durable yet (so not in the index the larger filter's scan reads)
  const pending = Array.from({ length: 20 }, hash)
  for (const h of pending) f.add(h)
  const bits = f.bits
  const bulk: string[] = []
  while (!f.scanning && bulk.length < 100_000) { // until the adds make it grow
    const h = hash()
    bulk.push(h)
    src.stored.push(h)
    f.add(h)
    f.durable(h)
  }
  assert.ok(f.scanning, 'the adds outgrew the filter')
  await until('grown', () => f.bits > bits && !f.scanning)
  for (const h of pending) assert.equal(f.mayHold(h), true, 'a body still pending when the larger filter was scanned')
  for (const h of src.stored) assert.equal(f.mayHold(h), true)

  // false "maybe"s of bodies never stored: at 16 bits per body, well under 1 %
  const rand = prng(7)
  let maybe = 0
  const N = 20_000
  for (let i = 0; i < N; i++) {
    const h = createHash('sha256').update(String(rand())).digest('hex')
    if (f.mayHold(h)) maybe++
  }
  assert.ok(maybe / N < 0.01, `false "maybe"s: ${maybe} of ${N}`)
  assert.equal(f.mayHold('not a hash'), true, 'anything that is not a SHA-256 digest is a "maybe"')
  await f.stop()
  assert.equal(f.loaded, false)
})

async function blobBytes (dir: string): Promise<number> {
  let n = 0
  for (const f of await readdir(join(dir, 'blobs'))) n += (await stat(join(dir, 'blobs', f))).size
  return n
}

test('the store: a body delivered again is stored once, also after a restart; new bodies skip LevelDB', async (t) => {
  const dir = await tempDir(t)
  const open = async (): Promise<ReturnType<typeof createStore>> => {
    const s = createStore({}, { path: dir, scryptLogN: 4 })
    await s.start()
    return s
  }
  let store = await open()
  t.after(async () => { await store.stop() })
  await store.addDomain('example.com')
  await store.addUser({ address: 'a@example.com', password: 'pw' })
  const filter = (): BlobFilter => (store as unknown as { blobFilter: BlobFilter }).blobFilter
  await until('loaded', () => filter().loaded)
  const body = (i: number): Buffer => Buffer.from(`Subject: m${i}\r\n\r\nbody ${i}\r\n`)
  for (let i = 0; i < 20; i++) await store.deliver(body(i), [{ user: 'a@example.com', prefix: '' }])
  assert.ok(filter().noes >= 19, `new bodies answered "not stored" without LevelDB (${filter().noes})`)
  const bytes = await blobBytes(dir)
  await store.deliver(body(3), [{ user: 'a@example.com', prefix: '' }])
  assert.equal(await blobBytes(dir), bytes, 'the same body again: not appended')

  await store.stop()
  store = await open()
  await until('loaded after the restart', () => filter().loaded)
  await store.deliver(body(7), [{ user: 'a@example.com', prefix: '' }])
  assert.equal(await blobBytes(dir), bytes, 'a body stored before the restart: found, not appended')
  await store.deliver(body(99), [{ user: 'a@example.com', prefix: '' }])
  assert.ok(await blobBytes(dir) > bytes, 'a new body is appended')
  const box = await store.getMailbox('a@example.com', 'INBOX')
  assert.equal(box?.messages, 23)
})

// store/ranges.ts: a range read in growing batches yields every entry once, in order, and closes its iterator,
// also when classic-level cuts a batch short at its byte limit (highWaterMarkBytes) and when the reader stops early.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { batches, RANGE_BATCH_MAX, RANGE_FIRST_BATCH, readRange } from '../../store/ranges.ts'

test('readRange: empty, small, large and byte-limited ranges, in order; the iterator is closed', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ranges-'))
  const db = new Level<string, string>(join(dir, 'db'))
  try {
    const key = (p: string, i: number): string => `${p}${String(i).padStart(6, '0')}`
    const big = 'x'.repeat(20 * 1024) // above classic-level's 16 KiB highWaterMarkBytes: one entry per nextv
    const ops: Array<{ type: 'put', key: string, value: string }> = []
    for (let i = 0; i < 3; i++) ops.push({ type: 'put', key: key('a', i), value: String(i) })
    for (let i = 0; i < 2500; i++) ops.push({ type: 'put', key: key('b', i), value: String(i) })
    for (let i = 0; i < 40; i++) ops.push({ type: 'put', key: key('c', i), value: big + i })
    await db.batch(ops)
    assert.deepEqual(await readRange(db.values({ gte: 'z', lt: 'zz' })), [])
    assert.deepEqual(await readRange(db.values({ gte: 'a', lt: 'b' })), ['0', '1', '2'])
    const b = await readRange(db.values({ gte: 'b', lt: 'c' }))
    assert.equal(b.length, 2500)
    assert.deepEqual(b, Array.from({ length: 2500 }, (_, i) => String(i)))
    const c = await readRange(db.values({ gte: 'c', lt: 'd' }))
    assert.deepEqual(c.map(v => v.slice(big.length)), Array.from({ length: 40 }, (_, i) => String(i)))
    // batch sizes grow from the first to the largest
    const sizes: number[] = []
    for await (const batch of batches(db.keys({ gte: 'b', lt: 'c' }))) sizes.push(batch.length)
    assert.equal(sizes[0], RANGE_FIRST_BATCH)
    assert.equal(Math.max(...sizes), RANGE_BATCH_MAX)
    assert.equal(sizes.reduce((x, y) => x + y, 0), 2500)
    // stopping early closes the iterator: a closed iterator refuses nextv
    const it = db.keys({ gte: 'b', lt: 'c' })
    for await (const _ of batches(it)) break
    await assert.rejects(it.nextv(1), /not open/i)
  } finally {
    await db.close()
    await rm(dir, { recursive: true, force: true })
  }
})

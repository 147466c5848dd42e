// The store's random ids from a pool (store/random.ts): each drawn byte handed out once, refills on the boundary,
// the generator's bytes as they are.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRandomPool, RANDOM_POOL_BYTES } from '../../store/random.ts'

test('ids are the generator\'s bytes in order, each once, refilled when the next id does not fit', () => {
  let fills = 0
  // a deterministic "generator": the fill number and the byte's offset, so every handed-out byte is identifiable
  const pool = createRandomPool((buf) => { fills++; for (let i = 0; i < buf.length; i++) buf[i] = (fills * 31 + i) & 0xff; return buf })
  const perPool = Math.floor(RANDOM_POOL_BYTES / 12)
  const ids: string[] = []
  for (let i = 0; i < perPool * 2 + 1; i++) ids.push(pool.hex(12))
  assert.equal(fills, 3, 'a refill only when an id does not fit')
  for (const [i, id] of ids.entries()) {
    assert.match(id, /^[0-9a-f]{24}$/)
    const fill = Math.floor(i / perPool) + 1
    const offset = (i % perPool) * 12
    const want = Buffer.from(Array.from({ length: 12 }, (_, k) => (fill * 31 + offset + k) & 0xff)).toString('hex')
    assert.equal(id, want, `id ${i}`)
  }
})

test('ids from the real generator do not repeat; sizes outside the pool are refused', () => {
  const pool = createRandomPool()
  const seen = new Set<string>()
  for (let i = 0; i < 100_000; i++) seen.add(pool.hex(12))
  assert.equal(seen.size, 100_000)
  assert.throws(() => pool.hex(0), RangeError)
  assert.throws(() => pool.hex(RANDOM_POOL_BYTES + 1), RangeError)
  assert.equal(pool.hex(RANDOM_POOL_BYTES).length, RANDOM_POOL_BYTES * 2)
})

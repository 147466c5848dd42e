// store/memo.ts: the memo keeps values within its byte bound, the oldest kept out first.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { StringMemo } from '../../store/memo.ts'

test('StringMemo: bounded by bytes, evicts the oldest, refuses a value above the bound', () => {
  const m = new StringMemo(10)
  m.set('a', 'xxxx')
  m.set('b', 'yyyy')
  assert.equal(m.get('a'), 'xxxx')
  m.set('c', 'zzzz') // 12 > 10: a, the oldest, goes
  assert.equal(m.get('a'), undefined)
  assert.equal(m.get('b'), 'yyyy')
  assert.equal(m.get('c'), 'zzzz')
  assert.equal(m.bytes, 8)
  m.set('b', 'y') // replaced, not counted twice
  assert.equal(m.bytes, 5)
  m.set('big', 'q'.repeat(11))
  assert.equal(m.get('big'), undefined)
  assert.equal(m.size, 2)
})

// sortOrder (node/imap/sort-keys.ts) with its rank memo: sorting by a text key gives the order a plain comparison
// gives, whether the strings are new, a subset of the last sort's, or the same again.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { sortOrder } from '../../node/imap/sort-keys.ts'
import type { SortKeys } from '../../node/imap/sort-keys.ts'

function keysOf (subjects: string[]): SortKeys[] {
  return subjects.map((subject, i) => ({
    arrival: i, size: i, date: i, subject, reply: false, from: '', to: '', cc: '', displayFrom: '', displayTo: '', messageId: null, references: [],
  }))
}

function expected (subjects: string[], reverse: boolean): number[] {
  const order = subjects.map((_, i) => i)
  const sign = reverse ? -1 : 1
  return order.sort((i, j) => (subjects[i]! < subjects[j]! ? -sign : subjects[i]! > subjects[j]! ? sign : 0) || i - j)
}

test('sortOrder by SUBJECT: fresh, subset, repeated and with a new string, REVERSE too', () => {
  let seed = 7
  const next = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n }
  const pool = Array.from({ length: 300 }, (_, i) => `subject ${next(1000)} ${i % 7 === 0 ? 'é' : ''}`)
  const all = Array.from({ length: 2000 }, () => pool[next(pool.length)]!)
  const subset = all.filter((_, i) => i % 3 === 0)
  const widened = [...subset, 'a brand new subject', 'zzz']
  for (const subjects of [all, subset, all, widened, subset]) {
    for (const reverse of [false, true]) {
      assert.deepEqual(sortOrder(keysOf(subjects), [{ key: 'SUBJECT', reverse }]), expected(subjects, reverse))
    }
  }
})

// PeerBatcher: group shipping per peer. While requests are in flight the items queue and leave together, each
// request within its item, byte and header budgets, answers matched to items in order.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PeerBatcher } from '../../node/grid/batcher.ts'

interface Item { id: number, bytes: number, header: number }

test('items wait while requests are in flight, then leave together within every budget, answered in order', async () => {
  const sent: Item[][] = []
  const gates: Array<() => void> = []
  const b = new PeerBatcher<Item, number>(async (_peer, items) => {
    sent.push(items)
    await new Promise<void>(resolve => gates.push(resolve))
    return items.map(i => i.id * 10)
  }, { itemsMax: 5, bytesMax: 1000, size: i => i.bytes, headerBytesMax: 300, headerSize: i => i.header, inFlightMax: 1 })
  const answers = Array.from({ length: 12 }, (_, id) => b.submit('p', { id, bytes: id === 3 ? 900 : 100, header: id >= 8 ? 200 : 50 }))
  // nothing leaves within the turn the items were submitted in; then the first request takes what fits its budgets
  // (item 3's 900 bytes do not fit after three of 100), the rest queue behind it
  assert.equal(sent.length, 0)
  await new Promise(resolve => setImmediate(resolve))
  assert.deepEqual(sent.map(s => s.map(i => i.id)), [[0, 1, 2]])
  for (let round = 0; round < 12 && gates.length > 0; round++) {
    gates.shift()?.()
    await new Promise(resolve => setImmediate(resolve))
  }
  // every request within its budgets (an item alone may exceed them: it still has to go), none empty
  for (const s of sent) {
    assert.ok(s.length >= 1 && s.length <= 5)
    assert.ok(s.length === 1 || s.reduce((n, i) => n + i.bytes, 0) <= 1000, `bytes of ${JSON.stringify(s)}`)
    assert.ok(s.length === 1 || s.reduce((n, i) => n + i.header, 0) <= 300, `header of ${JSON.stringify(s)}`)
  }
  assert.deepEqual(sent.flat().map(i => i.id), Array.from({ length: 12 }, (_, i) => i), 'in order, each once')
  assert.deepEqual(await Promise.all(answers), Array.from({ length: 12 }, (_, i) => i * 10))
  assert.ok(sent.length < 12, 'grouped')
})

test('a failed request fails its items only; the queue goes on', async () => {
  let calls = 0
  const b = new PeerBatcher<number, string>(async (_peer, items) => {
    calls++
    if (items.includes(1)) throw new Error('boom')
    return items.map(String)
  }, { itemsMax: 1, bytesMax: 10, size: () => 1 })
  const results = await Promise.allSettled([0, 1, 2].map(async i => await b.submit('p', i)))
  assert.deepEqual(results.map(r => r.status), ['fulfilled', 'rejected', 'fulfilled'])
  assert.equal(calls, 3)
})

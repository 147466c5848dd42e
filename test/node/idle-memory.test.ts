// The idle node's memory reduction (node/idle-memory.ts): when it runs, when it does not, and that V8's collector,
// reached through the exposed gc, gives the heap's pages back.

import assert from 'node:assert/strict'
import { test } from 'node:test'
import { getHeapStatistics } from 'node:v8'
import { GROWTH_MIN_BYTES, IDLE_INTERVALS, IDLE_UTILIZATION_MAX, IdleMemory, REDUCE_MIN_GAP_MS } from '../../node/idle-memory.ts'

const MiB = 2 ** 20

function fake (o: { utilization: number[], heap: number[] }): { m: IdleMemory, reduced: number[], logs: Array<Record<string, unknown>>, clock: { t: number } } {
  const clock = { t: 1_000_000 }
  const reduced: number[] = []
  const logs: Array<Record<string, unknown>> = []
  let heap = o.heap[0]!
  const m = new IdleMemory({
    logger: { info: (x: unknown) => { logs.push(x as Record<string, unknown>) }, warn: (x: unknown) => { logs.push(x as Record<string, unknown>) } } as never,
    now: () => clock.t,
    utilization: () => o.utilization.shift() ?? 0,
    heapBytes: () => heap,
    reduce: () => { reduced.push(clock.t); heap = o.heap[1] ?? heap }
  })
  return { m, reduced, logs, clock }
}

test('an idle node reduces once per idle period, after IDLE_INTERVALS idle checks', () => {
  const busy = IDLE_UTILIZATION_MAX * 10
  const { m, reduced, logs, clock } = fake({ utilization: [busy, busy, 0, 0, busy, 0, 0, 0, 0, 0, 0], heap: [200 * MiB, 100 * MiB] })
  const results: boolean[] = []
  for (let i = 0; i < 11; i++) { clock.t += 5_000; results.push(m.check()) }
  // two busy, two idle, busy again (the count starts over), then IDLE_INTERVALS idle: one reduction, then none
  // while the heap has not grown
  const expectAt = 5 + IDLE_INTERVALS - 1
  assert.deepEqual(results.map((r, i) => r ? i : -1).filter(i => i >= 0), [expectAt])
  assert.equal(reduced.length, 1)
  assert.equal(m.reductions, 1)
  const line = logs.find(l => l.event === 'memory_reduced')
  assert.ok(line !== undefined)
  assert.equal(line.heapBefore, 200 * MiB)
  assert.equal(line.heapAfter, 100 * MiB)
})

test('a new reduction needs the heap to have grown and the gap to have passed', () => {
  const heap = { bytes: 200 * MiB }
  const reduced: number[] = []
  let t = 0
  const m = new IdleMemory({
    logger: { info: () => {}, warn: () => {} } as never,
    now: () => t,
    utilization: () => 0,
    heapBytes: () => heap.bytes,
    reduce: () => { reduced.push(t); heap.bytes = 100 * MiB }
  })
  const run = (n: number): void => { for (let i = 0; i < n; i++) { t += 5_000; m.check() } }
  run(IDLE_INTERVALS)
  assert.equal(reduced.length, 1)
  // grown, but not enough
  heap.bytes = 100 * MiB + GROWTH_MIN_BYTES - 1
  run(20)
  assert.equal(reduced.length, 1)
  // grown enough: the next idle check reduces once the gap since the last one has passed
  heap.bytes = 100 * MiB + GROWTH_MIN_BYTES
  run(1)
  assert.equal(reduced.length, 2)
  assert.ok(reduced[1]! - reduced[0]! >= REDUCE_MIN_GAP_MS)
  heap.bytes = 300 * MiB
  t = reduced[1]! // right after: within the gap
  run(1)
  assert.equal(reduced.length, 2)
  t += REDUCE_MIN_GAP_MS
  run(1)
  assert.equal(reduced.length, 3)
})

test('a failing reduction is logged and not tried again', () => {
  let calls = 0
  const logs: Array<Record<string, unknown>> = []
  const m = new IdleMemory({
    logger: { info: () => {}, warn: (x: unknown) => { logs.push(x as Record<string, unknown>) } } as never,
    utilization: () => 0,
    heapBytes: () => 500 * MiB,
    reduce: () => { calls++; throw new Error('no collector') }
  })
  m.start()
  for (let i = 0; i < IDLE_INTERVALS * 3; i++) m.check()
  m.stop()
  assert.equal(calls, 1)
  assert.equal(logs[0]?.event, 'memory_reduce_failed')
})

test('the exposed collector gives dead objects\' pages back', () => {
  // V8's own collector (the default `reduce`): a heap that held 160 MB of arrays now unreachable
  let keep: number[][] = []
  for (let i = 0; i < 200; i++) keep.push(new Array<number>(100_000).fill(i))
  assert.equal(keep.length, 200)
  keep = []
  const before = getHeapStatistics().total_physical_size
  const logs: Array<Record<string, unknown>> = []
  const m = new IdleMemory({ logger: { info: (x: unknown) => { logs.push(x as Record<string, unknown>) }, warn: (x: unknown) => { logs.push(x as Record<string, unknown>) } } as never, utilization: () => 0 })
  let reduced = false
  for (let i = 0; i < IDLE_INTERVALS; i++) reduced = m.check()
  assert.equal(reduced, true, JSON.stringify(logs))
  const after = getHeapStatistics().total_physical_size
  assert.ok(after < before - 100 * MiB, `committed heap ${(before / MiB).toFixed(0)} → ${(after / MiB).toFixed(0)} MiB`)
  assert.ok(typeof logs[0]?.ms === 'number')
})

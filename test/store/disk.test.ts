// The free-space check (store/disk.ts) on a scripted disk: the floor's default rule, "off", the hysteresis that keeps
// a disk hovering at the floor from flapping, the events logged, and a failing statfs. One real statfs at the end.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import pino from 'pino'
import { DiskWatch, diskFloorBytes, diskSpace } from '../../store/index.ts'
import { tempDir } from '../helpers/tmp.ts'

const MIB = 1024 * 1024
const GIB = 1024 * MIB

function logged (): { logger: pino.Logger, events: () => string[] } {
  const lines: string[] = []
  const out = new Writable({ write (chunk, _enc, cb) { lines.push(String(chunk)); cb() } })
  return { logger: pino({ level: 'info' }, out), events: () => lines.map(l => (JSON.parse(l) as { event?: string }).event ?? '?') }
}

test('the floor: the configured bytes, 0 for off, else the smaller of 1 GiB and 5 % of the filesystem', () => {
  assert.equal(diskFloorBytes(123, 10 * GIB), 123)
  assert.equal(diskFloorBytes(0, 10 * GIB), 0)
  assert.equal(diskFloorBytes(-1, 10 * GIB), Math.floor(0.05 * 10 * GIB), 'a 10 GiB disk: 512 MiB')
  assert.equal(diskFloorBytes(-1, 500 * GIB), GIB, 'a 500 GiB disk: 1 GiB')
  assert.equal(diskFloorBytes(-1, 64 * MIB), Math.floor(0.05 * 64 * MIB))
})

test('low below the floor, ok again only at the floor plus 10 %: one event per change, none while it hovers', async () => {
  let free = 100 * MIB
  let now = 1000
  const { logger, events } = logged()
  const watch = new DiskWatch({ logger, now: () => now, space: async () => ({ freeBytes: free, totalBytes: GIB }) }, { path: '/x', minFreeBytes: 50 * MIB, checkMs: 3_600_000 })
  const changes: Array<{ low: boolean, since: number }> = []
  watch.onChange(s => changes.push({ low: s.low, since: s.since }))
  await watch.start()
  assert.deepEqual(watch.state, { low: false, since: 0, freeBytes: 100 * MIB, totalBytes: GIB, floorBytes: 50 * MIB })
  const steps: Array<[number, boolean]> = [
    [50 * MIB, false], // at the floor is not below it
    [50 * MIB - 1, true],
    [52 * MIB, true], // above the floor, under the margin: still low
    [49 * MIB, true],
    [55 * MIB - 1, true],
    [55 * MIB, false], // floor + 10 %
    [51 * MIB, false], // under the margin again, still above the floor: ok
    [10 * MIB, true]
  ]
  for (const [bytes, low] of steps) {
    free = bytes
    now += 1000
    await watch.check()
    assert.equal(watch.state.low, low, `${bytes} bytes free`)
    assert.equal(watch.state.freeBytes, bytes)
  }
  assert.deepEqual(changes, [{ low: true, since: 3000 }, { low: false, since: 0 }, { low: true, since: 9000 }], 'since is when it went low; one call per change')
  assert.deepEqual(events(), ['disk_low', 'disk_ok', 'disk_low'])
  watch.stop()
  watch.stop()
})

test('a floor of 0 is off: never low, whatever is free', async () => {
  const { logger, events } = logged()
  const watch = new DiskWatch({ logger, space: async () => ({ freeBytes: 0, totalBytes: GIB }) }, { path: '/x', minFreeBytes: 0 })
  await watch.start()
  assert.equal(watch.state.low, false)
  assert.equal(watch.state.floorBytes, 0)
  assert.deepEqual(events(), [])
  watch.stop()
})

test('a statfs that fails keeps the last state and is logged', async () => {
  let fail = false
  const { logger, events } = logged()
  const watch = new DiskWatch({ logger, space: async () => { if (fail) throw new Error('EIO'); return { freeBytes: 1, totalBytes: GIB } } }, { path: '/x', minFreeBytes: MIB, checkMs: 3_600_000 })
  await watch.start()
  assert.equal(watch.state.low, true)
  fail = true
  await watch.check()
  assert.equal(watch.state.low, true)
  assert.deepEqual(events(), ['disk_low', 'disk_check_failed'])
  watch.stop()
})

test('checks do not overlap, and the interval runs them', async () => {
  let calls = 0
  let release: (() => void) | undefined
  const { logger } = logged()
  const watch = new DiskWatch({
    logger,
    space: async () => {
      calls++
      if (calls === 2) await new Promise<void>(resolve => { release = resolve })
      return { freeBytes: GIB, totalBytes: 2 * GIB }
    }
  }, { path: '/x', minFreeBytes: -1, checkMs: 20 })
  await watch.start()
  const deadline = Date.now() + 5000
  while (release === undefined && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 10))
  assert.ok(release !== undefined, 'the interval ran a second check')
  const a = watch.check()
  const b = watch.check()
  release()
  await Promise.all([a, b])
  assert.equal(calls, 2, 'callers wait for the check running instead of starting another')
  watch.stop()
})

test('the real statfs of a directory', async (t) => {
  const dir = await tempDir(t)
  const s = await diskSpace(dir)
  assert.ok(s.totalBytes > 0 && s.freeBytes >= 0 && s.freeBytes <= s.totalBytes)
})

test('a node restarted while low keeps the instant it went low; one restarted after space returned forgets it', async (t) => {
  const dir = await tempDir(t)
  const statePath = `${dir}/disk-low.json`
  let free = 1
  let now = 5000
  const make = (): DiskWatch => new DiskWatch({ logger: logged().logger, now: () => now, space: async () => ({ freeBytes: free, totalBytes: GIB }) }, { path: dir, minFreeBytes: MIB, checkMs: 3_600_000, statePath })
  const first = make()
  await first.start()
  assert.equal(first.state.since, 5000)
  first.stop()
  now = 9000
  const second = make()
  await second.start()
  assert.deepEqual([second.state.low, second.state.since], [true, 5000], 'the same since after a restart')
  second.stop()
  free = GIB
  const third = make()
  await third.start()
  third.stop()
  assert.equal(third.state.low, false)
  free = 1
  now = 20_000
  const fourth = make()
  await fourth.start()
  fourth.stop()
  assert.equal(fourth.state.since, 20_000, 'a new episode starts at its own instant')
})

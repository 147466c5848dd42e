// Drain-and-leave (appliance/drain.ts) against a scripted node, on a fake clock; and the mDNS packet reader
// of the foreign-grid watcher (appliance/lanwatch.ts), fed real-shaped, compressed and hostile packets.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { announceLeaving, drain } from '../../appliance/drain.ts'
import type { DrainTarget, GridState } from '../../appliance/drain.ts'
import { gridTagsIn, namesIn, readName } from '../../appliance/lanwatch.ts'
import { createLogger } from '../../appliance/logger.ts'
import type { NodeStatus } from '../../node/types.ts'

function logs (): { logger: ReturnType<typeof createLogger>, lines: any[] } {
  const lines: any[] = []
  const destination = new Writable({ write (chunk, _e, cb) { lines.push(JSON.parse(String(chunk))); cb() } })
  return { logger: createLogger({ level: 'debug', destination }), lines }
}

type Member = NonNullable<NodeStatus['grid']>['members'][number]
const member = (id: string, status = 'alive', state = 'alive'): Member => ({
  id, name: id, status, state, weight: 1, host: '10.0.0.1', addrs: [], services: {}, sessions: 0, cpuPct: 0, meta: {}
})

function status (under: number, members: Member[], replicas = 2): NodeStatus {
  return {
    hostname: 'n', startedAt: 0, uptimeMs: 0, services: [], connections: 0, users: 0, domains: 0,
    store: { commitGroups: 0, commitBatches: 0 }, memory: { rssBytes: 0, heapUsedBytes: 0 },
    queue: { local: { size: 0, oldestAgeMs: 0 }, grid: { size: 0, oldestAgeMs: 0 } },
    grid: { self: 'me', ringVersion: 'v', replicas, members, usersOwned: 3, usersReplicated: 3, underReplicated: under, handoffPending: 0, remirroredBytes: 0 }
  }
}

/** A node whose status follows a script, one entry per call (the last repeats), on a clock drain advances. */
function scripted (script: NodeStatus[], withState = true): { target: DrainTarget, states: GridState[], calls: () => number, clock: { now: () => number, sleep: (ms: number) => Promise<void> } } {
  let t = 0
  let i = 0
  const states: GridState[] = []
  const target: DrainTarget = {
    status: async () => script[Math.min(i++, script.length - 1)],
    ...(withState ? { setGridState: (s: GridState) => { states.push(s) } } : {})
  }
  return { target, states, calls: () => i, clock: { now: () => t, sleep: async (ms: number) => { t += ms } } }
}

test('drain: publishes draining, waits until no owned user is under-replicated, then leaving', async () => {
  const { logger, lines } = logs()
  const others = [member('me'), member('a'), member('b')]
  const s = scripted([status(3, others), status(2, others), status(1, others), status(0, others)])
  const r = await drain(s.target, { logger, pollMs: 500, timeoutMs: 60_000, ...s.clock })
  assert.deepEqual(r, { outcome: 'handedOver', waitedMs: 1500, underReplicated: 0 })
  assert.deepEqual(s.states, ['draining'])
  announceLeaving(s.target, logger)
  assert.deepEqual(s.states, ['draining', 'leaving'])
  assert.deepEqual(lines.map(l => l.event).filter(e => e !== undefined), ['draining', 'drain_done', 'leaving'])
})

test('drain: bounded — users still under-replicated at the deadline are reported, and the node leaves', async () => {
  const { logger, lines } = logs()
  const s = scripted([status(2, [member('me'), member('a')])])
  const r = await drain(s.target, { logger, pollMs: 1000, timeoutMs: 5000, ...s.clock })
  assert.equal(r.outcome, 'timeout')
  assert.equal(r.waitedMs, 5000)
  assert.equal(r.underReplicated, 2)
  assert.ok(s.calls() <= 7, 'polled at the poll interval, not in a busy loop')
  assert.equal(lines.find(l => l.event === 'drain_done').underReplicated, 2)
})

test('drain: nothing to wait for — standalone, no other alive node, R = 1, or a peer that is itself leaving', async () => {
  const { logger } = logs()
  const cases: Array<[NodeStatus, string]> = [
    [{ ...status(0, []), grid: null }, 'standalone'],
    [status(4, [member('me'), member('a', 'dead')]), 'nowhere'],
    [status(4, [member('me'), member('a', 'alive', 'leaving'), member('b', 'left', 'leaving')]), 'nowhere'],
    [status(4, [member('me'), member('a')], 1), 'nowhere']
  ]
  for (const [st, outcome] of cases) {
    const s = scripted([st])
    const r = await drain(s.target, { logger, ...s.clock })
    assert.equal(r.outcome, outcome)
    assert.equal(r.waitedMs, 0, 'no wait when the copies cannot go anywhere')
  }
})

test('drain: a node that cannot publish its state is still waited for, and says so; a failing status ends the wait', async () => {
  const { logger, lines } = logs()
  const others = [member('me'), member('a')]
  const s = scripted([status(1, others), status(0, others)], false)
  assert.equal((await drain(s.target, { logger, ...s.clock })).outcome, 'handedOver')
  assert.ok(lines.some(l => l.event === 'drain_state_unpublished'))
  announceLeaving(s.target, logger) // no setGridState: nothing to call, no throw

  let n = 0
  const failing: DrainTarget = { status: async () => { if (n++ > 0) throw new Error('store closed'); return status(1, others) } }
  const r = await drain(failing, { logger, now: () => 0, sleep: async () => {} })
  assert.equal(r.outcome, 'timeout')
})

// ---- the mDNS reader ---------------------------------------------------------------------------------------

function label (name: string): Buffer {
  return Buffer.concat([...name.split('.').map(l => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])), Buffer.from([0])])
}

function header (qd: number, an: number): Buffer {
  const h = Buffer.alloc(12)
  h.writeUInt16BE(qd, 4)
  h.writeUInt16BE(an, 6)
  return h
}

const TAG = '0123456789abcdef'
const OTHER = 'fedcba9876543210'

test('lanwatch: a query and a compressed PTR answer name their grid tags', () => {
  // the query @libp2p/mdns sends: one PTR question for the service name
  const query = Buffer.concat([header(1, 0), label(`mailgrid-${TAG}.local`), Buffer.from([0, 12, 0, 1])])
  assert.deepEqual(namesIn(query), [`mailgrid-${TAG}.local`])
  assert.deepEqual(gridTagsIn(query), [TAG])

  // an answer: owner = the service name (offset 12), PTR target = "peer." + pointer to offset 12
  const owner = label(`mailgrid-${OTHER}.local`)
  const target = Buffer.concat([Buffer.from([4]), Buffer.from('peer'), Buffer.from([0xc0, 12])])
  const rr = Buffer.alloc(10)
  rr.writeUInt16BE(12, 0) // PTR
  rr.writeUInt16BE(1, 2)
  rr.writeUInt32BE(120, 4)
  rr.writeUInt16BE(target.length, 8)
  const answer = Buffer.concat([header(0, 1), owner, rr, target])
  assert.deepEqual(namesIn(answer), [`mailgrid-${OTHER}.local`, `peer.mailgrid-${OTHER}.local`])
  assert.deepEqual(gridTagsIn(answer), [OTHER])

  // other services on the LAN are not ours
  const printer = Buffer.concat([header(1, 0), label('_ipp._tcp.local'), Buffer.from([0, 12, 0, 1])])
  assert.deepEqual(gridTagsIn(printer), [])
})

test('lanwatch: hostile packets give no names and no crash (loops, truncation, oversize, bad labels)', () => {
  const loop = Buffer.concat([header(1, 0), Buffer.from([0xc0, 12]), Buffer.from([0, 12, 0, 1])])
  assert.equal(readName(loop, 12), null)
  assert.deepEqual(namesIn(loop), [])
  const truncated = Buffer.concat([header(1, 0), Buffer.from([20]), Buffer.from('short')])
  assert.deepEqual(namesIn(truncated), [])
  assert.deepEqual(namesIn(Buffer.alloc(5)), [])
  assert.deepEqual(namesIn(Buffer.alloc(9001)), [])
  const badLabel = Buffer.concat([header(1, 0), Buffer.from([0x80, 1, 2]), Buffer.from([0, 12, 0, 1])])
  assert.deepEqual(namesIn(badLabel), [])
  const long = Buffer.concat([header(1, 0), label(Array.from({ length: 5 }, () => 'a'.repeat(60)).join('.')), Buffer.from([0, 12, 0, 1])])
  assert.deepEqual(namesIn(long), [], 'a name over 255 bytes is refused')
  // counts that promise more records than the packet holds
  const lying = header(65535, 65535)
  assert.deepEqual(namesIn(lying), [])
  // random bytes, many times: never throws
  for (let i = 0; i < 2000; i++) {
    const b = Buffer.alloc(12 + Math.floor(Math.random() * 200))
    for (let j = 0; j < b.length; j++) b[j] = Math.floor(Math.random() * 256)
    namesIn(b)
  }
})

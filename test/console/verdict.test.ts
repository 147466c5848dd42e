// The Grid page's verdict, "can the grid lose a node now?", from grid statuses built by hand: every rule that
// says no, the yes, and the re-mirroring ETA from the sampled under-replicated counts.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { verdict } from '../../appliance/console/verdict.ts'
import type { GridStatus } from '../../node/grid/index.ts'

type M = GridStatus['members'][number]
const RING = 'ring-now'

function member (name: string, over: Partial<M> = {}): M {
  return {
    id: `id-${name}`, name, status: 'alive', state: 'alive', weight: 1, host: '127.0.0.1', addrs: [], services: {}, sessions: 0, cpuPct: 0,
    meta: { ring: RING, usersOwned: 10, underReplicated: 0 }, ...over
  }
}

function grid (members: M[], replicas = 2): GridStatus {
  return { self: members[0].id, ringVersion: RING, replicas, members, usersOwned: 10, usersReplicated: 10, underReplicated: 0, handoffPending: 0, remirroredBytes: 0 }
}

test('yes: every user has R copies and more than R nodes hold copies', () => {
  const v = verdict(grid([member('a'), member('b'), member('c')]))
  assert.equal(v.ok, true)
  assert.equal(v.reason, 'Yes: every user has 2 copies on 3 nodes; after losing one, 2 remain to re-mirror onto')
})

test('no: a standalone node, and R=1', () => {
  assert.equal(verdict(null).ok, false)
  const v = verdict(grid([member('a'), member('b'), member('c')], 1))
  assert.deepEqual([v.ok, v.reason], [false, 'No: R=1: every user has a single copy'])
})

test('no: a member not answering', () => {
  const v = verdict(grid([member('a'), member('b'), member('c', { status: 'suspect' })]))
  assert.deepEqual([v.ok, v.reason], [false, 'No: c is not answering (suspect); its users may be down to one copy'])
})

test('no: a dead member leaves only R nodes holding copies', () => {
  const v = verdict(grid([member('a'), member('b'), member('c', { status: 'dead' })]))
  assert.equal(v.ok, false)
  assert.equal(v.reason, 'No: only 2 nodes hold copies for R=2 (c is dead): losing one leaves users with a single copy and nowhere to make another')
})

test('yes again once a dead member\'s users are re-mirrored and enough nodes remain', () => {
  const v = verdict(grid([member('a'), member('b'), member('c'), member('d', { status: 'dead' })]))
  assert.equal(v.ok, true)
  assert.match(v.reason, /\(d is dead, its users already re-mirrored\)$/)
})

test('no while users are under-replicated, with an ETA from the last minute of samples', () => {
  const g = grid([member('a', { meta: { ring: RING, underReplicated: 8 } }), member('b', { meta: { ring: RING, underReplicated: 4 } }), member('c'), member('d', { status: 'dead' })])
  assert.equal(verdict(g).reason, 'No: 12 users have fewer than 2 copies while the grid re-mirrors (d is dead), time left not known yet')
  // a fell from 14 to 8 and b from 6 to 4 in 20 s: 8 users in 20 s, 12 left → 30 s
  const history = new Map([
    ['id-a', [{ t: 0, under: 14 }, { t: 10_000, under: 11 }, { t: 20_000, under: 8 }]],
    ['id-b', [{ t: 0, under: 6 }, { t: 20_000, under: 4 }]]
  ])
  const v = verdict(g, history)
  assert.equal(v.etaSeconds, 30)
  assert.equal(v.underReplicated, 12)
  assert.match(v.reason, /, about 30 s left$/)
})

test('no while a member has not counted its copies under the current ring; draining and low-disk members hold none', () => {
  assert.match(verdict(grid([member('a'), member('b', { meta: { ring: 'older', underReplicated: 0 } }), member('c')])).reason, /^No: the ring just changed; b has not counted/)
  assert.equal(verdict(grid([member('a'), member('b'), member('c', { state: 'draining' })])).ok, false)
  assert.equal(verdict(grid([member('a'), member('b'), member('c', { diskLow: { since: 1, floorBytes: 1 } as M['diskLow'] })])).ok, false)
  assert.equal(verdict(grid([member('a'), member('b'), member('c'), member('e', { status: 'left' })])).ok, true)
})

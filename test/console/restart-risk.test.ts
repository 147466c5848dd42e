// The rule the Nodes page's restart is refused by (without `force`): could restarting this member now leave a user
// with no live copy? From grid statuses built by hand, as the verdict's tests do.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { restartRisk } from '../../appliance/console/verdict.ts'
import type { GridStatus } from '../../node/grid/index.ts'

type M = GridStatus['members'][number]

function member (name: string, over: Partial<M> = {}): M {
  return {
    id: `id-${name}`, name, status: 'alive', state: 'alive', weight: 1, host: '127.0.0.1', addrs: [], services: {}, sessions: 0, cpuPct: 0,
    meta: { ring: 'r', usersOwned: 10, underReplicated: 0 }, ...over
  }
}

function grid (members: M[], replicas = 2): GridStatus {
  return { self: members[0].id, ringVersion: 'r', replicas, members, usersOwned: 10, usersReplicated: 10, underReplicated: 0, handoffPending: 0, remirroredBytes: 0 }
}

test('safe: every user has R copies, even on a grid of exactly R nodes', () => {
  assert.equal(restartRisk(grid([member('a'), member('b'), member('c')]), 'id-b'), null)
  assert.equal(restartRisk(grid([member('a'), member('b')]), 'id-b'), null)
  // a member already dead holds nothing live: restarting it risks nothing
  assert.equal(restartRisk(grid([member('a'), member('b', { status: 'dead' })], 1), 'id-b'), null)
})

test('refused: standalone, R=1, a suspect member, under-replicated users, no other holder', () => {
  assert.match(String(restartRisk(null, 'x')), /standalone/)
  assert.match(String(restartRisk(grid([member('a'), member('b')], 1), 'id-b')), /R=1/)
  assert.match(String(restartRisk(grid([member('a'), member('b'), member('c', { status: 'suspect' })]), 'id-b')), /c is not answering/)
  assert.match(String(restartRisk(grid([member('a', { meta: { underReplicated: 3 } }), member('b'), member('c', { status: 'dead' })]), 'id-b')), /3 users have fewer than 2 copies/)
  assert.match(String(restartRisk(grid([member('a', { state: 'draining' }), member('b')]), 'id-b')), /no other node holds copies/)
})

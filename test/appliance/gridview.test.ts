// The grid as `mailgrid status` prints it: members sorted by name, this node marked, owned and
// under-replicated from each member's gossiped meta, this node's own numbers when its meta has none yet.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRing } from '../../gossip/index.ts'
import { gridLines, placement, placementLines, shortId } from '../../appliance/gridview.ts'
import { placementRing } from '../../node/grid/placement.ts'
import type { GridStatus } from '../../node/grid/index.ts'

const RING = 'ab'.repeat(32)
type Member = GridStatus['members'][number]

function member (id: string, name: string, extra: Partial<Member> = {}): Member {
  return {
    id, name, status: 'alive', state: 'alive', weight: 1, host: '127.0.0.1', addrs: [], services: { smtp: 25, imap: 143, pop3: 110 },
    sessions: 0, cpuPct: 12.4, meta: {}, ...extra
  }
}

const STATUS: GridStatus = {
  self: '12D3KooWselfSELF0001',
  ringVersion: RING,
  replicas: 2,
  members: [
    member('12D3KooWselfSELF0001', 'b.example', { sessions: 3 }),
    member('12D3KooWpeerPEER0002', 'a.example', { weight: 2.5, cpuPct: 80.6, meta: { ring: RING, usersOwned: 7, underReplicated: 1 } }),
    member('12D3KooWgoneGONE0003', 'c.example', { status: 'dead' })
  ],
  usersOwned: 4,
  usersReplicated: 9,
  underReplicated: 2,
  handoffPending: 1,
  remirroredBytes: 3 * 1024 * 1024
}

test('gridLines: summary, then one row per member', () => {
  assert.deepEqual(gridLines(STATUS), [
    `grid         ring abababab, 2 of 3 members alive, R=2`,
    'this node    users owned 4, replicated 9, under-replicated 2, to hand over 1, re-mirrored 3.0M',
    '',
    '  NAME       ID        STATUS  STATE  WEIGHT  CPU  SESSIONS  OWNED  UNDER  RING',
    '  a.example  PEER0002  alive   alive  2.5     81%  0         7      1      abababab',
    '* b.example  SELF0001  alive   alive  1       12%  3         4      2      -',
    '  c.example  GONE0003  dead    alive  1       12%  0         -      -      -'
  ])
  assert.deepEqual(gridLines(null), ['grid         off (a standalone node)'])
  assert.equal(shortId('12D3KooWabcdefgh'), 'abcdefgh')
})

test('placement: the ring over alive members, as the nodes compute it', () => {
  const alive = STATUS.members.filter(m => m.status === 'alive')
  const ring = createRing(alive.map(m => ({ id: m.id, weight: m.weight })))
  const g = { ...STATUS, ringVersion: ring.version }
  const p = placement(g, 'alice@example.com', placementRing)
  assert.equal(p.current, true)
  assert.deepEqual(p.replicas.map(r => r.id), ring.replicas('alice@example.com', 2))
  assert.deepEqual(p.replicas.map(r => r.role), ['primary', 'replica'])
  assert.ok(!p.replicas.some(r => r.id === '12D3KooWgoneGONE0003'), 'a dead member holds nothing')
  const lines = placementLines(p, 2)
  assert.match(lines[0], /^alice@example\.com {2}R=2, ring [0-9a-f]{8}$/)
  assert.match(lines[1], /^ {2}primary {2}\S+\.example {2}\S{8} {2}127\.0\.0\.1 {2}smtp 25 {2}imap 143 {2}pop3 110$/)
  assert.equal(placement(STATUS, 'alice@example.com', placementRing).current, false, 'another ring version: say so')
  assert.match(placementLines(placement(STATUS, 'a@b.c', placementRing), 2).at(-1) ?? '', /run it again/)
})

test('a member low on disk: an alarm line on every node, weight 0 in its row, and user where leaves it out for new users', () => {
  const since = Date.UTC(2026, 11, 4, 22, 10, 3)
  const diskLow = { since, floorBytes: 24 * 1024 * 1024, members: STATUS.members.filter(m => m.status === 'alive').map(m => [m.id, m.weight] as [string, number]) }
  const members = STATUS.members.map(m => m.name === 'a.example' ? { ...m, diskLow, diskFreeBytes: 18 * 1024 * 1024 } : m)
  const low: GridStatus = { ...STATUS, members }
  const lines = gridLines(low)
  assert.deepEqual(lines.slice(0, 4), [
    `grid         ring abababab, 2 of 3 members alive, R=2`,
    'this node    users owned 4, replicated 9, under-replicated 2, to hand over 1, re-mirrored 3.0M',
    'alarm        disk low on a.example (PEER0002): 18.0M free, floor 24.0M, since 2026-12-04 22:10:03 UTC; weight 0 for new users and copies (2.5 with room), its users stay',
    ''
  ])
  assert.equal(lines.find(l => l.includes('PEER0002') && !l.startsWith('alarm')), '  a.example  PEER0002  alive   alive  0       81%  0         7      1      abababab')
  // with R=2 and two alive members, a new user's copies need both (R copies come before room); with R=1 it goes elsewhere
  const one = { ...low, replicas: 1 }
  const peer = '12D3KooWpeerPEER0002'
  const users = Array.from({ length: 50 }, (_, i) => `u${i}@example.com`)
  const plain = createRing(STATUS.members.filter(m => m.status === 'alive').map(m => ({ id: m.id, weight: m.weight })))
  assert.ok(users.some(u => plain.replicas(u, 1)[0] === peer), 'the plain ring puts some of them on the low member')
  for (const u of users) {
    assert.notEqual(placement(one, u, placementRing, since + 1).replicas[0].id, peer, `${u}, created after the alarm`)
    assert.equal(placement(one, u, placementRing, since - 1).replicas[0].id, plain.replicas(u, 1)[0], `${u}, created before: where it was`)
  }
})

test('the status line of the data disk: free of total and the floor, LOW with its start when below it', async () => {
  const { diskStatusLine } = await import('../../appliance/commands.ts')
  const M = 1024 * 1024
  assert.deepEqual(diskStatusLine(undefined), [], 'a node from before the check')
  assert.deepEqual(diskStatusLine({ low: false, since: 0, freeBytes: 40 * M, totalBytes: 64 * M, floorBytes: 24 * M }), ['disk         40.0M free of 64.0M, floor 24.0M'])
  assert.deepEqual(diskStatusLine({ low: false, since: 0, freeBytes: 0, totalBytes: 64 * M, floorBytes: 0 }), ['disk         0B free of 64.0M, no floor'])
  assert.deepEqual(diskStatusLine({ low: true, since: Date.UTC(2026, 11, 4, 22, 10, 3), freeBytes: 18 * M, totalBytes: 64 * M, floorBytes: 24 * M }),
    ['disk         18.0M free of 64.0M, floor 24.0M; LOW since 2026-12-04 22:10:03 UTC: no new users or copies here'])
})

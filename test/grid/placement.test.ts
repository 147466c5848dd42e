// Placement with a member low on disk (node/grid/placement.ts), over many keys: it keeps exactly the users it held
// when it went low (so nothing of its own moves), takes no user created afterwards and no new copy after another
// member dies or drains, R copies come before room, the primary is the first replica, and the ring's version
// names the alarm. Also the member list gossiped with the alarm, and the alarm on the wire.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRing } from '../../gossip/ring.ts'
import { decodeHeartbeat, encodeHeartbeat } from '../../gossip/heartbeat.ts'
import type { DiskLow, Member, MemberInfo } from '../../gossip/types.ts'
import { lowDiskMembers, placementRing } from '../../node/grid/placement.ts'
import type { PlacedMember } from '../../node/grid/placement.ts'

const R = 2
const KEYS = Array.from({ length: 600 }, (_, i) => `user${i}@example.com`)
const SINCE = 1_000_000
const OLD = SINCE - 1
const NEW = SINCE

function m (id: string, extra: Partial<PlacedMember> = {}): PlacedMember {
  return { id, status: 'alive', state: 'alive', weight: 1, ...extra }
}

function low (members: PlacedMember[], id: string, frozen = members): PlacedMember[] {
  const diskLow: DiskLow = { since: SINCE, floorBytes: 1, members: frozen.map(x => [x.id, x.weight]) }
  return members.map(x => x.id === id ? { ...x, diskLow } : x)
}

const natural = (members: PlacedMember[]) => createRing(members.filter(x => x.status === 'alive' && x.state === 'alive').map(x => ({ id: x.id, weight: x.weight })))
const at = (created: number | undefined) => () => created

test('without an alarm the ring is the plain weighted ring over alive members in state alive', () => {
  const members = [m('a'), m('b', { weight: 2 }), m('c', { state: 'draining' }), m('d', { status: 'dead' })]
  const ring = placementRing(members, R, at(undefined))
  const plain = natural(members)
  assert.equal(ring.version, plain.version)
  for (const k of KEYS) assert.deepEqual(ring.replicas(k, R), plain.replicas(k, R))
  const allDraining = placementRing([m('a', { state: 'draining' }), m('b', { state: 'draining' })], R, at(undefined))
  assert.equal(allDraining.nodes.length, 2, 'when every member drains, they still hold the users')
})

test('a low member keeps exactly the users it held: nothing of its own moves, nothing else comes to it', () => {
  const members = [m('a'), m('b'), m('c'), m('d', { weight: 2 })]
  const plain = natural(members)
  const ring = placementRing(low(members, 'c'), R, at(OLD))
  assert.notEqual(ring.version, plain.version, 'the alarm is part of the ring version')
  let held = 0
  for (const k of KEYS) {
    assert.deepEqual(ring.replicas(k, R), plain.replicas(k, R), `${k}: old users keep their replicas`)
    if (plain.replicas(k, R).includes('c')) held++
  }
  assert.ok(held > 100, 'c held a share of them')
  const fresh = placementRing(low(members, 'c'), R, at(NEW))
  const unknown = placementRing(low(members, 'c'), R, at(undefined))
  for (const k of KEYS) {
    for (const ring of [fresh, unknown]) {
      const reps = ring.replicas(k, R)
      assert.ok(!reps.includes('c'), `${k}: a user created after the alarm (or not yet known) is not placed on c`)
      assert.equal(reps.length, R)
      assert.deepEqual(reps, plain.replicas(k, 4).filter(x => x !== 'c').slice(0, R), 'the next members in rank order stand in')
      assert.equal(ring.primary(k), reps[0])
    }
  }
})

test('after a death or a drain the low member takes none of the copies that move, and keeps its own', () => {
  const members = [m('a'), m('b'), m('c'), m('d'), m('e')]
  const frozen = members
  for (const [what, changed] of [
    ['b dead', members.map(x => x.id === 'b' ? { ...x, status: 'dead' } : x)],
    ['b draining', members.map(x => x.id === 'b' ? { ...x, state: 'draining' } : x)],
    ['b gone', members.filter(x => x.id !== 'b')]
  ] as Array<[string, PlacedMember[]]>) {
    const before = createRing(frozen.map(x => ({ id: x.id, weight: x.weight })))
    const ring = placementRing(low(changed, 'c', frozen), R, at(OLD))
    const plainAfter = natural(changed)
    let wouldTake = 0
    for (const k of KEYS) {
      const reps = ring.replicas(k, R)
      const heldBefore = before.replicas(k, R).includes('c')
      assert.equal(reps.includes('c'), heldBefore, `${what}, ${k}: c holds it exactly when it held it before`)
      if (!heldBefore && plainAfter.replicas(k, R).includes('c')) wouldTake++
      assert.ok(!reps.includes('b'), `${what}: b holds nothing`)
      assert.equal(reps.length, R)
    }
    assert.ok(wouldTake > 10, `${what}: the plain ring would have given c new copies (${wouldTake})`)
  }
})

test('R copies come before room: with too few members with room, low members fill the set in rank order', () => {
  const members = [m('a'), m('b'), m('c')]
  const twoLow = low(low(members, 'a'), 'b')
  const plain = natural(members)
  const ring = placementRing(twoLow, R, at(NEW))
  for (const k of KEYS) {
    const reps = ring.replicas(k, R)
    assert.equal(reps[0], 'c', 'the member with room leads every new user')
    assert.equal(reps[1], plain.replicas(k, 3).find(x => x !== 'c'), 'the best-ranked low member holds the second copy')
    assert.equal(ring.primary(k), 'c')
  }
  const allLow = placementRing(low(low(low(members, 'a'), 'b'), 'c'), R, at(NEW))
  for (const k of KEYS) assert.deepEqual(allLow.replicas(k, R), plain.replicas(k, R), 'every member low: the plain order')
  assert.deepEqual(placementRing(low(members, 'a'), 1, at(NEW)).replicas('x', 0), [])
})

test('an alarm from a member not on the ring, or with a malformed member list, is handled', () => {
  const members = [m('a'), m('b'), m('c')]
  const dead = low(members, 'c').map(x => x.id === 'c' ? { ...x, status: 'dead' } : x)
  assert.equal(placementRing(dead, R, at(OLD)).version, natural(dead).version, 'a dead member\'s alarm changes nothing')
  const dup = members.map(x => x.id === 'c' ? { ...x, diskLow: { since: SINCE, floorBytes: 1, members: [['c', 1], ['c', 1]] as Array<[string, number]> } } : x)
  const ring = placementRing(dup, R, at(OLD))
  for (const k of KEYS) assert.ok(!ring.replicas(k, R).includes('c'), 'a list it cannot rank keeps nothing on it')
})

test('the member list gossiped with the alarm: itself first, then the others not gone, by id, bounded', () => {
  const member = (id: string, extra: Partial<Member> = {}): Member => ({
    id, incarnation: 1, name: id, addrs: [], host: '', services: {}, weight: 1, state: 'alive', meta: {}, status: 'alive', lastSeen: 0, self: false,
    load: { cpuPct: 0, memUsedBytes: 0, memTotalBytes: 0, diskFreeBytes: 0, netRxBytesPerSec: 0, netTxBytesPerSec: 0, sessions: 0 }, ...extra
  })
  const list = lowDiskMembers('m', [member('z'), member('m', { weight: 3, self: true }), member('b', { status: 'dead' }), member('c', { status: 'left' }), member('d', { state: 'joining' }), member('a', { state: 'draining' })])
  assert.deepEqual(list, [['m', 3], ['a', 1], ['b', 1], ['z', 1]])
  const many = Array.from({ length: 100 }, (_, i) => member(`p${String(i).padStart(3, '0')}`))
  const bounded = lowDiskMembers('p099', many)
  assert.equal(bounded.length, 64)
  assert.equal(bounded[0][0], 'p099', 'itself is never cut off')
})

test('the alarm on the wire: carried whole, checked, and absent from older heartbeats', () => {
  const info: MemberInfo = {
    id: 'peer', incarnation: 2, name: 'n', addrs: [], host: '127.0.0.1', services: { smtp: 25 }, weight: 1, state: 'alive', meta: {},
    load: { cpuPct: 0, memUsedBytes: 0, memTotalBytes: 0, diskFreeBytes: 5, netRxBytesPerSec: 0, netTxBytesPerSec: 0, sessions: 0 }
  }
  assert.equal(decodeHeartbeat(encodeHeartbeat({ seq: 1, info }), 'peer').info.diskLow, undefined)
  const diskLow: DiskLow = { since: 123, floorBytes: 456, members: [['peer', 1], ['other', 2.5]] }
  assert.deepEqual(decodeHeartbeat(encodeHeartbeat({ seq: 1, info: { ...info, diskLow } }), 'peer').info.diskLow, diskLow)
  for (const bad of [
    { since: -1, floorBytes: 1, members: [] },
    { since: 1, floorBytes: 1, members: [['x', 0]] },
    { since: 1, floorBytes: 1, members: [['x']] },
    { since: 1, floorBytes: 1, members: Array.from({ length: 65 }, (_, i) => [`p${i}`, 1]) },
    { since: 1, floorBytes: 1, members: 'x' },
    'low'
  ]) {
    const raw = new TextEncoder().encode(JSON.stringify({ v: 1, seq: 1, info: { ...info, diskLow: bad } }))
    assert.throws(() => decodeHeartbeat(raw, 'peer'), /diskLow/, JSON.stringify(bad).slice(0, 60))
  }
})

// Weighted rendezvous placement: determinism, fair shares, minimal movement, distinct replicas.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { createRing, ringVersion, unitHash } from '../../gossip/ring.ts'
import type { RingNode } from '../../gossip/ring.ts'

const keys = (n: number, prefix = 'user'): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i}@example.org`)

const nodeArb = fc.uniqueArray(
  fc.record({ id: fc.string({ minLength: 1, maxLength: 12 }), weight: fc.integer({ min: 1, max: 40 }).map(w => w / 10) }),
  { minLength: 1, maxLength: 7, selector: n => n.id }
)

describe('ring', () => {
  it('an empty ring places nothing', () => {
    const r = createRing([])
    assert.equal(r.primary('a'), null)
    assert.deepEqual(r.replicas('a', 2), [])
    assert.equal(r.version, ringVersion([]))
  })

  it('unit hashes lie strictly inside (0,1)', () => {
    for (const k of keys(2000)) {
      const u = unitHash('n', k)
      assert.ok(u > 0 && u < 1)
    }
  })

  it('rejects bad weights and duplicate ids', () => {
    assert.throws(() => createRing([{ id: 'a', weight: 0 }]), RangeError)
    assert.throws(() => createRing([{ id: 'a', weight: Number.NaN }]), RangeError)
    assert.throws(() => createRing([{ id: 'a', weight: 1 }, { id: 'a', weight: 2 }]), RangeError)
  })

  it('is deterministic: the same nodes in any order give the same version and placement', () => {
    fc.assert(fc.property(nodeArb, fc.string(), fc.integer({ min: 1, max: 5 }), (nodes, key, r) => {
      const a = createRing(nodes)
      const b = createRing([...nodes].reverse())
      assert.equal(a.version, b.version)
      assert.deepEqual(a.replicas(key, r), b.replicas(key, r))
      assert.equal(a.primary(key), b.primary(key))
    }), { numRuns: 200 })
  })

  it('the version changes with membership and with weights', () => {
    const base = createRing([{ id: 'a', weight: 1 }, { id: 'b', weight: 1 }]).version
    assert.notEqual(createRing([{ id: 'a', weight: 1 }, { id: 'b', weight: 2 }]).version, base)
    assert.notEqual(createRing([{ id: 'a', weight: 1 }]).version, base)
    assert.match(base, /^[0-9a-f]{64}$/)
  })

  it('replicas are distinct, as many as asked (up to the node count), a prefix-stable list headed by the primary', () => {
    fc.assert(fc.property(nodeArb, fc.string(), fc.integer({ min: 0, max: 9 }), (nodes, key, r) => {
      const ring = createRing(nodes)
      const reps = ring.replicas(key, r)
      assert.equal(reps.length, Math.min(r, nodes.length))
      assert.equal(new Set(reps).size, reps.length)
      for (const id of reps) assert.ok(nodes.some(n => n.id === id))
      if (r > 0) assert.equal(reps[0], ring.primary(key))
      assert.deepEqual(ring.replicas(key, r + 1).slice(0, reps.length), reps)
    }), { numRuns: 300 })
  })

  it('shares keys in proportion to weight, within 3 % over 100k keys', () => {
    const nodes: RingNode[] = [{ id: 'n1', weight: 1 }, { id: 'n2', weight: 2 }, { id: 'n3', weight: 3 }, { id: 'n4', weight: 4 }]
    const ring = createRing(nodes)
    const counts = new Map<string, number>()
    const all = keys(100_000)
    for (const k of all) {
      const p = ring.primary(k) as string
      counts.set(p, (counts.get(p) ?? 0) + 1)
    }
    for (const n of nodes) {
      const expected = all.length * n.weight / 10
      const got = counts.get(n.id) ?? 0
      assert.ok(Math.abs(got / expected - 1) < 0.03, `${n.id}: ${got} keys, expected about ${expected}`)
    }
  })

  it('adding a node moves about its share of keys, and only onto it', () => {
    const before: RingNode[] = [{ id: 'a', weight: 1 }, { id: 'b', weight: 1 }, { id: 'c', weight: 1 }]
    const r1 = createRing(before)
    const r2 = createRing([...before, { id: 'd', weight: 1 }])
    const all = keys(40_000)
    let moved = 0
    for (const k of all) {
      const p1 = r1.primary(k)
      const p2 = r2.primary(k)
      if (p1 !== p2) {
        moved++
        assert.equal(p2, 'd', `key ${k} moved from ${p1} to ${p2}`)
      }
    }
    assert.ok(Math.abs(moved / all.length - 0.25) < 0.02, `moved ${moved} of ${all.length}`)
  })

  it('adding a node never moves a key between old nodes, for any nodes and weights (replica sets included)', () => {
    fc.assert(fc.property(nodeArb, fc.integer({ min: 1, max: 40 }), (nodes, w) => {
      const added = { id: '\u0000new', weight: w / 10 }
      const r1 = createRing(nodes)
      const r2 = createRing([...nodes, added])
      for (const k of keys(300)) {
        const s1 = r1.replicas(k, 2)
        const s2 = r2.replicas(k, 2)
        // The new list is the old one with the new node inserted somewhere (and the tail cut).
        assert.deepEqual(s2.filter(id => id !== added.id), s1.slice(0, s2.filter(id => id !== added.id).length))
      }
    }), { numRuns: 60 })
  })

  it('removing a node moves only its keys, and its share goes to the others by weight', () => {
    fc.assert(fc.property(nodeArb.filter(ns => ns.length >= 2), fc.nat(), (nodes, pick) => {
      const gone = nodes[pick % nodes.length] as RingNode
      const r1 = createRing(nodes)
      const r2 = createRing(nodes.filter(n => n.id !== gone.id))
      for (const k of keys(300)) {
        const s1 = r1.replicas(k, 3)
        const s2 = r2.replicas(k, 3)
        // Survivors keep their relative order; the lost node's place is taken by the next in line.
        assert.deepEqual(s2.slice(0, s1.filter(id => id !== gone.id).length), s1.filter(id => id !== gone.id))
        if (r1.primary(k) !== gone.id) assert.equal(r2.primary(k), r1.primary(k))
      }
    }), { numRuns: 60 })
  })

  it('ring nodes are frozen', () => {
    const ring = createRing([{ id: 'a', weight: 1 }])
    assert.throws(() => { (ring.nodes as RingNode[]).push({ id: 'b', weight: 1 }) })
  })
})

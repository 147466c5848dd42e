// Weighted rendezvous (highest-random-weight) placement. For a key, every node gets the score
// -weight / ln(u), where u in (0,1) is a hash of (node, key); the nodes ranked by score are the key's
// preference list. With this "logarithmic method" (Schindelhauer & Schomaker, "Weighted distributed hash
// tables", SPAA 2005; also Resch's weighted rendezvous hashing) a node's expected share of keys is exactly its
// weight over the total, adding a node moves keys only onto it, and removing a node moves only its keys.
// No virtual nodes and no state beyond the member list, so every node with the same view computes the same
// placement; `version` names that view.

import { hash } from 'node:crypto'
import type { Ring } from './types.ts'

export interface RingNode {
  id: string
  weight: number
}

const TWO_POW_53 = 2 ** 53

/** Keys whose order one ring keeps (a few hundred bytes each); past this the memo starts again. */
const RING_ORDERS_CACHED_MAX = 100_000

/** u in the open interval (0,1) from SHA-256 of (node, key): 53 bits, offset by half a step so never 0 or 1. */
export function unitHash (nodeId: string, key: string): number {
  const d = hash('sha256', `${nodeId}\n${key}`, 'buffer')
  const hi = d.readUInt32BE(0) >>> 11 // 21 bits
  const lo = d.readUInt32BE(4) // 32 bits
  return (hi * 2 ** 32 + lo + 0.5) / TWO_POW_53
}

export function score (node: RingNode, key: string): number {
  return -node.weight / Math.log(unitHash(node.id, key))
}

/** Hex SHA-256 of the sorted (id, weight) pairs. */
export function ringVersion (nodes: ReadonlyArray<RingNode>): string {
  const sorted = [...nodes].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  return hash('sha256', JSON.stringify(sorted.map(n => [n.id, n.weight])), 'hex')
}

export function createRing (input: ReadonlyArray<RingNode>): Ring {
  const byId = new Map<string, RingNode>()
  for (const n of input) {
    if (!(Number.isFinite(n.weight) && n.weight > 0)) throw new RangeError(`ring: weight of ${n.id} must be a positive number`)
    if (byId.has(n.id)) throw new RangeError(`ring: node ${n.id} appears twice`)
    byId.set(n.id, { id: n.id, weight: n.weight })
  }
  const nodes = [...byId.values()].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  const version = ringVersion(nodes)

  // Ties in score are astronomically rare; breaking them by id keeps the order total and deterministic.
  // A ring never changes, so a key's order is computed once (one SHA-256 per node and key) and kept: the write
  // path asks for the same users' primaries and replicas several times per message.
  const orders = new Map<string, readonly string[]>()
  const ranked = (key: string): readonly string[] => {
    const hit = orders.get(key)
    if (hit !== undefined) return hit
    const order = nodes.map(n => ({ id: n.id, s: score(n, key) }))
      .sort((a, b) => b.s - a.s || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map(x => x.id)
    if (orders.size >= RING_ORDERS_CACHED_MAX) orders.clear()
    orders.set(key, order)
    return order
  }

  return {
    version,
    nodes: Object.freeze(nodes.map(n => Object.freeze({ ...n }))),
    replicas (key: string, r: number): string[] {
      if (!Number.isInteger(r) || r < 0) throw new RangeError('ring: r must be a non-negative integer')
      if (r === 0 || nodes.length === 0) return []
      return ranked(key).slice(0, r)
    },
    primary (key: string): string | null {
      return ranked(key)[0] ?? null
    }
  }
}

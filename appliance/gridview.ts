// The grid as an operator reads it: the lines `mailgrid status` and `mailgrid cluster status` print from a
// node's GridStatus (ring version, R, every member with its state, weight and load, users owned and
// under-replicated). Pure formatting: the numbers come from the admin API.

import type { GridStatus } from '../node/grid/index.ts'

export const ID_SHORT_CHARS = 8 // the tail of a peer id: the head ("12D3KooW") is the same for every Ed25519 key
export const RING_SHORT_CHARS = 8

/** The distinguishing tail of a libp2p peer id. */
export function shortId (id: string): string {
  return id.length <= ID_SHORT_CHARS ? id : id.slice(-ID_SHORT_CHARS)
}

type GridMember = GridStatus['members'][number]

function metaNumber (m: GridMember, key: string): number | null {
  const v = m.meta?.[key]
  return typeof v === 'number' && Number.isFinite(v) ? v : null
}

/** Columns padded to their widest cell; the last column is not padded. */
export function table (rows: string[][]): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map(r => (r[i] ?? '').length)))
  return rows.map(r => r.map((c, i) => i === r.length - 1 ? c : c.padEnd(widths[i])).join('  ').trimEnd())
}

export function formatBytes (n: number): string {
  if (n < 1024) return `${n}B`
  const units = ['K', 'M', 'G', 'T']
  let v = n
  let u = -1
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++ }
  return `${v.toFixed(1)}${units[u]}`
}

/**
 * The grid section of a status: a summary, then one row per member (this node marked '*'). A member's users owned and
 * under-replicated are those it gossips in its meta; where it gossips none yet, this node's own numbers
 * stand in for itself and a dash for the others.
 */
export function gridLines (g: GridStatus | null): string[] {
  if (g === null || g === undefined) return ['grid         off (a standalone node)']
  const alive = g.members.filter(m => m.status === 'alive').length
  const lines = [
    `grid         ring ${g.ringVersion.slice(0, RING_SHORT_CHARS)}, ${alive} of ${g.members.length} members alive, R=${g.replicas}`,
    `this node    users owned ${g.usersOwned}, replicated ${g.usersReplicated}, under-replicated ${g.underReplicated}, to hand over ${g.handoffPending ?? 0}, re-mirrored ${formatBytes(g.remirroredBytes)}`,
    ''
  ]
  const rows = [['  NAME', 'ID', 'STATUS', 'STATE', 'WEIGHT', 'CPU', 'SESSIONS', 'OWNED', 'UNDER', 'RING']]
  const members = [...g.members].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id))
  lines.splice(2, 0, ...members.filter(m => m.diskLow !== undefined && m.status !== 'left').map(diskAlarm))
  for (const m of members) {
    const self = m.id === g.self
    const owned = metaNumber(m, 'usersOwned') ?? (self ? g.usersOwned : null)
    const under = metaNumber(m, 'underReplicated') ?? (self ? g.underReplicated : null)
    const ring = typeof m.meta?.ring === 'string' ? m.meta.ring.slice(0, RING_SHORT_CHARS) : '-'
    rows.push([
      // a member low on disk weighs nothing for new users and copies (it keeps the ones it has)
      `${self ? '*' : ' '} ${m.name}`, shortId(m.id), m.status, m.state, m.diskLow !== undefined ? '0' : String(m.weight), `${Math.round(m.cpuPct)}%`, String(m.sessions),
      owned === null ? '-' : String(owned), under === null ? '-' : String(under), ring
    ])
  }
  return [...lines, ...table(rows)]
}

/** The alarm line of a member whose data disk is below its free-space floor (it gossips `diskLow`). */
export function diskAlarm (m: GridMember): string {
  const low = m.diskLow
  const free = m.diskFreeBytes === undefined ? '' : `${formatBytes(m.diskFreeBytes)} free, `
  const since = low === undefined ? '' : `, since ${new Date(low.since).toISOString().replace('T', ' ').slice(0, 19)} UTC`
  return `alarm        disk low on ${m.name} (${shortId(m.id)}): ${free}floor ${formatBytes(low?.floorBytes ?? 0)}${since}; ` +
    `weight 0 for new users and copies (${m.weight} with room), its users stay`
}

export interface Placement {
  address: string
  ringVersion: string
  /** False when the member list this node reported is not the one its ring was built from (it just changed). */
  current: boolean
  replicas: Array<{ role: 'primary' | 'replica', id: string, name: string, host: string, services: Record<string, number> }>
}

/** node/grid/placement.ts `placementRing`, passed in so this file stays free of the ring's code. */
type PlacementRingFactory = (members: GridStatus['members'], r: number, createdOf: (key: string) => number | undefined) => { version: string, replicas (key: string, r: number): string[] }

/**
 * Where a user's mail lives, computed as every node computes it (node/grid/placement.ts): the ring over the members
 * that are alive and in state alive (draining ones move their users away), a member low on disk only for users it
 * held when it went low (hence `created`, the user's creation time), the user's normalized address as the key,
 * the first R of its preference list.
 */
export function placement (g: GridStatus, address: string, placementRing: PlacementRingFactory, created?: number): Placement {
  const ring = placementRing(g.members, g.replicas, key => key === address ? created : undefined)
  const byId = new Map(g.members.map(m => [m.id, m]))
  return {
    address,
    ringVersion: ring.version,
    current: ring.version === g.ringVersion,
    replicas: ring.replicas(address, g.replicas).map((id, i) => {
      const m = byId.get(id)
      return { role: i === 0 ? 'primary' : 'replica', id, name: m?.name ?? '?', host: m?.host ?? '?', services: m?.services ?? {} }
    })
  }
}

const WHERE_SERVICES = ['smtp', 'imap', 'pop3'] as const

export function placementLines (p: Placement, replicas: number): string[] {
  const rows = p.replicas.map(r => [r.role, r.name, shortId(r.id), r.host, ...WHERE_SERVICES.map(s => `${s} ${r.services[s] ?? '-'}`)])
  return [
    `${p.address}  R=${replicas}, ring ${p.ringVersion.slice(0, RING_SHORT_CHARS)}`,
    ...(rows.length === 0 ? ['  no alive member holds it'] : table(rows).map(l => `  ${l}`)),
    ...(p.current ? [] : ['  (the grid changed while this was computed: run it again)'])
  ]
}

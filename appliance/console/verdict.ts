// The Grid page's headline: can the grid lose a node now, without a user's mail ending on a single copy with
// nowhere to make another? From the grid status this node has (every member's gossiped state and the
// under-replicated count each member publishes for the users it is primary of) and, for an ETA, the recent
// history of those counts. Pure: the numbers come in, the sentence goes out.

import type { GridStatus } from '../../node/grid/index.ts'

export interface Verdict {
  ok: boolean
  reason: string
  /** Users with fewer than R up-to-date copies, summed over the members that report it. */
  underReplicated: number
  /** Seconds until re-mirroring is done at the rate of the last minute; null: not re-mirroring, or no rate yet. */
  etaSeconds: number | null
}

type Member = GridStatus['members'][number]
const ETA_WINDOW_MS = 60_000

const names = (ms: Member[]): string => ms.map(m => m.name === '' ? m.id.slice(-8) : m.name).join(', ')

function underOf (m: Member, g: GridStatus): number {
  const v = m.meta?.underReplicated
  if (typeof v === 'number' && Number.isFinite(v) && v >= 0) return v
  return m.id === g.self ? g.underReplicated : 0
}

/** The rate the summed under-replicated count fell at over the last minute of samples (users per second). */
function eta (under: number, history: Map<string, Array<{ t: number, under: number }>>, ids: string[]): number | null {
  if (under === 0) return null
  const series = ids.map(id => history.get(id) ?? []).filter(s => s.length > 1)
  if (series.length === 0) return null
  const last = Math.max(...series.map(s => s[s.length - 1].t))
  const from = last - ETA_WINDOW_MS
  let fell = 0
  let span = 0
  for (const s of series) {
    const window = s.filter(x => x.t >= from)
    if (window.length < 2) continue
    fell += window[0].under - window[window.length - 1].under
    span = Math.max(span, window[window.length - 1].t - window[0].t)
  }
  if (fell <= 0 || span <= 0) return null
  return Math.ceil(under / (fell / (span / 1000)))
}

export function verdict (g: GridStatus | null, history: Map<string, Array<{ t: number, under: number }>> = new Map()): Verdict {
  if (g === null) return { ok: false, reason: 'No: this is a standalone node; every mailbox has one copy', underReplicated: 0, etaSeconds: null }
  const R = g.replicas
  const present = g.members.filter(m => m.status !== 'left')
  const alive = present.filter(m => m.status === 'alive')
  const holding = alive.filter(m => m.state === 'alive' && m.diskLow === undefined)
  const suspect = present.filter(m => m.status === 'suspect')
  const dead = present.filter(m => m.status === 'dead')
  const under = alive.reduce((n, m) => n + underOf(m, g), 0)
  const stale = alive.filter(m => m.id !== g.self && typeof m.meta?.ring === 'string' && m.meta.ring !== g.ringVersion)
  const gone = [
    ...(dead.length > 0 ? [`${names(dead)} ${dead.length === 1 ? 'is' : 'are'} dead`] : []),
    ...(suspect.length > 0 ? [`${names(suspect)} ${suspect.length === 1 ? 'is' : 'are'} not answering`] : [])
  ]
  const no = (reason: string, etaSeconds: number | null = null): Verdict => ({ ok: false, reason: `No: ${reason}`, underReplicated: under, etaSeconds })

  if (R < 2) return no(`R=${R}: every user has a single copy`)
  if (suspect.length > 0) return no(`${names(suspect)} ${suspect.length === 1 ? 'is' : 'are'} not answering (suspect); its users may be down to one copy`)
  if (under > 0) {
    const s = eta(under, history, alive.map(m => m.id))
    const draining = present.filter(m => m.state === 'draining')
    const why = [...gone, ...(draining.length > 0 ? [`${names(draining)} draining`] : [])]
    return no(`${under} user${under === 1 ? ' has' : 's have'} fewer than ${R} copies while the grid re-mirrors${why.length > 0 ? ` (${why.join('; ')})` : ''}, ${s === null ? 'time left not known yet' : `about ${s} s left`}`, s)
  }
  if (stale.length > 0) return no(`the ring just changed; ${names(stale)} ${stale.length === 1 ? 'has' : 'have'} not counted its copies yet`)
  if (holding.length <= R) {
    return no(`only ${holding.length} node${holding.length === 1 ? '' : 's'} hold${holding.length === 1 ? 's' : ''} copies for R=${R}${gone.length > 0 ? ` (${gone.join('; ')})` : ''}: losing one leaves users with a single copy and nowhere to make another`)
  }
  return {
    ok: true,
    reason: `Yes: every user has ${R} copies on ${holding.length} nodes; after losing one, ${holding.length - 1} remain to re-mirror onto${gone.length > 0 ? ` (${gone.join('; ')}, its users already re-mirrored)` : ''}`,
    underReplicated: 0,
    etaSeconds: null
  }
}

/**
 * Whether restarting member `id` now could leave a user with no live copy while it is down, and why (null: safe).
 * From the same facts as the verdict: with R=1 its users have their only copy there; while a member is not answering,
 * or users have fewer than R copies (re-mirroring), the restarting member may hold the last one; and it must not be
 * the last member holding copies. A restart of a grid that merely cannot lose a node for good (R nodes for R copies)
 * is allowed: every user keeps a copy on another node meanwhile.
 */
export function restartRisk (g: GridStatus | null, id: string): string | null {
  if (g === null) return 'this is a standalone node; its mailboxes have no other copy'
  const target = g.members.find(m => m.id === id)
  const R = g.replicas
  const present = g.members.filter(m => m.status !== 'left')
  const alive = present.filter(m => m.status === 'alive')
  const suspect = present.filter(m => m.status === 'suspect')
  const under = alive.reduce((n, m) => n + underOf(m, g), 0)
  const others = alive.filter(m => m.id !== id && m.state === 'alive' && m.diskLow === undefined)
  if (target === undefined || target.status !== 'alive') return null // not serving anything now
  if (R < 2) return `R=${R}: every user has a single copy, the ones on ${names([target])} would be down until it is back`
  if (suspect.length > 0) return `${names(suspect)} ${suspect.length === 1 ? 'is' : 'are'} not answering; some users may have their last copy on ${names([target])}`
  if (under > 0) return `${under} user${under === 1 ? ' has' : 's have'} fewer than ${R} copies while the grid re-mirrors; some may have their last copy on ${names([target])}`
  if (others.length === 0) return `no other node holds copies`
  return null
}

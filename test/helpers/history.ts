// The history of a fault run and its checker (Jepsen's way: judge the run by everything the clients were told,
// not by the last state alone). Operations are recorded with their start and end times in ms from the start of
// the run; an operation whose outcome the client never heard (a timeout, a dropped connection) is 'unknown': it
// may or may not have happened, so it is never counted as acknowledged and never as lost.
//
// What the checker requires:
// - every acknowledged message (SMTP 250, APPEND OK) is in the final state exactly once, in its user's INBOX,
//   and every message the run sent and did not hear about is there at most once; no read ever shows one
//   Message-ID twice;
// - within one UIDVALIDITY a UID names one message, over every read of the run and every APPENDUID;
// - per message, MODSEQ and UID never go down from one read to a later one (reads that overlap are not ordered);
// - UIDVALIDITY of a user's INBOX never changes;
// - every acknowledged keyword STORE is set on its message at the end.
// Split windows: a partition in force, until SPLIT_GRACE_MS after its heal (or after the return of a cut-off node
// killed before then); and a lone survivor (kills left one node alive, so it took mail as the only copy of its
// users) that is killed before SPLIT_GRACE_MS after another node is back beside it: the others go on without
// what only it holds until its return (plus the grace). The design accepts deliveries on both
// sides of a partition, each side's primary numbers them from its own copy, and the merge after the heal moves
// both sides' messages off the contested UIDs (README, "Consistency model"). So a UID seen naming two messages
// where one sighting falls in a split window is reported apart, as a split-view conflict, and then no sighting
// after that window may show the UID at all; a MODSEQ below an earlier one is allowed only in a sighting inside a
// split window (a side's stale copy). Every other conflict is a violation.

export const SPLIT_GRACE_MS = 10_000 // merges after a heal finish well inside this (measured: 1-3 s)

export type Outcome = 'ok' | 'fail' | 'unknown'

export interface Seen {
  uid: number
  id: string // Message-ID
  modseq: number
  flags: string[]
}

export type Op =
  | { kind: 'deliver', t0: number, t1: number, via: string, id: string, user: string, outcome: Outcome }
  | { kind: 'append', t0: number, t1: number, via: string, id: string, user: string, outcome: Outcome, uidValidity?: number, uid?: number, why?: string }
  | { kind: 'store', t0: number, t1: number, via: string, id: string, user: string, uid: number, kw: string, outcome: Outcome, why?: string }
  | { kind: 'read', t0: number, t1: number, via: string, user: string, uidValidity: number, msgs: Seen[], final?: boolean }
  | { kind: 'fault', t0: number, t1: number, what: string }

export interface CheckResult {
  violations: string[]
  splitConflicts: string[]
  stats: { acked: number, unknown: number, appendsAcked: number, storesAcked: number, reads: number, observations: number, faults: number, splitPct: number }
}

/**
 * Split windows from the fault records: 'partition X' opens one, 'heal' closes every open one (plus the grace). A
 * node that was cut off and is killed before the window closes holds the only copy of its side's changes, which
 * no merge can take until it is back: the window lasts until the grace after its restart.
 *
 * With `nodes` (every node of the run, all alive at its start), a lone survivor opens one too: a kill left it the
 * only node alive, so what it takes is durable on it alone (DESIGN: on every alive replica), and when it is killed
 * before the grace after another node is back beside it, the others go on numbering mail from copies that lack
 * it: a side of its own from the kill that left it alone until the grace after its restart. A survivor that
 * lives on past that grace has been caught up from (or still serves its users), and opens no window. Without
 * `nodes` only partitions open windows.
 */
export function splitWindows (ops: Op[], endMs: number, nodes?: readonly string[]): Array<[number, number]> {
  const faults = ops.filter((o): o is Extract<Op, { kind: 'fault' }> => o.kind === 'fault')
  const out: Array<{ from: number, to: number, cut: Set<string> }> = []
  let open: { from: number, cut: Set<string> } | null = null
  for (const op of faults) {
    if (op.what.startsWith('partition ')) {
      open ??= { from: op.t0, cut: new Set() }
      open.cut.add(op.what.slice('partition '.length))
    }
    if (op.what === 'heal' && open !== null) {
      out.push({ ...open, to: op.t1 + SPLIT_GRACE_MS })
      open = null
    }
  }
  if (open !== null) out.push({ ...open, to: endMs + SPLIT_GRACE_MS })
  if (nodes !== undefined && nodes.length > 1) {
    // [from, to] while one node is alone; a window only when it is killed within it
    const alive = new Set(nodes)
    const lone: Array<{ from: number, to: number, cut: Set<string> }> = []
    let open: { from: number, cut: Set<string> } | null = null
    for (const op of faults) {
      if (op.what.startsWith('kill ')) {
        alive.delete(op.what.slice('kill '.length))
        if (alive.size === 1 && open === null) open = { from: op.t0, cut: new Set(alive) }
      } else if (op.what.startsWith('restart ')) {
        const node = op.what.slice('restart '.length)
        alive.add(node)
        // back beside the survivor (not the survivor back alone, nor another node while it is still dead)
        if (open !== null && !open.cut.has(node) && [...open.cut].every(n => alive.has(n))) {
          lone.push({ ...open, to: op.t1 + SPLIT_GRACE_MS })
          open = null
        }
      }
    }
    if (open !== null) lone.push({ ...open, to: endMs + SPLIT_GRACE_MS })
    const killed = (w: { from: number, to: number, cut: Set<string> }): boolean =>
      faults.some(f => f.t0 >= w.from && f.t0 <= w.to && f.what.startsWith('kill ') && w.cut.has(f.what.slice('kill '.length)))
    out.push(...lone.filter(killed))
  }
  const backAt = (node: string, after: number): number => faults.find(f => f.t0 > after && f.what === `restart ${node}`)?.t0 ?? endMs
  return out.map(({ from, to, cut }) => {
    let end = to
    for (const f of faults) {
      if (f.t0 < from || f.t0 > end || !f.what.startsWith('kill ') || !cut.has(f.what.slice('kill '.length))) continue
      end = Math.max(end, backAt(f.what.slice('kill '.length), f.t0) + SPLIT_GRACE_MS)
    }
    return [from, end]
  })
}

/** How much of [0, endMs] the windows cover: the share of the run where UID and MODSEQ checks are weaker. */
function covered (windows: Array<[number, number]>, endMs: number): number {
  let sum = 0
  let reached = 0
  for (const [a, b] of [...windows].sort((x, y) => x[0] - y[0])) {
    const from = Math.max(a, reached)
    const to = Math.min(b, endMs)
    if (to > from) sum += to - from
    reached = Math.max(reached, to)
  }
  return sum
}

interface Obs { t0: number, t1: number, via: string, what: string }

export function checkHistory (ops: Op[], endMs: number, nodes?: readonly string[]): CheckResult {
  const violations: string[] = []
  const splitConflicts: string[] = []
  const windows = splitWindows(ops, endMs, nodes)
  const inSplit = (o: Obs): boolean => windows.some(([a, b]) => o.t1 >= a && o.t0 <= b)
  const reported = new Set<string>()
  const conflict = (a: Obs, b: Obs, what: string, explained = inSplit(a) || inSplit(b)): void => {
    if (reported.has(what)) return // one line per conflict, however many reads saw it
    reported.add(what)
    const line = `${what}: ${a.what} (${a.via}, ${a.t0}-${a.t1} ms) vs ${b.what} (${b.via}, ${b.t0}-${b.t1} ms)`
    if (explained) splitConflicts.push(line)
    else violations.push(line)
  }

  const reads = ops.filter((o): o is Extract<Op, { kind: 'read' }> => o.kind === 'read').sort((a, b) => a.t0 - b.t0)
  const finals = reads.filter(r => r.final === true)
  const sent = new Map<string, { user: string, acked: boolean }>()
  for (const op of ops) {
    if (op.kind !== 'deliver' && op.kind !== 'append') continue
    const prev = sent.get(op.id)
    sent.set(op.id, { user: op.user, acked: (prev?.acked ?? false) || op.outcome === 'ok' })
  }

  // every sighting of a UID (reads and APPENDUIDs) and of a message's MODSEQ, judged after the pass below
  const byUid = new Map<string, Array<{ id: string, obs: Obs }>>()
  const seeUid = (user: string, validity: number, uid: number, id: string, obs: Obs): void => {
    const key = `${user} ${validity} ${uid}`
    const list = byUid.get(key)
    if (list === undefined) byUid.set(key, [{ id, obs }])
    else list.push({ id, obs })
  }
  const modseqs = new Map<string, Array<{ modseq: number, uid: number, obs: Obs }>>()
  const validityOf = new Map<string, { v: number, obs: Obs }>()
  let observations = 0

  for (const op of ops) {
    if (op.kind === 'append' && op.outcome === 'ok' && op.uidValidity !== undefined && op.uid !== undefined) {
      seeUid(op.user, op.uidValidity, op.uid, op.id, { t0: op.t0, t1: op.t1, via: op.via, what: `APPENDUID ${op.uid}` })
    }
  }
  for (const r of reads) {
    const obs: Obs = { t0: r.t0, t1: r.t1, via: r.via, what: r.final === true ? 'final read' : 'read' }
    const v = validityOf.get(r.user)
    if (v === undefined) validityOf.set(r.user, { v: r.uidValidity, obs })
    else if (v.v !== r.uidValidity) violations.push(`UIDVALIDITY of ${r.user} changed from ${v.v} (${v.obs.via}, ${v.obs.t0} ms) to ${r.uidValidity} (${r.via}, ${r.t0} ms)`)
    const ids = new Set<string>()
    for (const m of r.msgs) {
      observations++
      if (ids.has(m.id)) violations.push(`${m.id} twice in one read of ${r.user} through ${r.via} at ${r.t0} ms`)
      ids.add(m.id)
      const owner = sent.get(m.id)
      if (owner === undefined) violations.push(`${m.id} in ${r.user}'s INBOX was never sent (read through ${r.via} at ${r.t0} ms)`)
      else if (owner.user !== r.user) violations.push(`${m.id} for ${owner.user} is in ${r.user}'s INBOX (read through ${r.via} at ${r.t0} ms)`)
      seeUid(r.user, r.uidValidity, m.uid, m.id, { ...obs, what: `${obs.what} UID ${m.uid}` })
      const key = `${r.user} ${m.id}`
      const list = modseqs.get(key) ?? []
      list.push({ modseq: m.modseq, uid: m.uid, obs: { ...obs, what: `${obs.what} UID ${m.uid} MODSEQ ${m.modseq}` } })
      modseqs.set(key, list)
    }
  }

  // A UID that named two messages: a violation unless one sighting was in a split window; then the merge after
  // the heal must have moved both off it, so no sighting after the end of that window may show the UID at all.
  const windowEnd = (o: Obs): number => Math.max(-Infinity, ...windows.filter(([a, b]) => o.t1 >= a && o.t0 <= b).map(([, b]) => b))
  for (const [key, list] of byUid) {
    const [user, validity, uid] = key.split(' ')
    let explainedUntil = Infinity // the earliest end of a split window that explains one of the conflicts
    for (let i = 0; i < list.length; i++) {
      for (let j = 0; j < i; j++) {
        if (list[j].id === list[i].id) continue
        const [a, b] = list[j].obs.t0 <= list[i].obs.t0 ? [list[j], list[i]] : [list[i], list[j]]
        conflict(a.obs, b.obs, `UID ${uid} of ${user} (UIDVALIDITY ${validity}) named ${a.id} and ${b.id}`)
        const end = Math.max(windowEnd(a.obs), windowEnd(b.obs))
        if (end > -Infinity) explainedUntil = Math.min(explainedUntil, end)
        break
      }
    }
    if (explainedUntil === Infinity) continue
    const late = list.find(x => x.obs.t0 > explainedUntil && !inSplit(x.obs))
    if (late !== undefined) violations.push(`UID ${uid} of ${user} (UIDVALIDITY ${validity}) named two messages in a split, and still names ${late.id} after the heal: ${late.obs.what} (${late.obs.via}, ${late.obs.t0} ms)`)
  }

  // Per message, MODSEQ and UID never below what a read that ended before was shown (a renumbered message moves up,
  // never down): a sighting in a split window may be stale (a side's own copy); one outside must be at least the
  // highest ever seen.
  for (const [key, list] of modseqs) {
    const id = key.split(' ')[1]
    for (const field of ['modseq', 'uid'] as const) {
      let best: { modseq: number, uid: number, obs: Obs } | null = null
      const byEnd = [...list].sort((x, y) => x.obs.t1 - y.obs.t1)
      let k = 0
      for (const cur of [...list].sort((x, y) => x.obs.t0 - y.obs.t0)) {
        while (k < byEnd.length && byEnd[k].obs.t1 < cur.obs.t0) {
          if (best === null || byEnd[k][field] > best[field]) best = byEnd[k]
          k++
        }
        if (best !== null && cur[field] < best[field]) conflict(best.obs, cur.obs, `${field === 'uid' ? 'UID' : 'MODSEQ'} of ${id} went down`, inSplit(cur.obs))
      }
    }
  }

  // the end state: every final read (one per user and node) holds each acknowledged message once, none twice
  if (finals.length === 0) violations.push('no final read')
  for (const r of finals) {
    const present = new Set(r.msgs.map(m => m.id))
    for (const [id, s] of sent) {
      if (s.user !== r.user) continue
      if (s.acked && !present.has(id)) violations.push(`acknowledged ${id} missing from ${r.user}'s INBOX read through ${r.via}`)
    }
  }
  for (const op of ops) {
    if (op.kind !== 'store' || op.outcome !== 'ok') continue
    for (const r of finals.filter(f => f.user === op.user)) {
      const m = r.msgs.find(x => x.id === op.id)
      if (m !== undefined && !m.flags.includes(op.kw)) violations.push(`acknowledged keyword ${op.kw} on ${op.id} (STORE at ${op.t0} ms through ${op.via}) missing in the final read through ${r.via}`)
    }
  }

  const count = (kind: Op['kind'], outcome?: Outcome): number => ops.filter(o => o.kind === kind && (outcome === undefined || (o as { outcome?: Outcome }).outcome === outcome)).length
  return {
    violations,
    splitConflicts,
    stats: {
      acked: count('deliver', 'ok'),
      unknown: count('deliver', 'unknown') + count('append', 'unknown') + count('store', 'unknown'),
      appendsAcked: count('append', 'ok'),
      storesAcked: count('store', 'ok'),
      reads: reads.length,
      observations,
      faults: count('fault'),
      splitPct: endMs > 0 ? Math.round(100 * covered(windows, endMs) / endMs) : 0
    }
  }
}

/** The operations around a time, one short line each, for a failure message. */
export function excerpt (ops: Op[], atMs: number, spanMs = 5_000, linesMax = 40): string {
  const near = ops.filter(o => o.t1 >= atMs - spanMs && o.t0 <= atMs + spanMs).slice(0, linesMax)
  return near.map(o => {
    switch (o.kind) {
      case 'fault': return `${o.t0} ${o.what}`
      case 'read': return `${o.t0}-${o.t1} read ${o.user}@${o.via} v${o.uidValidity} ${o.msgs.map(m => `${m.uid}=${m.id.replace(/@.*$/, '')}/${m.modseq}`).join(',')}`
      case 'store': return `${o.t0}-${o.t1} store ${o.kw} ${o.id} uid ${o.uid}@${o.via} ${o.outcome}`
      case 'append': return `${o.t0}-${o.t1} append ${o.id}@${o.via} ${o.outcome}${o.uid !== undefined ? ` uid ${o.uid}` : ''}`
      case 'deliver': return `${o.t0}-${o.t1} deliver ${o.id}@${o.via} ${o.outcome}`
      default: return ''
    }
  }).join('\n')
}

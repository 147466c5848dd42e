// What a stretch of a user's log did, in terms of global message ids: which messages it added, whose flags
// it changed, which it removed, and how far each mailbox's UIDNEXT moved. Two copies of a log that diverged
// after a partition are merged from these summaries (the grid's merge), because UIDs on the two sides mean
// different messages but global ids do not.

import type { LogEntry } from './types.ts'

export interface AddedMessage {
  gid: string
  mailbox: string // name at the end of the stretch
  flags: string[]
  internalDate: number
  blob: string
  prefix: string
  saved?: number // when it was saved into its mailbox (RFC 8514); absent for entries written before it existed
}

export interface LogSummary {
  from: number // first position summarized
  to: number // last position
  added: AddedMessage[] // messages that did not exist before `from` and still exist at `to`
  flags: Record<string, string[]> // gid → final flags, for messages that existed before and whose flags changed
  expunged: string[] // gids that existed before `from` and are gone at `to`
  relocated?: Record<string, string> // gid → mailbox name at `to`, for messages that existed before `from` in another mailbox (MOVE keeps the gid; absent from older nodes)
  uidNextBefore: Record<string, number> // mailbox name → UIDNEXT just before `from`
  uidNextAfter: Record<string, number> // mailbox name → UIDNEXT at `to`
  everSeen: string[] // every gid the whole log ever appended (merges never resurrect what one side knew)
  modseqAfter: number // the highest MODSEQ the log assigned up to `to` (a merge numbers its changes above it)
  attrs?: Record<string, AttrChange> // user attributes changed in from..to: key → the last change (absent from older nodes)
}

/** The last change of one user attribute in a stretch of log (value null: removed). */
export interface AttrChange { value: string | null, at: number }

/**
 * Whether change `a` beats change `b` of the same attribute when both sides of a merge changed it: the later `at`,
 * then the greater value (null lowest). The same answer on every node, whichever side merges.
 */
export function attrWins (a: AttrChange, b: AttrChange): boolean {
  if (a.at !== b.at) return a.at > b.at
  if (a.value === b.value) return false
  if (b.value === null) return true
  if (a.value === null) return false
  return a.value > b.value
}

interface Msg { gid: string, flags: string[], internalDate: number, blob: string, prefix: string, saved?: number }

/** Replays a whole log (positions 1..n, in order) and summarizes positions from..n. */
export function summarizeLog (entries: LogEntry[], from: number): LogSummary {
  const boxes = new Map<string, { name: string, uidNext: number, msgs: Map<number, Msg> }>()
  const ever = new Set<string>()
  const before = new Map<string, string>() // gid → mailbox id just before `from`
  const flagChanged = new Set<string>()
  let uidNextBefore: Record<string, number> = {}
  const snapshotBefore = (): void => {
    uidNextBefore = {}
    for (const [id, b] of boxes) {
      uidNextBefore[b.name] = b.uidNext
      for (const m of b.msgs.values()) before.set(m.gid, id)
    }
  }
  let snapped = false
  let modseqAfter = 0
  const attrs: Record<string, AttrChange> = {}
  for (const e of entries) {
    if (!snapped && e.seq >= from) { snapshotBefore(); snapped = true }
    if ('modseq' in e && typeof e.modseq === 'number') modseqAfter = Math.max(modseqAfter, e.modseq)
    switch (e.op) {
      case 'mailboxCreate': boxes.set(e.mailbox, { name: e.name, uidNext: 1, msgs: new Map() }); break
      case 'mailboxRename': { const b = boxes.get(e.mailbox); if (b !== undefined) b.name = e.name; break }
      case 'mailboxDelete': boxes.delete(e.mailbox); break
      case 'uidNext': { const b = boxes.get(e.mailbox); if (b !== undefined) b.uidNext = Math.max(b.uidNext, e.uidNext); break }
      case 'append': {
        const b = boxes.get(e.mailbox)
        ever.add(e.gid)
        if (b === undefined) break
        b.msgs.set(e.uid, { gid: e.gid, flags: e.flags, internalDate: e.internalDate, blob: e.blob, prefix: e.prefix, ...(e.saved !== undefined ? { saved: e.saved } : {}) })
        b.uidNext = Math.max(b.uidNext, e.uid + 1)
        break
      }
      case 'flags': {
        const b = boxes.get(e.mailbox)
        if (b === undefined) break
        for (const [uid, flags] of e.changes) {
          const m = b.msgs.get(uid)
          if (m === undefined) continue
          m.flags = flags
          if (e.seq >= from) flagChanged.add(m.gid)
        }
        break
      }
      case 'expunge': {
        const b = boxes.get(e.mailbox)
        if (b === undefined) break
        for (const uid of e.uids) b.msgs.delete(uid)
        break
      }
      case 'subscribe': break
      case 'attr': if (e.seq >= from) attrs[e.key] = { value: e.value, at: e.at }; break
    }
  }
  if (!snapped) snapshotBefore()
  const now = new Map<string, { id: string, box: string, m: Msg }>()
  const uidNextAfter: Record<string, number> = {}
  for (const [id, b] of boxes) {
    uidNextAfter[b.name] = b.uidNext
    for (const m of b.msgs.values()) now.set(m.gid, { id, box: b.name, m })
  }
  const added: AddedMessage[] = []
  const flags: Record<string, string[]> = {}
  const relocated: Record<string, string> = {}
  for (const [gid, { id, box, m }] of now) {
    if (!before.has(gid)) added.push({ gid, mailbox: box, flags: m.flags, internalDate: m.internalDate, blob: m.blob, prefix: m.prefix, ...(m.saved !== undefined ? { saved: m.saved } : {}) })
    else {
      if (flagChanged.has(gid)) flags[gid] = m.flags
      if (before.get(gid) !== id) relocated[gid] = box
    }
  }
  const expunged = [...before.keys()].filter(g => !now.has(g))
  return { from, to: entries.at(-1)?.seq ?? 0, added, flags, expunged, relocated, uidNextBefore, uidNextAfter, everSeen: [...ever], modseqAfter, attrs }
}

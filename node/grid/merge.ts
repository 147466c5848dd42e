// Merging two copies of a user's log that diverged (a partition, or a two-node grid where each side took
// over): the primary keeps its log, adds what only the other side has, and never reuses a UID. Messages
// are matched by global id, not UID: UIDs on the two sides name different messages.
//
// For each mailbox both sides assigned UIDs after the common point: UIDNEXT is raised above both sides, the
// primary's own messages in the contested range are renumbered (so no UID means one message to one client and
// another to the next), and the other side's new messages are appended above. Flags the other side changed are
// taken (or joined with ours when both changed them); messages it expunged are expunged, those it moved are moved.
// Then the other copy is dropped and rebuilt from our log — only after our merged state is durable on our replicas
// (invariant 5).

import type { Logger } from 'pino'
import type { LogEntry, LogSummary, MessageRecord, Store } from '../../store/index.ts'
import { attrWins, summarizeLog } from '../../store/index.ts'
import { LOG_BATCH_ENTRIES_MAX } from './wire.ts'

export const EIDS_BATCH = 2048 // log ids compared per request while looking for the common prefix
export const MOVED_LOGGED_MAX = 500 // renumbered UIDs named in the merge_done line, per mailbox

export interface MergePeer {
  eids (from: number, to: number): Promise<Array<string | null>>
  summary (from: number): Promise<LogSummary>
  /** Bodies of the first of `hashes`, in order: at least one, fewer than asked when the rest would not fit one answer. */
  blobs (hashes: string[]): Promise<Buffer[]>
}

async function readAll (store: Store, user: string): Promise<LogEntry[]> {
  const out: LogEntry[] = []
  for (;;) {
    const part = await store.readLog(user, out.length + 1, 4096)
    out.push(...part)
    if (part.length < 4096) return out
  }
}

/** The last position at which both copies hold the same entry. */
export async function commonPrefix (mine: LogEntry[], peer: MergePeer, theirPosition: number): Promise<number> {
  let hi = Math.min(mine.length, theirPosition)
  while (hi > 0) {
    const lo = Math.max(1, hi - EIDS_BATCH + 1)
    const theirs = await peer.eids(lo, hi)
    for (let s = hi; s >= lo; s--) {
      if (theirs[s - lo] !== null && theirs[s - lo] === mine[s - 1].eid) return s
    }
    hi = lo - 1
  }
  return 0
}

export interface MergeResult {
  common: number
  theirEnd: number // the last position of theirs this merge took into account
  theirEndEid: string | null // and the entry there (a reset must find exactly that copy)
  added: number
  renumbered: number
  flagged: number
  expunged: number
  relocated: number // messages moved to the mailbox their side had moved them to
  attrs: number
}

export async function mergeFrom (store: Store, user: string, peer: MergePeer, theirPosition: number, log: Logger): Promise<MergeResult> {
  const mineLog = await readAll(store, user)
  const common = await commonPrefix(mineLog, peer, theirPosition)
  const theirs = await peer.summary(common + 1)
  const mine = summarizeLog(mineLog, common + 1)
  const [endEid] = theirs.to > 0 ? await peer.eids(theirs.to, theirs.to) : [null]
  const result: MergeResult = { common, theirEnd: theirs.to, theirEndEid: endEid ?? null, added: 0, renumbered: 0, flagged: 0, expunged: 0, relocated: 0, attrs: 0 }

  // UIDs: above both sides, and ours in the contested range move up too. MODSEQs too: a client of the other side
  // saw its HIGHESTMODSEQ, so what the merge renumbers, adds or flags must come above it (RFC 7162 3.1.2), and so
  // must each mailbox's HIGHESTMODSEQ
  const theirModseq = Number.isSafeInteger(theirs.modseqAfter) ? theirs.modseqAfter : 0
  // old UID → new UID per mailbox name, for the log (test/stress follows acknowledged APPENDs through them)
  const moved: Record<string, Array<[number, number]>> = {}
  for (const box of await store.listMailboxes(user)) {
    const theirNext = theirs.uidNextAfter[box.name]
    if (theirNext === undefined) continue
    const start = theirs.uidNextBefore[box.name] ?? mine.uidNextBefore[box.name] ?? 1
    if (theirNext > box.uidNext || theirModseq > box.highestModseq) await store.raiseUidNext(user, box.id, theirNext, theirModseq)
    if (theirNext > start) {
      const contested = (await store.listMessages(user, box.id, { from: start, to: theirNext - 1 })).map(r => r.uid)
      if (contested.length > 0) {
        const pairs = await store.renumber(user, box.id, contested)
        result.renumbered += contested.length
        if (pairs.length > 0) moved[box.name] = pairs.slice(0, MOVED_LOGGED_MAX)
      }
    }
  }

  // messages only they have
  const known = new Set(mine.everSeen)
  const missing = theirs.added.filter(a => !known.has(a.gid))
  // Bodies we lack come in answers bounded by bytes, fetched as the appends reach them, so no more than one
  // answer's worth is held at a time. `need` is in order of first use, so the next body not fetched yet is
  // always the one the next append without a body needs.
  const lacking = new Set(await store.missingBlobs(missing.map(a => a.blob)))
  const need = [...new Set(missing.map(a => a.blob))].filter(h => lacking.has(h))
  const fetched = new Map<string, Buffer>()
  let next = 0
  const names = new Set((await store.listMailboxes(user)).map(b => b.name))
  for (const a of missing) {
    if (next < need.length && need[next] === a.blob) {
      const bodies = await peer.blobs(need.slice(next, next + LOG_BATCH_ENTRIES_MAX))
      for (const b of bodies) fetched.set(need[next++], b)
    }
    // once appended, a body is ours: a later message with the same body reads it from the store
    const raw = fetched.get(a.blob) ?? await store.readBlob(a.blob)
    fetched.delete(a.blob)
    await store.append(user, names.has(a.mailbox) ? a.mailbox : 'INBOX', { raw, flags: a.flags, internalDate: a.internalDate, prefix: a.prefix, gid: a.gid, saved: a.saved })
    result.added++
  }

  // their flag changes and expunges, on the messages we both have
  const where = new Map<string, { box: string, rec: MessageRecord }>()
  for (const box of await store.listMailboxes(user)) {
    for (const rec of await store.listMessages(user, box.id)) where.set(rec.gid, { box: box.id, rec })
  }
  for (const [gid, flags] of Object.entries(theirs.flags)) {
    const w = where.get(gid)
    if (w === undefined) continue
    // ours changed too (or our copy arrived after the common point, so we cannot tell): join, never drop a flag
    const oursChanged = mine.flags[gid] !== undefined || mine.added.some(a => a.gid === gid)
    const next = oursChanged ? [...new Set([...w.rec.flags, ...flags])] : flags
    await store.storeFlags(user, w.box, [w.rec.uid], 'set', next)
    result.flagged++
  }
  // A message both sides know but appended after the common point on their side (it reached them by another
  // merge) carries their flags in `added`: who changed what is unknown there, so no flag set on either side
  // is lost — join them.
  for (const a of theirs.added) {
    const w = where.get(a.gid)
    if (w === undefined || !known.has(a.gid) || theirs.flags[a.gid] !== undefined) continue
    const next = [...new Set([...w.rec.flags, ...a.flags])]
    if (next.length === w.rec.flags.length) continue
    await store.storeFlags(user, w.box, [w.rec.uid], 'set', next)
    result.flagged++
  }
  const byBox = new Map<string, number[]>()
  for (const gid of theirs.expunged) {
    const w = where.get(gid)
    if (w === undefined) continue
    byBox.set(w.box, [...(byBox.get(w.box) ?? []), w.rec.uid])
  }
  for (const [box, uids] of byBox) result.expunged += (await store.expunge(user, box, uids)).uids.length
  // Messages they moved to another mailbox (MOVE keeps the gid: the summary names neither an add nor an expunge of
  // them): moved here too, unless ours moved it as well (ours stands). Without this an acknowledged MOVE on their
  // side was undone: the message came back in its old mailbox and the UID their COPYUID gave named nothing.
  const boxNames = new Map((await store.listMailboxes(user)).map(b => [b.id, b.name]))
  const expungedHere = new Set(theirs.expunged)
  for (const [gid, name] of Object.entries(theirs.relocated ?? {})) {
    const w = where.get(gid)
    if (w === undefined || expungedHere.has(gid) || mine.relocated?.[gid] !== undefined || boxNames.get(w.box) === name || !names.has(name)) continue
    await store.move(user, w.box, [w.rec.uid], name)
    result.relocated++
  }
  // user attributes (Sieve scripts, vacation memory, ...): every key only they changed is taken; a key both changed
  // goes to the winner of attrWins, so both nodes would pick the same value whichever of them merged. The change
  // keeps the winner's time, so a later merge with a third copy decides the same way.
  for (const [key, theirsChange] of Object.entries(theirs.attrs ?? {})) {
    const ours = mine.attrs?.[key]
    if (ours !== undefined && !attrWins(theirsChange, ours)) continue
    if (ours === undefined && (await store.getAttr(user, key)) === theirsChange.value) continue
    await store.setAttrs(user, [{ key, value: theirsChange.value }], { at: theirsChange.at })
    result.attrs++
  }
  log.info({ user, ...result, gids: missing.length <= 20 ? missing.map(a => a.gid.slice(0, 12)) : undefined, moved: result.renumbered > 0 ? moved : undefined }, 'merge_done')
  return result
}

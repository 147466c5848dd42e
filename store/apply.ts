// The one state transition of a user's mail: applying a log entry. The primary decides entries (assigning
// UIDs, MODSEQs and log positions) and applies them through this function; replicas apply the same entries
// through the same function. So a replica that has applied a log up to position N holds exactly the state
// the primary had at N — mailbox counters, usage, UIDNEXT and HIGHESTMODSEQ included.

import { keys } from './keys.ts'
import type { BatchOp } from './commit.ts'
import type { BlobLocation } from './blobs.ts'
import type { LogEntry, Mailbox, MailEvent, MessageRecord } from './types.ts'

export interface UserState {
  modseq: number
  logSeq: number
  mailboxSeq: number
  lastUidValidity: number
  usedBytes: number
  usedMessages: number
  epoch?: number // the highest ownership epoch whose entries this copy has accepted (grid)
}

export type MailboxRec = Omit<Mailbox, 'subscribed'>

/** UIDs (ascending) and their flags, of one mailbox: what SELECT needs, without decoding every record. */
export interface BoxIndex {
  uids: number[]
  flags: string[][] // flags[i] belongs to uids[i]
}

export interface Cached {
  state: UserState
  boxes: Map<string, MailboxRec> // by id
  byName: Map<string, string> // name → id
  subs: Set<string> // subscribed names
  // per mailbox id, kept up to date by applyEntry once present: created empty with the mailbox (or when a
  // loaded mailbox is empty), otherwise built from the records on first use (MailStoreBase.listFlags). Changed
  // only once a write is durable (Tx.after), so that it may be read without the user's lock.
  index: Map<string, BoxIndex>
  // the user's last few log entries (at most LOG_TAIL_ENTRIES, contiguous, the last at the durable position),
  // appended once a write is durable (Tx.after), so readLog answers the grid's reads of what was just written
  // (shipping to the replicas, a replica's check of a shipment's anchor) without a LevelDB iterator
  tail?: LogEntry[]
}

/** Log entries kept in memory per cached user (a few hundred bytes each; 10,000 cached users at most). */
export const LOG_TAIL_ENTRIES = 8

export interface RecordReader {
  get (key: string): Promise<MessageRecord | undefined>
  getRaw (key: string): Promise<unknown>
  values (range: { gt: string, lt: string }): AsyncIterable<MessageRecord>
}

/** What one locked write builds: the batch, the events to emit after commit, the users whose cache it mutated. */
export class Tx {
  readonly ops: BatchOp[] = []
  readonly events: Array<[string, MailEvent]> = []
  readonly users = new Map<string, Cached>()
  // message records written or deleted in this batch, so later entries of the same batch see them
  readonly records = new Map<string, MessageRecord | null>()
  readonly gids = new Map<string, string | null>() // gid index entries written in this batch
  // body hash → where this node keeps it, when the writer already knows (it stored the body, or copies a record
  // that carries it): saves the index lookup an append would otherwise make
  readonly locs = new Map<string, BlobLocation>()
  // user attributes written in this batch (key → stored value, null when removed), so later entries see them
  readonly attrs = new Map<string, { v: string, at: number } | null>()
  // (user, key) of every attribute this batch changed: told to MailStore.onAttrChange's listeners once durable
  readonly attrChanges: Array<[string, string]> = []
  // changes to in-memory state that readers see without the lock (the UID and flag index): run in order once the
  // batch is durable, never when it fails
  readonly after: Array<() => void> = []
  put (key: string, value: unknown): void { this.ops.push({ type: 'put', key, value }) }
  del (key: string): void { this.ops.push({ type: 'del', key }) }
}

export const SEEN = '\\Seen'
export const isSeen = (flags: string[]): boolean => flags.includes(SEEN)

export function emptyState (): Cached {
  return {
    state: { modseq: 1, logSeq: 0, mailboxSeq: 0, lastUidValidity: 0, usedBytes: 0, usedMessages: 0 },
    boxes: new Map(),
    byName: new Map(),
    subs: new Set(),
    index: new Map()
  }
}

/** Position of uid in ascending uids, or where it would go. */
function slot (uids: number[], uid: number): number {
  let lo = 0
  let hi = uids.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (uids[mid] < uid) lo = mid + 1
    else hi = mid
  }
  return lo
}

function indexSet (c: Cached, mb: string, uid: number, flags: string[]): void {
  const idx = c.index.get(mb)
  if (idx === undefined) return
  const i = slot(idx.uids, uid)
  if (idx.uids[i] === uid) {
    idx.flags[i] = flags
  } else {
    idx.uids.splice(i, 0, uid)
    idx.flags.splice(i, 0, flags)
  }
}

/** Removes uids in one pass (an expunge of many messages stays linear in the mailbox). */
function indexDrop (c: Cached, mb: string, uids: number[]): void {
  const idx = c.index.get(mb)
  if (idx === undefined || uids.length === 0) return
  const gone = new Set(uids)
  let w = 0
  for (let r = 0; r < idx.uids.length; r++) {
    if (gone.has(idx.uids[r])) continue
    idx.uids[w] = idx.uids[r]
    idx.flags[w] = idx.flags[r]
    w++
  }
  idx.uids.length = w
  idx.flags.length = w
}

async function getRecord (db: RecordReader, tx: Tx, user: string, mb: string, uid: number): Promise<MessageRecord | null> {
  const k = keys.message(user, mb, uid)
  if (tx.records.has(k)) return tx.records.get(k) ?? null
  return (await db.get(k)) ?? null
}

function putRecord (tx: Tx, user: string, mb: string, rec: MessageRecord): void {
  const k = keys.message(user, mb, rec.uid)
  tx.records.set(k, rec)
  tx.put(k, rec)
}

/** Where this node keeps a body: the record carries it so that reading a message needs no lookup. Node-local
 * (each node appends bodies to its own files), so it is derived here on every node, never shipped in an entry. */
async function bodyLocation (db: RecordReader, tx: Tx, hash: string): Promise<BlobLocation | undefined> {
  const known = tx.locs.get(hash)
  if (known !== undefined) return known
  const v = await db.getRaw(keys.blob(hash)) as BlobLocation | undefined
  return v === undefined || v === null ? undefined : v
}

/** Where a global id lives now ("mailboxId\0uid"), or null. */
export async function gidLocation (db: RecordReader, tx: Tx, user: string, gid: string): Promise<string | null> {
  const k = keys.gid(user, gid)
  if (tx.gids.has(k)) return tx.gids.get(k) ?? null
  const v = await db.getRaw(k)
  return typeof v === 'string' ? v : null
}

function dropRecord (tx: Tx, user: string, c: Cached, box: MailboxRec, rec: MessageRecord, where: string | null): void {
  const gk = keys.gid(user, rec.gid)
  if (where === `${box.id}\x00${rec.uid}`) {
    tx.gids.set(gk, null)
    tx.del(gk)
  }
  box.messages -= 1
  box.size -= rec.size
  if (!isSeen(rec.flags)) box.unseen -= 1
  c.state.usedBytes -= rec.size
  c.state.usedMessages -= 1
  const k = keys.message(user, box.id, rec.uid)
  tx.records.set(k, null)
  tx.del(k)
  tx.del(keys.blobRef(rec.blob, user, box.id, rec.uid))
}

function bumpModseq (c: Cached, box: MailboxRec, modseq: number): void {
  c.state.modseq = Math.max(c.state.modseq, modseq)
  box.highestModseq = Math.max(box.highestModseq, modseq)
}

/**
 * Applies one entry whose seq is exactly c.state.logSeq + 1. Entries that name a mailbox or message this
 * copy does not have are applied as far as they can be (a no-op for the missing part), which keeps replay
 * of a log total; the primary never produces such entries.
 */
export async function applyEntry (db: RecordReader, tx: Tx, user: string, c: Cached, e: LogEntry): Promise<void> {
  if (e.seq !== c.state.logSeq + 1) throw new Error(`log entry ${e.seq} applied at position ${c.state.logSeq}`)
  c.state.logSeq = e.seq
  if (e.epoch !== undefined) c.state.epoch = Math.max(c.state.epoch ?? 0, e.epoch)
  tx.put(keys.log(user, e.seq), e)
  tx.after.push(() => {
    const tail = c.tail ?? (c.tail = [])
    if (tail.length > 0 && (tail.at(-1) as LogEntry).seq !== e.seq - 1) tail.length = 0 // never a gap
    tail.push(e)
    if (tail.length > LOG_TAIL_ENTRIES) tail.splice(0, tail.length - LOG_TAIL_ENTRIES)
  })
  switch (e.op) {
    case 'mailboxCreate': {
      const rec: MailboxRec = {
        id: e.mailbox, name: e.name, uidValidity: e.uidValidity, uidNext: 1, highestModseq: c.state.modseq,
        specialUse: e.specialUse, messages: 0, unseen: 0, size: 0
      }
      c.boxes.set(rec.id, rec)
      c.byName.set(rec.name, rec.id)
      tx.after.push(() => { c.index.set(rec.id, { uids: [], flags: [] }) })
      c.state.mailboxSeq = Math.max(c.state.mailboxSeq, parseInt(e.mailbox, 36) || 0)
      c.state.lastUidValidity = Math.max(c.state.lastUidValidity, e.uidValidity)
      tx.put(keys.mailbox(user, rec.id), rec)
      tx.events.push([user, { type: 'mailboxes', change: 'created', mailbox: rec.id }])
      return
    }
    case 'mailboxRename': {
      const box = c.boxes.get(e.mailbox)
      if (box === undefined) return
      c.byName.delete(box.name)
      if (c.subs.delete(box.name)) {
        tx.del(keys.subscription(user, box.name))
        c.subs.add(e.name)
        tx.put(keys.subscription(user, e.name), true)
      }
      box.name = e.name
      c.byName.set(box.name, box.id)
      tx.put(keys.mailbox(user, box.id), box)
      tx.events.push([user, { type: 'mailboxes', change: 'renamed', mailbox: box.id }])
      return
    }
    case 'mailboxDelete': {
      const box = c.boxes.get(e.mailbox)
      if (box === undefined) return
      const dropped = new Set<number>()
      for (const [k, rec] of [...tx.records]) {
        if (rec !== null && k.startsWith(keys.message(user, box.id, 0).slice(0, -10))) {
          dropRecord(tx, user, c, box, rec, await gidLocation(db, tx, user, rec.gid))
          dropped.add(rec.uid)
        }
      }
      for await (const rec of db.values(keys.messageRange(user, box.id))) {
        if (!dropped.has(rec.uid) && !tx.records.has(keys.message(user, box.id, rec.uid))) dropRecord(tx, user, c, box, rec, await gidLocation(db, tx, user, rec.gid))
      }
      // its expunge records (X keys) stay: mailbox ids are never reused, so nothing reads them again
      c.boxes.delete(box.id)
      c.byName.delete(box.name)
      const deleted = box.id
      tx.after.push(() => { c.index.delete(deleted) })
      tx.del(keys.mailbox(user, box.id))
      tx.events.push([user, { type: 'mailboxes', change: 'deleted', mailbox: box.id }])
      return
    }
    case 'subscribe': {
      if (e.subscribed) {
        c.subs.add(e.name)
        tx.put(keys.subscription(user, e.name), true)
      } else {
        c.subs.delete(e.name)
        tx.del(keys.subscription(user, e.name))
      }
      tx.events.push([user, { type: 'mailboxes', change: 'subscription', mailbox: null }])
      return
    }
    case 'attr': {
      // a user attribute (MailStore.setAttrs): kept under its own key, read without the user's cache
      if (e.value === null) tx.del(keys.attr(user, e.key))
      else tx.put(keys.attr(user, e.key), { v: e.value, at: e.at })
      tx.attrs.set(e.key, e.value === null ? null : { v: e.value, at: e.at })
      tx.attrChanges.push([user, e.key])
      return
    }
    case 'append': {
      const box = c.boxes.get(e.mailbox)
      if (box === undefined) return
      const rec: MessageRecord = {
        uid: e.uid, gid: e.gid, flags: e.flags, modseq: e.modseq, internalDate: e.internalDate, size: e.size, blob: e.blob, prefix: e.prefix
      }
      if (e.saved !== undefined) rec.saved = e.saved
      const loc = await bodyLocation(db, tx, e.blob)
      if (loc !== undefined) rec.loc = loc
      putRecord(tx, user, box.id, rec)
      const mb = box.id
      tx.after.push(() => { indexSet(c, mb, rec.uid, rec.flags) })
      tx.put(keys.blobRef(rec.blob, user, box.id, rec.uid), 1)
      const gk = keys.gid(user, rec.gid)
      tx.gids.set(gk, `${box.id}\x00${rec.uid}`)
      tx.put(gk, `${box.id}\x00${rec.uid}`)
      box.uidNext = Math.max(box.uidNext, e.uid + 1)
      box.messages += 1
      box.size += rec.size
      if (!isSeen(rec.flags)) box.unseen += 1
      c.state.usedBytes += rec.size
      c.state.usedMessages += 1
      bumpModseq(c, box, e.modseq)
      tx.put(keys.mailbox(user, box.id), box)
      tx.events.push([user, { type: 'append', mailbox: box.id, uids: [e.uid], modseq: e.modseq }])
      return
    }
    case 'flags': {
      const box = c.boxes.get(e.mailbox)
      if (box === undefined) return
      const changes = []
      for (const [uid, flags] of e.changes) {
        const rec = await getRecord(db, tx, user, box.id, uid)
        if (rec === null) continue
        if (isSeen(rec.flags) && !isSeen(flags)) box.unseen += 1
        if (!isSeen(rec.flags) && isSeen(flags)) box.unseen -= 1
        const next = { ...rec, flags, modseq: e.modseq }
        putRecord(tx, user, box.id, next)
        const mb = box.id
        tx.after.push(() => { indexSet(c, mb, uid, flags) })
        changes.push({ uid, flags, modseq: e.modseq })
      }
      bumpModseq(c, box, e.modseq)
      tx.put(keys.mailbox(user, box.id), box)
      tx.events.push([user, { type: 'flags', mailbox: box.id, changes, modseq: e.modseq }])
      return
    }
    case 'uidNext': {
      const box = c.boxes.get(e.mailbox)
      if (box === undefined) return
      const modseq = e.modseq !== undefined && e.modseq > box.highestModseq ? e.modseq : null
      if (e.uidNext <= box.uidNext && modseq === null) return
      box.uidNext = Math.max(box.uidNext, e.uidNext)
      if (modseq !== null) bumpModseq(c, box, modseq)
      tx.put(keys.mailbox(user, box.id), box)
      return
    }
    case 'expunge': {
      const box = c.boxes.get(e.mailbox)
      if (box === undefined) return
      const gone: number[] = []
      for (const uid of e.uids) {
        const rec = await getRecord(db, tx, user, box.id, uid)
        if (rec === null) continue
        dropRecord(tx, user, c, box, rec, await gidLocation(db, tx, user, rec.gid))
        gone.push(uid)
      }
      const mb = box.id
      tx.after.push(() => { indexDrop(c, mb, gone) })
      bumpModseq(c, box, e.modseq)
      tx.put(keys.expunged(user, box.id, e.modseq), e.uids)
      tx.put(keys.mailbox(user, box.id), box)
      tx.events.push([user, { type: 'expunge', mailbox: box.id, uids: gone, modseq: e.modseq }])
    }
  }
}

// The message records of mailboxes in use, in memory (as Dovecot keeps a selected mailbox's index mmap'd), so
// SEARCH, FETCH and STORE do not read and decode a LevelDB range per command: that was a quarter of the node's
// busy time under the bench's mixed load (classic-level `nextv` and abstract-level's JSON decoding).
//
// Never stale: the store's group commit hands every batch to `applied` once it is durable, before any writer
// waiting on it resumes, and this is the only way a record key changes (local writes, log shipping, merges, user
// deletion alike). A mailbox is filled by one full range read, and the changes committed while it read are applied
// over it in commit order, so what is kept is the disk's as of the last commit.
// Bounded: mailboxes are dropped least recently used first past `maxBytes` (an estimate of the records' heap).
// Records handed out are frozen (and their flags): callers share them and must not change them.

import type { BatchOp } from './commit.ts'
import { SEP } from './keys.ts'
import type { MessageRecord } from './types.ts'

interface Change {
  uid: number
  rec: MessageRecord | null // null: deleted
}

interface Box {
  recs: MessageRecord[] // ascending uid
  bytes: number
}

const MESSAGE_KEY = `M${SEP}`
/** The share of the room one mailbox may take (64 MiB: about 80,000 records delivered by SMTP, ~600 bytes each). */
export const BOX_SHARE_MAX = 0.75
/** What a record weighs, for deciding before a fill whether a mailbox of N messages can be kept at all. */
export const RECORD_BYTES_ESTIMATE = 600

/** Rough heap bytes of one record: the object and its strings (two bytes a character for non-Latin-1). */
function weigh (r: MessageRecord): number {
  let n = 240 + r.gid.length + r.blob.length + r.prefix.length
  for (const f of r.flags) n += 24 + f.length
  return n
}

function freeze (r: MessageRecord): MessageRecord {
  Object.freeze(r.flags)
  if (r.loc !== undefined) Object.freeze(r.loc)
  return Object.freeze(r)
}

/** Index of the first record with uid >= `uid` (recs.length when none). */
function lowerBound (recs: readonly MessageRecord[], uid: number): number {
  let lo = 0
  let hi = recs.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (recs[mid]!.uid < uid) lo = mid + 1
    else hi = mid
  }
  return lo
}

export class RecordCache {
  readonly #max: number
  readonly #boxes = new Map<string, Box>() // by `M SEP user SEP mailbox`; Map order is LRU order
  // fills under way per mailbox, each with the changes committed while it reads (replayed over what it read)
  readonly #filling = new Map<string, Set<Change[]>>()
  readonly #void = new WeakSet<Change[]>() // fills a drop or a failed batch made worthless
  #bytes = 0
  hits = 0
  fills = 0

  constructor (maxBytes: number) {
    this.#max = maxBytes
  }

  /** Whether a mailbox of this many messages can be kept (a larger one is read range by range, as before). */
  fits (messages: number): boolean {
    return messages * RECORD_BYTES_ESTIMATE <= this.#max * BOX_SHARE_MAX
  }

  get bytes (): number {
    return this.#bytes
  }

  get size (): number {
    return this.#boxes.size
  }

  static key (user: string, mailboxId: string): string {
    return `${MESSAGE_KEY}${user}${SEP}${mailboxId}`
  }

  #use (key: string): Box | undefined {
    const box = this.#boxes.get(key)
    if (box === undefined) return undefined
    this.#boxes.delete(key)
    this.#boxes.set(key, box)
    this.hits++
    return box
  }

  has (user: string, mailboxId: string): boolean {
    return this.#boxes.has(RecordCache.key(user, mailboxId))
  }

  /** The records with from <= uid <= to (all without bounds), or undefined when the mailbox is not kept. */
  range (user: string, mailboxId: string, from?: number, to?: number): MessageRecord[] | undefined {
    const box = this.#use(RecordCache.key(user, mailboxId))
    if (box === undefined) return undefined
    if (from === undefined && to === undefined) return box.recs.slice()
    const start = from === undefined ? 0 : lowerBound(box.recs, from)
    const end = to === undefined ? box.recs.length : lowerBound(box.recs, to + 1)
    return box.recs.slice(start, end)
  }

  /** The records of these ascending, distinct UIDs that exist, or undefined when the mailbox is not kept. */
  pick (user: string, mailboxId: string, uids: readonly number[]): MessageRecord[] | undefined {
    const box = this.#use(RecordCache.key(user, mailboxId))
    if (box === undefined) return undefined
    const out: MessageRecord[] = []
    const recs = box.recs
    let i = 0
    for (const uid of uids) {
      if (i < recs.length && recs[i]!.uid !== uid) i = lowerBound(recs, uid) // dense lists step, sparse ones search
      if (i >= recs.length) break
      if (recs[i]!.uid === uid) out.push(recs[i++]!)
    }
    return out
  }

  /** The record under a LevelDB message key: null when its mailbox is kept and the record is not there, undefined
   * when the mailbox is not kept. */
  get (key: string): MessageRecord | null | undefined {
    if (!key.startsWith(MESSAGE_KEY)) return undefined
    const cut = key.lastIndexOf(SEP)
    const box = this.#boxes.get(key.slice(0, cut))
    if (box === undefined) return undefined
    const uid = Number(key.slice(cut + 1))
    const i = lowerBound(box.recs, uid)
    return i < box.recs.length && box.recs[i]!.uid === uid ? box.recs[i]! : null
  }

  /**
   * Fills a mailbox from `read` (every record, ascending) unless it is kept already; resolves to its records.
   * The changes committed while it reads are applied over what it read, in commit order: a change the read saw
   * already is applied again to the same result, one it missed is applied, and a batch visible to the read whose
   * turn comes after the fill is applied by `applied` then. (Throwing such a fill away instead made every FETCH batch
   * of a mailbox under steady delivery read the whole mailbox again.)
   */
  async fill (user: string, mailboxId: string, read: () => Promise<MessageRecord[]>): Promise<MessageRecord[]> {
    const key = RecordCache.key(user, mailboxId)
    const kept = this.#boxes.get(key)
    if (kept !== undefined) return kept.recs.slice()
    const during: Change[] = []
    let fills = this.#filling.get(key)
    if (fills === undefined) this.#filling.set(key, fills = new Set())
    fills.add(during)
    let recs: MessageRecord[]
    try {
      recs = await read()
    } finally {
      fills.delete(during)
      if (fills.size === 0 && this.#filling.get(key) === fills) this.#filling.delete(key)
    }
    // kept by another fill meanwhile (which replayed its own changes), or made worthless: the read is the answer
    if (this.#void.has(during) || this.#boxes.has(key)) return recs
    let bytes = 0
    for (const r of recs) { freeze(r); bytes += weigh(r) }
    if (bytes > this.#max * BOX_SHARE_MAX) return recs // one mailbox never takes more than this share of the room
    this.#boxes.set(key, { recs: recs.slice(), bytes })
    this.#bytes += bytes
    this.fills++
    if (during.length > 0) this.#change(key, during)
    this.#trim()
    return this.#boxes.get(key)?.recs.slice() ?? recs
  }

  #trim (): void {
    for (const [k, b] of this.#boxes) {
      if (this.#bytes <= this.#max) break
      this.#boxes.delete(k)
      this.#bytes -= b.bytes
    }
  }

  /** A durable batch: record puts and deletions change the kept mailboxes and are noted for the fills under way. */
  applied (ops: readonly BatchOp[]): void {
    let touched: Map<string, Change[]> | undefined
    for (const op of ops) {
      const k = op.key
      if (typeof k !== 'string' || !k.startsWith(MESSAGE_KEY)) continue
      const cut = k.lastIndexOf(SEP)
      const box = k.slice(0, cut)
      const fills = this.#filling.get(box)
      const kept = this.#boxes.has(box)
      if (fills === undefined && !kept) continue
      const uid = Number(k.slice(cut + 1))
      let change: Change
      if (op.type === 'put') {
        const v = op.value as MessageRecord
        change = { uid, rec: freeze({ ...v, flags: [...v.flags], ...(v.loc !== undefined ? { loc: { ...v.loc } } : {}) }) }
      } else {
        change = { uid, rec: null }
      }
      if (fills !== undefined) for (const during of fills) during.push(change)
      if (!kept) continue
      touched ??= new Map()
      let list = touched.get(box)
      if (list === undefined) touched.set(box, list = [])
      list.push(change)
    }
    if (touched === undefined) return
    for (const [key, changes] of touched) this.#change(key, changes)
    this.#trim()
  }

  #change (key: string, changes: Change[]): void {
    const box = this.#boxes.get(key)!
    let gone: Set<number> | undefined // deleted, still in the array until the next put or the end
    const compact = (): void => {
      if (gone === undefined) return
      const g = gone
      box.recs = box.recs.filter((r) => !g.has(r.uid))
      gone = undefined
    }
    for (const { uid, rec } of changes) {
      if (rec !== null) compact()
      const recs = box.recs
      const last = recs.length > 0 ? recs[recs.length - 1]!.uid : 0
      if (rec !== null && uid > last) { // an append: the common case
        recs.push(rec)
        this.#weigh(box, weigh(rec))
        continue
      }
      const i = lowerBound(recs, uid)
      const found = i < recs.length && recs[i]!.uid === uid && gone?.has(uid) !== true
      if (rec === null) {
        if (found) { this.#weigh(box, -weigh(recs[i]!)); (gone ??= new Set()).add(uid) }
        continue
      }
      if (found) { this.#weigh(box, -weigh(recs[i]!)); recs[i] = rec } else recs.splice(i, 0, rec)
      this.#weigh(box, weigh(rec))
    }
    compact()
  }

  #weigh (box: Box, n: number): void {
    box.bytes += n
    this.#bytes += n
  }

  /** Forgets a mailbox (or every mailbox of a user: `mailboxId` left out); fills under way are marked stale. */
  drop (user: string, mailboxId?: string): void {
    const prefix = mailboxId === undefined ? `${MESSAGE_KEY}${user}${SEP}` : RecordCache.key(user, mailboxId)
    for (const [k, b] of this.#boxes) {
      if (mailboxId === undefined ? k.startsWith(prefix) : k === prefix) { this.#boxes.delete(k); this.#bytes -= b.bytes }
    }
    for (const [k, fills] of this.#filling) {
      if (mailboxId === undefined ? k.startsWith(prefix) : k === prefix) for (const during of fills) this.#void.add(during)
    }
  }

  /** Forgets everything (a batch that failed: what is on disk is not known). */
  clear (): void {
    this.#boxes.clear()
    this.#bytes = 0
    for (const fills of this.#filling.values()) for (const during of fills) this.#void.add(during)
  }
}

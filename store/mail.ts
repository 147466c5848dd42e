// Mailboxes, message records, the per-user change log and blob references on LevelDB. Every public write
// holds the lock of each user it touches from reading state to the durable commit of one atomic batch, so
// UIDs and MODSEQs are assigned in order and a crash at any moment leaves either all of a command or none.
// Deliveries to one user that wait for its lock together share one such batch (writeCombined).

import { Level } from 'level'
import { BlobFilter } from './blob-filter.ts'
import { createRandomPool } from './random.ts'
import { join } from 'node:path'
import { BlobFiles, sha256Hex } from './blobs.ts'
import type { BlobLocation } from './blobs.ts'
import { GroupCommit } from './commit.ts'
import type { BatchOp } from './commit.ts'
import { LogDivergedError, MailError } from './errors.ts'
import { BatchGet } from './batch-get.ts'
import { keys, SEP } from './keys.ts'
import { KeyedLock } from './lock.ts'
import { readRange } from './ranges.ts'
import { StringMemo } from './memo.ts'
import { RecordCache } from './record-cache.ts'
import { analyzeMessage } from './mime/index.ts'
import { applyEntry, emptyState, gidLocation, isSeen, Tx } from './apply.ts'
import type { Cached, MailboxRec, UserState } from './apply.ts'
import type { MessageMeta, MimePart } from './mime/index.ts'
import { checkMailboxName, DELIMITER, isChildOf, normalizeMailboxName, parentsOf } from './names.ts'
import type {
  AppendInput, AppendResult, ChangesSince, CopyResult, DeliveryTarget, FlagChange, FlagOp, LogAnchor, LogEntry, Mailbox,
  MailEvent, MailListener, MessageRecord, NewLogEntry, OpOptions, QuotaUsage, SpecialUse, StoreFlagsResult, UserAttr
} from './types.ts'

/** The prefix of every user state key (keys.state). */
const STATE_KEY = keys.state('')
const BLOB_KEY_PREFIX = keys.blob('')
const BLOB_KEY_PREFIX_LENGTH = BLOB_KEY_PREFIX.length
const BLOB_KEYS_END = BLOB_KEY_PREFIX.slice(0, -1) + String.fromCharCode(BLOB_KEY_PREFIX.charCodeAt(BLOB_KEY_PREFIX.length - 1) + 1)
const BLOB_SCAN_BATCH = 1000 // keys per read of the body filter's scan
/** Deliveries of one user built into one batch at most (writeCombined); each is about nine operations. */
export const COMBINE_MAX = 64

/** A write waiting for its user's lock in writeCombined, to be built with the others waiting then. */
interface Combined {
  build: (tx: Tx, get: (u: string) => Cached) => Promise<unknown> | unknown
  signal: AbortSignal | undefined
  resolve: (value: unknown) => void
  reject: (err: unknown) => void
}
export const USER_CACHE_MAX = 10_000 // user states kept in memory; each is a few hundred bytes per mailbox
export const FLAGS_PER_MESSAGE_MAX = 128 // keywords per message (Dovecot limits keywords per mailbox similarly)
export const FLAG_BYTES_MAX = 128
export const MAILBOXES_PER_USER_MAX = 10_000
// A mailbox gets an in-memory UID and flag index (listFlags) from this size on; below it, decoding its records
// takes about a millisecond (measured: 5,000 records in 50 ms)
export const INDEX_MESSAGES_MIN = 1000
// A header block up to this size is kept apart from the body and the structure (readHeader). Ordinary headers
// are 1 to 10 KiB (long Received and DKIM chains included); larger ones are read from the body when needed.
export const HEADER_CACHE_BYTES_MAX = 32 * 1024
// Header copies kept in memory once read (memo.ts), all users together: ten 400-message mailboxes of 2 KiB headers
// are 8 MiB
export const HEADER_MEMO_BYTES_MAX = 16 * 1024 * 1024
// Message records of mailboxes in use kept in memory (record-cache.ts), all users together, by an estimate of
// their heap (about 400 bytes a record: a 50,000-message mailbox is 20 MiB)
export const RECORD_CACHE_BYTES_MAX = 64 * 1024 * 1024
// User attributes (MailStore.setAttrs). A value travels inside a log entry, in the JSON header of a shipment
// (wire.ts: 2 MiB per user's shipment), and a merge's summary carries every key its stretch changed, so they stay
// small: a Sieve script is at most 256 KiB (ManageSieve's own limit is lower), a user's attributes 1 MiB together.
export const ATTR_KEY_BYTES_MAX = 512 // RFC 5464 entry names are short paths; Sieve script names are <= 255 bytes
export const ATTR_VALUE_BYTES_MAX = 256 * 1024
export const ATTRS_PER_USER_MAX = 4096
export const ATTR_BYTES_PER_USER_MAX = 1024 * 1024
export const ATTR_CHANGES_MAX = 1024 // keys one setAttrs call changes

export const DEFAULT_MAILBOXES: Array<[string, SpecialUse | null]> = [
  ['INBOX', null], ['Sent', '\\Sent'], ['Drafts', '\\Drafts'], ['Trash', '\\Trash'], ['Junk', '\\Junk'], ['Archive', '\\Archive']
]

export interface StoreComponents {
  now?: () => number
  randomId?: () => string
  /** Told how long each group commit took to become durable, in seconds (the fsync latency histogram). */
  onCommit?: (seconds: number) => void
}

export interface StoreInit {
  path: string
  /** fsync every commit (default true). Only tests that measure nothing durable turn it off. */
  sync?: boolean
  /** scrypt cost (log2 N); tests lower it. */
  scryptLogN?: number
}

function checkAttr (key: string, value: string | null): void {
  // eslint-disable-next-line no-control-regex
  if (key === '' || Buffer.byteLength(key) > ATTR_KEY_BYTES_MAX || /[\x00-\x1f\x7f]/.test(key)) throw new MailError('invalid', 'Bad attribute name')
  if (value !== null && Buffer.byteLength(value) > ATTR_VALUE_BYTES_MAX) throw new MailError('tooBig', 'Attribute value too large')
}

export class MailStoreBase {
  readonly path: string
  protected readonly db: Level<string, any>
  protected readonly blobs: BlobFiles
  protected readonly committer: GroupCommit
  protected readonly lock = new KeyedLock()
  protected readonly now: () => number
  protected readonly randomId: () => string
  private readonly cache = new Map<string, Cached>()
  private readonly listeners = new Map<string, Set<MailListener>>()
  private readonly attrListeners = new Set<(user: string, keys: string[] | null) => void>()
  private readonly metas = new BatchGet<MessageMeta>(async ks => await this.db.getMany(ks))
  private readonly headers = new BatchGet<string>(async ks => await this.db.getMany(ks))
  /** Header copies read lately, by key (content-addressed: never stale); see memo.ts. */
  private readonly headerMemo = new StringMemo(HEADER_MEMO_BYTES_MAX)
  /** Message records of mailboxes read by ranges or UID lists (FETCH, SEARCH, STORE), kept current by every durable
   * batch (the committer's onDurable); see record-cache.ts. */
  protected readonly recordCache = new RecordCache(RECORD_CACHE_BYTES_MAX)
  // body locations: concurrent deliveries' "is this body stored already?" share one multi-get
  private readonly locations = new BatchGet<BlobLocation>(async ks => await this.db.getMany(ks))

  constructor (components: StoreComponents, init: StoreInit) {
    this.path = init.path
    this.now = components.now ?? Date.now
    const ids = createRandomPool()
    this.randomId = components.randomId ?? (() => ids.hex(12))
    this.db = new Level<string, any>(join(init.path, 'index'), { valueEncoding: 'json' })
    this.blobs = new BlobFiles(join(init.path, 'blobs'))
    this.committer = new GroupCommit(this.db, async () => await this.blobs.sync(), init.sync ?? true, components.onCommit)
    this.committer.onDurable = (ops) => { this.recordCache.applied(ops); this.noteDurableStates(ops); this.noteBodies(ops, true) }
    this.committer.onFailed = (ops) => { this.recordCache.clear(); this.durableSeq.clear(); this.noteBodies(ops, false) }
  }

  /** Which bodies may be stored already (blob-filter.ts): putBody asks it before LevelDB. */
  protected readonly blobFilter = new BlobFilter({ hashes: signal => this.blobHashes(signal) })

  /** Every stored body's hash from the body index (keys only), in batches, for the filter's scan. */
  private async * blobHashes (signal: AbortSignal): AsyncGenerator<string[]> {
    const it = this.db.keys({ gte: keys.blob(''), lt: BLOB_KEYS_END })
    try {
      while (!signal.aborted) {
        const batch = await it.nextv(BLOB_SCAN_BATCH)
        if (batch.length === 0) return
        yield batch.map(k => k.slice(BLOB_KEY_PREFIX_LENGTH))
      }
    } finally {
      await it.close()
    }
  }

  private noteBodies (ops: BatchOp[], durable: boolean): void {
    for (const op of ops) {
      if (op.type !== 'put' || !op.key.startsWith(BLOB_KEY_PREFIX)) continue
      const hash = op.key.slice(BLOB_KEY_PREFIX_LENGTH)
      if (durable) this.blobFilter.durable(hash)
      else this.blobFilter.failed(hash)
    }
  }

  /**
   * Users' log positions as durable: set from each batch the group commit made durable (before its writer
   * resumes), the only way a user's state changes on disk. logPosition answers from it while a write of the user is
   * under way, instead of reading the state from LevelDB (2.2 % of a grid node's time under ingest): a value here is
   * never ahead of the disk, and never behind it, since every state write passes through the committer.
   */
  private readonly durableSeq = new Map<string, number>()

  private noteDurableStates (ops: BatchOp[]): void {
    for (const op of ops) {
      if (!op.key.startsWith(STATE_KEY)) continue
      const user = op.key.slice(STATE_KEY.length)
      const seq = op.type === 'put' ? (op.value as UserState | undefined)?.logSeq : undefined
      if (typeof seq === 'number') this.durableSeq.set(user, seq)
      else this.durableSeq.delete(user)
    }
  }

  // ---- user state ------------------------------------------------------------------------------------

  private async load (user: string): Promise<Cached> {
    const hit = this.cache.get(user)
    if (hit !== undefined) {
      this.cache.delete(user) // re-insert: Map order is our LRU order
      this.cache.set(user, hit)
      return hit
    }
    const state: UserState | undefined = await this.db.get(keys.state(user))
    if (state === undefined) throw new MailError('notFound', 'No such user')
    const c: Cached = { state, boxes: new Map(), byName: new Map(), subs: new Set(await this.listSubscriptions(user)), index: new Map() }
    for (const rec of await readRange<MailboxRec>(this.db.values(keys.mailboxRange(user)))) {
      c.boxes.set(rec.id, rec)
      c.byName.set(rec.name, rec.id)
      if (rec.messages === 0) c.index.set(rec.id, { uids: [], flags: [] }) // complete already; kept by applyEntry
    }
    this.cache.set(user, c)
    for (const [k] of this.cache) {
      if (this.cache.size <= USER_CACHE_MAX) break
      if (!this.lock.isLocked(k)) this.cache.delete(k)
    }
    return c
  }

  /** Runs build() under the users' locks, commits its batch durably, then emits its events. */
  protected async write<T> (users: string[], build: (tx: Tx, get: (u: string) => Cached) => Promise<T> | T, opts?: OpOptions & { create?: boolean }): Promise<T> {
    return await this.lock.with(users, async () => {
      opts?.signal?.throwIfAborted()
      const tx = new Tx()
      for (const u of users) {
        tx.users.set(u, opts?.create === true ? await this.load(u).catch(() => emptyState()) : await this.load(u))
      }
      const get = (u: string): Cached => {
        const c = tx.users.get(u)
        if (c === undefined) throw new Error(`user ${u} not locked in this write`)
        return c
      }
      let result: T
      try {
        result = await build(tx, get)
        for (const [u, c] of tx.users) tx.put(keys.state(u), c.state)
        if (tx.ops.length > 0) await this.committer.submit(tx.ops)
        for (const [u, c] of tx.users) this.cache.set(u, c)
        for (const f of tx.after) f()
        if (tx.attrChanges.length > 0) this.attrsChanged(tx.attrChanges)
      } catch (err) {
        for (const u of tx.users.keys()) this.cache.delete(u) // build mutated the cache: reload from disk
        throw err
      }
      for (const [u, ev] of tx.events) this.emit(u, ev)
      return result
    })
  }

  /** Writes of one user waiting for its lock (writeCombined): the first to get the lock takes them all. */
  private readonly combining = new Map<string, Combined[]>()
  /** Batches writeCombined built of more than one write, and the writes they carried (the node's status and metrics). */
  combinedBatches = 0
  combinedWrites = 0

  /**
   * Like write([user], build), for writes that do not depend on one another's outcome (deliveries): the writes of
   * the user that arrive while its lock is held wait together, and the first of them to get the lock builds them
   * all, in arrival order, into one batch, so a user receiving many messages at once costs one commit per turn of
   * its lock instead of one per message. The lock is still held from reading the state to the durable commit, and
   * each write resolves only once the batch is durable. A write whose build throws before it changed anything (its
   * mailbox is gone, its quota is full, its signal aborted) fails alone; one that throws after changing the batch
   * fails the batch, and every write in it, as a failed commit does.
   */
  protected async writeCombined<T> (user: string, build: (tx: Tx, get: (u: string) => Cached) => Promise<T> | T, opts?: OpOptions): Promise<T> {
    opts?.signal?.throwIfAborted()
    return await new Promise<T>((resolve, reject) => {
      const item: Combined = { build, signal: opts?.signal, resolve: resolve as (v: unknown) => void, reject }
      const waiting = this.combining.get(user)
      if (waiting !== undefined && waiting.length < COMBINE_MAX) {
        waiting.push(item)
        return
      }
      const queue = [item]
      this.combining.set(user, queue)
      this.lock.with([user], async () => {
        if (this.combining.get(user) === queue) this.combining.delete(user) // later writes wait for the next turn
        await this.buildCombined(user, queue)
      }).catch((err: unknown) => { for (const it of queue) it.reject(err) }) // settled already unless the lock failed
    })
  }

  private async buildCombined (user: string, items: Combined[]): Promise<void> {
    const open = new Set(items)
    const settle = (it: Combined, err: unknown, value?: unknown): void => {
      if (!open.delete(it)) return
      if (err !== undefined) it.reject(err)
      else it.resolve(value)
    }
    const tx = new Tx()
    const built: Array<[Combined, unknown]> = []
    try {
      const c = await this.load(user)
      tx.users.set(user, c)
      const get = (u: string): Cached => {
        if (u !== user) throw new Error(`user ${u} not locked in this write`)
        return c
      }
      for (const it of items) {
        if (it.signal?.aborted === true) { settle(it, it.signal.reason ?? new Error('aborted')); continue }
        const ops = tx.ops.length
        const seq = c.state.logSeq
        const events = tx.events.length
        const after = tx.after.length
        try {
          built.push([it, await it.build(tx, get)])
        } catch (err) {
          settle(it, err)
          // a build that changed the batch or the state before it threw leaves nothing the others can build on
          if (tx.ops.length !== ops || c.state.logSeq !== seq || tx.events.length !== events || tx.after.length !== after) throw err
        }
      }
      if (built.length > 0) {
        tx.put(keys.state(user), c.state)
        await this.committer.submit(tx.ops)
        if (built.length > 1) {
          this.combinedBatches++
          this.combinedWrites += built.length
        }
        this.cache.set(user, c)
        for (const f of tx.after) f()
        if (tx.attrChanges.length > 0) this.attrsChanged(tx.attrChanges)
      }
    } catch (err) {
      this.cache.delete(user) // the builds mutated the cached state: reload from disk
      for (const it of items) settle(it, err)
      return
    }
    for (const [u, ev] of tx.events) this.emit(u, ev)
    for (const [it, value] of built) settle(it, undefined, value)
  }

  /** Drops the user's cached state; the directory calls this when a user is deleted or created again. */
  protected forget (user: string): void {
    this.cache.delete(user)
    this.attrChanged(user, null)
  }

  /** Tells onAttrChange's listeners: `keys` null = every attribute of the user (the copy was dropped or deleted). */
  private attrChanged (user: string, keys: string[] | null): void {
    for (const l of this.attrListeners) {
      try { l(user, keys) } catch { /* a listener's failure is its own; the change is already durable */ }
    }
  }

  private attrsChanged (changes: Array<[string, string]>): void {
    const byUser = new Map<string, string[]>()
    for (const [u, k] of changes) byUser.set(u, [...(byUser.get(u) ?? []), k])
    for (const [u, ks] of byUser) this.attrChanged(u, ks)
  }

  /** Calls `listener` after any change of a user's attributes is durable: this node's writes, entries applied from
   * another node (log shipping, catch-up, a merge), and the user's copy dropped or deleted. For caches of attributes
   * (node/managesieve/scripts.ts). Returns the unsubscribe function. */
  onAttrChange (listener: (user: string, keys: string[] | null) => void): () => void {
    this.attrListeners.add(listener)
    return () => { this.attrListeners.delete(listener) }
  }

  /** Decides the next log position for an entry and applies it: the primary's only way to change mail. */
  private async commit (tx: Tx, user: string, c: Cached, entry: NewLogEntry, eid?: string): Promise<void> {
    const seq = c.state.logSeq + 1
    await applyEntry(this.reader, tx, user, c, { ...entry, seq, eid: eid ?? this.randomId().slice(0, 16) } as LogEntry)
  }

  // used under the user's lock only (applyEntry), where the kept records are the disk's
  private readonly reader = {
    get: async (key: string) => {
      const kept = this.recordCache.get(key)
      if (kept !== undefined) return kept ?? undefined
      return await this.db.get(key) as MessageRecord | undefined
    },
    getRaw: async (key: string) => await this.db.get(key) as unknown,
    values: (range: { gt: string, lt: string }) => this.db.values(range) as AsyncIterable<MessageRecord>
  }

  private nextModseq (c: Cached): number {
    return c.state.modseq + 1
  }

  /**
   * The entries that create a user's mail state: the default mailboxes, subscribed. Deterministic in the
   * user's creation time, so every node that learns of the user builds the same first log positions.
   */
  protected async initUser (user: string, createdMs: number, extra: BatchOp[] = [], mailboxes = DEFAULT_MAILBOXES): Promise<void> {
    await this.write([user], async (tx, get) => {
      const c = get(user)
      tx.ops.push(...extra)
      if (c.state.logSeq > 0) return
      for (const [name, use] of mailboxes) {
        await this.addMailbox(tx, user, c, name, use, createdMs, `init-${c.state.logSeq + 1}`)
        await this.commit(tx, user, c, { op: 'subscribe', name, subscribed: true }, `init-${c.state.logSeq + 1}`)
      }
    }, { create: true })
  }

  private async addMailbox (tx: Tx, user: string, c: Cached, name: string, specialUse: SpecialUse | null, nowMs = this.now(), eid?: string): Promise<MailboxRec> {
    if (c.boxes.size >= MAILBOXES_PER_USER_MAX) throw new MailError('limit', 'Too many mailboxes')
    // UIDVALIDITY: seconds since the epoch, forced to grow per user, so a mailbox re-created under an old
    // name never repeats an old value (RFC 3501 2.3.1.1)
    const uidValidity = Math.max(Math.floor(nowMs / 1000), c.state.lastUidValidity + 1) >>> 0
    const id = (c.state.mailboxSeq + 1).toString(36)
    await this.commit(tx, user, c, { op: 'mailboxCreate', mailbox: id, name, uidValidity, specialUse }, eid)
    return c.boxes.get(id) as MailboxRec
  }

  private boxByName (c: Cached, name: string): MailboxRec {
    const id = c.byName.get(normalizeMailboxName(name))
    const box = id === undefined ? undefined : c.boxes.get(id)
    if (box === undefined) throw new MailError('nonExistent', 'Mailbox does not exist')
    return box
  }

  private boxById (c: Cached, id: string): MailboxRec {
    const box = c.boxes.get(id)
    if (box === undefined) throw new MailError('nonExistent', 'Mailbox does not exist')
    return box
  }

  // ---- mailboxes -------------------------------------------------------------------------------------

  async listMailboxes (user: string): Promise<Mailbox[]> {
    const subs = new Set(await this.listSubscriptions(user))
    const out: Mailbox[] = []
    for (const rec of await readRange<MailboxRec>(this.db.values(keys.mailboxRange(user)))) {
      out.push({ ...rec, subscribed: subs.has(rec.name) })
    }
    return out.sort((a, b) => a.name === 'INBOX' ? -1 : b.name === 'INBOX' ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  }

  async getMailbox (user: string, name: string): Promise<Mailbox | null> {
    const n = normalizeMailboxName(name)
    const all = await this.listMailboxes(user)
    return all.find(m => m.name === n) ?? null
  }

  async createMailbox (user: string, name: string, opts?: OpOptions & { specialUse?: SpecialUse }): Promise<Mailbox> {
    const n = checkMailboxName(name)
    return await this.write([user], async (tx, get) => {
      const c = get(user)
      if (c.byName.has(n)) throw new MailError('exists', 'Mailbox already exists')
      // RFC 3501 6.3.3: superior names needed for the new one are created too
      for (const p of parentsOf(n)) if (!c.byName.has(p)) await this.addMailbox(tx, user, c, p, null)
      const rec = await this.addMailbox(tx, user, c, n, opts?.specialUse ?? null)
      return { ...rec, subscribed: false }
    }, opts)
  }

  async deleteMailbox (user: string, name: string, opts?: OpOptions): Promise<void> {
    const n = normalizeMailboxName(name)
    if (n === 'INBOX') throw new MailError('denied', 'INBOX cannot be deleted')
    await this.write([user], async (tx, get) => {
      const c = get(user)
      const box = this.boxByName(c, n)
      for (const other of c.byName.keys()) {
        if (isChildOf(other, n)) throw new MailError('hasChildren', 'Mailbox has children, delete them first')
      }
      await this.commit(tx, user, c, { op: 'mailboxDelete', mailbox: box.id })
    }, opts)
  }

  async renameMailbox (user: string, from: string, to: string, opts?: OpOptions): Promise<void> {
    const src = normalizeMailboxName(from)
    const dst = checkMailboxName(to)
    await this.write([user], async (tx, get) => {
      const c = get(user)
      const box = this.boxByName(c, src)
      if (c.byName.has(dst)) throw new MailError('exists', 'Target mailbox already exists')
      if (dst === src || isChildOf(dst, src)) throw new MailError('invalid', 'Cannot rename a mailbox into itself')
      if (src === 'INBOX') {
        // RFC 3501 6.3.5: renaming INBOX moves its messages to a new mailbox and leaves INBOX empty; INBOX's
        // children are not renamed.
        for (const p of parentsOf(dst)) if (!c.byName.has(p)) await this.addMailbox(tx, user, c, p, null)
        const target = await this.addMailbox(tx, user, c, dst, null)
        const recs = await this.db.values(keys.messageRange(user, box.id)).all() as MessageRecord[]
        await this.moveRecords(tx, user, c, box, recs, target)
        return
      }
      const renames: Array<[MailboxRec, string]> = [[box, dst]]
      for (const [n, id] of c.byName) {
        if (isChildOf(n, src)) renames.push([this.boxById(c, id), dst + n.slice(src.length)])
      }
      for (const [, newName] of renames) checkMailboxName(newName)
      for (const p of parentsOf(dst)) if (!c.byName.has(p)) await this.addMailbox(tx, user, c, p, null)
      for (const [b, newName] of renames) await this.commit(tx, user, c, { op: 'mailboxRename', mailbox: b.id, name: newName })
    }, opts)
  }

  async setSubscribed (user: string, name: string, subscribed: boolean, opts?: OpOptions): Promise<void> {
    const n = checkMailboxName(name)
    await this.write([user], async (tx, get) => {
      const c = get(user)
      // RFC 3501 6.3.6: SUBSCRIBE of a mailbox that does not exist may be refused; we refuse, like Dovecot.
      if (subscribed && !c.byName.has(n)) throw new MailError('nonExistent', 'Mailbox does not exist')
      await this.commit(tx, user, c, { op: 'subscribe', name: n, subscribed })
    }, opts)
  }

  async listSubscriptions (user: string): Promise<string[]> {
    const out: string[] = []
    const prefix = keys.subscription(user, '')
    for (const k of await readRange(this.db.keys(keys.subscriptionRange(user)))) out.push(k.slice(prefix.length))
    return out
  }

  // ---- user attributes (MailStore.setAttrs) ------------------------------------------------------------

  async getAttr (user: string, key: string): Promise<string | null> {
    const v = await this.db.get(keys.attr(user, key)) as { v: string } | undefined
    return v?.v ?? null
  }

  async listAttrs (user: string, prefix: string, opts?: { limit?: number }): Promise<UserAttr[]> {
    const base = keys.attr(user, '')
    const r = keys.attrRange(user)
    const out: UserAttr[] = []
    const range = prefix === '' ? r : { gte: base + prefix, lt: base + prefix + '\uffff' }
    for (const [k, v] of await readRange<[string, { v: string, at: number }]>(this.db.iterator({ ...range, ...(opts?.limit !== undefined ? { limit: opts.limit } : {}) }))) {
      out.push({ key: k.slice(base.length), value: v.v, at: v.at })
    }
    return out
  }

  async setAttrs (user: string, changes: Array<{ key: string, value: string | null }>, opts?: OpOptions & { at?: number }): Promise<void> {
    if (changes.length > ATTR_CHANGES_MAX) throw new MailError('limit', 'Too many attributes in one change')
    for (const ch of changes) checkAttr(ch.key, ch.value)
    const at = opts?.at ?? this.now()
    await this.write([user], async (tx, get) => {
      const c = get(user)
      // the bounds count what the user holds after this change (one read of the user's attributes)
      const now = new Map((await this.listAttrs(user, '')).map(a => [a.key, Buffer.byteLength(a.key) + Buffer.byteLength(a.value)]))
      for (const ch of changes) {
        if (ch.value === null) now.delete(ch.key)
        else now.set(ch.key, Buffer.byteLength(ch.key) + Buffer.byteLength(ch.value))
      }
      // a merge (opts.at given) takes the other side's changes whatever they weigh: it must never fail on a bound
      const grows = opts?.at === undefined && changes.some(ch => ch.value !== null)
      if (grows && now.size > ATTRS_PER_USER_MAX) throw new MailError('limit', 'Too many attributes for this user')
      if (grows && [...now.values()].reduce((a, b) => a + b, 0) > ATTR_BYTES_PER_USER_MAX) throw new MailError('limit', 'Attributes of this user exceed their size limit')
      for (const ch of changes) await this.commit(tx, user, c, { op: 'attr', key: ch.key, value: ch.value, at })
    }, opts)
  }

  // ---- messages: writes ---------------------------------------------------------------------------------

  /** Stores the body (once per content) and its parsed structure; returns the batch ops that index them and
   * where the body is (which the records that refer to it keep). */
  protected async putBody (raw: Buffer): Promise<{ hash: string, ops: BatchOp[], loc: BlobLocation }> {
    const hash = sha256Hex(raw)
    const ops: BatchOp[] = []
    // A new body is known new from the filter, with no LevelDB read (blob-filter.ts); a "maybe" is a synchronous
    // lookup, at a tenth of the CPU of an asynchronous get (0.6 against 6.7 µs), whose hand-off to the thread pool
    // was the largest item of the ingest profile once
    let loc: BlobLocation | undefined = this.blobFilter.mayHold(hash) ? this.db.getSync(keys.blob(hash)) : undefined
    if (loc === undefined) {
      this.blobFilter.add(hash)
      loc = await this.blobs.append(hash, raw)
      ops.push({ type: 'put', key: keys.blob(hash), value: loc })
      const meta = analyzeMessage(raw)
      ops.push({ type: 'put', key: keys.meta(hash), value: meta })
      // bytes as Latin-1 characters: a JSON string that decodes back to exactly these bytes
      if (meta.root.headerEnd <= HEADER_CACHE_BYTES_MAX) ops.push({ type: 'put', key: keys.header(hash), value: raw.toString('latin1', 0, meta.root.headerEnd) })
    }
    return { hash, ops, loc }
  }

  private checkFlags (flags: string[]): string[] {
    const out = [...new Set(flags.filter(f => f !== '\\Recent'))]
    if (out.length > FLAGS_PER_MESSAGE_MAX) throw new MailError('limit', 'Too many flags')
    for (const f of out) {
      if (f.length === 0 || Buffer.byteLength(f) > FLAG_BYTES_MAX || /[\x00-\x20()*%"\\\]{\x7f]/.test(f.replace(/^\\/, ''))) {
        throw new MailError('invalid', 'Invalid flag')
      }
    }
    return out
  }

  /** A directory record as stored (tombstones included); the directory serves it from memory. */
  protected async directoryRecord (key: string): Promise<any> {
    return await this.db.get(key)
  }

  private async quotaLimits (user: string): Promise<{ bytes: number, messages: number }> {
    const u = await this.directoryRecord(keys.user(user))
    return { bytes: u?.quotaBytes ?? 0, messages: u?.quotaMessages ?? 0 }
  }

  private checkQuota (c: Cached, limits: { bytes: number, messages: number }, bytes: number, messages: number): void {
    if (limits.bytes > 0 && c.state.usedBytes + bytes > limits.bytes) throw new MailError('noQuota', 'Quota exceeded (mailbox full)')
    if (limits.messages > 0 && c.state.usedMessages + messages > limits.messages) throw new MailError('noQuota', 'Quota exceeded (too many messages)')
  }

  private async addRecord (tx: Tx, user: string, c: Cached, box: MailboxRec, rec: Omit<MessageRecord, 'uid' | 'modseq'>): Promise<MessageRecord> {
    // RFC 8514: the save date is when the message entered this mailbox (a copy or move is saved anew)
    const full: MessageRecord = { ...rec, saved: rec.saved ?? this.now(), uid: box.uidNext, modseq: this.nextModseq(c) }
    await this.commit(tx, user, c, { op: 'append', mailbox: box.id, ...full })
    return full
  }

  /** Copies (new global ids) or moves (same ids, then one expunge of the source) records into target. */
  private async copyRecords (tx: Tx, user: string, c: Cached, recs: MessageRecord[], target: MailboxRec, keepIds = false): Promise<Array<[number, number]>> {
    const pairs: Array<[number, number]> = []
    for (const r of recs) {
      if (r.loc !== undefined) tx.locs.set(r.blob, r.loc)
      const copy = await this.addRecord(tx, user, c, target, { gid: keepIds ? r.gid : this.randomId(), flags: r.flags, internalDate: r.internalDate, size: r.size, blob: r.blob, prefix: r.prefix })
      pairs.push([r.uid, copy.uid])
    }
    return pairs
  }

  private async moveRecords (tx: Tx, user: string, c: Cached, src: MailboxRec, recs: MessageRecord[], target: MailboxRec): Promise<Array<[number, number]>> {
    const pairs = await this.copyRecords(tx, user, c, recs, target, true)
    if (recs.length > 0) await this.commit(tx, user, c, { op: 'expunge', mailbox: src.id, uids: recs.map(r => r.uid), modseq: this.nextModseq(c) })
    return pairs
  }

  async append (user: string, name: string, input: AppendInput, opts?: OpOptions): Promise<AppendResult> {
    const [res] = await this.deliver(input.raw, [{ user, mailbox: name, prefix: input.prefix ?? '', flags: input.flags ?? [] }], { ...opts, internalDate: input.internalDate, gid: input.gid, saved: input.saved })
    return res
  }

  async appendMany (user: string, name: string, inputs: AppendInput[], opts?: OpOptions & { expunge?: { mailbox: string, uids: number[] } }): Promise<{ appended: AppendResult[], expunged: { uids: number[], modseq: number } | null }> {
    const flagsOf = inputs.map(i => this.checkFlags(i.flags ?? []))
    // bodies first (content-addressed: one left unreferenced by a refused batch is what a failed delivery leaves too)
    const bodies: Array<{ hash: string, ops: BatchOp[], loc: BlobLocation }> = []
    const byHash = new Map<string, { hash: string, ops: BatchOp[], loc: BlobLocation }>()
    for (const i of inputs) {
      // the same content twice in one batch is stored once
      const known = byHash.get(sha256Hex(i.raw))
      const body = known === undefined ? await this.putBody(i.raw) : { ...known, ops: [] }
      byHash.set(body.hash, body)
      bodies.push(body)
    }
    const limits = await this.quotaLimits(user)
    return await this.write([user], async (tx, get) => {
      const c = get(user)
      const box = this.boxByName(c, name)
      const old = opts?.expunge === undefined ? null : this.boxById(c, opts.expunge.mailbox)
      const gone = old === null ? [] : await this.records(user, old, opts?.expunge?.uids ?? [])
      const sizes = inputs.map(i => i.raw.length + Buffer.byteLength(i.prefix ?? ''))
      // all or nothing: what the batch adds, less what it expunges, must fit
      this.checkQuota(c, limits, sizes.reduce((a, b) => a + b, 0) - gone.reduce((a, r) => a + r.size, 0), inputs.length - gone.length)
      const appended: AppendResult[] = []
      for (const [n, i] of inputs.entries()) {
        tx.ops.push(...bodies[n].ops)
        tx.locs.set(bodies[n].hash, bodies[n].loc)
        const rec = await this.addRecord(tx, user, c, box, {
          gid: this.randomId(), flags: flagsOf[n], internalDate: i.internalDate ?? this.now(), size: sizes[n], blob: bodies[n].hash, prefix: i.prefix ?? ''
        })
        appended.push({ mailbox: box.id, uidValidity: box.uidValidity, uid: rec.uid, modseq: rec.modseq, gid: rec.gid })
      }
      let expunged: { uids: number[], modseq: number } | null = null
      if (old !== null) {
        expunged = { uids: gone.map(r => r.uid), modseq: old.highestModseq }
        if (gone.length > 0) {
          expunged.modseq = this.nextModseq(c)
          await this.commit(tx, user, c, { op: 'expunge', mailbox: old.id, uids: expunged.uids, modseq: expunged.modseq })
        }
      }
      return { appended, expunged }
    }, opts)
  }

  async raiseUidNext (user: string, mailboxId: string, uidNext: number, modseq?: number): Promise<void> {
    await this.write([user], async (tx, get) => {
      const c = get(user)
      const box = this.boxById(c, mailboxId)
      const uid = Number.isSafeInteger(uidNext) && uidNext > box.uidNext
      const mod = modseq !== undefined && Number.isSafeInteger(modseq) && modseq > box.highestModseq
      if (uid || mod) await this.commit(tx, user, c, { op: 'uidNext', mailbox: box.id, uidNext: uid ? uidNext : box.uidNext, ...(mod ? { modseq } : {}) })
    })
  }

  async renumber (user: string, mailboxId: string, uids: number[]): Promise<Array<[number, number]>> {
    return await this.write([user], async (tx, get) => {
      const c = get(user)
      const box = this.boxById(c, mailboxId)
      return await this.moveRecords(tx, user, c, box, await this.records(user, box, uids), box)
    })
  }

  async deliver (raw: Buffer, targets: DeliveryTarget[], opts?: OpOptions & { internalDate?: number, gid?: string, saved?: number }): Promise<AppendResult[]> {
    if (targets.length === 0) return []
    const flagsOf = targets.map(t => this.checkFlags(t.flags ?? []))
    const body = await this.putBody(raw)
    const users = targets.map(t => t.user)
    const limits = new Map<string, { bytes: number, messages: number }>()
    for (const u of new Set(users)) limits.set(u, await this.quotaLimits(u))
    const build = async (tx: Tx, get: (u: string) => Cached): Promise<AppendResult[]> => {
      // All-or-nothing: every target's mailbox and quota are checked before anything is added.
      const need = new Map<string, { bytes: number, messages: number }>()
      const boxes = targets.map(t => this.boxByName(get(t.user), t.mailbox ?? 'INBOX'))
      targets.forEach(t => {
        const n = need.get(t.user) ?? { bytes: 0, messages: 0 }
        n.bytes += raw.length + Buffer.byteLength(t.prefix)
        n.messages += 1
        need.set(t.user, n)
      })
      // a message re-added under its old global id (the grid's merge after a partition) was accepted once
      // already: quota does not get to lose it now
      if (opts?.gid === undefined) for (const [u, n] of need) this.checkQuota(get(u), limits.get(u) as { bytes: number, messages: number }, n.bytes, n.messages)
      tx.ops.push(...body.ops)
      tx.locs.set(body.hash, body.loc)
      const internalDate = opts?.internalDate ?? this.now()
      const out: AppendResult[] = []
      for (const [i, t] of targets.entries()) {
        const box = boxes[i]
        if (opts?.gid !== undefined && targets.length === 1) {
          // a message with this global id is already here: adding it again would duplicate it (merges,
          // retried hand-offs); answer with where it is
          const at = await gidLocation(this.reader, tx, t.user, opts.gid)
          if (at !== null) {
            const [mb, uid] = at.split('\x00')
            const where = get(t.user).boxes.get(mb)
            const rec = await this.reader.get(keys.message(t.user, mb, Number(uid)))
            out.push({ mailbox: mb, uidValidity: where?.uidValidity ?? 0, uid: Number(uid), modseq: rec?.modseq ?? 0, gid: opts.gid })
            continue
          }
        }
        const rec = await this.addRecord(tx, t.user, get(t.user), box, {
          gid: targets.length === 1 && opts?.gid !== undefined ? opts.gid : this.randomId(), flags: flagsOf[i], internalDate, size: raw.length + Buffer.byteLength(t.prefix), blob: body.hash, prefix: t.prefix,
          ...(opts?.saved !== undefined && Number.isSafeInteger(opts.saved) ? { saved: opts.saved } : {})
        })
        out.push({ mailbox: box.id, uidValidity: box.uidValidity, uid: rec.uid, modseq: rec.modseq, gid: rec.gid })
      }
      return out
    }
    // A delivery to one user is built with the user's other deliveries waiting then (one batch, one commit); one
    // that re-adds a message under its old global id (a merge, a retried hand-off) looks for it first, alone
    if (opts?.gid === undefined && limits.size === 1) return await this.writeCombined(users[0], build, opts)
    return await this.write(users, build, opts)
  }

  private async records (user: string, box: MailboxRec, uids: number[]): Promise<MessageRecord[]> {
    const wanted = [...new Set(uids)].filter(u => Number.isInteger(u) && u > 0 && u < box.uidNext).sort((a, b) => a - b)
    // under the user's lock: the kept records are the disk's (every durable batch reached them before the lock was let go)
    const kept = this.recordCache.pick(user, box.id, wanted)
    if (kept !== undefined) return kept
    const got = await this.db.getMany(wanted.map(u => keys.message(user, box.id, u)))
    return got.filter((r): r is MessageRecord => r !== undefined)
  }

  async storeFlags (user: string, mailboxId: string, uids: number[], op: FlagOp, flags: string[], opts?: OpOptions & { unchangedSince?: number }): Promise<StoreFlagsResult> {
    const fl = this.checkFlags(flags)
    return await this.write([user], async (tx, get) => {
      const c = get(user)
      const box = this.boxById(c, mailboxId)
      const recs = await this.records(user, box, uids)
      const result: StoreFlagsResult = { modseq: box.highestModseq, changed: [], unchanged: [], failedUnchangedSince: [] }
      const changes: Array<[number, string[]]> = []
      for (const r of recs) {
        if (opts?.unchangedSince !== undefined && r.modseq > opts.unchangedSince) {
          result.failedUnchangedSince.push(r.uid)
          continue
        }
        const next = op === 'set' ? fl : op === 'add' ? [...new Set([...r.flags, ...fl])] : r.flags.filter(f => !fl.includes(f))
        if (next.length > FLAGS_PER_MESSAGE_MAX) throw new MailError('limit', 'Too many flags')
        if (next.length === r.flags.length && next.every(f => r.flags.includes(f))) {
          result.unchanged.push({ uid: r.uid, flags: r.flags, modseq: r.modseq })
          continue
        }
        changes.push([r.uid, next])
      }
      if (changes.length > 0) {
        // One modseq for the whole command: RFC 7162 3.1 only asks that it grow
        const modseq = this.nextModseq(c)
        await this.commit(tx, user, c, { op: 'flags', mailbox: box.id, changes, modseq })
        result.changed = changes.map(([uid, f]) => ({ uid, flags: f, modseq }))
      }
      result.modseq = box.highestModseq
      return result
    }, opts)
  }

  async expunge (user: string, mailboxId: string, uids: number[], opts?: OpOptions): Promise<{ uids: number[], modseq: number }> {
    return await this.write([user], async (tx, get) => {
      const c = get(user)
      const box = this.boxById(c, mailboxId)
      const recs = await this.records(user, box, uids)
      if (recs.length === 0) return { uids: [], modseq: box.highestModseq }
      const done = recs.map(r => r.uid)
      const modseq = this.nextModseq(c)
      await this.commit(tx, user, c, { op: 'expunge', mailbox: box.id, uids: done, modseq })
      return { uids: done, modseq }
    }, opts)
  }

  async copy (user: string, fromId: string, uids: number[], toName: string, opts?: OpOptions): Promise<CopyResult> {
    const limits = await this.quotaLimits(user)
    return await this.write([user], async (tx, get) => {
      const c = get(user)
      const src = this.boxById(c, fromId)
      const dst = this.boxByName(c, toName)
      const recs = await this.records(user, src, uids)
      this.checkQuota(c, limits, recs.reduce((s, r) => s + r.size, 0), recs.length)
      const pairs = await this.copyRecords(tx, user, c, recs, dst)
      return { uidValidity: dst.uidValidity, pairs, modseq: dst.highestModseq }
    }, opts)
  }

  async move (user: string, fromId: string, uids: number[], toName: string, opts?: OpOptions): Promise<CopyResult & { expunged: number[] }> {
    return await this.write([user], async (tx, get) => {
      const c = get(user)
      const src = this.boxById(c, fromId)
      const dst = this.boxByName(c, toName)
      // Into the same mailbox too (as Dovecot allows): the messages get new UIDs and the old ones are expunged; the
      // global id follows the new record (the expunge drops the gid entry only where it still names the old one).
      const recs = await this.records(user, src, uids)
      // Moving does not change usage: quota is not checked (RFC 6851 3.3 lets a MOVE within quota succeed)
      const pairs = await this.moveRecords(tx, user, c, src, recs, dst)
      return { uidValidity: dst.uidValidity, pairs, modseq: dst.highestModseq, expunged: recs.map(r => r.uid) }
    }, opts)
  }

  // ---- replication --------------------------------------------------------------------------------------

  /** The user's durable log position (0 when this node holds no state for the user). */
  async logPosition (user: string): Promise<number> {
    // Asked on every write of the grid (lead, replicate, each shipment received): answered from the cached state
    // when no write of the user is under way. A write changes the cached state before its batch is durable (and
    // drops it if the commit fails), so while the user's lock is held the cache may be ahead of the disk and the
    // answer comes from LevelDB, as it always did: replicate() must never be told of an entry that is not durable.
    if (this.lock.isLocked(user)) {
      const durable = this.durableSeq.get(user)
      if (durable !== undefined) return durable
    } else {
      const hit = this.cache.get(user)
      if (hit !== undefined) return hit.state.logSeq
    }
    const state: UserState | undefined = await this.db.get(keys.state(user))
    return state?.logSeq ?? 0
  }

  /** Which of these bodies this node lacks. */
  async missingBlobs (hashes: string[]): Promise<string[]> {
    const uniq = [...new Set(hashes)]
    const got = await this.db.getMany(uniq.map(h => keys.blob(h)))
    return uniq.filter((_, i) => got[i] === undefined)
  }

  async readBlob (hash: string): Promise<Buffer> {
    // a body stored lately (the primary shipping what it just took) is still in memory: no location read
    return this.blobs.kept(hash) ?? await this.blobs.read(await this.location(hash))
  }

  /**
   * Applies entries another node decided (log shipping). Entries at or below this copy's position are
   * skipped (so a retry is harmless); the rest must continue the log without a gap. Bodies the entries
   * need must be present or among `blobs`; each blob is checked against its hash before it is stored.
   * Resolves to the new position once it is durable.
   */
  async applyLog (user: string, entries: LogEntry[], blobs: Buffer[] = [], prev?: LogAnchor): Promise<number> {
    const ops: BatchOp[] = []
    const locs = new Map<string, BlobLocation>()
    for (const b of blobs) {
      const body = await this.putBody(b)
      ops.push(...body.ops)
      locs.set(body.hash, body.loc)
    }
    return await this.write([user], async (tx, get) => {
      const c = get(user)
      const have = c.state.logSeq
      // the shipment must continue this very copy: its anchor and every entry we already hold are ours (one
      // read of our entries over that stretch)
      const claimed = new Map<number, string | null>()
      if (prev !== undefined && prev.seq > 0 && prev.seq <= have) claimed.set(prev.seq, prev.eid)
      for (const e of entries) if (e.seq <= have) claimed.set(e.seq, e.eid ?? null)
      if (claimed.size > 0) {
        const from = Math.min(...claimed.keys())
        const ours = new Map((await this.readLog(user, from, Math.max(...claimed.keys()) - from + 1)).map(e => [e.seq, e.eid ?? null]))
        for (const [seq, eid] of claimed) {
          if (ours.get(seq) !== eid) throw new LogDivergedError(have, `log of ${user} diverged at ${seq}`)
        }
      }
      tx.ops.push(...ops)
      for (const [h, l] of locs) tx.locs.set(h, l)
      for (const e of entries) {
        if (e.seq <= c.state.logSeq) continue
        if (e.seq !== c.state.logSeq + 1) throw new MailError('invalid', `log gap: have ${c.state.logSeq}, got ${e.seq}`)
        if (e.op === 'append' && !locs.has(e.blob) && (await this.missingBlobs([e.blob])).length > 0) {
          throw new MailError('invalid', `log entry ${e.seq} needs body ${e.blob}`)
        }
        await applyEntry(this.reader, tx, user, c, e)
      }
      return c.state.logSeq
    }, { create: true })
  }

  /** Drops this node's copy of a user's mail (state, mailboxes, records, log); bodies stay for the GC. */
  async dropUserMail (user: string, expect?: LogAnchor): Promise<boolean> {
    return await this.lock.with([user], async () => {
      if (expect !== undefined) {
        const position = await this.logPosition(user)
        const [last] = position > 0 ? await this.readLog(user, position, 1) : []
        if (position !== expect.seq || (last?.eid ?? null) !== expect.eid) return false
      }
      await this.committer.submit(await this.userDeletionOps(user))
      this.cache.delete(user)
      this.recordCache.drop(user)
      this.attrChanged(user, null)
      return true
    })
  }

  // ---- messages: reads ----------------------------------------------------------------------------------

  async listMessages (user: string, mailboxId: string, range?: { from?: number, to?: number }): Promise<MessageRecord[]> {
    const kept = this.recordCache.range(user, mailboxId, range?.from, range?.to)
    if (kept !== undefined) return kept
    // A bounded range is FETCH's, SEARCH's or STORE's batch (node/imap/records.ts): the mailbox is in use, so all of
    // its records are read once and kept. A whole listing (SELECT of a small mailbox, STATUS, POP3) is not kept: an
    // idle session's mailbox stays out of memory.
    if (range?.from !== undefined && range.to !== undefined && await this.keepable(user, mailboxId)) {
      const all = await this.recordCache.fill(user, mailboxId, async () => await this.readMessages(user, mailboxId))
      const from = range.from
      const to = range.to
      return all.filter(r => r.uid >= from && r.uid <= to)
    }
    return await this.readMessages(user, mailboxId, range)
  }

  /** Whether a mailbox is small enough to keep its records in memory: a larger one (or one that is gone) is read
   * range by range, never whole for every batch. */
  private async keepable (user: string, mailboxId: string): Promise<boolean> {
    const box: MailboxRec | undefined = this.cache.get(user)?.boxes.get(mailboxId) ?? await this.db.get(keys.mailbox(user, mailboxId))
    return box !== undefined && this.recordCache.fits(box.messages)
  }

  /** The records from LevelDB (see listMessages). */
  private async readMessages (user: string, mailboxId: string, range?: { from?: number, to?: number }): Promise<MessageRecord[]> {
    const r = keys.messageRange(user, mailboxId)
    const opts: { gt?: string, lt?: string, gte?: string, lte?: string } = { ...r }
    if (range?.from !== undefined) { delete opts.gt; opts.gte = keys.message(user, mailboxId, Math.max(1, range.from)) }
    if (range?.to !== undefined) { delete opts.lt; opts.lte = keys.message(user, mailboxId, Math.min(range.to, 9_999_999_999)) }
    // in growing batches, not all(): see ranges.ts (a small mailbox's listing pinned ~64 KiB of native memory);
    // a bounded range (FETCH's and SEARCH's batches) starts with a batch of its size
    const bounded = range?.from !== undefined && range.to !== undefined ? range.to - Math.max(1, range.from) + 1 : 0
    return await readRange<MessageRecord>(this.db.values(opts), bounded > 0 ? bounded : undefined)
  }

  async listFlags (user: string, mailboxId: string): Promise<{ uids: number[], flags: string[][] }> {
    // A built index only changes once a write is durable (Tx.after): read it as it is, without waiting for the
    // writes queued on the user's lock (a SELECT during heavy delivery would wait for all of them)
    const warm = this.cache.get(user)?.index.get(mailboxId)
    if (warm !== undefined) return { uids: warm.uids.slice(), flags: warm.flags.slice() }
    // A small mailbox is listed from its records and nothing is kept: an idle session's SELECT does not load its
    // user's state into memory (5,000 IDLE sessions grew the node by 20 to 40 KiB each when it did)
    const recs = await this.listMessages(user, mailboxId)
    if (recs.length < INDEX_MESSAGES_MIN) return { uids: recs.map(r => r.uid), flags: recs.map(r => r.flags) }
    // Building it: under the lock, so that no write commits between reading the records and keeping the index
    return await this.lock.with([user], async () => {
      const c = await this.load(user)
      const box = this.boxById(c, mailboxId)
      let idx = c.index.get(box.id)
      if (idx === undefined) {
        const recs = await this.listMessages(user, box.id)
        idx = { uids: recs.map(r => r.uid), flags: recs.map(r => r.flags) }
        c.index.set(box.id, idx)
      }
      return { uids: idx.uids.slice(), flags: idx.flags.slice() }
    })
  }

  async getMessage (user: string, mailboxId: string, uid: number): Promise<MessageRecord | null> {
    if (!Number.isInteger(uid) || uid < 1) return null
    const kept = this.recordCache.pick(user, mailboxId, [uid])
    if (kept !== undefined) return kept[0] ?? null
    return (await this.db.get(keys.message(user, mailboxId, uid))) ?? null
  }

  async getMessages (user: string, mailboxId: string, uids: number[]): Promise<MessageRecord[]> {
    const wanted = [...new Set(uids)].filter(u => Number.isInteger(u) && u > 0).sort((a, b) => a - b)
    const kept = this.recordCache.pick(user, mailboxId, wanted)
    if (kept !== undefined) return kept
    // a UID list is FETCH's, SEARCH's or STORE's (node/imap/records.ts): the mailbox is in use, keep it (above)
    if (wanted.length > 1 && await this.keepable(user, mailboxId)) {
      await this.recordCache.fill(user, mailboxId, async () => await this.readMessages(user, mailboxId))
      const filled = this.recordCache.pick(user, mailboxId, wanted)
      if (filled !== undefined) return filled
    }
    const got = await this.db.getMany(wanted.map(u => keys.message(user, mailboxId, u)))
    return got.filter((r): r is MessageRecord => r !== undefined)
  }

  async changesSince (user: string, mailboxId: string, modseq: number): Promise<ChangesSince> {
    const changed = (await this.listMessages(user, mailboxId)).filter(r => r.modseq > modseq)
    const expunged: number[] = []
    const from = keys.expunged(user, mailboxId, modseq + 1)
    for (const uids of await readRange<number[]>(this.db.values({ gte: from, lt: keys.expungedRange(user, mailboxId).lt }))) {
      expunged.push(...uids)
    }
    return { changed, expunged: expunged.sort((a, b) => a - b) }
  }

  private async location (hash: string): Promise<BlobLocation> {
    const loc: BlobLocation | undefined = await this.locations.get(keys.blob(hash))
    if (loc === undefined) throw new MailError('temp', `Message body ${hash} missing`)
    return loc
  }

  async getMeta (record: MessageRecord): Promise<MessageMeta> {
    // concurrent calls (a SEARCH batch, FETCH read-ahead) share one multi-get
    const meta: MessageMeta | undefined = await this.metas.get(keys.meta(record.blob))
    if (meta === undefined) throw new MailError('temp', `Message structure ${record.blob} missing`)
    const shift = Buffer.byteLength(record.prefix)
    if (shift === 0) return meta
    const move = (p: MimePart, top: boolean): void => {
      if (!top) p.headerStart += shift
      p.headerEnd += shift
      p.bodyStart += shift
      p.bodyEnd += shift
      for (const child of p.parts ?? []) move(child, false)
      if (p.message !== undefined) move(p.message.root, false)
    }
    move(meta.root, true)
    return meta
  }

  async readHeader (record: MessageRecord): Promise<Buffer | null> {
    // concurrent calls (a SEARCH batch, FETCH read-ahead) share one multi-get
    // the memo is keyed by the record's own hash string, whose hash V8 keeps: building `h` + hash for every lookup
    // and hashing it again was 3.7 % of the mixed load's busy time
    let header = this.headerMemo.get(record.blob)
    if (header === undefined) {
      const read = await this.headers.get(keys.header(record.blob))
      if (typeof read !== 'string') return null
      header = read
      this.headerMemo.set(record.blob, header)
    }
    const body = Buffer.from(header, 'latin1')
    return record.prefix === '' ? body : Buffer.concat([Buffer.from(record.prefix), body])
  }

  async readMessage (record: MessageRecord): Promise<Buffer> {
    const loc = record.loc ?? await this.location(record.blob)
    if (record.prefix === '') return await this.blobs.read(loc)
    // the prefix and the body in one buffer, the body read straight into place
    const shift = Buffer.byteLength(record.prefix)
    const buf = Buffer.allocUnsafe(shift + loc.len)
    buf.write(record.prefix, 0, shift, 'utf8')
    return await this.blobs.read(loc, 0, loc.len, buf, shift)
  }

  async * streamMessage (record: MessageRecord, range?: { start?: number, end?: number }): AsyncIterable<Buffer> {
    const prefix = Buffer.from(record.prefix)
    const start = Math.max(0, range?.start ?? 0)
    const end = Math.min(record.size, range?.end ?? record.size)
    if (start >= end) return
    if (start < prefix.length) yield prefix.subarray(start, Math.min(end, prefix.length))
    if (end > prefix.length) {
      yield * this.blobs.stream(record.loc ?? await this.location(record.blob), Math.max(0, start - prefix.length), end - prefix.length)
    }
  }

  async quota (user: string): Promise<QuotaUsage> {
    const state: UserState | undefined = await this.db.get(keys.state(user))
    if (state === undefined) throw new MailError('notFound', 'No such user')
    const limits = await this.quotaLimits(user)
    return { usedBytes: state.usedBytes, limitBytes: limits.bytes, usedMessages: state.usedMessages, limitMessages: limits.messages }
  }

  // ---- events and log -----------------------------------------------------------------------------------

  subscribe (user: string, listener: MailListener): () => void {
    let set = this.listeners.get(user)
    if (set === undefined) this.listeners.set(user, set = new Set())
    set.add(listener)
    return () => {
      set.delete(listener)
      if (set.size === 0 && this.listeners.get(user) === set) this.listeners.delete(user)
    }
  }

  private emit (user: string, event: MailEvent): void {
    for (const l of this.listeners.get(user) ?? []) {
      try {
        l(event)
      } catch {
        // a listener's failure is its own; the change is already durable
      }
    }
  }

  async readLog (user: string, from: number, limit: number): Promise<LogEntry[]> {
    // from the cached tail when it covers `from`: it holds durable entries only (Cached.tail), like the disk
    const tail = this.cache.get(user)?.tail
    const start = Math.max(1, from)
    if (tail !== undefined && tail.length > 0 && start >= tail[0].seq && Number.isInteger(limit) && limit >= 0) {
      return tail.slice(start - tail[0].seq, start - tail[0].seq + limit)
    }
    return await this.db.values({ gte: keys.log(user, Math.max(0, from)), lt: keys.logRange(user).lt, limit }).all() as LogEntry[]
  }

  /** Drops every key of a user's mail (the directory calls this when deleting a user, inside its own write). */
  protected async userDeletionOps (user: string): Promise<BatchOp[]> {
    const ops: BatchOp[] = []
    for (const r of keys.userRanges(user)) {
      for await (const k of this.db.keys(r)) ops.push({ type: 'del', key: k })
    }
    // blob references live under the blob's hash; find them through the user's message records
    for await (const [k, rec] of this.db.iterator(keys.userRanges(user)[3]) as AsyncIterable<[string, MessageRecord]>) {
      const mb = k.split(SEP)[2]
      ops.push({ type: 'del', key: keys.blobRef(rec.blob, user, mb, rec.uid) })
    }
    return ops
  }

  stats (): { commitGroups: number, commitBatches: number, combinedBatches: number, combinedWrites: number } {
    return { commitGroups: this.committer.groups, commitBatches: this.committer.batches, combinedBatches: this.combinedBatches, combinedWrites: this.combinedWrites }
  }

  static readonly delimiter = DELIMITER
}

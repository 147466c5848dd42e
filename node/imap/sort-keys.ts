/**
 * The sort keys of SORT (RFC 5256 section 3, RFC 5957) and the fields THREAD needs (RFC 5256 section 3: sent date,
 * base subject, Message-ID, References), one record per message, computed once from the header copy the store keeps
 * (readHeader) and kept in a node-wide cache per mailbox. A message's content never changes under its UID (RFC 3501
 * section 2.3.1.1), so an entry is never stale, only unneeded: the cache drops entries when the store reports their
 * expunge, and drops a mailbox when it is deleted or when the node holds too many entries (least recently used
 * mailbox first). Once a mailbox is cached, the store's append events have the keys of new mail computed in the
 * background; what is still missing when a SORT or THREAD meets it is computed then.
 *
 * Per mailbox the cache also keeps, for each sort criteria list used lately, the order of every cached message
 * (an index): new keys are merged into it (binary search per new message), expunged ones filtered out, so a SORT
 * filters a kept order instead of sorting; and the last THREAD answer per algorithm, reused while the same messages
 * are asked (a message's keys never change, so the same UIDs give the same threads). A 50,000-message mailbox is
 * then sorted from memory without a store read (test/imap/sort.test.ts measures it).
 */
import { isUtf8 } from 'node:buffer'
import { mime } from '../../store/index.ts'
import type { MailEvent, MailStore, MessageRecord } from '../../store/index.ts'
import { baseSubject, casemap } from './base-subject.ts'
import { RECORD_BATCH_MAX, readRecords } from './records.ts'
import { formatThreads, threadOrderedSubject, threadReferences } from './thread.ts'

export interface SortKeys {
  /** INTERNALDATE, ms. */
  arrival: number
  /** RFC822.SIZE. */
  size: number
  /** RFC 5256 section 2.2: the Date: field in UTC, or the internal date when it is missing or unreadable. */
  date: number
  /** Base subject (base-subject.ts), casemapped. */
  subject: string
  /** The base-subject extraction removed a reply or forward mark (REFERENCES step 5). */
  reply: boolean
  /** addr-mailbox of the first address (RFC 5256 section 3), casemapped; '' without one. */
  from: string
  to: string
  cc: string
  /** RFC 5957 section 3: the first address's display name, else its addr-spec; casemapped. */
  displayFrom: string
  displayTo: string
  /** The first valid msg-id of Message-ID, without angle brackets; null when there is none. */
  messageId: string | null
  /** References (or else the first msg-id of In-Reply-To), in order (RFC 5256 section 3, REFERENCES step 1). */
  references: string[]
}

/**
 * Entries held on a node, all mailboxes together. An entry is a few hundred bytes (short strings and a reference
 * list), so 250,000 entries are well under 100 MiB; five 50,000-message mailboxes fit. A mailbox larger than this is
 * sorted without caching what does not fit.
 */
export const SORT_KEYS_CACHED_MAX = 250_000

/** A header block read for sort keys when the store kept no copy may not exceed this (beyond: the envelope alone). */
export const SORT_HEADER_BYTES_MAX = 1024 * 1024

/** Message ids kept from one References field (threads deeper than this are cut at their oldest end). */
export const REFERENCES_MAX = 128

/** Header fields read concurrently while computing keys (bounds what one SORT holds: RECORD_BATCH_MAX headers). */
const HEADER_CONCURRENCY = RECORD_BATCH_MAX

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec']
/** RFC 5322 section 4.3 obsolete zones; military zones mean -0000 (unknown), as the section says. */
const ZONES: Record<string, number> = { UT: 0, GMT: 0, Z: 0, EST: -300, EDT: -240, CST: -360, CDT: -300, MST: -420, MDT: -360, PST: -480, PDT: -420 }
const DATE = /(\d{1,2})\s+([A-Za-z]{3})[A-Za-z]*\.?\s+(\d{2,4})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s*([+-]\d{4}|[A-Za-z]{1,5}))?/

/** The instant a Date: field names (RFC 5322 section 3.3, obsolete forms of 4.3 included), or null. */
export function parseDate (value: string): number | null {
  const m = DATE.exec(value)
  if (m !== null) {
    const month = MONTHS.indexOf(m[2]!.toLowerCase())
    let year = Number(m[3])
    if (m[3]!.length === 2) year += year < 50 ? 2000 : 1900
    else if (m[3]!.length === 3) year += 1900
    if (month !== -1) {
      const zone = m[7]
      let offset = 0
      if (zone !== undefined && /^[+-]\d{4}$/.test(zone)) {
        offset = (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(3, 5))) * (zone[0] === '-' ? -1 : 1)
      } else if (zone !== undefined) {
        offset = ZONES[zone.toUpperCase()] ?? 0
      }
      const ms = Date.UTC(year, month, Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6] ?? 0)) - offset * 60_000
      if (!Number.isNaN(ms)) return ms
    }
  }
  const ms = Date.parse(value)
  return Number.isNaN(ms) ? null : ms
}

/** msg-ids of a field (RFC 5322 section 3.6.4): `<...>` with comments and white space removed. */
export function messageIds (value: string): string[] {
  const out: string[] = []
  const text = value.includes('(') ? value.replace(/\([^()]*\)/g, '') : value
  for (const m of text.matchAll(/<([^<>]*)>/g)) {
    const id = m[1]!.replace(/\s+/g, '')
    // RFC 5322 id-left "@" id-right: without the "@" it is no msg-id (Dovecot skips such ids the same way)
    if (id.length > 1 && id.indexOf('@') > 0 && id.indexOf('@') < id.length - 1) out.push(id)
  }
  return out
}

function firstAddress (value: string | null): mime.Address | null {
  if (value === null) return null
  for (const address of mime.parseAddressList(value) ?? []) {
    // skip group markers: a start marker has no host, an end marker nothing at all
    if (address.mailbox !== null && address.host !== null) return address
  }
  return null
}

function addrMailbox (address: mime.Address | null): string {
  return address === null ? '' : casemap(address.mailbox ?? '')
}

/** RFC 5957 section 3: the display name (decoded) when there is a non-empty one, else the addr-spec. */
function display (address: mime.Address | null): string {
  if (address === null) return ''
  const name = address.name === null ? '' : mime.decodeHeaderValue(address.name).trim()
  return casemap(name !== '' ? name : `${address.mailbox ?? ''}@${address.host ?? ''}`)
}

/** The fields the keys read (RFC 5256 section 3 and RFC 5957), lower-cased. */
const WANTED = new Set(['cc', 'date', 'from', 'in-reply-to', 'message-id', 'references', 'subject', 'to'])
const NAME_BYTES_MAX = 11 // 'in-reply-to'

/**
 * The first occurrence of each wanted field of a header block, unfolded and trimmed, 8-bit values read as UTF-8 when
 * they are valid UTF-8, else as Latin-1 (what mime.headerFields does). Only wanted fields are decoded: on a 50,000-
 * message mailbox this scan is most of the work of building the keys, and headerFields decodes every field.
 */
export function wantedFields (header: Buffer): Map<string, string> {
  const out = new Map<string, string>()
  // one decoding of the whole block (a byte per character); positions in it are byte offsets
  const text = header.toString('latin1')
  const n = text.length
  let pos = 0
  while (pos < n && out.size < WANTED.size) {
    const c = text.charCodeAt(pos)
    if (c === 0x0d || c === 0x0a) break // the blank line
    // the field runs to a line feed not followed by white space (a folded line continues it)
    let lf = text.indexOf('\n', pos)
    while (lf !== -1 && lf + 1 < n && (text.charCodeAt(lf + 1) === 0x20 || text.charCodeAt(lf + 1) === 0x09)) lf = text.indexOf('\n', lf + 1)
    const end = lf === -1 ? n : lf + 1
    const colon = text.indexOf(':', pos)
    if (colon !== -1 && colon < end && colon - pos <= NAME_BYTES_MAX + 2) {
      const name = text.slice(pos, colon).trimEnd().toLowerCase()
      if (WANTED.has(name) && !out.has(name)) {
        let value = text.slice(colon + 1, end)
        if (/[\x80-\xff]/.test(value)) {
          const bytes = header.subarray(colon + 1, end)
          if (isUtf8(bytes)) value = bytes.toString('utf8')
        }
        out.set(name, unfold(value))
      }
    }
    pos = end
  }
  return out
}

function unfold (text: string): string {
  return text.replace(/\r?\n/g, '').replace(/^[ \t]+|[ \t]+$/g, '')
}

/** The keys of one message from its header block. */
export function keysFromHeader (record: MessageRecord, header: Buffer): SortKeys {
  const fields = wantedFields(header)
  return keysFrom(record, (name) => fields.get(name) ?? null)
}

/** The keys from the cached envelope (a header too large to have been kept): no References. */
export function keysFromEnvelope (record: MessageRecord, envelope: mime.Envelope): SortKeys {
  const addresses = (list: mime.Address[] | null): mime.Address | null => list?.find((a) => a.mailbox !== null && a.host !== null) ?? null
  const from = addresses(envelope.from)
  const to = addresses(envelope.to)
  const date = envelope.date === null ? null : parseDate(envelope.date)
  const subject = baseSubject(envelope.subject)
  const messageId = envelope.messageId === null ? null : messageIds(envelope.messageId)[0] ?? null
  return {
    arrival: record.internalDate,
    size: record.size,
    date: date ?? record.internalDate,
    subject: subject.subject,
    reply: subject.reply,
    from: addrMailbox(from),
    to: addrMailbox(to),
    cc: addrMailbox(addresses(envelope.cc)),
    displayFrom: display(from),
    displayTo: display(to),
    messageId,
    references: envelope.inReplyTo === null ? [] : messageIds(envelope.inReplyTo).slice(0, 1),
  }
}

/**
 * SortKeys whose address keys (FROM, TO, CC, DISPLAYFROM, DISPLAYTO) are parsed from the From, To and Cc fields when
 * first read, then kept: a SORT by date or subject and THREAD never read them, and parsing them was a quarter of
 * building the keys of a mailbox.
 */
class HeaderSortKeys implements SortKeys {
  readonly arrival: number
  readonly size: number
  readonly date: number
  readonly subject: string
  readonly reply: boolean
  readonly messageId: string | null
  readonly references: string[]
  /** The field's text until its first address is needed, then that address. */
  #fromField: string | null | mime.Address
  #toField: string | null | mime.Address
  #ccField: string | null
  #from: string | undefined
  #to: string | undefined
  #cc: string | undefined
  #displayFrom: string | undefined
  #displayTo: string | undefined

  constructor (init: Omit<SortKeys, 'from' | 'to' | 'cc' | 'displayFrom' | 'displayTo'>, fields: { from: string | null, to: string | null, cc: string | null }) {
    this.arrival = init.arrival
    this.size = init.size
    this.date = init.date
    this.subject = init.subject
    this.reply = init.reply
    this.messageId = init.messageId
    this.references = init.references
    this.#fromField = fields.from
    this.#toField = fields.to
    this.#ccField = fields.cc
  }

  #fromAddress (): mime.Address | null {
    if (typeof this.#fromField === 'string') this.#fromField = firstAddress(this.#fromField)
    return this.#fromField
  }

  #toAddress (): mime.Address | null {
    if (typeof this.#toField === 'string') this.#toField = firstAddress(this.#toField)
    return this.#toField
  }

  get from (): string { return (this.#from ??= addrMailbox(this.#fromAddress())) }
  get to (): string { return (this.#to ??= addrMailbox(this.#toAddress())) }
  get cc (): string { return (this.#cc ??= addrMailbox(firstAddress(this.#ccField))) }
  get displayFrom (): string { return (this.#displayFrom ??= display(this.#fromAddress())) }
  get displayTo (): string { return (this.#displayTo ??= display(this.#toAddress())) }
}

function keysFrom (record: MessageRecord, get: (name: string) => string | null): SortKeys {
  const dateText = get('date')
  const date = dateText === null ? null : parseDate(dateText)
  const subject = baseSubject(get('subject'))
  const messageIdText = get('message-id')
  const referencesText = get('references')
  let references = referencesText === null ? [] : messageIds(referencesText)
  // RFC 5256 section 3 step 1: without (valid) References, the first valid msg-id of In-Reply-To
  if (references.length === 0) {
    const inReplyTo = get('in-reply-to')
    references = inReplyTo === null ? [] : messageIds(inReplyTo).slice(0, 1)
  }
  if (references.length > REFERENCES_MAX) references = references.slice(references.length - REFERENCES_MAX)
  return new HeaderSortKeys({
    arrival: record.internalDate,
    size: record.size,
    date: date ?? record.internalDate,
    subject: subject.subject,
    reply: subject.reply,
    messageId: messageIdText === null ? null : messageIds(messageIdText)[0] ?? null,
    references,
  }, { from: get('from'), to: get('to'), cc: get('cc') })
}

async function computeKeys (store: MailStore, record: MessageRecord): Promise<SortKeys> {
  const kept = await store.readHeader?.(record) ?? null
  if (kept !== null) return keysFromHeader(record, kept)
  const meta = await store.getMeta(record)
  const end = meta.root.headerEnd
  if (end > SORT_HEADER_BYTES_MAX) return keysFromEnvelope(record, meta.envelope)
  const chunks: Buffer[] = []
  for await (const chunk of store.streamMessage(record, { start: 0, end })) chunks.push(chunk)
  return keysFromHeader(record, Buffer.concat(chunks))
}

/** Criteria lists whose order a mailbox keeps (the least recently used goes beyond this). */
export const SORT_ORDERS_MAX = 8

/** A kept order: every cached message of the mailbox, as `pending` merged into `uids` (and `stale` filtered) says. */
interface OrderIndex {
  criteria: readonly SortCriterion[]
  /** UIDs in sort order, ties by ascending UID (sequence order). */
  uids: number[]
  /** UIDs whose keys were cached after `uids` was built, not yet merged. */
  pending: number[]
  /** Some of `uids` were expunged since (filtered out at the next use). */
  stale: boolean
}

/** The last THREAD answer of an algorithm: for these UIDs (and these numbers written for them). */
interface ThreadMemo {
  uids: Uint32Array
  numbers: Uint32Array
  text: string
}

interface MailboxEntry {
  user: string
  uidValidity: number
  keys: Map<number, SortKeys>
  /** By criteria (criteriaName), least recently used first. */
  orders: Map<string, OrderIndex>
  threads: Map<string, ThreadMemo>
  /** Appended UIDs whose keys the background fill is to compute, whether it runs, and its batch in flight. */
  incoming: number[]
  filling: boolean
  batch: Promise<unknown> | null
}

/** The node's sort keys, per mailbox. One per store object (sortKeyCacheFor), shared by every session over it. */
export class SortKeyCache {
  readonly #store: MailStore
  /** By `user NUL mailboxId`, least recently used first. */
  readonly #mailboxes = new Map<string, MailboxEntry>()
  /** One store subscription per user with a cached mailbox: expunges and deletions reach the cache through it. */
  readonly #subscriptions = new Map<string, () => void>()
  readonly #entriesMax: number
  #entries = 0

  constructor (store: MailStore, init: { entriesMax?: number } = {}) {
    this.#store = store
    this.#entriesMax = init.entriesMax ?? SORT_KEYS_CACHED_MAX
  }

  /** Entries held (for tests and metrics). */
  get size (): number {
    return this.#entries
  }

  /** The keys of `uids` (ascending, all existing in the mailbox) in the same order: cached ones from memory. */
  async keys (user: string, mailboxId: string, uidValidity: number, uids: readonly number[], opts: { signal?: AbortSignal } = {}): Promise<SortKeys[]> {
    const entry = this.#entry(user, mailboxId, uidValidity)
    const computed = await this.#fill(entry, mailboxId, uids, opts.signal)
    return uids.map((uid) => {
      const keys = entry.keys.get(uid) ?? computed.get(uid)
      // a message expunged while its keys were read: it sorts as an empty message, the view still lists it
      return keys ?? emptyKeys()
    })
  }

  /**
   * `uids` (ascending, all existing in the mailbox) in the order `criteria` ask (sortOrder's order), from the
   * mailbox's kept order for these criteria: built at the first use, new mail merged in, then filtered to `uids`.
   */
  async sorted (user: string, mailboxId: string, uidValidity: number, uids: readonly number[], criteria: readonly SortCriterion[], opts: { signal?: AbortSignal } = {}): Promise<number[]> {
    const entry = this.#entry(user, mailboxId, uidValidity)
    const computed = await this.#fill(entry, mailboxId, uids, opts.signal)
    if (this.#mailboxes.get(this.#key(user, mailboxId)) === entry) {
      // the order holds every cached message; when each of `uids` is among them, it is their order
      const kept = keepOnly(this.#order(entry, criteria).uids, uids)
      if (kept.length === uids.length) return kept
    }
    // not all of them cached (the node's bound, an expunge meanwhile): sorted from the keys
    const keys = uids.map((uid) => entry.keys.get(uid) ?? computed.get(uid) ?? emptyKeys())
    return sortOrder(keys, criteria).map((i) => uids[i]!)
  }

  /**
   * The thread list of THREAD (RFC 5256 section 5, without the `THREAD` atom; '' when there are no threads) of
   * `uids` (ascending), written with `numbers` (their UIDs or sequence numbers); the last answer per algorithm is
   * reused while the same messages are asked with the same numbers.
   */
  async threadList (user: string, mailboxId: string, uidValidity: number, uids: readonly number[], numbers: readonly number[], algorithm: 'REFERENCES' | 'ORDEREDSUBJECT', opts: { signal?: AbortSignal } = {}): Promise<string> {
    const entry = this.#entry(user, mailboxId, uidValidity)
    const memo = entry.threads.get(algorithm)
    if (memo !== undefined && same(memo.uids, uids) && same(memo.numbers, numbers)) return memo.text
    const computed = await this.#fill(entry, mailboxId, uids, opts.signal)
    const keys = uids.map((uid) => entry.keys.get(uid) ?? computed.get(uid) ?? emptyKeys())
    const threads = algorithm === 'REFERENCES' ? threadReferences(keys) : threadOrderedSubject(keys)
    const text = threads.length === 0 ? '' : formatThreads(threads, numbers)
    // only an answer from cached keys is kept (an empty stand-in for an expunged message is not the message's)
    const live = this.#mailboxes.get(this.#key(user, mailboxId)) === entry
    if (live && (computed.size === 0 || uids.every((uid) => entry.keys.has(uid)))) {
      entry.threads.set(algorithm, { uids: Uint32Array.from(uids), numbers: Uint32Array.from(numbers), text })
    }
    return text
  }

  /** Computes and caches the keys of those of `uids` not cached; returns the computed ones (also when not cached). */
  async #fill (entry: MailboxEntry, mailboxId: string, uids: readonly number[], signal?: AbortSignal, background = false): Promise<Map<number, SortKeys>> {
    // the background fill's batch in flight is waited for, not read a second time
    if (!background && entry.batch !== null) await entry.batch.catch(() => {})
    const missing: number[] = []
    for (const uid of uids) if (!entry.keys.has(uid)) missing.push(uid)
    const computed = new Map<number, SortKeys>()
    for (let i = 0; i < missing.length; i += RECORD_BATCH_MAX) {
      signal?.throwIfAborted()
      const records = await readRecords(this.#store, entry.user, mailboxId, missing.slice(i, i + RECORD_BATCH_MAX))
      for (let j = 0; j < records.length; j += HEADER_CONCURRENCY) {
        const slice = records.slice(j, j + HEADER_CONCURRENCY)
        const keys = await Promise.all(slice.map(async (record) => await computeKeys(this.#store, record)))
        slice.forEach((record, k) => computed.set(record.uid, keys[k]!))
      }
    }
    this.#insert(entry, mailboxId, computed)
    return computed
  }

  /** Caches computed keys (when the entry is still the mailbox's and the node's bound allows). */
  #insert (entry: MailboxEntry, mailboxId: string, computed: Map<number, SortKeys>): void {
    // the entry may have been dropped meanwhile (the mailbox deleted, evicted): then nothing is cached
    const live = this.#mailboxes.get(this.#key(entry.user, mailboxId)) === entry
    if (!live || computed.size === 0) return
    for (const [uid, keys] of computed) {
      if (entry.keys.size >= this.#entriesMax) break
      if (!entry.keys.has(uid)) {
        entry.keys.set(uid, keys)
        this.#entries++
        for (const order of entry.orders.values()) order.pending.push(uid)
      }
    }
    this.#evict(entry)
  }

  /** The kept order of `criteria`, brought up to date with the cached keys. */
  #order (entry: MailboxEntry, criteria: readonly SortCriterion[]): OrderIndex {
    const name = criteriaName(criteria)
    let order = entry.orders.get(name)
    if (order !== undefined) entry.orders.delete(name)
    if (order !== undefined && order.stale) {
      order.uids = order.uids.filter((uid) => entry.keys.has(uid))
      order.stale = false
    }
    // many new messages at once (or none kept yet): sorted anew, as a merge would cost more
    if (order === undefined || order.pending.length > order.uids.length / 4) {
      const all = Array.from(entry.keys.keys()).sort((a, b) => a - b)
      const keys = all.map((uid) => entry.keys.get(uid)!)
      order = { criteria, uids: sortOrder(keys, criteria).map((i) => all[i]!), pending: [], stale: false }
    } else if (order.pending.length > 0) {
      order.uids = mergeInto(order.uids, order.pending.filter((uid) => entry.keys.has(uid)), entry.keys, criteria)
      order.pending = []
    }
    entry.orders.set(name, order)
    for (const old of entry.orders.keys()) {
      if (entry.orders.size <= SORT_ORDERS_MAX) break
      entry.orders.delete(old)
    }
    return order
  }

  /** Computes the keys of appended messages in the background (a mailbox once sorted is likely sorted again). */
  #prefetch (user: string, mailboxId: string, entry: MailboxEntry, uids: readonly number[]): void {
    for (const uid of uids) entry.incoming.push(uid)
    if (entry.filling) return
    entry.filling = true
    setImmediate(() => {
      void (async () => {
        try {
          while (entry.incoming.length > 0 && this.#mailboxes.get(this.#key(user, mailboxId)) === entry) {
            const batch = entry.incoming.splice(0, RECORD_BATCH_MAX).sort((a, b) => a - b)
            entry.batch = this.#fill(entry, mailboxId, batch, undefined, true)
            await entry.batch
          }
        } catch {
          // the store stopping, a message expunged meanwhile: the next SORT computes what is missing
        } finally {
          entry.incoming = []
          entry.filling = false
          entry.batch = null
        }
      })()
    })
  }

  #key (user: string, mailboxId: string): string {
    return `${user}\x00${mailboxId}`
  }

  #entry (user: string, mailboxId: string, uidValidity: number): MailboxEntry {
    const key = this.#key(user, mailboxId)
    let entry = this.#mailboxes.get(key)
    if (entry !== undefined && entry.uidValidity !== uidValidity) {
      this.#drop(key)
      entry = undefined
    }
    if (entry === undefined) {
      entry = { user, uidValidity, keys: new Map(), orders: new Map(), threads: new Map(), incoming: [], filling: false, batch: null }
      if (!this.#subscriptions.has(user)) this.#subscriptions.set(user, this.#store.subscribe(user, (event) => this.#onEvent(user, event)))
    } else {
      this.#mailboxes.delete(key)
    }
    this.#mailboxes.set(key, entry)
    return entry
  }

  #onEvent (user: string, event: MailEvent): void {
    if (event.type === 'expunge') {
      const entry = this.#mailboxes.get(this.#key(user, event.mailbox))
      if (entry === undefined) return
      let removed = false
      for (const uid of event.uids) {
        if (entry.keys.delete(uid)) {
          this.#entries--
          removed = true
        }
      }
      if (removed) for (const order of entry.orders.values()) order.stale = true
    } else if (event.type === 'append') {
      const entry = this.#mailboxes.get(this.#key(user, event.mailbox))
      if (entry !== undefined && entry.keys.size < this.#entriesMax) this.#prefetch(user, event.mailbox, entry, event.uids)
    } else if (event.type === 'mailboxes' && event.change === 'deleted' && event.mailbox !== null) {
      this.#drop(this.#key(user, event.mailbox))
    }
  }

  #drop (key: string): void {
    const entry = this.#mailboxes.get(key)
    if (entry === undefined) return
    this.#mailboxes.delete(key)
    this.#entries -= entry.keys.size
    for (const other of this.#mailboxes.values()) if (other.user === entry.user) return
    this.#subscriptions.get(entry.user)?.()
    this.#subscriptions.delete(entry.user)
  }

  /** Least recently used mailboxes go until the node holds at most entriesMax entries (`keep` stays). */
  #evict (keep: MailboxEntry): void {
    for (const [key, entry] of this.#mailboxes) {
      if (this.#entries <= this.#entriesMax) return
      if (entry !== keep) this.#drop(key)
    }
  }
}

/** The same numbers in the same order. */
function same (kept: Uint32Array, asked: readonly number[]): boolean {
  if (kept.length !== asked.length) return false
  for (let i = 0; i < kept.length; i++) if (kept[i] !== asked[i]) return false
  return true
}

/** `order` (distinct UIDs) without those not in `uids` (ascending), order kept. */
function keepOnly (order: readonly number[], uids: readonly number[]): number[] {
  const out: number[] = []
  if (uids.length === 0) return out
  const low = uids[0]!
  const span = uids[uids.length - 1]! - low + 1
  // a bitmap over the UIDs' range when it is not much sparser than the UIDs; else a set
  if (span <= 8 * uids.length + 65_536) {
    const member = new Uint8Array(span)
    for (const uid of uids) member[uid - low] = 1
    for (const uid of order) if (uid >= low && uid - low < span && member[uid - low] === 1) out.push(uid)
  } else {
    const member = new Set(uids)
    for (const uid of order) if (member.has(uid)) out.push(uid)
  }
  return out
}

/** Two messages' keys compared as `criteria` ask (sortOrder's comparison; 0 when every key is equal). */
function compareKeys (a: SortKeys, b: SortKeys, criteria: readonly SortCriterion[]): number {
  for (const criterion of criteria) {
    const numeric = NUMERIC[criterion.key]
    let d: number
    if (numeric !== undefined) {
      d = a[numeric] - b[numeric]
    } else {
      const field = TEXT[criterion.key]!
      const x = a[field]
      const y = b[field]
      d = x < y ? -1 : x > y ? 1 : 0
    }
    if (d !== 0) return criterion.reverse ? -d : d
  }
  return 0
}

/** `added` (UIDs not in `order`) placed into `order` (sorted as `criteria` ask, ties by UID): a new array. */
function mergeInto (order: readonly number[], added: number[], keys: Map<number, SortKeys>, criteria: readonly SortCriterion[]): number[] {
  const before = (u: number, v: number): boolean => (compareKeys(keys.get(u)!, keys.get(v)!, criteria) || u - v) < 0
  added.sort((u, v) => compareKeys(keys.get(u)!, keys.get(v)!, criteria) || u - v)
  const out: number[] = []
  let from = 0
  for (const uid of added) {
    // the first position from `from` on whose UID sorts after `uid`
    let lo = from
    let hi = order.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (before(order[mid]!, uid)) lo = mid + 1
      else hi = mid
    }
    for (let i = from; i < lo; i++) out.push(order[i]!)
    out.push(uid)
    from = lo
  }
  for (let i = from; i < order.length; i++) out.push(order[i]!)
  return out
}

function criteriaName (criteria: readonly SortCriterion[]): string {
  return criteria.map((c) => c.reverse ? `-${c.key}` : c.key).join(' ')
}

function emptyKeys (): SortKeys {
  return { arrival: 0, size: 0, date: 0, subject: '', reply: false, from: '', to: '', cc: '', displayFrom: '', displayTo: '', messageId: null, references: [] }
}

const caches = new WeakMap<object, SortKeyCache>()

/** The cache of a store: the node's IMAP listeners (143, 993) share it, as they share the \Recent record (recent.ts). */
export function sortKeyCacheFor (store: MailStore): SortKeyCache {
  let cache = caches.get(store)
  if (cache === undefined) {
    cache = new SortKeyCache(store)
    caches.set(store, cache)
  }
  return cache
}

export type SortKeyName = 'ARRIVAL' | 'CC' | 'DATE' | 'FROM' | 'SIZE' | 'SUBJECT' | 'TO' | 'DISPLAYFROM' | 'DISPLAYTO'

export interface SortCriterion {
  key: SortKeyName
  reverse: boolean
}

const NUMERIC: Partial<Record<SortKeyName, 'arrival' | 'size' | 'date'>> = { ARRIVAL: 'arrival', SIZE: 'size', DATE: 'date' }
const TEXT: Partial<Record<SortKeyName, 'cc' | 'from' | 'to' | 'subject' | 'displayFrom' | 'displayTo'>> = {
  CC: 'cc', FROM: 'from', TO: 'to', SUBJECT: 'subject', DISPLAYFROM: 'displayFrom', DISPLAYTO: 'displayTo',
}

/** Distinct strings one rank table may hold (the sort-key cache's own bound). */
const RANK_MEMO_MAX = SORT_KEYS_CACHED_MAX

/**
 * The last rank table per text key: sorting a mailbox again (or after new mail with no new subject) finds every
 * string in it and sorts nothing. Ranks from a superset of the strings still order them right (gaps do not
 * matter), so the table is reused whenever it has every string asked for, and rebuilt otherwise.
 */
const rankMemo = new Map<string, Map<string, number>>()

function ranksFor (text: string, keys: readonly SortKeys[]): Map<string, number> {
  const field = text as 'subject'
  const last = rankMemo.get(text)
  if (last !== undefined && keys.every((k) => last.has(k[field]))) return last
  // the default sort orders strings by UTF-16 code units, as `<` does, without a call per comparison
  const distinct = [...new Set(keys.map((k) => k[field]))].sort()
  const rank = new Map(distinct.map((value, r) => [value, r]))
  if (distinct.length <= RANK_MEMO_MAX) rankMemo.set(text, rank)
  return rank
}

export function isSortKey (name: string): name is SortKeyName {
  return name in NUMERIC || name in TEXT
}

/**
 * Positions 0..n-1 of `keys` in the order `criteria` ask: RFC 5256 section 3, each key in turn, REVERSE per key, and
 * what every key leaves equal ordered by sequence number (the caller's order, ascending UIDs). Strings compare as
 * the casemapped forms the keys hold (i;unicode-casemap, base-subject.ts). Each key becomes a column of numbers first (a string column
 * holds the rank of each distinct string), so the sort itself compares numbers only.
 */
export function sortOrder (keys: readonly SortKeys[], criteria: readonly SortCriterion[]): number[] {
  const n = keys.length
  const columns = criteria.map((criterion) => {
    const column = new Float64Array(n)
    const sign = criterion.reverse ? -1 : 1
    const numeric = NUMERIC[criterion.key]
    if (numeric !== undefined) {
      for (let i = 0; i < n; i++) column[i] = sign * keys[i]![numeric]
      return column
    }
    const text = TEXT[criterion.key]!
    const rank = ranksFor(text, keys)
    for (let i = 0; i < n; i++) column[i] = sign * rank.get(keys[i]![text])!
    return column
  })
  const order = Array.from({ length: n }, (_, i) => i)
  if (columns.length === 1) {
    const column = columns[0]!
    order.sort((i, j) => column[i]! - column[j]! || i - j)
    return order
  }
  order.sort((i, j) => {
    for (const column of columns) {
      const d = column[i]! - column[j]!
      if (d !== 0) return d
    }
    return i - j
  })
  return order
}

// The outbound queue. Mail for other domains is written into one of QUEUE_SHARDS shards before the sender gets
// 250: a shard is a key on the grid's ring (store/shards.ts) with one INBOX, so a queued message is an append
// to that INBOX, replicated to the shard's R nodes by the same log shipping as a user's mail (DESIGN.md: the
// queue is replicated like user data). Its envelope travels in the record's prefix (an internal header line,
// removed before the message leaves), and its delivery state in keywords: a recipient delivered or failed, the
// attempts so far, the next attempt's time, held, delay notice sent. Each state change is a flag change in the
// shard's log, and a message whose every recipient is done is expunged. So a replica that takes over a shard
// (its primary died) holds every message not yet done, with what was already delivered marked; it delivers
// the rest: at least once, a duplicate only for a message in flight when the primary died.
//
// The shard's primary delivers (deliver.ts), retries with a doubling backoff, and sends RFC 3464 notices
// (dsn.ts) to the sender: into its INBOX when it is local, through this queue otherwise; never for a notice.

import { randomInt } from 'node:crypto'
import type { Logger } from 'pino'
import type { Gossip, RpcMessage } from '../../gossip/types.ts'
import { domainOf, MailError, normalizeAddress, QUEUE_SHARD_PREFIX } from '../../store/index.ts'
import type { DeliveryTarget, Directory, MailStore, MessageRecord, Store } from '../../store/index.ts'
import type { Grid } from '../grid/index.ts'
import { rfc5322Date } from '../smtp/received.ts'
import { buildDsn } from './dsn.ts'
import type { DsnAction } from './dsn.ts'
import type { Deliverer, Envelope, OutboundQueue, QueueItem, QueueStats, RcptOutcome } from './types.ts'

export const QUEUE_SHARDS = 16 // spread over the ring: with N nodes each leads about 16/N of the queue
export const QUEUE_ITEM_RCPTS_MAX = 50 // recipients per queued message (one keyword each when done; FLAGS_PER_MESSAGE_MAX is 128)
export const QUEUE_TICK_MS = 1000 // how often due messages are looked for (a new message is looked at at once)
export const QUEUE_IN_FLIGHT_MAX = 32 // deliveries under way on one node at once; the deliverer limits each destination
export const RETRY_MAX_MS = 3600_000 // issue 10: the backoff doubles to at most an hour
export const RECEIVED_HEADERS_MAX = 50 // RFC 5321 6.3: more Received lines than this is a loop
export const QUEUE_RPC_TIMEOUT_MS = 5000
export const STOP_WAIT_MS = 10_000 // how long stop() lets deliveries under way finish
export const EXPUNGE_BATCH_MS = 5 // delivered messages of one shard removed together (one log entry)
export const EXPUNGE_BATCH_UIDS_MAX = 256

export const SHARD_KEYS: readonly string[] = Array.from({ length: QUEUE_SHARDS }, (_, i) => `${QUEUE_SHARD_PREFIX}${String(i).padStart(2, '0')}`)

const ENVELOPE_HEADER = 'X-Mailgrid-Envelope'
const PROTOCOL_LIST = '/mailgrid/queue-list/1.0.0' // {} → { items, stats }
const PROTOCOL_ACT = '/mailgrid/queue-act/1.0.0' // { action, id } → { count } | { error }

// keywords of a queued message
const K_SENT = '$mg-s' // + recipient index: delivered
const K_FAILED = '$mg-f' // + recipient index: failed, bounced
const K_ATTEMPTS = '$mg-a' // + attempts so far
const K_NEXT = '$mg-n' // + the next attempt, seconds since the epoch
const K_HOLD = '$mg-hold'
const K_DELAYED = '$mg-delayed' // the delay notice went out
const K_RELEASE = '$mg-r' // + the release time asked with FUTURERELEASE (RFC 4865), seconds since the epoch

/** The envelope as kept in the queued record (short names: it is in every log entry of the shard). */
interface StoredEnvelope {
  v: 1
  f: string // reverse path
  d: string // destination domain
  r: Array<{ a: string, n?: string[], o?: string }>
  ret?: 'FULL' | 'HDRS'
  id?: string // ENVID
  u8?: boolean
  b8?: boolean
}

interface RemovalBatch { uids: number[], done: Promise<void> }

interface ItemState {
  sent: Set<number>
  failed: Set<number>
  attempts: number
  next: number // ms
  held: boolean
  delayed: boolean
  release: number // ms; 0 when none
}

export interface QueueComponents {
  store: Store // this node's copy: reads, and the shards' first state on a standalone node
  mail: MailStore // writes: through the grid (lead, write, replicate) on a grid node, the store itself otherwise
  directory: Directory
  deliverer: Deliverer
  grid: Grid | null
  gossip: Gossip | null
  /** DKIM: the signature header lines for a message leaving from one of our domains ('' when none). */
  signer?: { sign: (message: Buffer, opts: { from: string }) => Promise<string> }
  /** Undoes our SRS rewriting: a notice about forwarded mail goes to the sender it stood for. */
  srs?: { reverse: (address: string) => string | null }
  logger: Logger
  now?: () => number
}

export interface QueueInit {
  hostname: string
  retryMinMs: number
  delayNoticeMs: number
  bounceAfterMs: number
}

export interface EnqueueOptions {
  /** Trace lines to put on top (our Received line), CRLF-terminated. */
  received?: string
  signal?: AbortSignal
  /** The message is ours (a notice, a forward) and gets no DKIM signature here. */
  unsigned?: boolean
  /** RFC 4865: not tried before this time (ms); every recipient, local ones too, waits in the queue until then. */
  holdUntil?: number
}

function b64 (o: unknown): string {
  return Buffer.from(JSON.stringify(o)).toString('base64url')
}

/** The stored envelope in a record's prefix, or null. */
export function envelopeOf (prefix: string): StoredEnvelope | null {
  const m = new RegExp(`^${ENVELOPE_HEADER}: ([A-Za-z0-9_-]+)\\r\\n`).exec(prefix)
  if (m === null) return null
  try {
    const e = JSON.parse(Buffer.from(m[1], 'base64url').toString('utf8')) as StoredEnvelope
    return e.v === 1 && typeof e.f === 'string' && typeof e.d === 'string' && Array.isArray(e.r) ? e : null
  } catch {
    return null
  }
}

// The store hands out a new flags array when a message's flags change and never changes one in place
// (MailStore.listFlags), so a parse is kept with the array it came from: the delivery loop, which looks at every
// queued message's state on each pass, parses each state once.
const parsed = new WeakMap<readonly string[], ItemState>()

function cachedState (flags: readonly string[]): ItemState {
  let s = parsed.get(flags)
  if (s === undefined) parsed.set(flags, s = stateOf(flags))
  return s
}

function stateOf (flags: readonly string[]): ItemState {
  const s: ItemState = { sent: new Set(), failed: new Set(), attempts: 0, next: 0, held: false, delayed: false, release: 0 }
  // after a merge both sides' keywords are joined: the most attempts and the latest next attempt win
  for (const f of flags) {
    if (f === K_HOLD) s.held = true
    else if (f === K_DELAYED) s.delayed = true
    else if (f.startsWith(K_SENT)) s.sent.add(Number(f.slice(K_SENT.length)))
    else if (f.startsWith(K_FAILED)) s.failed.add(Number(f.slice(K_FAILED.length)))
    else if (f.startsWith(K_ATTEMPTS)) s.attempts = Math.max(s.attempts, Number(f.slice(K_ATTEMPTS.length)) || 0)
    else if (f.startsWith(K_NEXT)) s.next = Math.max(s.next, (Number(f.slice(K_NEXT.length)) || 0) * 1000)
    else if (f.startsWith(K_RELEASE)) s.release = Math.max(s.release, (Number(f.slice(K_RELEASE.length)) || 0) * 1000)
  }
  return s
}

function flagsOf (s: ItemState): string[] {
  return [
    ...[...s.sent].map(i => K_SENT + String(i)),
    ...[...s.failed].map(i => K_FAILED + String(i)),
    ...(s.attempts > 0 ? [K_ATTEMPTS + String(s.attempts)] : []),
    ...(s.next > 0 ? [K_NEXT + String(Math.ceil(s.next / 1000))] : []),
    ...(s.held ? [K_HOLD] : []),
    ...(s.delayed ? [K_DELAYED] : []),
    ...(s.release > 0 ? [K_RELEASE + String(Math.ceil(s.release / 1000))] : [])
  ]
}

/** RFC 3461 4.1: no NOTIFY means failures (and, at our choice, delays) are reported. */
function wants (notify: string[] | undefined, what: 'SUCCESS' | 'FAILURE' | 'DELAY'): boolean {
  if (notify === undefined || notify.length === 0) return what !== 'SUCCESS'
  return notify.includes(what)
}

/** Counts Received: lines in the header of a message. */
export function receivedCount (raw: Buffer): number {
  const end = raw.indexOf('\r\n\r\n')
  const head = raw.subarray(0, end < 0 ? Math.min(raw.length, 1024 * 1024) : end).toString('latin1')
  return (head.match(/^Received:/gim) ?? []).length
}

const shardIndex = (id: string): number => Number(id.slice(0, 2))
const idOf = (shard: string, gid: string): string => `${shard.slice(QUEUE_SHARD_PREFIX.length)}-${gid}`

export class Queue implements OutboundQueue {
  private readonly c: QueueComponents
  private readonly init: QueueInit
  private readonly log: Logger
  private readonly now: () => number
  private readonly inFlight = new Map<string, Promise<void>>() // `${shard}/${uid}`
  // queue id → each pending recipient's last answer (this node's view: a new primary starts without them)
  private readonly lastError = new Map<string, Map<string, string>>()
  private readonly unsubscribe: Array<() => void> = []
  private readonly led = new Map<string, string>() // shard → the ring version it was last caught up under
  private readonly boxes = new Map<string, string>() // shard → its INBOX's id
  private readonly removals = new Map<string, RemovalBatch>() // `${shard}\0${mailbox}` → expunges gathering
  private timer: NodeJS.Timeout | null = null
  private ticking = false
  private again = false
  private running = false
  private readonly abort = new AbortController()

  constructor (components: QueueComponents, init: QueueInit) {
    this.c = components
    this.init = init
    this.log = components.logger.child({ ns: 'outbound' })
    this.now = components.now ?? Date.now
  }

  async start (): Promise<void> {
    if (this.running) return
    this.running = true
    if (this.c.grid === null) for (const s of SHARD_KEYS) await this.c.store.ensureUserMail(s)
    const g = this.c.gossip
    if (g !== null) {
      g.handle(PROTOCOL_LIST, async () => ({ header: { items: await this.localItems(), stats: await this.localStats() } }))
      g.handle(PROTOCOL_ACT, async req => {
        try {
          return { header: { count: await this.actLocal(String(req.header.action), String(req.header.id)) } }
        } catch (err) {
          return { header: { error: String(err instanceof Error ? err.message : err) } }
        }
      })
    }
    // a message queued here, or shipped here by another node, is looked at at once
    for (const s of SHARD_KEYS) {
      this.unsubscribe.push(this.c.store.subscribe(s, e => { if (e.type === 'append') this.kick() }))
    }
    this.timer = setInterval(() => this.kick(), QUEUE_TICK_MS)
    this.timer.unref()
    this.kick()
  }

  async stop (): Promise<void> {
    if (!this.running) return
    this.running = false
    if (this.timer !== null) clearInterval(this.timer)
    for (const u of this.unsubscribe.splice(0)) u()
    this.abort.abort()
    const wait = Promise.allSettled([...this.inFlight.values()])
    await Promise.race([wait, new Promise(resolve => setTimeout(resolve, STOP_WAIT_MS).unref())])
    await this.c.deliverer.close()
  }

  // ---- accepting mail ------------------------------------------------------------------------------------

  /**
   * Queues a message for remote recipients: one queued message per destination domain (and per
   * QUEUE_ITEM_RCPTS_MAX recipients), each on a random shard. Resolves once every one is durable on its
   * shard's replicas, to the queue ids.
   */
  async enqueue (raw: Buffer, envelope: Envelope, opts: EnqueueOptions = {}): Promise<string[]> {
    if (envelope.rcpts.length === 0) return []
    if (receivedCount(raw) > RECEIVED_HEADERS_MAX) throw new MailError('invalid', 'Too many Received headers: a mail loop')
    const byDomain = new Map<string, Envelope['rcpts']>()
    for (const r of envelope.rcpts) {
      const d = domainOf(r.address).toLowerCase()
      byDomain.set(d, [...(byDomain.get(d) ?? []), r])
    }
    const sig = opts.unsigned === true || this.c.signer === undefined ? '' : await this.c.signer.sign(raw, { from: envelope.from })
    const targets: DeliveryTarget[] = []
    for (const [domain, rcpts] of byDomain) {
      for (let i = 0; i < rcpts.length; i += QUEUE_ITEM_RCPTS_MAX) {
        const env: StoredEnvelope = {
          v: 1,
          f: envelope.from,
          d: domain,
          r: rcpts.slice(i, i + QUEUE_ITEM_RCPTS_MAX).map(r => ({ a: r.address, ...(r.notify !== undefined ? { n: r.notify } : {}), ...(r.orcpt !== undefined ? { o: r.orcpt } : {}) })),
          ...(envelope.dsn?.ret !== undefined ? { ret: envelope.dsn.ret } : {}),
          ...(envelope.dsn?.envid !== undefined ? { id: envelope.dsn.envid } : {}),
          ...(envelope.smtpUtf8 === true ? { u8: true } : {}),
          ...(envelope.eightBit === true ? { b8: true } : {})
        }
        const shard = SHARD_KEYS[randomInt(QUEUE_SHARDS)]
        // a held message's first attempt is its release time (the delivery loop skips it until then)
        const hold = opts.holdUntil !== undefined && opts.holdUntil > this.now() ? String(Math.ceil(opts.holdUntil / 1000)) : null
        targets.push({ user: shard, mailbox: 'INBOX', prefix: `${ENVELOPE_HEADER}: ${b64(env)}\r\n${sig}${opts.received ?? ''}`, flags: hold === null ? [] : [K_NEXT + hold, K_RELEASE + hold] })
      }
    }
    const results = await this.c.mail.deliver(raw, targets, { internalDate: this.now(), signal: opts.signal })
    const ids = results.map((r, i) => idOf(targets[i].user, r.gid))
    this.log.info({ ids, from: envelope.from, rcpts: envelope.rcpts.length, bytes: raw.length, ...(opts.holdUntil !== undefined ? { holdUntil: new Date(opts.holdUntil).toISOString() } : {}) }, 'outbound_queued')
    this.kick()
    return ids
  }

  // ---- the delivery loop ---------------------------------------------------------------------------------

  private kick (): void {
    if (!this.running) return
    if (this.ticking) {
      this.again = true
      return
    }
    this.ticking = true
    void (async () => {
      do {
        this.again = false
        try {
          await this.tick()
        } catch (err) {
          this.log.warn({ err: String(err) }, 'outbound_tick_failed')
        }
      } while (this.again && this.running)
    })().finally(() => { this.ticking = false })
  }

  /** Shards this node leads (is primary of): what its list and counts show. */
  private ownShards (): string[] {
    const g = this.c.grid
    return g === null ? [...SHARD_KEYS] : SHARD_KEYS.filter(s => g.isPrimary(s))
  }

  /**
   * Shards this node delivers: those it leads, while it sees a majority (else the other side may deliver them
   * too), once caught up with their other replicas.
   */
  private async ledShards (): Promise<string[]> {
    const g = this.c.grid
    if (g === null) return [...SHARD_KEYS]
    if (!g.hasQuorum()) return []
    const out: string[] = []
    const ring = g.placement().version
    for (const s of this.ownShards()) {
      // a new primary first takes what the other replicas have (their delivered marks too): once per ring
      if (this.led.get(s) !== ring) {
        try {
          await g.lead(s)
          this.led.set(s, ring)
        } catch (err) {
          this.log.debug({ shard: s, err: String(err) }, 'outbound_shard_not_ready')
          continue
        }
      }
      out.push(s)
    }
    return out
  }

  /** The shard's INBOX id, and its message index (UIDs and flags, kept in memory by the store). */
  private async shardIndex (shard: string): Promise<{ box: string, uids: number[], flags: string[][] } | null> {
    let box = this.boxes.get(shard)
    if (box === undefined) {
      const mb = await this.c.store.getMailbox(shard, 'INBOX')
      if (mb === null) return null
      this.boxes.set(shard, box = mb.id) // every node derives the same first entries: the id never changes
    }
    try {
      if (this.c.store.listFlags !== undefined) return { box, ...await this.c.store.listFlags(shard, box) }
      const recs = await this.c.store.listMessages(shard, box)
      return { box, uids: recs.map(r => r.uid), flags: recs.map(r => r.flags) }
    } catch {
      this.boxes.delete(shard) // the copy was dropped here meanwhile
      return null
    }
  }

  private async tick (): Promise<void> {
    const now = this.now()
    for (const shard of await this.ledShards()) {
      const index = await this.shardIndex(shard)
      if (index === null || index.uids.length === 0) continue
      const box = { id: index.box }
      for (const [i, uid] of index.uids.entries()) {
        if (this.inFlight.size >= QUEUE_IN_FLIGHT_MAX) return
        const key = `${shard}/${uid}`
        if (this.inFlight.has(key)) continue
        const s = cachedState(index.flags[i])
        if (s.held || s.next > now) continue
        const p = this.attempt(shard, box.id, uid)
          .catch(err => this.log.warn({ shard, uid, err: String(err) }, 'outbound_attempt_failed'))
          .finally(() => {
            this.inFlight.delete(key)
            this.kick()
          })
        this.inFlight.set(key, p)
      }
    }
  }

  /** One delivery attempt of one queued message, then its new state (or its removal) made durable. */
  private async attempt (shard: string, mailboxId: string, uid: number): Promise<void> {
    const [rec] = await this.c.store.getMessages(shard, mailboxId, [uid])
    if (rec === undefined) return
    const env = envelopeOf(rec.prefix)
    const id = idOf(shard, rec.gid)
    if (env === null) {
      // not ours to understand (a damaged record): held, so an operator sees it and nothing loops on it
      this.log.error({ id }, 'outbound_envelope_unreadable')
      await this.c.mail.storeFlags(shard, mailboxId, [uid], 'add', [K_HOLD])
      return
    }
    const s = stateOf(rec.flags)
    const pending = env.r.flatMap((r, i) => s.sent.has(i) || s.failed.has(i) ? [] : [{ ...r, i }])
    const full = await this.c.store.readMessage(rec)
    const message = stripEnvelope(full)
    const envelope = toEnvelope(env)
    let outcomes: RcptOutcome[] = []
    if (pending.length > 0 && await this.c.directory.isLocalDomain(env.d)) {
      // recipients of ours (a held message, RFC 4865, waits here whole): delivered into their mailboxes now
      outcomes = await this.deliverLocally(id, env, pending.map(r => r.a), message)
    } else if (pending.length > 0) {
      outcomes = await this.c.deliverer.send(env.d, { ...envelope, rcpts: pending.map(r => ({ address: r.a, ...(r.n !== undefined ? { notify: r.n as never } : {}), ...(r.o !== undefined ? { orcpt: r.o } : {}) })) }, message, { signal: this.abort.signal })
    }
    const now = this.now()
    // the delay and bounce clocks of a held message start at its release
    const since = Math.max(rec.internalDate, s.release)
    const expired = now - since >= this.init.bounceAfterMs
    const byRcpt = new Map(outcomes.map(o => [o.rcpt, o]))
    const failed: RcptOutcome[] = []
    const relayed: RcptOutcome[] = []
    const deferred: RcptOutcome[] = []
    for (const r of pending) {
      let o = byRcpt.get(r.a) ?? { rcpt: r.a, status: 'deferred', code: 0, enhanced: '4.4.1', response: 'no answer for this recipient', remote: '' } satisfies RcptOutcome
      if (o.status === 'deferred' && expired) {
        o = { ...o, status: 'failed', enhanced: '4.4.7', response: `delivery time expired (last: ${o.response})` }
      }
      if (o.status === 'sent') {
        s.sent.add(r.i)
        if (wants(r.n, 'SUCCESS')) relayed.push(o)
      } else if (o.status === 'failed') {
        s.failed.add(r.i)
        if (wants(r.n, 'FAILURE')) failed.push(o)
      } else {
        deferred.push(o)
      }
    }
    // notices first, then the new state: a crash in between repeats a notice, never loses one
    if (failed.length > 0) await this.notify(id, env, 'failed', failed, full, rec)
    if (relayed.length > 0) await this.notify(id, env, 'relayed', relayed, full, rec)
    const delayWanted = deferred.filter(o => wants(env.r.find(r => r.a === o.rcpt)?.n, 'DELAY'))
    if (!s.delayed && deferred.length > 0 && now - since >= this.init.delayNoticeMs) {
      if (delayWanted.length > 0) await this.notify(id, env, 'delayed', delayWanted, full, rec)
      s.delayed = true
    }
    const done = env.r.every((_, i) => s.sent.has(i) || s.failed.has(i))
    if (done) {
      await this.removeDone(shard, mailboxId, uid)
      this.lastError.delete(id)
      this.log.info({ id, domain: env.d, sent: s.sent.size, failed: s.failed.size }, 'outbound_done')
      return
    }
    s.attempts++
    const backoff = Math.min(this.init.retryMinMs * 2 ** Math.min(s.attempts - 1, 20), Math.max(RETRY_MAX_MS, this.init.retryMinMs))
    s.next = now + backoff
    if (deferred.length > 0) this.lastError.set(id, new Map(deferred.map(o => [o.rcpt, o.response])))
    await this.c.mail.storeFlags(shard, mailboxId, [uid], 'set', flagsOf(s))
    this.log.info({ id, domain: env.d, attempts: s.attempts, next: new Date(s.next).toISOString(), deferred: deferred.length }, 'outbound_deferred')
  }

  /**
   * Delivers to recipients in our own domains (their aliases expanded): into the users' mailboxes through the
   * replicated store, with Return-Path and our Received line; an alias pointing outside queues that copy anew.
   */
  private async deliverLocally (id: string, env: StoredEnvelope, rcpts: string[], message: Buffer): Promise<RcptOutcome[]> {
    const out: RcptOutcome[] = []
    const now = this.now()
    for (const rcpt of rcpts) {
      try {
        const { users, remote } = await this.c.directory.expandRecipient(rcpt)
        if (users.length === 0 && remote.length === 0) {
          out.push({ rcpt, status: 'failed', code: 550, enhanced: '5.1.1', response: 'User unknown', remote: '' })
          continue
        }
        const prefix = `Return-Path: <${env.f}>\r\nReceived: by ${this.init.hostname} (mailgrid) id ${id} for <${rcpt}>; ${rfc5322Date(new Date(now))}\r\n`
        if (users.length > 0) await this.c.mail.deliver(message, users.map(u => ({ user: u, prefix })), { internalDate: now, signal: this.abort.signal })
        if (remote.length > 0) await this.enqueue(message, { from: env.f, rcpts: remote.map(a => ({ address: a })) }, { unsigned: true, signal: this.abort.signal })
        out.push({ rcpt, status: 'sent', code: 250, enhanced: '2.0.0', response: 'delivered locally', remote: '' })
      } catch (err) {
        const kind = (err as { kind?: string }).kind
        const permanent = kind === 'noQuota' || kind === 'tooBig' || kind === 'invalid'
        out.push({ rcpt, status: permanent ? 'failed' : 'deferred', code: permanent ? 552 : 451, enhanced: permanent ? '5.2.2' : '4.3.0', response: String(err instanceof Error ? err.message : err), remote: '' })
      }
    }
    return out
  }

  /**
   * Removes a message whose every recipient is done. Removals of one shard that finish within
   * EXPUNGE_BATCH_MS share one expunge entry (one log entry and one replication round instead of one per
   * message); each caller resolves once its removal is durable on the shard's replicas, so a message counts
   * as in flight until then (a node that dies before leaves it to be delivered again, as without batching).
   */
  private removeDone (shard: string, mailboxId: string, uid: number): Promise<void> {
    const key = `${shard}\x00${mailboxId}`
    let b = this.removals.get(key)
    if (b === undefined) {
      const batch: RemovalBatch = { uids: [], done: null as unknown as Promise<void> }
      batch.done = new Promise<void>(resolve => setTimeout(resolve, EXPUNGE_BATCH_MS)).then(async () => {
        this.removals.delete(key)
        await this.c.mail.expunge(shard, mailboxId, batch.uids)
      })
      this.removals.set(key, b = batch)
    }
    b.uids.push(uid)
    if (b.uids.length >= EXPUNGE_BATCH_UIDS_MAX) this.removals.delete(key) // full: the next removal starts a new batch
    return b.done
  }

  /** Sends a notice to the message's sender: into its mailbox when local, through the queue when remote. */
  private async notify (id: string, env: StoredEnvelope, action: DsnAction, outcomes: RcptOutcome[], original: Buffer, rec: MessageRecord): Promise<void> {
    if (env.f === '') {
      // never a notice about a notice (RFC 5321 4.5.5, RFC 3464 1)
      this.log.warn({ id, action, rcpts: outcomes.map(o => o.rcpt) }, 'outbound_notice_to_null_sender_dropped')
      return
    }
    const now = this.now()
    const dsn = buildDsn({
      hostname: this.init.hostname,
      queueId: id,
      envelope: toEnvelope(env),
      arrivalDate: rec.internalDate,
      action,
      outcomes,
      original: stripEnvelope(original),
      ...(action === 'delayed' ? { willRetryUntil: rec.internalDate + this.init.bounceAfterMs } : {}),
      now
    })
    let sender = normalizeAddress(env.f)
    try {
      const back = sender === null || this.c.srs === undefined ? null : this.c.srs.reverse(sender)
      if (back !== null) sender = normalizeAddress(back)
    } catch (err) {
      this.log.warn({ id, sender, err: String(err) }, 'outbound_notice_srs_invalid')
      return
    }
    if (sender !== null && await this.c.directory.isLocalDomain(domainOf(sender))) {
      const users = await this.c.directory.resolveRecipient(sender)
      if (users.length === 0) {
        this.log.warn({ id, action, sender }, 'outbound_notice_sender_unknown')
        return
      }
      const received = `Return-Path: <>\r\nReceived: by ${this.init.hostname} (mailgrid) id ${id}; ${rfc5322Date(new Date(now))}\r\n`
      await this.c.mail.deliver(dsn, users.map(u => ({ user: u, prefix: received })), { internalDate: now })
    } else {
      if (sender === null) {
        this.log.warn({ id, action, sender: env.f }, 'outbound_notice_sender_invalid')
        return
      }
      await this.enqueue(dsn, { from: '', rcpts: [{ address: sender }] }, { unsigned: true })
    }
    this.log.info({ id, action, sender: env.f, rcpts: outcomes.map(o => o.rcpt) }, 'outbound_notice_sent')
  }

  // ---- the operator's view ----------------------------------------------------------------------------------

  private async localItems (): Promise<QueueItem[]> {
    const out: QueueItem[] = []
    for (const shard of this.ownShards()) {
      const box = await this.c.store.getMailbox(shard, 'INBOX')
      if (box === null || box.messages === 0) continue
      for (const rec of await this.c.store.listMessages(shard, box.id)) {
        const env = envelopeOf(rec.prefix)
        const s = stateOf(rec.flags)
        const id = idOf(shard, rec.gid)
        out.push({
          id,
          shard,
          from: env?.f ?? '',
          domain: env?.d ?? '',
          rcpts: (env?.r ?? []).map((r, i) => {
            const state = s.sent.has(i) ? 'sent' as const : s.failed.has(i) ? 'failed' as const : 'pending' as const
            const response = state === 'pending' ? this.lastError.get(id)?.get(r.a) : undefined
            return { address: r.a, state, ...(response !== undefined ? { response } : {}) }
          }),
          size: rec.size,
          queuedAt: rec.internalDate,
          attempts: s.attempts,
          nextAttemptAt: s.held ? 0 : Math.max(s.next, rec.internalDate),
          held: s.held,
          ...(s.release > 0 ? { releaseAt: s.release } : {}),
          lastError: [...(this.lastError.get(id)?.values() ?? [])][0] ?? '',
          delayNotified: s.delayed
        })
      }
    }
    return out.sort((a, b) => a.queuedAt - b.queuedAt)
  }

  private async localStats (): Promise<QueueStats> {
    let size = 0
    let oldest = Infinity
    for (const shard of this.ownShards()) {
      const box = await this.c.store.getMailbox(shard, 'INBOX')
      if (box === null || box.messages === 0) continue
      size += box.messages
      // the lowest UID was queued first: one record read, not the whole shard
      const uids = this.c.store.listFlags !== undefined ? (await this.c.store.listFlags(shard, box.id)).uids : []
      const [first] = uids.length > 0 ? await this.c.store.getMessages(shard, box.id, [uids[0]]) : await this.c.store.listMessages(shard, box.id)
      if (first !== undefined) oldest = Math.min(oldest, first.internalDate)
    }
    return { size, oldestAgeMs: size === 0 ? 0 : Math.max(0, this.now() - oldest) }
  }

  /** Every alive node's answer for the shards it leads (each shard has one primary, so nothing is counted twice). */
  private async everyNode (): Promise<Array<{ items: QueueItem[], stats: QueueStats }>> {
    const g = this.c.gossip
    const mine = { items: await this.localItems(), stats: await this.localStats() }
    if (g === null) return [mine]
    const peers = g.members().filter(m => !m.self && m.status === 'alive')
    const answers = await Promise.allSettled(peers.map(async m => await g.call(m.id, PROTOCOL_LIST, { header: {} }, { timeoutMs: QUEUE_RPC_TIMEOUT_MS })))
    return [mine, ...answers.flatMap(a => a.status === 'fulfilled' ? [a.value.header as { items: QueueItem[], stats: QueueStats }] : [])]
  }

  async list (): Promise<QueueItem[]> {
    const seen = new Map<string, QueueItem>()
    for (const a of await this.everyNode()) for (const i of a.items) if (!seen.has(i.id)) seen.set(i.id, i)
    return [...seen.values()].sort((a, b) => a.queuedAt - b.queuedAt)
  }

  async show (id: string): Promise<QueueItem | null> {
    return (await this.list()).find(i => i.id === id) ?? null
  }

  async stats (): Promise<{ local: QueueStats, grid: QueueStats }> {
    const all = await this.everyNode()
    const local = all[0].stats
    const grid = all.reduce((t, a) => ({
      size: t.size + a.stats.size,
      oldestAgeMs: Math.max(t.oldestAgeMs, a.stats.oldestAgeMs)
    }), { size: 0, oldestAgeMs: 0 })
    return { local, grid }
  }

  async retry (id: string | 'all'): Promise<number> {
    if (id !== 'all') return await this.act('retry', id)
    let n = 0
    // a message its sender scheduled (FUTURERELEASE) keeps its time: only its own id sends it early
    const now = this.now()
    for (const i of await this.list()) if (!(i.releaseAt !== undefined && i.releaseAt > now)) n += await this.act('retry', i.id).catch(() => 0)
    return n
  }

  async delete (id: string): Promise<boolean> { return await this.act('delete', id) > 0 }
  async hold (id: string): Promise<boolean> { return await this.act('hold', id) > 0 }
  async release (id: string): Promise<boolean> { return await this.act('release', id) > 0 }

  /** Runs an action on the node that leads the message's shard. */
  private async act (action: string, id: string): Promise<number> {
    const n = shardIndex(id)
    if (!/^\d{2}-[A-Za-z0-9_-]+$/.test(id) || !(n >= 0 && n < QUEUE_SHARDS)) return 0
    const shard = SHARD_KEYS[n]
    const primary = this.c.grid?.primaryOf(shard) ?? null
    if (this.c.grid === null || primary === this.c.grid.self) return await this.actLocal(action, id)
    if (primary === null || this.c.gossip === null) throw new MailError('unavailable', 'No node leads this part of the queue right now')
    const res: RpcMessage = await this.c.gossip.call(primary, PROTOCOL_ACT, { header: { action, id } }, { timeoutMs: QUEUE_RPC_TIMEOUT_MS })
    if (typeof res.header.error === 'string') throw new MailError('temp', res.header.error)
    return Number(res.header.count) || 0
  }

  private async actLocal (action: string, id: string): Promise<number> {
    const n = shardIndex(id)
    const shard = SHARD_KEYS[n]
    if (shard === undefined) return 0
    if (this.c.grid !== null) await this.c.grid.lead(shard)
    const box = await this.c.store.getMailbox(shard, 'INBOX')
    if (box === null) return 0
    const gid = id.slice(3)
    const rec = (await this.c.store.listMessages(shard, box.id)).find(r => r.gid === gid)
    if (rec === undefined) return 0
    const s = stateOf(rec.flags)
    if (action === 'delete') {
      await this.c.mail.expunge(shard, box.id, [rec.uid])
      this.log.info({ id }, 'outbound_deleted')
      return 1
    }
    if (action === 'retry' && s.held) return 0 // held stays held until released
    if (action === 'retry' || action === 'release') s.next = 0
    if (action === 'hold') s.held = true
    if (action === 'release') s.held = false
    if (!['retry', 'hold', 'release'].includes(action)) throw new MailError('invalid', `Unknown queue action: ${action}`)
    await this.c.mail.storeFlags(shard, box.id, [rec.uid], 'set', flagsOf(s))
    this.log.info({ id, action }, 'outbound_' + action)
    this.kick()
    return 1
  }
}

function toEnvelope (e: StoredEnvelope): Envelope {
  return {
    from: e.f,
    rcpts: e.r.map(r => ({ address: r.a, ...(r.n !== undefined ? { notify: r.n as never } : {}), ...(r.o !== undefined ? { orcpt: r.o } : {}) })),
    ...(e.ret !== undefined || e.id !== undefined ? { dsn: { ...(e.ret !== undefined ? { ret: e.ret } : {}), ...(e.id !== undefined ? { envid: e.id } : {}) } } : {}),
    ...(e.u8 === true ? { smtpUtf8: true } : {}),
    ...(e.b8 === true ? { eightBit: true } : {})
  }
}

/** The message as it leaves: the queued bytes without our internal envelope line. */
export function stripEnvelope (full: Buffer): Buffer {
  if (full.subarray(0, ENVELOPE_HEADER.length + 1).toString('latin1') !== ENVELOPE_HEADER + ':') return full
  const eol = full.indexOf('\r\n')
  return eol < 0 ? full : full.subarray(eol + 2)
}

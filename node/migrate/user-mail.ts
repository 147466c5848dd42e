// One user's mail as import, export, backup and restore see it, always at the user's primary: on this node when
// it is the primary (or a standalone node), else over one RPC (/mailgrid/user-mail/1.0.0) to the primary, which
// runs the same operation on its own copy. Writes go through the replicated store there (lead, write, replicate),
// so an answer means durable on every alive replica; reads come from the primary's copy, caught up first.
//
// Shared piece (issue 15): `append` adds a message with flags and internal date to a user's folder, skipping a
// message whose global id is already there (a deterministic id per source message makes an import idempotent).

import type { Logger } from 'pino'
import type { Gossip, RpcMessage } from '../../gossip/types.ts'
import { isMailError, MailError } from '../../store/index.ts'
import type { LogAnchor, LogEntry, Mailbox, MailErrorKind, MailStore, MessageRecord, SpecialUse, Store } from '../../store/index.ts'
import type { Grid } from '../grid/index.ts'
import type { ImportQuota } from './quota.ts'

export const USER_MAIL_PROTOCOL = '/mailgrid/user-mail/1.0.0'
// What one answer carries: entries of a log read (the grid's shipment bound), bytes of one body read, records of
// a listing. Well inside the RPC limits (gossip/constants.ts: 16 MiB header, 64 MiB body).
export const LOG_READ_ENTRIES_MAX = 512
export const LOG_READ_BYTES_MAX = 2 * 1024 * 1024
export const BLOB_READ_BYTES_MAX = 4 * 1024 * 1024
export const MESSAGES_LIST_MAX = 1000
export const RESTORE_BATCH_BYTES_MAX = 16 * 1024 * 1024
export const PRIMARY_WAIT_MS = 10_000 // a ring change settles within the failure detector's few seconds
export const PRIMARY_RETRY_MS = 500
export const USER_MAIL_TIMEOUT_MS = 60_000 // a restore batch: write, fsync, then replicate to every replica

/** A message to add: `gid` makes the append idempotent; `uid`, when free (at or above UIDNEXT), is kept. */
export interface ImportMessage {
  raw: Buffer
  flags: string[]
  internalDate: number
  gid: string
  uid?: number
}

export interface UserMailComponents {
  store: Store
  /** The store protocol code uses: on a grid, the replicated one (node/grid/store.ts). */
  mail: MailStore
  grid: Grid | null
  gossip: Gossip | null
  /** The user's and the domain's quota for appends (node/migrate/quota.ts); absent: the store's own checks only. */
  quota?: ImportQuota
  logger: Logger
}

type Op = 'mailboxes' | 'messages' | 'blob' | 'ensureMailbox' | 'subscribe' | 'append' | 'position' | 'log' | 'restoreLog'
const OPS = new Set<Op>(['mailboxes', 'messages', 'blob', 'ensureMailbox', 'subscribe', 'append', 'position', 'log', 'restoreLog'])
const KINDS = new Set<MailErrorKind>(['temp', 'unavailable', 'notFound', 'exists', 'noQuota', 'tooBig', 'limit', 'invalid', 'denied', 'authFailed', 'expungeIssued', 'nonExistent', 'hasChildren'])

/** A record as it leaves the node: without the node-local body location. */
function portable (r: MessageRecord): MessageRecord {
  const { loc: _loc, ...rest } = r
  return rest
}

function intArg (v: unknown, what: string, min = 0): number {
  if (!Number.isSafeInteger(v) || (v as number) < min) throw new MailError('invalid', `${what}: must be a whole number`)
  return v as number
}

function strArg (v: unknown, what: string): string {
  if (typeof v !== 'string' || v === '') throw new MailError('invalid', `${what}: must be a string`)
  return v
}

const ENTRY_OPS = new Set(['append', 'flags', 'expunge', 'uidNext', 'mailboxCreate', 'mailboxRename', 'mailboxDelete', 'subscribe'])

/** Entries of a restore, as far as their shape goes (the store's applyLog checks their order and bodies). */
function checkEntries (v: unknown): LogEntry[] {
  if (!Array.isArray(v) || v.length > LOG_READ_ENTRIES_MAX) throw new MailError('invalid', `entries: a list of at most ${LOG_READ_ENTRIES_MAX} log entries`)
  for (const e of v as Array<Record<string, unknown>>) {
    if (e === null || typeof e !== 'object' || !Number.isSafeInteger(e.seq) || (e.seq as number) < 1 || !ENTRY_OPS.has(String(e.op))) throw new MailError('invalid', 'entries: each {seq, op, ...}')
    if (e.op === 'append' && (typeof e.blob !== 'string' || !/^[0-9a-f]{64}$/.test(e.blob) || !Number.isSafeInteger(e.uid) || typeof e.mailbox !== 'string' || !Array.isArray(e.flags) || typeof e.prefix !== 'string')) throw new MailError('invalid', `entry ${String(e.seq)}: a malformed append`)
  }
  return v as LogEntry[]
}

export class UserMail {
  private readonly store: Store
  private readonly mail: MailStore
  private readonly grid: Grid | null
  private readonly gossip: Gossip | null
  private readonly log: Logger
  private readonly quota: ImportQuota | undefined

  constructor (components: UserMailComponents) {
    this.quota = components.quota
    this.store = components.store
    this.mail = components.mail
    this.grid = components.grid
    this.gossip = components.gossip
    this.log = components.logger
  }

  /** Answers the other nodes' calls (on a grid). */
  handle (): void {
    this.gossip?.handle(USER_MAIL_PROTOCOL, async req => {
      try {
        const op = req.header.op as Op
        if (!OPS.has(op)) throw new MailError('invalid', 'unknown operation')
        const user = strArg(req.header.user, 'user')
        // the caller believed this node is the primary: run it here, or say it is not (the caller retries)
        return await this.local(op, user, (req.header.args ?? {}) as Record<string, unknown>, req.body === undefined ? Buffer.alloc(0) : Buffer.from(req.body.buffer, req.body.byteOffset, req.body.byteLength))
      } catch (err) {
        if (!isMailError(err)) this.log.warn({ err }, 'user_mail_failed')
        return { header: { error: isMailError(err) ? { kind: err.kind, message: err.message } : { kind: 'temp', message: 'Internal error on the owning node' } } }
      }
    })
  }

  /**
   * Runs `op` at the user's primary. While the ring changes, two nodes may disagree for a moment on which one that
   * is (the one asked answers 'unavailable'): asked again, within PRIMARY_WAIT_MS.
   */
  private async call (op: Op, user: string, args: Record<string, unknown>, body?: Buffer): Promise<RpcMessage> {
    const end = Date.now() + PRIMARY_WAIT_MS
    for (;;) {
      try {
        return await this.callOnce(op, user, args, body)
      } catch (err) {
        if (!isMailError(err, 'unavailable') || Date.now() > end) throw err
        await new Promise(resolve => setTimeout(resolve, PRIMARY_RETRY_MS))
      }
    }
  }

  private async callOnce (op: Op, user: string, args: Record<string, unknown>, body?: Buffer): Promise<RpcMessage> {
    const primary = this.grid?.primaryOf(user)
    if (this.grid === null || this.gossip === null || primary === this.grid.self) return await this.local(op, user, args, body ?? Buffer.alloc(0))
    if (primary === null || primary === undefined) throw new MailError('unavailable', 'No node owns this user right now')
    const res = await this.gossip.call(primary, USER_MAIL_PROTOCOL, { header: { op, user, args }, ...(body !== undefined ? { body } : {}) }, { timeoutMs: USER_MAIL_TIMEOUT_MS })
    const e = res.header.error as { kind?: string, message?: string } | undefined
    if (e !== undefined) throw new MailError(KINDS.has(e.kind as MailErrorKind) ? e.kind as MailErrorKind : 'temp', String(e.message ?? 'Error on the owning node'))
    return res
  }

  /** The user's primary must be this node, caught up, and the user not provisional. */
  private async lead (user: string): Promise<void> {
    if (this.grid === null) {
      if (await this.store.getUser(user) === null) throw new MailError('notFound', 'No such user')
      return
    }
    await this.grid.lead(user)
    if (this.grid.provisional(user)) throw new MailError('unavailable', 'This user is being recovered after a failure; try again shortly')
  }

  private async local (op: Op, user: string, a: Record<string, unknown>, body: Buffer): Promise<RpcMessage> {
    await this.lead(user)
    switch (op) {
      case 'mailboxes':
        return { header: { mailboxes: await this.mail.listMailboxes(user), subscriptions: await this.mail.listSubscriptions(user) } }
      case 'messages': {
        const limit = Math.min(intArg(a.limit, 'limit', 1), MESSAGES_LIST_MAX)
        const from = intArg(a.from, 'from', 1)
        const mailbox = strArg(a.mailbox, 'mailbox')
        // the UIDs from the store's in-memory index, then one multi-get of the page's records
        const all = this.mail.listFlags !== undefined ? (await this.mail.listFlags(user, mailbox)).uids : (await this.mail.listMessages(user, mailbox, { from })).map(r => r.uid)
        const page = all.filter(u => u >= from).slice(0, limit + 1)
        const recs = await this.mail.getMessages(user, mailbox, page.slice(0, limit))
        return { header: { messages: recs.map(portable), next: page.length > limit ? page[limit] : null } }
      }
      case 'blob': {
        const hash = strArg(a.hash, 'hash')
        if (!/^[0-9a-f]{64}$/.test(hash)) throw new MailError('invalid', 'hash: not a SHA-256')
        // a body this user's log names: the store holds every body its log refers to
        const data = await this.store.readBlob(hash)
        const offset = Math.min(intArg(a.offset, 'offset'), data.length)
        return { header: { size: data.length }, body: data.subarray(offset, offset + BLOB_READ_BYTES_MAX) }
      }
      case 'ensureMailbox':
        return { header: { mailbox: await this.ensureLocal(user, strArg(a.name, 'name'), (a.specialUse ?? null) as SpecialUse | null) } }
      case 'subscribe': {
        const name = strArg(a.name, 'name')
        if (!(await this.mail.listSubscriptions(user)).includes(name)) await this.mail.setSubscribed(user, name, true)
        return { header: {} }
      }
      case 'append': {
        const mailbox = strArg(a.mailbox, 'mailbox')
        const box = await this.mail.getMailbox(user, mailbox)
        if (box === null) throw new MailError('nonExistent', 'Mailbox does not exist')
        const uid = a.uid === undefined ? undefined : intArg(a.uid, 'uid', 1)
        const gid = strArg(a.gid, 'gid')
        // quota before anything is written (the store does not check an append under a global id); a message
        // already here (a second run) is answered as existing, whatever the quota says now
        const fresh = this.quota !== undefined && await this.store.messageByGid(user, gid) === null
        if (fresh) {
          const over = await this.quota!.check(user, body.length)
          if (over !== null) throw new MailError('noQuota', over)
        }
        // keeping a UID: raise UIDNEXT to it (a log entry every replica applies), then the append takes it
        if (uid !== undefined && uid > box.uidNext) {
          await this.store.raiseUidNext(user, box.id, uid)
          if (this.grid !== null) await this.grid.replicate(user)
        }
        const flags = Array.isArray(a.flags) ? a.flags.map(String) : []
        const before = Math.max(box.uidNext, uid ?? 0)
        const res = await this.mail.append(user, mailbox, { raw: body, flags, internalDate: intArg(a.internalDate, 'internalDate'), gid })
        // a message with this global id was there already (here, or moved to another mailbox since)
        const existed = res.mailbox !== box.id || res.uid < before
        if (!existed) this.quota?.added(user, body.length)
        return { header: { uid: res.uid, uidValidity: res.uidValidity, existed } }
      }
      case 'position': {
        const seq = await this.store.logPosition(user)
        const [last] = seq > 0 ? await this.store.readLog(user, seq, 1) : []
        return { header: { seq, eid: last?.eid ?? null } }
      }
      case 'log': {
        const from = intArg(a.from, 'from', 1)
        const to = intArg(a.to, 'to', 0)
        const read = to < from ? [] : await this.store.readLog(user, from, Math.min(to - from + 1, LOG_READ_ENTRIES_MAX))
        const entries: LogEntry[] = []
        let bytes = 0
        for (const e of read) {
          bytes += Buffer.byteLength(JSON.stringify(e))
          if (entries.length > 0 && bytes > LOG_READ_BYTES_MAX) break
          entries.push(e)
        }
        return { header: { entries } }
      }
      case 'restoreLog': {
        const entries = checkEntries(a.entries)
        const lens = Array.isArray(a.lens) ? a.lens : []
        const blobs: Buffer[] = []
        let off = 0
        for (const n of lens) {
          if (!Number.isSafeInteger(n) || n < 0 || off + n > body.length) throw new MailError('invalid', 'body lengths do not match the payload')
          blobs.push(body.subarray(off, off + n))
          off += n
        }
        const p = a.prev as Record<string, unknown> | undefined
        if (p !== undefined && (p === null || typeof p !== 'object' || !Number.isSafeInteger(p.seq) || (p.eid !== null && typeof p.eid !== 'string'))) throw new MailError('invalid', 'prev: {seq, eid}')
        const prev = p as LogAnchor | undefined
        const position = await this.store.applyLog(user, entries, blobs, prev)
        if (this.grid !== null) await this.grid.replicate(user)
        return { header: { position } }
      }
    }
  }

  private async ensureLocal (user: string, name: string, specialUse: SpecialUse | null): Promise<Mailbox> {
    const have = await this.mail.getMailbox(user, name)
    if (have !== null) return have
    try {
      return await this.mail.createMailbox(user, name, specialUse === null ? {} : { specialUse })
    } catch (err) {
      if (!isMailError(err, 'exists')) throw err
      const now = await this.mail.getMailbox(user, name)
      if (now === null) throw err
      return now
    }
  }

  // ---- the face: each call runs at the user's primary -------------------------------------------------------

  async mailboxes (user: string): Promise<{ mailboxes: Mailbox[], subscriptions: string[] }> {
    const h = (await this.call('mailboxes', user, {})).header
    return { mailboxes: h.mailboxes as Mailbox[], subscriptions: h.subscriptions as string[] }
  }

  /** Records of a mailbox from `from` (a UID), at most `limit`; `next` is where the following page starts (null: done). */
  async messages (user: string, mailbox: string, from: number, limit: number): Promise<{ messages: MessageRecord[], next: number | null }> {
    const h = (await this.call('messages', user, { mailbox, from, limit })).header
    return { messages: h.messages as MessageRecord[], next: h.next === null || h.next === undefined ? null : Number(h.next) }
  }

  /** Bytes of a body from `offset` (at most BLOB_READ_BYTES_MAX), and its whole size. */
  async blob (user: string, hash: string, offset: number): Promise<{ data: Buffer, size: number }> {
    const res = await this.call('blob', user, { hash, offset })
    const b = res.body ?? new Uint8Array(0)
    return { data: Buffer.from(b.buffer, b.byteOffset, b.byteLength), size: Number(res.header.size) }
  }

  /** The mailbox, created (with its parents) if missing. */
  async ensureMailbox (user: string, name: string, specialUse: SpecialUse | null = null): Promise<Mailbox> {
    return (await this.call('ensureMailbox', user, { name, specialUse })).header.mailbox as Mailbox
  }

  async subscribe (user: string, name: string): Promise<void> {
    await this.call('subscribe', user, { name })
  }

  /** Adds a message unless one with its global id is there already (`existed`). */
  async append (user: string, mailbox: string, m: ImportMessage): Promise<{ uid: number, uidValidity: number, existed: boolean }> {
    const h = (await this.call('append', user, { mailbox, flags: m.flags, internalDate: m.internalDate, gid: m.gid, ...(m.uid !== undefined ? { uid: m.uid } : {}) }, m.raw)).header
    return { uid: Number(h.uid), uidValidity: Number(h.uidValidity), existed: h.existed === true }
  }

  /** The user's log position at its primary and the id of the entry there. */
  async position (user: string): Promise<LogAnchor> {
    const h = (await this.call('position', user, {})).header
    return { seq: Number(h.seq), eid: (h.eid ?? null) as string | null }
  }

  /** Log entries from..to (inclusive), at most LOG_READ_ENTRIES_MAX and about LOG_READ_BYTES_MAX; at least one when any. */
  async readLog (user: string, from: number, to: number): Promise<LogEntry[]> {
    return (await this.call('log', user, { from, to })).header.entries as LogEntry[]
  }

  /** Applies entries of a backup at the primary (bodies they need in `blobs` unless present), then replicates. */
  async restoreLog (user: string, entries: LogEntry[], blobs: Buffer[], prev?: LogAnchor): Promise<number> {
    const res = await this.call('restoreLog', user, { entries, lens: blobs.map(b => b.length), ...(prev !== undefined ? { prev } : {}) }, Buffer.concat(blobs))
    return Number(res.header.position)
  }

}

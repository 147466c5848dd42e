/**
 * \Recent (RFC 3501 sections 2.3.2, 6.3.1, 7.3.2): a message is recent in exactly one session, the first to be
 * told of it. Dovecot's rule: the first session that has the mailbox selected read-write when the message
 * arrives, or else the next one to select it. EXAMINE (section 6.3.2) and IMAP4rev2 sessions (RFC 9051 dropped
 * \Recent) see what is unclaimed as recent but claim nothing.
 *
 * The record is kept in memory on the node, one per mailbox: the first UID not yet claimed by any session, and the
 * read-write sessions that have the mailbox selected (the first of them claims arrivals). On a grid every session
 * of a user runs on the user's primary, so one node's record is the whole truth. What is lost on a restart or a
 * failover is said in recordFor: the new primary starts each mailbox from the messages after the last \Seen one.
 */

/** Mailboxes with a record; past this the least recently used one without a selecting session is forgotten. */
export const RECENT_MAILBOXES_MAX = 100_000

interface MailboxRecord {
  /** Every UID at or above this that exists is unclaimed: recent for the next session to select the mailbox. */
  firstRecentUid: number
  /** Session ids that have the mailbox selected and may claim, in the order they selected it. */
  claimers: string[]
}

export class RecentRegistry {
  readonly #records = new Map<string, MailboxRecord>()

  #key (user: string, mailboxId: string): string {
    return `${user}\x00${mailboxId}`
  }

  #touch (key: string, record: MailboxRecord): MailboxRecord {
    this.#records.delete(key)
    this.#records.set(key, record)
    if (this.#records.size > RECENT_MAILBOXES_MAX) {
      for (const [old, value] of this.#records) {
        if (value.claimers.length === 0) { this.#records.delete(old); break }
      }
    }
    return record
  }

  /**
   * The record, created when missing. New messages of a mailbox without a record are those that arrived while this
   * node kept none (it restarted, took over as primary, or forgot it under RECENT_MAILBOXES_MAX): the messages
   * after the last \Seen one are taken as unclaimed, a guess that errs towards "recent" only for unread mail.
   * `lastSeen`: the index in `uids` of the last \Seen message, -1 when none (callers have it from a pass they make).
   */
  #recordFor (user: string, mailboxId: string, uids: readonly number[], lastSeen: number): MailboxRecord {
    const key = this.#key(user, mailboxId)
    const found = this.#records.get(key)
    if (found !== undefined) return this.#touch(key, found)
    const firstRecentUid = lastSeen + 1 < uids.length ? uids[lastSeen + 1]! : (uids.length === 0 ? 1 : uids[uids.length - 1]! + 1)
    return this.#touch(key, { firstRecentUid, claimers: [] })
  }

  /**
   * A session opens the mailbox (SELECT, EXAMINE): the UIDs recent for it (`uids` ascending, as the store lists them).
   * `claim`: read-write and not IMAP4rev2, so it takes them (nobody else will see them as recent) and later arrivals
   * while it is the first claimer.
   */
  open (user: string, mailboxId: string, uids: readonly number[], lastSeen: number, session: string, claim: boolean): number[] {
    const record = this.#recordFor(user, mailboxId, uids, lastSeen)
    const recent = uids.slice(firstAtOrAbove(uids, record.firstRecentUid))
    if (claim) {
      if (uids.length > 0) record.firstRecentUid = Math.max(record.firstRecentUid, uids[uids.length - 1]! + 1)
      if (!record.claimers.includes(session)) record.claimers.push(session)
    }
    return recent
  }

  /** The session left the mailbox (another SELECT, CLOSE, UNSELECT, logout, a dropped connection). */
  close (user: string, mailboxId: string, session: string): void {
    const record = this.#records.get(this.#key(user, mailboxId))
    if (record === undefined) return
    record.claimers = record.claimers.filter((id) => id !== session)
  }

  /**
   * Messages arrived (APPEND, COPY, MOVE, delivery), seen by one session of the user: every session of the user calls
   * this for the same event. Returns the UIDs the session claims: all of them when it is the mailbox's first claimer,
   * else none. A mailbox without a record gets one here, so the arrivals stay unclaimed until someone selects it.
   */
  arrived (user: string, mailboxId: string, uids: readonly number[], session: string | null): number[] {
    const key = this.#key(user, mailboxId)
    let record = this.#records.get(key)
    if (record === undefined) {
      const first = uids.reduce((m, uid) => Math.min(m, uid), Number.MAX_SAFE_INTEGER)
      record = this.#touch(key, { firstRecentUid: first, claimers: [] })
    }
    if (session === null || record.claimers[0] !== session) return []
    const claimed = uids.filter((uid) => uid >= record.firstRecentUid)
    for (const uid of claimed) record.firstRecentUid = Math.max(record.firstRecentUid, uid + 1)
    return claimed
  }

  /** STATUS RECENT of a mailbox not selected here: how many of these UIDs are unclaimed. */
  unclaimed (user: string, mailboxId: string, uids: readonly number[], lastSeen: number): number {
    const record = this.#recordFor(user, mailboxId, uids, lastSeen)
    return uids.length - firstAtOrAbove(uids, record.firstRecentUid)
  }
}

/** The index of the first of the ascending `uids` at or above `uid` (binary search: SELECT adds no pass of its own). */
function firstAtOrAbove (uids: readonly number[], uid: number): number {
  let lo = 0
  let hi = uids.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (uids[mid]! < uid) lo = mid + 1
    else hi = mid
  }
  return lo
}

const registries = new WeakMap<object, RecentRegistry>()

/**
 * The registry of a store. A node runs one IMAP listener per port (143, 993) over the same store, and a user's
 * sessions on both must share one record per mailbox: keyed by the store object, not by the listener.
 */
export function recentRegistryFor (store: object): RecentRegistry {
  let registry = registries.get(store)
  if (registry === undefined) {
    registry = new RecentRegistry()
    registries.set(store, registry)
  }
  return registry
}

// The storage interface the protocol code uses. Protocol handlers (SMTP, IMAP, POP3) and the grid reach mail
// and the directory only through these types; they never see LevelDB keys. Every method that changes state is
// one atomic batch, and it resolves only after that batch is durable (fsync'd), so a reply sent after it can
// be an acknowledgement.

import type { MessageMeta } from './mime/index.ts'
import type { BlobLocation } from './blobs.ts'

export type { MessageMeta, BlobLocation }

export interface OpOptions {
  signal?: AbortSignal
}

// ---- directory ----------------------------------------------------------------------------------------

export type AccountStatus = 'active' | 'disabled'

export interface Domain {
  name: string
  created: number
  /** Per-domain quotas (issue 11): bytes of all its users' mail, and number of users; absent or 0 = unlimited. */
  quotaBytes?: number
  quotaUsers?: number
}

/**
 * A DKIM key of a domain (RFC 6376), kept on the domain's directory record so it replicates with it. `active`:
 * the key that signs (at most one); `pending`: published, not yet signing (a rotation waits for DNS);
 * `published`: a former key still in DNS so mail signed with it keeps verifying, until retired.
 */
export interface DkimKey {
  selector: string
  algorithm: 'rsa-sha256'
  privateKey: string // PKCS#8 PEM: never leaves the node except to other nodes of the grid
  publicKey: string // base64 DER (SubjectPublicKeyInfo): the p= tag of the DNS record
  created: number
  state: 'active' | 'pending' | 'published'
}

export interface User {
  address: string // normalized: local part as given (case kept), domain lower-cased; lookups are case-insensitive
  quotaBytes: number // 0 = unlimited
  quotaMessages: number // 0 = unlimited
  status: AccountStatus
  created: number
  /** What people call the account (the console shows it); absent: none. Free text, at most DISPLAY_NAME_CHARS_MAX. */
  displayName?: string
}

export interface Alias {
  address: string // 'sales@example.com', or '@example.com' for a catch-all
  targets: string[] // local user addresses or other aliases
  created: number
}

export interface NewUser {
  address: string
  password: string
  quotaBytes?: number
  quotaMessages?: number
  displayName?: string
}

/** A replicated directory entry of another kind (appliance/console: admin accounts, the sessions' secret). */
export interface DirectoryEntry { name: string, value: Record<string, unknown> }

export interface Directory {
  /** With `dkim`: the domain's first DKIM key, in the same record. */
  addDomain (name: string, opts?: OpOptions & { dkim?: DkimKey }): Promise<Domain>
  listDomains (): Promise<Domain[]>
  getDomain (name: string): Promise<Domain | null>
  /** Sets the domain's quotas (0 = unlimited; an absent field is left as it is); resolves to the domain. */
  setDomainQuota (name: string, quota: { bytes?: number, users?: number }, opts?: OpOptions): Promise<Domain>
  /** Refuses (kind 'denied') while users or aliases of the domain exist. */
  deleteDomain (name: string, opts?: OpOptions): Promise<void>
  /** The domain's DKIM keys, private halves included ([] for an unknown domain or one without keys). */
  dkimKeys (domain: string): Promise<DkimKey[]>
  /** Replaces the domain's keys with what `change` makes of them, under the directory lock; checked (at most
   * one active key, selectors unique DNS labels, at most DKIM_KEYS_MAX). Resolves to the new keys. */
  updateDkimKeys (domain: string, change: (keys: DkimKey[]) => DkimKey[], opts?: OpOptions): Promise<DkimKey[]>

  /** Creates the user and its mailboxes (INBOX, Sent, Drafts, Trash, Junk, Archive). */
  addUser (user: NewUser, opts?: OpOptions): Promise<User>
  getUser (address: string): Promise<User | null>
  listUsers (domain?: string): Promise<User[]>
  setPassword (address: string, password: string, opts?: OpOptions): Promise<void>
  setQuota (address: string, quota: { bytes?: number, messages?: number }, opts?: OpOptions): Promise<void>
  setStatus (address: string, status: AccountStatus, opts?: OpOptions): Promise<void>
  /** '' removes it. */
  setDisplayName (address: string, name: string, opts?: OpOptions): Promise<void>
  /** Deletes the account and all of its mail. */
  deleteUser (address: string, opts?: OpOptions): Promise<void>
  /** The user for these credentials, or null. Constant work whether or not the user exists. */
  verifyPassword (address: string, password: string): Promise<User | null>

  /**
   * Entries of other kinds, replicated like domains and users (last writer wins per entry, tombstones for
   * deletes). Names are printable ASCII, at most ENTRY_NAME_CHARS_MAX; a value is a JSON object of at most
   * ENTRY_BYTES_MAX bytes.
   */
  getEntry (name: string): Promise<Record<string, unknown> | null>
  /** The live entries whose name starts with `prefix`, in name order. */
  listEntries (prefix: string): Promise<DirectoryEntry[]>
  /** Replaces the entry with what `change` makes of the current one (null: none); null deletes it. Under the directory lock. */
  updateEntry (name: string, change: (current: Record<string, unknown> | null) => Record<string, unknown> | null, opts?: OpOptions): Promise<Record<string, unknown> | null>

  addAlias (address: string, targets: string[], opts?: OpOptions): Promise<Alias>
  deleteAlias (address: string, opts?: OpOptions): Promise<void>
  listAliases (domain?: string): Promise<Alias[]>
  /**
   * The local users an address delivers to: the user itself, or the expansion of an alias (recursively, with
   * a depth limit), or the domain's catch-all. Empty when nothing matches.
   */
  resolveRecipient (address: string): Promise<string[]>
  /** The same expansion, with the alias targets outside our domains (forwarding, through the outbound queue). */
  expandRecipient (address: string): Promise<{ users: string[], remote: string[] }>
  /** True when the address is the user itself or an alias that expands to that user (for envelope senders). */
  mayUseAddress (user: string, address: string): Promise<boolean>
  isLocalDomain (domain: string): Promise<boolean>
}

// ---- mail -----------------------------------------------------------------------------------------------

export type SpecialUse = '\\Sent' | '\\Drafts' | '\\Trash' | '\\Junk' | '\\Archive' | '\\All' | '\\Flagged'

export interface Mailbox {
  id: string // stable across renames
  name: string // full hierarchical name with '/' as the delimiter; 'INBOX' is always upper case
  uidValidity: number
  uidNext: number
  highestModseq: number
  specialUse: SpecialUse | null
  subscribed: boolean
  messages: number
  unseen: number
  size: number // bytes of all messages
}

/** The index record of one message: everything but its content and parsed structure. */
export interface MessageRecord {
  uid: number
  gid: string // global message id: the same message on every replica
  flags: string[] // system flags ('\\Seen', ...) and keywords; never '\\Recent'
  modseq: number
  internalDate: number // ms since the epoch
  size: number // RFC 822 size: prefix + body bytes
  blob: string // hex SHA-256 of the stored body
  prefix: string // header lines this server added (Return-Path, Received), CRLF-terminated; '' for APPEND
  /** When the message was saved into this mailbox (RFC 8514 SAVEDATE: delivery, APPEND, COPY, MOVE), ms since the
   * epoch. Absent on records written before it existed: readers fall back to internalDate. */
  saved?: number
  /** Where this node keeps the body (node-local: derived when the entry is applied, never shipped in the log),
   * so reading a message needs no index lookup. Absent on records written before it existed. */
  loc?: BlobLocation
}

export interface AppendInput {
  raw: Buffer
  flags?: string[]
  internalDate?: number
  prefix?: string
  gid?: string // keep a global id (the grid's merge re-adds a message under the id it had elsewhere)
  saved?: number // keep a save date (the grid's merge re-adds a message with the date it was saved elsewhere)
}

export interface AppendResult {
  mailbox: string // mailbox id
  uidValidity: number
  uid: number
  modseq: number
  gid: string
}

export interface DeliveryTarget {
  user: string
  mailbox?: string // name; default INBOX
  prefix: string
  flags?: string[]
  /** The SMTP envelope of this copy, for the user's Sieve script (node/rules): MAIL FROM ('' = null sender), the RCPT
   * address that led to the user, and whether a refusal can still be said in the SMTP reply (the only recipient). */
  envelope?: { from: string, to: string, rejectable?: boolean }
}

export type FlagOp = 'set' | 'add' | 'remove'

export interface FlagChange {
  uid: number
  flags: string[]
  modseq: number
}

export interface StoreFlagsResult {
  modseq: number // the highest modseq of the mailbox after the change
  changed: FlagChange[] // messages whose flags this call changed (new modseq)
  unchanged: FlagChange[] // requested messages that exist but whose flags already matched
  failedUnchangedSince: number[] // CONDSTORE (RFC 7162 3.1.3): uids whose modseq was above UNCHANGEDSINCE
}

export interface CopyResult {
  uidValidity: number // of the destination
  pairs: Array<[number, number]> // [source uid, destination uid], in source uid order
  modseq: number
}

export interface ChangesSince {
  changed: MessageRecord[] // messages with modseq > since
  expunged: number[] // uids expunged with modseq > since (QRESYNC VANISHED)
}

/** One user attribute (MailStore.listAttrs): `at` is when it was set (ms), for the merge rule. */
export interface UserAttr {
  key: string
  value: string
  at: number
}

export interface QuotaUsage {
  usedBytes: number
  limitBytes: number // 0 = unlimited
  usedMessages: number
  limitMessages: number // 0 = unlimited
}

export type MailEvent =
  | { type: 'append', mailbox: string, uids: number[], modseq: number }
  | { type: 'flags', mailbox: string, changes: FlagChange[], modseq: number }
  | { type: 'expunge', mailbox: string, uids: number[], modseq: number }
  | { type: 'mailboxes', change: 'created' | 'renamed' | 'deleted' | 'subscription', mailbox: string | null } // mailbox id (null for subscriptions)

export type MailListener = (event: MailEvent) => void

/** One entry of a user's ordered change log: what the grid replicates. `epoch`: the ownership epoch of the
 * primary that decided it (grid; absent on a standalone node). `eid`: a unique id the deciding node gives the
 * entry, so two copies of a log can tell where they diverged (after a partition). */
/** A position in a user's log and the id of the entry there (null at position 0, or for an entry without id). */
export interface LogAnchor { seq: number, eid: string | null }

export type LogEntry = { epoch?: number, eid?: string } & (
  | { seq: number, op: 'append', mailbox: string, uid: number, gid: string, flags: string[], modseq: number, internalDate: number, size: number, blob: string, prefix: string, saved?: number }
  | { seq: number, op: 'flags', mailbox: string, changes: Array<[number, string[]]>, modseq: number }
  | { seq: number, op: 'expunge', mailbox: string, uids: number[], modseq: number }
  | { seq: number, op: 'uidNext', mailbox: string, uidNext: number, modseq?: number } // raise UIDNEXT, and the mailbox's HIGHESTMODSEQ with the user's MODSEQ counter (merge: new UIDs and MODSEQs above both sides)
  | { seq: number, op: 'mailboxCreate', mailbox: string, name: string, uidValidity: number, specialUse: SpecialUse | null }
  | { seq: number, op: 'mailboxRename', mailbox: string, name: string }
  | { seq: number, op: 'mailboxDelete', mailbox: string }
  | { seq: number, op: 'subscribe', name: string, subscribed: boolean }
  | { seq: number, op: 'attr', key: string, value: string | null, at: number }) // a user attribute set (null: removed); see MailStore.setAttrs

// Mailbox-level methods take names; message-level methods take the mailbox id (stable across renames).
/** A log entry before the log assigns its position. */
export type NewLogEntry = LogEntry extends infer E ? E extends LogEntry ? Omit<E, 'seq'> : never : never

export interface MailStore {
  listMailboxes (user: string): Promise<Mailbox[]>
  /** By name; 'INBOX' matches case-insensitively. Null when it does not exist. */
  getMailbox (user: string, name: string): Promise<Mailbox | null>
  createMailbox (user: string, name: string, opts?: OpOptions & { specialUse?: SpecialUse }): Promise<Mailbox>
  /** RFC 3501 6.3.4: deleting a mailbox with children is refused here (kind 'hasChildren'). INBOX cannot be deleted. */
  deleteMailbox (user: string, name: string, opts?: OpOptions): Promise<void>
  /** Renames the mailbox and its children. Renaming INBOX moves its messages to the new mailbox (RFC 3501 6.3.5). */
  renameMailbox (user: string, from: string, to: string, opts?: OpOptions): Promise<void>
  setSubscribed (user: string, name: string, subscribed: boolean, opts?: OpOptions): Promise<void>
  /** Names subscribed to, including ones whose mailbox no longer exists. */
  listSubscriptions (user: string): Promise<string[]>

  append (user: string, name: string, input: AppendInput, opts?: OpOptions): Promise<AppendResult>
  /**
   * Appends several messages to one mailbox as one atomic batch (IMAP MULTIAPPEND, RFC 3502): all or none, quota
   * checked for all of them first. With `expunge`, those UIDs of that mailbox (by id) are expunged in the same
   * batch (IMAP REPLACE, RFC 8508); `expunged` lists the ones that existed (null without `expunge`).
   */
  appendMany (user: string, name: string, inputs: AppendInput[], opts?: OpOptions & { expunge?: { mailbox: string, uids: number[] } }): Promise<{ appended: AppendResult[], expunged: { uids: number[], modseq: number } | null }>
  /**
   * Delivers one message to several local users: the body is stored once, each user gets its own record
   * (with its own prefix). All-or-nothing: checks every target's quota first and throws 'noQuota' (listing
   * nothing stored) when any target lacks room.
   */
  deliver (raw: Buffer, targets: DeliveryTarget[], opts?: OpOptions & { internalDate?: number }): Promise<AppendResult[]>

  /** Index records of a mailbox in UID order, optionally limited to a UID range (inclusive). */
  listMessages (user: string, mailboxId: string, range?: { from?: number, to?: number }): Promise<MessageRecord[]>
  /**
   * UIDs and flags of every message of a mailbox, in UID order, from an index the store keeps in memory (built
   * from the records once): what SELECT needs, at a fraction of listMessages' cost on a large mailbox. Optional:
   * callers fall back to listMessages where a wrapper does not pass it on. Callers must not change the arrays
   * inside `flags`.
   */
  listFlags?: (user: string, mailboxId: string) => Promise<{ uids: number[], flags: string[][] }>
  getMessage (user: string, mailboxId: string, uid: number): Promise<MessageRecord | null>
  /** The records of these UIDs that exist, in UID order (one multi-get). */
  getMessages (user: string, mailboxId: string, uids: number[]): Promise<MessageRecord[]>
  /** Parsed structure with byte offsets relative to the full message (prefix included). */
  getMeta (record: MessageRecord): Promise<MessageMeta>
  /**
   * The message's top-level header block (prefix included, blank line included), from the copy the store keeps
   * at delivery: SEARCH of header fields and FETCH of HEADER.FIELDS then read no message bytes and no structure.
   * Null when no copy was kept (a header above HEADER_CACHE_BYTES_MAX, a message stored before copies were
   * kept). Optional: callers fall back to the structure and the message bytes.
   */
  readHeader?: (record: MessageRecord) => Promise<Buffer | null>
  /** The whole message (prefix + body). */
  readMessage (record: MessageRecord): Promise<Buffer>
  /** A byte range [start, end) of the whole message, streamed in chunks; never loads more than one chunk. */
  streamMessage (record: MessageRecord, range?: { start?: number, end?: number }): AsyncIterable<Buffer>

  storeFlags (user: string, mailboxId: string, uids: number[], op: FlagOp, flags: string[], opts?: OpOptions & { unchangedSince?: number }): Promise<StoreFlagsResult>
  expunge (user: string, mailboxId: string, uids: number[], opts?: OpOptions): Promise<{ uids: number[], modseq: number }>
  copy (user: string, fromId: string, uids: number[], toName: string, opts?: OpOptions): Promise<CopyResult>
  /** Copy then expunge from the source, as one atomic batch (RFC 6851). */
  move (user: string, fromId: string, uids: number[], toName: string, opts?: OpOptions): Promise<CopyResult & { expunged: number[] }>
  changesSince (user: string, mailboxId: string, modseq: number): Promise<ChangesSince>

  quota (user: string): Promise<QuotaUsage>

  // ---- user attributes ----------------------------------------------------------------------------------
  // A small per-user key/value space that lives and replicates with the user's mail: every change is an 'attr'
  // entry of the user's log, so it is shipped, caught up, merged after a partition and dropped with the copy like
  // any other change, and a failover keeps it. Keys are hierarchical by convention, '/'-separated, owned by the
  // feature that writes them: 'sieve/script/NAME' and 'sieve/active' (Sieve scripts, node/managesieve), 'sieve/
  // memory/...' (vacation and duplicate memory), and later IMAP METADATA (RFC 5464) entries. A merge of two
  // copies keeps both sides' changes; where both changed one key, the change with the later `at` wins (then the
  // greater value, null lowest), the same on every node. Bounds: ATTR_KEY_BYTES_MAX, ATTR_VALUE_BYTES_MAX,
  // ATTRS_PER_USER_MAX and ATTR_BYTES_PER_USER_MAX (store/mail.ts), 'limit' errors past them.

  /** The value of one attribute, or null. */
  getAttr (user: string, key: string): Promise<string | null>
  /** The attributes whose key starts with `prefix` ('' for all), in key order, at most `limit` (default all). */
  listAttrs (user: string, prefix: string, opts?: { limit?: number }): Promise<UserAttr[]>
  /** Sets (or, with null, removes) several attributes as one atomic, durable change; one log entry per key.
   * `at`: the change's time for the merge rule (default now); a merge passes the winning side's, and the per-user
   * bounds are then not checked (a merge must never fail on them). */
  setAttrs (user: string, changes: Array<{ key: string, value: string | null }>, opts?: OpOptions & { at?: number }): Promise<void>

  /** Change events of one user's mail, emitted after the change is durable. Returns the unsubscribe function. */
  subscribe (user: string, listener: MailListener): () => void
  /** The user's change log from position `from` (inclusive), at most `limit` entries. */
  readLog (user: string, from: number, limit: number): Promise<LogEntry[]>
}

/** One directory record as stored, with its version; the grid ships these between nodes. */
export interface DirectoryRecord {
  key: string
  value: { ver: number, deleted?: boolean, [field: string]: unknown }
}

/** What the grid needs to replicate the directory to every node. */
export interface DirectoryReplication {
  exportDirectory (): Promise<DirectoryRecord[]>
  directoryDigest (): Promise<string>
  mergeDirectory (records: DirectoryRecord[]): Promise<DirectoryRecord[]>
  /** Records changed on this node (by its own writes or a merge), after they are durable. */
  onDirectoryChange (listener: (records: DirectoryRecord[]) => void): () => void
}

/** What the grid needs to replicate a user's mail: log shipping with the bodies it refers to. */
export interface Replication {
  /** The user's log position (0 when this node holds no state for the user). */
  logPosition (user: string): Promise<number>
  /** Which of these bodies this node lacks. */
  missingBlobs (hashes: string[]): Promise<string[]>
  readBlob (hash: string): Promise<Buffer>
  /**
   * Applies entries another node decided. Entries at or below this copy's position are skipped (a retry is
   * harmless) but must be the same entries; the rest must continue the log without a gap, and their bodies must
   * be present or in `blobs`. `prev`, when given, is the sender's entry just before `entries`: this copy must
   * hold the same entry there. A mismatch throws LogDivergedError and changes nothing. All checks and the
   * write are one step under the user's lock. Resolves to the new position once durable.
   */
  applyLog (user: string, entries: LogEntry[], blobs?: Buffer[], prev?: LogAnchor): Promise<number>
  /**
   * Drops this node's copy of a user's mail (state, mailboxes, records, log). With `expect`, only if the copy
   * still ends exactly there (checked and dropped under the user's lock); resolves to whether it dropped.
   */
  dropUserMail (user: string, expect?: LogAnchor): Promise<boolean>
  /**
   * Creates the user's first mail state here if this node holds none (the same deterministic first log entries
   * every node derives from the user record), so a node that becomes primary without a copy can serve.
   */
  ensureUserMail (user: string): Promise<void>
  /** Raises a mailbox's UIDNEXT and, given a modseq, its HIGHESTMODSEQ with the user's MODSEQ counter (never lowers them). */
  raiseUidNext (user: string, mailboxId: string, uidNext: number, modseq?: number): Promise<void>
  /** Gives messages new UIDs (from UIDNEXT) in the same mailbox, keeping their global ids: one batch. */
  renumber (user: string, mailboxId: string, uids: number[]): Promise<Array<[number, number]>>
}

export interface Store extends Directory, MailStore, Replication, DirectoryReplication {
  readonly path: string
  start (): Promise<void>
  stop (): Promise<void>
  /** Group-commit counters: batches committed and the fsync'd groups they shared. */
  stats (): { commitGroups: number, commitBatches: number, combinedBatches: number, combinedWrites: number }
  /** After any change of a user's attributes is durable (own writes, applied entries, merges; `keys` null: the user's
   * copy dropped or deleted). Returns the unsubscribe function. */
  onAttrChange (listener: (user: string, keys: string[] | null) => void): () => void
  /**
   * When a user was created (its record's `created`), from the directory held in memory, without waiting: placement
   * asks it on every write (a user created after a member's disk went low is not placed there). Undefined for an
   * unknown or deleted user, or while the store is stopped.
   */
  userCreatedAt (address: string): number | undefined
  /** Where the message with global id `gid` is now in the user's mail (mailbox id, UID), or null: not there. */
  messageByGid (user: string, gid: string): Promise<{ mailbox: string, uid: number } | null>
}

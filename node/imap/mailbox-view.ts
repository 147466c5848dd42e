/**
 * One session's view of its selected mailbox: the sequence-number → UID map the client knows,
 * and the changes other sessions made that the client has not been told yet. Changes arrive
 * from the store's subscription at any time; they reach the client only at flush(), which the
 * dispatcher calls where RFC 3501 section 7.4.1 allows: EXISTS and FETCH FLAGS after any command,
 * EXPUNGE (or VANISHED, RFC 7162 section 3.2.10) never while FETCH, STORE or SEARCH is answered.
 */
import type { FlagChange, MailEvent } from '../../store/index.ts'
import { atom, list, num } from './protocol/compiler.ts'
import type { Value } from './protocol/compiler.ts'
import { formatSequenceSet, inRanges, resolveSequenceSet, STAR } from './protocol/sequence.ts'
import type { SequenceRange } from './protocol/sequence.ts'
import { ArgumentError } from './errors.ts'
import type { ViewChanges } from './search-context.ts'

/** Changes held for one session before the client is told (a client that never flushes is cut off). */
export const PENDING_EVENTS_MAX = 100_000
/** Entries of the told-modseq map before it starts over (a change older than a forgotten entry is then reported). */
export const TOLD_MAX = 100_000

export interface ViewInit {
  id: string
  name: string
  readOnly: boolean
  uidValidity: number
  uids: number[]
  highestModseq: number
  /** Keywords the client was told of in FLAGS at SELECT. */
  keywords?: Iterable<string>
  /** UIDs recent in this session (recent.ts). */
  recent?: Iterable<number>
}

export interface FlushOptions {
  allowExpunge: boolean
  condstore: boolean
  qresync: boolean
  /** Report \Recent (an IMAP4rev1 session; RFC 9051 dropped it). Default false. */
  recent?: boolean
}

/** The system flags of FLAGS and PERMANENTFLAGS (RFC 3501 section 2.3.2); \Recent is not one a client may set. */
export const SYSTEM_FLAGS = ['\\Answered', '\\Flagged', '\\Deleted', '\\Seen', '\\Draft']

export class SelectedMailbox {
  readonly id: string
  /** Follows renames made by any session (the id stays). */
  name: string
  readonly readOnly: boolean
  readonly uidValidity: number
  /** UIDs in sequence order: `uids[seq - 1]`. UIDs only grow, so the array is sorted. */
  uids: number[]
  highestModseq: number
  /** RFC 5182 SEARCHRES: the UIDs of the last SEARCH ... RETURN (SAVE). */
  searchResult: number[] = []
  #pending: MailEvent[] = []
  /** Modseqs of flag changes this session made and already reported itself. */
  #own = new Set<number>()
  /** UID → the newest mod-sequence a command's answer told the client (noteTold). */
  #told = new Map<number, number>()
  /** UIDs whose flags an update (another session's change) told the client since the last tagged reply (replied()). */
  #updatedSinceReply = new Set<number>()
  overflow = false
  /** Another session deleted this mailbox: the session ends at the next chance. */
  gone = false
  /** The keywords the client knows (FLAGS): a FETCH carrying another one is preceded by a new FLAGS (RFC 3501 7.2.6). */
  readonly keywords: Set<string>
  /** UIDs that are recent in this session (RFC 3501 section 2.3.2). */
  readonly recent: Set<number>
  /** What the flushes changed since takeChanges(); collected only while the session keeps RFC 5267 contexts. */
  changes: ViewChanges | null = null

  constructor (init: ViewInit) {
    this.id = init.id
    this.name = init.name
    this.readOnly = init.readOnly
    this.uidValidity = init.uidValidity
    this.uids = init.uids
    this.highestModseq = init.highestModseq
    this.keywords = new Set(init.keywords ?? [])
    this.recent = new Set(init.recent ?? [])
  }

  /** FLAGS and PERMANENTFLAGS as the client is told them (SELECT, and when a keyword is new to it). */
  flagsResponses (): Value[][] {
    const flags = [...SYSTEM_FLAGS, ...this.keywords]
    // PERMANENTFLAGS: `\*` says new keywords may be created (RFC 3501 section 7.1); nothing is permanent when read-only.
    const permanent = this.readOnly ? '' : [...flags, '\\*'].join(' ')
    return [[atom('FLAGS'), list(flags.map(atom))], [atom('OK'), atom(`[PERMANENTFLAGS (${permanent})] Flags permitted`)]]
  }

  /**
   * RFC 3501 section 7.2.6: a FETCH may carry only flags the client was told of in FLAGS. When `flags` hold a keyword
   * new to this session, the FLAGS and OK [PERMANENTFLAGS] responses to send first; else none.
   */
  announceKeywords (flags: readonly string[]): Value[][] {
    let fresh = false
    for (const flag of flags) {
      if (flag.startsWith('\\') || this.keywords.has(flag)) continue
      this.keywords.add(flag)
      fresh = true
    }
    return fresh ? this.flagsResponses() : []
  }

  /**
   * The flags of a FETCH response: the stored ones, and \Recent when the message is recent here and it is reported.
   * `modseq`: the state's mod-sequence, when a command's own answer tells the client these flags (noteTold).
   */
  flagsOf (uid: number, flags: readonly string[], recent: boolean, modseq?: number): readonly string[] {
    if (modseq !== undefined) this.noteTold(uid, modseq)
    // the stored array itself when nothing is added: FETCH FLAGS of a large mailbox copies nothing
    return recent && this.recent.size > 0 && this.recent.has(uid) ? [...flags, '\\Recent'] : flags
  }

  get exists (): number {
    return this.uids.length
  }

  get hasPending (): boolean {
    return this.#pending.length > 0
  }

  push (event: MailEvent): void {
    if (this.#pending.length >= PENDING_EVENTS_MAX) {
      this.overflow = true
      return
    }
    this.#pending.push(event)
  }

  noteOwnChange (modseq: number): void {
    this.#own.add(modseq)
  }

  /**
   * A command's own answer (FETCH, STORE) told the client the flags of `uid` as of `modseq`. Another session's change
   * with a lower mod-sequence may still be pending here (it committed while the command ran); it is older than what
   * the client has and is not reported, or the client's copy would go back in time (found by test/stress).
   */
  noteTold (uid: number, modseq: number): void {
    if (this.#told.size >= TOLD_MAX) this.#told.clear()
    if ((this.#told.get(uid) ?? 0) < modseq) this.#told.set(uid, modseq)
  }

  /**
   * An update told the client the flags of `uid` since the tagged reply of its last command: a FETCH pushed between
   * commands (NOTIFY) or sent while the current command runs. The client cannot tell whether that state came before or
   * after what the current command does to the message.
   */
  updatedSinceReply (uid: number): boolean {
    return this.#updatedSinceReply.has(uid)
  }

  /** A command's tagged reply went out: the updates before it are ordered for the client. */
  replied (): void {
    if (this.#updatedSinceReply.size > 0) this.#updatedSinceReply.clear()
  }

  /** Another session's flag change of `uid` older than `modseq` waits to be reported here. */
  hasOlderFlagChange (uid: number, modseq: number): boolean {
    for (const event of this.#pending) {
      if (event.type !== 'flags') continue
      for (const change of event.changes) if (change.uid === uid && change.modseq < modseq && !this.#own.has(change.modseq)) return true
    }
    return false
  }

  /** Sequence number of a UID, or 0 if the client does not know it. */
  seqOf (uid: number): number {
    let lo = 0
    let hi = this.uids.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      const value = this.uids[mid]!
      if (value === uid) return mid + 1
      if (value < uid) lo = mid + 1
      else hi = mid - 1
    }
    return 0
  }

  /**
   * The UIDs a set names, in ascending order. With sequence numbers, `*` is the last message and
   * numbers above EXISTS are a BAD (RFC 9051 section 6.4.4 says the server may reject them); with
   * UIDs, `*` is the largest UID and absent UIDs are simply skipped (RFC 3501 section 6.4.8).
   */
  resolve (set: SequenceRange[] | '$', byUid: boolean): number[] {
    if (set === '$') return this.searchResult.filter((uid) => this.seqOf(uid) > 0)
    if (byUid) {
      const ranges = resolveSequenceSet(set, this.uids.length === 0 ? 0 : this.uids[this.uids.length - 1]!)
      return this.uids.filter((uid) => inRanges(ranges, uid))
    }
    // An empty mailbox has no sequence numbers: `1:*` or `*` names nothing rather than being an error,
    // which is what clients that fetch right after SELECT expect (RFC 3501 section 9 defines `*` for a
    // non-empty mailbox only). A range of explicit numbers (`1`, `2:3`) names messages that do not exist:
    // BAD, as above EXISTS in a non-empty mailbox.
    if (this.uids.length === 0) {
      if (set.some((range) => range.start !== STAR && range.end !== STAR)) throw new ArgumentError('Invalid message sequence number')
      return []
    }
    const ranges = resolveSequenceSet(set, this.uids.length)
    const last = ranges[ranges.length - 1]
    if (last !== undefined && last.end > this.uids.length) throw new ArgumentError('Invalid message sequence number')
    const out: number[] = []
    for (const range of ranges) {
      for (let seq = range.start; seq <= range.end; seq++) out.push(this.uids[seq - 1]!)
    }
    return out
  }

  /** Our own EXPUNGE/MOVE removed these: answer immediately, as the command's own responses. */
  removeOwn (uids: number[], qresync: boolean): Value[][] {
    return this.#remove(new Set(uids), qresync)
  }

  /** The changes collected since the last call (RFC 5267 contexts), and a fresh collection. */
  takeChanges (): ViewChanges | null {
    const changes = this.changes
    if (changes === null) return null
    this.changes = { added: [], flagged: [], expunged: [] }
    return changes.added.length + changes.flagged.length + changes.expunged.length === 0 ? null : changes
  }

  #remove (gone: Set<number>, qresync: boolean): Value[][] {
    const out: Value[][] = []
    this.changes?.expunged.push(...gone)
    if (qresync) {
      const removed = this.uids.filter((uid) => gone.has(uid))
      if (removed.length === 0) return out
      this.uids = this.uids.filter((uid) => !gone.has(uid))
      for (const uid of removed) this.recent.delete(uid)
      out.push([atom('VANISHED'), atom(formatSequenceSet(removed))])
      return out
    }
    // RFC 3501 section 7.4.1: each EXPUNGE renumbers the messages after it, so report from the
    // highest sequence number down and every number stays valid when it is read.
    for (let index = this.uids.length - 1; index >= 0; index--) {
      if (gone.has(this.uids[index]!)) {
        out.push([num(index + 1), atom('EXPUNGE')])
        this.recent.delete(this.uids[index]!)
        this.uids.splice(index, 1)
      }
    }
    return out
  }

  /** Applies the pending changes the rules allow now and returns the untagged responses to send. */
  flush (options: FlushOptions): Value[][] {
    const out: Value[][] = []
    const held: MailEvent[] = []
    let appended = false
    /** Messages the client was told exist: an EXISTS sent in this flush moves it. */
    let announced = this.uids.length
    for (const event of this.#pending) {
      if (event.type === 'expunge') {
        if (!options.allowExpunge) {
          held.push(event)
          continue
        }
        // an EXISTS this flush owes goes first: the expunge may name a message only it announces (a copy that arrived
        // with \Deleted and was expunged before this flush), RFC 3501 section 7.4.1 counts from what the client knows
        if (appended) {
          out.push(...this.#existsResponses(options))
          announced = this.uids.length
          appended = false
        }
        out.push(...this.#remove(new Set(event.uids), options.qresync))
        announced = this.uids.length
      } else if (event.type === 'append') {
        const last = this.uids.length === 0 ? 0 : this.uids[this.uids.length - 1]!
        for (const uid of [...event.uids].sort((a, b) => a - b)) {
          if (uid > last && this.seqOf(uid) === 0) {
            this.uids.push(uid)
            this.changes?.added.push(uid)
            appended = true
          }
        }
      } else if (event.type === 'flags') {
        // likewise a FETCH may be for a message only this flush's EXISTS announces (found by test/stress on a grid)
        if (appended && event.changes.some((change) => this.seqOf(change.uid) > announced)) {
          out.push(...this.#existsResponses(options))
          announced = this.uids.length
          appended = false
        }
        // this session's own changes too: its contexts follow them (RFC 5267 section 4.3)
        for (const change of event.changes) this.changes?.flagged.push(change.uid)
        out.push(...this.#flagResponses(event.changes, options))
      }
      // The highest mod-sequence the client may be told (OK [HIGHESTMODSEQ], RFC 7162 section 3.1.2.1) stops below
      // the first expunge held back: a client resyncing from it must not miss that expunge.
      if (held.length === 0 && 'modseq' in event) this.highestModseq = Math.max(this.highestModseq, event.modseq)
    }
    this.#pending = held
    if (appended) out.push(...this.#existsResponses(options))
    return out
  }

  #existsResponses (options: FlushOptions): Value[][] {
    const out: Value[][] = [[num(this.uids.length), atom('EXISTS')]]
    // RFC 3501 section 7.3.2: RECENT with every change of the number of recent messages (sent with EXISTS, as
    // Dovecot does; new mail is where it changes).
    if (options.recent === true) out.push([num(this.recentCount()), atom('RECENT')])
    return out
  }

  /** How many messages the client knows are recent in this session. */
  recentCount (): number {
    let n = 0
    for (const uid of this.recent) if (this.seqOf(uid) !== 0) n++
    return n
  }

  #flagResponses (changes: FlagChange[], options: FlushOptions): Value[][] {
    const out: Value[][] = []
    // one STORE changes many messages under one modseq: all of them are ours, so the mark goes after the loop
    const own = changes.filter((change) => this.#own.has(change.modseq)).map((change) => change.modseq)
    for (const change of changes) {
      if (this.#own.has(change.modseq)) continue
      if ((this.#told.get(change.uid) ?? 0) >= change.modseq) continue
      const seq = this.seqOf(change.uid)
      if (seq === 0) continue
      out.push(...this.announceKeywords(change.flags))
      if (this.#updatedSinceReply.size < TOLD_MAX) this.#updatedSinceReply.add(change.uid)
      const items: Value[] = [atom('FLAGS'), list(this.flagsOf(change.uid, change.flags, options.recent === true).map(atom))]
      // RFC 7162 section 3.2.4: after QRESYNC every unsolicited FETCH carries the UID.
      items.push(atom('UID'), num(change.uid))
      if (options.condstore) items.push(atom('MODSEQ'), list([num(change.modseq)]))
      out.push([num(seq), atom('FETCH'), list(items)])
    }
    for (const modseq of own) this.#own.delete(modseq)
    return out
  }
}

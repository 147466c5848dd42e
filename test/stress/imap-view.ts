// The stress tester's model of one IMAP session's selected mailbox, and the checks every server answer goes
// through: sequence number ↔ UID, EXISTS/EXPUNGE/VANISHED renumbering, FLAGS before keywords, per-message MODSEQ
// that never goes backwards (and one flag set per MODSEQ), the session's private keyword that only it changes.
// No I/O here: test/stress/imap-stress.ts feeds it the parsed responses, imap-stress.test.ts plants faults in it.

import { parseResponses } from '../imap/wire.ts'
import type { Item, Response } from '../imap/wire.ts'

/** Splits a byte stream into complete IMAP responses (a line plus the literals it announces), latin1 strings. */
export class ResponseFramer {
  #buf: Buffer = Buffer.alloc(0)
  #scan = 0
  /** Refuses a response longer than this (a server that never ends a line). */
  static readonly RESPONSE_BYTES_MAX = 64 * 1024 * 1024

  push (chunk: Buffer): void {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk])
    if (this.#buf.length > ResponseFramer.RESPONSE_BYTES_MAX) throw new Error(`a response over ${ResponseFramer.RESPONSE_BYTES_MAX} bytes`)
  }

  /** The next complete response (with its final CRLF), or null until more bytes come. */
  next (): string | null {
    let pos = this.#scan
    for (;;) {
      const eol = this.#buf.indexOf('\r\n', pos, 'latin1')
      if (eol === -1) { this.#scan = pos; return null }
      const tail = this.#buf.subarray(Math.max(pos, eol - 24), eol).toString('latin1')
      const literal = /\{(\d+)\+?\}$/.exec(tail)
      if (literal !== null) {
        const end = eol + 2 + Number(literal[1])
        if (this.#buf.length < end) { this.#scan = pos; return null }
        pos = end
        continue
      }
      const out = this.#buf.subarray(0, eol + 2).toString('latin1')
      this.#buf = this.#buf.subarray(eol + 2)
      this.#scan = 0
      return out
    }
  }
}

/** A status response's parts: `tag OK [CODE args] text`. */
export function statusOf (line: string): { tag: string, status: string, code: string | null, text: string } | null {
  const m = /^(\S+) (OK|NO|BAD|BYE|PREAUTH)(?: \[([^\]]*)\])? ?([^\r\n]*)\r\n$/i.exec(line)
  if (m === null) return null
  return { tag: m[1]!, status: m[2]!.toUpperCase(), code: m[3] ?? null, text: m[4]! }
}

export function parseOne (line: string): Response {
  const out = parseResponses(line)
  if (out.length !== 1) throw new Error(`not one response: ${JSON.stringify(line.slice(0, 200))}`)
  return out[0]!
}

/** Expands a sequence set of numbers (no `*`) into a sorted list. */
export function expandSet (set: string, max = 1_000_000): number[] {
  const out: number[] = []
  for (const part of set.split(',')) {
    const [a, b] = part.split(':').map(Number)
    if (a === undefined || !Number.isInteger(a) || (b !== undefined && !Number.isInteger(b))) throw new Error(`bad set ${set}`)
    const lo = Math.min(a, b ?? a)
    const hi = Math.max(a, b ?? a)
    if (hi - lo > max) throw new Error(`set too large ${set}`)
    for (let n = lo; n <= hi; n++) out.push(n)
  }
  return out.sort((x, y) => x - y)
}

export function formatSet (nums: number[]): string {
  const sorted = [...nums].sort((a, b) => a - b)
  const parts: string[] = []
  for (let i = 0; i < sorted.length;) {
    let j = i
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++
    parts.push(i === j ? String(sorted[i]) : `${sorted[i]}:${sorted[j]}`)
    i = j + 1
  }
  return parts.join(',')
}

export interface FetchSeen {
  seq: number
  uid: number
  flags: string[] | null
  modseq: number | null
  body: string | null
}

/** One FETCH response's items by name. */
export function fetchItems (r: Response): Map<string, Item> {
  const list = r.items[2]
  if (!Array.isArray(list) || list.length % 2 !== 0) throw new Error('FETCH without an even item list')
  const items = new Map<string, Item>()
  for (let i = 0; i < list.length; i += 2) items.set(String(list[i]).toUpperCase(), list[i + 1]!)
  return items
}

export type Problem = (kind: string, detail: string) => void

/**
 * The selected mailbox as this session knows it. `uids[seq - 1]` is the UID of a message, 0 while only an EXISTS
 * has announced it (the session then learns it from a FETCH). Every apply* method reports what breaks the rules
 * through `problem` and counts the checks it made.
 */
export class View {
  readonly mailbox: string
  uidValidity = 0
  uids: number[] = []
  keywords = new Set<string>()
  highestModseq = 0
  readonly modseq = new Map<number, number>()
  /** The session's private keyword on each UID: true/false once known; absent while unknown. */
  readonly priv = new Map<number, boolean>()
  /** UIDs whose private keyword a command of this session is changing now (no check until it completes). */
  readonly privBusy = new Set<number>()
  readonly privKeyword: string
  /** While a command runs: the flags of each FETCH by UID, resolved as it arrived (sequence numbers move). */
  fetchLog: Map<number, string[]> | null = null
  checks = 0
  readonly problem: Problem
  /** UIDs this view was told are gone (EXPUNGE or VANISHED), for the loss check of the run. */
  readonly expunged: number[] = []

  constructor (mailbox: string, privKeyword: string, problem: Problem) {
    this.mailbox = mailbox
    this.privKeyword = privKeyword
    this.problem = problem
  }

  get exists (): number { return this.uids.length }
  get unknown (): number { let n = 0; for (const u of this.uids) if (u === 0) n++; return n }
  firstUnknownSeq (): number { return this.uids.indexOf(0) + 1 }
  seqOf (uid: number): number { return this.uids.indexOf(uid) + 1 }

  applyExists (n: number): void {
    this.checks++
    if (n < this.uids.length) {
      this.problem('exists-decreased', `${this.mailbox}: EXISTS ${n} below ${this.uids.length} without EXPUNGE`)
      this.uids.length = n
      return
    }
    while (this.uids.length < n) this.uids.push(0)
  }

  applyExpunge (seq: number): void {
    this.checks++
    if (seq < 1 || seq > this.uids.length) {
      this.problem('expunge-range', `${this.mailbox}: EXPUNGE ${seq} with EXISTS ${this.uids.length}`)
      return
    }
    const uid = this.uids[seq - 1]!
    this.uids.splice(seq - 1, 1)
    if (uid !== 0) this.#forget(uid)
  }

  applyVanished (set: string): void {
    for (const uid of expandSet(set)) {
      this.checks++
      const index = this.uids.indexOf(uid)
      if (index >= 0) { this.uids.splice(index, 1); this.#forget(uid); continue }
      // not known by UID: it must be one of the messages only announced by EXISTS, between its known neighbours
      let below = -1
      for (let i = 0; i < this.uids.length; i++) if (this.uids[i] !== 0 && this.uids[i]! < uid) below = i
      let gap = -1
      for (let i = below + 1; i < this.uids.length; i++) {
        if (this.uids[i] === 0) gap = i
        break // a known UID here is above `uid`: the gap is over
      }
      if (gap === -1) { this.problem('vanished-unknown', `${this.mailbox}: VANISHED ${uid} is not in the view`); continue }
      this.uids.splice(gap, 1)
      this.expunged.push(uid)
    }
  }

  #forget (uid: number): void {
    this.expunged.push(uid)
    this.modseq.delete(uid)
    this.priv.delete(uid)
  }

  applyFlags (flags: string[]): void {
    this.keywords = new Set(flags.filter(f => !f.startsWith('\\')))
  }

  applyHighestModseq (n: number): void {
    this.checks++
    if (n < this.highestModseq) this.problem('highestmodseq-backwards', `${this.mailbox}: HIGHESTMODSEQ ${n} after ${this.highestModseq}`)
    this.highestModseq = Math.max(this.highestModseq, n)
  }

  /** A FETCH response: returns what it carried, after checking it against the view. */
  applyFetch (r: Response): FetchSeen {
    const seq = Number(r.items[0])
    const items = fetchItems(r)
    const seen: FetchSeen = { seq, uid: 0, flags: null, modseq: null, body: null }
    this.checks++
    if (!Number.isInteger(seq) || seq < 1 || seq > this.uids.length) {
      this.problem('fetch-seq-range', `${this.mailbox}: FETCH for ${seq} with EXISTS ${this.uids.length}`)
      return seen
    }
    const uidItem = items.get('UID')
    if (uidItem !== undefined) {
      const uid = Number(uidItem)
      seen.uid = uid
      this.checks++
      const known = this.uids[seq - 1]!
      if (known !== 0 && known !== uid) {
        this.problem('fetch-uid', `${this.mailbox}: FETCH ${seq} says UID ${uid}, the view has ${known}`)
        return seen
      }
      if (known === 0) {
        // a UID learnt: above every known UID before it, below every known one after it
        const before = this.uids.slice(0, seq - 1).filter(u => u !== 0)
        const after = this.uids.slice(seq).filter(u => u !== 0)
        if ((before.length > 0 && before[before.length - 1]! >= uid) || (after.length > 0 && after[0]! <= uid) || this.uids.includes(uid)) {
          this.problem('fetch-uid-order', `${this.mailbox}: FETCH ${seq} UID ${uid} out of order (before ${before.slice(-1)}, after ${after[0]})`)
          return seen
        }
        this.uids[seq - 1] = uid
      }
    } else {
      seen.uid = this.uids[seq - 1]!
    }
    const uid = seen.uid
    const flagsItem = items.get('FLAGS')
    if (flagsItem !== undefined) {
      if (!Array.isArray(flagsItem)) { this.problem('fetch-flags-syntax', `FLAGS not a list: ${JSON.stringify(flagsItem)}`); return seen }
      const flags = flagsItem.map(String)
      seen.flags = flags
      if (uid !== 0) this.fetchLog?.set(uid, flags)
      for (const f of flags) {
        this.checks++
        if (!f.startsWith('\\') && !this.keywords.has(f)) this.problem('keyword-before-flags', `${this.mailbox}: FETCH ${seq} carries ${f} before a FLAGS response named it`)
      }
      if (uid !== 0 && !this.privBusy.has(uid)) {
        const has = flags.includes(this.privKeyword)
        const model = this.priv.get(uid)
        if (model === undefined) this.priv.set(uid, has)
        else {
          this.checks++
          if (model !== has) this.problem('own-flag', `${this.mailbox}: UID ${uid} FETCH FLAGS (${flags.join(' ')}) ${has ? 'has' : 'lacks'} ${this.privKeyword}, which only this session changes, last set ${model}`)
        }
      }
    }
    const modseqItem = items.get('MODSEQ')
    if (modseqItem !== undefined) {
      const modseq = Number(Array.isArray(modseqItem) ? modseqItem[0] : modseqItem)
      seen.modseq = modseq
      if (uid !== 0) {
        this.checks++
        const last = this.modseq.get(uid) ?? 0
        if (modseq < last) this.problem('modseq-backwards', `${this.mailbox}: UID ${uid} MODSEQ ${modseq} after ${last}${seen.flags === null ? '' : ` (FLAGS ${seen.flags.join(' ')})`}`)
        else this.modseq.set(uid, modseq)
        if (seen.flags !== null) {
          const state = seen.flags.filter(f => f !== '\\Recent').sort().join(' ')
          const key = uid * 1e6 + modseq
          const prior = this.#stateAt.get(key)
          this.checks++
          if (prior !== undefined && prior !== state) this.problem('modseq-two-states', `${this.mailbox}: UID ${uid} MODSEQ ${modseq} with FLAGS (${state}) and (${prior})`)
          this.#stateAt.set(key, state)
          if (this.#stateAt.size > 50_000) this.#stateAt.clear()
        }
      }
    }
    for (const [name, value] of items) if (name.startsWith('BODY[')) seen.body = value === null ? '' : typeof value === 'string' ? value : Array.isArray(value) ? '' : value.literal
    return seen
  }

  /** The flags seen with each (UID, MODSEQ): a MODSEQ names one state. */
  #stateAt = new Map<number, string>()
}

/** A stress message: headers name its id and a checksum of its body. */
export function stressMessage (id: string, body: string): string {
  return `From: Stress <stress@example.org>\r\nTo: <box@example.com>\r\nSubject: stress ${id}\r\nMessage-ID: <${id}@stress.test>\r\n` +
    `Date: Sat, 05 Dec 2026 01:00:00 +0000\r\nX-Stress-Id: ${id}\r\nX-Stress-Sum: ${checksum(body)}\r\n\r\n${body}`
}

export function checksum (body: string): string {
  // FNV-1a over the body's bytes, as hex: enough to tell a truncated or swapped body
  let h = 0x811c9dc5
  for (let i = 0; i < body.length; i++) { h ^= body.charCodeAt(i); h = Math.imul(h, 0x01000193) >>> 0 }
  return h.toString(16).padStart(8, '0') + body.length.toString(16)
}

/** Checks a fetched message against its own headers: returns its id, or an error text. */
export function verifyMessage (raw: string): { id: string } | { error: string } {
  const split = raw.indexOf('\r\n\r\n')
  if (split === -1) return { error: `no header/body separator in ${raw.length} bytes` }
  const head = raw.slice(0, split)
  const body = raw.slice(split + 4)
  const id = /^X-Stress-Id: (\S+)$/m.exec(head)?.[1]
  const sum = /^X-Stress-Sum: (\S+)$/m.exec(head)?.[1]
  if (id === undefined || sum === undefined) return { error: `no stress headers: ${JSON.stringify(head.slice(0, 200))}` }
  if (checksum(body) !== sum) return { error: `body of ${id} does not match its checksum (${body.length} bytes)` }
  return { id }
}

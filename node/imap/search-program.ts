/**
 * The SEARCH program (RFC 3501 section 6.4.4, RFC 9051 section 6.4.4, RFC 7162 section 3.1.5): parsed
 * from the argument tokens into a tree (bounded by the parser's token limit and SEARCH_KEY_DEPTH_MAX), then evaluated
 * message by message. Keys on flags, sizes, dates and sets are decided from the index record; header keys
 * read only the header bytes, BODY and TEXT the whole message, and only when nothing cheaper decided.
 */
import { isAscii } from 'node:buffer'
import { mime } from '../../store/index.ts'
import type { MessageMeta, MessageRecord } from '../../store/index.ts'
import { inRanges, resolveSequenceSet } from './protocol/sequence.ts'
import type { SequenceRange } from './protocol/sequence.ts'
import type { Token } from './protocol/types.ts'
import { astring, MODSEQ_MAX, number, searchDate, sequenceSet } from './args.ts'
import type { SequenceArg } from './args.ts'
import { ArgumentError } from './errors.ts'
import type { SelectedMailbox } from './mailbox-view.ts'
import { emailObjectId, OBJECTID, threadObjectIdFromHeader } from './object-ids.ts'

export type Node =
  | { op: 'all' }
  /** `lower`: the flag lower-cased, set at its first test (see hasFlag). */
  | { op: 'flag', flag: string, present: boolean, lower?: string }
  | { op: 'not', node: Node }
  | { op: 'or', left: Node, right: Node }
  | { op: 'and', nodes: Node[] }
  | { op: 'set', set: SequenceArg, uid: boolean, ranges?: SequenceRange[] }
  | { op: 'size', larger: boolean, size: number }
  | { op: 'internal', cmp: Cmp, day: number }
  | { op: 'sent', cmp: Cmp, day: number }
  /** `addresses`: FROM, TO, CC, BCC, which also match the parsed addresses; `pieces`: the needle cut where an address
   * may have comments, white space or quoting the parsed form leaves out (set by prepare, see mayContainAddress). */
  | { op: 'header', field: string, value: string, addresses?: boolean, pieces?: string[] }
  | { op: 'body', value: string, headers: boolean }
  | { op: 'modseq', modseq: number }
  | { op: 'recent' }
  /** RFC 8514 section 4.4: the day the message was saved in the mailbox. */
  | { op: 'saved', cmp: Cmp, day: number }
  /** RFC 8474 section 6: EMAILID and THREADID (object-ids.ts). */
  | { op: 'emailid', id: string }
  | { op: 'threadid', id: string }

type Cmp = 'before' | 'on' | 'since'

const FLAG_KEYS: Record<string, [string, boolean]> = {
  ANSWERED: ['\\Answered', true], UNANSWERED: ['\\Answered', false],
  DELETED: ['\\Deleted', true], UNDELETED: ['\\Deleted', false],
  DRAFT: ['\\Draft', true], UNDRAFT: ['\\Draft', false],
  FLAGGED: ['\\Flagged', true], UNFLAGGED: ['\\Flagged', false],
  SEEN: ['\\Seen', true], UNSEEN: ['\\Seen', false],
}

const HEADER_KEYS: Record<string, string> = { BCC: 'bcc', CC: 'cc', FROM: 'from', SUBJECT: 'subject', TO: 'to' }
const ADDRESS_KEYS = new Set(['BCC', 'CC', 'FROM', 'TO'])

/** Where the tokens of an address (RFC 5322 section 3.4: atoms, quoted-string text, domain labels) end: a stretch of a
 * needle between these lies within one token, and a token is written in the header in one piece. */
const ADDRESS_TOKEN_BREAKS = /[\s"\\()<>@,;:.[\]]+/

const DATE_KEYS: Record<string, ['internal' | 'sent' | 'saved', Cmp]> = {
  BEFORE: ['internal', 'before'], ON: ['internal', 'on'], SINCE: ['internal', 'since'],
  SENTBEFORE: ['sent', 'before'], SENTON: ['sent', 'on'], SENTSINCE: ['sent', 'since'],
  SAVEDBEFORE: ['saved', 'before'], SAVEDON: ['saved', 'on'], SAVEDSINCE: ['saved', 'since'],
}

/**
 * Nesting of search keys: parenthesised groups, and also NOT and OR, which nest without parentheses, so the
 * parser's NESTING_DEPTH_MAX does not bound them. Parsing and evaluation recurse once per level; a SEARCH of
 * 10,000 NOTs overflowed the stack (found by test/fuzz). Clients OR one term per criterion (Thunderbird's
 * "any of" searches), so the cap is generous: 1,000 levels, a fifth of the depth measured to run safely.
 */
export const SEARCH_KEY_DEPTH_MAX = 1000

export class ProgramReader {
  readonly tokens: Token[]
  readonly depth: number
  index = 0
  usesModseq = false
  constructor (tokens: Token[], depth = 0) {
    this.tokens = tokens
    this.depth = depth
  }

  get done (): boolean {
    return this.index >= this.tokens.length
  }

  take (): Token {
    const token = this.tokens[this.index++]
    if (token === undefined) throw new ArgumentError('Incomplete search program')
    return token
  }

  text (): string {
    return astring(this.take(), 'search string')
  }

  /** The whole program: its keys are ANDed. */
  program (): Node {
    const nodes: Node[] = []
    while (!this.done) nodes.push(this.key())
    if (nodes.length === 0) throw new ArgumentError('Missing search criteria')
    return nodes.length === 1 ? nodes[0]! : { op: 'and', nodes }
  }

  key (depth = this.depth): Node {
    if (depth > SEARCH_KEY_DEPTH_MAX) throw new ArgumentError('Search program too deeply nested', 'LIMIT')
    const token = this.take()
    if (token.type === 'list') {
      if (token.items.length === 0) throw new ArgumentError('Empty search group')
      const inner = new ProgramReader(token.items, depth + 1)
      const node = inner.program()
      if (inner.usesModseq) this.usesModseq = true
      return node
    }
    if (token.type !== 'atom') throw new ArgumentError('Invalid search key')
    const name = token.value.toUpperCase()
    if (/^[\d*$]/.test(token.value)) return { op: 'set', set: sequenceSet(token), uid: false }
    const flag = FLAG_KEYS[name]
    if (flag !== undefined) return { op: 'flag', flag: flag[0], present: flag[1] }
    const header = HEADER_KEYS[name]
    if (header !== undefined) return { op: 'header', field: header, value: this.text(), addresses: ADDRESS_KEYS.has(name) }
    const date = DATE_KEYS[name]
    if (date !== undefined) return { op: date[0], cmp: date[1], day: searchDate(this.take()) }
    switch (name) {
      case 'ALL': return { op: 'all' }
      // RFC 3501 section 6.4.4: \Recent as this session has it (an IMAP4rev2 session has none, RFC 9051 dropped it)
      case 'RECENT': return { op: 'recent' }
      case 'NEW': return { op: 'and', nodes: [{ op: 'recent' }, { op: 'flag', flag: '\\Seen', present: false }] }
      case 'OLD': return { op: 'not', node: { op: 'recent' } }
      case 'KEYWORD': return { op: 'flag', flag: this.text(), present: true }
      case 'UNKEYWORD': return { op: 'flag', flag: this.text(), present: false }
      case 'NOT': return { op: 'not', node: this.key(depth + 1) }
      case 'OR': return { op: 'or', left: this.key(depth + 1), right: this.key(depth + 1) }
      case 'UID': return { op: 'set', set: sequenceSet(this.take()), uid: true }
      // RFC 8514 section 4.4: every mailbox here has save dates
      case 'SAVEDATESUPPORTED': return { op: 'all' }
      case 'EMAILID': case 'THREADID': {
        const id = astring(this.take(), 'object id')
        if (!OBJECTID.test(id)) throw new ArgumentError('Invalid object id')
        return { op: name === 'EMAILID' ? 'emailid' : 'threadid', id }
      }
      case 'LARGER': return { op: 'size', larger: true, size: number(this.take(), 'size') }
      case 'SMALLER': return { op: 'size', larger: false, size: number(this.take(), 'size') }
      case 'HEADER': return { op: 'header', field: this.text().toLowerCase(), value: this.text() }
      case 'BODY': return { op: 'body', value: this.text(), headers: false }
      case 'TEXT': return { op: 'body', value: this.text(), headers: true }
      case 'MODSEQ': {
        // RFC 7162 section 3.1.5: an optional entry name and type, ignored (we keep no per-flag modseq).
        if (this.tokens[this.index]?.type === 'string') { this.take(); this.take() }
        this.usesModseq = true
        return { op: 'modseq', modseq: number(this.take(), 'mod-sequence', MODSEQ_MAX) }
      }
      default: throw new ArgumentError(`Unknown search key ${name.slice(0, 32)}`)
    }
  }
}

/** Lazily loaded message content for one evaluation. */
export interface Content {
  /** The header block lower-cased, when deciding from the raw bytes is sound (see mayContain); else null. */
  plainHeader?: string | null
  meta: () => Promise<MessageMeta>
  /** The top-level header block (null when the message is too large to search). */
  header: () => Promise<Buffer | null>
  /** The whole message (null when too large to search). */
  raw: () => Promise<Buffer | null>
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec']

/**
 * The calendar day a Date: header names, as written: RFC 3501 section 6.4.4 compares SENT* dates
 * "disregarding time and timezone", so `Tue, 03 Feb 2026 01:00:00 +0200` is the 3rd although it is the 2nd
 * in UTC (Dovecot does the same). Falls back to Date.parse for dates that do not follow RFC 5322.
 */
export function sentDay (date: string): number | null {
  const match = /(\d{1,2})\s+([A-Za-z]{3})[a-z]*\s+(\d{2,4})/.exec(date)
  if (match !== null) {
    const month = MONTHS.indexOf(match[2]!.toLowerCase())
    let year = Number(match[3])
    // RFC 5322 section 4.3: two-digit years below 50 are 20xx, others 19xx; three digits add 1900.
    if (match[3]!.length === 2) year += year < 50 ? 2000 : 1900
    else if (match[3]!.length === 3) year += 1900
    if (month !== -1) return Date.UTC(year, month, Number(match[1]))
  }
  const ms = Date.parse(date)
  return Number.isNaN(ms) ? null : dayOf(ms)
}

function dayOf (ms: number): number {
  const d = new Date(ms)
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate())
}

function compareDay (value: number, cmp: Cmp, day: number): boolean {
  return cmp === 'before' ? value < day : cmp === 'on' ? value === day : value >= day
}

/** RFC 3501 section 6.4.4: case-insensitive substring matches (Unicode case folding of both sides). */
function contains (haystack: string, needle: string): boolean {
  return haystack.toLowerCase().includes(needle)
}

/**
 * A quick refusal before the header is parsed field by field: in a header of ASCII bytes with no RFC 2047
 * encoded word, a field's decoded value is a stretch of the block with its CR and LF removed, trimmed (see
 * mime.headerFields and decodeHeaderValue), so a needle found in a value is found in the whole block with CR
 * and LF removed, lower-cased. False only when the message cannot match; true means "parse and see". Most
 * messages of a SUBJECT or FROM search are refused here.
 */
function mayContain (header: Buffer, needle: string, content: Content, record: MessageRecord): boolean {
  if (content.plainHeader === undefined) {
    content.plainHeader = isAscii(header) && !header.includes('=?') ? header.toString('latin1').replace(/[\r\n]/g, '').toLowerCase() : null
    plainMemo.set(record.blob, record.prefix, content.plainHeader ?? NOT_PLAIN)
    if (typeof record.blob === 'string' && subjectMemo.get(record.blob, record.prefix) === undefined) {
      subjectMemo.set(record.blob, record.prefix, subjectsOf(header))
    }
  }
  return content.plainHeader === null || content.plainHeader.includes(needle)
}

/** The decoded, lower-cased values of the block's Subject fields: what evaluate matches a SUBJECT needle against. */
function subjectsOf (header: Buffer): string[] {
  const out: string[] = []
  for (const f of mime.headerFields(header, 0, header.length)) if (f.name.toLowerCase() === 'subject') out.push(mime.decodeHeaderValue(f.value).toLowerCase())
  return out
}

/**
 * The lower-cased header blocks mayContain makes, node-wide, so repeated header SEARCHes (a client's SEARCH SUBJECT
 * again and again; the bench's mixed load) skip the folding: it was 6-13 % of the node's busy time there. Keyed by
 * the body's hash and the prefix this server added, which together are the header block: never stale.
 */
export const PLAIN_HEADER_MEMO_BYTES_MAX = 16 * 1024 * 1024
const NOT_PLAIN = '\r' // never a folded block (CR and LF are taken out): marks a block mayContain cannot decide from

/** By hash, then prefix: two lookups of the record's own strings (whose hashes V8 keeps), where one key made of
 * both (hash + prefix, ~300 characters) cost 1.6 µs a lookup to build and hash against 0.08. Oldest body first out. */
class ByHeaderBlock<T> {
  readonly #max: number
  readonly #weigh: (v: T) => number
  #bytes = 0
  readonly #byBlob = new Map<string, Map<string, T>>()

  constructor (maxBytes: number, weigh: (v: T) => number) {
    this.#max = maxBytes
    this.#weigh = weigh
  }

  get (blob: string, prefix: string): T | undefined {
    return this.#byBlob.get(blob)?.get(prefix)
  }

  set (blob: string, prefix: string, value: T): void {
    const weight = this.#weigh(value) + prefix.length
    if (weight > this.#max) return
    let byPrefix = this.#byBlob.get(blob)
    if (byPrefix === undefined) this.#byBlob.set(blob, byPrefix = new Map())
    const old = byPrefix.get(prefix)
    if (old !== undefined) this.#bytes -= this.#weigh(old) + prefix.length
    byPrefix.set(prefix, value)
    this.#bytes += weight
    for (const [b, kept] of this.#byBlob) {
      if (this.#bytes <= this.#max) break
      this.#byBlob.delete(b)
      for (const [p, v] of kept) this.#bytes -= this.#weigh(v) + p.length
    }
  }
}
const plainMemo = new ByHeaderBlock<string>(PLAIN_HEADER_MEMO_BYTES_MAX, (v) => v.length)

/**
 * The Subject values of header blocks folded before (mayContain), node-wide: a SUBJECT search decides each such
 * message from its subject (tens of characters) instead of the whole folded block (hundreds with this server's trace
 * fields): that substring search was the largest item of the bench's mixed load. Dovecot keeps searched header
 * fields in its cache file the same way. Same key as the folded blocks, so never stale.
 */
export const SUBJECT_MEMO_BYTES_MAX = 4 * 1024 * 1024
const subjectMemo = new ByHeaderBlock<string[]>(SUBJECT_MEMO_BYTES_MAX, (v) => 16 + v.reduce((n, x) => n + x.length + 8, 0))

/**
 * The kept subjects of a record (subjectMemo's value; the one string when its block has one Subject field), found
 * by the record object itself. A SUBJECT search over the kept records of a mailbox looked each one up by its two long
 * strings in maps whose entries lie scattered over the heap: about 290 ns a message in the mixed load's profile
 * (session 10), most of it cache misses, against one lookup by identity here. A record's header block never
 * changes, so an entry is never stale; it goes when the record object does.
 */
const subjectsByRecord = new WeakMap<MessageRecord, string | readonly string[]>()

function keptSubjects (record: MessageRecord): string | readonly string[] | undefined {
  const known = subjectsByRecord.get(record)
  if (known !== undefined || typeof record.blob !== 'string') return known
  const subjects = subjectMemo.get(record.blob, record.prefix)
  if (subjects === undefined) return undefined
  const kept = subjects.length === 1 ? subjects[0]! : subjects
  subjectsByRecord.set(record, kept)
  return kept
}

/** RFC 3501 section 6.4.4: flags match without regard to case; the record's own spelling is tried first. */
function hasFlag (flags: readonly string[], node: { flag: string, lower?: string }): boolean {
  const lower = node.lower ??= node.flag.toLowerCase()
  for (const f of flags) if (f === node.flag || f.toLowerCase() === lower) return true
  return false
}

/** Whether the folded block of this message is kept (SEARCH then reads its header only if the block may match). */
export function foldedKnown (record: MessageRecord): boolean {
  return plainMemo.get(record.blob, record.prefix) !== undefined
}

/** The folded block of this message if it was folded before (see mayContain), without reading the header. */
function knownPlain (record: MessageRecord, content: Content): void {
  if (content.plainHeader !== undefined || typeof record.blob !== 'string') return
  const memo = plainMemo.get(record.blob, record.prefix)
  if (memo !== undefined) content.plainHeader = memo === NOT_PLAIN ? null : memo
}

/**
 * mayContain for FROM, TO, CC and BCC, whose parsed addresses are matched too: there comments, folding white space and
 * quoting are gone (`<user (c)@ (c) host>` is `user@host`), so the needle itself need not be in the header, but each
 * of its pieces between token breaks is (a token is never split by a comment or white space). False only when no
 * address can match.
 */
function mayContainAddress (header: Buffer, node: { pieces?: string[] }, content: Content, record: MessageRecord): boolean {
  if (content.plainHeader === undefined) mayContain(header, '', content, record)
  const plain = content.plainHeader
  if (plain === null || plain === undefined || node.pieces === undefined) return true
  return node.pieces.every((piece) => plain.includes(piece))
}

/** What FROM/TO/CC/BCC match besides the field text: each address as `mailbox@host`, its decoded display name, and both
 * as `name <mailbox@host>` (group names are in the field text already). */
function addressStrings (value: string): string[] {
  const out: string[] = []
  for (const address of mime.parseAddressList(value) ?? []) {
    // group markers have no host; the envelope's placeholders for a missing part are not text of the message
    if (address.mailbox === null || address.host === null || address.mailbox === mime.MISSING_MAILBOX || address.host === mime.MISSING_DOMAIN) continue
    const email = `${address.mailbox}@${address.host}`
    out.push(email)
    if (address.name !== null) {
      const name = mime.decodeHeaderValue(address.name)
      out.push(name, `${name} <${email}>`)
    }
  }
  return out
}

/**
 * Header fields (`Name: decoded value`) of the message, of every body part (its MIME header, e.g. a
 * Content-Description: those bytes are in the message's body, RFC 3501 section 6.4.4 TEXT "header or body") and of
 * every message/rfc822 in it: TEXT searches them all.
 */
function allHeaders (raw: Buffer, meta: MessageMeta): string[] {
  const values: string[] = []
  const walk = (part: mime.MimePart): void => {
    for (const f of mime.headerFields(raw, part.headerStart, part.headerEnd)) values.push(`${f.name}: ${mime.decodeHeaderValue(f.value)}`)
    if (part.parts !== undefined) for (const child of part.parts) walk(child)
    if (part.message !== undefined) walk(part.message.root)
  }
  walk(meta.root)
  return values
}

/**
 * The program's answer for one message when it can be had without reading anything (flags, numbers, sizes, dates
 * of the record, and a header criterion its kept folded block refuses), else undefined: evaluate decides then. The
 * same answer evaluate gives: SEARCH and SORT decide most messages here, without the promises an async evaluation
 * costs per message (about half of a header SEARCH's time over 400 kept blocks in the bench's mixed load).
 */
export function quickEvaluate (node: Node, record: MessageRecord, view: SelectedMailbox, saved: Set<number>, content: Content): boolean | undefined {
  switch (node.op) {
    case 'all': return true
    case 'flag': return hasFlag(record.flags, node) === node.present
    case 'not': {
      const q = quickEvaluate(node.node, record, view, saved, content)
      return q === undefined ? undefined : !q
    }
    case 'or': {
      const left = quickEvaluate(node.left, record, view, saved, content)
      if (left === true) return true
      const right = quickEvaluate(node.right, record, view, saved, content)
      if (right === true) return true
      return left === false && right === false ? false : undefined
    }
    case 'and': {
      let all = true
      for (const child of node.nodes) {
        const q = quickEvaluate(child, record, view, saved, content)
        if (q === false) return false
        if (q === undefined) all = false
      }
      return all ? true : undefined
    }
    case 'set': {
      if (node.set === '$') return saved.has(record.uid)
      node.ranges ??= resolveSequenceSet(node.set, node.uid ? (view.uids[view.uids.length - 1] ?? 0) : view.uids.length)
      return inRanges(node.ranges, node.uid ? record.uid : view.seqOf(record.uid))
    }
    case 'size': return node.larger ? record.size > node.size : record.size < node.size
    case 'internal': return compareDay(dayOf(record.internalDate), node.cmp, node.day)
    case 'modseq': return record.modseq >= node.modseq
    case 'saved': return compareDay(dayOf(record.saved ?? record.internalDate), node.cmp, node.day)
    case 'emailid': return emailObjectId(record) === node.id
    case 'recent': return view.recent.has(record.uid)
    case 'header': {
      if (node.value === '') return undefined
      // evaluate's answer for SUBJECT: some Subject field's decoded value holds the needle (the block is the same)
      if (node.field === 'subject' && node.addresses !== true) {
        const subjects = keptSubjects(record)
        if (typeof subjects === 'string') return subjects.includes(node.value)
        if (subjects !== undefined) {
          for (let i = 0; i < subjects.length; i++) if (subjects[i]!.includes(node.value)) return true
          return false
        }
      }
      knownPlain(record, content)
      const plain = content.plainHeader
      // evaluate's first test, the same condition
      if (typeof plain === 'string' && !plain.includes(node.value) && !(node.addresses === true && node.pieces !== undefined && node.pieces.every((piece) => plain.includes(piece)))) return false
      return undefined
    }
    default: return undefined
  }
}

/** Evaluates the program for one message. `needles` are lower-cased once per search (see prepare). */
export async function evaluate (node: Node, record: MessageRecord, view: SelectedMailbox, saved: Set<number>, content: Content): Promise<boolean> {
  switch (node.op) {
    case 'all': return true
    case 'flag': return hasFlag(record.flags, node) === node.present
    case 'not': return !(await evaluate(node.node, record, view, saved, content))
    case 'or': return (await evaluate(node.left, record, view, saved, content)) || evaluate(node.right, record, view, saved, content)
    case 'and': {
      for (const child of node.nodes) if (!(await evaluate(child, record, view, saved, content))) return false
      return true
    }
    case 'set': {
      if (node.set === '$') return saved.has(record.uid)
      node.ranges ??= resolveSequenceSet(node.set, node.uid ? (view.uids[view.uids.length - 1] ?? 0) : view.uids.length)
      return inRanges(node.ranges, node.uid ? record.uid : view.seqOf(record.uid))
    }
    case 'size': return node.larger ? record.size > node.size : record.size < node.size
    case 'internal': return compareDay(dayOf(record.internalDate), node.cmp, node.day)
    case 'modseq': return record.modseq >= node.modseq
    case 'saved': return compareDay(dayOf(record.saved ?? record.internalDate), node.cmp, node.day)
    case 'emailid': return emailObjectId(record) === node.id
    case 'threadid': {
      const header = await content.header()
      return header !== null && threadObjectIdFromHeader(record, header) === node.id
    }
    case 'recent': return view.recent.has(record.uid)
    case 'sent': {
      const date = (await content.meta()).envelope.date
      const day = date === null ? null : sentDay(date)
      return day !== null && compareDay(day, node.cmp, node.day)
    }
    case 'header': {
      if (node.value !== '') {
        knownPlain(record, content)
        const plain = content.plainHeader
        // refused from the memo: no header read (the same test as mayContain and mayContainAddress below)
        if (typeof plain === 'string' && !plain.includes(node.value) && !(node.addresses === true && node.pieces !== undefined && node.pieces.every((piece) => plain.includes(piece)))) return false
      }
      const header = await content.header()
      if (header === null) return false
      if (node.value !== '' && !mayContain(header, node.value, content, record) && !(node.addresses === true && mayContainAddress(header, node, content, record))) return false
      const fields = mime.headerFields(header, 0, header.length)
      return fields.some((f) => f.name.toLowerCase() === node.field && (node.value === '' || contains(mime.decodeHeaderValue(f.value), node.value) ||
        (node.addresses === true && addressStrings(f.value).some((text) => contains(text, node.value)))))
    }
    case 'body': {
      const raw = await content.raw()
      if (raw === null) return false
      const meta = await content.meta()
      if (node.headers && allHeaders(raw, meta).some((value) => contains(value, node.value))) return true
      return mime.textParts(meta).some((part) => contains(mime.decodedText(raw, part), node.value))
    }
  }
}

/** Whether evaluating the program may read whole messages (BODY, TEXT). */
export function readsBodies (node: Node): boolean {
  switch (node.op) {
    case 'body': return true
    case 'not': return readsBodies(node.node)
    case 'or': return readsBodies(node.left) || readsBodies(node.right)
    case 'and': return node.nodes.some(readsBodies)
    default: return false
  }
}

/** Whether the program looks at nothing but flags and sequence numbers or UIDs (so the UID and flag index suffices). */
export function flagsOnly (node: Node): boolean {
  switch (node.op) {
    case 'all': case 'flag': case 'set': case 'recent': return true
    case 'not': return flagsOnly(node.node)
    case 'or': return flagsOnly(node.left) && flagsOnly(node.right)
    case 'and': return node.nodes.every(flagsOnly)
    default: return false
  }
}

/** Whether evaluating the program may look at header fields (HEADER, FROM, SUBJECT...). */
export function readsHeaders (node: Node): boolean {
  switch (node.op) {
    case 'header': case 'threadid': return true
    case 'not': return readsHeaders(node.node)
    case 'or': return readsHeaders(node.left) || readsHeaders(node.right)
    case 'and': return node.nodes.some(readsHeaders)
    default: return false
  }
}

/** Lower-cases every search string once (matching lower-cases the haystack). */
export function prepare (node: Node): Node {
  switch (node.op) {
    case 'not': return { op: 'not', node: prepare(node.node) }
    case 'or': return { op: 'or', left: prepare(node.left), right: prepare(node.right) }
    case 'and': return { op: 'and', nodes: node.nodes.map(prepare) }
    case 'header': {
      const value = node.value.toLowerCase()
      const pieces = node.addresses === true ? value.split(ADDRESS_TOKEN_BREAKS).filter((piece) => piece !== '') : undefined
      return { ...node, value, ...(pieces === undefined ? {} : { pieces }) }
    }
    case 'body': return { ...node, value: node.value.toLowerCase() }
    default: return node
  }
}

/**
 * SEARCH and UID SEARCH (RFC 3501 section 6.4.4, RFC 9051 section 6.4.4) with ESEARCH return
 * options (RFC 4731), SEARCHRES `$` (RFC 5182) and MODSEQ (RFC 7162 section 3.1.5). The program
 * is parsed into a tree first (bounded by the parser's nesting and token limits), then evaluated
 * message by message; criteria on headers or text read the message only when flags, sizes and
 * dates did not already decide.
 */
import { mime } from '../../../store/index.ts'
import type { MessageMeta, MessageRecord } from '../../../store/index.ts'
import { atom, list, num, str } from '../protocol/compiler.ts'
import type { Value } from '../protocol/compiler.ts'
import { formatSequenceSet, inRanges, resolveSequenceSet } from '../protocol/sequence.ts'
import type { Token } from '../protocol/types.ts'
import { astring, keyword, listOf, MODSEQ_MAX, number, searchDate, sequenceSet } from '../args.ts'
import type { SequenceArg } from '../args.ts'
import { ArgumentError, CommandRefused } from '../errors.ts'
import type { CommandModule, Reply } from '../command.ts'
import type { Session } from '../session.ts'
import type { SelectedMailbox } from '../mailbox-view.ts'

/** A message read whole for TEXT/BODY search may not exceed this (larger ones are searched by header only). */
export const SEARCH_MESSAGE_BYTES_MAX = 32 * 1024 * 1024

type Node =
  | { op: 'all' }
  | { op: 'flag', flag: string, present: boolean }
  | { op: 'not', node: Node }
  | { op: 'or', left: Node, right: Node }
  | { op: 'and', nodes: Node[] }
  | { op: 'set', set: SequenceArg, uid: boolean }
  | { op: 'size', larger: boolean, size: number }
  | { op: 'internal', cmp: 'before' | 'on' | 'since', day: number }
  | { op: 'sent', cmp: 'before' | 'on' | 'since', day: number }
  | { op: 'header', field: string, value: string }
  | { op: 'body', value: string, headers: boolean }
  | { op: 'modseq', modseq: number }

const FLAG_KEYS: Record<string, [string, boolean]> = {
  ANSWERED: ['\\Answered', true], UNANSWERED: ['\\Answered', false],
  DELETED: ['\\Deleted', true], UNDELETED: ['\\Deleted', false],
  DRAFT: ['\\Draft', true], UNDRAFT: ['\\Draft', false],
  FLAGGED: ['\\Flagged', true], UNFLAGGED: ['\\Flagged', false],
  SEEN: ['\\Seen', true], UNSEEN: ['\\Seen', false],
}

const HEADER_KEYS: Record<string, string> = { BCC: 'bcc', CC: 'cc', FROM: 'from', SUBJECT: 'subject', TO: 'to' }

class ProgramReader {
  readonly tokens: Token[]
  index = 0
  usesModseq = false
  constructor (tokens: Token[]) {
    this.tokens = tokens
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

  key (): Node {
    const token = this.take()
    if (token.type === 'list') {
      if (token.items.length === 0) throw new ArgumentError('Empty search group')
      const inner = new ProgramReader(token.items)
      const nodes: Node[] = []
      while (!inner.done) nodes.push(inner.key())
      if (inner.usesModseq) this.usesModseq = true
      return nodes.length === 1 ? nodes[0]! : { op: 'and', nodes }
    }
    if (token.type !== 'atom') throw new ArgumentError('Invalid search key')
    const name = token.value.toUpperCase()
    if (/^[\d*$]/.test(token.value)) return { op: 'set', set: sequenceSet(token), uid: false }
    const flag = FLAG_KEYS[name]
    if (flag !== undefined) return { op: 'flag', flag: flag[0], present: flag[1] }
    const header = HEADER_KEYS[name]
    if (header !== undefined) return { op: 'header', field: header, value: this.text() }
    switch (name) {
      case 'ALL': return { op: 'all' }
      // \Recent is never set (RFC 9051 removed it): NEW and RECENT match nothing, OLD everything.
      case 'NEW': case 'RECENT': return { op: 'not', node: { op: 'all' } }
      case 'OLD': return { op: 'all' }
      case 'KEYWORD': return { op: 'flag', flag: this.text(), present: true }
      case 'UNKEYWORD': return { op: 'flag', flag: this.text(), present: false }
      case 'NOT': return { op: 'not', node: this.key() }
      case 'OR': return { op: 'or', left: this.key(), right: this.key() }
      case 'UID': return { op: 'set', set: sequenceSet(this.take()), uid: true }
      case 'LARGER': return { op: 'size', larger: true, size: number(this.take(), 'size') }
      case 'SMALLER': return { op: 'size', larger: false, size: number(this.take(), 'size') }
      case 'BEFORE': return { op: 'internal', cmp: 'before', day: searchDate(this.take()) }
      case 'ON': return { op: 'internal', cmp: 'on', day: searchDate(this.take()) }
      case 'SINCE': return { op: 'internal', cmp: 'since', day: searchDate(this.take()) }
      case 'SENTBEFORE': return { op: 'sent', cmp: 'before', day: searchDate(this.take()) }
      case 'SENTON': return { op: 'sent', cmp: 'on', day: searchDate(this.take()) }
      case 'SENTSINCE': return { op: 'sent', cmp: 'since', day: searchDate(this.take()) }
      case 'HEADER': return { op: 'header', field: this.text().toLowerCase(), value: this.text() }
      case 'BODY': return { op: 'body', value: this.text(), headers: false }
      case 'TEXT': return { op: 'body', value: this.text(), headers: true }
      case 'MODSEQ': {
        // RFC 7162 section 3.1.5: optional entry name and type, ignored (we keep no per-flag modseq).
        if (this.tokens[this.index]?.type === 'string') { this.take(); this.take() }
        this.usesModseq = true
        return { op: 'modseq', modseq: number(this.take(), 'mod-sequence', MODSEQ_MAX) }
      }
      default: throw new ArgumentError(`Unknown search key ${name.slice(0, 32)}`)
    }
  }
}

/** Lazily loaded message content for one evaluation. */
interface Content {
  meta: () => Promise<MessageMeta>
  raw: () => Promise<Buffer | null>
}

function dayOf (ms: number): number {
  const d = new Date(ms)
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate())
}

function compareDay (ms: number, cmp: 'before' | 'on' | 'since', day: number): boolean {
  const value = dayOf(ms)
  return cmp === 'before' ? value < day : cmp === 'on' ? value === day : value >= day
}

/** RFC 3501 section 6.4.4: string matches are case-insensitive substring matches. */
function contains (haystack: string, needle: string): boolean {
  return haystack.toLowerCase().includes(needle.toLowerCase())
}

/** Sets resolved once per search, not once per message. */
const resolvedSets = new WeakMap<Node, ReturnType<typeof resolveSequenceSet>>()

async function evaluate (node: Node, record: MessageRecord, view: SelectedMailbox, content: Content): Promise<boolean> {
  switch (node.op) {
    case 'all': return true
    case 'flag': return record.flags.some((f) => f.toLowerCase() === node.flag.toLowerCase()) === node.present
    case 'not': return !(await evaluate(node.node, record, view, content))
    case 'or': return (await evaluate(node.left, record, view, content)) || evaluate(node.right, record, view, content)
    case 'and': {
      for (const child of node.nodes) if (!(await evaluate(child, record, view, content))) return false
      return true
    }
    case 'set': {
      if (node.set === '$') return view.searchResult.includes(record.uid)
      let ranges = resolvedSets.get(node)
      if (ranges === undefined) {
        const max = node.uid ? (view.uids[view.uids.length - 1] ?? 0) : view.uids.length
        ranges = resolveSequenceSet(node.set, max)
        resolvedSets.set(node, ranges)
      }
      return inRanges(ranges, node.uid ? record.uid : view.seqOf(record.uid))
    }
    case 'size': return node.larger ? record.size > node.size : record.size < node.size
    case 'internal': return compareDay(record.internalDate, node.cmp, node.day)
    case 'modseq': return record.modseq >= node.modseq
    case 'sent': {
      const date = (await content.meta()).envelope.date
      const ms = date === null ? NaN : Date.parse(date)
      return Number.isNaN(ms) ? false : compareDay(ms, node.cmp, node.day)
    }
    case 'header': {
      const raw = await content.raw()
      const meta = await content.meta()
      if (raw === null) return false
      const fields = mime.headerFields(raw, meta.root.headerStart, meta.root.headerEnd)
      return fields.some((f) => f.name.toLowerCase() === node.field && (node.value === '' || contains(mime.decodeHeaderValue(f.value), node.value)))
    }
    case 'body': {
      const raw = await content.raw()
      if (raw === null) return false
      const meta = await content.meta()
      if (node.headers) {
        const header = mime.headerFields(raw, meta.root.headerStart, meta.root.headerEnd)
        if (header.some((f) => contains(mime.decodeHeaderValue(f.value), node.value))) return true
      }
      return mime.textParts(meta).some((part) => contains(mime.decodedText(raw, part), node.value))
    }
  }
}

const RETURN_OPTIONS = new Set(['MIN', 'MAX', 'ALL', 'COUNT', 'SAVE'])

export const search: CommandModule = {
  name: 'SEARCH',
  syntax: 'SEARCH [RETURN (options)] [CHARSET charset] criteria...',
  states: ['selected'],
  args: { min: 1, max: 10_000 },
  uid: true,
  expungeAllowed: false,
  async run (session, { tag, args, uid }): Promise<Reply | undefined> {
    if (session.state.kind !== 'selected') return undefined
    const view = session.state.mailbox
    const user = session.state.user
    let index = 0
    let returns: Set<string> | null = null
    if (args[0]?.type === 'atom' && args[0].value.toUpperCase() === 'RETURN') {
      returns = new Set(listOf(args[1], 'return options').items.map((t) => keyword(t, 'return option')))
      for (const option of returns) if (!RETURN_OPTIONS.has(option)) throw new ArgumentError(`Unknown return option ${option}`)
      // RFC 4731 section 3.1: RETURN () means RETURN (ALL).
      if (returns.size === 0) returns.add('ALL')
      index = 2
    }
    if (args[index]?.type === 'atom' && (args[index] as { value: string }).value.toUpperCase() === 'CHARSET') {
      const charset = astring(args[index + 1], 'charset').toUpperCase()
      // RFC 9051 section 6.4.4: US-ASCII and UTF-8 must be supported; we search decoded Unicode text.
      if (charset !== 'UTF-8' && charset !== 'US-ASCII') throw new CommandRefused('Unsupported charset', 'BADCHARSET')
      index += 2
    }
    const reader = new ProgramReader(args.slice(index))
    const nodes: Node[] = []
    while (!reader.done) nodes.push(reader.key())
    if (nodes.length === 0) throw new ArgumentError('Missing search criteria')
    if (reader.usesModseq) session.enabled.add('CONDSTORE')
    const program: Node = nodes.length === 1 ? nodes[0]! : { op: 'and', nodes }
    const store = session.components.store
    const known = new Set(view.uids)
    const records = (await store.listMessages(user, view.id)).filter((r) => known.has(r.uid))
    const matched: MessageRecord[] = []
    for (const record of records) {
      let meta: MessageMeta | null = null
      let raw: Buffer | null | undefined
      const content: Content = {
        meta: async () => (meta ??= await store.getMeta(record)),
        raw: async () => {
          if (raw === undefined) raw = record.size > SEARCH_MESSAGE_BYTES_MAX ? null : await store.readMessage(record)
          return raw
        },
      }
      if (await evaluate(program, record, view, content)) matched.push(record)
    }
    const numbers = matched.map((r) => uid ? r.uid : view.seqOf(r.uid))
    const highest = reader.usesModseq && matched.length > 0 ? matched.reduce((m, r) => Math.max(m, r.modseq), 0) : null
    // RFC 9051 section 7.3.4: an IMAP4rev2 client gets ESEARCH even without RETURN.
    if (returns === null && session.enabled.has('IMAP4REV2')) returns = new Set(['ALL'])
    if (returns === null) {
      const values: Value[] = [atom('SEARCH'), ...numbers.map((n) => num(n))]
      // RFC 7162 section 3.1.5: a MODSEQ search reports the highest mod-sequence of the result.
      if (highest !== null) values.push(list([atom('MODSEQ'), num(highest)]))
      await session.send(values)
      return undefined
    }
    if (returns.has('SAVE')) view.searchResult = matched.map((r) => r.uid)
    const onlySave = returns.size === 1 && returns.has('SAVE')
    if (onlySave) return undefined
    const values: Value[] = [atom('ESEARCH'), list([atom('TAG'), str(tag)])]
    if (uid) values.push(atom('UID'))
    if (numbers.length > 0) {
      if (returns.has('MIN')) values.push(atom('MIN'), num(numbers.reduce((m, n) => Math.min(m, n))))
      if (returns.has('MAX')) values.push(atom('MAX'), num(numbers.reduce((m, n) => Math.max(m, n))))
      if (returns.has('ALL')) values.push(atom('ALL'), atom(formatSequenceSet(numbers)))
    }
    if (returns.has('COUNT')) values.push(atom('COUNT'), num(numbers.length))
    if (highest !== null) values.push(atom('MODSEQ'), num(highest))
    await session.send(values)
    return undefined
  },
}

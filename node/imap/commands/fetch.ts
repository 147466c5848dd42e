/**
 * FETCH and UID FETCH (RFC 3501 section 6.4.5, RFC 9051 section 6.4.5): every data item,
 * BODY[section]<partial> and BINARY (RFC 3516) from the cached MIME structure, CHANGEDSINCE and
 * VANISHED (RFC 7162 sections 3.1.4.1, 3.2.6), PARTIAL (RFC 9394: a page of the messages the set names). Bodies go out as stream literals straight from
 * the blob store; only HEADER.FIELDS and BINARY (which transform bytes) read a part into memory.
 */
import { mime } from '../../../store/index.ts'
import type { MessageMeta, MessageRecord } from '../../../store/index.ts'
import { atom, list, num, str } from '../protocol/compiler.ts'
import type { StreamLiteral, Value } from '../protocol/compiler.ts'
import { parseSection } from '../protocol/section.ts'
import type { SectionSpec } from '../protocol/section.ts'
import { formatSequenceSet, inRanges, resolveSequenceSet } from '../protocol/sequence.ts'
import type { Token } from '../protocol/types.ts'
import { formatDateTime, keyword, listOf, MODSEQ_MAX, number, partialRange, partialSlice, sequenceSet } from '../args.ts'
import type { PartialPositions } from '../args.ts'
import { ArgumentError, CommandRefused } from '../errors.ts'
import { envelopeValue, structureValue } from '../render.ts'
import { readRecords, RECORD_BATCH_MAX, recordBatches } from '../records.ts'
import type { CommandModule, Reply } from '../command.ts'
import type { Session } from '../session.ts'
import { emailObjectId, threadObjectIdFromKeys } from '../object-ids.ts'
import { cachedPreview, makePreview } from '../preview.ts'
import { sortKeyCacheFor } from '../sort-keys.ts'
import { FieldsMemo, fieldsKey } from '../fields-memo.ts'

/** A part read into memory to transform it (HEADER.FIELDS, BINARY) may not exceed this. */
export const TRANSFORM_BYTES_MAX = 64 * 1024 * 1024

/** Items in one FETCH (bounds the per-message work a single command can ask for). */
export const FETCH_ITEMS_MAX = 64

/**
 * A whole message up to this size is read into memory and written with its response line in one socket write;
 * larger ones are streamed in chunks. Most mail is far smaller (the benchmark's is 10 KB), and reading it whole
 * costs one file read where a stream costs one per chunk plus a write each.
 */
export const INLINE_LITERAL_BYTES_MAX = 128 * 1024

/**
 * Messages whose responses are prepared (records, structure, bodies read) while earlier ones are written, so
 * the reads wait on the disk and the thread pool together instead of one after the other; refilled half a
 * window at a time, so that the store merges the reads of neighbouring bodies. Bounds what one FETCH holds: at
 * most this many inline literals, FETCH_READ_AHEAD × INLINE_LITERAL_BYTES_MAX = 4 MiB.
 */
export const FETCH_READ_AHEAD = 32

/** PREVIEW (LAZY) makes a preview not yet cached for a message up to this size, and answers NIL above it. */
export const PREVIEW_LAZY_BYTES_MAX = 256 * 1024

type Simple = 'UID' | 'FLAGS' | 'INTERNALDATE' | 'RFC822.SIZE' | 'ENVELOPE' | 'BODYSTRUCTURE' | 'BODY' | 'MODSEQ' | 'RFC822' | 'RFC822.HEADER' | 'RFC822.TEXT' |
  'EMAILID' | 'THREADID' | 'SAVEDATE'

/** One message's FETCH response, and the flags it carries (null when it carries none). */
interface Prepared {
  values: Value[]
  flags: readonly string[] | null
}

type FetchItem =
  | { kind: Simple }
  | { kind: 'section', binary: boolean, peek: boolean, section: SectionSpec }
  | { kind: 'BINARY.SIZE', section: SectionSpec }
  | { kind: 'PREVIEW', lazy: boolean }

const SIMPLE = new Set<string>(['UID', 'FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE', 'BODYSTRUCTURE', 'BODY', 'MODSEQ', 'RFC822', 'RFC822.HEADER', 'RFC822.TEXT',
  // RFC 8474 section 5 (object-ids.ts), RFC 8514 section 4.3
  'EMAILID', 'THREADID', 'SAVEDATE'])
const MACROS: Record<string, Simple[]> = {
  ALL: ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE'],
  FAST: ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE'],
  FULL: ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE', 'BODY'],
}

function parseItem (token: Token): FetchItem {
  if (token.type !== 'atom') throw new ArgumentError('Invalid fetch item')
  const name = token.value.toUpperCase()
  if (name === 'PREVIEW' && token.section === undefined) return { kind: 'PREVIEW', lazy: false }
  if (token.section === undefined) {
    if (!SIMPLE.has(name)) throw new ArgumentError(`Unknown fetch item ${name.slice(0, 32)}`)
    return { kind: name as Simple }
  }
  const binary = name.startsWith('BINARY')
  const section = parseSection(token.section, token.partial, binary)
  if (typeof section === 'string') throw new ArgumentError(section)
  if (name === 'BINARY.SIZE') {
    if (token.partial !== undefined) throw new ArgumentError('BINARY.SIZE takes no partial')
    return { kind: 'BINARY.SIZE', section }
  }
  return { kind: 'section', binary, peek: name.endsWith('.PEEK'), section }
}

function parseItems (token: Token | undefined): FetchItem[] {
  if (token === undefined) throw new ArgumentError('Missing fetch items')
  if (token.type === 'atom' && token.section === undefined && MACROS[token.value.toUpperCase()] !== undefined) {
    return MACROS[token.value.toUpperCase()]!.map((kind) => ({ kind }))
  }
  const tokens = token.type === 'list' ? token.items : [token]
  if (tokens.length === 0) throw new ArgumentError('Invalid fetch item list')
  if (tokens.length > FETCH_ITEMS_MAX) throw new ArgumentError('Too many fetch items', 'LIMIT')
  const items: FetchItem[] = []
  for (let i = 0; i < tokens.length; i++) {
    const item = parseItem(tokens[i]!)
    // RFC 8970 section 4: PREVIEW [SP "(" preview-mod *(SP preview-mod) ")"], the one modifier being LAZY
    if (item.kind === 'PREVIEW' && tokens[i + 1]?.type === 'list') {
      const mods = listOf(tokens[++i], 'preview modifiers').items
      if (mods.length === 0) throw new ArgumentError('Empty PREVIEW modifiers')
      for (const mod of mods) if (keyword(mod, 'preview modifier') !== 'LAZY') throw new ArgumentError('Unknown PREVIEW modifier')
      item.lazy = true
    }
    items.push(item)
  }
  return items
}

interface Modifiers {
  changedSince: number | null
  vanished: boolean
  /** RFC 9394: the page of the messages the set names (after CHANGEDSINCE) that FETCH answers for. */
  partial: PartialPositions | null
}

/** RFC 4466 fetch-modifiers: `(` fetch-modifier *(SP fetch-modifier) `)`, each at most once. */
function parseModifiers (token: Token | undefined): Modifiers {
  const modifiers: Modifiers = { changedSince: null, vanished: false, partial: null }
  if (token === undefined) return modifiers
  const items = listOf(token, 'fetch modifiers').items
  if (items.length === 0) throw new ArgumentError('Empty fetch modifier list')
  const seen = new Set<string>()
  for (let i = 0; i < items.length; i++) {
    const name = keyword(items[i], 'fetch modifier')
    if (seen.has(name)) throw new ArgumentError(`Fetch modifier ${name} given twice`)
    seen.add(name)
    if (name === 'CHANGEDSINCE') modifiers.changedSince = number(items[++i], 'mod-sequence', MODSEQ_MAX)
    else if (name === 'VANISHED') modifiers.vanished = true
    else if (name === 'PARTIAL') modifiers.partial = partialRange(items[++i])
    else throw new ArgumentError(`Unknown fetch modifier ${name.slice(0, 32)}`)
  }
  return modifiers
}

/**
 * RFC 9394 PARTIAL: the UIDs of the positions the range names among `uids` (the messages the set names, ascending,
 * i.e. in sequence number order), counted after CHANGEDSINCE has dropped the unchanged ones. Without CHANGEDSINCE
 * nothing is read; with it, records are read from the range's end of the set (from the start for n:m, from the
 * end for -n:-m) until the range is covered, so the first or last page of a large mailbox reads little.
 */
async function partialUids (session: Session, user: string, mailboxId: string, uids: number[], partial: PartialPositions, changedSince: number | null): Promise<number[]> {
  if (changedSince === null) {
    const [start, end] = partialSlice(partial, uids.length)
    return uids.slice(start, end)
  }
  const store = session.components.store
  const wanted = Math.abs(partial.last)
  const changed: number[] = []
  if (partial.first > 0) {
    for (let i = 0; i < uids.length && changed.length < wanted; i += RECORD_BATCH_MAX) {
      for (const r of await readRecords(store, user, mailboxId, uids.slice(i, i + RECORD_BATCH_MAX))) if (r.modseq > changedSince) changed.push(r.uid)
    }
    // positions from the start: what was read is a prefix of the changed messages, enough to hold the range
    const [start, end] = partialSlice(partial, changed.length)
    return changed.slice(start, end)
  }
  const tail: number[][] = []
  let count = 0
  for (let end = uids.length; end > 0 && count < wanted; end -= RECORD_BATCH_MAX) {
    const batch = (await readRecords(store, user, mailboxId, uids.slice(Math.max(0, end - RECORD_BATCH_MAX), end))).filter((r) => r.modseq > changedSince).map((r) => r.uid)
    tail.unshift(batch)
    count += batch.length
  }
  // positions from the end: what was read is a suffix of the changed messages, enough to hold the range
  const suffix = tail.flat()
  const [start, end] = partialSlice(partial, suffix.length)
  return suffix.slice(start, end)
}

/** Collects a byte range of a message (for transformations only; bounded by the caller). */
async function readRange (session: Session, record: MessageRecord, start: number, end: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of session.components.store.streamMessage(record, { start, end })) chunks.push(chunk)
  return Buffer.concat(chunks)
}

/** The byte range a BODY section names in the whole message, or null when it names nothing. */
export function sectionRange (meta: MessageMeta, record: MessageRecord, spec: SectionSpec): { start: number, end: number, fields?: mime.MimePart } | null {
  const part = spec.part.length === 0 ? meta.root : mime.findPart(meta, spec.part)
  if (part === null) return null
  if (spec.text === undefined) {
    return spec.part.length === 0 ? { start: 0, end: record.size } : { start: part.bodyStart, end: part.bodyEnd }
  }
  if (spec.text === 'MIME') return { start: part.headerStart, end: part.headerEnd }
  // HEADER and TEXT of a nested part refer to its encapsulated message (RFC 3501 section 6.4.5).
  const message = spec.part.length === 0 ? meta.root : part.message?.root
  if (message === undefined) return null
  if (spec.text === 'TEXT') return { start: message.bodyStart, end: spec.part.length === 0 ? record.size : message.bodyEnd }
  return { start: message.headerStart, end: message.headerEnd }
}

/** HEADER.FIELDS (.NOT) answers, node-wide (see fields-memo.ts). */
const fieldsMemo = new FieldsMemo()

/**
 * The last HEADER.FIELDS answer given for a record object (a client asks for one field list, again and again), found
 * by identity before the memo's lookups by the record's long strings, whose scattered maps cost cache misses per
 * message (session 10's mixed-load profile). At most one answer per record object, freed with it: the records a
 * FETCH sees are the store's kept ones (store/record-cache.ts, bounded) or short-lived.
 */
const lastFields = new WeakMap<MessageRecord, { key: string, bytes: Buffer }>()

/** The memo key of a section's field list, made once per parsed section (a FETCH asks it for every message). */
const sectionKeys = new WeakMap<SectionSpec, string>()
function keyOf (spec: SectionSpec): string {
  let key = sectionKeys.get(spec)
  if (key === undefined) sectionKeys.set(spec, key = fieldsKey(spec.fields ?? [], spec.text === 'HEADER.FIELDS.NOT'))
  return key
}

/** HEADER.FIELDS (.NOT): the selected fields as written, then the blank line. */
export function filterFields (header: Buffer, names: string[], not: boolean): Buffer {
  const wanted = new Set(names.map((n) => n.toLowerCase()))
  const out: Buffer[] = []
  for (const field of mime.headerFieldSpans(header, 0, header.length)) {
    if (wanted.has(field.name.toLowerCase()) !== not) out.push(header.subarray(field.start, field.end))
  }
  out.push(Buffer.from('\r\n'))
  return Buffer.concat(out)
}

/** Applies <offset.length>: returns the sub-range and the label suffix `<offset>`. */
function applyPartial (size: number, spec: SectionSpec): { start: number, end: number, suffix: string } {
  if (spec.partial === undefined) return { start: 0, end: size, suffix: '' }
  const start = Math.min(spec.partial.offset, size)
  const end = spec.partial.length === undefined ? size : Math.min(size, start + spec.partial.length)
  return { start, end, suffix: `<${spec.partial.offset}>` }
}

function bufferValue (bytes: Buffer, binary: boolean): Value {
  if (binary && bytes.includes(0)) return { type: 'literal', value: bytes, binary: true }
  return { type: 'literal', value: bytes }
}

/** The message's structure, read when an item first needs it. */
type MetaOf = () => Promise<MessageMeta>

async function sectionValue (session: Session, record: MessageRecord, metaOf: MetaOf, item: Extract<FetchItem, { kind: 'section' }>): Promise<Value[]> {
  const spec = item.section
  const prefix = item.binary ? 'BINARY' : 'BODY'
  if (isWhole(spec)) {
    // BODY[] is the whole message; RFC 3516 section 4.2: so is BINARY[], which has no transfer encoding of its own.
    const cut = applyPartial(record.size, spec)
    return [atom(`${prefix}[]${cut.suffix}`), await wholeValue(session, record, cut.start, cut.end, item.binary)]
  }
  const label = `${prefix}[${spec.label}]`
  const headerFields = spec.text === 'HEADER.FIELDS' || spec.text === 'HEADER.FIELDS.NOT'
  if (!item.binary && spec.part.length === 0 && (spec.text === 'HEADER' || headerFields)) {
    // The message's own header: the store keeps a copy apart, so neither the structure nor the message is read.
    // The fields picked from it are kept too (fields-memo.ts): the same header block always gives the same answer.
    const memoKey = headerFields && typeof record.blob === 'string' && typeof record.prefix === 'string' ? keyOf(spec) : null
    let bytes: Buffer | undefined
    if (memoKey !== null) {
      const last = lastFields.get(record)
      if (last !== undefined && last.key === memoKey) bytes = last.bytes
      else {
        bytes = fieldsMemo.get(record.blob, record.prefix, memoKey)
        if (bytes !== undefined) lastFields.set(record, { key: memoKey, bytes })
      }
    }
    if (bytes === undefined) {
      const header = await session.components.store.readHeader?.(record) ?? null
      if (header !== null) {
        bytes = headerFields ? filterFields(header, spec.fields ?? [], spec.text === 'HEADER.FIELDS.NOT') : header
        if (memoKey !== null) {
          fieldsMemo.set(record.blob, record.prefix, memoKey, bytes)
          lastFields.set(record, { key: memoKey, bytes })
        }
      }
    }
    if (bytes !== undefined) {
      const cut = applyPartial(bytes.length, spec)
      return [atom(label + cut.suffix), bufferValue(bytes.subarray(cut.start, cut.end), false)]
    }
  }
  const meta = await metaOf()
  const range = sectionRange(meta, record, spec)
  if (item.binary) {
    const part = mime.findPart(meta, spec.part)
    if (part === null || part.parts !== undefined) return [atom(`${prefix}[${spec.label}]`), null]
    if (!['7bit', '8bit', 'binary', 'base64', 'quoted-printable'].includes(part.encoding)) {
      throw new CommandRefused('Unknown Content-Transfer-Encoding', 'UNKNOWN-CTE')
    }
    if (part.bodyEnd - part.bodyStart > TRANSFORM_BYTES_MAX) throw new CommandRefused('Part too large to decode', 'LIMIT')
    const decoded = mime.decodeTransfer(await readRange(session, record, part.bodyStart, part.bodyEnd), part.encoding)
    const cut = applyPartial(decoded.length, spec)
    return [atom(`${prefix}[${spec.label}]${cut.suffix}`), bufferValue(decoded.subarray(cut.start, cut.end), true)]
  }
  if (range === null) return [atom(label), str('')]
  if (headerFields) {
    if (range.end - range.start > TRANSFORM_BYTES_MAX) throw new CommandRefused('Header too large', 'LIMIT')
    const header = await readRange(session, record, range.start, range.end)
    const selected = filterFields(header, spec.fields ?? [], spec.text === 'HEADER.FIELDS.NOT')
    const cut = applyPartial(selected.length, spec)
    return [atom(label + cut.suffix), bufferValue(selected.subarray(cut.start, cut.end), false)]
  }
  const cut = applyPartial(range.end - range.start, spec)
  return [atom(label + cut.suffix), streamOf(session, record, range.start + cut.start, range.start + cut.end)]
}

function streamOf (session: Session, record: MessageRecord, start: number, end: number): StreamLiteral {
  return { type: 'stream', size: end - start, binary: false, open: () => session.components.store.streamMessage(record, { start, end }) }
}

/** `[]` with no HEADER/TEXT/MIME: the whole message, whose bytes need no structure to find. */
function isWhole (spec: SectionSpec): boolean {
  return spec.part.length === 0 && spec.text === undefined
}

/** A byte range of the whole message: read now (one file read) when the message is small, else a stream. */
async function wholeValue (session: Session, record: MessageRecord, start: number, end: number, binary: boolean): Promise<Value> {
  if (record.size > INLINE_LITERAL_BYTES_MAX) return { ...streamOf(session, record, start, end), binary }
  const bytes = await session.components.store.readMessage(record)
  if (bytes.length !== record.size) throw new Error(`message ${record.uid}: ${bytes.length} bytes stored, ${record.size} recorded`)
  return { type: 'literal', value: bytes.subarray(start, end), binary }
}

/** Whether an item reads the body and so sets \Seen (RFC 3501 section 6.4.5). */
function setsSeen (item: FetchItem): boolean {
  return (item.kind === 'section' && !item.peek) || item.kind === 'RFC822' || item.kind === 'RFC822.TEXT'
}

/** Items that always need the structure: it is then read at once, alongside the other messages' (one multi-get). */
function needsMeta (item: FetchItem): boolean {
  return (item.kind === 'PREVIEW' && !item.lazy) || item.kind === 'ENVELOPE' || item.kind === 'BODYSTRUCTURE' || item.kind === 'BODY' || item.kind === 'RFC822.HEADER' || item.kind === 'RFC822.TEXT' ||
    (item.kind === 'BINARY.SIZE' && item.section.part.length > 0)
}

/** Sets \\Seen on the unseen records (RFC 3501 section 6.4.5), updating them in place; returns the UIDs changed. */
async function markSeen (session: Session, user: string, records: MessageRecord[]): Promise<Set<number>> {
  if (session.state.kind !== 'selected') return new Set()
  const view = session.state.mailbox
  const unseen = records.filter((r) => !r.flags.includes('\\Seen')).map((r) => r.uid)
  if (unseen.length === 0) return new Set()
  const result = await session.components.store.storeFlags(user, view.id, unseen, 'add', ['\\Seen'])
  const updated = new Map(result.changed.map((c) => [c.uid, c]))
  for (const change of result.changed) view.noteOwnChange(change.modseq)
  records.forEach((r, index) => {
    const change = updated.get(r.uid)
    if (change !== undefined) records[index] = { ...r, flags: change.flags, modseq: change.modseq }
  })
  return new Set(updated.keys())
}

interface ItemContext {
  uid: boolean
  changedSince: number | null
  /** This FETCH set \\Seen on the message: FLAGS is reported with it. */
  seen: boolean
  /** THREADID of the messages of this batch (read once per batch from the thread keys), when asked for. */
  threadIds: Map<number, string> | null
}

/** The `(name value ...)` list of one message's FETCH response. */
async function messageItems (session: Session, record: MessageRecord, metaOf: MetaOf, items: FetchItem[], context: ItemContext): Promise<Value[]> {
  const values: Value[] = []
  const emitted = new Set<string>()
  const add = (name: string, value: Value): void => {
    if (emitted.has(name)) return
    emitted.add(name)
    values.push(atom(name), value)
  }
  // RFC 3501 section 6.4.8: UID FETCH always returns UID.
  if (context.uid) add('UID', num(record.uid))
  for (const item of items) {
    switch (item.kind) {
      case 'UID': add('UID', num(record.uid)); break
      case 'FLAGS': add('FLAGS', flagsValue(session, record)); break
      case 'INTERNALDATE': add('INTERNALDATE', str(formatDateTime(record.internalDate))); break
      case 'RFC822.SIZE': add('RFC822.SIZE', num(record.size)); break
      case 'MODSEQ': add('MODSEQ', list([num(record.modseq)])); break
      case 'ENVELOPE': add('ENVELOPE', envelopeValue((await metaOf()).envelope)); break
      case 'BODYSTRUCTURE': add('BODYSTRUCTURE', structureValue((await metaOf()).root, true)); break
      case 'BODY': add('BODY', structureValue((await metaOf()).root, false)); break
      case 'RFC822': add('RFC822', await wholeValue(session, record, 0, record.size, false)); break
      case 'RFC822.HEADER': { const root = (await metaOf()).root; add('RFC822.HEADER', streamOf(session, record, root.headerStart, root.headerEnd)); break }
      case 'RFC822.TEXT': add('RFC822.TEXT', streamOf(session, record, (await metaOf()).root.bodyStart, record.size)); break
      case 'BINARY.SIZE': add(`BINARY.SIZE[${item.section.label}]`, await binarySize(session, record, metaOf, item.section)); break
      case 'EMAILID': add('EMAILID', list([atom(emailObjectId(record))])); break
      case 'THREADID': add('THREADID', list([atom(context.threadIds?.get(record.uid) ?? (await threadIds(session, [record])).get(record.uid)!)])); break
      // RFC 8514 section 4.3: the date the message was saved in this mailbox (a record older than the field: its
      // internal date, the time it was delivered or appended here unless APPEND gave another)
      case 'SAVEDATE': add('SAVEDATE', str(formatDateTime(record.saved ?? record.internalDate))); break
      case 'PREVIEW': {
        // RFC 8970 section 3.2: LAZY lets the server answer NIL when the preview is not at hand; ours is when it is
        // cached or the message is small enough to make it now
        const cached = cachedPreview(record)
        const text = cached ?? (item.lazy && record.size > PREVIEW_LAZY_BYTES_MAX ? null : await makePreview(session.components.store, record, await metaOf()))
        add('PREVIEW', text === null ? null : str(text))
        break
      }
      case 'section': {
        const [name, value] = await sectionValue(session, record, metaOf, item)
        add((name as { value: string }).value, value!)
        break
      }
    }
  }
  // Flags changed by this FETCH are reported with it (RFC 3501 section 6.4.5).
  if (context.seen) add('FLAGS', flagsValue(session, record))
  // RFC 7162 section 3.1.4: with CONDSTORE on, flags are reported with their mod-sequence.
  if (session.condstore && (context.changedSince !== null || emitted.has('FLAGS'))) add('MODSEQ', list([num(record.modseq)]))
  return values
}

/** THREADIDs from the messages' thread keys, kept per mailbox on the node with the sort keys (sort-keys.ts). */
async function threadIds (session: Session, records: MessageRecord[]): Promise<Map<number, string>> {
  if (session.state.kind !== 'selected') throw new Error('THREADID outside the selected state')
  const view = session.state.mailbox
  const keys = await sortKeyCacheFor(session.components.store).keys(session.state.user, view.id, view.uidValidity, records.map((r) => r.uid))
  return new Map(records.map((r, i) => [r.uid, threadObjectIdFromKeys(r, keys[i]!)]))
}

/** FLAGS as this session sees them: \\Recent added where the message is recent here (RFC 3501 section 2.3.2). */
function flagsValue (session: Session, record: MessageRecord): Value {
  const flags = session.state.kind === 'selected' ? session.state.mailbox.flagsOf(record.uid, record.flags, session.reportsRecent, record.modseq) : record.flags
  return list(flags.map(atom))
}

async function binarySize (session: Session, record: MessageRecord, metaOf: MetaOf, section: SectionSpec): Promise<Value> {
  // RFC 3516 section 4.2: the empty section is the whole message, which has no transfer encoding.
  if (section.part.length === 0) return num(record.size)
  const meta = await metaOf()
  const part = mime.findPart(meta, section.part)
  if (part === null || part.parts !== undefined) return null
  if (part.encoding !== 'base64' && part.encoding !== 'quoted-printable') return num(part.size)
  if (part.size > TRANSFORM_BYTES_MAX) throw new CommandRefused('Part too large to decode', 'LIMIT')
  return num(mime.decodeTransfer(await readRange(session, record, part.bodyStart, part.bodyEnd), part.encoding).length)
}

export const fetch: CommandModule = {
  name: 'FETCH',
  syntax: 'FETCH sequence-set items [(CHANGEDSINCE modseq [VANISHED] [PARTIAL range])]',
  states: ['selected'],
  args: { min: 2, max: 3 },
  uid: true,
  expungeAllowed: false,
  async run (session, { args, uid }): Promise<Reply | undefined> {
    if (session.state.kind !== 'selected') return undefined
    const view = session.state.mailbox
    const user = session.state.user
    const set = sequenceSet(args[0])
    const items = parseItems(args[1])
    const modifiers = parseModifiers(args[2])
    // RFC 7162 section 3.2.6: VANISHED needs UID FETCH, CHANGEDSINCE and QRESYNC enabled.
    if (modifiers.vanished && (!uid || modifiers.changedSince === null || !session.qresync)) throw new ArgumentError('VANISHED not allowed here')
    if (modifiers.changedSince !== null || items.some((i) => i.kind === 'MODSEQ')) await session.enableCondstore()
    const store = session.components.store
    if (modifiers.vanished && modifiers.changedSince !== null && set !== '$') {
      const changes = await store.changesSince(user, view.id, modifiers.changedSince)
      const ranges = resolveSequenceSet(set, view.uids.length === 0 ? 0 : view.uids[view.uids.length - 1]!)
      const gone = changes.expunged.filter((u) => inRanges(ranges, u))
      if (gone.length > 0) await session.send([atom('VANISHED'), atom('(EARLIER)'), atom(formatSequenceSet(gone))])
    }
    // RFC 9394: with PARTIAL, only the messages at the range's positions among those the set names (and that
    // CHANGEDSINCE keeps) are answered; VANISHED (EARLIER) above is about expunged UIDs and is not paged
    const named = view.resolve(set, uid)
    const uids = modifiers.partial === null ? named : await partialUids(session, user, view.id, named, modifiers.partial, modifiers.changedSince)
    const wantsMeta = items.some(needsMeta)
    const marksSeen = items.some(setsSeen) && !view.readOnly
    // Responses are prepared up to FETCH_READ_AHEAD messages ahead and written strictly in order; each write
    // waits for the socket to drain when its buffer is full, which holds the preparation back too.
    const ahead: Array<Promise<Prepared>> = []
    const reportsFlags = items.some((i) => i.kind === 'FLAGS')
    const wantsThreads = items.some((i) => i.kind === 'THREADID')
    let threads: Map<number, string> | null = null
    const prepare = async (record: MessageRecord, seq: number, seen: boolean): Promise<Prepared> => {
      let meta: Promise<MessageMeta> | null = wantsMeta ? store.getMeta(record) : null
      const metaOf = async (): Promise<MessageMeta> => await (meta ??= store.getMeta(record))
      const values = [num(seq), atom('FETCH'), list(await messageItems(session, record, metaOf, items, { uid, changedSince: modifiers.changedSince, seen, threadIds: threads }))]
      return { values, flags: reportsFlags || seen ? record.flags : null }
    }
    // RFC 3501 section 7.2.6: a keyword new to the session is announced in FLAGS before the FETCH that carries it
    const write = async (prepared: Prepared): Promise<void> => {
      if (prepared.flags !== null) for (const response of view.announceKeywords(prepared.flags)) await session.send(response)
      await session.send(prepared.values)
    }
    try {
      for await (const batch of recordBatches(store, user, view.id, uids)) {
        const records = modifiers.changedSince === null ? batch : batch.filter((r) => r.modseq > modifiers.changedSince!)
        const seen = marksSeen ? await markSeen(session, user, records) : new Set<number>()
        // one read of the thread keys per batch (a UID is in one batch, so earlier preparations keep their map)
        if (wantsThreads) threads = await threadIds(session, records.filter((r) => view.seqOf(r.uid) !== 0))
        for (const record of records) {
          const seq = view.seqOf(record.uid)
          if (seq === 0) continue
          const next = prepare(record, seq, seen.has(record.uid))
          next.catch(() => {}) // awaited in turn below; a failure before then is not unhandled
          ahead.push(next)
          // refilled half a window at a time: preparations started together have their reads merged (the store
          // reads neighbouring bodies with one pread)
          if (ahead.length >= FETCH_READ_AHEAD) while (ahead.length > FETCH_READ_AHEAD / 2) await write(await ahead.shift()!)
        }
      }
      while (ahead.length > 0) await write(await ahead.shift()!)
    } finally {
      ahead.length = 0 // preparations still running finish into nothing
    }
    return undefined
  },
}

/**
 * SEARCH and UID SEARCH (RFC 3501 section 6.4.4, RFC 9051 section 6.4.4) with ESEARCH return options
 * (RFC 4731), SEARCHRES `$` (RFC 5182) and MODSEQ (RFC 7162 section 3.1.5). The program itself lives in
 * search-program.ts; this module reads the options, runs it over the index and answers.
 */
import type { MessageMeta, MessageRecord } from '../../../store/index.ts'
import { atom, list, num, str } from '../protocol/compiler.ts'
import type { Value } from '../protocol/compiler.ts'
import { formatSequenceSet } from '../protocol/sequence.ts'
import { astring, keyword, listOf, partialRange, partialSlice } from '../args.ts'
import type { PartialPositions } from '../args.ts'
import { ArgumentError, CommandRefused } from '../errors.ts'
import { evaluate, flagsOnly, foldedKnown, prepare, ProgramReader, quickEvaluate, readsBodies, readsHeaders } from '../search-program.ts'
import type { Content } from '../search-program.ts'
import { recordBatches } from '../records.ts'
import type { CommandModule, Reply } from '../command.ts'
import type { Session } from '../session.ts'
import type { SelectedMailbox } from '../mailbox-view.ts'
import type { SearchContext } from '../search-context.ts'

/** A message read whole for TEXT/BODY search may not exceed this (larger ones are searched by header only). */
export const SEARCH_MESSAGE_BYTES_MAX = 32 * 1024 * 1024

/** A header block read for HEADER/FROM/SUBJECT... may not exceed this (RFC 5322 sets no bound; 1 MiB is generous). */
export const SEARCH_HEADER_BYTES_MAX = 1024 * 1024

/**
 * Messages evaluated together when the program reads no bodies: their structures (which hold the cached header
 * block) arrive in one multi-get. Bounds what one SEARCH holds: a message whose header is not cached has it read
 * (at most SEARCH_HEADER_BYTES_MAX), so 32 MiB in the worst case; ordinary messages need a few KiB each.
 */
export const SEARCH_CONCURRENCY = 32

// UPDATE and CONTEXT: RFC 5267 section 4 (search-context.ts); CONTEXT is a hint we take without acting on it
const RETURN_OPTIONS = new Set(['MIN', 'MAX', 'ALL', 'COUNT', 'SAVE', 'UPDATE', 'CONTEXT', 'PARTIAL'])

/** RFC 9051 section 6.4.4: US-ASCII and UTF-8 are required; we search decoded Unicode text, so both are the same. */
const CHARSETS = ['UTF-8', 'US-ASCII']

async function readRange (session: Session, record: MessageRecord, start: number, end: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of session.components.store.streamMessage(record, { start, end })) chunks.push(chunk)
  return Buffer.concat(chunks)
}

/** A message's content for the search program, each part read at most once and only when a key needs it. */
export function contentOf (session: Session, record: MessageRecord, kept?: Buffer | null): Content {
  const store = session.components.store
  let meta: MessageMeta | undefined
  let raw: Buffer | null | undefined
  let header: Buffer | null | undefined = kept ?? undefined
  const content: Content = {
    meta: async () => (meta ??= await store.getMeta(record)),
    raw: async () => {
      if (raw === undefined) raw = record.size > SEARCH_MESSAGE_BYTES_MAX ? null : await store.readMessage(record)
      return raw
    },
    header: async () => {
      if (header !== undefined) return header
      // the store keeps a copy of the header block: neither the structure nor the message is read
      const kept = await store.readHeader?.(record) ?? null
      if (kept !== null) return (header = kept)
      const m = await content.meta()
      if (raw !== undefined && raw !== null) return (header = raw.subarray(0, m.root.headerEnd))
      const end = m.root.headerEnd
      header = end > SEARCH_HEADER_BYTES_MAX ? null : await readRange(session, record, 0, end)
      return header
    },
  }
  return content
}

/** The Content quickEvaluate is given: it reads only `plainHeader` (set from the memo), never the store. */
function quickContent (): Content {
  const never = async (): Promise<never> => { throw new Error('quickEvaluate does not read messages') }
  return { plainHeader: undefined, meta: never, header: never, raw: never }
}

/**
 * RFC 5267 section 4: a SEARCH or SORT with RETURN (UPDATE) keeps its context on the session; past CONTEXTS_MAX, or
 * under a tag a live context has, the command completes with OK [NOUPDATE "tag"] and no context.
 */
export function keepContext (session: Session, view: SelectedMailbox, context: SearchContext): Reply | undefined {
  if (!session.contexts.add(context)) return { code: { name: 'NOUPDATE', args: [str(context.tag)] }, text: 'Completed; no updates for this one (too many contexts)' }
  view.changes ??= { added: [], flagged: [], expunged: [] }
  return undefined
}

/**
 * RFC 5182 section 2.4: what RETURN (SAVE) keeps. With MIN, MAX and/or PARTIAL (and neither ALL nor COUNT) only the
 * messages those return are saved (PARTIAL read like MIN and MAX: what the answer names); otherwise the whole result.
 */
function savedResult (uids: number[], returns: Set<string>, partial: PartialPositions | null): number[] {
  if (returns.has('ALL') || returns.has('COUNT') || (!returns.has('MIN') && !returns.has('MAX') && partial === null) || uids.length === 0) return uids
  const out = new Set<number>()
  if (returns.has('MIN')) out.add(uids[0]!)
  if (returns.has('MAX')) out.add(uids[uids.length - 1]!)
  if (partial !== null) {
    const [start, end] = partialSlice(partial, uids.length)
    for (const u of uids.slice(start, end)) out.add(u)
  }
  return [...out].sort((a, b) => a - b)
}

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
    // RFC 9394: PARTIAL low:high, the positions of the result (in ascending order) to return; negative from the end
    let partial: PartialPositions | null = null
    if (args[0]?.type === 'atom' && args[0].value.toUpperCase() === 'RETURN') {
      const items = listOf(args[1], 'return options').items
      returns = new Set()
      for (let i = 0; i < items.length; i++) {
        const option = keyword(items[i], 'return option')
        if (!RETURN_OPTIONS.has(option)) throw new ArgumentError(`Unknown return option ${option}`)
        // RFC 9394: one PARTIAL at most in a command
        if (option === 'PARTIAL' && partial !== null) throw new ArgumentError('PARTIAL given twice')
        if (option === 'PARTIAL') partial = partialRange(items[++i])
        returns.add(option)
      }
      if (partial !== null && returns.has('ALL')) throw new ArgumentError('PARTIAL and ALL are mutually exclusive')
      // RFC 4731 section 3.1: RETURN () means RETURN (ALL); so does a RETURN with only RFC 5267's UPDATE/CONTEXT
      if ([...returns].every((o) => o === 'UPDATE' || o === 'CONTEXT')) returns.add('ALL')
      index = 2
    }
    // `$` as the previous result, fixed before this search may replace it.
    const saved = new Set(view.searchResult)
    // RFC 5182 section 2.1: a SEARCH ... RETURN (SAVE) that fails leaves `$` empty.
    const saving = returns?.has('SAVE') === true
    if (saving) view.searchResult = []
    if (args[index]?.type === 'atom' && (args[index] as { value: string }).value.toUpperCase() === 'CHARSET') {
      const charset = astring(args[index + 1], 'charset').toUpperCase()
      if (!CHARSETS.includes(charset)) {
        throw new CommandRefused('Unsupported charset', `BADCHARSET (${CHARSETS.join(' ')})`)
      }
      index += 2
    }
    const reader = new ProgramReader(args.slice(index))
    const program = prepare(reader.program())
    if (reader.usesModseq) await session.enableCondstore()
    const matched: MessageRecord[] = []
    // BODY and TEXT read whole messages: one at a time. Anything else reads at most structures, together.
    const window = readsBodies(program) ? 1 : SEARCH_CONCURRENCY
    const store = session.components.store
    const headersFirst = readsHeaders(program) && store.readHeader !== undefined
    // Flags and sequence sets only (SEARCH FLAGGED, UNSEEN, UID 1:*...): the store's UID and flag index answers,
    // no record is read. Messages the client has not been told about yet are left out, as recordBatches does.
    const listing = flagsOnly(program) && store.listFlags !== undefined ? await store.listFlags(user, view.id) : null
    // Most messages are decided by quickEvaluate from what is at hand (flags, numbers, the kept folded header):
    // those get one scratch Content, whose reads quickEvaluate never makes, instead of a Content with its closures
    // each (allocating those for every message of a 2,000-message mailbox was a fifth of a header SEARCH's time).
    // Only the undecided ones get their own, and their header copies read, for evaluate.
    const scratch = quickContent()
    if (listing !== null) {
      for (let i = 0; i < listing.uids.length; i++) {
        const uidAt = listing.uids[i]!
        if (view.seqOf(uidAt) === 0) continue
        // a partial record: the program reads uid and flags only (flagsOnly), and nothing else reads it
        const record = { uid: uidAt, flags: listing.flags[i]! } as MessageRecord
        scratch.plainHeader = undefined
        if (quickEvaluate(program, record, view, saved, scratch) ?? await evaluate(program, record, view, saved, contentOf(session, record))) matched.push(record)
      }
    }
    for await (const batch of listing !== null ? [] : recordBatches(store, user, view.id, view.uids)) {
      const hits: Array<boolean | undefined> = new Array(batch.length)
      const undecided: number[] = []
      for (let i = 0; i < batch.length; i++) {
        scratch.plainHeader = undefined
        const q = quickEvaluate(program, batch[i]!, view, saved, scratch)
        if (q === undefined) undecided.push(i)
        else hits[i] = q
      }
      // the kept header copies of the undecided in one multi-get (each is at most HEADER_CACHE_BYTES_MAX)
      // (not those whose folded block SEARCH kept; see foldedKnown)
      const kept = headersFirst && undecided.length > 0 ? await Promise.all(undecided.map(async (i) => foldedKnown(batch[i]!) ? undefined : await store.readHeader!(batch[i]!))) : null
      for (let j = 0; j < undecided.length; j += window) {
        const slice = undecided.slice(j, j + window)
        const results = await Promise.all(slice.map(async (i, k) => await evaluate(program, batch[i]!, view, saved, contentOf(session, batch[i]!, kept?.[j + k]))))
        slice.forEach((i, k) => { hits[i] = results[k] })
      }
      for (let i = 0; i < batch.length; i++) if (hits[i] === true) matched.push(batch[i]!)
    }
    const numbers = matched.map((r) => uid ? r.uid : view.seqOf(r.uid))
    // RFC 7162 section 3.1.5: a MODSEQ search reports the highest mod-sequence of the messages it returns; with
    // RETURN (MIN) and/or (MAX) alone, those are the MIN and MAX messages only (RFC 4731 section 3.2).
    // With PARTIAL, the messages of the requested positions count too.
    const pslice = partial === null ? null : partialSlice(partial, matched.length)
    const returned = returns !== null && !returns.has('ALL') && !returns.has('COUNT') && (returns.has('MIN') || returns.has('MAX') || pslice !== null) && matched.length > 0
      ? [...new Set([...(returns.has('MIN') ? [matched[0]!] : []), ...(returns.has('MAX') ? [matched[matched.length - 1]!] : []), ...(pslice === null ? [] : matched.slice(pslice[0], pslice[1]))])]
      : matched
    const highest = reader.usesModseq && returned.length > 0 ? returned.reduce((m, r) => Math.max(m, r.modseq), 0) : null
    // RFC 9051 section 7.3.4: an IMAP4rev2 client gets ESEARCH even without RETURN.
    if (returns === null && session.enabled.has('IMAP4REV2')) returns = new Set(['ALL'])
    if (returns === null) {
      const values: Value[] = [atom('SEARCH'), ...numbers.map((n) => num(n))]
      // RFC 7162 section 3.1.5: a MODSEQ search reports the highest mod-sequence of the result.
      if (highest !== null) values.push(list([atom('MODSEQ'), num(highest)]))
      await session.send(values)
      return undefined
    }
    if (saving) view.searchResult = savedResult(matched.map((r) => r.uid), returns, partial)
    // RFC 5182 section 2.4: RETURN (SAVE) alone answers no ESEARCH.
    if (saving && returns.size === 1) return undefined
    const values: Value[] = [atom('ESEARCH'), list([atom('TAG'), str(tag)])]
    if (uid) values.push(atom('UID'))
    if (numbers.length > 0) {
      if (returns.has('MIN')) values.push(atom('MIN'), num(numbers.reduce((m, n) => Math.min(m, n))))
      if (returns.has('MAX')) values.push(atom('MAX'), num(numbers.reduce((m, n) => Math.max(m, n))))
      if (returns.has('ALL')) values.push(atom('ALL'), atom(formatSequenceSet(numbers)))
    }
    if (returns.has('COUNT')) values.push(atom('COUNT'), num(numbers.length))
    if (partial !== null && pslice !== null) {
      const slice = numbers.slice(pslice[0], pslice[1])
      values.push(atom('PARTIAL'), list([atom(`${partial.first}:${partial.last}`), slice.length === 0 ? null : atom(formatSequenceSet(slice))]))
    }
    if (highest !== null) values.push(atom('MODSEQ'), num(highest))
    await session.send(values)
    if (returns.has('UPDATE')) {
      const uids = matched.map((r) => r.uid)
      return keepContext(session, view, { tag, uid, program, sort: null, saved, result: uids, members: new Set(uids) })
    }
    return undefined
  },
}

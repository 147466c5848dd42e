/**
 * The search criteria of SORT and THREAD (RFC 5256 section 3: "the search-key syntax of SEARCH"), run over the
 * selected mailbox with search-program.ts: the UIDs that match, ascending. The same shortcuts as SEARCH: `ALL` and
 * other flag-only programs read the store's UID and flag index and no record; header keys read the kept header
 * copies of a whole batch in one go.
 */
import type { MessageRecord } from '../../store/index.ts'
import type { Token } from './protocol/types.ts'
import { astring } from './args.ts'
import { CommandRefused } from './errors.ts'
import { evaluate, flagsOnly, prepare, ProgramReader, quickEvaluate, readsBodies, readsHeaders } from './search-program.ts'
import { recordBatches } from './records.ts'
import { contentOf, SEARCH_CONCURRENCY } from './commands/search.ts'
import type { SelectedMailbox } from './mailbox-view.ts'
import type { Session } from './session.ts'

/** RFC 5256 section 3: US-ASCII and UTF-8 MUST be supported; string keys compare decoded Unicode either way. */
export const CHARSETS = ['UTF-8', 'US-ASCII']

/** The charset argument SORT and THREAD require: NO [BADCHARSET] for another (RFC 5256 section 3). */
export function charset (token: Token | undefined): string {
  const name = astring(token, 'charset').toUpperCase()
  if (!CHARSETS.includes(name)) throw new CommandRefused('Unsupported charset', `BADCHARSET (${CHARSETS.join(' ')})`)
  return name
}

export interface Matched {
  /** Matching UIDs the client knows, ascending (so also in sequence order). */
  uids: number[]
  /** The program used MODSEQ (CONDSTORE is enabled then): each matching UID's mod-sequence, for the MODSEQ the
   * answer carries (RFC 7162 section 3.1.5); null otherwise. */
  modseqs: Map<number, number> | null
}

/** Runs the search program of `tokens` over the view. */
export async function matchUids (session: Session, view: SelectedMailbox, user: string, tokens: Token[]): Promise<Matched> {
  const reader = new ProgramReader(tokens)
  const program = prepare(reader.program())
  if (reader.usesModseq) await session.enableCondstore()
  // `$` (RFC 5182) as it stands when the command starts
  const saved = new Set(view.searchResult)
  const store = session.components.store
  const uids: number[] = []
  if (program.op === 'all') return { uids: [...view.uids], modseqs: null }
  const listing = flagsOnly(program) && store.listFlags !== undefined ? await store.listFlags(user, view.id) : null
  if (listing !== null) {
    for (let i = 0; i < listing.uids.length; i++) {
      const uid = listing.uids[i]!
      if (view.seqOf(uid) === 0) continue
      // a partial record: a flag-only program reads uid and flags alone
      const record = { uid, flags: listing.flags[i]! } as MessageRecord
      const content = contentOf(session, record, undefined)
      if (quickEvaluate(program, record, view, saved, content) ?? await evaluate(program, record, view, saved, content)) uids.push(uid)
    }
    return { uids, modseqs: null }
  }
  const modseqs = reader.usesModseq ? new Map<number, number>() : null
  const window = readsBodies(program) ? 1 : SEARCH_CONCURRENCY
  const headersFirst = readsHeaders(program) && store.readHeader !== undefined
  for await (const batch of recordBatches(store, user, view.id, view.uids)) {
    const kept = headersFirst ? await Promise.all(batch.map(async (record) => await store.readHeader!(record))) : null
    for (let i = 0; i < batch.length; i += window) {
      const slice = batch.slice(i, i + window)
      const contents = slice.map((record, j) => contentOf(session, record, kept?.[i + j]))
      const quick = slice.map((record, j) => quickEvaluate(program, record, view, saved, contents[j]!))
      const hits = quick.every((q) => q !== undefined)
        ? quick
        : await Promise.all(slice.map(async (record, j) => quick[j] ?? await evaluate(program, record, view, saved, contents[j]!)))
      slice.forEach((record, j) => {
        if (hits[j] !== true) return
        uids.push(record.uid)
        modseqs?.set(record.uid, record.modseq)
      })
    }
  }
  return { uids, modseqs }
}

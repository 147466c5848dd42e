/**
 * CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 section 4): a SEARCH or SORT with RETURN (UPDATE) leaves a context on
 * the session; as the selected mailbox changes (this session's changes and other sessions'), the session sends
 * unsolicited `ESEARCH (TAG "t") [UID] ADDTO (...)` / `REMOVEFROM (...)` until CANCELUPDATE, a new SELECT, or the end
 * of the session. Only the messages a change touches are evaluated again (new ones, flag changes): the context keeps
 * its result, and a SORT context places an added message with the node's cached sort keys (sort-keys.ts).
 *
 * Positions (context-position): 0 for SEARCH, whose result has no order; for SORT the 1-based position in the sorted
 * result, REMOVEFROM's before the removal and ADDTO's after the insertion, one ESEARCH response per message so that
 * each position is exact when read. An expunged message leaves every context silently: the EXPUNGE (or VANISHED) the
 * client gets says so, and it renumbers its contexts as it renumbers the mailbox.
 */
import type { MessageRecord } from '../../store/index.ts'
import { atom, list, num, str } from './protocol/compiler.ts'
import type { Value } from './protocol/compiler.ts'
import { formatSequenceSet } from './protocol/sequence.ts'
import { evaluate } from './search-program.ts'
import type { Node } from './search-program.ts'
import { contentOf } from './commands/search.ts'
import { sortKeyCacheFor, sortOrder } from './sort-keys.ts'
import type { SortCriterion } from './sort-keys.ts'
import type { SelectedMailbox } from './mailbox-view.ts'
import type { Session } from './session.ts'

/** Live contexts per session; past it a SEARCH/SORT ... RETURN (UPDATE) completes with OK [NOUPDATE "tag"]. */
export const CONTEXTS_MAX = 8
/** Messages re-evaluated for contexts in one update (a larger change, such as a big COPY in, goes in slices). */
export const CONTEXT_RECORDS_BATCH = 500

export interface SearchContext {
  tag: string
  uid: boolean
  program: Node
  /** SORT's criteria; null for SEARCH. */
  sort: SortCriterion[] | null
  /** `$` as it stood when the command ran (RFC 5182; the program reads it). */
  saved: Set<number>
  /** The result's UIDs: in sort order for SORT, ascending for SEARCH. */
  result: number[]
  members: Set<number>
}

/** What one flush of the view changed, for the contexts (mailbox-view.ts collects it). */
export interface ViewChanges {
  added: number[]
  flagged: number[]
  expunged: number[]
}

export class SearchContexts {
  readonly #byTag = new Map<string, SearchContext>()

  get size (): number {
    return this.#byTag.size
  }

  /** Adds a context; false when the session holds CONTEXTS_MAX already (or the tag is taken by a live one). */
  add (context: SearchContext): boolean {
    if (this.#byTag.size >= CONTEXTS_MAX || this.#byTag.has(context.tag)) return false
    this.#byTag.set(context.tag, context)
    return true
  }

  has (tag: string): boolean {
    return this.#byTag.has(tag)
  }

  cancel (tag: string): boolean {
    return this.#byTag.delete(tag)
  }

  clear (): void {
    this.#byTag.clear()
  }

  /** The ESEARCH updates the changes make, context by context (the program run on the touched messages alone). */
  async update (session: Session, user: string, view: SelectedMailbox, changes: ViewChanges): Promise<Value[][]> {
    if (this.#byTag.size === 0) return []
    const gone = new Set(changes.expunged)
    const touched = [...new Set([...changes.added, ...changes.flagged])].filter((uid) => !gone.has(uid) && view.seqOf(uid) !== 0).sort((a, b) => a - b)
    const records = new Map<number, MessageRecord>()
    for (let i = 0; i < touched.length; i += CONTEXT_RECORDS_BATCH) {
      for (const record of await session.components.store.getMessages(user, view.id, touched.slice(i, i + CONTEXT_RECORDS_BATCH))) records.set(record.uid, record)
    }
    const out: Value[][] = []
    for (const context of this.#byTag.values()) {
      if (gone.size > 0) {
        context.result = context.result.filter((uid) => !gone.has(uid))
        for (const uid of gone) context.members.delete(uid)
      }
      const added: number[] = []
      const removed: number[] = []
      for (const uid of touched) {
        const record = records.get(uid)
        const match = record !== undefined && await evaluate(context.program, record, view, context.saved, contentOf(session, record))
        if (match && !context.members.has(uid)) added.push(uid)
        if (!match && context.members.has(uid)) removed.push(uid)
      }
      if (added.length === 0 && removed.length === 0) continue
      const number = (uid: number): number => context.uid ? uid : view.seqOf(uid)
      const head = (): Value[] => context.uid ? [atom('ESEARCH'), list([atom('TAG'), str(context.tag)]), atom('UID')] : [atom('ESEARCH'), list([atom('TAG'), str(context.tag)])]
      if (context.sort === null) {
        if (removed.length > 0) out.push([...head(), atom('REMOVEFROM'), list([num(0), atom(formatSequenceSet(removed.map(number)))])])
        for (const uid of removed) context.members.delete(uid)
        for (const uid of added) context.members.add(uid)
        context.result = [...context.members].sort((a, b) => a - b)
        if (added.length > 0) out.push([...head(), atom('ADDTO'), list([num(0), atom(formatSequenceSet(added.map(number)))])])
        continue
      }
      // SORT: each removal at its position before it, from the last position down so that each stays exact
      const positions = removed.map((uid) => [context.result.indexOf(uid) + 1, uid] as const).sort((a, b) => b[0] - a[0])
      for (const [position, uid] of positions) {
        out.push([...head(), atom('REMOVEFROM'), list([num(position), num(number(uid))])])
        context.result.splice(position - 1, 1)
        context.members.delete(uid)
      }
      if (added.length > 0) {
        for (const uid of added) context.members.add(uid)
        const ascending = [...context.members].sort((a, b) => a - b)
        const keys = await sortKeyCacheFor(session.components.store).keys(user, view.id, view.uidValidity, ascending)
        const order = sortOrder(keys, context.sort).map((i) => ascending[i]!)
        // each addition at its position once the ones before it in the new order are in
        const fresh = new Set(added)
        let present = 0
        for (const uid of order) {
          if (fresh.has(uid)) out.push([...head(), atom('ADDTO'), list([num(present + 1), num(number(uid))])])
          present++
        }
        context.result = order
      }
    }
    return out
  }
}

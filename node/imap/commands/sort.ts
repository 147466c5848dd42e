/**
 * SORT and UID SORT (RFC 5256 section 3) with the DISPLAYFROM and DISPLAYTO keys (RFC 5957), and ESORT's return
 * options (RFC 5267 section 3: MIN, MAX, COUNT, ALL) with PARTIAL (RFC 9394). The criteria run through the SEARCH
 * program (search-run.ts); the order comes from the node's cache (sort-keys.ts: keys per message and a kept order per
 * criteria list), so sorting a mailbox that was sorted before reads nothing from the store and sorts only new mail.
 */
import { atom, list, num, str } from '../protocol/compiler.ts'
import type { Value } from '../protocol/compiler.ts'
import { formatOrderedSet } from '../protocol/sequence.ts'
import type { Token } from '../protocol/types.ts'
import { keyword, listOf, partialRange, partialSlice } from '../args.ts'
import type { PartialPositions } from '../args.ts'
import { ArgumentError } from '../errors.ts'
import { charset, matchUids } from '../search-run.ts'
import { isSortKey, sortKeyCacheFor } from '../sort-keys.ts'
import type { SortCriterion } from '../sort-keys.ts'
import type { CommandModule, Reply } from '../command.ts'
import { prepare, ProgramReader } from '../search-program.ts'
import { keepContext } from './search.ts'

// the PARTIAL readers live in args.ts (FETCH's modifier takes them too); kept importable from here
export { partialRange, partialSlice }

// UPDATE and CONTEXT: RFC 5267 section 4 (search-context.ts); CONTEXT is a hint we take without acting on it
const RETURN_OPTIONS = new Set(['MIN', 'MAX', 'COUNT', 'ALL', 'PARTIAL', 'UPDATE', 'CONTEXT'])

/** Sort criteria in one command (each key once is 9; REVERSE doubles it; repeats are allowed but pointless). */
export const SORT_CRITERIA_MAX = 32

export interface ReturnOptions {
  options: Set<string>
  /** RFC 9394 PARTIAL: 1-based positions, negative ones counted from the end, low ≤ high in magnitude. */
  partial: PartialPositions | null
}

/** `RETURN (...)` of ESEARCH-style commands; RFC 4731 section 3.1 and RFC 5267: an empty list means ALL. */
export function returnOptions (token: Token | undefined): ReturnOptions {
  const items = listOf(token, 'return options').items
  const options = new Set<string>()
  let partial: ReturnOptions['partial'] = null
  for (let i = 0; i < items.length; i++) {
    const option = keyword(items[i], 'return option')
    if (!RETURN_OPTIONS.has(option)) throw new ArgumentError(`Unknown return option ${option}`)
    // RFC 9394: one PARTIAL at most in a command
    if (option === 'PARTIAL' && partial !== null) throw new ArgumentError('PARTIAL given twice')
    if (option === 'PARTIAL') partial = partialRange(items[++i])
    options.add(option)
  }
  // RFC 9394 section 3: PARTIAL and ALL are mutually exclusive
  if (options.has('PARTIAL') && options.has('ALL')) throw new ArgumentError('PARTIAL and ALL are mutually exclusive')
  // RETURN () is ALL (RFC 4731 section 3.1); so is a RETURN with only RFC 5267's UPDATE/CONTEXT
  if ([...options].every((o) => o === 'UPDATE' || o === 'CONTEXT')) options.add('ALL')
  return { options, partial }
}

/** The ESEARCH answer of ESORT (RFC 5267 section 3.2): results in sort order, ranges only where they ascend. */
export function esearchValues (tag: string, uid: boolean, numbers: number[], returns: ReturnOptions, modseq: number | null = null): Value[] {
  const values: Value[] = [atom('ESEARCH'), list([atom('TAG'), str(tag)])]
  if (uid) values.push(atom('UID'))
  const { options, partial } = returns
  if (numbers.length > 0) {
    // MIN and MAX are the first and the last in sort order ("lowest sorted", "highest sorted")
    if (options.has('MIN')) values.push(atom('MIN'), num(numbers[0]!))
    if (options.has('MAX')) values.push(atom('MAX'), num(numbers[numbers.length - 1]!))
    if (options.has('ALL')) values.push(atom('ALL'), atom(formatOrderedSet(numbers)))
  }
  if (options.has('COUNT')) values.push(atom('COUNT'), num(numbers.length))
  if (partial !== null) {
    const [start, end] = partialSlice(partial, numbers.length)
    const slice = numbers.slice(start, end)
    values.push(atom('PARTIAL'), list([atom(`${partial.first}:${partial.last}`), slice.length === 0 ? null : atom(formatOrderedSet(slice))]))
  }
  if (modseq !== null) values.push(atom('MODSEQ'), num(modseq))
  return values
}

/** `(REVERSE DATE SUBJECT)` (RFC 5256 section 4 sort-criteria). */
export function sortCriteria (token: Token | undefined): SortCriterion[] {
  const items = listOf(token, 'sort criteria').items
  if (items.length === 0) throw new ArgumentError('Empty sort criteria')
  if (items.length > SORT_CRITERIA_MAX) throw new ArgumentError('Too many sort criteria', 'LIMIT')
  const out: SortCriterion[] = []
  let reverse = false
  for (const item of items) {
    const name = keyword(item, 'sort key')
    if (name === 'REVERSE') {
      if (reverse) throw new ArgumentError('REVERSE twice')
      reverse = true
      continue
    }
    if (!isSortKey(name)) throw new ArgumentError(`Unknown sort key ${name}`)
    out.push({ key: name, reverse })
    reverse = false
  }
  if (reverse) throw new ArgumentError('REVERSE without a sort key')
  return out
}

/**
 * RFC 7162 section 3.1.5 with RFC 4731 section 3.2: the highest mod-sequence of the messages returned (with MIN, MAX
 * and/or PARTIAL and neither ALL nor COUNT, those: the first, the last, the page; else all that matched); null
 * without the MODSEQ criterion or when nothing is returned.
 */
function highestModseq (sorted: number[], modseqs: Map<number, number> | null, returns: ReturnOptions | null): number | null {
  if (modseqs === null || sorted.length === 0) return null
  const options = returns?.options
  const partial = returns?.partial ?? null
  let returned = sorted
  if (options !== undefined && !options.has('ALL') && !options.has('COUNT') && (options.has('MIN') || options.has('MAX') || partial !== null)) {
    const [start, end] = partial === null ? [0, 0] : partialSlice(partial, sorted.length)
    returned = [...(options.has('MIN') ? [sorted[0]!] : []), ...(options.has('MAX') ? [sorted[sorted.length - 1]!] : []), ...sorted.slice(start, end)]
  }
  if (returned.length === 0) return null
  return returned.reduce((m, u) => Math.max(m, modseqs.get(u) ?? 0), 0)
}

export const sort: CommandModule = {
  name: 'SORT',
  syntax: 'SORT [RETURN (options)] (sort-criteria) charset search-criteria...',
  states: ['selected'],
  args: { min: 3, max: 10_000 },
  uid: true,
  // the numbers answered must stay valid (RFC 3501 section 7.4.1, as for SEARCH)
  expungeAllowed: false,
  async run (session, { tag, args, uid }): Promise<Reply | undefined> {
    if (session.state.kind !== 'selected') return undefined
    const view = session.state.mailbox
    const user = session.state.user
    let index = 0
    let returns: ReturnOptions | null = null
    if (args[0]?.type === 'atom' && args[0].value.toUpperCase() === 'RETURN') {
      returns = returnOptions(args[1])
      index = 2
    }
    const criteria = sortCriteria(args[index])
    charset(args[index + 1])
    // `$` as the command found it, for a context that evaluates the program again later
    const saved = new Set(view.searchResult)
    const matched = await matchUids(session, view, user, args.slice(index + 2))
    const uids = await sortKeyCacheFor(session.components.store).sorted(user, view.id, view.uidValidity, matched.uids, criteria)
    const numbers = uid ? uids : uids.map((u) => view.seqOf(u))
    const modseq = highestModseq(uids, matched.modseqs, returns)
    if (returns === null) {
      // one atom for the numbers: a value per number costs more than the sort on a large mailbox
      const values = numbers.length === 0 ? [atom('SORT')] : [atom('SORT'), atom(numbers.join(' '))]
      // RFC 7162 section 3.1.5: a SORT with the MODSEQ criterion ends with the highest mod-sequence it found
      if (modseq !== null) values.push(list([atom('MODSEQ'), num(modseq)]))
      await session.send(values)
    } else {
      await session.send(esearchValues(tag, uid, numbers, returns, modseq))
      if (returns.options.has('UPDATE')) {
        const program = prepare(new ProgramReader(args.slice(index + 2)).program())
        return keepContext(session, view, { tag, uid, program, sort: criteria, saved, result: uids, members: new Set(uids) })
      }
    }
    return undefined
  },
}

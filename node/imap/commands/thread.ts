/**
 * THREAD and UID THREAD (RFC 5256 section 3): ORDEREDSUBJECT and REFERENCES over the messages the search criteria
 * match, with the keys of the node's sort-key cache (which keeps the last answer per algorithm, sort-keys.ts). The
 * algorithms are in thread.ts.
 */
import { atom } from '../protocol/compiler.ts'
import type { Value } from '../protocol/compiler.ts'
import { keyword } from '../args.ts'
import { ArgumentError } from '../errors.ts'
import { charset, matchUids } from '../search-run.ts'
import { sortKeyCacheFor } from '../sort-keys.ts'
import type { CommandModule, Reply } from '../command.ts'

/** The algorithms advertised as THREAD=<name>. */
export const THREAD_ALGORITHMS = ['ORDEREDSUBJECT', 'REFERENCES']

export const thread: CommandModule = {
  name: 'THREAD',
  syntax: 'THREAD algorithm charset search-criteria...',
  states: ['selected'],
  args: { min: 3, max: 10_000 },
  uid: true,
  expungeAllowed: false,
  async run (session, { args, uid }): Promise<Reply | undefined> {
    if (session.state.kind !== 'selected') return undefined
    const view = session.state.mailbox
    const user = session.state.user
    const algorithm = keyword(args[0], 'threading algorithm')
    if (!THREAD_ALGORITHMS.includes(algorithm)) throw new ArgumentError(`Unknown threading algorithm ${algorithm}`)
    charset(args[1])
    const matched = await matchUids(session, view, user, args.slice(2))
    const numbers = uid ? matched.uids : matched.uids.map((u) => view.seqOf(u))
    const text = await sortKeyCacheFor(session.components.store).threadList(user, view.id, view.uidValidity, matched.uids, numbers, algorithm as 'REFERENCES' | 'ORDEREDSUBJECT')
    const values: Value[] = [atom('THREAD')]
    // the thread lists are written as one atom: the compiler recurses per list, and a thread can nest deeply
    if (text !== '') values.push(atom(text))
    await session.send(values)
    return undefined
  },
}

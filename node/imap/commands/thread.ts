/**
 * THREAD and UID THREAD (RFC 5256 section 3): ORDEREDSUBJECT and REFERENCES over the messages the search criteria
 * match, with the keys of the node's sort-key cache. The algorithms are in thread.ts.
 */
import { atom } from '../protocol/compiler.ts'
import type { Value } from '../protocol/compiler.ts'
import { keyword } from '../args.ts'
import { ArgumentError } from '../errors.ts'
import { charset, matchUids } from '../search-run.ts'
import { sortKeyCacheFor } from '../sort-keys.ts'
import { formatThreads, threadOrderedSubject, threadReferences } from '../thread.ts'
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
    const keys = await sortKeyCacheFor(session.components.store).keys(user, view.id, view.uidValidity, matched.uids)
    const threads = algorithm === 'REFERENCES' ? threadReferences(keys) : threadOrderedSubject(keys)
    const numbers = uid ? matched.uids : matched.uids.map((u) => view.seqOf(u))
    const values: Value[] = [atom('THREAD')]
    // the thread lists are written as one atom: the compiler recurses per list, and a thread can nest deeply
    if (threads.length > 0) values.push(atom(formatThreads(threads, numbers)))
    await session.send(values)
    return undefined
  },
}

/** CANCELUPDATE (RFC 5267 section 4.2): ends the named SEARCH/SORT ... RETURN (UPDATE) contexts of the session. */
import { astring } from '../args.ts'
import { ArgumentError } from '../errors.ts'
import type { CommandModule } from '../command.ts'

export const cancelupdate: CommandModule = {
  name: 'CANCELUPDATE',
  syntax: 'CANCELUPDATE "tag" *(SP "tag")',
  states: ['selected'],
  args: { min: 1, max: 100 },
  expungeAllowed: true,
  async run (session, { args }) {
    const tags = args.map((token) => astring(token, 'tag'))
    // all or none: a tag that names no live context is the client's error, and nothing is cancelled
    const unknown = tags.find((tag) => !session.contexts.has(tag))
    if (unknown !== undefined) throw new ArgumentError(`No search context ${JSON.stringify(unknown.slice(0, 32))}`)
    for (const tag of tags) session.contexts.cancel(tag)
    return undefined
  },
}

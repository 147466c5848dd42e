// UIDL [n] (RFC 1939 section 7): the message's global id, the same in every session and on every replica.

import { ok, parseNumber } from '../codec.ts'
import { bad, command, reply } from '../context.ts'
import { liveEntry, sendListing, uniqueId } from './transfer.ts'

export default command({
  name: 'UIDL',
  states: ['transaction'],
  async run (ctx, state, cmd) {
    if (cmd.args.length > 1) return await bad(ctx, 'Syntax: UIDL [msg]')
    if (cmd.args.length === 1) {
      const n = parseNumber(cmd.args[0])
      if (n === null) return await bad(ctx, 'Syntax: UIDL [msg]')
      const entry = await liveEntry(ctx, state, n)
      if (entry !== null) await reply(ctx, ok(`${n} ${uniqueId(entry.record.gid)}`))
      return
    }
    const lines = function * () {
      for (const [n, e] of state.drop.live()) yield `${n} ${uniqueId(e.record.gid)}`
    }
    await sendListing(ctx, ok('Unique-id listing follows'), lines())
  }
})

// LIST [n] (RFC 1939 section 5): sizes in octets, exactly what RETR sends for a CRLF message.

import { ok, parseNumber } from '../codec.ts'
import { bad, command, reply } from '../context.ts'
import { liveEntry, sendListing } from './transfer.ts'

export default command({
  name: 'LIST',
  states: ['transaction'],
  async run (ctx, state, cmd) {
    if (cmd.args.length > 1) return await bad(ctx, 'Syntax: LIST [msg]')
    if (cmd.args.length === 1) {
      const n = parseNumber(cmd.args[0])
      if (n === null) return await bad(ctx, 'Syntax: LIST [msg]')
      const entry = await liveEntry(ctx, state, n)
      if (entry !== null) await reply(ctx, ok(`${n} ${entry.record.size}`))
      return
    }
    const { count, octets } = state.drop.stat()
    const lines = function * () {
      for (const [n, e] of state.drop.live()) yield `${n} ${e.record.size}`
    }
    await sendListing(ctx, ok(`${count} messages (${octets} octets)`), lines())
  }
})

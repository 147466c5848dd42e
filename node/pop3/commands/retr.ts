// RETR n (RFC 1939 section 5): the whole message, byte-stuffed.

import { parseNumber } from '../codec.ts'
import { bad, command } from '../context.ts'
import { liveEntry, sendMessage } from './transfer.ts'

export default command({
  name: 'RETR',
  states: ['transaction'],
  async run (ctx, state, cmd) {
    const n = parseNumber(cmd.args[0])
    if (n === null || cmd.args.length !== 1) return await bad(ctx, 'Syntax: RETR msg')
    const entry = await liveEntry(ctx, state, n)
    if (entry !== null) await sendMessage(ctx, state, n, entry, null)
  }
})

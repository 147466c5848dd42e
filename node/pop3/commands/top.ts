// TOP n lines (RFC 1939 section 7): the header, the blank line, then that many lines of the body.

import { parseNumber } from '../codec.ts'
import { bad, command } from '../context.ts'
import { liveEntry, sendMessage } from './transfer.ts'

export default command({
  name: 'TOP',
  states: ['transaction'],
  async run (ctx, state, cmd) {
    const n = parseNumber(cmd.args[0])
    const lines = parseNumber(cmd.args[1])
    if (n === null || lines === null || cmd.args.length !== 2) return await bad(ctx, 'Syntax: TOP msg lines')
    const entry = await liveEntry(ctx, state, n)
    if (entry !== null) await sendMessage(ctx, state, n, entry, lines)
  }
})

// DELE n (RFC 1939 section 5): marks a message deleted. Nothing leaves the store before QUIT.

import { err, ok, parseNumber } from '../codec.ts'
import { bad, command, reply } from '../context.ts'

export default command({
  name: 'DELE',
  states: ['transaction'],
  async run (ctx, state, cmd) {
    const n = parseNumber(cmd.args[0])
    if (n === null || cmd.args.length !== 1) return await bad(ctx, 'Syntax: DELE msg')
    const entry = state.drop.get(n)
    if (entry === null) return await reply(ctx, err('No such message'))
    if (entry.deleted) return await reply(ctx, err(`Message ${n} already deleted`))
    entry.deleted = true
    await reply(ctx, ok(`Message ${n} deleted`))
  }
})

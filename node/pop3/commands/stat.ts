// STAT (RFC 1939 section 5): count and octets of the messages not marked deleted.

import { ok } from '../codec.ts'
import { bad, command, reply } from '../context.ts'

export default command({
  name: 'STAT',
  states: ['transaction'],
  async run (ctx, state, cmd) {
    if (cmd.args.length !== 0) return await bad(ctx, 'Syntax: STAT')
    const { count, octets } = state.drop.stat()
    await reply(ctx, ok(`${count} ${octets}`))
  }
})

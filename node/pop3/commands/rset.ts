// RSET (RFC 1939 section 5): unmarks every message marked deleted.

import { ok } from '../codec.ts'
import { bad, command, reply } from '../context.ts'

export default command({
  name: 'RSET',
  states: ['transaction'],
  async run (ctx, state, cmd) {
    if (cmd.args.length !== 0) return await bad(ctx, 'Syntax: RSET')
    state.drop.reset()
    const { count, octets } = state.drop.stat()
    await reply(ctx, ok(`${count} messages (${octets} octets)`))
  }
})

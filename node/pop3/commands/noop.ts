// NOOP (RFC 1939 section 5).

import { ok } from '../codec.ts'
import { bad, command, reply } from '../context.ts'

export default command({
  name: 'NOOP',
  states: ['transaction'],
  async run (ctx, _state, cmd) {
    if (cmd.args.length !== 0) return await bad(ctx, 'Syntax: NOOP')
    await reply(ctx, ok(''))
  }
})

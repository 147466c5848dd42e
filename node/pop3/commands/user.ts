// USER name (RFC 1939 section 7): remembers the name for PASS. Refused before TLS unless plaintext is allowed.

import { ok } from '../codec.ts'
import { bad, command, mayAuthenticate, refusePlaintext, reply } from '../context.ts'

export default command({
  name: 'USER',
  states: ['authorization'],
  async run (ctx, state, cmd) {
    if (!mayAuthenticate(ctx)) return await refusePlaintext(ctx)
    if (cmd.args.length !== 1) return await bad(ctx, 'Syntax: USER name')
    state.user = cmd.args[0]
    await reply(ctx, ok('Send PASS'))
  }
})

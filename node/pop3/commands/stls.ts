// STLS (RFC 2595 section 4): starts TLS. Anything the client pipelined after STLS is dropped, and the session
// starts over in the AUTHORIZATION state with nothing remembered from before (RFC 2595 section 3.1).

import { err, ok } from '../codec.ts'
import { bad, command, reply } from '../context.ts'

export default command({
  name: 'STLS',
  states: ['authorization'],
  async run (ctx, state, cmd) {
    if (cmd.args.length !== 0) return await bad(ctx, 'Syntax: STLS')
    if (ctx.tls === null) return await reply(ctx, err('TLS is not available'))
    if (ctx.conn.secure) return await reply(ctx, err('TLS is already active'))
    await reply(ctx, ok('Begin TLS negotiation'))
    if (!await ctx.conn.startTls(ctx.tls)) {
      ctx.log.info({ event: 'pop3_tls_failed' }, 'pop3_tls_failed')
      ctx.conn.destroy()
      return
    }
    ctx.state = { kind: 'authorization', user: null, failures: state.failures }
    ctx.log.debug({ event: 'pop3_tls' }, 'pop3_tls')
  }
})

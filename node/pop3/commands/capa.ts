// CAPA (RFC 2449 section 5). USER and SASL PLAIN are listed only where they may be used (RFC 2595 section 4:
// not before TLS unless plaintext is allowed), STLS only while TLS can still be started.

import { multiline } from '../codec.ts'
import { bad, command, mayAuthenticate, reply } from '../context.ts'

export default command({
  name: 'CAPA',
  states: ['authorization', 'transaction'],
  async run (ctx, state, cmd) {
    if (cmd.args.length !== 0) return await bad(ctx, 'Syntax: CAPA')
    const caps = ['TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING']
    if (state.kind === 'authorization') {
      if (mayAuthenticate(ctx)) caps.push('USER', 'SASL PLAIN')
      if (ctx.tls !== null && !ctx.conn.secure) caps.push('STLS')
    }
    caps.push('IMPLEMENTATION mailgrid')
    await reply(ctx, multiline('+OK Capability list follows\r\n', caps))
  }
})

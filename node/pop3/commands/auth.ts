// AUTH (RFC 5034): SASL PLAIN (RFC 4616), with or without an initial response. "AUTH" alone lists the
// mechanisms, as RFC 1734 clients still ask. A client response line may be longer than a command line.

import { err, multiline } from '../codec.ts'
import { bad, command, login, mayAuthenticate, refusePlaintext, reply } from '../context.ts'
import { AUTH_FAILURES_PER_SESSION_MAX, SASL_LINE_BYTES_MAX } from '../constants.ts'
import type { SessionContext } from '../context.ts'

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/

/** authzid NUL authcid NUL passwd (RFC 4616 section 2); null when malformed. */
export function decodePlain (b64: string): { authzid: string, authcid: string, password: string } | null {
  if (b64 === '=') return null // an empty response carries no credentials
  if (!BASE64.test(b64)) return null
  const parts = Buffer.from(b64, 'base64').toString('utf8').split('\0')
  if (parts.length !== 3 || parts[1] === '' || parts[2] === '') return null
  return { authzid: parts[0], authcid: parts[1], password: parts[2] }
}

async function readResponse (ctx: SessionContext): Promise<string | null> {
  await reply(ctx, '+ \r\n')
  const r = await ctx.conn.nextLine(SASL_LINE_BYTES_MAX)
  if (r === null) return null
  if (r.type !== 'line') {
    await reply(ctx, err('Response too long'))
    if (r.type === 'flood') ctx.conn.destroy()
    return null
  }
  return r.line.toString('latin1')
}

export default command({
  name: 'AUTH',
  states: ['authorization'],
  async run (ctx, state, cmd) {
    if (cmd.args.length === 0) {
      return await reply(ctx, multiline('+OK Mechanisms follow\r\n', mayAuthenticate(ctx) ? ['PLAIN'] : []))
    }
    if (cmd.args.length > 2) return await bad(ctx, 'Syntax: AUTH mechanism [initial-response]')
    if (cmd.args[0].toUpperCase() !== 'PLAIN') return await reply(ctx, err('Unsupported authentication mechanism'))
    if (!mayAuthenticate(ctx)) return await refusePlaintext(ctx)
    state.user = null
    const response = cmd.args.length === 2 ? cmd.args[1] : await readResponse(ctx)
    if (response === null) return
    if (response === '*') return await reply(ctx, err('Authentication cancelled')) // RFC 5034 section 4
    const creds = decodePlain(response)
    if (creds === null) {
      state.failures++
      await reply(ctx, err('Malformed PLAIN response', 'AUTH'))
      if (state.failures >= AUTH_FAILURES_PER_SESSION_MAX) ctx.conn.end()
      return
    }
    // No proxy logins: an authorization identity must name the authenticating user itself
    if (creds.authzid !== '' && creds.authzid.toLowerCase() !== creds.authcid.toLowerCase()) {
      state.failures++
      ctx.log.info({ event: 'pop3_auth_failed', user: creds.authcid, mechanism: 'PLAIN', reason: 'authzid' }, 'pop3_auth_failed')
      await reply(ctx, err('Authorization identity not permitted', 'AUTH'))
      if (state.failures >= AUTH_FAILURES_PER_SESSION_MAX) ctx.conn.end()
      return
    }
    await login(ctx, state, creds.authcid, creds.password, 'PLAIN')
  }
})

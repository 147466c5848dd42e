// PASS string (RFC 1939 section 7): checks the password for the name USER gave. The whole rest of the line is
// the password, spaces included, as section 7 allows. The password is never logged.

import { bad, command, login, mayAuthenticate, refusePlaintext } from '../context.ts'

export default command({
  name: 'PASS',
  states: ['authorization'],
  async run (ctx, state, cmd) {
    if (!mayAuthenticate(ctx)) return await refusePlaintext(ctx)
    if (state.user === null) return await bad(ctx, 'USER first')
    if (cmd.rest === '') return await bad(ctx, 'Syntax: PASS password')
    await login(ctx, state, state.user, cmd.rest, 'USER')
  }
})

/** LOGOUT (RFC 3501 section 6.1.3): BYE, then the tagged OK, then close (the dispatcher closes). */
import { compileStatus } from '../protocol/compiler.ts'
import type { CommandModule } from '../command.ts'

export const logout: CommandModule = {
  name: 'LOGOUT',
  syntax: 'LOGOUT',
  states: ['notAuthenticated', 'authenticated', 'selected'],
  args: { min: 0, max: 0 },
  expungeAllowed: true,
  async run (session) {
    session.markLoggedOut()
    await session.connection.write(compileStatus('*', 'BYE', 'Logging out'))
    return undefined
  },
}

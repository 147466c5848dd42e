/** CAPABILITY (RFC 3501 section 6.1.1). */
import { atom } from '../protocol/compiler.ts'
import type { CommandModule } from '../command.ts'

export const capability: CommandModule = {
  name: 'CAPABILITY',
  syntax: 'CAPABILITY',
  states: ['notAuthenticated', 'authenticated', 'selected'],
  args: { min: 0, max: 0 },
  expungeAllowed: true,
  async run (session) {
    await session.send([atom('CAPABILITY'), ...session.capabilities().map(atom)])
    return undefined
  },
}

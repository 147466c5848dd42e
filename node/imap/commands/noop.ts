/** NOOP and CHECK (RFC 3501 sections 6.1.2, 6.4.1): nothing to do; the dispatcher flushes updates. */
import type { CommandModule } from '../command.ts'

export const noop: CommandModule = {
  name: 'NOOP',
  syntax: 'NOOP',
  states: ['notAuthenticated', 'authenticated', 'selected'],
  args: { min: 0, max: 0 },
  expungeAllowed: true,
  async run () { return undefined },
}

/** Every change is durable when its command completes, so CHECK has nothing to write. */
export const check: CommandModule = { ...noop, name: 'CHECK', syntax: 'CHECK', states: ['selected'] }

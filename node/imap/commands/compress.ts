/** COMPRESS DEFLATE (RFC 4978). */
import { keyword } from '../args.ts'
import { CommandRefused } from '../errors.ts'
import type { CommandModule } from '../command.ts'

export const compress: CommandModule = {
  name: 'COMPRESS',
  syntax: 'COMPRESS DEFLATE',
  states: ['authenticated', 'selected'],
  args: { min: 1, max: 1 },
  expungeAllowed: true,
  async run (session, { tag, args }) {
    if (keyword(args[0], 'mechanism') !== 'DEFLATE') throw new CommandRefused('Unsupported mechanism', 'CANNOT')
    // RFC 4978 section 3: a second COMPRESS is refused with [COMPRESSIONACTIVE].
    if (session.connection.compressed) throw new CommandRefused('Already compressing', 'COMPRESSIONACTIVE')
    await session.flushUpdates(true)
    await session.sendStatus(tag, 'OK', 'DEFLATE active')
    await session.connection.startCompression(session.parser.takeBuffered())
    return { done: true }
  },
}

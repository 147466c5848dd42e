/**
 * APPEND (RFC 3501 section 6.3.11) with UIDPLUS's APPENDUID (RFC 4315), literal8 from BINARY
 * (RFC 3516 section 4.4) and the UTF8 data item of RFC 6855 section 4.
 */
import { isMailError, mime } from '../../../store/index.ts'
import { dateTime, flagList, listOf, mailboxName, missingMailboxCode } from '../args.ts'
import { ArgumentError, CommandRefused } from '../errors.ts'
import type { CommandModule, Reply } from '../command.ts'
import type { LiteralToken } from '../protocol/types.ts'
import { num } from '../protocol/compiler.ts'

export const append: CommandModule = {
  name: 'APPEND',
  syntax: 'APPEND mailbox [(flags)] [date-time] literal',
  states: ['authenticated', 'selected'],
  args: { min: 2, max: 4 },
  expungeAllowed: true,
  async run (session, { args }): Promise<Reply> {
    const user = session.user!
    const name = mailboxName(args[0], session.utf8)
    let index = 1
    let flags: string[] = []
    let internalDate: number | undefined
    if (args[index]?.type === 'list') flags = flagList(args[index++])
    if (args[index]?.type === 'string') internalDate = dateTime(args[index++])
    let message = args[index]
    if (message?.type === 'atom' && message.value.toUpperCase() === 'UTF8') {
      // RFC 6855 section 4: `UTF8 (~{n}...)`, allowed once UTF8=ACCEPT is enabled.
      if (!session.utf8) throw new ArgumentError('UTF8 APPEND needs ENABLE UTF8=ACCEPT')
      const inner = listOf(args[index + 1], 'UTF8 data').items
      if (inner.length !== 1) throw new ArgumentError('Invalid UTF8 data')
      message = inner[0]
      index++
    }
    if (message?.type !== 'literal' || index !== args.length - 1) throw new ArgumentError('Expected a literal')
    const literal: LiteralToken = message
    if (literal.size === 0) throw new CommandRefused('Empty message', 'CANNOT')
    // RFC 3516 section 4.4: NUL needs literal8; a plain literal must not carry it.
    if (!literal.binary && literal.chunks.some((c) => c.includes(0))) throw new CommandRefused('NUL in a literal; use literal8', 'CANNOT')
    if (literal.size > session.options.limits.appendBytesMax) throw new CommandRefused('Message too big', 'TOOBIG')
    const bytes = Buffer.concat(literal.chunks, literal.size)
    literal.chunks.length = 0
    // RFC 3516 sections 4.4 and 6: binary parts of a literal8 are stored base64-encoded, so that BODY[n] and
    // BODYSTRUCTURE describe them in an encoding IMAP4 accepts; BINARY[n] gives back the bytes as sent.
    const raw = literal.binary ? mime.encodeBinaryParts(bytes) : bytes
    try {
      const result = await session.components.store.append(user, name, {
        raw, flags, internalDate: internalDate ?? session.now(),
      })
      return { code: { name: 'APPENDUID', args: [num(result.uidValidity), num(result.uid)] }, text: 'APPEND completed' }
    } catch (err) {
      // RFC 3501 section 6.3.11: a missing mailbox is [TRYCREATE].
      if (isMailError(err, 'nonExistent') || isMailError(err, 'notFound')) throw new CommandRefused('No such mailbox', missingMailboxCode(name))
      throw err
    }
  },
}

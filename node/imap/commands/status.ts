/** STATUS (RFC 3501 section 6.3.10, RFC 9051 section 6.3.11). */
import { mailboxName } from '../args.ts'
import { CommandRefused } from '../errors.ts'
import { statusItems, statusResponse } from '../mailboxes.ts'
import type { CommandModule } from '../command.ts'

export const status: CommandModule = {
  name: 'STATUS',
  syntax: 'STATUS mailbox (items)',
  states: ['authenticated', 'selected'],
  args: { min: 2, max: 2 },
  expungeAllowed: true,
  async run (session, { args }) {
    const user = session.user!
    const name = mailboxName(args[0], session.utf8)
    const items = statusItems(args[1])
    const mailbox = await session.components.store.getMailbox(user, name)
    if (mailbox === null) throw new CommandRefused('No such mailbox', 'NONEXISTENT')
    await session.send(await statusResponse(session, user, mailbox, items))
    return undefined
  },
}

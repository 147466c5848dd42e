/** STARTTLS (RFC 3501 section 6.2.1, RFC 9051 section 6.2.1). */
import { CommandRefused } from '../errors.ts'
import type { CommandModule } from '../command.ts'

export const starttls: CommandModule = {
  name: 'STARTTLS',
  syntax: 'STARTTLS',
  states: ['notAuthenticated'],
  args: { min: 0, max: 0 },
  expungeAllowed: true,
  async run (session, { tag }) {
    const context = session.secureContext()
    if (context === null || session.connection.secure) throw new CommandRefused('TLS not available')
    // Anything pipelined after STARTTLS was sent in the clear and must not be obeyed later
    // (the command-injection attack of RFC 2595 section 3.1 / CVE-2011-0411).
    session.parser.takeBuffered()
    await session.sendStatus(tag, 'OK', 'Begin TLS negotiation now')
    try {
      await session.connection.startTls(context)
    } catch (err) {
      session.log.info({ err, event: 'imap_tls_failed' }, 'TLS handshake failed')
      session.connection.destroy()
    }
    return { done: true }
  },
}

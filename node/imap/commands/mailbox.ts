/**
 * CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE (RFC 3501 sections 6.3.3 to 6.3.7). The store
 * enforces the hierarchy rules (no DELETE with children, INBOX rename moves its messages);
 * here we check names and map the answers.
 */
import { keyword, listOf, mailboxName } from '../args.ts'
import { ArgumentError, CommandRefused } from '../errors.ts'
import { DELIMITER } from '../constants.ts'
import type { SpecialUse } from '../../../store/index.ts'
import type { CommandModule } from '../command.ts'
import { atom, list } from '../protocol/compiler.ts'
import { mailboxObjectId } from '../object-ids.ts'

const SPECIAL_USES = new Set(['\\Sent', '\\Drafts', '\\Trash', '\\Junk', '\\Archive', '\\All', '\\Flagged'])

export const create: CommandModule = {
  name: 'CREATE',
  syntax: 'CREATE mailbox [(USE (special-use))]',
  states: ['authenticated', 'selected'],
  args: { min: 1, max: 2 },
  expungeAllowed: true,
  async run (session, { args }) {
    let name = mailboxName(args[0], session.utf8)
    // RFC 3501 section 6.3.3: a trailing delimiter only says the client intends children.
    if (name.endsWith(DELIMITER)) name = name.slice(0, -1)
    if (name === '' || name === 'INBOX') throw new CommandRefused('Cannot create that mailbox', 'ALREADYEXISTS')
    let specialUse: SpecialUse | undefined
    if (args[1] !== undefined) {
      // RFC 6154 section 3: CREATE-SPECIAL-USE parameters.
      const params = listOf(args[1], 'create parameters').items
      if (params.length !== 2 || keyword(params[0]) !== 'USE') throw new ArgumentError('Expected (USE (attributes))')
      const uses = listOf(params[1], 'special-use list').items.map((t) => t.type === 'atom' ? t.value : '')
      if (uses.length !== 1) throw new CommandRefused('Exactly one special use is supported', 'USEATTR')
      const use = [...SPECIAL_USES].find((u) => u.toLowerCase() === uses[0]!.toLowerCase())
      if (use === undefined) throw new CommandRefused('Unknown special use', 'USEATTR')
      specialUse = use as SpecialUse
    }
    const created = await session.components.store.createMailbox(session.user!, name, specialUse === undefined ? {} : { specialUse })
    // RFC 8474 section 4.1: the new mailbox's MAILBOXID in the tagged OK
    return { code: { name: 'MAILBOXID', args: [list([atom(mailboxObjectId(session.user!, created))])] } }
  },
}

export const deleteCommand: CommandModule = {
  name: 'DELETE',
  syntax: 'DELETE mailbox',
  states: ['authenticated', 'selected'],
  args: { min: 1, max: 1 },
  expungeAllowed: true,
  async run (session, { args }) {
    const name = mailboxName(args[0], session.utf8)
    if (name === 'INBOX') throw new CommandRefused('INBOX cannot be deleted', 'CANNOT')
    await session.components.store.deleteMailbox(session.user!, name)
    // Deleting the selected mailbox in this session closes it, as Dovecot does (other sessions get BYE).
    if (session.state.kind === 'selected' && (session.state.mailbox.gone || session.state.mailbox.name === name)) session.unselect()
    return undefined
  },
}

export const rename: CommandModule = {
  name: 'RENAME',
  syntax: 'RENAME from to',
  states: ['authenticated', 'selected'],
  args: { min: 2, max: 2 },
  expungeAllowed: true,
  async run (session, { args }) {
    const from = mailboxName(args[0], session.utf8)
    let to = mailboxName(args[1], session.utf8)
    if (to.endsWith(DELIMITER)) to = to.slice(0, -1)
    if (to === '' || to === 'INBOX') throw new CommandRefused('Cannot rename to that name', 'ALREADYEXISTS')
    await session.components.store.renameMailbox(session.user!, from, to)
    // The selected mailbox stays selected under its new name (ids are stable); renaming INBOX moves its
    // messages out, which the store reports as expunges.
    const view = session.state.kind === 'selected' ? session.state.mailbox : null
    if (view !== null && from !== 'INBOX' && (view.name === from || view.name.startsWith(from + DELIMITER))) {
      view.name = to + view.name.slice(from.length)
    }
    return undefined
  },
}

function subscription (subscribe: boolean): CommandModule {
  const name = subscribe ? 'SUBSCRIBE' : 'UNSUBSCRIBE'
  return {
    name,
    syntax: `${name} mailbox`,
    states: ['authenticated', 'selected'],
    args: { min: 1, max: 1 },
    expungeAllowed: true,
    async run (session, { args }) {
      await session.components.store.setSubscribed(session.user!, mailboxName(args[0], session.utf8), subscribe)
      return undefined
    },
  }
}

export const subscribe = subscription(true)
export const unsubscribe = subscription(false)

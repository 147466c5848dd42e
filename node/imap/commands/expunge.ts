/** EXPUNGE, UID EXPUNGE (RFC 4315 section 2.1), CLOSE and UNSELECT (RFC 3501 6.4.2, RFC 3691). */
import { isMailError } from '../../../store/index.ts'
import { sequenceSet } from '../args.ts'
import { CommandRefused } from '../errors.ts'
import type { CommandModule } from '../command.ts'
import type { Session } from '../session.ts'

/** Expunges the \Deleted messages (within `only`, if given); returns the UIDs removed. */
async function expungeDeleted (session: Session, only: number[] | null): Promise<number[]> {
  if (session.state.kind !== 'selected') return []
  const view = session.state.mailbox
  if (view.readOnly) throw new CommandRefused('Mailbox is read-only', 'READ-ONLY')
  const store = session.components.store
  const allowed = only === null ? null : new Set(only)
  const records = await store.listMessages(session.state.user, view.id)
  const uids = records.filter((r) => r.flags.includes('\\Deleted') && (allowed === null || allowed.has(r.uid))).map((r) => r.uid)
  if (uids.length === 0) return []
  try {
    return (await store.expunge(session.state.user, view.id, uids)).uids
  } catch (err) {
    if (isMailError(err, 'notFound')) return []
    throw err
  }
}

export const expunge: CommandModule = {
  name: 'EXPUNGE',
  syntax: 'EXPUNGE | UID EXPUNGE sequence-set',
  states: ['selected'],
  args: { min: 0, max: 1 },
  uid: true,
  expungeAllowed: true,
  async run (session, { args, uid }) {
    if (session.state.kind !== 'selected') return undefined
    const view = session.state.mailbox
    if (uid !== (args.length === 1)) throw new CommandRefused('UID EXPUNGE takes a UID set; EXPUNGE takes none', 'CLIENTBUG')
    const only = uid ? view.resolve(sequenceSet(args[0]), true) : null
    const removed = await expungeDeleted(session, only)
    const responses = view.removeOwn(removed, session.qresync)
    await Promise.all(responses.map((r) => session.send(r)))
    return undefined
  },
}

export const close: CommandModule = {
  name: 'CLOSE',
  syntax: 'CLOSE',
  states: ['selected'],
  args: { min: 0, max: 0 },
  expungeAllowed: true,
  async run (session) {
    // RFC 3501 section 6.4.2: expunge silently, and no error if the mailbox is read-only.
    if (session.state.kind === 'selected' && !session.state.mailbox.readOnly) await expungeDeleted(session, null)
    session.unselect()
    return undefined
  },
}

export const unselect: CommandModule = {
  name: 'UNSELECT',
  syntax: 'UNSELECT',
  states: ['selected'],
  args: { min: 0, max: 0 },
  expungeAllowed: true,
  async run (session) {
    session.unselect()
    return undefined
  },
}

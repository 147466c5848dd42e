/** COPY, MOVE and their UID forms (RFC 3501 section 6.4.7, RFC 6851), answering COPYUID (RFC 4315). */
import { atom, num } from '../protocol/compiler.ts'
import { formatOrderedSet } from '../protocol/sequence.ts'
import { isMailError } from '../../../store/index.ts'
import { mailboxName, missingMailboxCode, sequenceSet } from '../args.ts'
import { CommandRefused } from '../errors.ts'
import type { CommandModule, Reply } from '../command.ts'

function copyCommand (move: boolean): CommandModule {
  const name = move ? 'MOVE' : 'COPY'
  return {
    name,
    syntax: `${name} sequence-set mailbox`,
    states: ['selected'],
    args: { min: 2, max: 2 },
    uid: true,
    expungeAllowed: true,
    async run (session, { args, uid }): Promise<Reply | undefined> {
      if (session.state.kind !== 'selected') return undefined
      const view = session.state.mailbox
      const user = session.state.user
      const uids = view.resolve(sequenceSet(args[0]), uid)
      const target = mailboxName(args[1], session.utf8)
      if (move && view.readOnly) throw new CommandRefused('Mailbox is read-only', 'READ-ONLY')
      if (uids.length === 0) return { text: `${name} completed, nothing to do` }
      const store = session.components.store
      let result
      try {
        result = move ? await store.move(user, view.id, uids, target) : await store.copy(user, view.id, uids, target)
      } catch (err) {
        // RFC 3501 section 6.4.7: a missing destination is [TRYCREATE].
        if (isMailError(err, 'nonExistent') || isMailError(err, 'notFound')) throw new CommandRefused('No such mailbox', missingMailboxCode(target))
        throw err
      }
      const code = result.pairs.length === 0 ? undefined : {
        name: 'COPYUID',
        args: [num(result.uidValidity), atom(formatOrderedSet(result.pairs.map((p) => p[0]))), atom(formatOrderedSet(result.pairs.map((p) => p[1])))],
      }
      if (!move) return code === undefined ? undefined : { code }
      // RFC 6851 section 4.3: COPYUID goes in an untagged OK before the expunges.
      if (code !== undefined) {
        const text = `[COPYUID ${result.uidValidity} ${formatOrderedSet(result.pairs.map((p) => p[0]))} ${formatOrderedSet(result.pairs.map((p) => p[1]))}] Moved`
        await session.send([atom('OK'), atom(text)])
      }
      const responses = view.removeOwn((result as { expunged?: number[] }).expunged ?? [], session.qresync)
      await Promise.all(responses.map((r) => session.send(r)))
      return undefined
    },
  }
}

export const copy = copyCommand(false)
export const move = copyCommand(true)

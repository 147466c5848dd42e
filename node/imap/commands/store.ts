/** STORE and UID STORE (RFC 3501 section 6.4.6) with UNCHANGEDSINCE (RFC 7162 section 3.1.3). */
import { atom, list, num } from '../protocol/compiler.ts'
import type { Value } from '../protocol/compiler.ts'
import { formatSequenceSet } from '../protocol/sequence.ts'
import { flagList, keyword, listOf, MODSEQ_MAX, number, sequenceSet } from '../args.ts'
import { ArgumentError, CommandRefused } from '../errors.ts'
import type { FlagOp } from '../../../store/index.ts'
import type { CommandModule, Reply } from '../command.ts'

export const store: CommandModule = {
  name: 'STORE',
  syntax: 'STORE sequence-set [(UNCHANGEDSINCE modseq)] [+|-]FLAGS[.SILENT] (flags)',
  states: ['selected'],
  args: { min: 3, max: 4 },
  uid: true,
  expungeAllowed: false,
  async run (session, { args, uid }): Promise<Reply | undefined> {
    if (session.state.kind !== 'selected') return undefined
    const view = session.state.mailbox
    const user = session.state.user
    const set = sequenceSet(args[0])
    let index = 1
    let unchangedSince: number | undefined
    if (args[1]?.type === 'list') {
      const modifiers = listOf(args[1]).items
      if (modifiers.length !== 2 || keyword(modifiers[0]) !== 'UNCHANGEDSINCE') throw new ArgumentError('Invalid STORE modifier')
      unchangedSince = number(modifiers[1], 'mod-sequence', MODSEQ_MAX)
      await session.enableCondstore()
      index = 2
    }
    if (args.length !== index + 2) throw new ArgumentError('Syntax: STORE set [modifiers] item value')
    const item = keyword(args[index], 'store item')
    const match = /^([+-]?)FLAGS(\.SILENT)?$/.exec(item)
    if (match === null) throw new ArgumentError('Invalid STORE item')
    const op: FlagOp = match[1] === '+' ? 'add' : match[1] === '-' ? 'remove' : 'set'
    const silent = match[2] !== undefined
    const flags = flagList(args[index + 1])
    if (view.readOnly) throw new CommandRefused('Mailbox is read-only', 'READ-ONLY')
    const uids = view.resolve(set, uid)
    if (uids.length === 0) return undefined
    const result = await session.components.store.storeFlags(user, view.id, uids, op, flags,
      unchangedSince === undefined ? {} : { unchangedSince })
    for (const change of result.changed) view.noteOwnChange(change.modseq)
    const condstore = session.condstore
    const reports = silent ? (condstore && unchangedSince !== undefined ? [...result.changed] : []) : [...result.changed, ...result.unchanged]
    // Another session's change that committed while this STORE ran is pending for this view, older than the state
    // stored here: its FETCH would take the client back to before this STORE. Each message concerned is reported with
    // its flags now (even after .SILENT), and the older change is then dropped (SelectedMailbox.noteTold).
    // Likewise a message whose flags an update told the client since its last tagged reply (the flush before this
    // command, a NOTIFY push): for the client that FETCH may as well have come after this STORE, so its state would
    // be the older one. RFC 3501 section 6.4.6: an external change is reported after .SILENT too, "the intent is that
    // the status of the flags is determinate without a race condition". Found by test/stress.
    const stale = silent ? [...result.changed, ...result.unchanged].filter((c) => view.hasOlderFlagChange(c.uid, c.modseq) || view.updatedSinceReply(c.uid)) : []
    const staleUids = new Set(stale.map((c) => c.uid))
    for (const change of stale) if (!reports.some((r) => r.uid === change.uid)) reports.push(change)
    reports.sort((a, b) => a.uid - b.uid)
    // RFC 3501 section 7.2.6: keywords new to the session are announced (FLAGS) before any FETCH carries them; also
    // after .SILENT, so that no later FETCH has to.
    for (const change of [...result.changed, ...result.unchanged]) for (const response of view.announceKeywords(change.flags)) await session.send(response)
    for (const change of reports) {
      const seq = view.seqOf(change.uid)
      if (seq === 0) continue
      const items: Value[] = []
      // RFC 7162 section 3.1.3: with .SILENT and UNCHANGEDSINCE only MODSEQ is reported.
      if (!silent || staleUids.has(change.uid)) items.push(atom('FLAGS'), list(view.flagsOf(change.uid, change.flags, session.reportsRecent, change.modseq).map(atom)))
      if (uid || session.qresync) items.push(atom('UID'), num(change.uid))
      if (condstore) items.push(atom('MODSEQ'), list([num(change.modseq)]))
      await session.send([num(seq), atom('FETCH'), list(items)])
    }
    if (result.failedUnchangedSince.length > 0) {
      const failed = uid ? result.failedUnchangedSince : result.failedUnchangedSince.map((u) => view.seqOf(u)).filter((s) => s > 0)
      return { code: { name: 'MODIFIED', args: [atom(formatSequenceSet(failed))] }, text: 'Some messages were modified' }
    }
    return undefined
  },
}

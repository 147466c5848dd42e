/**
 * SELECT and EXAMINE (RFC 3501 sections 6.3.1, 6.3.2; RFC 9051 section 6.3.2), with the
 * CONDSTORE and QRESYNC parameters (RFC 7162 sections 3.1.8, 3.2.5).
 */
import { atom, list, num, str } from '../protocol/compiler.ts'
import type { Value } from '../protocol/compiler.ts'
import { inRanges, resolveSequenceSet, formatSequenceSet } from '../protocol/sequence.ts'
import { keyword, listOf, mailboxName, MODSEQ_MAX, number, sequenceSet } from '../args.ts'
import { ArgumentError, CommandRefused } from '../errors.ts'
import { SelectedMailbox } from '../mailbox-view.ts'
import { hierarchy, wireName } from '../mailboxes.ts'
import { DELIMITER } from '../constants.ts'
import type { CommandModule, Reply } from '../command.ts'
import type { Session } from '../session.ts'
import type { Token } from '../protocol/types.ts'
import type { Mailbox } from '../../../store/index.ts'
import { mailboxObjectId } from '../object-ids.ts'

interface Qresync {
  uidValidity: number
  modseq: number
  knownUids: ReturnType<typeof resolveSequenceSet> | null
}

function parseParams (session: Session, token: Token | undefined): Qresync | null {
  if (token === undefined) return null
  const items = listOf(token, 'select parameters').items
  let qresync: Qresync | null = null
  for (let i = 0; i < items.length; i++) {
    const name = keyword(items[i], 'select parameter')
    if (name === 'CONDSTORE') {
      session.enabled.add('CONDSTORE')
    } else if (name === 'QRESYNC') {
      // RFC 7162 section 3.2.5: QRESYNC must have been ENABLEd first.
      if (!session.qresync) throw new ArgumentError('QRESYNC is not enabled')
      const params = listOf(items[++i], 'QRESYNC parameters').items
      if (params.length < 2 || params.length > 4) throw new ArgumentError('Invalid QRESYNC parameters')
      const known = params[2] === undefined ? null : sequenceSet(params[2])
      if (params[3] !== undefined) {
        // seq-match-data: (known-sequence-set known-uid-set). Checked but not used: it only lets a server
        // shorten VANISHED (EARLIER), and the full list within known-uids is always a correct answer.
        const match = listOf(params[3], 'sequence match data').items
        if (match.length !== 2) throw new ArgumentError('Invalid sequence match data')
        const [seqs, uids] = match.map((t) => sequenceSet(t))
        if (seqs === '$' || uids === '$') throw new ArgumentError('Invalid sequence match data')
      }
      qresync = {
        uidValidity: number(params[0], 'UIDVALIDITY'),
        modseq: number(params[1], 'mod-sequence', MODSEQ_MAX),
        knownUids: known === null || known === '$' ? null : resolveSequenceSet(known, 0xffffffff),
      }
    } else {
      throw new ArgumentError(`Unknown select parameter ${name}`)
    }
  }
  return qresync
}

function selectCommand (readOnly: boolean): CommandModule {
  const name = readOnly ? 'EXAMINE' : 'SELECT'
  return {
    name,
    syntax: `${name} mailbox [(CONDSTORE | QRESYNC (uidvalidity modseq [uids]))]`,
    states: ['authenticated', 'selected'],
    args: { min: 1, max: 2 },
    expungeAllowed: true,
    async run (session, { args }): Promise<Reply> {
      const user = session.user!
      const name = mailboxName(args[0], session.utf8)
      const qresync = parseParams(session, args[1])
      if (session.state.kind === 'selected') {
        session.unselect()
        // RFC 7162 section 3.2.11, RFC 9051 section 7.1: the old mailbox is closed from here on.
        if (session.qresync || session.enabled.has('IMAP4REV2')) {
          await session.send([atom('OK'), atom('[CLOSED]'), atom('Previous mailbox closed')])
        }
      }
      const store = session.components.store
      const mailbox = await store.getMailbox(user, name)
      if (mailbox === null) throw new CommandRefused('No such mailbox', 'NONEXISTENT')
      // changes that commit while the listing is read reach the view (session.select), not only the listing
      session.beginSelect(mailbox.id)
      // UIDs and flags only (from the store's in-memory index where it offers one): no record is decoded
      const listing = store.listFlags !== undefined
        ? await store.listFlags(user, mailbox.id)
        : await store.listMessages(user, mailbox.id).then((records) => ({ uids: records.map((r) => r.uid), flags: records.map((r) => r.flags) }))
      const keywords = new Set<string>()
      let firstUnseen = 0
      let lastSeen = -1
      listing.flags.forEach((flags, index) => {
        for (const flag of flags) if (!flag.startsWith('\\')) keywords.add(flag)
        if (!flags.includes('\\Seen')) {
          if (firstUnseen === 0) firstUnseen = index + 1
        } else {
          lastSeen = index
        }
      })
      // RFC 3501 section 2.3.2: the messages recent in this session (claimed now when it is read-write, recent.ts)
      const recent = session.openRecent(mailbox.id, listing.uids, lastSeen, readOnly)
      const view = new SelectedMailbox({
        id: mailbox.id, name: mailbox.name, readOnly, uidValidity: mailbox.uidValidity,
        uids: listing.uids, highestModseq: mailbox.highestModseq, keywords, recent,
      })
      // Selected from the moment the listing is read, before anything is awaited: a message that arrives while the
      // responses below are written is then held for this view (EXISTS after them), not missed, and it is claimed
      // as recent into it. A SELECT that fails from here leaves the session unselected (RFC 3501 section 6.3.1).
      session.select(view)
      try {
        await selectResponses(session, user, view, mailbox, { recent: recent.length, firstUnseen })
      } catch (err) {
        session.unselect()
        throw err
      }
      if (qresync !== null && qresync.uidValidity === mailbox.uidValidity) {
        await resync(session, user, view, qresync)
      }
      return { code: { name: readOnly ? 'READ-ONLY' : 'READ-WRITE' }, text: `${name} completed` }
    },
  }
}

/** The untagged responses of SELECT and EXAMINE (RFC 3501 section 6.3.1, RFC 9051 section 6.3.2). */
async function selectResponses (session: Session, user: string, view: SelectedMailbox, mailbox: Mailbox, counts: { recent: number, firstUnseen: number }): Promise<void> {
  const store = session.components.store
  const { firstUnseen } = counts
  for (const response of view.flagsResponses()) await session.send(response)
  await session.send([num(view.exists), atom('EXISTS')])
  if (!session.enabled.has('IMAP4REV2')) {
    await session.send([num(counts.recent), atom('RECENT')])
    if (firstUnseen > 0) await session.send([atom('OK'), atom(`[UNSEEN ${firstUnseen}] First unseen`)])
  }
  await session.send([atom('OK'), atom(`[UIDVALIDITY ${mailbox.uidValidity}] UIDs valid`)])
  // the listing may hold a message that arrived after the mailbox was read: UIDNEXT is above it
  const uidNext = Math.max(mailbox.uidNext, view.exists === 0 ? 0 : view.uids[view.exists - 1]! + 1)
  await session.send([atom('OK'), atom(`[UIDNEXT ${uidNext}] Predicted next UID`)])
  await session.send([atom('OK'), atom(`[HIGHESTMODSEQ ${mailbox.highestModseq}] Highest`)])
  // RFC 8474 section 4.1
  await session.send([atom('OK'), atom(`[MAILBOXID (${mailboxObjectId(user, mailbox)})] Ok`)])
  if (session.enabled.has('IMAP4REV2')) {
    // RFC 9051 section 6.3.2: LIST is a required response, with the mailbox's exact name and attributes.
    const names = (await store.listMailboxes(user)).map((m) => m.name)
    const attributes = [...(mailbox.specialUse === null ? [] : [mailbox.specialUse]),
      hierarchy(names).parents.has(mailbox.name) ? '\\HasChildren' : '\\HasNoChildren']
    await session.send([atom('LIST'), list(attributes.map(atom)), str(DELIMITER), wireName(session, mailbox.name)])
  }
}

/** RFC 7162 section 3.2.5.2: VANISHED (EARLIER) for expunged UIDs, then FETCH for changed ones. */
async function resync (session: Session, user: string, view: SelectedMailbox, qresync: Qresync): Promise<void> {
  const changes = await session.components.store.changesSince(user, view.id, qresync.modseq)
  const known = qresync.knownUids
  const vanished = changes.expunged.filter((uid) => known === null || inRanges(known, uid))
  if (vanished.length > 0) {
    await session.send([atom('VANISHED'), atom('(EARLIER)'), atom(formatSequenceSet(vanished))])
  }
  for (const record of changes.changed) {
    const seq = view.seqOf(record.uid)
    if (seq === 0) continue
    const flags = view.flagsOf(record.uid, record.flags, session.reportsRecent)
    const items: Value[] = [atom('UID'), num(record.uid), atom('FLAGS'), list(flags.map(atom)), atom('MODSEQ'), list([num(record.modseq)])]
    await session.send([num(seq), atom('FETCH'), list(items)])
  }
}

export const select = selectCommand(false)
export const examine = selectCommand(true)

/**
 * APPEND (RFC 3501 section 6.3.11) with UIDPLUS's APPENDUID (RFC 4315), literal8 from BINARY (RFC 3516 section 4.4),
 * the UTF8 data item of RFC 6855 section 4, MULTIAPPEND (RFC 3502: several messages, all or none, one APPENDUID with
 * a UID set), CATENATE (RFC 4469: a message built from TEXT literals and IMAP URLs of messages or parts the user can
 * read) and REPLACE / UID REPLACE (RFC 8508: append, then expunge the replaced message, in one store batch).
 */
import { isMailError, mime } from '../../../store/index.ts'
import type { AppendInput } from '../../../store/index.ts'
import { astring, dateTime, flagList, keyword, listOf, mailboxName, missingMailboxCode, sequenceSet } from '../args.ts'
import { ArgumentError, CommandRefused } from '../errors.ts'
import type { CommandModule, Reply } from '../command.ts'
import type { LiteralToken, Token } from '../protocol/types.ts'
import { atom, num, str } from '../protocol/compiler.ts'
import { formatOrderedSet } from '../protocol/sequence.ts'
import { COMMAND_LITERALS_MAX } from '../protocol/constants.ts'
import type { Session } from '../session.ts'
import { BadUrl, parseImapUrl, readUrl, UrlTooBig } from '../urls.ts'
import type { ImapUrl } from '../urls.ts'
import { verifyUrlauth } from '../urlauth.ts'

/** Parts of one CATENATE (RFC 4469 sets no bound; each TEXT is a literal, which the parser bounds too). */
export const CATENATE_PARTS_MAX = 256

/** Bytes one command may build, all its messages together (literals and what CATENATE URLs bring in). */
export const APPEND_COMMAND_BYTES_MAX = 128 * 1024 * 1024

type Piece = { kind: 'text', literal: LiteralToken } | { kind: 'url', url: string }

interface MessageArg {
  flags: string[]
  internalDate: number | undefined
  /** The message literal, or the CATENATE parts. */
  literal: LiteralToken | null
  pieces: Piece[] | null
}

/** A URL CATENATE cannot use: answered NO [BADURL "url"] (RFC 4469 section 5). */
class UrlRefused extends Error {
  readonly url: string
  constructor (url: string, text: string) {
    super(text)
    this.url = url
  }
}

/** Reads `1*append-message` from args[start]: `[flag-list] [date-time] (literal / UTF8 (literal8) / CATENATE (...))`. */
function parseMessages (session: Session, args: Token[], start: number): MessageArg[] {
  const out: MessageArg[] = []
  let i = start
  while (i < args.length) {
    let flags: string[] = []
    let internalDate: number | undefined
    if (args[i]?.type === 'list') flags = flagList(args[i++])
    if (args[i]?.type === 'string') internalDate = dateTime(args[i++])
    const data = args[i++]
    if (data?.type === 'literal') {
      out.push({ flags, internalDate, literal: data, pieces: null })
      continue
    }
    const word = data?.type === 'atom' && data.section === undefined ? data.value.toUpperCase() : ''
    if (word === 'UTF8') {
      // RFC 6855 section 4: `UTF8 (~{n}...)`, allowed once UTF8=ACCEPT is enabled.
      if (!session.utf8) throw new ArgumentError('UTF8 APPEND needs ENABLE UTF8=ACCEPT')
      const inner = listOf(args[i++], 'UTF8 data').items
      if (inner.length !== 1 || inner[0]!.type !== 'literal') throw new ArgumentError('Invalid UTF8 data')
      out.push({ flags, internalDate, literal: inner[0], pieces: null })
      continue
    }
    if (word === 'CATENATE') {
      const items = listOf(args[i++], 'CATENATE parts').items
      if (items.length === 0) throw new ArgumentError('Empty CATENATE')
      if (items.length > 2 * CATENATE_PARTS_MAX) throw new ArgumentError('Too many CATENATE parts', 'LIMIT')
      const pieces: Piece[] = []
      for (let k = 0; k < items.length; k += 2) {
        const kind = keyword(items[k], 'CATENATE part')
        const value = items[k + 1]
        if (kind === 'TEXT') {
          if (value?.type !== 'literal') throw new ArgumentError('CATENATE TEXT needs a literal')
          pieces.push({ kind: 'text', literal: value })
        } else if (kind === 'URL') {
          if (value === undefined || value.type === 'list') throw new ArgumentError('CATENATE URL needs a URL')
          pieces.push({ kind: 'url', url: astring(value, 'URL') })
        } else {
          throw new ArgumentError(`Unknown CATENATE part ${kind.slice(0, 16)}`)
        }
      }
      out.push({ flags, internalDate, literal: null, pieces })
      continue
    }
    throw new ArgumentError('Expected a literal')
  }
  if (out.length === 0) throw new ArgumentError('Expected a message')
  return out
}

/** One literal's bytes, checked as APPEND checks a message literal; the chunks are released. */
function literalBytes (session: Session, literal: LiteralToken): Buffer {
  // RFC 3516 section 4.4: NUL needs literal8; a plain literal must not carry it.
  if (!literal.binary && literal.chunks.some((c) => c.includes(0))) throw new CommandRefused('NUL in a literal; use literal8', 'CANNOT')
  if (literal.size > session.options.limits.appendBytesMax) throw new CommandRefused('Message too big', 'TOOBIG')
  const bytes = Buffer.concat(literal.chunks, literal.size)
  literal.chunks.length = 0
  // RFC 3516 sections 4.4 and 6: binary parts of a literal8 are stored base64-encoded, so that BODY[n] and
  // BODYSTRUCTURE describe them in an encoding IMAP4 accepts; BINARY[n] gives back the bytes as sent.
  return literal.binary ? mime.encodeBinaryParts(bytes) : bytes
}

/** The bytes a CATENATE URL names, for this session's user (RFC 4469 section 5: it must be able to read them). */
async function urlBytes (session: Session, text: string, max: number): Promise<Buffer> {
  const user = session.user!
  let url: ImapUrl
  try {
    url = parseImapUrl(text)
    let owner = user
    if (url.urlauth !== null) {
      // RFC 4469 section 5: a URLAUTH-authorized URL is read with its owner's key, if it lets this user read it
      owner = await verifyUrlauth(session.components.store, url, { user, submitFor: null }, session.now())
    } else if (url.user !== null && url.user.toLowerCase() !== user.toLowerCase()) {
      // no shared mailboxes: another user's mailbox names nothing this user may read
      throw new BadUrl(text, 'Not this user\'s mailbox')
    }
    return await readUrl(session.components.store, owner, url, max)
  } catch (err) {
    if (err instanceof BadUrl) throw new UrlRefused(text, err.message)
    if (err instanceof UrlTooBig) throw new CommandRefused('Catenated message too big', 'TOOBIG')
    throw err
  }
}

/** Builds each message's bytes: literals as sent, CATENATE parts joined (RFC 4469 section 5). */
async function buildMessages (session: Session, messages: MessageArg[]): Promise<AppendInput[]> {
  const max = session.options.limits.appendBytesMax
  let total = 0
  const inputs: AppendInput[] = []
  for (const m of messages) {
    let raw: Buffer
    if (m.literal !== null) {
      raw = literalBytes(session, m.literal)
    } else {
      const parts: Buffer[] = []
      let size = 0
      for (const piece of m.pieces!) {
        const bytes = piece.kind === 'text' ? literalBytes(session, piece.literal) : await urlBytes(session, piece.url, max - size)
        size += bytes.length
        // RFC 4469 section 5: a result above the server's limit is NO [TOOBIG]
        if (size > max) throw new CommandRefused('Catenated message too big', 'TOOBIG')
        parts.push(bytes)
      }
      raw = Buffer.concat(parts, size)
    }
    if (raw.length === 0) throw new CommandRefused('Empty message', 'CANNOT')
    total += raw.length
    if (total > APPEND_COMMAND_BYTES_MAX) throw new CommandRefused('Messages too big together', 'TOOBIG')
    inputs.push({ raw, flags: m.flags, internalDate: m.internalDate ?? session.now() })
  }
  return inputs
}

function badUrlReply (err: UrlRefused): Reply {
  return { status: 'NO', code: { name: 'BADURL', args: [str(err.url)] }, text: `Bad URL: ${err.message}` }
}

export const append: CommandModule = {
  name: 'APPEND',
  syntax: 'APPEND mailbox 1*([(flags)] [date-time] (literal / CATENATE (parts)))',
  states: ['authenticated', 'selected'],
  args: { min: 2, max: 4 * COMMAND_LITERALS_MAX + 2 },
  expungeAllowed: true,
  async run (session, { args }): Promise<Reply> {
    const user = session.user!
    const name = mailboxName(args[0], session.utf8)
    const messages = parseMessages(session, args, 1)
    let inputs: AppendInput[]
    try {
      inputs = await buildMessages(session, messages)
    } catch (err) {
      if (err instanceof UrlRefused) return badUrlReply(err)
      throw err
    }
    const store = session.components.store
    try {
      if (inputs.length === 1) {
        const result = await store.append(user, name, inputs[0]!)
        return { code: { name: 'APPENDUID', args: [num(result.uidValidity), num(result.uid)] }, text: 'APPEND completed' }
      }
      // RFC 3502 section 6.3.11: all or none; one APPENDUID with the set of new UIDs (RFC 4315 section 3)
      const { appended } = await store.appendMany(user, name, inputs)
      return { code: { name: 'APPENDUID', args: [num(appended[0]!.uidValidity), atom(formatOrderedSet(appended.map((a) => a.uid)))] }, text: 'MULTIAPPEND completed' }
    } catch (err) {
      // RFC 3501 section 6.3.11: a missing mailbox is [TRYCREATE].
      if (isMailError(err, 'nonExistent') || isMailError(err, 'notFound')) throw new CommandRefused('No such mailbox', missingMailboxCode(name))
      throw err
    }
  },
}

/**
 * REPLACE and UID REPLACE (RFC 8508): the new message is appended to the named mailbox and the replaced one expunged
 * from the selected mailbox, in one store batch, so either both happen or neither. APPENDUID goes in an untagged OK
 * before the EXPUNGE (section 3.3); the replaced message must exist (a UID that names none is NO, a sequence number
 * out of range BAD).
 */
export const replace: CommandModule = {
  name: 'REPLACE',
  syntax: 'REPLACE seq mailbox [(flags)] [date-time] (literal / CATENATE (parts))',
  states: ['selected'],
  args: { min: 3, max: 6 },
  uid: true,
  expungeAllowed: true,
  async run (session, { args, uid }): Promise<Reply | undefined> {
    if (session.state.kind !== 'selected') return undefined
    const view = session.state.mailbox
    const user = session.state.user
    // seq-number: nz-number or `*` (RFC 8508 section 5); an empty mailbox has no message to replace
    if (args[0]?.type !== 'atom' || !/^([1-9]\d{0,9}|\*)$/.test(args[0].value)) throw new ArgumentError('REPLACE takes one message number')
    const set = sequenceSet(args[0])
    if (!uid && view.uids.length === 0) throw new ArgumentError('Invalid message sequence number')
    const name = mailboxName(args[1], session.utf8)
    const messages = parseMessages(session, args, 2)
    if (messages.length !== 1) throw new ArgumentError('REPLACE takes one message')
    if (view.readOnly) throw new CommandRefused('Mailbox is read-only', 'READ-ONLY')
    const [old] = view.resolve(set, uid)
    if (old === undefined) throw new CommandRefused('No such message', 'NONEXISTENT')
    let inputs: AppendInput[]
    try {
      inputs = await buildMessages(session, messages)
    } catch (err) {
      if (err instanceof UrlRefused) return badUrlReply(err)
      throw err
    }
    let result
    try {
      result = await session.components.store.appendMany(user, name, inputs, { expunge: { mailbox: view.id, uids: [old] } })
    } catch (err) {
      if (isMailError(err, 'nonExistent') || isMailError(err, 'notFound')) throw new CommandRefused('No such mailbox', missingMailboxCode(name))
      throw err
    }
    const added = result.appended[0]!
    await session.send([atom('OK'), atom(`[APPENDUID ${added.uidValidity} ${added.uid}] Replacement Message ready`)])
    const responses = view.removeOwn(result.expunged?.uids ?? [], session.qresync)
    await Promise.all(responses.map((r) => session.send(r)))
    return { text: `${uid ? 'UID ' : ''}REPLACE completed` }
  },
}

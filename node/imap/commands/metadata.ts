/**
 * METADATA (RFC 5464): GETMETADATA with MAXSIZE and DEPTH, SETMETADATA, server entries (mailbox "") and mailbox
 * entries, /private and /shared. Entries are the store's per-user attributes (MailStore.getAttr/listAttrs/setAttrs:
 * an 'attr' log entry, replicated and merged like any change of the user's mail), under `imap/meta/` + the mailbox
 * id ('' for the server) + the entry name in lower case (entry names are case-insensitive, section 3.2), so that a
 * rename keeps them; a deleted mailbox's entries are out of reach (ids are never reused) but still count toward the
 * user's limit. Values are bytes (base64 in the attribute). A mailbox has one user
 * here, so /shared entries are that user's as /private ones are; both are kept apart as named.
 *
 * Limits: a value above METADATA_VALUE_BYTES_MAX is NO [METADATA MAXSIZE n]; more than METADATA_ENTRIES_MAX entries
 * for the user is NO [METADATA TOOMANY]; GETMETADATA's MAXSIZE leaves out longer values with OK [METADATA
 * LONGENTRIES n] (section 4.2.1).
 */
import { isMailError } from '../../../store/index.ts'
import { astring, isNil, keyword, listOf, mailboxName, number } from '../args.ts'
import { ArgumentError, CommandRefused } from '../errors.ts'
import { atom, list, str } from '../protocol/compiler.ts'
import type { Value } from '../protocol/compiler.ts'
import type { Token } from '../protocol/types.ts'
import { wireName } from '../mailboxes.ts'
import type { CommandModule, Reply } from '../command.ts'
import type { Session } from '../session.ts'

export const METADATA_PREFIX = 'imap/meta/'
/** One entry's value. */
export const METADATA_VALUE_BYTES_MAX = 64 * 1024
/** Entries per user, server and mailboxes together. */
export const METADATA_ENTRIES_MAX = 500
/** Entries one command names. */
export const METADATA_NAMES_MAX = 100
const ENTRY_BYTES_MAX = 256

/**
 * An entry name (section 3.2): /private/... or /shared/..., no `*`, `%`, `//`, trailing `/` or control characters;
 * ours are also atoms (no space, parentheses, braces, quotes, backslash or `]`), so they are written as the RFC's
 * examples write them.
 */
function entryName (token: Token | undefined): string {
  const name = astring(token, 'entry name')
  if (Buffer.byteLength(name) > ENTRY_BYTES_MAX || !/^\/(private|shared)(\/[^/*%\x00-\x20\x7f(){}"\\\]]+)+$/i.test(name)) {
    throw new ArgumentError(`Invalid entry name ${JSON.stringify(name.slice(0, 64))}`)
  }
  return name.toLowerCase()
}

/** The mailbox's id, '' for the server; NO [NONEXISTENT] for a missing mailbox. */
async function scopeOf (session: Session, token: Token | undefined): Promise<{ id: string, name: string }> {
  const name = astring(token, 'mailbox')
  if (name === '') return { id: '', name: '' }
  const mailbox = await session.components.store.getMailbox(session.user!, mailboxName(token, session.utf8))
  if (mailbox === null) throw new CommandRefused('No such mailbox', 'NONEXISTENT')
  return { id: mailbox.id, name: mailbox.name }
}

const keyOf = (scope: string, entry: string): string => `${METADATA_PREFIX}${scope}${entry}`

function valueOf (bytes: Buffer): Value {
  // NUL needs literal8 (RFC 3516); anything else is a string, quoted when it can be
  return bytes.includes(0) ? { type: 'literal', value: bytes, binary: true } : str(bytes)
}

function valueBytes (token: Token | undefined): Buffer | null {
  if (isNil(token)) return null
  if (token?.type === 'literal') return Buffer.concat(token.chunks, token.size)
  if (token?.type === 'string' || (token?.type === 'atom' && token.section === undefined)) return Buffer.from(token.value, 'utf8')
  throw new ArgumentError('Invalid entry value')
}

export const getmetadata: CommandModule = {
  name: 'GETMETADATA',
  syntax: 'GETMETADATA [(MAXSIZE n) (DEPTH 0|1|infinity)] mailbox (entry ...) | entry',
  states: ['authenticated', 'selected'],
  args: { min: 2, max: 3 },
  expungeAllowed: true,
  async run (session, { args }): Promise<Reply | undefined> {
    const user = session.user!
    let index = 0
    let maxSize: number | null = null
    let depth: 0 | 1 | 'infinity' = 0
    if (args[0]?.type === 'list') {
      const options = args[0].items
      for (let i = 0; i < options.length; i++) {
        const option = keyword(options[i], 'option')
        if (option === 'MAXSIZE') maxSize = number(options[++i], 'MAXSIZE')
        else if (option === 'DEPTH') {
          const d = keyword(options[++i], 'DEPTH')
          if (d !== '0' && d !== '1' && d !== 'INFINITY') throw new ArgumentError('DEPTH is 0, 1 or infinity')
          depth = d === 'INFINITY' ? 'infinity' : Number(d) as 0 | 1
        } else throw new ArgumentError(`Unknown option ${option.slice(0, 32)}`)
      }
      index = 1
    }
    if (args.length !== index + 2) throw new ArgumentError('Syntax: GETMETADATA [options] mailbox entries')
    const scope = await scopeOf(session, args[index])
    const namesToken = args[index + 1]!
    const names = namesToken.type === 'list' ? namesToken.items.map(entryName) : [entryName(namesToken)]
    if (names.length === 0 || names.length > METADATA_NAMES_MAX) throw new ArgumentError('Expected 1 to 100 entry names')
    const store = session.components.store
    const values: Value[] = []
    let longest = 0
    const add = (entry: string, bytes: Buffer | null): void => {
      if (bytes !== null && maxSize !== null && bytes.length > maxSize) {
        longest = Math.max(longest, bytes.length)
        return
      }
      values.push(atom(entry), bytes === null ? null : valueOf(bytes))
    }
    const seen = new Set<string>()
    for (const entry of names) {
      if (seen.has(entry)) continue
      seen.add(entry)
      const own = await store.getAttr(user, keyOf(scope.id, entry))
      // section 4.2: an entry asked for by name and without a value is NIL
      if (own !== null || depth === 0) add(entry, own === null ? null : Buffer.from(own, 'base64'))
      if (depth === 0) continue
      const prefix = keyOf(scope.id, entry) + '/'
      for (const attr of await store.listAttrs(user, prefix, { limit: METADATA_ENTRIES_MAX })) {
        const rest = attr.key.slice(prefix.length)
        if (depth === 1 && rest.includes('/')) continue
        const child = `${entry}/${rest}`
        if (seen.has(child)) continue
        seen.add(child)
        add(child, Buffer.from(attr.value, 'base64'))
      }
    }
    if (values.length > 0) await session.send([atom('METADATA'), scope.id === '' ? str('') : wireName(session, scope.name), list(values)])
    if (longest > 0) return { code: { name: 'METADATA', args: [atom('LONGENTRIES'), atom(String(longest))] }, text: 'GETMETADATA completed' }
    return undefined
  },
}

export const setmetadata: CommandModule = {
  name: 'SETMETADATA',
  syntax: 'SETMETADATA mailbox (entry value ...)',
  states: ['authenticated', 'selected'],
  args: { min: 2, max: 2 },
  expungeAllowed: true,
  async run (session, { args }): Promise<Reply | undefined> {
    const user = session.user!
    const scope = await scopeOf(session, args[0])
    const items = listOf(args[1], 'entry list').items
    if (items.length === 0 || items.length % 2 !== 0) throw new ArgumentError('Expected entry-value pairs')
    if (items.length / 2 > METADATA_NAMES_MAX) throw new ArgumentError('Too many entries in one command', 'LIMIT')
    const changes: Array<{ key: string, value: string | null }> = []
    for (let i = 0; i < items.length; i += 2) {
      const entry = entryName(items[i])
      const bytes = valueBytes(items[i + 1])
      if (bytes !== null && bytes.length > METADATA_VALUE_BYTES_MAX) {
        throw new CommandRefused('Value too large', `METADATA MAXSIZE ${METADATA_VALUE_BYTES_MAX}`)
      }
      changes.push({ key: keyOf(scope.id, entry), value: bytes === null ? null : bytes.toString('base64') })
    }
    const store = session.components.store
    const existing = new Set((await store.listAttrs(user, METADATA_PREFIX, { limit: METADATA_ENTRIES_MAX + 1 })).map((a) => a.key))
    const after = new Set(existing)
    for (const c of changes) if (c.value === null) after.delete(c.key); else after.add(c.key)
    if (after.size > METADATA_ENTRIES_MAX && after.size > existing.size) throw new CommandRefused('Too many entries', 'METADATA TOOMANY')
    try {
      await store.setAttrs(user, changes)
    } catch (err) {
      if (isMailError(err, 'limit') || isMailError(err, 'tooBig')) throw new CommandRefused('Too much metadata for this user', 'METADATA TOOMANY')
      throw err
    }
    return undefined
  },
}

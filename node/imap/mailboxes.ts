/**
 * Mailbox-level helpers shared by LIST, LSUB, STATUS and SELECT: name encoding for the wire,
 * LIST pattern matching (RFC 3501 section 6.3.8) and STATUS items (RFC 3501 section 6.3.10,
 * RFC 9051 section 6.3.11, RFC 7162, RFC 7889).
 */
import type { Mailbox } from '../../store/index.ts'
import { atom, list, num, str } from './protocol/compiler.ts'
import type { Value } from './protocol/compiler.ts'
import { encodeMutf7 } from './protocol/mutf7.ts'
import { keyword } from './args.ts'
import { ArgumentError } from './errors.ts'
import { DELIMITER } from './constants.ts'
import type { Token } from './protocol/types.ts'
import type { Session } from './session.ts'

/** A mailbox name as the client expects it: UTF-8 once enabled, modified UTF-7 before. */
export function wireName (session: Session, name: string): Value {
  const encoded = session.utf8 ? name : encodeMutf7(name)
  // A name that is a plain atom goes out bare (`INBOX`, `Sent`), as most servers send it.
  return SAFE_ATOM.test(encoded) && encoded.toUpperCase() !== 'NIL' ? atom(encoded) : str(encoded)
}

const SAFE_ATOM = /^[A-Za-z0-9_.\-/&+,]{1,200}$/

/** Patterns per LIST-EXTENDED command (bounds the regex work). */
export const LIST_PATTERNS_MAX = 32

/**
 * Compiles a LIST pattern: `*` matches anything, `%` anything but the delimiter. INBOX is
 * case-insensitive (RFC 3501 section 5.1), including as the first level of a pattern.
 */
export function listMatcher (reference: string, pattern: string): RegExp {
  let full = reference + pattern
  if (full.slice(0, 5).toUpperCase() === 'INBOX' && (full.length === 5 || full[5] === DELIMITER)) full = 'INBOX' + full.slice(5)
  let source = ''
  for (const char of full) {
    if (char === '*') source += '.*'
    else if (char === '%') source += '[^' + DELIMITER + ']*'
    else source += char.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
  }
  return new RegExp('^' + source + '$', 'su')
}

export const STATUS_ITEMS = new Set(['MESSAGES', 'RECENT', 'UIDNEXT', 'UIDVALIDITY', 'UNSEEN', 'HIGHESTMODSEQ', 'SIZE', 'DELETED', 'APPENDLIMIT'])

export function statusItems (token: Token | undefined): string[] {
  if (token?.type !== 'list' || token.items.length === 0) throw new ArgumentError('Expected status items')
  const items = token.items.map((t) => keyword(t, 'status item'))
  for (const item of items) if (!STATUS_ITEMS.has(item)) throw new ArgumentError(`Unknown status item ${item}`)
  return items
}

/** The `* STATUS name (...)` response. DELETED needs the message list; it is read only if asked. */
export async function statusResponse (session: Session, user: string, mailbox: Mailbox, items: string[]): Promise<Value[]> {
  if (items.includes('HIGHESTMODSEQ')) await session.enableCondstore()
  const values: Value[] = []
  for (const item of items) {
    let value: Value
    switch (item) {
      case 'MESSAGES': value = num(mailbox.messages); break
      case 'RECENT': value = num(await recentCount(session, user, mailbox)); break
      case 'UIDNEXT': value = num(mailbox.uidNext); break
      case 'UIDVALIDITY': value = num(mailbox.uidValidity); break
      case 'UNSEEN': value = num(mailbox.unseen); break
      case 'HIGHESTMODSEQ': value = num(mailbox.highestModseq); break
      case 'SIZE': value = num(mailbox.size); break
      case 'APPENDLIMIT': value = num(session.options.limits.appendBytesMax); break
      case 'DELETED': {
        const records = await session.components.store.listMessages(user, mailbox.id)
        value = num(records.filter((r) => r.flags.includes('\\Deleted')).length)
        break
      }
      default: throw new ArgumentError(`Unknown status item ${item}`)
    }
    values.push(atom(item), value)
  }
  return [atom('STATUS'), wireName(session, mailbox.name), list(values)]
}

/**
 * STATUS RECENT (RFC 3501 section 6.3.10): in the mailbox this session has selected, its own recent messages; in
 * another, those no session has claimed yet (recent.ts), which the next session to select it will have.
 */
async function recentCount (session: Session, user: string, mailbox: Mailbox): Promise<number> {
  if (session.state.kind === 'selected' && session.state.mailbox.id === mailbox.id) return session.state.mailbox.recentCount()
  const store = session.components.store
  const listing = store.listFlags !== undefined
    ? await store.listFlags(user, mailbox.id)
    : await store.listMessages(user, mailbox.id).then((records) => ({ uids: records.map((r) => r.uid), flags: records.map((r) => r.flags) }))
  let lastSeen = listing.flags.length - 1
  while (lastSeen >= 0 && !listing.flags[lastSeen]!.includes('\\Seen')) lastSeen--
  return session.recentRegistry.unclaimed(user, mailbox.id, listing.uids, lastSeen)
}

/** Names with children, and parents that exist only as a prefix of another name. */
export function hierarchy (names: Iterable<string>): { parents: Set<string>, implied: Set<string> } {
  const all = new Set(names)
  const parents = new Set<string>()
  const implied = new Set<string>()
  for (const name of all) {
    let index = name.indexOf(DELIMITER)
    while (index !== -1) {
      const parent = name.slice(0, index)
      parents.add(parent)
      if (!all.has(parent)) implied.add(parent)
      index = name.indexOf(DELIMITER, index + 1)
    }
  }
  return { parents, implied }
}

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
import { mailboxObjectId } from './object-ids.ts'
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

/** A compiled LIST pattern. */
export interface ListMatcher {
  test (name: string): boolean
}

/**
 * Compiles a LIST pattern: `*` matches anything, `%` anything but the delimiter. INBOX is
 * case-insensitive (RFC 3501 section 5.1), including as the first level of a pattern.
 *
 * Matched by a table over pattern and name (time pattern x name, code points), not by a RegExp: a pattern of
 * stars compiled to `.*a.*a.*a...` backtracked exponentially (LIST "" "*a*a*a*a*a*a*b" froze the node against
 * one long mailbox name), and a long reference could make an invalid RegExp (both found by test/fuzz). A run
 * of wildcards is one wildcard, and a pattern with more literal characters than the name is refused at once,
 * so the table is at most (2 x name + 1) x name.
 */
export function listMatcher (reference: string, pattern: string): ListMatcher {
  let full = reference + pattern
  if (full.slice(0, 5).toUpperCase() === 'INBOX' && (full.length === 5 || full[5] === DELIMITER)) full = 'INBOX' + full.slice(5)
  const tokens: string[] = []
  let literals = 0
  for (const char of full) {
    const last = tokens[tokens.length - 1]
    if (char === '*' || char === '%') {
      if (last === '*' || last === '%') tokens[tokens.length - 1] = last === '*' || char === '*' ? '*' : '%'
      else tokens.push(char)
    } else {
      tokens.push(char)
      literals++
    }
  }
  return {
    test (name: string): boolean {
      const chars = Array.from(name)
      if (literals > chars.length) return false
      return globMatch(tokens, chars)
    }
  }
}

/** Whether the pattern tokens (code points, `*` and `%` wildcards) match the whole name. */
function globMatch (tokens: string[], chars: string[]): boolean {
  const n = chars.length
  // prev[j]: the tokens so far match chars[0, j)
  let prev = new Uint8Array(n + 1)
  prev[0] = 1
  for (const token of tokens) {
    const cur = new Uint8Array(n + 1)
    let any = 0
    if (token === '*') {
      let on = 0
      for (let j = 0; j <= n; j++) { on |= prev[j]!; cur[j] = on; any |= on }
    } else if (token === '%') {
      let on = 0
      for (let j = 0; j <= n; j++) {
        if (j > 0 && chars[j - 1] === DELIMITER) on = 0
        on |= prev[j]!
        cur[j] = on
        any |= on
      }
    } else {
      for (let j = 1; j <= n; j++) {
        const hit = prev[j - 1]! & (chars[j - 1] === token ? 1 : 0)
        cur[j] = hit
        any |= hit
      }
    }
    if (any === 0) return false
    prev = cur
  }
  return prev[n] === 1
}

export const STATUS_ITEMS = new Set(['MESSAGES', 'RECENT', 'UIDNEXT', 'UIDVALIDITY', 'UNSEEN', 'HIGHESTMODSEQ', 'SIZE', 'DELETED', 'APPENDLIMIT', 'MAILBOXID'])

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
      // RFC 8474 section 4.2
      case 'MAILBOXID': value = list([atom(mailboxObjectId(user, mailbox))]); break
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

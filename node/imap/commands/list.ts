/**
 * LIST (RFC 3501 section 6.3.8, RFC 9051 section 6.3.9) with LIST-EXTENDED (RFC 5258),
 * SPECIAL-USE (RFC 6154), LIST-STATUS (RFC 5819) and CHILDREN (RFC 3348); LSUB (RFC 3501
 * section 6.3.9).
 */
import { atom, list as listValue, str } from '../protocol/compiler.ts'
import type { Value } from '../protocol/compiler.ts'
import { astring, keyword, listOf } from '../args.ts'
import { decodeMutf7 } from '../protocol/mutf7.ts'
import { ArgumentError } from '../errors.ts'
import { DELIMITER } from '../constants.ts'
import { hierarchy, LIST_PATTERNS_MAX, listMatcher, statusItems, statusResponse, wireName } from '../mailboxes.ts'
import type { CommandModule } from '../command.ts'
import type { Session } from '../session.ts'
import type { Token } from '../protocol/types.ts'

interface ListRequest {
  reference: string
  patterns: string[]
  subscribedOnly: boolean
  specialUseOnly: boolean
  recursiveMatch: boolean
  returnSubscribed: boolean
  returnStatus: string[] | null
  /** LIST-EXTENDED syntax was used: selection options, several patterns or RETURN options (RFC 5258). */
  extended: boolean
}

function decode (session: Session, text: string): string {
  const name = session.utf8 ? text : decodeMutf7(text)
  if (name === null) throw new ArgumentError('Invalid modified UTF-7')
  return name
}

function parseList (session: Session, args: Token[]): ListRequest {
  const request: ListRequest = {
    reference: '', patterns: [], subscribedOnly: false, specialUseOnly: false, recursiveMatch: false,
    returnSubscribed: false, returnStatus: null, extended: false,
  }
  let index = 0
  if (args[0]?.type === 'list') {
    // RFC 5258 section 3.1: selection options.
    for (const option of args[0].items) {
      const name = keyword(option, 'selection option')
      if (name === 'SUBSCRIBED') request.subscribedOnly = true
      else if (name === 'SPECIAL-USE') request.specialUseOnly = true
      else if (name === 'RECURSIVEMATCH') request.recursiveMatch = true
      else if (name !== 'REMOTE') throw new ArgumentError(`Unknown selection option ${name}`)
    }
    // RFC 5258 section 3: RECURSIVEMATCH needs another option.
    if (request.recursiveMatch && !request.subscribedOnly) throw new ArgumentError('RECURSIVEMATCH alone')
    index = 1
    request.extended = true
  }
  request.reference = decode(session, astring(args[index], 'reference'))
  const patternToken = args[index + 1]
  if (patternToken?.type === 'list') {
    if (patternToken.items.length === 0) throw new ArgumentError('Invalid pattern list')
    if (patternToken.items.length > LIST_PATTERNS_MAX) throw new ArgumentError('Too many patterns', 'LIMIT')
    request.patterns = patternToken.items.map((t) => decode(session, astring(t, 'pattern')))
    request.extended = true
  } else {
    request.patterns = [decode(session, astring(patternToken, 'pattern'))]
  }
  const rest = args.slice(index + 2)
  if (rest.length > 0) {
    if (rest.length !== 2 || keyword(rest[0]) !== 'RETURN') throw new ArgumentError('Expected RETURN (options)')
    const options = listOf(rest[1], 'return options').items
    request.extended = true
    for (let i = 0; i < options.length; i++) {
      const name = keyword(options[i], 'return option')
      if (name === 'SUBSCRIBED') request.returnSubscribed = true
      else if (name === 'STATUS') request.returnStatus = statusItems(options[++i])
      else if (name !== 'CHILDREN' && name !== 'SPECIAL-USE') throw new ArgumentError(`Unknown return option ${name}`)
    }
  }
  return request
}

export const list: CommandModule = {
  name: 'LIST',
  syntax: 'LIST [(selection-options)] reference pattern [RETURN (options)]',
  states: ['authenticated', 'selected'],
  args: { min: 2, max: 5 },
  expungeAllowed: true,
  async run (session, { args }) {
    const user = session.user!
    const request = parseList(session, args)
    // RFC 3501 section 6.3.8: an empty pattern asks for the delimiter and the root.
    if (request.patterns.length === 1 && request.patterns[0] === '') {
      await session.send([atom('LIST'), listValue([atom('\\Noselect')]), str(DELIMITER), str('')])
      return undefined
    }
    const store = session.components.store
    const mailboxes = await store.listMailboxes(user)
    const byName = new Map(mailboxes.map((m) => [m.name, m]))
    const subscriptions = new Set(await store.listSubscriptions(user))
    const { parents, implied } = hierarchy(byName.keys())
    const matchers = request.patterns.map((p) => listMatcher(request.reference, p))
    const matches = (name: string): boolean => matchers.some((m) => m.test(name))
    const candidates = new Set<string>([...byName.keys(), ...implied])
    if (request.subscribedOnly) for (const name of subscriptions) candidates.add(name)
    // RFC 5258 section 3.3 rule 2B and section 3.5: with RECURSIVEMATCH a name that matches gets CHILDINFO when it
    // has a subscribed descendant that no pattern matches (one that does is listed itself, so CHILDINFO would be
    // redundant: servers SHOULD suppress it). These are the ancestors of such descendants.
    const withChildInfo = new Set<string>()
    if (request.subscribedOnly && request.recursiveMatch) {
      for (const name of subscriptions) {
        if (matches(name)) continue
        for (let index = name.indexOf(DELIMITER); index !== -1; index = name.indexOf(DELIMITER, index + 1)) {
          const parent = name.slice(0, index)
          withChildInfo.add(parent)
          candidates.add(parent)
        }
      }
    }
    const names = [...candidates].sort((a, b) => a === 'INBOX' ? -1 : b === 'INBOX' ? 1 : a < b ? -1 : a > b ? 1 : 0)
    for (const name of names) {
      const mailbox = byName.get(name)
      const subscribed = subscriptions.has(name)
      const attributes: string[] = []
      let childInfo: Value | null = null
      if (!matches(name)) continue
      if (withChildInfo.has(name)) {
        // RFC 5258 section 3.5's table: subscribed or not, existing or not, the name carries CHILDINFO.
        childInfo = listValue([str('CHILDINFO'), listValue([str('SUBSCRIBED')])])
      } else if (request.subscribedOnly && !subscribed) {
        continue
      }
      if (mailbox === undefined) {
        // A parent that exists only as a prefix: `\Noselect` to a plain RFC 3501 LIST, `\NonExistent` (which
        // implies \Noselect, RFC 5258 section 3 and RFC 9051 section 7.3.1) to LIST-EXTENDED syntax or an
        // IMAP4rev2 client, as Dovecot does. A subscribed name that does not exist is always \NonExistent.
        attributes.push(implied.has(name) && !request.extended && !session.enabled.has('IMAP4REV2') ? '\\Noselect' : '\\NonExistent')
      } else if (mailbox.specialUse !== null) {
        attributes.push(mailbox.specialUse)
      }
      if (request.specialUseOnly && mailbox?.specialUse == null) continue
      attributes.push(parents.has(name) ? '\\HasChildren' : '\\HasNoChildren')
      if ((request.subscribedOnly || request.returnSubscribed) && subscribed) attributes.push('\\Subscribed')
      const response: Value[] = [atom('LIST'), listValue(attributes.map(atom)), str(DELIMITER), wireName(session, name)]
      if (childInfo !== null) response.push(childInfo)
      await session.send(response)
      if (request.returnStatus !== null && mailbox !== undefined) {
        await session.send(await statusResponse(session, user, mailbox, request.returnStatus))
      }
    }
    return undefined
  },
}

export const lsub: CommandModule = {
  name: 'LSUB',
  syntax: 'LSUB reference pattern',
  states: ['authenticated', 'selected'],
  args: { min: 2, max: 2 },
  expungeAllowed: true,
  async run (session, { args }) {
    const user = session.user!
    const reference = decode(session, astring(args[0], 'reference'))
    const matcher = listMatcher(reference, decode(session, astring(args[1], 'pattern')))
    const store = session.components.store
    const existing = new Set((await store.listMailboxes(user)).map((m) => m.name))
    const subscriptions = (await store.listSubscriptions(user)).sort()
    const sent = new Set<string>()
    for (const name of subscriptions) {
      if (matcher.test(name)) {
        sent.add(name)
        await session.send([atom('LSUB'), listValue(existing.has(name) ? [] : [atom('\\Noselect')]), str(DELIMITER), wireName(session, name)])
        continue
      }
      // RFC 3501 section 6.3.9: a `%` that matches an unsubscribed parent lists it \Noselect.
      let index = name.indexOf(DELIMITER)
      while (index !== -1) {
        const parent = name.slice(0, index)
        if (!sent.has(parent) && matcher.test(parent) && !subscriptions.includes(parent)) {
          sent.add(parent)
          await session.send([atom('LSUB'), listValue([atom('\\Noselect')]), str(DELIMITER), wireName(session, parent)])
        }
        index = name.indexOf(DELIMITER, index + 1)
      }
    }
    return undefined
  },
}

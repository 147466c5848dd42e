/**
 * NOTIFY (RFC 5465): `NOTIFY NONE` and `NOTIFY SET [STATUS] (filter events) ...`; the notifications themselves are
 * notify.ts. The command's rules (section 3): MessageNew and MessageExpunge go together, FlagChange and
 * AnnotationChange need both, the SELECTED filters take message events only (MessageNew with fetch attributes),
 * an event we do not support is NO [BADEVENT (the ones we do)].
 */
import { keyword, listOf, mailboxName } from '../args.ts'
import { ArgumentError, CommandRefused } from '../errors.ts'
import { MAILBOX_EVENTS, MESSAGE_EVENTS, Notifier, NOTIFY_GROUPS_MAX, NOTIFY_MAILBOXES_MAX, SUPPORTED_EVENTS } from '../notify.ts'
import type { FilterKind, NotifyGroup, NotifySpec } from '../notify.ts'
import type { Token } from '../protocol/types.ts'
import type { CommandModule } from '../command.ts'
import type { Session } from '../session.ts'

const FILTERS = new Set<FilterKind>(['SELECTED', 'SELECTED-DELAYED', 'INBOXES', 'PERSONAL', 'SUBSCRIBED', 'SUBTREE', 'MAILBOXES'])
const UPPER = new Map(SUPPORTED_EVENTS.map((e) => [e.toUpperCase(), e]))

function parseGroup (session: Session, token: Token | undefined): NotifyGroup {
  const items = listOf(token, 'event group').items
  const filter = keyword(items[0], 'filter') as FilterKind
  if (!FILTERS.has(filter)) throw new ArgumentError(`Unknown filter ${filter.slice(0, 32)}`)
  let index = 1
  const names: string[] = []
  if (filter === 'SUBTREE' || filter === 'MAILBOXES') {
    const one = items[index++]
    const tokens = one?.type === 'list' ? one.items : [one]
    if (tokens.length === 0 || tokens.length > NOTIFY_MAILBOXES_MAX) throw new ArgumentError('Expected 1 to 1000 mailboxes', tokens.length === 0 ? undefined : 'LIMIT')
    for (const t of tokens) names.push(mailboxName(t, session.utf8))
  }
  const eventsToken = items[index++]
  if (index !== items.length) throw new ArgumentError('Syntax: (filter [mailboxes] (events) | NONE)')
  const events = new Set<string>()
  let fetch: Token | null = null
  if (eventsToken?.type === 'atom' && eventsToken.value.toUpperCase() === 'NONE') return { filter, names, events, fetch }
  const list = listOf(eventsToken, 'events').items
  if (list.length === 0) throw new ArgumentError('Empty event list')
  for (let i = 0; i < list.length; i++) {
    const name = keyword(list[i], 'event')
    if (!UPPER.has(name)) throw new CommandRefused(`Unsupported event ${name.slice(0, 32)}`, `BADEVENT (${SUPPORTED_EVENTS.join(' ')})`)
    events.add(name)
    if (name === 'MESSAGENEW' && list[i + 1]?.type === 'list') fetch = list[++i]!
  }
  const selected = filter === 'SELECTED' || filter === 'SELECTED-DELAYED'
  // RFC 5465 section 5: MessageNew and MessageExpunge together; FlagChange and AnnotationChange need them
  if (events.has('MESSAGENEW') !== events.has('MESSAGEEXPUNGE')) throw new ArgumentError('MessageNew and MessageExpunge go together')
  if ((events.has('FLAGCHANGE') || events.has('ANNOTATIONCHANGE')) && !events.has('MESSAGENEW')) throw new ArgumentError('FlagChange needs MessageNew and MessageExpunge')
  if (selected && MAILBOX_EVENTS.some((e) => events.has(e.toUpperCase()))) throw new ArgumentError('The selected mailbox takes message events only')
  if (!selected && fetch !== null) throw new ArgumentError('Fetch attributes are for the selected mailbox only')
  if (fetch !== null && (fetch.type !== 'list' || fetch.items.length === 0)) throw new ArgumentError('Empty fetch attributes')
  void MESSAGE_EVENTS
  return { filter, names, events, fetch }
}

export const notify: CommandModule = {
  name: 'NOTIFY',
  syntax: 'NOTIFY NONE | NOTIFY SET [STATUS] (filter [mailboxes] (events)) ...',
  states: ['authenticated', 'selected'],
  args: { min: 1, max: NOTIFY_GROUPS_MAX + 2 },
  expungeAllowed: true,
  async run (session, { args }) {
    const user = session.user!
    const what = keyword(args[0], 'NOTIFY operation')
    if (what === 'NONE') {
      if (args.length !== 1) throw new ArgumentError('Syntax: NOTIFY NONE')
      session.setNotifier(null)
      return undefined
    }
    if (what !== 'SET') throw new ArgumentError('Syntax: NOTIFY SET ... | NOTIFY NONE')
    let index = 1
    let status = false
    if (args[index]?.type === 'atom' && keyword(args[index]) === 'STATUS') {
      status = true
      index++
    }
    if (index >= args.length) throw new ArgumentError('NOTIFY SET needs an event group')
    const spec: NotifySpec = { groups: args.slice(index).map((t) => parseGroup(session, t)), status }
    const kinds = spec.groups.map((g) => g.filter)
    if (kinds.filter((k) => k === 'SELECTED' || k === 'SELECTED-DELAYED').length > 1) throw new ArgumentError('One SELECTED or SELECTED-DELAYED filter at most')
    // the filters that name no mailbox say it once
    for (const k of ['INBOXES', 'PERSONAL', 'SUBSCRIBED'] as const) if (kinds.filter((x) => x === k).length > 1) throw new ArgumentError(`${k} twice`)
    const notifier = new Notifier(session, user, spec)
    session.setNotifier(notifier)
    await notifier.start()
    return undefined
  },
}

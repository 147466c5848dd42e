/**
 * NOTIFY (RFC 5465): what a session asked to hear of, and the unsolicited responses that tell it, built on the
 * store's change subscription (MailStore.subscribe, one per session already). The selected mailbox (SELECTED,
 * SELECTED-DELAYED) gets its EXISTS / EXPUNGE / FETCH pushed as they happen, like IDLE, with the FETCH attributes of
 * MessageNew for new messages; SELECTED-DELAYED holds expunges until a command that allows them. Other mailboxes get
 * `* STATUS` (MessageNew, MessageExpunge, FlagChange), and `* LIST` for MailboxName (created, deleted as
 * \NonExistent, renamed with OLDNAME) and SubscriptionChange. Responses go out when no command runs, else just
 * before its tagged reply. Past NOTIFY_PENDING_MAX mailboxes waiting, `* OK [NOTIFICATIONOVERFLOW]` and NOTIFY is off.
 *
 * INBOXES is INBOX alone (mail is delivered there; Sieve fileinto targets are not tracked as inboxes). AnnotationChange
 * is accepted and never fires (no ANNOTATE here); the METADATA events are refused with BADEVENT.
 */
import type { MailEvent } from '../../store/index.ts'
import { atom, list, str } from './protocol/compiler.ts'
import type { Value } from './protocol/compiler.ts'
import type { Token } from './protocol/types.ts'
import { DELIMITER } from './constants.ts'
import { statusResponse, wireName } from './mailboxes.ts'
import type { Session } from './session.ts'

export const NOTIFY_GROUPS_MAX = 32
export const NOTIFY_MAILBOXES_MAX = 1000
/** Mailboxes with a STATUS or LIST waiting before the session is told NOTIFICATIONOVERFLOW. */
export const NOTIFY_PENDING_MAX = 1000

export const MESSAGE_EVENTS = ['MessageNew', 'MessageExpunge', 'FlagChange', 'AnnotationChange']
export const MAILBOX_EVENTS = ['MailboxName', 'SubscriptionChange']
export const SUPPORTED_EVENTS = [...MESSAGE_EVENTS, ...MAILBOX_EVENTS]

export type FilterKind = 'SELECTED' | 'SELECTED-DELAYED' | 'INBOXES' | 'PERSONAL' | 'SUBSCRIBED' | 'SUBTREE' | 'MAILBOXES'

export interface NotifyGroup {
  filter: FilterKind
  /** SUBTREE and MAILBOXES: the names. */
  names: string[]
  /** Upper-case event names; empty for NONE. */
  events: Set<string>
  /** MessageNew's fetch attributes (SELECTED filters only): the list token, run as a UID FETCH. */
  fetch: Token | null
}

export interface NotifySpec {
  groups: NotifyGroup[]
  status: boolean
}

interface Known { name: string, subscribed: boolean }

export class Notifier {
  readonly spec: NotifySpec
  readonly #session: Session
  readonly #user: string
  /** Mailbox id → name and subscription, as last read (the old name of a renamed or deleted mailbox). */
  #known = new Map<string, Known>()
  /** Mailbox ids with a STATUS to send. */
  readonly #status = new Set<string>()
  /** LIST responses to send, in order. */
  #lists: Value[][] = []
  #refresh: Promise<void> = Promise.resolve()
  #scheduled = false
  #off = false

  constructor (session: Session, user: string, spec: NotifySpec) {
    this.#session = session
    this.#user = user
    this.spec = spec
  }

  get selectedGroup (): NotifyGroup | null {
    return this.spec.groups.find((g) => g.filter === 'SELECTED' || g.filter === 'SELECTED-DELAYED') ?? null
  }

  /** The selected mailbox's changes are pushed at once (not only at command completion). */
  get pushesSelected (): boolean {
    const g = this.selectedGroup
    return g !== null && g.events.size > 0
  }

  get delaysExpunge (): boolean {
    return this.selectedGroup?.filter === 'SELECTED-DELAYED'
  }

  async start (): Promise<void> {
    await this.#readNames()
    if (!this.spec.status) return
    const selected = this.#selectedId()
    for (const [id, known] of this.#known) {
      if (id !== selected && this.#eventsFor(known.name).has('MESSAGENEW')) this.#status.add(id)
    }
  }

  async #readNames (): Promise<void> {
    const mailboxes = await this.#session.components.store.listMailboxes(this.#user)
    this.#known = new Map(mailboxes.map((m) => [m.id, { name: m.name, subscribed: m.subscribed }]))
  }

  #selectedId (): string | null {
    const state = this.#session.state
    return state.kind === 'selected' ? state.mailbox.id : null
  }

  /** The events the non-selected filters ask for on a mailbox name (upper case). */
  #eventsFor (name: string): Set<string> {
    const out = new Set<string>()
    for (const g of this.spec.groups) {
      if (!this.#matches(g, name)) continue
      for (const e of g.events) out.add(e)
    }
    return out
  }

  #matches (g: NotifyGroup, name: string): boolean {
    switch (g.filter) {
      case 'SELECTED': case 'SELECTED-DELAYED': return false
      case 'PERSONAL': return true
      case 'INBOXES': return name.toUpperCase() === 'INBOX'
      case 'SUBSCRIBED': return [...this.#known.values()].some((k) => k.name === name && k.subscribed)
      case 'MAILBOXES': return g.names.some((n) => sameName(n, name))
      case 'SUBTREE': return g.names.some((n) => sameName(n, name) || name.startsWith(n + DELIMITER))
    }
  }

  /** A change of the user's mail (every one the session's subscription hears). */
  onEvent (event: MailEvent): void {
    if (this.#off) return
    if (event.type === 'mailboxes') {
      this.#refresh = this.#refresh.then(async () => await this.#mailboxesChanged()).catch(() => {})
      this.#schedule()
      return
    }
    if (event.mailbox === this.#selectedId()) return // the view reports it (mailbox-view.ts)
    const known = this.#known.get(event.mailbox)
    if (known === undefined) return
    const events = this.#eventsFor(known.name)
    const wanted = event.type === 'flags' ? events.has('FLAGCHANGE') : events.has('MESSAGENEW') || events.has('MESSAGEEXPUNGE')
    if (!wanted) return
    this.#status.add(event.mailbox)
    this.#schedule()
  }

  /** MailboxName and SubscriptionChange: the names read again, compared with the last reading. */
  async #mailboxesChanged (): Promise<void> {
    const before = this.#known
    await this.#readNames()
    const after = this.#known
    const session = this.#session
    const listOf = (attributes: string[], name: string, extra?: Value): Value[] => {
      const values: Value[] = [atom('LIST'), list(attributes.map(atom)), str(DELIMITER), wireName(session, name)]
      if (extra !== undefined) values.push(extra)
      return values
    }
    for (const [id, now] of after) {
      const old = before.get(id)
      if (old === undefined) {
        if (this.#eventsFor(now.name).has('MAILBOXNAME')) this.#lists.push(listOf(now.subscribed ? ['\\Subscribed'] : [], now.name))
      } else if (old.name !== now.name) {
        // RFC 5465 section 5.4: a rename is a LIST of the new name with OLDNAME (RFC 5258 extended data)
        if (this.#eventsFor(now.name).has('MAILBOXNAME') || this.#eventsFor(old.name).has('MAILBOXNAME')) {
          this.#lists.push(listOf([], now.name, list([str('OLDNAME'), list([wireName(session, old.name)])])))
        }
      } else if (old.subscribed !== now.subscribed && this.#eventsFor(now.name).has('SUBSCRIPTIONCHANGE')) {
        this.#lists.push(listOf(now.subscribed ? ['\\Subscribed'] : [], now.name))
      }
    }
    for (const [id, old] of before) {
      if (!after.has(id) && this.#eventsFor(old.name).has('MAILBOXNAME')) this.#lists.push(listOf(['\\NonExistent'], old.name))
    }
  }

  #schedule (): void {
    if (this.#status.size + this.#lists.length > NOTIFY_PENDING_MAX) {
      this.#off = true
      this.#status.clear()
      this.#lists = []
      void this.#session.send([atom('OK'), atom('[NOTIFICATIONOVERFLOW]'), atom('Too many notifications; NOTIFY is off')])
      this.#session.notifier = null
      return
    }
    if (this.#scheduled) return
    this.#scheduled = true
    // after the current turn, so that one store batch is one STATUS; while a command runs, it goes out with the
    // command's updates (Session.flushUpdates) instead, except IDLE, which allows any response (RFC 2177)
    setImmediate(() => {
      this.#scheduled = false
      if (!this.#session.busy || this.#session.idleWake !== null) void this.deliver().catch(() => {})
    })
  }

  /** Sends what is waiting: LIST responses, then a STATUS per mailbox. */
  async deliver (): Promise<void> {
    if (this.#off) return
    await this.#refresh
    const lists = this.#lists
    this.#lists = []
    for (const values of lists) await this.#session.send(values)
    const ids = [...this.#status]
    this.#status.clear()
    const items = ['MESSAGES', 'UIDNEXT', 'UIDVALIDITY', 'UNSEEN', ...(this.#session.condstore ? ['HIGHESTMODSEQ'] : [])]
    for (const id of ids) {
      const known = this.#known.get(id)
      if (known === undefined || id === this.#selectedId()) continue
      const mailbox = await this.#session.components.store.getMailbox(this.#user, known.name)
      if (mailbox === null || mailbox.id !== id) continue
      await this.#session.send(await statusResponse(this.#session, this.#user, mailbox, items))
    }
  }
}

function sameName (a: string, b: string): boolean {
  return a === b || (a.toUpperCase() === 'INBOX' && b.toUpperCase() === 'INBOX')
}

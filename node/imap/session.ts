/**
 * One IMAP session: the state machine of RFC 3501 section 3 as a discriminated union, the loop
 * that feeds the parser and runs one command at a time, and the services command modules use
 * (send an untagged response, ask for a continuation line, change state). Commands are
 * serialised: while one runs the socket is paused, so pipelined input waits in the kernel.
 */
import { randomUUID } from 'node:crypto'
import { createSecureContext } from 'node:tls'
import type { SecureContext } from 'node:tls'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import type { MailEvent } from '../../store/index.ts'
import type { Connection } from './connection.ts'
import { PENDING_EVENTS_MAX, SelectedMailbox } from './mailbox-view.ts'
import { ImapParser } from './protocol/parser.ts'
import { atom, compileContinuation, compileData, compileStatus } from './protocol/compiler.ts'
import type { Value } from './protocol/compiler.ts'
import type { ImapComponents, ImapInit, ImapLimits } from './types.ts'
import { dispatch } from './dispatcher.ts'
import { capabilities } from './capabilities.ts'
import { COMMANDS_PER_SECOND_MAX } from './constants.ts'
import { recentRegistryFor } from './recent.ts'
import type { RecentRegistry } from './recent.ts'
import { SearchContexts } from './search-context.ts'
import type { Notifier } from './notify.ts'
import { fetch as fetchCommand } from './commands/fetch.ts'
import { formatSequenceSet } from './protocol/sequence.ts'

/** The BYE text when another session deletes the selected mailbox (Dovecot's words). */
export const MAILBOX_GONE_TEXT = 'Selected mailbox was deleted, have to disconnect.'
/** Changes a SELECT under way keeps for its view (as many as a view holds pending). */
const SELECTING_EVENTS_MAX = PENDING_EVENTS_MAX

export type SessionState =
  | { kind: 'notAuthenticated' }
  | { kind: 'authenticated', user: string }
  | { kind: 'selected', user: string, mailbox: SelectedMailbox }
  | { kind: 'logout' }

export interface SessionOptions {
  init: ImapInit
  limits: ImapLimits
  secureContext: SecureContext | null
}

export class Session {
  readonly id: string
  readonly components: ImapComponents
  readonly options: SessionOptions
  readonly connection: Connection
  readonly parser: ImapParser
  readonly log: Logger
  state: SessionState = { kind: 'notAuthenticated' }
  /** ENABLEd extensions (RFC 5161), upper-case: CONDSTORE, QRESYNC, UTF8=ACCEPT, IMAP4REV2. */
  readonly enabled = new Set<string>()
  /** CONDSTORE is also turned on by its first use (RFC 7162 section 3.1). */
  badCommands = 0
  authFailures = 0
  #busy = false
  #pumping = false
  #lineWaiter: ((line: string | null) => void) | null = null
  #unsubscribe: (() => void) | null = null
  /** Called by the store subscription while IDLE runs, to push changes at once. */
  idleWake: (() => void) | null = null
  #closed = false
  #pushing = false
  /** The NOTIFY push flush running between commands, if any. */
  #pushFlush: Promise<void> | null = null
  #pushAgain = false
  #rateTokens = COMMANDS_PER_SECOND_MAX
  #rateAt = 0
  /** Who has which message as \Recent, shared by the node's sessions (recent.ts). */
  readonly recentRegistry: RecentRegistry
  /** NOTIFY (RFC 5465): what the session asked to hear of; null without NOTIFY or after NOTIFY NONE. */
  notifier: Notifier | null = null
  /** SEARCH/SORT ... RETURN (UPDATE) contexts of the selected mailbox (RFC 5267 section 4). */
  readonly contexts = new SearchContexts()
  /** The mailbox this session may claim recent messages in (selected read-write, IMAP4rev1). */
  #claiming: { user: string, mailbox: string } | null = null
  /**
   * A SELECT under way: the changes of that mailbox from before its listing is read until the view exists. A change
   * that commits while the listing is read may be missing from it, and the session was not selected yet to hold it:
   * the view takes these (an append it lists already, or a change to a message it does not know, changes nothing).
   * Found by test/stress: an acknowledged APPEND absent from a SELECT's view.
   */
  #selecting: { mailbox: string, events: MailEvent[] } | null = null

  constructor (components: ImapComponents, options: SessionOptions, connection: Connection) {
    this.id = randomUUID().slice(0, 12)
    this.components = components
    this.options = options
    this.connection = connection
    this.parser = new ImapParser({ literalBytesMax: options.limits.preAuthLiteralBytesMax, literalPlus: true })
    this.log = components.logger.child({ session: this.id, ip: connection.remoteAddress })
    this.recentRegistry = recentRegistryFor(components.store)
  }

  /** \Recent is reported to IMAP4rev1 sessions only (RFC 9051 dropped it: its appendix E). */
  get reportsRecent (): boolean {
    return !this.enabled.has('IMAP4REV2')
  }

  /**
   * SELECT or EXAMINE opens a mailbox for \Recent: the UIDs recent in this session. A read-write IMAP4rev1 session
   * claims them, and arrivals while it is the first such session there; the others only see what is unclaimed.
   */
  openRecent (mailbox: string, uids: readonly number[], lastSeen: number, readOnly: boolean): number[] {
    const user = this.user
    if (user === null) return []
    this.#closeRecent()
    const claim = !readOnly && this.reportsRecent
    const recent = this.recentRegistry.open(user, mailbox, uids, lastSeen, this.id, claim)
    if (claim) this.#claiming = { user, mailbox }
    return this.reportsRecent ? recent : []
  }

  /** A command is running (its output and updates go before its tagged reply). */
  get busy (): boolean {
    return this.#busy
  }

  setNotifier (notifier: Notifier | null): void {
    this.notifier = notifier
    if (this.state.kind === 'selected' && notifier?.selectedGroup?.fetch != null) this.state.mailbox.changes ??= { added: [], flagged: [], expunged: [] }
  }

  /** On a grid: the user's sessions now run on another node (ImapComponents.servesUser). */
  movedAway (): boolean {
    const user = this.user
    return user !== null && this.components.servesUser?.(user) === false
  }

  /** LOGOUT: the session is over for the protocol (its socket closes after the tagged OK). */
  markLoggedOut (): void {
    this.#closeRecent()
    this.state = { kind: 'logout' }
  }

  #closeRecent (): void {
    if (this.#claiming === null) return
    this.recentRegistry.close(this.#claiming.user, this.#claiming.mailbox, this.id)
    this.#claiming = null
  }

  /** UTF-8 in quoted strings and mailbox names (RFC 6855 section 3, RFC 9051 section 5.1). */
  get utf8 (): boolean {
    return this.enabled.has('UTF8=ACCEPT') || this.enabled.has('IMAP4REV2')
  }

  get condstore (): boolean {
    return this.enabled.has('CONDSTORE') || this.enabled.has('QRESYNC')
  }

  /**
   * A CONDSTORE-enabling command (RFC 7162 section 3.1: FETCH MODSEQ, CHANGEDSINCE, SEARCH MODSEQ, STORE
   * UNCHANGEDSINCE, STATUS HIGHESTMODSEQ) turns CONDSTORE on; the first one in the selected state is answered
   * with an untagged OK [HIGHESTMODSEQ], as SELECT would have (section 3.1.2.1).
   */
  async enableCondstore (): Promise<void> {
    if (this.condstore) return
    this.enabled.add('CONDSTORE')
    if (this.state.kind === 'selected') {
      await this.send([atom('OK'), atom(`[HIGHESTMODSEQ ${this.state.mailbox.highestModseq}]`), atom('Highest')])
    }
  }

  get qresync (): boolean {
    return this.enabled.has('QRESYNC')
  }

  /** Re-reads the state (TypeScript narrows `state` across awaits; commands change it). */
  get loggedOut (): boolean {
    return this.state.kind === 'logout'
  }

  get user (): string | null {
    return this.state.kind === 'authenticated' || this.state.kind === 'selected' ? this.state.user : null
  }

  /** Plaintext credentials are allowed over TLS, or when configured (RFC 9051 section 11.1). */
  get insecureAuthAllowed (): boolean {
    if (this.connection.secure || this.options.init.allowInsecureAuth === true) return true
    const ip = this.connection.remoteAddress
    // all of 127.0.0.0/8 is loopback (RFC 1122 section 3.2.1.3), as POP3 counts it
    const loopback = ip.startsWith('127.') || ip === '::1' || ip.startsWith('::ffff:127.')
    return loopback && this.options.init.allowInsecureAuthOnLoopback === true
  }

  capabilities (): string[] {
    return capabilities(this)
  }

  now (): number {
    return this.components.now?.() ?? Date.now()
  }

  start (): void {
    this.#armTimer()
    const greeting = `${this.options.init.hostname ?? 'mailgrid'} IMAP ready`
    void this.connection.write(compileStatus('*', 'OK', greeting, { name: 'CAPABILITY', args: this.capabilities().map(atom) }))
  }

  onData (chunk: Buffer): void {
    if (this.#closed) return
    this.parser.push(chunk)
    this.#pump()
  }

  onClose (): void {
    if (this.#closed) return
    this.#closed = true
    this.state = { kind: 'logout' }
    this.#closeRecent()
    this.#unsubscribe?.()
    this.#unsubscribe = null
    this.#lineWaiter?.(null)
    this.#lineWaiter = null
    this.idleWake?.()
  }

  #armTimer (): void {
    const authenticated = this.state.kind === 'authenticated' || this.state.kind === 'selected'
    const ms = authenticated ? this.options.limits.idleTimeoutMs : this.options.limits.preAuthTimeoutMs
    this.connection.setTimeout(ms, () => {
      this.log.info({ event: 'imap_autologout' }, 'idle timeout')
      void this.bye('Autologout; idle for too long')
    })
  }

  /** Reads parser events until one needs a command to finish or more bytes. */
  #pump (): void {
    if (this.#pumping) return
    this.#pumping = true
    try {
      for (;;) {
        if (this.#closed) return
        if (this.#busy && this.#lineWaiter === null) {
          this.connection.pause()
          return
        }
        const event = this.parser.next()
        if (event.type === 'need') {
          this.connection.resume()
          return
        }
        if (event.type === 'line') {
          const waiter = this.#lineWaiter
          this.#lineWaiter = null
          waiter?.(event.line)
          continue
        }
        if (event.type === 'continue') {
          void this.connection.write(compileContinuation('Ready for literal data'))
          continue
        }
        if (event.type === 'error') {
          const code = event.code === undefined ? undefined : { name: event.code }
          void this.connection.write(compileStatus(event.tag ?? '*', event.status, event.text, code))
          if (event.fatal) {
            void this.bye('Protocol error, closing')
            return
          }
          if (event.status === 'BAD' && this.#countBad()) return
          continue
        }
        this.#busy = true
        this.#armTimer()
        const wait = this.#rateWait()
        // a NOTIFY push still writing (its FETCH reads the store) finishes before the command starts: its responses
        // belong to the mailbox as it was (found by test/stress: a pushed FETCH after SELECT's OK [CLOSED])
        const pushing = this.#pushFlush ?? Promise.resolve()
        const run = (wait === 0 ? pushing : pushing.then(async () => await new Promise<void>((resolve) => setTimeout(resolve, wait))))
        const command = event.command
        run.then(() => this.#closed ? undefined : dispatch(this, command)).catch((err: unknown) => {
          this.log.error({ err, event: 'imap_dispatch_failed' }, 'dispatch failed')
          this.connection.destroy()
        }).finally(() => {
          this.#busy = false
          if (this.state.kind !== 'logout') {
            this.#armTimer()
            this.#pump()
          }
        })
      }
    } finally {
      this.#pumping = false
    }
  }

  /** Token bucket: milliseconds to wait before the next command may run. */
  #rateWait (): number {
    const now = this.now()
    if (this.#rateAt === 0) this.#rateAt = now
    this.#rateTokens = Math.min(COMMANDS_PER_SECOND_MAX, this.#rateTokens + (now - this.#rateAt) * COMMANDS_PER_SECOND_MAX / 1000)
    this.#rateAt = now
    this.#rateTokens -= 1
    return this.#rateTokens >= 0 ? 0 : Math.ceil(-this.#rateTokens * 1000 / COMMANDS_PER_SECOND_MAX)
  }

  /** Counts a BAD; true when the budget is spent and the session is being closed. */
  #countBad (): boolean {
    this.badCommands++
    if (this.badCommands < this.options.limits.badCommandsMax) return false
    this.log.warn({ event: 'imap_bad_budget' }, 'too many bad commands')
    void this.bye('Too many invalid commands')
    return true
  }

  countBad (): boolean {
    return this.#countBad()
  }

  send (values: Value[]): Promise<void> {
    return this.connection.write(compileData('*', values, { utf8: this.utf8 }))
  }

  sendStatus (tag: string, status: 'OK' | 'NO' | 'BAD' | 'BYE', text: string, code?: { name: string, args?: Value[] }): Promise<void> {
    return this.connection.write(compileStatus(tag, status, text, code, { utf8: this.utf8 }))
  }

  continuation (text: string): Promise<void> {
    return this.connection.write(compileContinuation(text))
  }

  /** The next line from the client, outside command syntax (IDLE, AUTHENTICATE); null if closed. */
  readLine (): Promise<string | null> {
    if (this.#closed) return Promise.resolve(null)
    return new Promise((resolve) => {
      this.parser.expectLine()
      this.#lineWaiter = resolve
      queueMicrotask(() => this.#pump())
    })
  }

  async bye (text: string, code?: { name: string }): Promise<void> {
    if (this.state.kind === 'logout' && this.#closed) return
    this.#closeRecent()
    this.state = { kind: 'logout' }
    await this.connection.write(compileStatus('*', 'BYE', text, code)).catch(() => {})
    await this.connection.end()
  }

  /** notAuthenticated → authenticated: larger literals, the long timer, change events. */
  login (user: string): void {
    this.state = { kind: 'authenticated', user }
    this.parser.literalBytesMax = this.options.limits.appendBytesMax
    this.#unsubscribe = this.components.store.subscribe(user, (event) => this.#onMailEvent(event))
    this.#armTimer()
  }

  /**
   * The client logged in here but its session runs on the user's primary: this session ends, and the
   * connection only passes bytes to and from `upstream` until either side closes.
   */
  async forward (upstream: Duplex): Promise<void> {
    this.#closeRecent()
    this.state = { kind: 'logout' }
    this.#closed = true
    const pending = this.parser.takeBuffered()
    await this.connection.splice(upstream, pending)
  }

  /** A session forwarded from the node that authenticated the client: it starts authenticated, without a greeting. */
  adopt (user: string, enabled: readonly string[]): void {
    for (const name of enabled) this.enabled.add(name.toUpperCase())
    this.login(user)
  }

  #onMailEvent (event: MailEvent): void {
    this.notifier?.onEvent(event)
    const user = this.user
    if (event.type === 'append' && user !== null && event.mailbox !== null) {
      // every session of the user reports every arrival: the registry keeps the mailbox's unclaimed messages, and
      // the first session claiming there takes them (recent.ts)
      const claiming = this.#claiming !== null && this.#claiming.mailbox === event.mailbox ? this.id : null
      const claimed = this.recentRegistry.arrived(user, event.mailbox, event.uids, claiming)
      if (claimed.length > 0 && this.state.kind === 'selected' && this.state.mailbox.id === event.mailbox) {
        for (const uid of claimed) this.state.mailbox.recent.add(uid)
      }
    }
    if (this.#selecting !== null && event.mailbox === this.#selecting.mailbox && event.type !== 'mailboxes') {
      if (this.#selecting.events.length < SELECTING_EVENTS_MAX) this.#selecting.events.push(event)
    }
    if (this.state.kind !== 'selected' || event.mailbox !== this.state.mailbox.id) return
    const view = this.state.mailbox
    if (event.type !== 'mailboxes') {
      view.push(event)
      this.idleWake?.()
      // NOTIFY SELECTED: pushed as it happens when no command runs (RFC 5465 section 5.1), like IDLE
      if (this.idleWake === null && this.notifier?.pushesSelected === true) this.#schedulePush()
      return
    }
    if (event.change === 'renamed') {
      // Ids are stable across renames: the mailbox stays selected under its new name.
      void this.#refreshName(view)
    } else if (event.change === 'deleted') {
      // RFC 2180 section 3.3 and RFC 9051 section 7.1.5: a session cannot go on in a mailbox that is gone,
      // so it ends with BYE, as Dovecot does. A command running now finishes its output first (the BYE goes
      // out at its flush, before its tagged reply); an idle or waiting session is told at once.
      view.gone = true
      if (this.idleWake !== null) this.idleWake()
      else if (!this.#busy) void this.bye(MAILBOX_GONE_TEXT)
    }
  }

  /** One push flush at a time, after the current turn, and only while no command runs; a change meanwhile pushes again. */
  #schedulePush (): void {
    if (this.#pushFlush !== null) {
      this.#pushAgain = true
      return
    }
    if (this.#pushing) return
    this.#pushing = true
    setImmediate(() => {
      this.#pushing = false
      if (this.#busy || this.#closed || this.#pushFlush !== null) return
      this.#pushAgain = false
      const flush: Promise<void> = this.flushUpdates(this.notifier?.delaysExpunge !== true).catch(() => {}).finally(() => {
        if (this.#pushFlush === flush) this.#pushFlush = null
        if (this.#pushAgain && !this.#busy) this.#schedulePush()
      })
      this.#pushFlush = flush
    })
  }

  async #refreshName (view: SelectedMailbox): Promise<void> {
    const user = this.user
    if (user === null) return
    const mailbox = (await this.components.store.listMailboxes(user).catch(() => [])).find((m) => m.id === view.id)
    if (mailbox !== undefined) view.name = mailbox.name
  }

  /** Called before a SELECT reads its listing: the mailbox's changes from now on reach the view `select` gets. */
  beginSelect (mailboxId: string): void {
    this.#selecting = { mailbox: mailboxId, events: [] }
  }

  select (mailbox: SelectedMailbox): void {
    const user = this.user
    if (user === null) throw new Error('select before login')
    const caught = this.#selecting
    this.#selecting = null
    if (caught !== null && caught.mailbox === mailbox.id) for (const event of caught.events) mailbox.push(event)
    this.contexts.clear()
    if (this.notifier?.selectedGroup?.fetch != null) mailbox.changes ??= { added: [], flagged: [], expunged: [] }
    this.state = { kind: 'selected', user, mailbox }
  }

  unselect (): void {
    const user = this.user
    if (user === null) throw new Error('unselect before login')
    this.#selecting = null
    this.#closeRecent()
    this.contexts.clear()
    this.state = { kind: 'authenticated', user }
  }

  /** Sends the untagged updates RFC 3501 section 7.4.1 allows at this point. */
  async flushUpdates (allowExpunge: boolean): Promise<void> {
    if (this.state.kind !== 'selected') return
    const view = this.state.mailbox
    if (view.gone) {
      await this.bye(MAILBOX_GONE_TEXT)
      return
    }
    if (view.overflow) {
      await this.bye('Too many pending changes; please reconnect')
      return
    }
    const user = this.state.user
    const responses = view.flush({ allowExpunge, condstore: this.condstore, qresync: this.qresync, recent: this.reportsRecent })
    const changes = view.takeChanges()
    // Queue them all at once: a concurrent flush (IDLE wake-up) must not interleave, because each
    // EXPUNGE number is only right after the ones before it.
    await Promise.all(responses.map((response) => this.send(response)))
    // NOTIFY's MessageNew fetch attributes for the messages just announced (RFC 5465 section 5.2)
    const fetchItems = this.notifier?.pushesSelected === true ? this.notifier.selectedGroup?.fetch ?? null : null
    const added = changes?.added.filter((uid) => view.seqOf(uid) !== 0) ?? []
    if (fetchItems !== null && added.length > 0) {
      await fetchCommand.run(this, { tag: '*', name: 'FETCH', uid: true, args: [{ type: 'atom', value: formatSequenceSet(added) }, fetchItems] }).catch((err: unknown) => {
        this.log.warn({ err, event: 'imap_notify_fetch_failed' }, 'NOTIFY fetch failed')
      })
    }
    // RFC 5267 section 4.3: the contexts' ADDTO/REMOVEFROM, after the EXISTS that announces an added message
    if (this.contexts.size === 0) {
      if (fetchItems === null) view.changes = null
    } else if (changes !== null) {
      let updates: Value[][] = []
      try {
        updates = await this.contexts.update(this, user, view, changes)
      } catch (err) {
        // the contexts can no longer be kept exact: they end (the client may search again)
        this.log.warn({ err, event: 'imap_context_update_failed' }, 'search context update failed')
        this.contexts.clear()
      }
      for (const update of updates) await this.send(update)
    }
  }

  /** Sends what NOTIFY holds for other mailboxes (before a tagged reply; between commands notify.ts sends it). */
  async flushNotifications (): Promise<void> {
    await this.notifier?.deliver().catch((err: unknown) => { this.log.warn({ err, event: 'imap_notify_failed' }, 'NOTIFY delivery failed') })
  }

  secureContext (): SecureContext | null {
    if (this.options.secureContext !== null) return this.options.secureContext
    const tls = this.components.tls
    return tls === undefined ? null : createSecureContext(tls)
  }
}

// SMTP on three listeners, all built on smtp-server: inbound MX (mail for local domains and aliases only, no
// relay), submission with STARTTLS (RFC 6409) and submission over implicit TLS (RFC 8314). A message gets 250
// only after every recipient's copy is durable in its mailbox; anything else is a 4xx or 5xx, never
// accept-and-drop.

import { SMTPServer } from 'smtp-server'
import type { SMTPServerAddress, SMTPServerAuthentication, SMTPServerDataStream, SMTPServerOptions, SMTPServerSession } from 'smtp-server'
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js'
import './data-stream.ts' // DATA's scanner with a native search (installs itself on smtp-server's stream)
import type { AddressInfo, Server } from 'node:net'
import type { Logger } from 'pino'
import { domainOf, isMailError, normalizeAddress } from '../../store/index.ts'
import type { DeliveryTarget, Directory, MailStore } from '../../store/index.ts'
import type { Authenticator } from '../auth.ts'
import type { InboundChecker } from '../mailauth/index.ts'
import type { MessageFilter } from '../filters/index.ts'
import { smtpError } from '../errors.ts'
import type { ConnectionLimiter } from '../limits.ts'
import type { Endpoint, NodeMetrics, TlsMaterial } from '../types.ts'
import { traceHeaders } from './received.ts'
import type { Envelope } from '../outbound/index.ts'
import type { StatsSink } from '../stats/index.ts'
import type { DomainUsage } from '../domain-quota.ts'
import { stage } from './timings.ts'
import { isSrs, SrsError } from '../mailauth/index.ts'
import type { ArcSealer, CheckResult, Srs } from '../mailauth/index.ts'
import { RECEIVED_HEADERS_MAX, receivedCount } from '../outbound/index.ts'
import { futureReleaseKeyword, parseHold, rfc3339 } from './future-release.ts'
import { BURL_FETCH } from './burl.ts'
import type { BurlFetch } from './burl.ts'

/** Where mail for other domains goes (node/outbound/queue.ts). */
export interface OutboundSink {
  enqueue (raw: Buffer, envelope: Envelope, opts: { received?: string, signal?: AbortSignal, holdUntil?: number }): Promise<string[]>
}

export const COMMAND_LINE_BYTES_MAX = 4096 // RFC 5321 4.5.3.1.4 asks for 512; extensions (SIZE, AUTH=) need more
export const MESSAGE_MEMORY_BYTES_MAX = 256 * 1024 * 1024 // all DATA in flight on this node at once
export const UNAUTHENTICATED_COMMANDS_MAX = 20 // before AUTH on submission ports
export const CLOSE_TIMEOUT_MS = 3000 // how long close() lets sessions finish; an unanswered DATA is retried by its client

// smtp-server derives the enhanced status code (RFC 3463) from the reply code alone, so 550 is always 5.1.1.
// Our handlers put the precise code first in the message ("5.7.1 Relay access denied"); this shim sends such
// replies with that code instead of the derived one. Only messages that start with a code are affected.
const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /
type SendFn = (code: number, data: unknown, context?: unknown) => void
const proto = SMTPConnection.prototype as unknown as { send: SendFn, __mailgridEnhanced?: boolean }
if (proto.__mailgridEnhanced !== true) {
  const original = proto.send
  proto.send = function (this: unknown, code: number, data: unknown, context?: unknown) {
    if (context !== false && typeof data === 'string' && ENHANCED.test(data)) return original.call(this, code, data, false)
    return original.call(this, code, data, context)
  }
  proto.__mailgridEnhanced = true
}

// Commands read and failure replies sent, per server: smtp-server has no hook for either, so both are counted
// where every command enters (_onCommand) and every reply leaves (send), into the counts kept in the server's
// options under this key (a global symbol, so a second copy of this module counts into the same place).
const COUNTS = Symbol.for('mailgrid.smtp.counts')
interface Counts { command (): void, failure (): void, duration (seconds: number): void }
// __mgStarted: when the command being answered was read (0: none, or one that waits for the client, AUTH)
interface Counted { _server?: { options?: { [COUNTS]?: Counts } }, __mgStarted?: number }
type CommandFn = (command: Buffer, callback: () => void) => void
const counted = SMTPConnection.prototype as unknown as { send: SendFn, _onCommand: CommandFn, __mailgridCounted?: boolean }
if (counted.__mailgridCounted !== true) {
  const send = counted.send
  const onCommand = counted._onCommand
  counted.send = function (this: Counted, code: number, data: unknown, context?: unknown) {
    const counts = this._server?.options?.[COUNTS]
    if (code >= 400) counts?.failure()
    if (this.__mgStarted !== undefined && this.__mgStarted > 0) {
      counts?.duration((performance.now() - this.__mgStarted) / 1000)
      this.__mgStarted = 0
    }
    return send.call(this, code, data, context)
  }
  counted._onCommand = function (this: Counted, command: Buffer, callback: () => void) {
    this._server?.options?.[COUNTS]?.command()
    this.__mgStarted = /^AUTH\b/i.test(command.subarray(0, 5).toString('latin1')) ? 0 : performance.now()
    return onCommand.call(this, command, callback)
  }
  counted.__mailgridCounted = true
}

// RFC 2920: a pipelining client sends MAIL, RCPT and DATA in one packet, and smtp-server writes each reply on its
// own: three syscalls per message, the largest item of the SMTP side under load after the checks. A reply to MAIL
// or RCPT that went well is held (the socket corked) until the next reply that is not, which then leaves with it in
// one write: DATA's 354, so the client's body is not kept waiting. Held replies are sent at the end of the turn
// anyway (setImmediate), so a client that waits for each reply is answered as before. Failures, and anything while
// STARTTLS is under way, are written at once, with what was held before them.
interface Holding { _socket?: { cork: () => void, uncork: () => void, destroyed: boolean, __mgHeld?: boolean }, _upgrading?: boolean, __mgVerb?: string }
const held = SMTPConnection.prototype as unknown as { send: SendFn, _onCommand: CommandFn, __mailgridHeld?: boolean }
if (held.__mailgridHeld !== true) {
  const send = held.send
  const onCommand = held._onCommand
  const release = (socket: NonNullable<Holding['_socket']>): void => {
    if (socket.__mgHeld !== true) return
    socket.__mgHeld = false
    socket.uncork()
  }
  held.send = function (this: Holding, code: number, data: unknown, context?: unknown) {
    const socket = this._socket
    if (socket === undefined) return send.call(this, code, data, context)
    if (code < 400 && (this.__mgVerb === 'MAIL' || this.__mgVerb === 'RCPT') && this._upgrading !== true && !socket.destroyed) {
      if (socket.__mgHeld !== true) {
        socket.__mgHeld = true
        socket.cork()
        setImmediate(release, socket)
      }
      return send.call(this, code, data, context)
    }
    const r = send.call(this, code, data, context)
    release(socket)
    return r
  }
  held._onCommand = function (this: Holding, command: Buffer, callback: () => void) {
    this.__mgVerb = command.subarray(0, 4).toString('latin1').toUpperCase()
    return onCommand.call(this, command, callback)
  }
  held.__mailgridHeld = true
}

// smtp-server builds the EHLO keyword list itself with no hook to add one: this shim appends the lines a server's
// options give under this key (FUTURERELEASE on submission) to the 250 reply of EHLO.
const EHLO_EXTRA = Symbol.for('mailgrid.smtp.ehloExtra')
type EhloFn = (command: Buffer, callback: () => void) => void
interface EhloConnection { _server?: { options?: { [EHLO_EXTRA]?: () => string[] } }, send: SendFn }
const ehloProto = SMTPConnection.prototype as unknown as { handler_EHLO: EhloFn, __mailgridEhlo?: boolean }
if (ehloProto.__mailgridEhlo !== true) {
  const original = ehloProto.handler_EHLO
  ehloProto.handler_EHLO = function (this: EhloConnection, command: Buffer, callback: () => void) {
    const extra = this._server?.options?.[EHLO_EXTRA]?.() ?? []
    if (extra.length === 0) return original.call(this, command, callback)
    const send = this.send
    this.send = function (this: EhloConnection, code: number, data: unknown, context?: unknown) {
      return send.call(this, code, code === 250 && Array.isArray(data) ? [...data, ...extra] : data, context)
    }
    try {
      return original.call(this, command, callback)
    } finally {
      delete (this as Partial<EhloConnection>).send // back to the prototype's
    }
  }
  ehloProto.__mailgridEhlo = true
}

function reply (code: number, text: string): Error & { responseCode: number } {
  return Object.assign(new Error(text), { responseCode: code })
}

const isLoopback = (ip: string): boolean => ip === '::1' || ip.startsWith('127.') || ip.startsWith('::ffff:127.')

export type SmtpMode = 'mx' | 'submission' | 'smtps'

export interface SmtpComponents {
  directory: Directory
  delivery: Pick<MailStore, 'deliver' | 'quota'>
  auth: Authenticator
  /** Connection limits; in an SMTP worker process (node/smtp/workers.ts) the primary's, asked over IPC. */
  limiter: SmtpLimiter
  budget: MemoryBudget
  logger: Logger
  now?: () => number
  /** The outbound queue: submission to other domains, and aliases that forward outside. Absent: refused. */
  outbound?: OutboundSink
  /** Sender Rewriting Scheme for mail forwarded outside (so SPF passes at the next hop), and its reverse for bounces. */
  srs?: Srs
  /** ARC sealing of mail forwarded outside (RFC 8617), with the alias domain's DKIM key. */
  sealer?: ArcSealer
  /** Content filter (rspamd) for the MX: asked before the 250, its verdict can refuse, defer or file into Junk. */
  filter?: MessageFilter
  /** SPF, DKIM, DMARC and ARC on the MX (node/mailauth); absent: no checks, no Authentication-Results. */
  inbound?: InboundChecker
  /** Connections, commands, failure replies and deliveries, labelled smtp (the MX) or submission. */
  metrics?: NodeMetrics
  /** Statistics per recipient (node/stats): received, bytes, rejected, quarantined. */
  stats?: StatsSink
  /** Domains' usage for their byte quotas (node/domain-quota.ts); absent: domain quotas are not checked. */
  domainUsage?: DomainUsage
  /** BURL (RFC 4468) on the submission ports: reads an IMAP URLAUTH URL for the user (node/smtp/burl.ts). Absent: not offered. */
  burl?: BurlFetch
}

export interface SmtpInit {
  mode: SmtpMode
  endpoint: Endpoint
  hostname: string
  tls: TlsMaterial
  messageBytesMax: number
  recipientsMax: number
  idleTimeoutMs: number
  plaintextAuthOnLoopback: boolean
}

interface SessionState {
  user: string | null
  release: (() => void) | null
  // recipient address (as given) → local users it delivers to, filled at RCPT time
  targets: Map<string, string[]>
  // recipients in other domains (submission) or alias targets outside (forwarding), with their DSN parameters
  remote: Map<string, Envelope['rcpts'][number]>
  // the domain of the (first) alias that forwards outside: the SRS address and the ARC seal are that domain's
  forwardDomain: string | null
  // RFC 4865: the release time MAIL FROM asked for (HOLDFOR/HOLDUNTIL), null for none
  holdUntil: number | null
}

/** ConnectionLimiter, or its proxy in a worker process (an answer that comes later). */
export interface SmtpLimiter {
  tryOpen (ip: string): ReturnType<ConnectionLimiter['tryOpen']> | Promise<ReturnType<ConnectionLimiter['tryOpen']>>
}

export interface SmtpService {
  /** Binds the endpoint, or (a worker process) accepts on a listening socket the primary passed. */
  listen (shared?: Server): Promise<Endpoint>
  close (): Promise<void>
  /** The listening socket, to pass to worker processes (null before listen). */
  listener (): Server | null
}

/** Tracks DATA bytes held in memory by all SMTP sessions of a node, so a flood of large messages cannot exhaust the heap. */
export class MemoryBudget {
  private readonly max: number
  used = 0
  constructor (max = MESSAGE_MEMORY_BYTES_MAX) {
    this.max = max
  }

  take (n: number): boolean {
    if (this.used + n > this.max) return false
    this.used += n
    return true
  }

  give (n: number): void {
    this.used -= n
  }
}

export function createSmtpService (components: SmtpComponents, init: SmtpInit): SmtpService {
  const { directory, delivery, auth, limiter, budget } = components
  const log = components.logger.child({ svc: init.mode })
  const now = components.now ?? Date.now
  const submission = init.mode !== 'mx'
  const sessions = new Map<string, SessionState>()
  const metrics = components.metrics
  const stats = components.stats
  const label = submission ? 'submission' : 'smtp'

  const state = (session: SMTPServerSession): SessionState => {
    let s = sessions.get(session.id)
    if (s === undefined) sessions.set(session.id, s = { user: null, release: null, targets: new Map(), remote: new Map(), forwardDomain: null, holdUntil: null })
    return s
  }

  const plaintextOk = (session: SMTPServerSession): boolean => session.secure || (init.plaintextAuthOnLoopback && isLoopback(session.remoteAddress))

  // sessions whose connection-limit answer is still on its way from the primary (a worker process), and those of
  // them that closed meanwhile: their slot is given back as soon as it arrives
  const opening = new Set<string>()
  const closedWhileOpening = new Set<string>()
  const connected = (session: SMTPServerSession, release: (() => void) | null, callback: (err?: Error | null) => void): void => {
    if (release === null) {
      log.warn({ sid: session.id, ip: session.remoteAddress }, 'smtp_connection_refused')
      callback(reply(421, '4.7.0 Too many connections from your address, try again later'))
      return
    }
    state(session).release = release
    if (submission && !plaintextOk(session)) session.disabledCommands = ['AUTH']
    metrics?.inc('connections', label)
    log.info({ sid: session.id, ip: session.remoteAddress }, 'smtp_connect')
    callback()
  }

  const options: SMTPServerOptions = {
    name: init.hostname,
    banner: 'mailgrid',
    secure: init.mode === 'smtps',
    key: init.tls.key,
    cert: init.tls.cert,
    size: init.messageBytesMax,
    rejectOversized: true,
    maxCommandLength: COMMAND_LINE_BYTES_MAX,
    socketTimeout: init.idleTimeoutMs,
    closeTimeout: CLOSE_TIMEOUT_MS,
    disableReverseLookup: true,
    logger: false,
    // AUTH: on submission ports only, and (per session, below) never offered before TLS. allowInsecureAuth
    // lets the loopback exception work; the per-session disabledCommands list is what hides AUTH elsewhere.
    authMethods: ['PLAIN', 'LOGIN'],
    allowInsecureAuth: true,
    authOptional: !submission,
    disabledCommands: submission ? [] : ['AUTH'],
    maxAllowedUnauthenticatedCommands: submission ? UNAUTHENTICATED_COMMANDS_MAX : false,
    hideDSN: components.outbound === undefined, // RFC 3461: offered where notices can be sent
    hideENHANCEDSTATUSCODES: false, // RFC 2034; smtp-server hides it unless asked
    hideREQUIRETLS: true,

    onConnect (session, callback) {
      stage('connect', 0)
      const opened = limiter.tryOpen(session.remoteAddress)
      if (opened instanceof Promise) {
        opening.add(session.id)
        const settle = (): boolean => { opening.delete(session.id); return closedWhileOpening.delete(session.id) }
        opened.then(release => {
          if (settle()) release?.()
          else connected(session, release, callback)
        }, (err: unknown) => { if (!settle()) callback(mapError(session, err)) })
      } else {
        connected(session, opened, callback)
      }
    },

    onSecure (_socket, session, callback) {
      if (submission) session.disabledCommands = undefined
      callback()
    },

    onClose (session) {
      if (opening.has(session.id)) closedWhileOpening.add(session.id)
      const s = sessions.get(session.id)
      s?.release?.()
      sessions.delete(session.id)
      log.info({ sid: session.id }, 'smtp_close')
    },

    onAuth (a: SMTPServerAuthentication, session, callback) {
      if (!submission) return callback(reply(503, '5.5.1 Authentication is only available on submission ports'))
      if (!plaintextOk(session)) return callback(reply(538, '5.7.11 Encryption required for requested authentication mechanism'))
      const username = a.username ?? ''
      if (a.method === 'PLAIN' && a.authzid !== undefined && a.authzid !== '' && a.authzid !== username) {
        return callback(reply(535, '5.7.8 Authorization identity must be empty or equal the authentication identity'))
      }
      auth.authenticate(username, a.password ?? '', { ip: session.remoteAddress, protocol: 'smtp' }).then(r => {
        if (r.ok) {
          state(session).user = r.user
          log.info({ sid: session.id, user: r.user, method: a.method }, 'smtp_auth')
          callback(null, { user: r.user })
        } else if (r.reason === 'throttled') {
          log.warn({ sid: session.id, user: username, ip: session.remoteAddress }, 'smtp_auth_throttled')
          callback(reply(454, '4.7.0 Too many failed authentication attempts, try again later'))
        } else {
          log.warn({ sid: session.id, user: username, ip: session.remoteAddress }, 'smtp_auth_failed')
          callback(reply(535, '5.7.8 Authentication credentials invalid'))
        }
      }, err => callback(reply(454, '4.7.0 Temporary authentication failure ' + smtpError(err).text)))
    },

    onMailFrom (address: SMTPServerAddress, session, callback) {
      const s = state(session)
      s.targets.clear()
      s.remote.clear()
      s.forwardDomain = null
      s.holdUntil = null
      const args = address.args === false ? false : address.args as Record<string, unknown>
      const holding = args !== false && (args.HOLDFOR !== undefined || args.HOLDUNTIL !== undefined)
      // RFC 4865 is offered on submission only (where the queue takes every recipient): elsewhere an unknown parameter
      if (holding && (!submission || components.outbound === undefined)) return callback(reply(555, '5.5.4 MAIL FROM parameters HOLDFOR and HOLDUNTIL are not supported here'))
      if (!submission) return callback()
      if (s.user === null) return callback(reply(530, '5.7.0 Authentication required'))
      if (holding) {
        const hold = parseHold(args, now())
        if (!hold.ok) return callback(reply(hold.code, hold.text))
        s.holdUntil = hold.releaseAt
      }
      const from = normalizeAddress(address.address)
      if (from === null) return callback(reply(553, '5.7.1 Sender address rejected: not owned by the authenticated user'))
      directory.mayUseAddress(s.user, from).then(ok => {
        if (ok) callback()
        else {
          log.warn({ sid: session.id, user: s.user, from }, 'smtp_sender_rejected')
          callback(reply(553, `5.7.1 Sender address rejected: <${from}> not owned by user ${s.user}`))
        }
      }, err => callback(mapError(session, err)))
    },

    onRcptTo (address: SMTPServerAddress, session, callback) {
      const s = state(session)
      if (submission && s.user === null) return callback(reply(530, '5.7.0 Authentication required'))
      if (s.targets.size + s.remote.size >= init.recipientsMax) return callback(reply(452, '4.5.3 Too many recipients'))
      const started = performance.now()
      checkRecipient(address, session).then(({ users, remote }) => {
        stage('rcpt', performance.now() - started)
        if (users.length > 0) s.targets.set(address.address, users)
        if (!submission && remote.length > 0) s.forwardDomain ??= domainOf(normalizeAddress(address.address) ?? address.address)
        const dsn = (address as SMTPServerAddress & { dsn?: { notify?: string[], orcpt?: string } }).dsn
        for (const r of remote) {
          s.remote.set(r, {
            address: r,
            ...(dsn?.notify !== undefined && dsn.notify.length > 0 ? { notify: dsn.notify.map(n => n.toUpperCase()) as never } : {}),
            ...(dsn?.orcpt !== undefined ? { orcpt: dsn.orcpt } : {})
          })
        }
        callback()
      }, err => callback(err instanceof Error && 'responseCode' in err ? err : mapError(session, err)))
    },

    onData (stream: SMTPServerDataStream, session, callback) {
      const started = performance.now()
      const chunks: Buffer[] = []
      let held = 0
      let overBudget = false
      stream.on('data', (chunk: Buffer) => {
        if (overBudget) return
        if (!budget.take(chunk.length)) {
          overBudget = true
          return
        }
        held += chunk.length
        chunks.push(chunk)
      })
      stream.on('error', () => { budget.give(held); held = 0 })
      stream.on('end', () => {
        const finish = (err: Error | null, message?: string): void => {
          budget.give(held)
          held = 0
          chunks.length = 0
          callback(err, message)
        }
        if (stream.sizeExceeded) return finish(reply(552, '5.3.4 Message size exceeds fixed maximum message size'))
        if (overBudget) {
          log.warn({ sid: session.id }, 'smtp_memory_budget_exceeded')
          return finish(reply(452, '4.3.1 Insufficient system storage, try again later'))
        }
        const received = performance.now()
        stage('data', received - started)
        store(Buffer.concat(chunks, held), session).then(id => {
          stage('store', performance.now() - received)
          finish(null, `2.0.0 Ok: queued as ${id}`)
        }, err => finish(err))
      })
    }
  }

  /** The local users an address delivers to, and the addresses outside it goes to (through the outbound queue). */
  async function checkRecipient (address: SMTPServerAddress, session: SMTPServerSession): Promise<{ users: string[], remote: string[] }> {
    const rcpt = normalizeAddress(address.address)
    if (rcpt === null) throw reply(501, '5.1.3 Bad recipient address syntax')
    if (!await directory.isLocalDomain(domainOf(rcpt))) {
      // only an authenticated user of a submission port may send to other domains: never an open relay
      if (!submission) { stats?.add('rejected', null); throw reply(550, '5.7.1 Relay access denied') }
      if (components.outbound === undefined) throw reply(550, '5.7.1 Delivery to remote domains is not available on this server')
      return { users: [], remote: [rcpt] }
    }
    // a bounce to an address our SRS made goes back to the sender it stood for (RFC 5321 allows a null sender)
    if (!submission && components.srs !== undefined && isSrs(rcpt)) {
      let back: string | null
      try {
        back = components.srs.reverse(rcpt)
      } catch (err) {
        if (err instanceof SrsError) throw reply(550, `5.1.1 <${rcpt}>: Recipient address rejected: ${err.message}`)
        throw err
      }
      if (back !== null && components.outbound !== undefined) {
        if (await directory.isLocalDomain(domainOf(back))) return { users: await directory.resolveRecipient(back), remote: [] }
        return { users: [], remote: [back] }
      }
    }
    const expanded = await directory.expandRecipient(rcpt)
    const users = expanded.users
    const remote = components.outbound === undefined ? [] : expanded.remote
    if (users.length === 0 && remote.length === 0) {
      stats?.add('rejected', '@' + domainOf(rcpt))
      throw reply(550, `5.1.1 <${rcpt}>: Recipient address rejected: User unknown`)
    }
    const from = session.envelope.mailFrom
    const size = from !== false && from.args !== false ? Number(from.args.SIZE) : 0
    const declared = Number.isSafeInteger(size) && size > 0 ? size : 0 // RFC 1870 SIZE= of MAIL FROM
    for (const u of users) {
      const user = await directory.getUser(u)
      if (user === null) continue
      if (user.status !== 'active') throw reply(550, `5.2.1 <${rcpt}>: Mailbox disabled`)
      if (user.quotaBytes > 0 || user.quotaMessages > 0) {
        const q = await delivery.quota(u)
        const full = (q.limitBytes > 0 && q.usedBytes + declared > q.limitBytes) ||
          (q.limitMessages > 0 && q.usedMessages >= q.limitMessages)
        // RFC 5321 4.5.3.1.10: a quota failure at RCPT is reported as 452, which clients treat as temporary
        if (full) {
          stats?.add('rejected', u)
          throw reply(452, `4.2.2 <${rcpt}>: Mailbox full`)
        }
      }
    }
    // the domain's byte quota, as the user's: a temporary refusal at RCPT (RFC 5321 4.5.3.1.10)
    for (const d of new Set(users.map(domainOf))) {
      const over = await overDomainQuota(d, declared)
      if (over !== null) {
        stats?.add('rejected', '@' + d)
        throw reply(452, `4.2.2 <${rcpt}>: Domain quota exceeded (${over})`)
      }
    }
    return { users, remote }
  }

  /** The domain's byte quota when `bytes` more would go beyond it, else null. */
  async function overDomainQuota (domain: string, bytes: number): Promise<number | null> {
    if (components.domainUsage === undefined) return null
    const limit = (await directory.getDomain(domain))?.quotaBytes ?? 0
    if (limit <= 0) return null
    return await components.domainUsage.usage(domain) + bytes > limit ? limit : null
  }

  /** Our trace lines (Return-Path, Received) for one copy of the session's current message. */
  function trace (session: SMTPServerSession, id: string, recipient: string, date: Date): string {
    return traceHeaders({
      sender: session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address,
      helo: session.hostNameAppearsAs ?? '',
      clientIp: session.remoteAddress,
      clientName: null,
      hostname: init.hostname,
      secure: session.secure,
      authenticated: state(session).user !== null,
      smtpUtf8: session.envelope.smtpUtf8 === true,
      id,
      recipient,
      date
    })
  }

  /** Queues the copies for other domains; resolves to their queue ids once durable on the queue's replicas. */
  async function enqueueRemote (raw: Buffer, session: SMTPServerSession, id: string, date: Date, auth: CheckResult | null, holdUntil: number | null = null): Promise<string[]> {
    const s = state(session)
    // a held message (RFC 4865) is held whole: its local recipients wait in the queue too
    const rcpts = holdUntil === null ? [...s.remote.values()] : [...s.remote.values(), ...[...s.targets.keys()].map(a => ({ address: normalizeAddress(a) ?? a }))]
    if (rcpts.length === 0 || components.outbound === undefined) return []
    const mailFrom = session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address
    // forwarded mail (an alias pointing outside) leaves with a rewritten sender, so SPF passes at the next hop;
    // a null sender stays null
    const fwd = s.forwardDomain
    const from = submission || mailFrom === '' || components.srs === undefined || fwd === null ? mailFrom : components.srs.forward(mailFrom, fwd)
    // what we saw of the sender's authentication travels with the forwarded copy (RFC 8617)
    const seal = !submission && fwd !== null && auth !== null && components.sealer !== undefined
      ? await components.sealer.seal(raw, { domain: fwd, authResults: auth.arc.authResults, cv: auth.arc.cv })
      : ''
    // the final delivery adds Return-Path (RFC 5321 4.4): only our Received line goes with the queued copy
    const received = trace(session, id, rcpts.length === 1 ? rcpts[0].address : '', date).replace(/^Return-Path:[^\n]*\n/, '')
    const dsn = (session.envelope as { dsn?: { ret?: string | null, envid?: string | null } }).dsn
    const ret = dsn?.ret?.toUpperCase()
    const envid = dsn?.envid ?? null
    const mailArgs = session.envelope.mailFrom === false || session.envelope.mailFrom.args === false ? {} : session.envelope.mailFrom.args
    const envelope: Envelope = {
      from,
      rcpts,
      ...(ret === 'FULL' || ret === 'HDRS' || envid !== null
        ? { dsn: { ...(ret === 'FULL' || ret === 'HDRS' ? { ret } : {}), ...(envid !== null ? { envid: String(envid) } : {}) } }
        : {}),
      ...(session.envelope.smtpUtf8 === true ? { smtpUtf8: true } : {}),
      ...(String(mailArgs.BODY ?? '').toUpperCase() === '8BITMIME' ? { eightBit: true } : {})
    }
    return await components.outbound.enqueue(raw, envelope, { received: seal + received, ...(holdUntil !== null ? { holdUntil } : {}) })
  }

  async function store (raw: Buffer, session: SMTPServerSession): Promise<string> {
    // RFC 5321 6.3: a message that has passed this many hosts is in a loop
    if (receivedCount(raw) > RECEIVED_HEADERS_MAX) throw reply(554, '5.4.6 Too many hops (Received headers): mail loop detected')
    const s = state(session)
    const id = `${session.id}-${session.transaction}`
    const date = new Date(now())
    if (s.holdUntil !== null) {
      const queued = await enqueueRemote(raw, session, id, date, null, s.holdUntil).catch((err: unknown) => { throw mapError(session, err) })
      log.info({ sid: session.id, id, bytes: raw.length, queued, holdUntil: rfc3339(s.holdUntil) }, 'smtp_held')
      metrics?.inc('bytesIn', label, raw.length)
      return id
    }
    const seen = new Set<string>()
    const targets: DeliveryTarget[] = []
    for (const [rcpt, users] of s.targets) {
      for (const u of users) {
        if (seen.has(u)) continue // one copy per user, however many of its addresses were named
        seen.add(u)
        targets.push({ user: u, prefix: trace(session, id, rcpt, date), envelope: { from: session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address, to: rcpt } })
      }
    }
    // a Sieve reject (node/rules) can be said in our reply only when nobody else's copy depends on it
    if (targets.length === 1 && s.remote.size === 0 && targets[0].envelope !== undefined) targets[0].envelope.rejectable = true
    // Sender authentication first: a DMARC p=reject failure is refused before the filter is asked
    const checking = performance.now()
    const auth = init.mode === 'mx' && components.inbound !== undefined
      ? await components.inbound.check(raw, { ip: session.remoteAddress, helo: session.hostNameAppearsAs ?? '', mailFrom: session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address })
      : null
    if (auth !== null) stage('store.inbound', performance.now() - checking)
    if (auth?.action === 'reject') {
      log.info({ sid: session.id, id, ...auth.results }, 'smtp_rejected_dmarc')
      for (const t of targets) stats?.add('rejected', t.user)
      throw reply(550, auth.reply ?? '5.7.1 Message rejected by the sender\'s DMARC policy')
    }
    // RFC 8601 5: Authentication-Results fields that claim our name did not come from us: delivered without them
    if (auth?.cleaned !== undefined) raw = auth.cleaned
    if (components.filter !== undefined && init.mode === 'mx') {
      const verdict = await components.filter.check(raw, {
        ip: session.remoteAddress,
        helo: session.hostNameAppearsAs ?? '',
        from: session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address,
        rcpts: [...s.targets.keys()],
        queueId: id,
        user: s.user,
        hostname: init.hostname
      })
      if (verdict.action === 'reject' || verdict.action === 'tempfail') {
        log.info({ sid: session.id, id, reason: verdict.reason }, 'smtp_rejected_filter')
        if (verdict.action === 'reject') for (const t of targets) stats?.add('rejected', t.user)
        throw verdict.action === 'reject' ? reply(550, '5.7.1 Message refused as spam') : reply(451, '4.7.1 Message deferred by the spam filter, try again later')
      }
      for (const t of targets) {
        t.prefix = verdict.headers + t.prefix
        if (verdict.action === 'junk') t.mailbox = 'Junk'
      }
    }
    if (auth !== null) {
      // RFC 8601 5: Authentication-Results on top, above this MX's trace fields; p=quarantine failures to Junk
      for (const t of targets) {
        t.prefix = auth.headers + t.prefix
        if (auth.action === 'junk') t.mailbox = 'Junk'
      }
    }
    // the domains' byte quotas, with the real size: refused like a full mailbox (one recipient: 552 5.2.2, several: 452)
    const perDomain = new Map<string, number>()
    for (const t of targets) perDomain.set(domainOf(t.user), (perDomain.get(domainOf(t.user)) ?? 0) + raw.length)
    for (const [d, bytes] of perDomain) {
      if (await overDomainQuota(d, bytes) === null) continue
      log.info({ sid: session.id, id, domain: d }, 'smtp_rejected_domain_quota')
      for (const t of targets) stats?.add('rejected', t.user)
      throw targets.length === 1 ? reply(552, '5.2.2 Domain quota exceeded') : reply(452, '4.2.2 Domain quota exceeded for at least one recipient')
    }
    try {
      const local = targets.length === 0 ? [] : delivery.deliver(raw, targets, { internalDate: date.getTime() }).catch(async (err: unknown) => {
        // a recipient who deleted its Junk folder still gets the message (deliveries are all-or-nothing, so
        // nothing was stored by the failed attempt): into INBOX, with the filter's headers
        if (!isMailError(err, 'nonExistent') || !targets.some(t => t.mailbox !== undefined)) throw err
        log.info({ sid: session.id, id }, 'smtp_junk_missing')
        return await delivery.deliver(raw, targets.map(t => ({ ...t, mailbox: undefined })), { internalDate: date.getTime() })
      })
      // the local copies and the queued ones are made durable together; 250 only when both are
      const delivering = performance.now()
      const [results, queued] = await Promise.all([local, enqueueRemote(raw, session, id, date, auth)])
      stage('store.deliver', performance.now() - delivering)
      // one info line per message, with the sender authentication's results when they were checked (inbound MX)
      log.info({
        sid: session.id, id, bytes: raw.length, rcpts: targets.length, gids: results.map(r => r.gid),
        ...(queued.length > 0 ? { queued } : {}),
        ...(auth !== null ? { from: session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address, ...auth.results, ...(auth.action !== 'accept' ? { action: auth.action } : {}) } : {})
      }, 'smtp_delivered')
      metrics?.inc('deliveriesIn', label, targets.length)
      metrics?.inc('bytesIn', label, raw.length)
      for (const [d, bytes] of perDomain) components.domainUsage?.added(d, bytes)
      if (stats !== undefined) {
        for (const t of targets) {
          stats.add('received', t.user)
          stats.add('bytesIn', t.user, raw.length)
          if (t.mailbox === 'Junk') stats.add('quarantined', t.user)
        }
      }
      return id
    } catch (err) {
      if (isMailError(err, 'noQuota')) {
        log.info({ sid: session.id, id }, 'smtp_rejected_quota')
        for (const t of targets) stats?.add('rejected', t.user)
        // one recipient: its mailbox is full, a permanent answer (RFC 3463 5.2.2); several: nothing was stored
        // for any of them, so a temporary answer lets the sender retry them all without duplicates
        throw targets.length === 1 ? reply(552, '5.2.2 Mailbox full') : reply(452, '4.2.2 Mailbox full for at least one recipient')
      }
      throw mapError(session, err)
    }
  }

  function mapError (session: SMTPServerSession, err: unknown): Error {
    const e = smtpError(err)
    if (e.internal) log.error({ sid: session.id, err, logId: e.logId }, 'smtp_internal_error')
    return reply(e.code, `${e.enhanced} ${e.text}`)
  }

  // RFC 4865 3: the longest hold, as an interval and as the latest date-time (from now: each EHLO gets its own)
  // RFC 4468: BURL with the one URL scheme it reads
  const burl = submission ? components.burl : undefined
  if (burl !== undefined) Object.assign(options, { [BURL_FETCH]: burl })
  if (submission && (components.outbound !== undefined || burl !== undefined)) {
    Object.assign(options, { [EHLO_EXTRA]: () => [...(components.outbound !== undefined ? [futureReleaseKeyword(now())] : []), ...(burl !== undefined ? ['BURL imap'] : [])] })
  }
  if (metrics !== undefined) {
    const counts: Counts = {
      command: () => { metrics.inc('commands', label) },
      failure: () => { metrics.inc('errors', label) },
      duration: seconds => { metrics.observe('commandSeconds', label, seconds) }
    }
    Object.assign(options, { [COUNTS]: counts })
  }
  const server = new SMTPServer(options)
  server.on('error', err => log.error({ err }, 'smtp_server_error'))
  let listening = false

  return {
    async listen (shared?: Server) {
      await new Promise<void>((resolve, reject) => {
        const onError = (err: Error): void => reject(err)
        server.server.once('error', onError)
        const done = (): void => {
          server.server.off('error', onError)
          resolve()
        }
        if (shared !== undefined) server.server.listen(shared, done)
        else server.listen(init.endpoint.port, init.endpoint.host, done)
      })
      listening = true
      const a = server.server.address() as AddressInfo
      log.info({ host: a.address, port: a.port }, 'smtp_listening')
      return { host: a.address, port: a.port }
    },
    listener: () => listening ? server.server : null,
    async close () {
      if (!listening) return
      listening = false
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
}

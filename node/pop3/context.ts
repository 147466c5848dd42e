// What a command handler may use: the session's state, its connection, the store and the authenticator, and
// a few shared steps (answering, counting bad commands, logging in). Handlers never touch the socket directly.

import type { Logger } from 'pino'
import type { SecureContext } from 'node:tls'
import type { Duplex } from 'node:stream'
import type { MailStore } from '../../store/index.ts'
import type { Authenticator } from '../auth.ts'
import type { NodeMetrics } from '../types.ts'
import { pop3Error } from '../errors.ts'
import { err, ok } from './codec.ts'
import type { Command } from './codec.ts'
import type { Pop3Connection } from './connection.ts'
import { AUTH_FAILURES_PER_SESSION_MAX } from './constants.ts'
import { Maildrop } from './session.ts'
import type { SessionState, StateKind, StateOf } from './session.ts'

export interface SessionContext {
  readonly sid: string
  readonly conn: Pop3Connection
  readonly log: Logger
  readonly store: MailStore
  readonly auth: Authenticator
  /** Set when TLS is configured: STLS is offered until the connection is secure. */
  readonly tls: SecureContext | null
  /** USER/PASS and AUTH PLAIN without TLS (configured, or on loopback when so configured). */
  readonly plaintextAllowed: boolean
  readonly maxBadCommands: number
  /** On a grid: where the session runs after login (null: here; a stream: on the user's primary). */
  readonly router?: Pop3Router
  /** Commands and -ERR answers are counted here (node/types.ts NodeMetrics). */
  readonly metrics?: NodeMetrics
  state: SessionState
  badCommands: number
}

/** Throws when the user's primary cannot take the session (the login gets -ERR [SYS/TEMP]). */
export type Pop3Router = (user: string, protocol: 'pop3', ctx: { ip: string, secure: boolean }) => Promise<Duplex | null>

export interface CommandSpec<K extends StateKind = StateKind> {
  readonly name: string
  readonly states: readonly K[]
  run (ctx: SessionContext, state: StateOf<K>, cmd: Command): Promise<void>
}

/** Declares a command; the dispatcher calls `run` only in one of `states`, so `state` is already narrowed. */
export function command<K extends StateKind> (spec: CommandSpec<K>): CommandSpec {
  return spec as unknown as CommandSpec
}

export async function reply (ctx: SessionContext, text: string | Buffer): Promise<void> {
  if (ctx.metrics !== undefined && typeof text === 'string' && text.startsWith('-ERR')) ctx.metrics.inc('errors', 'pop3')
  await ctx.conn.send(text)
}

/** A malformed or misplaced command: -ERR, and one more strike against the session's budget. */
export async function bad (ctx: SessionContext, text: string): Promise<void> {
  ctx.badCommands++
  if (ctx.badCommands >= ctx.maxBadCommands) {
    ctx.log.info({ event: 'pop3_too_many_bad_commands', count: ctx.badCommands }, 'pop3_too_many_bad_commands')
    await reply(ctx, err('Too many bad commands, closing connection'))
    ctx.conn.end()
    return
  }
  await reply(ctx, err(text))
}

/** Answers a store failure through the one mapping (node/errors.ts); internal errors are logged with their id. */
export async function failure (ctx: SessionContext, e: unknown, what: string): Promise<void> {
  const w = pop3Error(e)
  if (w.internal) ctx.log.error({ event: 'pop3_internal_error', logId: w.logId, err: e, what }, 'pop3_internal_error')
  else ctx.log.warn({ event: 'pop3_store_error', err: (e as Error).message, what }, 'pop3_store_error')
  await reply(ctx, err(w.text, w.code))
}

export function mayAuthenticate (ctx: SessionContext): boolean {
  return ctx.conn.secure || ctx.plaintextAllowed
}

/** RFC 2595 and RFC 3206 section 5: a mechanism not allowed here is an [AUTH] failure. */
export async function refusePlaintext (ctx: SessionContext): Promise<void> {
  await reply(ctx, err('Plaintext authentication disallowed without TLS; use STLS first', 'AUTH'))
}

/**
 * Checks credentials (throttled by the authenticator) and, on success, opens the maildrop: a snapshot of INBOX
 * (RFC 1939 section 4, entering the TRANSACTION state).
 */
export async function login (ctx: SessionContext, state: StateOf<'authorization'>, username: string, password: string, mechanism: string): Promise<void> {
  const result = await ctx.auth.authenticate(username, password, { ip: ctx.conn.remoteAddress, protocol: 'pop3' })
  if (!result.ok) {
    state.user = null
    state.failures++
    ctx.log.info({ event: 'pop3_auth_failed', user: username, mechanism, reason: result.reason }, 'pop3_auth_failed')
    // RFC 3206: throttling is temporary ([SYS/TEMP]); wrong credentials are [AUTH]
    if (result.reason === 'throttled') await reply(ctx, err('Too many failed logins, try again later', 'SYS/TEMP'))
    else await reply(ctx, err('Authentication failed', 'AUTH'))
    if (state.failures >= AUTH_FAILURES_PER_SESSION_MAX) ctx.conn.end()
    return
  }
  const user = result.user
  if (ctx.router !== undefined) {
    let upstream: Duplex | null
    try {
      upstream = await ctx.router(user, 'pop3', { ip: ctx.conn.remoteAddress, secure: ctx.conn.secure })
    } catch (e) {
      state.user = null
      ctx.log.warn({ event: 'pop3_forward_failed', user, err: String(e) }, 'pop3_forward_failed')
      // RFC 3206: the maildrop exists but cannot be reached now
      await reply(ctx, err('The server holding this mailbox is unreachable, try again later', 'SYS/TEMP'))
      return
    }
    if (upstream !== null) {
      // the primary opens the maildrop and answers +OK itself; this node passes bytes until the session ends
      ctx.log.info({ event: 'pop3_login_forwarded', user, mechanism }, 'pop3_login_forwarded')
      await ctx.conn.splice(upstream)
      return
    }
  }
  await openMaildrop(ctx, user, mechanism)
}

// The subscription that tells a session's maildrop about expunges by other sessions, ended with the session
const subscriptions = new WeakMap<SessionContext, () => void>()

/** Ends what openMaildrop started; the command loop calls it when the session ends, however it ends. */
export function releaseMaildrop (ctx: SessionContext): void {
  subscriptions.get(ctx)?.()
  subscriptions.delete(ctx)
}

/** RFC 1939 section 4: takes the INBOX snapshot and enters TRANSACTION, answering +OK (or -ERR, staying put). */
export async function openMaildrop (ctx: SessionContext, user: string, mechanism: string): Promise<void> {
  let drop: Maildrop
  releaseMaildrop(ctx)
  try {
    const box = await ctx.store.getMailbox(user, 'INBOX')
    if (box === null) {
      ctx.log.error({ event: 'pop3_no_inbox', user }, 'pop3_no_inbox')
      await reply(ctx, err('Mailbox unavailable', 'SYS/PERM'))
      return
    }
    // Subscribed before the snapshot is read, so no expunge falls between the two: RETR then checks a set in
    // memory instead of reading the message's record again (a LevelDB get per RETR)
    const early: number[] = []
    let opened: Maildrop | null = null
    subscriptions.set(ctx, ctx.store.subscribe(user, ev => {
      if (ev.type !== 'expunge' || ev.mailbox !== box.id) return
      if (opened === null) early.push(...ev.uids)
      else opened.markGone(ev.uids)
    }))
    drop = opened = new Maildrop(box.id, await ctx.store.listMessages(user, box.id), early)
  } catch (e) {
    releaseMaildrop(ctx)
    await failure(ctx, e, 'open maildrop')
    return
  }
  ctx.state = { kind: 'transaction', user, drop }
  const { count, octets } = drop.stat()
  ctx.log.info({ event: 'pop3_login', user, mechanism, messages: count, secure: ctx.conn.secure }, 'pop3_login')
  await reply(ctx, ok(`Logged in, ${count} messages (${octets} octets)`))
}

// The POP3 server: accepts connections (plain with STLS, or implicit TLS), applies the connection limit at the
// socket edge, runs one session per connection and ends them all on close. Protocol work is in the codec, the
// dispatcher and one handler per command; this file only wires sockets to sessions.

import { createServer } from 'node:net'
import type { Server, Socket } from 'node:net'
import { createSecureContext } from 'node:tls'
import type { SecureContext } from 'node:tls'
import { randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import type { MailStore } from '../../store/index.ts'
import type { Authenticator } from '../auth.ts'
import type { ConnectionLimiter } from '../limits.ts'
import type { NodeMetrics } from '../types.ts'
import { err } from './codec.ts'
import { Pop3Connection } from './connection.ts'
import { BAD_COMMANDS_MAX, IDLE_TIMEOUT_MS_MIN } from './constants.ts'
import { openMaildrop } from './context.ts'
import type { Pop3Router, SessionContext } from './context.ts'
import { runCommands, runSession } from './dispatcher.ts'

export interface Pop3Components {
  store: MailStore
  auth: Authenticator
  logger: Logger
  limiter: ConnectionLimiter
  /** On a grid: where a session runs after its login (node/grid/forward.ts); without it, always here. */
  router?: Pop3Router
  /** Connections, commands and -ERR answers, labelled pop3. */
  metrics?: NodeMetrics
}

/** What the edge node tells the primary about a forwarded session. */
export interface AdoptedPop3Session {
  user: string
  ip: string
  secure: boolean
}

export interface Pop3Init {
  host: string
  port: number
  tls?: { key: string | Buffer, cert: string | Buffer }
  /** TLS from the first byte (POP3S, RFC 8314); needs `tls`. */
  implicitTls?: boolean
  /** USER/PASS and AUTH PLAIN before TLS. Default false (RFC 2595 section 2.1 and RFC 8314 advice). */
  allowPlaintextAuth?: boolean
  /** Allows plaintext authentication from loopback addresses only. */
  allowPlaintextOnLoopback?: boolean
  /** Autologout timer; RFC 1939 section 3 asks for at least 10 minutes. Default 10 minutes. */
  idleTimeoutMs?: number
  maxBadCommands?: number
}

export interface Pop3Server {
  listen (): Promise<{ port: number }>
  close (): Promise<void>
  /** Open sessions, forwarded and adopted ones included. */
  readonly sessions: number
  /**
   * Runs a session forwarded by the node that authenticated the client on `socket` (a stream from that node
   * dressed as a socket): it opens the maildrop and answers the client's PASS or AUTH itself, then serves.
   */
  adopt (socket: Socket, adopted: AdoptedPop3Session): void
}

function isLoopback (ip: string): boolean {
  return ip === '::1' || ip.startsWith('127.') || ip.startsWith('::ffff:127.')
}

export function createPop3Server (components: Pop3Components, init: Pop3Init): Pop3Server {
  // Namespaced like the other services ('ns'), unless the caller already passed a namespaced logger
  const ns = init.implicitTls === true ? 'pop3s' : 'pop3'
  const log = components.logger.bindings().ns === undefined ? components.logger.child({ ns }) : components.logger
  if (init.implicitTls === true && init.tls === undefined) throw new Error('pop3: implicitTls needs tls')
  const tls: SecureContext | null = init.tls === undefined ? null : createSecureContext({ key: init.tls.key, cert: init.tls.cert, minVersion: 'TLSv1.2' })
  const idleTimeoutMs = init.idleTimeoutMs ?? IDLE_TIMEOUT_MS_MIN
  const maxBadCommands = init.maxBadCommands ?? BAD_COMMANDS_MAX
  if (!(idleTimeoutMs > 0) || !Number.isFinite(idleTimeoutMs)) throw new RangeError('pop3: idleTimeoutMs must be a positive number')
  if (!Number.isInteger(maxBadCommands) || maxBadCommands < 1) throw new RangeError('pop3: maxBadCommands must be a positive integer')
  const sessions = new Set<{ conn: Pop3Connection, done: Promise<void> }>()
  let server: Server | null = null
  let closing: Promise<void> | null = null

  async function serve (socket: Socket): Promise<void> {
    const ip = socket.remoteAddress ?? ''
    const sid = randomBytes(6).toString('hex')
    const slog = log.child({ sid })
    const release = components.limiter.tryOpen(ip)
    if (release === null || closing !== null) {
      slog.info({ event: 'pop3_rejected', ip, reason: release === null ? 'limit' : 'closing' }, 'pop3_rejected')
      socket.on('error', () => {})
      // RFC 3206 [SYS/TEMP]: try again later. Over implicit TLS the client sees only the closed connection
      if (init.implicitTls !== true) socket.end(err('Too many connections, try again later', 'SYS/TEMP'))
      else socket.destroy()
      release?.()
      return
    }
    socket.once('close', release)
    components.metrics?.inc('connections', 'pop3')
    const conn: Pop3Connection = new Pop3Connection(socket, {
      idleTimeoutMs,
      onIdle: () => {
        slog.info({ event: 'pop3_idle_timeout' }, 'pop3_idle_timeout')
        // RFC 1939 section 3: autologout, without entering the UPDATE state
        conn.endWith(err('Idle timeout, closing connection'))
      },
      onError: e => { slog.debug({ event: 'pop3_socket_error', err: e.message }, 'pop3_socket_error') }
    })
    const ctx: SessionContext = {
      sid,
      conn,
      log: slog,
      store: components.store,
      auth: components.auth,
      tls,
      plaintextAllowed: init.allowPlaintextAuth === true || (init.allowPlaintextOnLoopback === true && isLoopback(ip)),
      maxBadCommands,
      ...(components.router !== undefined ? { router: components.router } : {}),
      ...(components.metrics !== undefined ? { metrics: components.metrics } : {}),
      state: { kind: 'authorization', user: null, failures: 0 },
      badCommands: 0
    }
    slog.info({ event: 'pop3_connect', ip, port: socket.remotePort }, 'pop3_connect')
    const entry = { conn, done: Promise.resolve() }
    sessions.add(entry)
    entry.done = (async () => {
      try {
        if (init.implicitTls === true && tls !== null && !await conn.startTls(tls)) {
          slog.info({ event: 'pop3_tls_failed' }, 'pop3_tls_failed')
          return
        }
        await runSession(ctx)
      } catch (e) {
        slog.error({ event: 'pop3_session_failed', err: e }, 'pop3_session_failed')
      } finally {
        if (!conn.closed) conn.end()
        sessions.delete(entry)
        slog.info({ event: 'pop3_disconnect', state: ctx.state.kind }, 'pop3_disconnect')
      }
    })()
    await entry.done
  }

  function adopt (socket: Socket, adopted: AdoptedPop3Session): void {
    if (closing !== null) {
      socket.destroy()
      return
    }
    const sid = randomBytes(6).toString('hex')
    const slog = log.child({ sid })
    const conn: Pop3Connection = new Pop3Connection(socket, {
      idleTimeoutMs,
      onIdle: () => {
        slog.info({ event: 'pop3_idle_timeout' }, 'pop3_idle_timeout')
        conn.endWith(err('Idle timeout, closing connection'))
      },
      onError: e => { slog.debug({ event: 'pop3_socket_error', err: e.message }, 'pop3_socket_error') }
    })
    conn.secure = adopted.secure
    // no router here: this node is the primary, and a second login in this session is served where it is
    const ctx: SessionContext = {
      sid,
      conn,
      log: slog,
      store: components.store,
      auth: components.auth,
      tls: null, // TLS stays at the edge
      plaintextAllowed: true, // the edge accepted a login on this transport already
      maxBadCommands,
      ...(components.metrics !== undefined ? { metrics: components.metrics } : {}),
      state: { kind: 'authorization', user: null, failures: 0 },
      badCommands: 0
    }
    slog.info({ event: 'pop3_adopted', ip: adopted.ip, user: adopted.user }, 'pop3_adopted')
    const entry = { conn, done: Promise.resolve() }
    sessions.add(entry)
    entry.done = (async () => {
      try {
        await openMaildrop(ctx, adopted.user, 'forwarded')
        await runCommands(ctx)
      } catch (e) {
        slog.error({ event: 'pop3_session_failed', err: e }, 'pop3_session_failed')
      } finally {
        if (!conn.closed) conn.end()
        sessions.delete(entry)
        slog.info({ event: 'pop3_disconnect', state: ctx.state.kind }, 'pop3_disconnect')
      }
    })()
  }

  return {
    get sessions () { return sessions.size },
    adopt,
    async listen () {
      if (server !== null) throw new Error('pop3: already listening')
      // allowHalfOpen: a client may send its last commands and shut its side; it still gets every answer
      const srv = createServer({ noDelay: true, allowHalfOpen: true }, socket => { void serve(socket) })
      server = srv
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject)
        srv.listen(init.port, init.host, () => {
          srv.off('error', reject)
          resolve()
        })
      })
      srv.on('error', e => { log.error({ event: 'pop3_server_error', err: e }, 'pop3_server_error') })
      const addr = srv.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : init.port
      log.info({ event: 'pop3_listening', host: init.host, port, implicitTls: init.implicitTls === true }, 'pop3_listening')
      return { port }
    },

    async close () {
      closing ??= (async () => {
        const srv = server
        const stopped = srv === null ? Promise.resolve() : new Promise<void>(resolve => { srv.close(() => { resolve() }) })
        for (const s of sessions) s.conn.destroy()
        await Promise.all([...sessions].map(async s => { await s.done }))
        await stopped
        log.info({ event: 'pop3_closed' }, 'pop3_closed')
      })()
      await closing
    }
  }
}

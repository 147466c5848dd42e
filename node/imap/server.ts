/**
 * The IMAP listener: accepts sockets (plain with STARTTLS, or implicit TLS per RFC 8314),
 * enforces connection caps at the edge, and runs one Session per socket. close() stops the
 * listener and ends every session; it is safe to call twice.
 */
import { createServer } from 'node:net'
import type { Server, Socket } from 'node:net'
import { createSecureContext, TLSSocket } from 'node:tls'
import type { SecureContext } from 'node:tls'
import { Connection } from './connection.ts'
import { DEFAULT_LIMITS } from './constants.ts'
import { Session } from './session.ts'
import type { AdoptedImapSession, ImapComponents, ImapInit, ImapLimits } from './types.ts'
import { loggedIn } from './commands/login.ts'
import type { Endpoint } from '../types.ts'

export interface ImapServer {
  listen (): Promise<Endpoint>
  close (): Promise<void>
  /** The bound address, or null before listen(). */
  address (): Endpoint | null
  /** Open sessions (for status pages and tests). */
  readonly sessions: number
  /**
   * Runs a session forwarded by the node that authenticated the client (node/grid/forward.ts) on `socket`, a
   * stream from that node dressed as a socket: authenticated from the start, no greeting, and it answers the
   * client's login command itself with the capabilities a local login gives.
   */
  adopt (socket: Socket, adopted: AdoptedImapSession): void
}

/** How long close() waits for sessions to say BYE before destroying their sockets. */
export const CLOSE_GRACE_MS = 2000

export function createImapServer (components: ImapComponents, init: ImapInit): ImapServer {
  const limits: ImapLimits = { ...DEFAULT_LIMITS, ...init.limits }
  const log = components.logger.child({ ns: init.implicitTls === true ? 'imaps' : 'imap' })
  const context: SecureContext | null = components.tls === undefined ? null : createSecureContext(components.tls)
  if (init.implicitTls === true && context === null) throw new Error('implicit TLS needs tls material')
  const sessions = new Set<Session>()
  let server: Server | null = null
  let bound: Endpoint | null = null
  let closing: Promise<void> | null = null

  const start = (socket: Socket, connection: Connection, release: (() => void) | null): Session => {
    const session = new Session({ ...components, logger: log }, { init, limits, secureContext: context }, connection)
    sessions.add(session)
    socket.once('close', () => {
      sessions.delete(session)
      release?.()
    })
    session.log.debug({ event: 'imap_connect' }, 'connected')
    return session
  }

  const onSocket = (socket: Socket): void => {
    socket.on('error', () => {})
    const ip = socket.remoteAddress ?? 'unknown'
    const release = components.limiter?.tryOpen(ip) ?? null
    if ((components.limiter !== undefined && release === null) || sessions.size >= limits.connectionsMax) {
      // RFC 3501 section 7.1.5: a server that will not serve says BYE as its greeting.
      socket.end('* BYE Too many connections, try again later\r\n')
      release?.()
      return
    }
    components.metrics?.inc('connections', 'imap')
    let session: Session | null = null
    const handlers = {
      onData: (chunk: Buffer) => session?.onData(chunk),
      onClose: () => session?.onClose(),
      onError: (err: Error) => {
        session?.log.debug({ err, event: 'imap_socket_error' }, 'socket error')
        socket.destroy()
      },
    }
    if (init.implicitTls === true) {
      const secure = new TLSSocket(socket, { isServer: true, secureContext: context! })
      secure.on('error', () => secure.destroy())
      secure.once('secure', () => {
        const connection = new Connection(secure, true, handlers)
        session = start(socket, connection, release)
        session.start()
      })
      socket.once('close', () => { if (session === null) release?.() })
      secure.setTimeout(limits.preAuthTimeoutMs, () => secure.destroy())
      return
    }
    const connection = new Connection(socket, false, handlers)
    session = start(socket, connection, release)
    session.start()
  }

  return {
    get sessions () { return sessions.size },
    adopt (socket, adopted) {
      if (closing !== null) {
        socket.destroy()
        return
      }
      let session: Session | null = null
      const connection = new Connection(socket, adopted.secure, {
        onData: (chunk: Buffer) => session?.onData(chunk),
        onClose: () => session?.onClose(),
        onError: () => { socket.destroy() },
      })
      session = start(socket, connection, null)
      session.adopt(adopted.user, adopted.enabled ?? [])
      session.log.info({ event: 'imap_login_adopted', user: adopted.user }, 'authenticated by the edge node')
      const reply = loggedIn(session)
      void session.sendStatus(adopted.tag, 'OK', reply.text, reply.code)
    },
    async listen () {
      if (bound !== null) return bound
      // noDelay: a command's untagged responses and its tagged reply are separate writes; with Nagle's algorithm
      // the last one waits for the client's delayed ACK (40 ms on Linux), which the mixed benchmark showed as a
      // 44 ms floor on every SEARCH and FETCH
      const srv = createServer({ pauseOnConnect: false, noDelay: true }, onSocket)
      server = srv
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject)
        srv.listen(init.endpoint.port, init.endpoint.host, () => {
          srv.off('error', reject)
          resolve()
        })
      })
      const address = srv.address()
      if (address === null || typeof address === 'string') throw new Error('IMAP listener has no address')
      bound = { host: address.address, port: address.port }
      log.info({ event: 'imap_listening', ...bound }, 'listening')
      return bound
    },
    async close () {
      closing ??= (async () => {
        const srv = server
        const closed = srv === null ? Promise.resolve() : new Promise<void>((resolve) => srv.close(() => resolve()))
        await Promise.all([...sessions].map(async (session) => {
          const timer = setTimeout(() => session.connection.destroy(), CLOSE_GRACE_MS)
          try {
            await session.bye('Server shutting down')
          } finally {
            clearTimeout(timer)
            session.connection.destroy()
          }
        }))
        await closed
        bound = null
      })()
      return closing
    },
    address () {
      return bound
    },
  }
}

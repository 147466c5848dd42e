// The ManageSieve server (RFC 5804): a listener of its own, STARTTLS with the node's certificate, AUTHENTICATE
// PLAIN through the node's authenticator (and so its throttling, grid-wide on a grid), then the script commands
// over SieveScripts (scripts.ts), which keeps scripts as user attributes replicated with the user's mail.
//
// On a grid the session runs on the user's primary, like IMAP and POP3: after the login the edge node splices the
// client to a stream to the primary (node/grid/forward.ts), and the primary's adopt() answers the login and
// serves. The edge keeps TLS.

import { createServer, isIP } from 'node:net'
import type { Server, Socket } from 'node:net'
import { createSecureContext, TLSSocket } from 'node:tls'
import type { SecureContext } from 'node:tls'
import type { Duplex } from 'node:stream'
import { randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import { isMailError } from '../../store/index.ts'
import type { MailStore } from '../../store/index.ts'
import type { Authenticator } from '../auth.ts'
import type { ConnectionLimiter } from '../limits.ts'
import type { NodeMetrics } from '../types.ts'
import { splice } from '../splice.ts'
import { answer, CommandParser, sieveString } from './codec.ts'
import type { Arg, Parsed } from './codec.ts'
import {
  AUTH_FAILURES_MAX, BAD_COMMANDS_MAX, IDLE_TIMEOUT_MS, IMPLEMENTATION, INPUT_BUFFER_BYTES_MAX, SASL_RESPONSE_BYTES_MAX, TLS_HANDSHAKE_TIMEOUT_MS
} from './constants.ts'
import { checkScriptName, ScriptError, SieveScripts } from './scripts.ts'
import { REDIRECTS_MAX, SIEVE_EXTENSIONS } from '../sieve/index.ts'


/** Where a session runs after its login: null here, or a stream to the user's primary (node/grid/forward.ts). */
export type ManageSieveRouter = (user: string, protocol: 'managesieve', ctx: { ip: string, secure: boolean }) => Promise<Duplex | null>

export interface ManageSieveComponents {
  store: Pick<MailStore, 'getAttr' | 'listAttrs' | 'setAttrs'>
  auth: Authenticator
  logger: Logger
  limiter: ConnectionLimiter
  router?: ManageSieveRouter
  metrics?: NodeMetrics
}

export interface ManageSieveInit {
  host: string
  port: number
  tls?: { key: string | Buffer, cert: string | Buffer }
  /** AUTHENTICATE PLAIN before STARTTLS from loopback clients (tests, a local webmail). Default false. */
  allowPlaintextOnLoopback?: boolean
  idleTimeoutMs?: number
  /** Extensions for the SIEVE capability; default the interpreter's (node/sieve SIEVE_EXTENSIONS). */
  extensions?: string[]
}

export interface ManageSieveServer {
  listen (): Promise<{ port: number }>
  close (): Promise<void>
  readonly sessions: number
  /** Runs a session forwarded by the node that authenticated the client: answers its login, then serves. */
  adopt (socket: Socket, adopted: { user: string, ip: string, secure: boolean }): void
}

type State = { kind: 'nonAuth' } | { kind: 'auth', user: string } | { kind: 'logout' }

function isLoopback (ip: string): boolean {
  return ip === '::1' || ip.startsWith('127.') || ip.startsWith('::ffff:127.')
}

const FORWARD_LOST = answer('BYE', 'The server holding this account went away, please reconnect', 'TRYLATER')

export function createManageSieveServer (components: ManageSieveComponents, init: ManageSieveInit): ManageSieveServer {
  const log = components.logger.bindings().ns === undefined ? components.logger.child({ ns: 'managesieve' }) : components.logger
  const tls: SecureContext | null = init.tls === undefined ? null : createSecureContext({ key: init.tls.key, cert: init.tls.cert, minVersion: 'TLSv1.2' })
  const scripts = new SieveScripts(components.store)
  const idleTimeoutMs = init.idleTimeoutMs ?? IDLE_TIMEOUT_MS
  const extensions = (init.extensions ?? SIEVE_EXTENSIONS).join(' ')
  const sessions = new Set<Session>()
  let server: Server | null = null
  let closing: Promise<void> | null = null

  class Session {
    socket: Socket
    secure: boolean
    state: State = { kind: 'nonAuth' }
    readonly parser = new CommandParser()
    readonly sid = randomBytes(6).toString('hex')
    readonly log: Logger
    readonly ip: string
    readonly forwarded: boolean
    closed = false
    done: Promise<void> = Promise.resolve()
    private bad = 0
    private authFailures = 0
    private wake: (() => void) | null = null
    private ended = false
    private paused = false

    constructor (socket: Socket, opts: { ip: string, secure: boolean, forwarded: boolean }) {
      this.socket = socket
      this.ip = opts.ip
      this.secure = opts.secure
      this.forwarded = opts.forwarded
      this.log = log.child({ sid: this.sid })
      this.attach(socket)
    }

    private readonly onData = (chunk: Buffer): void => {
      this.parser.push(chunk)
      if (this.parser.buffered > INPUT_BUFFER_BYTES_MAX && !this.paused) {
        this.paused = true
        this.socket.pause()
      }
      this.notify()
    }

    private readonly onEnd = (): void => { this.ended = true; this.notify() }
    private readonly onClose = (): void => { this.closed = true; this.ended = true; this.notify() }
    private readonly onError = (err: Error): void => { this.log.debug({ err: err.message }, 'managesieve_socket_error'); this.socket.destroy() }
    private readonly onTimeout = (): void => {
      this.log.info('managesieve_idle_timeout')
      this.endWith(answer('BYE', 'Idle timeout, closing connection'))
    }

    private attach (s: Socket): void {
      s.on('data', this.onData)
      s.on('end', this.onEnd)
      s.on('close', this.onClose)
      s.on('error', this.onError)
      s.on('timeout', this.onTimeout)
      s.setTimeout(idleTimeoutMs)
    }

    private detach (s: Socket): void {
      s.off('data', this.onData)
      s.off('end', this.onEnd)
      s.off('close', this.onClose)
      s.off('error', this.onError)
      s.off('timeout', this.onTimeout)
      s.setTimeout(0)
    }

    private notify (): void {
      const w = this.wake
      this.wake = null
      w?.()
    }

    async next (): Promise<Parsed | null> {
      for (;;) {
        if (this.closed) return null
        const p = this.parser.take()
        if (this.paused && this.parser.buffered <= INPUT_BUFFER_BYTES_MAX / 2) {
          this.paused = false
          this.socket.resume()
        }
        if (p !== null) return p
        if (this.ended) return null
        await new Promise<void>(resolve => { this.wake = resolve })
      }
    }

    send (text: string): void {
      if (!this.closed && !this.socket.destroyed) this.socket.write(text)
    }

    endWith (text: string): void {
      if (this.closed) return
      this.closed = true
      this.socket.end(text)
      setTimeout(() => { this.socket.destroy() }, 2000).unref()
      this.notify()
    }

    capabilities (): string {
      const lines = [
        `"IMPLEMENTATION" ${sieveString(IMPLEMENTATION)}`,
        `"SASL" ${sieveString(this.state.kind === 'nonAuth' && this.plainAllowed() ? 'PLAIN' : '')}`,
        `"SIEVE" ${sieveString(extensions)}`,
        ...(tls !== null && !this.secure && this.state.kind === 'nonAuth' ? ['"STARTTLS"'] : []),
        `"MAXREDIRECTS" "${REDIRECTS_MAX}"`,
        '"UNAUTHENTICATE"',
        '"VERSION" "1.0"'
      ]
      return lines.join('\r\n') + '\r\n'
    }

    plainAllowed (): boolean {
      return this.secure || (init.allowPlaintextOnLoopback === true && isLoopback(this.ip))
    }

    async startTls (): Promise<boolean> {
      if (tls === null) return false
      const raw = this.socket
      this.detach(raw)
      this.parser.clear() // RFC 5804 2.2 / RFC 3207 6: nothing sent before the handshake is taken as a command
      raw.on('error', () => {})
      if (this.paused) { this.paused = false; raw.resume() }
      const t = new TLSSocket(raw, { isServer: true, secureContext: tls })
      this.socket = t
      this.attach(t)
      const ok = await new Promise<boolean>(resolve => {
        const timer = setTimeout(() => { finish(false) }, TLS_HANDSHAKE_TIMEOUT_MS)
        const finish = (v: boolean): void => { clearTimeout(timer); t.off('secure', onSecure); t.off('close', onGone); resolve(v) }
        const onSecure = (): void => { finish(true) }
        const onGone = (): void => { finish(false) }
        t.on('secure', onSecure)
        t.on('close', onGone)
      })
      if (!ok) { t.destroy(); raw.destroy(); return false }
      this.secure = true
      return true
    }

    /** Hands the client to the user's primary (forward.ts); input not yet read goes first. */
    async spliceTo (upstream: Duplex): Promise<void> {
      const s = this.socket
      s.pause()
      this.detach(s)
      s.on('error', () => {})
      const pending = this.parser.takeRest()
      this.closed = true
      await splice(s, upstream, pending, { farewell: FORWARD_LOST })
    }

    async run (greet: boolean): Promise<void> {
      if (greet) this.send(this.capabilities() + answer('OK', `${IMPLEMENTATION} ManageSieve ready`))
      for (;;) {
        const p = await this.next()
        if (p === null) return
        components.metrics?.inc('commands', 'managesieve')
        if (p.kind === 'fatal') {
          this.log.info({ reason: p.message }, 'managesieve_fatal_input')
          this.endWith(answer('BYE', p.message))
          return
        }
        if (p.kind === 'error') {
          this.fail(answer('NO', p.message, p.code))
          if (this.closed) return
          continue
        }
        try {
          const more = await this.dispatch(p.name, p.args)
          if (more === 'stop') return
        } catch (err) {
          this.fail(this.mapError(err))
        }
        if (this.closed) return
      }
    }

    fail (text: string): void {
      components.metrics?.inc('errors', 'managesieve')
      this.send(text)
      if (++this.bad >= BAD_COMMANDS_MAX) this.endWith(answer('BYE', 'Too many errors'))
    }

    mapError (err: unknown): string {
      if (err instanceof ScriptError) {
        const codes: Record<string, string | undefined> = {
          nonExistent: 'NONEXISTENT', alreadyExists: 'ALREADYEXISTS', active: 'ACTIVE', maxScripts: 'QUOTA/MAXSCRIPTS', maxSize: 'QUOTA/MAXSIZE'
        }
        return answer('NO', err.message, codes[err.kind])
      }
      if (err instanceof ArgError) return answer('NO', err.message)
      if (isMailError(err, 'temp') || isMailError(err, 'unavailable')) return answer('NO', err.message, 'TRYLATER')
      if (isMailError(err)) return answer('NO', err.message)
      const logId = randomBytes(6).toString('hex')
      this.log.error({ err, logId }, 'managesieve_internal_error')
      return answer('NO', `Internal error occurred. Refer to server log for more information. [${logId}]`, 'TRYLATER')
    }

    async dispatch (name: string, args: Arg[]): Promise<'stop' | void> {
      const st = this.state
      switch (name) {
        case 'CAPABILITY':
          arity(args, 0)
          this.send(this.capabilities() + answer('OK', 'Capability completed'))
          return
        case 'NOOP': {
          // RFC 5804 2.13: an optional tag echoed in the TAG response code
          if (args.length > 1) throw new ArgError('NOOP takes at most one argument')
          const tag = args.length === 1 ? str(args[0]) : null
          this.send(tag === null ? answer('OK', 'NOOP completed') : `OK (TAG ${sieveString(tag)}) "Done"\r\n`)
          return
        }
        case 'LOGOUT':
          this.state = { kind: 'logout' }
          this.endWith(answer('OK', 'Logout completed'))
          return 'stop'
        case 'STARTTLS': {
          arity(args, 0)
          if (this.secure || tls === null || this.forwarded) throw new ArgError('TLS is active already or not offered')
          if (st.kind !== 'nonAuth') throw new ArgError('STARTTLS only before authentication')
          this.send(answer('OK', 'Begin TLS negotiation now'))
          if (!await this.startTls()) {
            this.log.info('managesieve_tls_failed')
            this.closed = true
            return 'stop'
          }
          // RFC 5804 2.2: the capabilities again, over TLS
          this.send(this.capabilities() + answer('OK', 'TLS negotiation successful'))
          return
        }
        case 'AUTHENTICATE':
          if (st.kind !== 'nonAuth') throw new ArgError('Already authenticated')
          return await this.authenticate(args)
        case 'UNAUTHENTICATE':
          // RFC 5804 2.14.1
          arity(args, 0)
          if (st.kind !== 'auth') throw new ArgError('Not authenticated')
          if (this.forwarded) {
            // the edge authenticated this client; a new login must go through it again
            this.state = { kind: 'logout' }
            this.endWith(answer('BYE', 'Please reconnect to log in again'))
            return 'stop'
          }
          this.state = { kind: 'nonAuth' }
          this.send(answer('OK', 'Unauthenticate completed'))
          return
      }
      if (st.kind !== 'auth') {
        if (['HAVESPACE', 'PUTSCRIPT', 'LISTSCRIPTS', 'SETACTIVE', 'GETSCRIPT', 'DELETESCRIPT', 'RENAMESCRIPT', 'CHECKSCRIPT'].includes(name)) throw new ArgError('Authenticate first')
        throw new ArgError('Unknown command')
      }
      const user = st.user
      switch (name) {
        case 'HAVESPACE': {
          arity(args, 2)
          const size = args[1]
          if (size.type !== 'number') throw new ArgError('HAVESPACE needs a size')
          await scripts.haveSpace(user, str(args[0]), size.value)
          this.send(answer('OK', 'Putscript would succeed'))
          return
        }
        case 'PUTSCRIPT': {
          arity(args, 2)
          const n = str(args[0])
          await scripts.put(user, n, utf8(args[1]))
          this.log.info({ user, script: n }, 'managesieve_putscript')
          this.send(answer('OK', 'PUTSCRIPT completed'))
          return
        }
        case 'CHECKSCRIPT':
          arity(args, 1)
          scripts.check(utf8(args[0]))
          this.send(answer('OK', 'Script is valid'))
          return
        case 'LISTSCRIPTS': {
          arity(args, 0)
          const list = await scripts.list(user)
          this.send(list.map(s => `${sieveString(s.name)}${s.active ? ' ACTIVE' : ''}\r\n`).join('') + answer('OK', 'Listscripts completed'))
          return
        }
        case 'SETACTIVE':
          arity(args, 1)
          await scripts.setActive(user, str(args[0]))
          this.send(answer('OK', 'SETACTIVE completed'))
          return
        case 'GETSCRIPT': {
          arity(args, 1)
          const src = Buffer.from(await scripts.get(user, str(args[0])))
          // RFC 5804 2.9: the script as a literal, then CRLF and the OK
          this.send(`{${src.length}}\r\n${src.toString('utf8')}\r\n` + answer('OK', 'GETSCRIPT completed'))
          return
        }
        case 'DELETESCRIPT':
          arity(args, 1)
          await scripts.delete(user, str(args[0]))
          this.send(answer('OK', 'DELETESCRIPT completed'))
          return
        case 'RENAMESCRIPT':
          arity(args, 2)
          await scripts.rename(user, str(args[0]), str(args[1]))
          this.send(answer('OK', 'RENAMESCRIPT completed'))
          return
      }
      throw new ArgError('Unknown command')
    }

    /** RFC 5804 2.1 with SASL PLAIN (RFC 4616): the initial response, or one continuation. */
    async authenticate (args: Arg[]): Promise<'stop' | void> {
      if (args.length < 1 || args.length > 2) throw new ArgError('AUTHENTICATE takes a mechanism and an optional initial response')
      if (str(args[0]).toUpperCase() !== 'PLAIN') throw new ArgError('Unsupported SASL mechanism')
      if (!this.plainAllowed()) return this.fail(answer('NO', 'Plaintext authentication needs TLS (STARTTLS first)', 'ENCRYPT-NEEDED'))
      let response: string
      if (args.length === 2) {
        response = str(args[1])
      } else {
        this.send('""\r\n') // an empty challenge
        this.parser.bareString = true
        const p = await this.next().finally(() => { this.parser.bareString = false })
        if (p === null) return 'stop'
        if (p.kind === 'fatal') { this.endWith(answer('BYE', p.message)); return 'stop' }
        // the response is one string alone on its line
        if (p.kind !== 'command' || p.name !== '' || p.args.length !== 1) throw new ArgError('Bad SASL response')
        response = str(p.args[0])
      }
      if (response === '*') return this.fail(answer('NO', 'Authentication cancelled'))
      if (response.length > SASL_RESPONSE_BYTES_MAX || !/^[A-Za-z0-9+/]*={0,2}$/.test(response)) throw new ArgError('Bad base64 in the SASL response')
      const parts = Buffer.from(response, 'base64').toString('utf8').split('\0')
      if (parts.length !== 3) throw new ArgError('Bad SASL PLAIN response')
      const [authz, authc, password] = parts
      const r = await components.auth.authenticate(authc, password, { ip: this.ip, protocol: 'managesieve' })
      if (!r.ok || (authz !== '' && authz.toLowerCase() !== r.user.toLowerCase() && authz.toLowerCase() !== authc.toLowerCase())) {
        this.log.info({ user: authc, reason: r.ok ? 'authzid' : r.reason }, 'managesieve_auth_failed')
        if (++this.authFailures >= AUTH_FAILURES_MAX) {
          this.endWith(answer('BYE', 'Too many authentication failures'))
          return 'stop'
        }
        return this.fail(r.ok || r.reason === 'failed' ? answer('NO', 'Authentication failed') : answer('NO', 'Too many failures, try again later', 'TRYLATER'))
      }
      if (components.router !== undefined) {
        let upstream: Duplex | null
        try {
          upstream = await components.router(r.user, 'managesieve', { ip: this.ip, secure: this.secure })
        } catch (err) {
          return this.fail(this.mapError(err))
        }
        if (upstream !== null) {
          this.log.info({ user: r.user }, 'managesieve_forwarded')
          await this.spliceTo(upstream)
          return 'stop'
        }
      }
      this.state = { kind: 'auth', user: r.user }
      this.log.info({ user: r.user }, 'managesieve_login')
      this.send(answer('OK', 'Logged in'))
    }
  }

  function start (s: Session, greet: boolean): void {
    sessions.add(s)
    s.done = (async () => {
      try {
        await s.run(greet)
      } catch (err) {
        s.log.error({ err }, 'managesieve_session_failed')
      } finally {
        if (!s.closed) { s.closed = true; s.socket.end() }
        sessions.delete(s)
        s.log.info('managesieve_disconnect')
      }
    })()
  }

  function serve (socket: Socket): void {
    const ip = socket.remoteAddress ?? ''
    const release = components.limiter.tryOpen(ip)
    socket.on('error', () => {})
    if (release === null || closing !== null) {
      socket.end(answer('BYE', 'Too many connections, try again later', 'TRYLATER'))
      release?.()
      return
    }
    socket.once('close', release)
    components.metrics?.inc('connections', 'managesieve')
    const s = new Session(socket, { ip, secure: false, forwarded: false })
    s.log.info({ ip }, 'managesieve_connect')
    start(s, true)
  }

  return {
    get sessions () { return sessions.size },
    adopt (socket, adopted) {
      if (closing !== null) { socket.destroy(); return }
      const s = new Session(socket, { ip: adopted.ip, secure: adopted.secure, forwarded: true })
      s.state = { kind: 'auth', user: adopted.user }
      s.log.info({ user: adopted.user, ip: adopted.ip }, 'managesieve_adopted')
      s.send(answer('OK', 'Logged in'))
      start(s, false)
    },
    async listen () {
      if (server !== null) throw new Error('managesieve: already listening')
      const srv = createServer({ noDelay: true }, serve)
      server = srv
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject)
        srv.listen(init.port, init.host, () => { srv.off('error', reject); resolve() })
      })
      srv.on('error', e => { log.error({ err: e }, 'managesieve_server_error') })
      const addr = srv.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : init.port
      log.info({ host: init.host, port, ipv: isIP(init.host) }, 'managesieve_listening')
      return { port }
    },
    async close () {
      closing ??= (async () => {
        const srv = server
        const stopped = srv === null ? Promise.resolve() : new Promise<void>(resolve => { srv.close(() => { resolve() }) })
        for (const s of sessions) { s.closed = true; s.socket.destroy() }
        await Promise.all([...sessions].map(async s => { await s.done }))
        await stopped
      })()
      await closing
    }
  }
}

class ArgError extends Error {}

function arity (args: Arg[], n: number): void {
  if (args.length !== n) throw new ArgError(`Expected ${n} argument${n === 1 ? '' : 's'}`)
}

/** A string argument (RFC 5804 4: names and SASL data are strings; a bare atom is accepted as one). */
function str (a: Arg): string {
  if (a.type === 'number') return String(a.value)
  if (a.type === 'atom') return a.value
  const s = a.value.toString('utf8')
  if (!Buffer.from(s).equals(a.value)) throw new ArgError('Not UTF-8')
  return s
}

function utf8 (a: Arg): string {
  if (a.type !== 'string') throw new ArgError('A string is expected')
  return str(a)
}

export { checkScriptName }

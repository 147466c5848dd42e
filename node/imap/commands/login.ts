/**
 * LOGIN (RFC 3501 section 6.2.3) and AUTHENTICATE PLAIN (RFC 4616) with SASL-IR (RFC 4959).
 * Credentials never reach a log line. Plaintext credentials without TLS are refused unless
 * configured (RFC 9051 section 6.2.3: LOGINDISABLED).
 */
import { atom } from '../protocol/compiler.ts'
import { astring, keyword } from '../args.ts'
import { ArgumentError, CommandRefused } from '../errors.ts'
import type { CommandModule, Reply } from '../command.ts'
import type { Session } from '../session.ts'

/** Longest user name or password we pass on (bounds work in the password hash). */
const CREDENTIAL_BYTES_MAX = 1024

async function authenticate (session: Session, tag: string, user: string, password: string): Promise<Reply> {
  if (Buffer.byteLength(user) > CREDENTIAL_BYTES_MAX || Buffer.byteLength(password) > CREDENTIAL_BYTES_MAX) {
    throw new CommandRefused('Authentication failed', 'AUTHENTICATIONFAILED')
  }
  const ip = session.connection.remoteAddress
  const result = await session.components.auth.authenticate(user, password, { ip, protocol: 'imap' })
  if (!result.ok && result.reason === 'throttled') {
    throw new CommandRefused('Too many failures, try again later', 'UNAVAILABLE')
  }
  if (!result.ok) {
    session.authFailures++
    session.log.info({ event: 'imap_login_failed', user }, 'authentication failed')
    if (session.authFailures >= session.options.limits.authFailuresMax) {
      setImmediate(() => { void session.bye('Too many authentication failures') })
    }
    throw new CommandRefused('Authentication failed', 'AUTHENTICATIONFAILED')
  }
  const router = session.components.router
  if (router !== undefined) {
    // On a grid the session runs on the user's primary; when that is another node, it answers this command.
    let upstream
    try {
      upstream = await router(result.user, 'imap', { ip, secure: session.connection.secure, tag, enabled: [...session.enabled] })
    } catch (err) {
      session.log.warn({ event: 'imap_forward_failed', user: result.user, err: String(err) }, 'forward failed')
      throw new CommandRefused('The server holding this mailbox is unreachable, try again later', 'UNAVAILABLE')
    }
    if (upstream !== null) {
      session.log.info({ event: 'imap_login_forwarded', user: result.user }, 'authenticated; forwarded to the primary')
      void session.forward(upstream).catch((err: unknown) => {
        session.log.warn({ event: 'imap_forward_broken', err: String(err) }, 'forward broken')
        session.connection.destroy()
      })
      return { done: true }
    }
  }
  session.login(result.user)
  session.log.info({ event: 'imap_login', user: result.user }, 'authenticated')
  return loggedIn(session)
}

/** RFC 9051 section 6.2.2: the OK may carry the new capability list. Also what an adopted session answers. */
export function loggedIn (session: Session): Reply & { text: string } {
  return { code: { name: 'CAPABILITY', args: session.capabilities().map(atom) }, text: 'Authenticated' }
}

export const login: CommandModule = {
  name: 'LOGIN',
  syntax: 'LOGIN userid password',
  states: ['notAuthenticated'],
  args: { min: 2, max: 2 },
  expungeAllowed: true,
  async run (session, { tag, args }) {
    if (!session.insecureAuthAllowed) throw new CommandRefused('Use STARTTLS first', 'PRIVACYREQUIRED')
    return authenticate(session, tag, astring(args[0], 'user name'), astring(args[1], 'password'))
  },
}

/** Decodes a SASL PLAIN message: [authzid] NUL authcid NUL password (RFC 4616 section 2). */
function decodePlain (base64: string): { user: string, password: string } {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(base64)) throw new ArgumentError('Invalid base64')
  const parts = Buffer.from(base64, 'base64').toString('utf8').split('\0')
  if (parts.length !== 3) throw new ArgumentError('Invalid SASL PLAIN message')
  const [authzid, user, password] = parts as [string, string, string]
  // We do not support acting as another user.
  if (authzid !== '' && authzid !== user) throw new CommandRefused('Authorization identity not permitted', 'AUTHORIZATIONFAILED')
  return { user, password }
}

export const authenticateCommand: CommandModule = {
  name: 'AUTHENTICATE',
  syntax: 'AUTHENTICATE PLAIN [initial-response]',
  states: ['notAuthenticated'],
  args: { min: 1, max: 2 },
  expungeAllowed: true,
  async run (session, { tag, args }) {
    const mechanism = keyword(args[0], 'mechanism')
    if (mechanism !== 'PLAIN') throw new CommandRefused('Unsupported mechanism', 'CANNOT')
    if (!session.insecureAuthAllowed) throw new CommandRefused('Use STARTTLS first', 'PRIVACYREQUIRED')
    let response: string
    if (args[1] !== undefined) {
      // RFC 4959 section 3: "=" is an empty initial response.
      const initial = astring(args[1], 'initial response')
      response = initial === '=' ? '' : initial
    } else {
      // RFC 4616 section 2: PLAIN's challenge is empty, so the continuation carries no text (a client decodes
      // whatever follows "+ " as base64: Python's imaplib fails on "+ OK")
      await session.connection.write(Buffer.from('+ \r\n'))
      const line = await session.readLine()
      if (line === null) return { done: true }
      // RFC 3501 section 6.2.2: "*" cancels the exchange.
      if (line.trim() === '*') return { status: 'BAD', text: 'Authentication cancelled' }
      response = line.trim()
    }
    const { user, password } = decodePlain(response)
    return authenticate(session, tag, user, password)
  },
}

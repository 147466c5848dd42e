// Session forwarding: a user's IMAP and POP3 sessions run on the user's primary (it orders the user's writes and
// its reads are current), while any node accepts the client. After a login on a node that is not the primary,
// route() opens a stream to the primary and sends one header line (JSON: protocol, user, client address, TLS,
// and for IMAP the login's tag and ENABLEd extensions); the primary answers one line, {"ok":true} or
// {"error":{...}}, and from then on the stream carries the client's bytes untouched: the edge keeps TLS, the
// primary runs the protocol. serve() is the primary's side: it reads the header under a size limit and a
// timeout, checks it still leads the user (catching up from the other replicas first), and hands the stream,
// dressed as a socket, to the protocol server's adopt().
//
// The edge already authenticated the client; the primary trusts it because only grid members can open the
// stream (the private network keyed by the cluster key).

import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import type { Gossip } from '../../gossip/types.ts'
import { isMailError, MailError } from '../../store/index.ts'
import type { Grid } from './grid.ts'
import { StreamSocket } from './stream-socket.ts'
import { PROTOCOLS } from './wire.ts'

/** The header line: a user name and a password are at most 1 KiB each (CREDENTIAL_BYTES_MAX in imap/login.ts); 8 KiB leaves room for JSON escapes and the tag. */
export const SESSION_HEADER_BYTES_MAX = 8 * 1024
/** The primary's answer line ({"ok":true} or an error with a short message). */
export const SESSION_ANSWER_BYTES_MAX = 4 * 1024
/** The edge writes the header as soon as the stream opens: a peer that has not sent it by then never will. */
export const SESSION_HEADER_TIMEOUT_MS = 5_000
/**
 * Opening the stream and hearing the primary's answer, catch-up of a new primary included; past it the login
 * gets a temporary failure (a client retries, and IMAP clients give a login well over 10 s).
 */
export const ROUTE_TIMEOUT_MS = 10_000
/** An ended stream waits this long for the peer to close its side before it is destroyed. */
const REFUSE_GRACE_MS = 2_000

export type SessionProtocol = 'imap' | 'pop3' | 'managesieve'

/** What the edge knows about the client that the primary's session needs. */
export interface RouteContext {
  ip: string
  secure: boolean
  /** IMAP: the tag of the LOGIN or AUTHENTICATE command, which the primary answers. */
  tag?: string
  /** IMAP: extensions ENABLEd before the login (RFC 5161); none today, since ENABLE needs authentication. */
  enabled?: string[]
}

export interface SessionHeader extends RouteContext {
  v: 1
  protocol: SessionProtocol
  user: string
}

/** null: serve the session here (this node is the primary). Throws MailError('unavailable') when the primary cannot take it. */
export type SessionRouter = (user: string, protocol: SessionProtocol, ctx: RouteContext) => Promise<Duplex | null>

/** Starts an authenticated session on a socket-like stream; the session sends the login's answer itself. */
export type SessionAdopter = (socket: Socket, header: SessionHeader) => void

export interface SessionForwarderComponents {
  grid: Grid
  gossip: Gossip
  logger: Logger
}

export interface SessionForwarderInit {
  /** Default SESSION_HEADER_TIMEOUT_MS. */
  headerTimeoutMs?: number
  /** Default ROUTE_TIMEOUT_MS. */
  routeTimeoutMs?: number
}

export interface SessionForwarder {
  route: SessionRouter
  /** Registers the primary's side for one protocol (the stream handler is registered once, for both). */
  serve (protocol: SessionProtocol, adopt: SessionAdopter): void
  /** Open streams: sessions this node forwards (edge) and sessions it runs for other edges (adopted). */
  readonly open: { forwarded: number, adopted: number }
  /** Closes every forwarded and adopted stream; safe to call twice. */
  stop (): void
}

interface Tracked {
  peer: string
  user: string
  adopted: boolean
}

export function createSessionForwarder (components: SessionForwarderComponents, init: SessionForwarderInit = {}): SessionForwarder {
  const { grid, gossip } = components
  const headerTimeoutMs = init.headerTimeoutMs ?? SESSION_HEADER_TIMEOUT_MS
  const routeTimeoutMs = init.routeTimeoutMs ?? ROUTE_TIMEOUT_MS
  const log = components.logger.child({ ns: 'grid:forward' })
  const adopters = new Map<SessionProtocol, SessionAdopter>()
  const streams = new Map<Duplex, Tracked>()
  // routes still opening their stream, by peer: a peer declared dead meanwhile aborts them
  const dialing = new Map<AbortController, string>()
  let registered = false
  let stopped = false

  const track = (stream: Duplex, t: Tracked): void => {
    streams.set(stream, t)
    stream.once('close', () => { streams.delete(stream) })
  }

  // A dead peer's streams may never see a reset (a kill -9 on a quiet stream): close them when membership
  // says so, and close adopted sessions of users this node no longer leads, so their clients reconnect to
  // the new primary instead of getting errors from a node that cannot write.
  const close = (stream: Duplex, t: Tracked, why: string): void => {
    log.info({ event: 'forward_closed_by_membership', peer: t.peer, user: t.user, adopted: t.adopted, why }, 'forward_closed_by_membership')
    stream.destroy()
  }
  let recheck: NodeJS.Immediate | null = null
  const unsubscribe = gossip.onChange((event) => {
    const gone = event.type === 'status' && (event.member.status === 'dead' || event.member.status === 'left') ? event.member.id : null
    for (const [stream, t] of streams) if (t.peer === gone) close(stream, t, 'peer gone')
    for (const [ac, peer] of dialing) if (peer === gone) ac.abort(new Error(`${peer} is gone`))
    // the ring is read once the membership change has been applied (listeners may hear of it before)
    recheck ??= setImmediate(() => {
      recheck = null
      for (const [stream, t] of streams) if (t.adopted && !grid.isPrimary(t.user)) close(stream, t, 'no longer primary')
    })
  })

  const route: SessionRouter = async (user, protocol, ctx) => {
    if (stopped) throw new MailError('unavailable', 'This node is shutting down')
    const primary = grid.primaryOf(user)
    if (primary === null) throw new MailError('unavailable', 'No node owns this mailbox right now')
    if (primary === gossip.self) {
      // the session runs here and reads this node's copy: caught up with the other replicas first, as an adopted
      // one is (accept below); a node restarted behind the others served stale mail to direct logins (test/stress)
      try {
        await grid.lead(user, { signal: AbortSignal.timeout(routeTimeoutMs) })
      } catch (err) {
        log.info({ event: 'session_not_led', user, protocol, err: String(err) }, 'session_not_led')
        throw new MailError('unavailable', 'This node cannot serve the mailbox now; try again later')
      }
      return null
    }
    let stream: Duplex
    const ac = new AbortController()
    dialing.set(ac, primary)
    try {
      stream = await gossip.openStream(primary, PROTOCOLS.session, { timeoutMs: routeTimeoutMs, signal: ac.signal })
    } catch (err) {
      log.warn({ event: 'forward_unreachable', user, primary, protocol, err: String(err) }, 'forward_unreachable')
      throw new MailError('unavailable', 'The node holding this mailbox is unreachable; try again later')
    } finally {
      dialing.delete(ac)
    }
    stream.on('error', () => {}) // failures surface as 'close'; the splice closes the client then
    // tracked from now on, so a primary declared dead while it has not answered yet ends the wait at once
    track(stream, { peer: primary, user, adopted: false })
    if (!alive(primary)) {
      stream.destroy()
      throw new MailError('unavailable', 'The node holding this mailbox went away; try again later')
    }
    try {
      const header: SessionHeader = { v: 1, protocol, user, ip: ctx.ip, secure: ctx.secure }
      if (ctx.tag !== undefined) header.tag = ctx.tag
      if (ctx.enabled !== undefined) header.enabled = ctx.enabled
      stream.write(JSON.stringify(header) + '\n')
      const answer = JSON.parse(await readLine(stream, SESSION_ANSWER_BYTES_MAX, routeTimeoutMs)) as { ok?: unknown, error?: { message?: unknown } }
      if (answer.ok !== true) throw new Error(`refused: ${String(answer.error?.message ?? 'no reason')}`)
    } catch (err) {
      stream.destroy()
      log.warn({ event: 'forward_refused', user, primary, protocol, err: String(err) }, 'forward_refused')
      throw new MailError('unavailable', 'The node holding this mailbox cannot take the session now; try again later')
    }
    if (stopped || stream.destroyed) {
      stream.destroy()
      throw new MailError('unavailable', stopped ? 'This node is shutting down' : 'The node holding this mailbox went away; try again later')
    }
    log.info({ event: 'session_forwarded', user, primary, protocol }, 'session_forwarded')
    return stream
  }

  const alive = (peer: string): boolean => {
    const m = gossip.member(peer)
    return m === undefined || m.status === 'alive' || m.status === 'suspect'
  }

  const refuse = (stream: Duplex, kind: string, message: string): void => {
    stream.end(JSON.stringify({ error: { kind, message } }) + '\n')
    setTimeout(() => stream.destroy(), REFUSE_GRACE_MS).unref()
  }

  const accept = async (stream: Duplex, peer: string): Promise<void> => {
    stream.on('error', () => {})
    let header: SessionHeader
    try {
      header = parseHeader(await readLine(stream, SESSION_HEADER_BYTES_MAX, headerTimeoutMs))
    } catch (err) {
      log.warn({ event: 'forward_bad_header', peer, err: String(err) }, 'forward_bad_header')
      stream.destroy()
      return
    }
    const adopt = adopters.get(header.protocol)
    if (adopt === undefined || stopped) {
      refuse(stream, 'unavailable', `${header.protocol} is not served here`)
      return
    }
    try {
      // this node must lead the user, caught up with the other replicas, before the session reads anything
      await grid.lead(header.user, { signal: AbortSignal.timeout(routeTimeoutMs) })
    } catch (err) {
      log.info({ event: 'forward_not_primary', peer, user: header.user, err: String(err) }, 'forward_not_primary')
      refuse(stream, isMailError(err) ? err.kind : 'temp', 'This node does not hold the mailbox now')
      return
    }
    if (stream.destroyed) return
    stream.write('{"ok":true}\n')
    const socket = new StreamSocket(stream, { remoteAddress: header.ip, allowHalfOpen: header.protocol === 'pop3' })
    socket.on('error', () => {})
    track(socket, { peer, user: header.user, adopted: true })
    log.info({ event: 'session_adopted', peer, user: header.user, protocol: header.protocol }, 'session_adopted')
    try {
      adopt(socket as unknown as Socket, header)
    } catch (err) {
      log.error({ event: 'session_adopt_failed', err }, 'session_adopt_failed')
      socket.destroy()
    }
  }

  return {
    route,
    serve (protocol, adopt) {
      adopters.set(protocol, adopt)
      if (registered) return
      registered = true
      gossip.handleStream(PROTOCOLS.session, (stream, ctx) => { void accept(stream, ctx.peer) })
    },
    get open () {
      let forwarded = 0
      for (const t of streams.values()) if (!t.adopted) forwarded++
      return { forwarded, adopted: streams.size - forwarded }
    },
    stop () {
      if (stopped) return
      stopped = true
      unsubscribe()
      if (recheck !== null) clearImmediate(recheck)
      for (const stream of streams.keys()) stream.destroy()
      for (const ac of dialing.keys()) ac.abort(new Error('stopped'))
    }
  }
}

/** RFC 9051 section 9: tag = 1*<any ASTRING-CHAR except "+">; bounded so the answer line stays small. */
const TAG = /^[\x21-\x7e]{1,128}$/
const TAG_EXCLUDED = /[(){%*"\\+]/
const EXTENSION = /^[A-Za-z0-9=+.-]{1,64}$/
const USER_BYTES_MAX = 1024 // as CREDENTIAL_BYTES_MAX in imap/login.ts
const IP_CHARS_MAX = 64

function parseHeader (line: string): SessionHeader {
  const h = JSON.parse(line) as Record<string, unknown>
  if (h === null || typeof h !== 'object' || h.v !== 1) throw new Error('unknown header version')
  if (h.protocol !== 'imap' && h.protocol !== 'pop3' && h.protocol !== 'managesieve') throw new Error('unknown protocol')
  if (typeof h.user !== 'string' || h.user === '' || Buffer.byteLength(h.user) > USER_BYTES_MAX) throw new Error('bad user')
  if (typeof h.ip !== 'string' || h.ip.length > IP_CHARS_MAX) throw new Error('bad ip')
  if (typeof h.secure !== 'boolean') throw new Error('bad secure')
  const out: SessionHeader = { v: 1, protocol: h.protocol, user: h.user, ip: h.ip, secure: h.secure }
  if (h.tag !== undefined) {
    if (typeof h.tag !== 'string' || !TAG.test(h.tag) || TAG_EXCLUDED.test(h.tag)) throw new Error('bad tag')
    out.tag = h.tag
  }
  if (h.protocol === 'imap' && out.tag === undefined) throw new Error('imap needs the login tag')
  if (h.enabled !== undefined) {
    if (!Array.isArray(h.enabled) || h.enabled.length > 16 || !h.enabled.every(e => typeof e === 'string' && EXTENSION.test(e))) throw new Error('bad enabled')
    out.enabled = h.enabled as string[]
  }
  return out
}

/**
 * Reads one LF-terminated line from `stream`, then pauses it and puts back whatever followed, so the next
 * reader (the splice, or the adopted session) starts at the first byte after the line.
 */
export async function readLine (stream: Duplex, bytesMax: number, timeoutMs: number): Promise<string> {
  return await new Promise<string>((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0)
    const finish = (err: Error | null, line?: string, rest?: Buffer): void => {
      clearTimeout(timer)
      stream.off('data', onData)
      stream.off('end', onEnd)
      stream.off('close', onEnd)
      stream.off('error', onError)
      stream.pause()
      if (rest !== undefined && rest.length > 0) stream.unshift(rest)
      if (err !== null) reject(err)
      else resolve(line as string)
    }
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
      const nl = buf.indexOf(0x0a)
      if (nl === -1 ? buf.length > bytesMax : nl > bytesMax) {
        finish(new Error(`line longer than ${bytesMax} bytes`))
        return
      }
      if (nl !== -1) finish(null, buf.subarray(0, nl).toString('utf8'), buf.subarray(nl + 1))
    }
    const onEnd = (): void => finish(new Error('stream closed before the line'))
    const onError = (err: Error): void => finish(err)
    const timer = setTimeout(() => finish(new Error(`no line within ${timeoutMs} ms`)), timeoutMs)
    stream.on('data', onData)
    stream.once('end', onEnd)
    stream.once('close', onEnd)
    stream.once('error', onError)
  })
}

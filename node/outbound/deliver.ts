// The SMTP part of outbound mail: one call delivers one message to the recipients of one domain and says,
// per recipient, sent / deferred / failed. The queue (queue.ts) decides what to do with that.
// Routing: the domain's MX hosts (mx.ts), narrowed by an enforced MTA-STS policy (mta-sts.ts), or every domain
// through the smarthost of `relay`. Each address is tried in order (RFC 5321 5.1): a connection failure or a
// 4xx moves the recipients still open to the next one; a 2xx or 5xx is final. Sessions (session.ts) are pooled
// per remote address and reused with RSET; a destination (the domain, or the relay) has a cap on sessions in
// use and on messages per second. Nothing here throws for what DNS or a remote answers.

import { URL } from 'node:url'
import type { Logger } from 'pino'
import type { OpOptions } from '../../store/index.ts'
import { createMtaSts } from './mta-sts.ts'
import type { MtaSts } from './mta-sts.ts'
import { createMxResolver } from './mx.ts'
import type { MxHost, MxResolver } from './mx.ts'
import { enhancedOf, Session, SessionError } from './session.ts'
import type { SessionInit, SessionTimeouts } from './session.ts'
import type { Deliverer, Envelope, RcptOutcome } from './types.ts'

export const DESTINATION_SESSIONS_MAX = 20 // sessions in use per destination (Postfix default_destination_concurrency_limit 20)
// transactions started per second per destination; 0 = no cap, Postfix's default (default_destination_rate_delay 0)
// (a cap of 100 held the outbound bench at 0.5-0.78x Postfix: test/bench/ANALYSIS.md)
export const DESTINATION_MESSAGES_PER_S = 0
export const SESSION_IDLE_MS = 3000 // an idle pooled session is closed after this (Postfix smtp_connection_cache_time_limit 2 s)
export const SESSION_TRANSACTIONS_MAX = 100 // messages over one session, then a fresh one (bounds a session's life)
export const ADDRESSES_TRIED_MAX = 10 // addresses tried per delivery, over all MX hosts (Postfix smtp_mx_address_limit 5)
export const WAIT_MS_MAX = 120_000 // waiting for a destination slot longer than this defers the message
export const ROUTE_CACHE_MS = 10_000 // a found route (MX hosts, addresses, MTA-STS decision) serves a burst to one domain; below usual TTLs
export const ROUTE_CACHE_ENTRIES_MAX = 10_000 // domains remembered; the oldest is forgotten beyond this

export interface DelivererComponents {
  logger: Logger
  now?: () => number
  /** Replaces the DNS part (tests); built from `dnsServers` when absent. */
  resolver?: MxResolver
  /** [0, 1), for shuffling equal MX preferences. */
  random?: () => number
}

export interface DelivererInit {
  /** Our name in EHLO, and the name a looping remote would greet us with. */
  hostname: string
  /** The port used on every MX (outbound.port). */
  port: number
  /** '' = MX delivery; 'smtp://user:pass@host:587' (STARTTLS then AUTH) or 'smtps://user:pass@host:465'. */
  relay: string
  dnsServers: string[]
  dnsTimeoutMs?: number
  dnsTries?: number
  /** This machine's addresses for loop detection (default: every interface's, and loopback). */
  localAddresses?: string[]
  /** The port our own MX listens on: an MX at our address on this port is ourselves. */
  ownSmtpPort?: number
  /** Extra CAs trusted where certificates are checked (MTA-STS fetch and enforce, the smarthost). */
  tls?: { ca?: string | string[] }
  /** The HTTPS port of mta-sts.DOMAIN (443; for tests). */
  mtaStsHttpsPort?: number
  timeouts?: SessionTimeouts
  sessionsPerDestination?: number
  messagesPerSecond?: number
  sessionIdleMs?: number
  transactionsPerSession?: number
}

interface Relay { host: string, port: number, implicitTls: boolean, auth?: { user: string, pass: string } }

interface Route { servername: string, address: string }

interface Destination {
  inUse: number
  waiters: Array<() => void>
  nextStartAt: number
}

/** Parses outbound.relay; the credentials are URL-decoded here and never leave this object. */
export function parseRelay (relay: string): Relay {
  let u: URL
  try { u = new URL(relay) } catch { throw new Error('outbound.relay is not a URL (smtp://user:pass@host:587 or smtps://...)') }
  if (u.protocol !== 'smtp:' && u.protocol !== 'smtps:') throw new Error('outbound.relay must start with smtp:// or smtps://')
  if (u.hostname === '') throw new Error('outbound.relay has no host')
  const implicitTls = u.protocol === 'smtps:'
  const port = u.port === '' ? (implicitTls ? 465 : 587) : Number(u.port)
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1')
  if (u.username === '') return { host, port, implicitTls }
  return { host, port, implicitTls, auth: { user: decodeURIComponent(u.username), pass: decodeURIComponent(u.password) } }
}

export function createDeliverer (components: DelivererComponents, init: DelivererInit): Deliverer {
  const log = components.logger
  const now = components.now ?? Date.now
  const resolver = components.resolver ?? createMxResolver({ random: components.random }, {
    dnsServers: init.dnsServers,
    dnsTimeoutMs: init.dnsTimeoutMs,
    dnsTries: init.dnsTries,
    localAddresses: init.localAddresses,
    ownSmtpPort: init.ownSmtpPort,
    port: init.port
  })
  const sts: MtaSts = createMtaSts({ resolver, now }, { ca: init.tls?.ca, httpsPort: init.mtaStsHttpsPort })
  const relay = init.relay === '' ? null : parseRelay(init.relay)
  const sessionsMax = init.sessionsPerDestination ?? DESTINATION_SESSIONS_MAX
  const rate = init.messagesPerSecond ?? DESTINATION_MESSAGES_PER_S
  const intervalMs = rate > 0 ? 1000 / rate : 0
  const idleMs = init.sessionIdleMs ?? SESSION_IDLE_MS
  const perSession = init.transactionsPerSession ?? SESSION_TRANSACTIONS_MAX
  const destinations = new Map<string, Destination>()
  // Only successful lookups are cached: a failure is looked up again on the next attempt.
  const routes = new Map<string, { hosts: MxHost[], enforce: string | null, expiresAt: number }>()
  const idle = new Map<string, Session[]>() // by endpoint key
  const open = new Set<Session>()
  let closed = false
  let sweeper: NodeJS.Timeout | null = null

  const sweep = (): void => {
    const t = Date.now()
    for (const [key, list] of idle) {
      const keep = list.filter(s => {
        if (s.usable && t - s.lastUsedAt < idleMs) return true
        s.close()
        open.delete(s)
        return false
      })
      if (keep.length === 0) idle.delete(key); else idle.set(key, keep)
    }
    if (idle.size === 0 && sweeper !== null) { clearInterval(sweeper); sweeper = null }
  }

  const park = (key: string, s: Session): void => {
    if (closed || !s.usable || s.transactions >= perSession) { s.close(); open.delete(s); return }
    idle.set(key, [...(idle.get(key) ?? []), s])
    sweeper ??= setInterval(sweep, Math.max(100, Math.min(1000, idleMs / 2)))
    sweeper.unref()
  }

  /** Waits for a session slot and the rate limit of a destination; resolves to the slot's release. */
  const acquire = async (key: string, signal?: AbortSignal): Promise<() => void> => {
    let d = destinations.get(key)
    if (d === undefined) { d = { inUse: 0, waiters: [], nextStartAt: 0 }; destinations.set(key, d) }
    const dest = d
    const deadline = Date.now() + WAIT_MS_MAX
    while (dest.inUse >= sessionsMax) {
      if (closed) throw new Error('outbound delivery is shutting down')
      await new Promise<void>((resolve, reject) => {
        const wake = (): void => { clearTimeout(timer); signal?.removeEventListener('abort', onAbort); resolve() }
        const onAbort = (): void => { dest.waiters = dest.waiters.filter(w => w !== wake); clearTimeout(timer); reject(signal?.reason) }
        const timer = setTimeout(() => { dest.waiters = dest.waiters.filter(w => w !== wake); reject(new Error('destination busy')) }, Math.max(1, deadline - Date.now()))
        dest.waiters.push(wake)
        signal?.addEventListener('abort', onAbort, { once: true })
      })
    }
    dest.inUse++
    let released = false
    const release = (): void => {
      if (released) return
      released = true
      dest.inUse--
      dest.waiters.shift()?.()
      if (dest.inUse === 0 && dest.waiters.length === 0 && dest.nextStartAt < Date.now()) destinations.delete(key)
    }
    // The rate limit: transactions of one destination start at least intervalMs apart.
    const wait = dest.nextStartAt - Date.now()
    dest.nextStartAt = Math.max(Date.now(), dest.nextStartAt) + intervalMs
    if (wait > 0) {
      try {
        await sleep(wait, signal)
      } catch (err) {
        release()
        throw err
      }
    }
    return release
  }

  const endpointKey = (r: Route, s: Omit<SessionInit, 'address' | 'servername' | 'name'>): string =>
    `${r.address}|${s.port}|${r.servername}|${s.starttls}|${String(s.verifyCertificate)}|${String(s.implicitTls === true)}`

  /** A pooled session for this route (after RSET), or a new one. Throws SessionError. */
  const session = async (route: Route, shape: Omit<SessionInit, 'address' | 'servername' | 'name'>, signal?: AbortSignal): Promise<{ s: Session, key: string }> => {
    const key = endpointKey(route, shape)
    const list = idle.get(key) ?? []
    while (list.length > 0) {
      const s = list.pop() as Session
      if (s.usable && Date.now() - s.lastUsedAt < idleMs && await s.reset(signal)) return { s, key }
      s.close()
      open.delete(s)
    }
    const s = await Session.open({ ...shape, address: route.address, servername: route.servername, name: init.hostname, ca: init.tls?.ca, timeouts: init.timeouts }, signal)
    open.add(s)
    return { s, key }
  }

  const logOutcomes = (domain: string, outcomes: RcptOutcome[]): void => {
    const groups = new Map<string, RcptOutcome[]>()
    for (const o of outcomes) {
      const k = `${o.status}|${o.remote}|${o.code}|${o.response}`
      groups.set(k, [...(groups.get(k) ?? []), o])
    }
    for (const list of groups.values()) {
      const o = list[0] as RcptOutcome
      const fields = { domain, remote: o.remote, code: o.code, enhanced: o.enhanced, response: o.response, rcpts: list.map(x => x.rcpt) }
      if (o.status === 'sent') log.info(fields, 'outbound_sent')
      else if (o.status === 'deferred') log.warn(fields, 'outbound_deferred')
      else log.warn(fields, 'outbound_failed')
    }
  }

  const deliver = async (domain: string, envelope: Envelope, message: Buffer, opts?: OpOptions): Promise<RcptOutcome[]> => {
    const signal = opts?.signal
    const rcpts = envelope.rcpts.map(r => r.address)
    const all = (status: RcptOutcome['status'], enhanced: string, response: string, code = 0, remote = ''): RcptOutcome[] =>
      rcpts.map(rcpt => ({ rcpt, status, code, enhanced, response, remote }))
    if (closed) return all('deferred', '4.3.2', 'outbound delivery is shutting down')
    if (rcpts.length === 0) return []
    if (envelope.smtpUtf8 !== true && [envelope.from, ...rcpts].some(a => /[^\x00-\x7f]/.test(a))) {
      return all('failed', '5.6.7', 'non-ASCII address in a message not marked SMTPUTF8')
    }

    // Where to go, and how.
    let hosts: MxHost[]
    let shape: Omit<SessionInit, 'address' | 'servername' | 'name'>
    let destKey: string
    if (relay !== null) {
      let addrs: string[]
      try {
        addrs = await resolver.addresses(relay.host, { signal })
      } catch (err) {
        signal?.throwIfAborted()
        return all('deferred', '4.4.3', `smarthost ${relay.host}: ${(err as Error).message}`)
      }
      if (addrs.length === 0) return all('deferred', '4.4.4', `smarthost ${relay.host} has no address`)
      hosts = [{ name: relay.host, preference: 0, addresses: addrs }]
      // The smarthost gets our credentials: TLS is required (implicit or STARTTLS) and its certificate checked.
      shape = { port: relay.port, implicitTls: relay.implicitTls, starttls: relay.implicitTls ? 'none' : 'required', verifyCertificate: true, auth: relay.auth }
      destKey = 'relay'
    } else {
      destKey = `domain:${domain.toLowerCase()}`
      let route = routes.get(destKey)
      if (route === undefined || route.expiresAt <= now()) {
        const mx = await resolver.resolve(domain, { signal })
        if (!mx.ok) return all(mx.permanent ? 'failed' : 'deferred', mx.enhanced, mx.message)
        const decision = await sts.decide(domain, mx.hosts, { signal })
        if (decision.enforce && decision.hosts.length === 0) {
          return all('deferred', '4.7.5', `MTA-STS policy ${decision.policy.id} of ${domain} allows none of its MX hosts (${mx.hosts.map(h => h.name).join(', ')})`)
        }
        route = { hosts: decision.enforce ? decision.hosts : mx.hosts, enforce: decision.enforce ? decision.policy.id : null, expiresAt: now() + ROUTE_CACHE_MS }
        routes.delete(destKey)
        routes.set(destKey, route)
        if (routes.size > ROUTE_CACHE_ENTRIES_MAX) routes.delete(routes.keys().next().value as string)
      }
      hosts = route.hosts
      // RFC 8461 4.2: under an enforced policy, STARTTLS with a certificate valid for the MX name, or no delivery.
      shape = route.enforce !== null
        ? { port: init.port, starttls: 'required', verifyCertificate: true }
        : { port: init.port, starttls: 'opportunistic', verifyCertificate: false }
    }

    // Recipients still open, and the last thing that happened to each.
    const results = new Map<string, RcptOutcome>()
    let pending = [...envelope.rcpts]
    let lastDeferral: RcptOutcome | null = null
    let release: (() => void) | null = null
    try {
      try {
        release = await acquire(destKey, signal)
      } catch (err) {
        signal?.throwIfAborted()
        return all('deferred', '4.4.5', `destination busy: ${(err as Error).message}`)
      }
      let tried = 0
      outer: for (const host of hosts) {
        for (const address of host.addresses) {
          if (pending.length === 0 || tried >= ADDRESSES_TRIED_MAX) break outer
          signal?.throwIfAborted()
          tried++
          const route = { servername: host.name, address }
          const remote = `${host.name}[${address}]:${shape.port}`
          let got: { s: Session, key: string }
          try {
            got = await session(route, shape, signal)
          } catch (err) {
            signal?.throwIfAborted()
            if (err instanceof SessionError && err.tls && shape.starttls === 'opportunistic') {
              // A failed opportunistic TLS handshake: the same address again without TLS (what Postfix does).
              try {
                got = await session(route, { ...shape, starttls: 'none' }, signal)
              } catch (err2) {
                signal?.throwIfAborted()
                lastDeferral = sessionDeferral(err2, remote)
                continue
              }
            } else {
              // The next address may answer (RFC 5321 5.1); the last answer decides for what stays open.
              lastDeferral = sessionDeferral(err, remote)
              continue
            }
          }
          const { s, key } = got
          // Postfix's loop check: the remote greets us with our own name.
          if (s.ehloName !== '' && s.ehloName === init.hostname.toLowerCase()) {
            s.close()
            open.delete(s)
            for (const r of pending) results.set(r.address, { rcpt: r.address, status: 'failed', code: 0, enhanced: '5.4.6', response: `mail for ${domain} loops back to myself`, remote })
            pending = []
            break outer
          }
          if (!s.extensions.includes('SMTPUTF8') && [envelope.from, ...pending.map(r => r.address)].some(a => /[^\x00-\x7f]/.test(a))) {
            park(key, s)
            // RFC 6531 3.2: an internationalized address cannot go to a server without SMTPUTF8.
            for (const r of pending) results.set(r.address, { rcpt: r.address, status: 'failed', code: 0, enhanced: '5.6.7', response: `${remote} does not support SMTPUTF8, needed for a non-ASCII address`, remote })
            pending = []
            break outer
          }
          if (s.sizeLimit > 0 && message.length > s.sizeLimit) {
            park(key, s)
            // RFC 1870 6: the remote's fixed limit is a permanent refusal.
            for (const r of pending) results.set(r.address, { rcpt: r.address, status: 'failed', code: 0, enhanced: '5.3.4', response: `message of ${message.length} bytes exceeds ${remote}'s size limit of ${s.sizeLimit}`, remote })
            pending = []
            break outer
          }
          const tx = await s.send({ ...envelope, rcpts: pending }, message, signal)
          if (tx.broken) { s.close(); open.delete(s) } else park(key, s)
          signal?.throwIfAborted()
          const still: typeof pending = []
          pending.forEach((r, i) => {
            const reply = tx.replies[i] ?? null
            if (reply === null || reply.code === 0) {
              lastDeferral = { rcpt: r.address, status: 'deferred', code: 0, enhanced: '4.4.2', response: `connection to ${remote} failed: ${tx.error ?? 'no reply'}`, remote }
              results.set(r.address, lastDeferral)
              still.push(r)
              return
            }
            const status: RcptOutcome['status'] = reply.code < 400 ? 'sent' : reply.code < 500 ? 'deferred' : 'failed'
            const enhanced = enhancedOf(reply.code, reply.response)
            const o = { rcpt: r.address, status, code: reply.code, enhanced, response: reply.response, remote }
            results.set(r.address, o)
            if (status === 'deferred') still.push(r) // a 4xx here: the next MX may take it (RFC 5321 5.1)
          })
          pending = still
        }
      }
    } finally {
      release?.()
    }
    const outcomes = rcpts.map(rcpt => results.get(rcpt) ?? (lastDeferral !== null
      ? { ...lastDeferral, rcpt }
      : { rcpt, status: 'deferred' as const, code: 0, enhanced: '4.4.1', response: 'no MX host could be reached', remote: '' }))
    return outcomes
  }

  return {
    async send (domain, envelope, message, opts) {
      const outcomes = await deliver(domain, envelope, message, opts)
      logOutcomes(domain, outcomes)
      return outcomes
    },
    async close () {
      if (closed) return
      closed = true
      if (sweeper !== null) { clearInterval(sweeper); sweeper = null }
      for (const s of open) s.close()
      open.clear()
      idle.clear()
      for (const d of destinations.values()) for (const w of d.waiters.splice(0)) w()
    }
  }
}

/** What a failed session set-up means for the recipients: a greeting or EHLO 5xx is permanent, the rest temporary. */
function sessionDeferral (err: unknown, remote: string): RcptOutcome {
  if (err instanceof SessionError) {
    // A refused AUTH is a configuration to fix, not a verdict on the message: retried (Postfix's
    // smtp_sasl_auth_soft_bounce). The remote's reply is kept, the credentials are not in it.
    if (err.auth) return { rcpt: '', status: 'deferred', code: err.code, enhanced: '4.7.0', response: `authentication at ${remote} failed: ${err.response !== '' ? err.response : err.message}`, remote }
    if (err.code >= 500 && err.code < 600 && !err.tls) {
      return { rcpt: '', status: 'failed', code: err.code, enhanced: enhancedOf(err.code, err.response), response: err.response, remote }
    }
    if (err.tls) return { rcpt: '', status: 'deferred', code: err.code, enhanced: '4.7.5', response: `TLS with ${remote} failed: ${err.message}`, remote }
    if (err.code >= 400) return { rcpt: '', status: 'deferred', code: err.code, enhanced: enhancedOf(err.code, err.response), response: err.response, remote }
    return { rcpt: '', status: 'deferred', code: 0, enhanced: '4.4.1', response: `connection to ${remote} failed: ${err.message}`, remote }
  }
  return { rcpt: '', status: 'deferred', code: 0, enhanced: '4.4.1', response: `connection to ${remote} failed: ${String((err as Error).message ?? err)}`, remote }
}

async function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clearTimeout(timer); reject(signal?.reason) }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

// The admin HTTP API the `mailgrid` command talks to: JSON over HTTPS (the node's certificate) or, on loopback
// only, plain HTTP (config admin.tls), every request authenticated by the bearer token kept in DATA/admin.token.
// Store errors (MailError kinds) become HTTP statuses in one table; anything else is an internal error with a
// log id, never a stack trace.
//
//   GET    /metrics                        Prometheus text (the admin token, or metrics.token when configured)
//   GET    /v1/status                      the node's status, with the admin listener's URL and certificate
//   GET    /v1/domains                     POST /v1/domains {name}           DELETE /v1/domains/NAME
//   GET    /v1/users[?domain=D]            POST /v1/users {address, password, quotaBytes?, quotaMessages?}
//   GET    /v1/users/ADDRESS               DELETE /v1/users/ADDRESS
//   PUT    /v1/users/ADDRESS/password {password}
//   PUT    /v1/users/ADDRESS/quota {bytes?, messages?}
//   GET    /v1/aliases[?domain=D]          POST /v1/aliases {address, targets}  DELETE /v1/aliases/ADDRESS
//   GET    /v1/queue                       the outbound queue, grid-wide   GET /v1/queue/ID
//   POST   /v1/queue/retry                 every message due now           POST /v1/queue/ID/retry
//   POST   /v1/queue/ID/hold               POST /v1/queue/ID/release       DELETE /v1/queue/ID
//   GET    /v1/domains/NAME/dkim           POST /v1/domains/NAME/dkim/rotate (a new key: active if none is)
//   POST   /v1/domains/NAME/dkim/SEL/activate                 DELETE /v1/domains/NAME/dkim/SEL (retire)
//   GET    /v1/dns/NAME                    the records the domain needs  GET /v1/dns/NAME/check[?servers=IP[:PORT],...]
//   PUT    /v1/users/ADDRESS/name {displayName}
//
// The web console (appliance/console/) serves its pages and login on the same listener; a request carrying its
// session cookie instead of the token acts as that admin account, must carry the session's CSRF token
// (X-CSRF-Token) on every change, and, for a domain administrator, reaches only the routes marked `scoped`,
// each of which checks the domain it touches (mayManage).

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { createServer } from 'node:http'
import { createServer as createTlsServer } from 'node:https'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import { isMailError, normalizeAddress, normalizeAliasAddress, normalizeDomain } from '../store/index.ts'
import type { Directory, MailErrorKind } from '../store/index.ts'
import type { NodeStatus } from '../node/types.ts'
import type { OutboundQueue } from '../node/outbound/types.ts'
import { isIP } from 'node:net'
import { activateDkimKey, checkRecords, createDkimKey, domainRecords, mtaStsPolicy, publicView, retireDkimKey, rotateDkimKey, selectorFor } from '../node/mailauth/index.ts'
import type { DomainFacts } from '../node/mailauth/index.ts'
import { isFullAdmin, mayManage } from './console/accounts.ts'
import type { Principal } from './console/accounts.ts'

export const ADMIN_BODY_BYTES_MAX = 1024 * 1024 // an alias of 1000 targets of 254 bytes (RFC 5321 paths) fits
export const ADMIN_HEADERS_TIMEOUT_MS = 10_000 // a client that has not sent its headers by then is not our CLI
export const ADMIN_REQUEST_TIMEOUT_MS = 60_000 // scrypt hashing of a password takes well under a second
export const ADMIN_CONNECTIONS_MAX = 64 // the CLI opens one at a time; this only bounds a misbehaving local client

export interface AdminComponents {
  directory: Directory
  status: () => Promise<NodeStatus>
  /** The node's handle on the grid's outbound queue (MailNode.queue). */
  queue: OutboundQueue
  logger: Logger
  /** What GET /metrics serves (appliance/metrics.ts); absent: no such endpoint. */
  metrics?: { contentType: string, render (): Promise<string> }
  /** More endpoints, each feature's own table (a feature module exports a function returning Route[]). */
  routes?: Route[]
  /** The web console (appliance/console/server.ts): its public pages and login, and its sessions. */
  console?: ConsoleHooks
}

export interface ConsoleHooks {
  /** Serves a request that needs no login (the pages, their assets, the login itself); null: not one of those. */
  public (req: IncomingMessage, res: ServerResponse, url: URL, headers: Record<string, string>): Promise<number | null>
  /** The logged-in admin behind the request's session cookie, or null. */
  principal (req: IncomingMessage): Promise<Principal | null>
}

/** Sent with every answer: the console's pages run no inline script and load nothing from elsewhere. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=()'
}

/** The certificate the listener serves, with what the status shows of it. */
export interface AdminTls {
  cert: string | Buffer
  key: string | Buffer
  fingerprint: string // SHA-256, as X509Certificate.fingerprint256 writes it
  validTo: string
  selfSigned: boolean
}

export interface AdminInit {
  host: string
  port: number // 0 = ephemeral
  token: string
  /** Speak HTTPS with this certificate; absent: plain HTTP (the appliance allows that on loopback only). */
  tls?: AdminTls
  /** A second token that reads /metrics and nothing else (config metrics.token); '' or absent: none. */
  metricsToken?: string
}

export interface AdminServer {
  start (): Promise<void>
  stop (): Promise<void>
  /** `http://HOST:PORT` or `https://HOST:PORT` once started. */
  readonly url: string
}

export const METRICS_PATH = '/metrics'

/** Each store error kind as an HTTP status, the one place this mapping lives. */
export const HTTP_STATUS: Readonly<Record<MailErrorKind, number>> = {
  invalid: 400,
  authFailed: 403,
  denied: 409, // e.g. deleting a domain that still has users: a conflict with the current state
  notFound: 404,
  nonExistent: 404,
  exists: 409,
  hasChildren: 409,
  expungeIssued: 409,
  tooBig: 413,
  limit: 429,
  noQuota: 507,
  temp: 503,
  unavailable: 503
}

/** An error whose message is safe to show the client, with its status. */
export class HttpError extends Error {
  readonly status: number
  constructor (status: number, message: string) {
    super(message)
    this.status = status
  }
}

export type Body = Record<string, unknown>
export interface Request {
  params: string[]
  query: URLSearchParams
  body: () => Promise<Body>
  /** Who asks: the bearer token, or a console admin account (possibly limited to some domains). */
  principal: Principal
}
/** `text`: sent as it is, with `contentType`, instead of `json` (a CSV download). */
export type Handler = (req: Request) => Promise<{ status?: number, json: unknown, text?: string, contentType?: string }>
/**
 * `scoped`: a domain administrator may call it, and the handler itself refuses what lies outside the admin's
 * domains (mustManage); routes without it answer 403 to a domain administrator.
 */
export interface Route { method: string, pattern: RegExp, handler: Handler, scoped?: boolean }

/** Refuses (403) a principal that may not act on this domain. */
export function mustManage (p: Principal, domain: string): void {
  if (!mayManage(p, domain)) throw new HttpError(403, `Not one of your domains: ${domain}`)
}

/** The domain of an address or alias (`@domain` catch-alls included), for mustManage; 400 when malformed. */
export function domainOfAddress (address: string, alias = false): string {
  const a = alias ? normalizeAliasAddress(address) : normalizeAddress(address)
  if (a === null) throw new HttpError(400, `Invalid address: ${address}`)
  return a.slice(a.lastIndexOf('@') + 1)
}

export function str (body: Body, key: string): string {
  const v = body[key]
  if (typeof v !== 'string') throw new HttpError(400, `${key}: must be a string`)
  return v
}

export function optCount (body: Body, key: string): number | undefined {
  const v = body[key]
  if (v === undefined || v === null) return undefined
  if (!Number.isSafeInteger(v) || (v as number) < 0) throw new HttpError(400, `${key}: must be a whole number`)
  return v as number
}

export function domainParam (query: URLSearchParams): string | undefined {
  const d = query.get('domain')
  if (d === null || d === '') return undefined
  const n = normalizeDomain(d)
  if (n === null) throw new HttpError(400, `Invalid domain name: ${d}`)
  return n
}

function routes (c: AdminComponents, admin: () => { url: string, tls: Omit<AdminTls, 'cert' | 'key'> | null }): Route[] {
  const dir = c.directory
  const knownDomain = async (d: string | undefined): Promise<void> => {
    if (d !== undefined && await dir.getDomain(d) === null) throw new HttpError(404, `No such domain: ${d}`)
  }
  return [
    { method: 'GET', pattern: /^\/v1\/status$/, handler: async () => ({ json: { ...await c.status(), admin: admin() } }) },

    { method: 'GET', pattern: /^\/v1\/domains$/, scoped: true, handler: async r => ({ json: { domains: (await dir.listDomains()).filter(d => mayManage(r.principal, d.name)) } }) },
    {
      method: 'POST',
      pattern: /^\/v1\/domains$/,
      handler: async r => {
        const name = str(await r.body(), 'name')
        if (normalizeDomain(name) === null) throw new HttpError(400, `Invalid domain name: ${name}`)
        // every domain signs its mail from the start: its first DKIM key is made with it, in the same record
        const now = Date.now()
        return { status: 201, json: { domain: await dir.addDomain(name, { dkim: await createDkimKey(selectorFor(now, []), now) }) } }
      }
    },
    { method: 'DELETE', pattern: /^\/v1\/domains\/([^/]+)$/, handler: async r => { await dir.deleteDomain(r.params[0]); return { json: { deleted: r.params[0] } } } },

    {
      method: 'GET',
      pattern: /^\/v1\/users$/,
      scoped: true,
      handler: async r => {
        const d = domainParam(r.query)
        if (d !== undefined) mustManage(r.principal, d)
        await knownDomain(d)
        return { json: { users: (await dir.listUsers(d)).filter(u => mayManage(r.principal, domainOfAddress(u.address))) } }
      }
    },
    {
      method: 'POST',
      pattern: /^\/v1\/users$/,
      scoped: true,
      handler: async r => {
        const b = await r.body()
        mustManage(r.principal, domainOfAddress(str(b, 'address')))
        const displayName = b.displayName === undefined ? undefined : str(b, 'displayName')
        const user = await dir.addUser({ address: str(b, 'address'), password: str(b, 'password'), quotaBytes: optCount(b, 'quotaBytes'), quotaMessages: optCount(b, 'quotaMessages'), displayName })
        return { status: 201, json: { user } }
      }
    },
    {
      method: 'GET',
      pattern: /^\/v1\/users\/([^/]+)$/,
      scoped: true,
      handler: async r => {
        mustManage(r.principal, domainOfAddress(r.params[0]))
        const user = await dir.getUser(r.params[0])
        if (user === null) throw new HttpError(404, `No such user: ${r.params[0]}`)
        return { json: { user } }
      }
    },
    { method: 'DELETE', pattern: /^\/v1\/users\/([^/]+)$/, scoped: true, handler: async r => { mustManage(r.principal, domainOfAddress(r.params[0])); await dir.deleteUser(r.params[0]); return { json: { deleted: r.params[0] } } } },
    {
      method: 'PUT',
      pattern: /^\/v1\/users\/([^/]+)\/password$/,
      scoped: true,
      handler: async r => { mustManage(r.principal, domainOfAddress(r.params[0])); await dir.setPassword(r.params[0], str(await r.body(), 'password')); return { json: { updated: r.params[0] } } }
    },
    {
      method: 'PUT',
      pattern: /^\/v1\/users\/([^/]+)\/quota$/,
      scoped: true,
      handler: async r => {
        mustManage(r.principal, domainOfAddress(r.params[0]))
        const b = await r.body()
        const quota = { bytes: optCount(b, 'bytes'), messages: optCount(b, 'messages') }
        if (quota.bytes === undefined && quota.messages === undefined) throw new HttpError(400, 'bytes or messages: one is required')
        await dir.setQuota(r.params[0], quota)
        return { json: { user: await dir.getUser(r.params[0]) } }
      }
    },
    {
      method: 'PUT',
      pattern: /^\/v1\/users\/([^/]+)\/name$/,
      scoped: true,
      handler: async r => {
        mustManage(r.principal, domainOfAddress(r.params[0]))
        await dir.setDisplayName(r.params[0], str(await r.body(), 'displayName'))
        return { json: { user: await dir.getUser(r.params[0]) } }
      }
    },

    {
      method: 'GET',
      pattern: /^\/v1\/aliases$/,
      scoped: true,
      handler: async r => {
        const d = domainParam(r.query)
        if (d !== undefined) mustManage(r.principal, d)
        await knownDomain(d)
        return { json: { aliases: (await dir.listAliases(d)).filter(a => mayManage(r.principal, domainOfAddress(a.address, true))) } }
      }
    },
    {
      method: 'POST',
      pattern: /^\/v1\/aliases$/,
      scoped: true,
      handler: async r => {
        const b = await r.body()
        mustManage(r.principal, domainOfAddress(str(b, 'address'), true))
        const targets = b.targets
        if (!Array.isArray(targets) || !targets.every(t => typeof t === 'string')) throw new HttpError(400, 'targets: must be an array of strings')
        return { status: 201, json: { alias: await dir.addAlias(str(b, 'address'), targets) } }
      }
    },
    { method: 'DELETE', pattern: /^\/v1\/aliases\/([^/]+)$/, scoped: true, handler: async r => { mustManage(r.principal, domainOfAddress(r.params[0], true)); await dir.deleteAlias(r.params[0]); return { json: { deleted: r.params[0] } } } },

    ...queueRoutes(c.queue),
    ...dkimRoutes(c)
  ]
}

/** DKIM keys (node/mailauth/keys.ts) and the DNS records a domain needs (node/mailauth/dns.ts). */
function dkimRoutes (c: AdminComponents): Route[] {
  const dir = c.directory
  const domainOf = async (name: string): Promise<string> => {
    const d = await dir.getDomain(name)
    if (d === null) throw new HttpError(404, `No such domain: ${name}`)
    return d.name
  }
  const facts = async (domain: string): Promise<DomainFacts> => {
    const st = await c.status()
    const others = (st.grid?.members ?? []).filter(m => m.id !== st.grid?.self && (m.status === 'alive' || m.status === 'suspect') && m.name !== '').map(m => m.name)
    const ports: DomainFacts['ports'] = {}
    for (const s of st.services) if (s.name !== 'smtp' && s.name !== 'managesieve') ports[s.name] = s.port
    return { domain, hosts: [...new Set([st.hostname, ...others])], ports, dkim: await dir.dkimKeys(domain) }
  }
  const servers = (q: URLSearchParams): string[] => {
    const list = (q.get('servers') ?? '').split(',').map(x => x.trim()).filter(x => x !== '')
    for (const x of list) {
      const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d{1,5}))?$/.exec(x)
      if (m === null || isIP(m[1] ?? m[2]) === 0 || (m[3] !== undefined && Number(m[3]) > 65535)) throw new HttpError(400, `servers: not an IP[:PORT]: ${x}`)
    }
    return list
  }
  return [
    {
      method: 'GET',
      pattern: /^\/v1\/domains\/([^/]+)\/dkim$/,
      scoped: true,
      handler: async r => {
        mustManage(r.principal, r.params[0]); const d = await domainOf(r.params[0]); return { json: { keys: (await dir.dkimKeys(d)).map(k => publicView(k, d)) } } }
    },
    {
      method: 'POST',
      pattern: /^\/v1\/domains\/([^/]+)\/dkim\/rotate$/,
      handler: async r => { const d = await domainOf(r.params[0]); return { status: 201, json: { key: publicView(await rotateDkimKey(dir, d, Date.now()), d) } } }
    },
    {
      method: 'POST',
      pattern: /^\/v1\/domains\/([^/]+)\/dkim\/([^/]+)\/activate$/,
      handler: async r => { const d = await domainOf(r.params[0]); return { json: { keys: (await activateDkimKey(dir, d, r.params[1])).map(k => publicView(k, d)) } } }
    },
    {
      method: 'DELETE',
      pattern: /^\/v1\/domains\/([^/]+)\/dkim\/([^/]+)$/,
      handler: async r => { const d = await domainOf(r.params[0]); return { json: { keys: (await retireDkimKey(dir, d, r.params[1])).map(k => publicView(k, d)) } } }
    },
    {
      method: 'GET',
      pattern: /^\/v1\/dns\/([^/]+)$/,
      scoped: true,
      handler: async r => {
        mustManage(r.principal, r.params[0])
        const f = await facts(await domainOf(r.params[0]))
        return { json: { domain: f.domain, records: domainRecords(f), mtaStsPolicy: mtaStsPolicy(f.hosts) } }
      }
    },
    {
      method: 'GET',
      pattern: /^\/v1\/dns\/([^/]+)\/check$/,
      scoped: true,
      handler: async r => {
        mustManage(r.principal, r.params[0])
        const list = servers(r.query)
        const f = await facts(await domainOf(r.params[0]))
        return { json: await checkRecords(f.domain, domainRecords(f), { servers: list }) }
      }
    }
  ]
}

function queueRoutes (queue: OutboundQueue): Route[] {
  const missing = (id: string): HttpError => new HttpError(404, `No such queued message: ${id}`)
  // hold, release and delete answer true when the message was there to act on
  const act = (verb: 'hold' | 'release' | 'delete', past: string): Handler => async r => {
    const id = r.params[0]
    if (!await queue[verb](id)) throw missing(id)
    return { json: { [past]: id } }
  }
  return [
    { method: 'GET', pattern: /^\/v1\/queue$/, handler: async () => ({ json: { items: await queue.list() } }) },
    { method: 'POST', pattern: /^\/v1\/queue\/retry$/, handler: async () => ({ json: { retried: await queue.retry('all') } }) },
    {
      method: 'GET',
      pattern: /^\/v1\/queue\/([^/]+)$/,
      handler: async r => {
        const item = await queue.show(r.params[0])
        if (item === null) throw missing(r.params[0])
        return { json: { item } }
      }
    },
    {
      method: 'POST',
      pattern: /^\/v1\/queue\/([^/]+)\/retry$/,
      handler: async r => {
        // 'all' is the interface's word for every message, never an id from this path
        if (r.params[0] === 'all') throw missing(r.params[0])
        const retried = await queue.retry(r.params[0])
        // nothing touched: a message that is gone, or one the queue chose to leave as it is (held)
        if (retried === 0 && await queue.show(r.params[0]) === null) throw missing(r.params[0])
        return { json: { retried } }
      }
    },
    { method: 'DELETE', pattern: /^\/v1\/queue\/([^/]+)$/, handler: act('delete', 'deleted') },
    { method: 'POST', pattern: /^\/v1\/queue\/([^/]+)\/hold$/, handler: act('hold', 'held') },
    { method: 'POST', pattern: /^\/v1\/queue\/([^/]+)\/release$/, handler: act('release', 'released') }
  ]
}

function digest (s: string): Buffer {
  return createHash('sha256').update(s).digest()
}

/** Reads a JSON object body of at most ADMIN_BODY_BYTES_MAX bytes. */
async function readBody (req: IncomingMessage): Promise<Body> {
  const declared = Number(req.headers['content-length'] ?? 0)
  if (declared > ADMIN_BODY_BYTES_MAX) throw new HttpError(413, `Request body larger than ${ADMIN_BODY_BYTES_MAX} bytes`)
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > ADMIN_BODY_BYTES_MAX) throw new HttpError(413, `Request body larger than ${ADMIN_BODY_BYTES_MAX} bytes`)
    chunks.push(chunk)
  }
  let v: unknown
  try {
    v = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new HttpError(400, 'Request body is not valid JSON')
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new HttpError(400, 'Request body must be a JSON object')
  return v as Body
}

function sendText (res: ServerResponse, status: number, text: string, contentType: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': contentType, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...headers })
  res.end(text)
}

function send (res: ServerResponse, status: number, json: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(json) + '\n'
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...headers })
  res.end(text)
}

export function createAdminServer (components: AdminComponents, init: AdminInit): AdminServer {
  const log = components.logger
  const tlsInfo = init.tls === undefined ? null : { fingerprint: init.tls.fingerprint, validTo: init.tls.validTo, selfSigned: init.tls.selfSigned }
  let url = ''
  const table = [...routes(components, () => ({ url, tls: tlsInfo })), ...(components.routes ?? [])]
  const expected = digest(init.token)
  const metricsExpected = init.metricsToken === undefined || init.metricsToken === '' ? null : digest(init.metricsToken)
  let server: Server | null = null

  // Hashing both sides gives equal-length buffers, so the comparison's time says nothing about the token.
  // Both are compared, whichever matches, so the time taken does not tell which token was close.
  const authorized = (header: string | undefined, metricsToo: boolean): boolean => {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '')
    if (m === null) return false
    const got = digest(m[1])
    const admin = timingSafeEqual(got, expected)
    const scrape = metricsExpected !== null && timingSafeEqual(got, metricsExpected)
    return admin || (metricsToo && scrape)
  }

  const extra: Record<string, string> = init.tls === undefined ? {} : { 'strict-transport-security': 'max-age=31536000' }
  const csrfOk = (req: IncomingMessage, p: Principal): boolean => {
    if (p.kind !== 'admin') return true
    const got = req.headers['x-csrf-token']
    if (typeof got !== 'string' || !timingSafeEqual(digest(got), digest(p.csrf))) return false
    // a browser names the page a request comes from: it must be this very listener
    const origin = req.headers.origin
    return origin === undefined || origin === `${init.tls === undefined ? 'http' : 'https'}://${req.headers.host ?? ''}`
  }

  async function handle (req: IncomingMessage, res: ServerResponse): Promise<number> {
    const parsed = new URL(req.url ?? '/', 'http://admin.invalid')
    if (components.console !== undefined) {
      const served = await components.console.public(req, res, parsed, { ...SECURITY_HEADERS, ...extra })
      if (served !== null) return served
    }
    const scrape = parsed.pathname === METRICS_PATH && components.metrics !== undefined
    // a console session (its cookie, no Authorization header) for everything but /metrics
    let principal: Principal | null = null
    if (req.headers.authorization === undefined && !scrape && components.console !== undefined) {
      principal = await components.console.principal(req)
      if (principal === null) {
        send(res, 401, { error: 'Not logged in (or the session expired)' }, extra)
        return 401
      }
      if (req.method !== 'GET' && req.method !== 'HEAD' && !csrfOk(req, principal)) {
        send(res, 403, { error: 'Missing or wrong CSRF token' }, extra)
        return 403
      }
    } else if (!authorized(req.headers.authorization, scrape)) {
      send(res, 401, { error: scrape && metricsExpected !== null ? 'Missing or wrong admin or metrics token' : 'Missing or wrong admin token' }, { 'www-authenticate': 'Bearer' })
      return 401
    }
    if (scrape && components.metrics !== undefined) {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        send(res, 405, { error: `Method ${req.method ?? ''} not allowed here` }, { allow: 'GET, HEAD' })
        return 405
      }
      const text = await components.metrics.render()
      res.writeHead(200, { 'content-type': components.metrics.contentType, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' })
      res.end(req.method === 'HEAD' ? undefined : text)
      return 200
    }
    const matches = table.map(r => ({ r, m: r.pattern.exec(parsed.pathname) })).filter(x => x.m !== null)
    if (matches.length === 0) throw new HttpError(404, `No such endpoint: ${parsed.pathname}`)
    const hit = matches.find(x => x.r.method === req.method)
    if (hit === undefined) {
      send(res, 405, { error: `Method ${req.method ?? ''} not allowed here` }, { allow: matches.map(x => x.r.method).join(', ') })
      return 405
    }
    principal ??= { kind: 'token' }
    if (!isFullAdmin(principal) && hit.r.scoped !== true) throw new HttpError(403, 'Not for a domain administrator')
    let params: string[]
    try {
      params = hit.m!.slice(1).map(decodeURIComponent)
    } catch {
      throw new HttpError(400, 'Malformed percent-encoding in the path')
    }
    const out = await hit.r.handler({ params, query: parsed.searchParams, body: async () => await readBody(req), principal })
    const status = out.status ?? 200
    if (out.text !== undefined) sendText(res, status, out.text, out.contentType ?? 'text/plain; charset=utf-8', extra)
    else send(res, status, out.json, extra)
    return status
  }

  function onRequest (req: IncomingMessage, res: ServerResponse): void {
    const started = Date.now()
    handle(req, res).catch((err: unknown) => {
      let status: number
      let message: string
      if (err instanceof HttpError) {
        status = err.status
        message = err.message
      } else if (isMailError(err)) {
        status = HTTP_STATUS[err.kind]
        message = err.message
      } else {
        const logId = randomBytes(6).toString('hex')
        log.error({ event: 'admin_internal_error', logId, err }, 'admin request failed')
        status = 500
        message = `Internal error [${logId}]`
      }
      // After a refused body the rest of it may still be arriving: answer, then close the connection.
      send(res, status, { error: message }, status === 413 ? { ...extra, connection: 'close' } : extra)
      return status
    }).then(status => {
      log.info({ event: 'admin_request', method: req.method, path: (req.url ?? '').split('?')[0], status, ms: Date.now() - started }, 'admin request')
    }, (err: unknown) => {
      log.error({ event: 'admin_response_failed', err }, 'admin response failed')
      res.destroy()
    })
  }

  return {
    get url () { return url },
    async start () {
      if (server !== null) return
      const timeouts = { headersTimeout: ADMIN_HEADERS_TIMEOUT_MS, requestTimeout: ADMIN_REQUEST_TIMEOUT_MS }
      const s: Server = init.tls === undefined
        ? createServer(timeouts, onRequest)
        : createTlsServer({ ...timeouts, cert: init.tls.cert, key: init.tls.key, minVersion: 'TLSv1.2' }, onRequest)
      // a client that gives up on our certificate (an unpinned browser, a wrong fingerprint) is no error of ours
      s.on('tlsClientError', (err: Error) => { log.debug({ event: 'admin_tls_failed', err: err.message }, 'admin TLS handshake failed') })
      s.maxConnections = ADMIN_CONNECTIONS_MAX
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject)
        s.listen(init.port, init.host, () => { s.off('error', reject); resolve() })
      })
      server = s
      const a = s.address() as AddressInfo
      url = `${init.tls === undefined ? 'http' : 'https'}://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`
      log.info({ event: 'admin_listening', url, ...(tlsInfo === null ? {} : { fingerprint: tlsInfo.fingerprint }) }, 'admin API listening')
    },
    async stop () {
      const s = server
      if (s === null) return
      server = null
      const closed = new Promise<void>(resolve => s.close(() => resolve()))
      s.closeAllConnections()
      await closed
    }
  }
}

// The web console's server side: its pages and assets (no login needed to fetch them, nothing secret in them),
// the login and logout, the session behind a request's cookie (for appliance/admin.ts), and the console's own
// JSON endpoints: the session, the Grid page's view of the whole grid (with a short load history per member for
// the sparklines and the verdict "can the grid lose a node now?"), drain/undrain, restart and forget of any member
// (wishes in the replicated directory that the named member, or every node for a forget, acts on), the join key with its QR code, and admin accounts (/v1/admins, also what `mailgrid admin` calls).

import { readFile } from 'node:fs/promises'
import { timingSafeEqual, createHash } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import { renderSVG } from 'uqr'
import type { Directory } from '../../store/index.ts'
import type { NodeStatus } from '../../node/types.ts'
import type { Throttle } from '../../node/limits.ts'
import { HttpError, str } from '../admin.ts'
import type { ConsoleHooks, Route } from '../admin.ts'
import { AccountError, checkDomains, createAccounts } from './accounts.ts'
import type { Accounts, Principal } from './accounts.ts'
import { restartRisk, verdict } from './verdict.ts'
import type { Verdict } from './verdict.ts'

export const COOKIE = 'mg_session'
export const LOGIN_BODY_BYTES_MAX = 4096
export const HISTORY_POINTS = 60 // sparkline length: 5 minutes at one sample per 5 s
export const SAMPLE_MS = 5_000
export const STATE_POLL_MS = 2_000 // how soon a member acts on a drain asked on another node (a directory read, in memory)
const stateEntry = (id: string): string => `node-state/${id}`
const restartEntry = (id: string): string => `node-restart/${id}` // a restart asked of member ID, marked done when it acts
const forgetEntry = (id: string): string => `node-forget/${id}` // dead member ID forgotten for good, until it comes back
const infoEntry = (id: string): string => `node-info/${id}` // what member ID says of itself: whether a supervisor restarts it
export const RESTART_DELAY_MS = 300 // the answer to a restart of the node itself leaves before it starts stopping
// a node status walks every user's replication state: sampled only while someone has the Grid or Nodes page open
export const SAMPLE_IDLE_MS = 10 * 60_000
const COOKIE_HEADER_CHARS_MAX = 8192

const STATIC_DIR = new URL('./static/', import.meta.url)
const UPLOT_DIR = new URL('../../node_modules/uplot/dist/', import.meta.url)
/** Every file the console serves, by name: nothing else under /console/static/ exists. */
const ASSETS: Record<string, { url: URL, type: string }> = {
  'app.js': { url: new URL('app.js', STATIC_DIR), type: 'text/javascript; charset=utf-8' },
  'style.css': { url: new URL('style.css', STATIC_DIR), type: 'text/css; charset=utf-8' },
  'uPlot.iife.min.js': { url: new URL('uPlot.iife.min.js', UPLOT_DIR), type: 'text/javascript; charset=utf-8' },
  'uPlot.min.css': { url: new URL('uPlot.min.css', UPLOT_DIR), type: 'text/css; charset=utf-8' }
}
const INDEX = { url: new URL('index.html', STATIC_DIR), type: 'text/html; charset=utf-8' }

export interface ConsoleComponents {
  directory: Directory
  status: () => Promise<NodeStatus>
  logger: Logger
  /** Login failures count here (the node's grid-wide throttle), under the account `console:NAME`. */
  throttle: Throttle
  /** Drains this node or takes it back (MailNode.setGridState), as asked on any node's console; absent: no such action. */
  setGridState?: (state: 'alive' | 'draining') => void
  /** Stops this node gracefully with the restart exit code (appliance/start.ts), as asked on any node's console; absent: no such action. */
  restart?: () => void
  /** Whether a supervisor (systemd) starts this node again after a restart; published for the other nodes' consoles. */
  supervised?: boolean
  /** Drops a dead member from this node's view for good (MailNode.forgetMember); absent: no such action. */
  forgetMember?: (id: string) => Promise<boolean>
  /** This node's replication lag so far (appliance/metrics.ts); absent: not shown. */
  replicationLag?: () => { count: number, meanSeconds: number, p99Seconds: number | null }
  /** The grid's cluster key, shown on the Nodes page to full admins (how to add a node); absent: not shown. */
  joinKey?: string
  now?: () => number
  scryptLogN?: number
}

export interface WebConsole {
  hooks: ConsoleHooks
  routes: Route[]
  accounts: Accounts
  stop (): void
}

interface Sample { t: number, cpu: number, mem: number, net: number, sessions: number, under: number }

function clientIp (req: IncomingMessage): string {
  return (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '')
}

function cookieValue (req: IncomingMessage, name: string): string | null {
  const header = req.headers.cookie
  if (typeof header !== 'string' || header.length > COOKIE_HEADER_CHARS_MAX) return null
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return null
}

async function smallJson (req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length
    if (size > LOGIN_BODY_BYTES_MAX) throw new HttpError(413, 'Request body too large')
    chunks.push(c)
  }
  try {
    const v = JSON.parse(Buffer.concat(chunks).toString('utf8'))
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>
  } catch {}
  throw new HttpError(400, 'Request body must be a JSON object')
}

function reply (res: ServerResponse, status: number, json: unknown, headers: Record<string, string>): number {
  const text = JSON.stringify(json) + '\n'
  res.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' })
  res.end(text)
  return status
}

const sameDigest = (a: string, b: string): boolean => timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest())

export function createConsole (c: ConsoleComponents, init: { secure: boolean }): WebConsole {
  const now = c.now ?? Date.now
  const log = c.logger
  const accounts = createAccounts(c.directory, c.scryptLogN, now)
  const files = new Map<string, Buffer>()
  const history = new Map<string, Sample[]>() // member id → its last HISTORY_POINTS samples
  let lastStatus: NodeStatus | null = null
  let viewedAt = -Infinity

  const sample = async (): Promise<void> => {
    const st = await c.status()
    lastStatus = st
    const t = now()
    for (const m of st.grid?.members ?? []) {
      const l = m.load
      const list = history.get(m.id) ?? []
      list.push({
        t,
        cpu: m.cpuPct,
        mem: l !== undefined && l.memTotalBytes > 0 ? 100 * l.memUsedBytes / l.memTotalBytes : 0,
        net: l === undefined ? 0 : l.netRxBytesPerSec + l.netTxBytesPerSec,
        sessions: m.sessions,
        under: typeof m.meta?.underReplicated === 'number' ? m.meta.underReplicated : (m.id === st.grid?.self ? st.grid.underReplicated : 0)
      })
      if (list.length > HISTORY_POINTS) list.splice(0, list.length - HISTORY_POINTS)
      history.set(m.id, list)
    }
  }
  const timer = setInterval(() => {
    if (now() - viewedAt > SAMPLE_IDLE_MS) return
    sample().catch(err => log.debug({ event: 'console_sample_failed', err: String(err) }, 'console sample failed'))
  }, SAMPLE_MS)
  timer.unref()

  const asset = async (name: string, a: { url: URL, type: string }, res: ServerResponse, headers: Record<string, string>): Promise<number> => {
    let body = files.get(name)
    if (body === undefined) {
      body = await readFile(a.url)
      files.set(name, body)
    }
    res.writeHead(200, { ...headers, 'content-type': a.type, 'content-length': body.length, 'cache-control': 'no-cache' })
    res.end(body)
    return 200
  }

  const principal = async (req: IncomingMessage): Promise<Principal | null> => {
    const id = cookieValue(req, COOKIE)
    return id === null ? null : await accounts.session(id, now())
  }

  const cookie = (value: string, maxAgeS: number): string =>
    `${COOKIE}=${value}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=${maxAgeS}` // browsers keep Secure cookies of http://127.0.0.1 too

  const sameOrigin = (req: IncomingMessage): boolean => {
    const origin = req.headers.origin
    return origin === undefined || origin === `${init.secure ? 'https' : 'http'}://${req.headers.host ?? ''}`
  }

  async function login (req: IncomingMessage, res: ServerResponse, headers: Record<string, string>): Promise<number> {
    if (!sameOrigin(req)) return reply(res, 403, { error: 'Cross-origin login refused' }, headers)
    const b = await smallJson(req)
    const name = typeof b.name === 'string' ? b.name.toLowerCase().slice(0, 64) : ''
    const password = typeof b.password === 'string' ? b.password : ''
    const ip = clientIp(req)
    const account = `console:${name}`
    if (!c.throttle.allowed(ip, account)) {
      log.warn({ event: 'console_login_throttled', ip, name }, 'console login throttled')
      return reply(res, 429, { error: 'Too many failed logins: try again in a few minutes' }, { ...headers, 'retry-after': '60' })
    }
    const admin = await accounts.verify(name, password)
    if (admin === null) {
      c.throttle.fail(ip, account)
      log.warn({ event: 'console_login_failed', ip, name }, 'console login failed')
      return reply(res, 403, { error: 'Wrong name or password' }, headers)
    }
    c.throttle.succeed(ip, account)
    const s = await accounts.openSession(admin.name, now())
    log.info({ event: 'console_login', ip, name: admin.name }, 'console login')
    return reply(res, 200, { admin, csrf: s.csrf, expires: s.expires }, { ...headers, 'set-cookie': cookie(s.id, Math.floor((s.expires - now()) / 1000)) })
  }

  async function logout (req: IncomingMessage, res: ServerResponse, headers: Record<string, string>): Promise<number> {
    const p = await principal(req)
    const clear = { ...headers, 'set-cookie': cookie('', 0) }
    if (p === null) return reply(res, 200, { loggedOut: true }, clear)
    const got = req.headers['x-csrf-token']
    if (p.kind !== 'admin' || typeof got !== 'string' || !sameDigest(got, p.csrf) || !sameOrigin(req)) return reply(res, 403, { error: 'Missing or wrong CSRF token' }, headers)
    await accounts.closeSession(p)
    log.info({ event: 'console_logout', name: p.name }, 'console logout')
    return reply(res, 200, { loggedOut: true }, clear)
  }

  const hooks: ConsoleHooks = {
    principal,
    async public (req, res, url, headers) {
      const path = url.pathname
      const get = req.method === 'GET' || req.method === 'HEAD'
      if (path === '/' && get) {
        res.writeHead(302, { ...headers, location: '/console/', 'content-length': 0 })
        res.end()
        return 302
      }
      if ((path === '/console' || path === '/console/') && get) return await asset('index.html', INDEX, res, headers)
      if (path.startsWith('/console/static/') && get) {
        const name = path.slice('/console/static/'.length)
        const a = Object.hasOwn(ASSETS, name) ? ASSETS[name] : undefined
        if (a === undefined) return reply(res, 404, { error: 'No such file' }, headers)
        return await asset(name, a, res, headers)
      }
      if (path === '/console/login') {
        if (req.method !== 'POST') return reply(res, 405, { error: 'POST only' }, { ...headers, allow: 'POST' })
        return await login(req, res, headers)
      }
      if (path === '/console/logout') {
        if (req.method !== 'POST') return reply(res, 405, { error: 'POST only' }, { ...headers, allow: 'POST' })
        return await logout(req, res, headers)
      }
      return null
    }
  }

  const gridView = async (): Promise<unknown> => {
    viewedAt = now()
    const st = await c.status()
    lastStatus = st
    if (!history.has(st.grid?.self ?? '') && st.grid !== null) await sample()
    const g = st.grid
    const v: Verdict = verdict(g, history)
    const ringMembers = (g?.members ?? []).filter(m => m.status === 'alive' && m.state === 'alive')
    const totalWeight = ringMembers.reduce((n, m) => n + (m.diskLow !== undefined ? 0 : m.weight), 0)
    return {
      now: now(),
      hostname: st.hostname,
      users: st.users,
      domains: st.domains,
      queue: st.queue,
      self: g?.self ?? null,
      ringVersion: g?.ringVersion ?? null,
      replicas: g?.replicas ?? 1,
      verdict: v,
      node: g === null ? null : { usersOwned: g.usersOwned, usersReplicated: g.usersReplicated, underReplicated: g.underReplicated, handoffPending: g.handoffPending, remirroredBytes: g.remirroredBytes },
      replicationLag: c.replicationLag?.() ?? null,
      members: (g?.members ?? []).map(m => {
        const inRing = m.status === 'alive' && m.state === 'alive'
        return {
          id: m.id,
          name: m.name,
          host: m.host,
          self: m.id === g?.self,
          status: m.status,
          state: m.state,
          weight: m.weight,
          ringShare: inRing && totalWeight > 0 && m.diskLow === undefined ? m.weight / totalWeight : 0,
          load: m.load ?? null,
          diskLow: m.diskLow ?? null,
          lastSeen: m.lastSeen ?? null,
          usersOwned: typeof m.meta?.usersOwned === 'number' ? m.meta.usersOwned : (m.id === g?.self ? g.usersOwned : null),
          underReplicated: typeof m.meta?.underReplicated === 'number' ? m.meta.underReplicated : (m.id === g?.self ? g.underReplicated : null),
          ringCurrent: typeof m.meta?.ring === 'string' ? m.meta.ring === g?.ringVersion : null,
          history: (history.get(m.id) ?? []).map(s => [s.t, Math.round(s.cpu), Math.round(s.mem), Math.round(s.net), s.sessions, s.under])
        }
      })
    }
  }

  // the state the console asked of this node (node-state/ID entries), applied when it changes
  let selfId: string | null = null
  let applied: unknown = null
  const watchState = async (): Promise<void> => {
    if (c.setGridState === undefined) return
    if (selfId === null) {
      const g = (await c.status()).grid
      if (g === null) { clearInterval(stateTimer); return }
      selfId = g.self
    }
    const e = await c.directory.getEntry(stateEntry(selfId))
    if (e === null || e.at === applied || (e.state !== 'draining' && e.state !== 'alive')) return
    const first = applied === null
    applied = e.at
    // at start a node is in the ring anyway: only a standing drain needs applying
    if (first && e.state === 'alive') return
    c.setGridState(e.state)
    log.info({ event: 'console_state_applied', state: e.state, by: e.by }, e.state === 'draining' ? 'draining, as asked at the console' : 'back in the ring, as asked at the console')
  }
  // restarts and forgets asked on any node's console (node-restart/ID, node-forget/ID), polled with the state
  const bornAt = now()
  let restarting = false
  let introduced = false
  const watchActions = async (): Promise<void> => {
    if (selfId === null) {
      const g = (await c.status()).grid
      if (g === null) return
      selfId = g.self
    }
    const me = selfId
    if (!introduced) {
      introduced = true
      const supervised = c.supervised === true
      await c.directory.updateEntry(infoEntry(me), cur => cur?.supervised === supervised ? cur : { supervised, at: now() })
    }
    // forgotten once and started again: it is a member anew (gossip took it back on its higher incarnation). Checked
    // at every poll, not only at start: a node restarted after the forget may learn of the entry only when its
    // directory catches up, and an entry left behind would forget it again the next time it dies
    if (await c.directory.getEntry(forgetEntry(me)) !== null) {
      await c.directory.updateEntry(forgetEntry(me), () => null)
      log.warn({ event: 'console_readmitted' }, 'this node had been forgotten by the grid; it joined again as a new member')
    }
    const r = await c.directory.getEntry(restartEntry(me))
    // a restart asked before this process started is done (this is the process it asked for)
    if (c.restart !== undefined && !restarting && r !== null && r.done === undefined && typeof r.at === 'number' && r.at > bornAt) {
      restarting = true
      await c.directory.updateEntry(restartEntry(me), cur => ({ ...(cur ?? r), done: now() }))
      log.warn({ event: 'console_restart', by: r.by }, 'restarting, as asked at the console')
      const restart = c.restart
      setTimeout(() => { restart() }, RESTART_DELAY_MS)
    }
    if (c.forgetMember === undefined) return
    const forgets = await c.directory.listEntries('node-forget/')
    if (forgets.length === 0) return
    const members = new Map(((await c.status()).grid?.members ?? []).map(m => [m.id, m.status]))
    for (const f of forgets) {
      const id = f.name.slice('node-forget/'.length)
      if (members.get(id) !== 'dead') continue // gone already, or back (it removes the entry itself), or not dead here yet
      if (await c.forgetMember(id)) log.info({ event: 'console_member_forgotten', id, by: f.value.by }, `${String(f.value.name ?? id)} forgotten, as asked at the console`)
    }
  }
  const actionTimer = setInterval(() => { watchActions().catch(err => log.debug({ event: 'console_actions_failed', err: String(err) }, 'console action check failed')) }, STATE_POLL_MS)
  actionTimer.unref()

  const stateTimer = setInterval(() => { watchState().catch(err => log.debug({ event: 'console_state_failed', err: String(err) }, 'console state check failed')) }, STATE_POLL_MS)
  stateTimer.unref()

  const account = <T>(fn: () => Promise<T>): Promise<T> => fn().catch((err: unknown) => {
    if (err instanceof AccountError) throw new HttpError(err.status, err.message)
    throw err
  })
  const seg = (s: string): string => s.toLowerCase()

  const routes: Route[] = [
    {
      method: 'GET',
      pattern: /^\/console\/api\/session$/,
      scoped: true,
      handler: async r => {
        const p = r.principal
        if (p.kind !== 'admin') throw new HttpError(400, 'The session of a console login, not of the token')
        return { json: { admin: { name: p.name, domains: p.domains }, csrf: p.csrf, expires: p.expires, node: (lastStatus ?? await c.status()).hostname } }
      }
    },
    { method: 'GET', pattern: /^\/console\/api\/grid$/, handler: async () => ({ json: await gridView() }) },
    {
      method: 'POST',
      pattern: /^\/console\/api\/nodes\/([^/]+)\/state$/,
      handler: async r => {
        const state = str(await r.body(), 'state')
        if (state !== 'draining' && state !== 'alive') throw new HttpError(400, 'state: "draining" or "alive"')
        const g = (await c.status()).grid
        if (g === null) throw new HttpError(409, 'This node is not on a grid')
        const m = g.members.find(x => x.id === r.params[0])
        if (m === undefined || m.status === 'left') throw new HttpError(404, `No such member: ${r.params[0]}`)
        const by = r.principal.kind === 'admin' ? r.principal.name : 'token'
        // the wish goes into the replicated directory; the member it names acts on it (watchState), whichever
        // node the request came to, and keeps acting on it after a restart until it is changed again
        await c.directory.updateEntry(stateEntry(m.id), () => ({ state, at: now(), by }))
        log.info({ event: 'console_node_state', member: m.name, id: m.id, state, by }, `${m.name}: ${state} asked at the console`)
        if (m.id === g.self) await watchState()
        return { json: { id: m.id, name: m.name, state } }
      }
    },
    {
      // restart member ID: it stops gracefully (drain, store closed) and exits with the restart code, which its
      // supervisor (systemd) starts again; refused while that could leave a user with no live copy, unless force
      method: 'POST',
      pattern: /^\/console\/api\/nodes\/([^/]+)\/restart$/,
      handler: async r => {
        const b = await r.body()
        if (b.force !== undefined && typeof b.force !== 'boolean') throw new HttpError(400, 'force: true or false')
        const force = b.force === true
        const g = (await c.status()).grid
        if (g === null) throw new HttpError(409, 'This node is not on a grid')
        const m = g.members.find(x => x.id === r.params[0])
        if (m === undefined || m.status === 'left') throw new HttpError(404, `No such member: ${r.params[0]}`)
        if (m.status !== 'alive') throw new HttpError(409, `${m.name} is ${m.status}: only an alive member can be asked to restart`)
        const risk = restartRisk(g, m.id)
        if (risk !== null && !force) throw new HttpError(409, `Restarting ${m.name} now could leave users with no live copy: ${risk}. Ask again with force to restart it anyway`)
        const by = r.principal.kind === 'admin' ? r.principal.name : 'token'
        await c.directory.updateEntry(restartEntry(m.id), () => ({ at: now(), by, force }))
        const info = await c.directory.getEntry(infoEntry(m.id))
        const supervised = typeof info?.supervised === 'boolean' ? info.supervised : null
        log.warn({ event: 'console_node_restart', member: m.name, id: m.id, by, force, risk }, `${m.name}: restart asked at the console`)
        if (m.id === g.self) await watchActions()
        const note = supervised === true
          ? `${m.name} stops gracefully within ${STATE_POLL_MS / 1000} s and its supervisor starts it again`
          : supervised === false
            ? `${m.name} stops gracefully within ${STATE_POLL_MS / 1000} s, but it runs without a supervisor: it will not come back by itself (start it again on its machine)`
            : `${m.name} stops gracefully within ${STATE_POLL_MS / 1000} s; it has not said whether a supervisor starts it again`
        return { json: { id: m.id, name: m.name, restarting: true, supervised, forced: force && risk !== null, note } }
      }
    },
    {
      // forget dead member ID for good: every node drops it from its member list (and the list kept on disk)
      method: 'POST',
      pattern: /^\/console\/api\/nodes\/([^/]+)\/forget$/,
      handler: async r => {
        const g = (await c.status()).grid
        if (g === null || c.forgetMember === undefined) throw new HttpError(409, 'This node is not on a grid')
        const m = g.members.find(x => x.id === r.params[0])
        if (m === undefined) throw new HttpError(404, `No such member: ${r.params[0]}`)
        if (m.status !== 'dead') throw new HttpError(409, `${m.name} is ${m.status}: only a dead member can be forgotten`)
        const by = r.principal.kind === 'admin' ? r.principal.name : 'token'
        await c.directory.updateEntry(forgetEntry(m.id), () => ({ at: now(), by, name: m.name }))
        const here = await c.forgetMember(m.id)
        log.warn({ event: 'console_node_forget', member: m.name, id: m.id, by }, `${m.name}: forgotten for good, as asked at the console`)
        return { json: { id: m.id, name: m.name, forgotten: here } }
      }
    },
    {
      method: 'GET',
      pattern: /^\/console\/api\/joinkey$/,
      handler: async () => {
        if (c.joinKey === undefined) throw new HttpError(404, 'This node has no grid key to show')
        return { json: { key: c.joinKey, qrSvg: renderSVG(c.joinKey, { border: 2 }) } }
      }
    },

    { method: 'GET', pattern: /^\/v1\/admins$/, handler: async () => ({ json: { admins: await accounts.list() } }) },
    {
      method: 'POST',
      pattern: /^\/v1\/admins$/,
      handler: async r => {
        const b = await r.body()
        const admin = await account(async () => await accounts.add(str(b, 'name'), str(b, 'password'), checkDomains(b.domains)))
        return { status: 201, json: { admin } }
      }
    },
    {
      method: 'DELETE',
      pattern: /^\/v1\/admins\/([^/]+)$/,
      handler: async r => { await account(async () => { await accounts.remove(seg(r.params[0])) }); return { json: { deleted: seg(r.params[0]) } } }
    },
    {
      method: 'PUT',
      pattern: /^\/v1\/admins\/([^/]+)\/password$/,
      handler: async r => {
        const pw = str(await r.body(), 'password')
        await account(async () => { await accounts.setPassword(seg(r.params[0]), pw) })
        return { json: { updated: seg(r.params[0]) } }
      }
    },
    {
      method: 'PUT',
      pattern: /^\/v1\/admins\/([^/]+)\/domains$/,
      handler: async r => {
        const b = await r.body()
        return { json: { admin: await account(async () => await accounts.setDomains(seg(r.params[0]), checkDomains(b.domains))) } }
      }
    }
  ]

  return { hooks, routes, accounts, stop () { clearInterval(timer); clearInterval(stateTimer); clearInterval(actionTimer) } }
}

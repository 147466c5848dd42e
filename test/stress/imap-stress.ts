// IMAP stress tester: many raw-socket sessions on the same few mailboxes issue random APPEND, STORE (with
// UNCHANGEDSINCE), EXPUNGE / UID EXPUNGE, COPY, MOVE, FETCH (FLAGS UID MODSEQ BODY[]), SEARCH, NOOP and IDLE; each
// keeps its own view of the selected mailbox (imap-view.ts) and checks every response against it. Targets: one
// node process (`one`), or a three-node grid (R=2) whose nodes are SIGKILLed and restarted while sessions run
// (`grid`): sessions whose node died reconnect through a live node and rebuild their view. At the end every
// acknowledged APPEND is looked for in a full listing. Bounded in time (--seconds) and sessions (--sessions).
//
//   npm run stress:imap -- --seconds 120 --sessions 16 --target one|grid [--seed N]
//
// Exit status 1 when the run saw a protocol error or a view inconsistency.

import { connect as netConnect } from 'node:net'
import type { Socket } from 'node:net'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startGrid, until } from '../helpers/cluster.ts'
import type { ProcNode } from '../helpers/cluster.ts'
import { prng } from '../helpers/prng.ts'
import type { Response } from '../imap/wire.ts'
import { ResponseFramer, View, expandSet, formatSet, parseOne, statusOf, stressMessage, verifyMessage } from './imap-view.ts'

export interface StressOptions {
  seconds: number
  sessions: number
  target: 'one' | 'grid'
  seed?: number
  /** Progress lines (default: none). */
  log?: (line: string) => void
}

export interface StressReport {
  target: 'one' | 'grid'
  seed: number
  seconds: number
  sessions: number
  commands: number
  commandsPerSecond: number
  byCommand: Record<string, number>
  checks: number
  protocolErrors: number
  inconsistencies: number
  errors: string[]
  refused: Record<string, number>
  timeouts: number
  reconnects: number
  kills: number
  ackedAppends: number
  bodiesVerified: number
  finalMessages: number
  finalAckedFound: number
  /** Grid: acknowledged APPENDs a merge renumbered (DESIGN.md: contested UIDs move above both sides), and the session
   * reports (acked-missing, expunge-unasked) about them that this excused. */
  renumbered: number
  excusedByRenumbering: number
  /** Grid: acknowledged APPENDs a merge renumbered that a session then removed under their new UID only, absent from
   * the final listing. */
  removedAfterRenumbering: number
}

const MAILBOXES = ['INBOX', 'Stress1', 'Stress2']
const PASSWORD = 'pw'
const MAILBOX_SOFT_MAX = 120 // above it, sessions lean to \Deleted + EXPUNGE
const ERRORS_KEPT = 60

type Intent = number

/** What all sessions share: counters, the acknowledged APPENDs and the UIDs someone asked to remove. */
export class World {
  clock = 0
  commands = 0
  byCommand = new Map<string, number>()
  checks = 0
  protocolErrors = 0
  inconsistencies = 0
  errors: string[] = []
  refused = new Map<string, number>()
  timeouts = 0
  reconnects = 0
  kills = 0
  bodiesVerified = 0
  /** user\0mailbox\0uidvalidity\0uid → the APPEND's id and when it was acknowledged. */
  readonly acked = new Map<string, { id: string, at: number, wall: number }>()
  /** Same keys: the first time a session asked for the message's removal (\Deleted, MOVE), acknowledged or not. */
  readonly intents = new Map<string, Intent>()
  /**
   * Grid: UIDs a merge gave new ones (user\0mailbox\0uid → new UID), from the nodes' merge_done log lines. A restarted
   * node's entries that never reached the replicas contest UIDs the new primary gave meanwhile; the merge gives the
   * messages of both sides new UIDs above both (DESIGN.md, "Data and replication"; node/grid/merge.ts).
   */
  readonly moved = new Map<string, number>()
  /** Grid: a session's acked-missing or expunge-unasked, judged once the merges are known (deferredReports). */
  readonly deferred: Array<{ key: string, session: string, kind: string, detail: string }> = []
  /** Grid: acknowledged APPENDs a merge renumbered, and session reports about them excused. */
  renumbered = 0
  excused = 0
  removedAfterRenumbering = 0
  readonly target: 'one' | 'grid'
  ports: () => number[]
  stopping = false
  log: (line: string) => void

  constructor (target: 'one' | 'grid', ports: () => number[], log: (line: string) => void) {
    this.target = target
    this.ports = ports
    this.log = log
  }

  tick (): number { return ++this.clock }

  protocol (session: string, detail: string): void {
    this.protocolErrors++
    if (this.errors.length < ERRORS_KEPT) this.errors.push(`protocol ${session}: ${detail}`)
    this.log(`PROTOCOL ${session}: ${detail}`)
  }

  inconsistent (session: string, kind: string, detail: string): void {
    this.inconsistencies++
    if (this.errors.length < ERRORS_KEPT) this.errors.push(`${kind} ${session}: ${detail}`)
    this.log(`INCONSISTENT ${kind} ${session}: ${detail}`)
  }

  intend (key: string): void {
    if (!this.intents.has(key)) this.intents.set(key, this.tick())
  }

  /** Where a merge moved the message acknowledged as `key` (following every renumbering), or null. */
  movedTo (key: string): string | null {
    const [user, box, uidv] = key.split('\0')
    let uid = Number(key.split('\0')[3])
    let out: string | null = null
    for (let hops = 0; hops < 100; hops++) {
      const next = this.moved.get(`${user}\0${box}\0${uid}`)
      if (next === undefined) break
      uid = next
      out = keyOf(user!, box!, Number(uidv), uid)
    }
    return out
  }

  /** Some session asked for the removal of the message acknowledged as `key`, under that UID or one a merge gave it. */
  removalAsked (key: string): boolean {
    if (this.intents.has(key)) return true
    const [user, box, uidv] = key.split('\0')
    let uid = Number(key.split('\0')[3])
    for (let hops = 0; hops < 100; hops++) {
      const next = this.moved.get(`${user}\0${box}\0${uid}`)
      if (next === undefined) return false
      uid = next
      if (this.intents.has(keyOf(user!, box!, Number(uidv), uid))) return true
    }
    return false
  }

  /** Reads the renumberings of the nodes' merges from the cluster log (lines `name {json}`). */
  learnMerges (text: string): void {
    for (const line of text.split('\n')) {
      if (!line.includes('"merge_done"')) continue
      let entry: { user?: string, moved?: Record<string, Array<[number, number]>> }
      try {
        entry = JSON.parse(line.slice(line.indexOf('{')))
      } catch {
        continue
      }
      if (entry.user === undefined || entry.moved === undefined) continue
      for (const [box, pairs] of Object.entries(entry.moved)) for (const [from, to] of pairs) this.moved.set(`${entry.user}\0${box}\0${from}`, to)
    }
  }

  /** Grid: the deferred reports, now that the merges are known: one about a message a merge renumbered is excused. */
  deferredReports (): void {
    for (const d of this.deferred) {
      if (this.movedTo(d.key) !== null) { this.excused++; continue }
      this.inconsistent(d.session, d.kind, d.detail)
    }
  }
}

export const keyOf = (user: string, mailbox: string, uidValidity: number, uid: number): string => `${user}\0${mailbox}\0${uidValidity}\0${uid}`

class Disconnected extends Error {}
class TimedOut extends Error {}

interface Reply {
  status: string
  code: string | null
  text: string
  untagged: Response[]
  lines: string[]
}

interface Pending {
  tag: string
  name: string
  /** FETCH, STORE, SEARCH by sequence number: no EXPUNGE may come (RFC 3501 7.4.1). */
  noExpunge: boolean
  untagged: Response[]
  lines: string[]
  resolve: (r: Reply) => void
  reject: (e: Error) => void
  onContinue?: () => void
  /** Run as the tagged reply is read, before the responses after it in the same chunk (NOTIFY pushes) are applied. */
  onDone?: () => void
}

/** One raw-socket IMAP connection: frames responses, hands every untagged one to `onUntagged` as it arrives. */
class Conn {
  readonly socket: Socket
  readonly framer = new ResponseFramer()
  pending: Pending | null = null
  closed = false
  greeting: Promise<string>
  #greet: ((s: string) => void) | null = null
  onUntagged: (line: string, pending: Pending | null) => void = () => {}
  onProblem: (detail: string) => void = () => {}
  n = 0
  lastTag = ''
  /** The last lines each way (MAILGRID_STRESS_TRACE=1 prints them with an inconsistency). */
  readonly trace: string[] = []

  note (line: string): void {
    if (process.env.MAILGRID_STRESS_TRACE === undefined) return
    this.trace.push(line.length > 300 ? `${line.slice(0, 300)}…` : line)
    if (this.trace.length > 60) this.trace.shift()
  }

  constructor (socket: Socket) {
    this.socket = socket
    this.greeting = new Promise((resolve) => { this.#greet = resolve })
    socket.on('data', (chunk: Buffer) => this.#data(chunk))
    const gone = (): void => {
      if (this.closed) return
      this.closed = true
      this.#greet?.('')
      const p = this.pending
      this.pending = null
      p?.reject(new Disconnected('connection closed'))
    }
    socket.on('close', gone)
    socket.on('error', gone)
  }

  static async open (port: number, timeoutMs: number): Promise<Conn> {
    const socket = netConnect({ port, host: '127.0.0.1' })
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { socket.destroy(); reject(new TimedOut('connect')) }, timeoutMs)
      socket.once('connect', () => { clearTimeout(timer); resolve() })
      socket.once('error', (e) => { clearTimeout(timer); reject(new Disconnected(String(e))) })
    })
    return new Conn(socket)
  }

  #data (chunk: Buffer): void {
    try {
      this.framer.push(chunk)
      for (let line = this.framer.next(); line !== null; line = this.framer.next()) this.#response(line)
    } catch (err) {
      this.onProblem(`unreadable response: ${String(err)}`)
      this.socket.destroy()
    }
  }

  #response (line: string): void {
    this.note(`S: ${line.trimEnd()}`)
    if (this.#greet !== null) {
      const g = this.#greet
      this.#greet = null
      g(line)
      return
    }
    if (line.startsWith('+')) {
      const c = this.pending?.onContinue
      if (c === undefined) this.onProblem(`unexpected continuation ${JSON.stringify(line.slice(0, 80))}`)
      else c()
      return
    }
    if (line.startsWith('* ')) {
      this.pending?.lines.push(line)
      this.onUntagged(line, this.pending)
      return
    }
    const status = statusOf(line)
    const p = this.pending
    if (status === null || p === null || status.tag !== p.tag) {
      this.onProblem(`unexpected line ${JSON.stringify(line.slice(0, 120))} (waiting for ${p?.tag ?? 'nothing'})`)
      return
    }
    this.pending = null
    p.onDone?.()
    p.resolve({ status: status.status, code: status.code, text: status.text, untagged: p.untagged, lines: p.lines })
  }

  /** Sends one command (raw text after the tag, literals inline with LITERAL+) and waits for its tagged reply. */
  async command (name: string, text: string, timeoutMs: number, opts: { noExpunge?: boolean, idleMs?: number, onDone?: () => void } = {}): Promise<Reply> {
    if (this.closed) throw new Disconnected('closed')
    if (this.pending !== null) throw new Error('a command is already running')
    const tag = `c${++this.n}`
    let timer: NodeJS.Timeout | undefined
    const done = new Promise<Reply>((resolve, reject) => {
      this.pending = { tag, name, noExpunge: opts.noExpunge ?? false, untagged: [], lines: [], resolve, reject, ...(opts.onDone !== undefined ? { onDone: opts.onDone } : {}) }
      if (opts.idleMs !== undefined) {
        this.pending.onContinue = () => { setTimeout(() => { if (!this.closed) this.socket.write('DONE\r\n') }, opts.idleMs) }
      }
      timer = setTimeout(() => {
        if (this.pending?.tag !== tag) return
        this.pending = null
        reject(new TimedOut(`${name} timed out after ${timeoutMs} ms`))
      }, timeoutMs)
    })
    this.lastTag = tag
    this.note(`C: ${tag} ${text.slice(0, 200)}`)
    this.socket.write(`${tag} ${text}\r\n`)
    try {
      return await done
    } finally {
      clearTimeout(timer)
    }
  }

  close (): void {
    this.closed = true
    this.socket.destroy()
  }
}

type Mode = 'plain' | 'condstore' | 'qresync'

class StressSession {
  readonly name: string
  readonly user: string
  readonly mode: Mode
  readonly world: World
  readonly rnd: () => number
  readonly privKeyword: string
  conn: Conn | null = null
  view: View | null = null
  readonly timeoutMs: number
  appended = 0
  /** CONDSTORE sessions keep `UID SEARCH RETURN (ALL UPDATE) KEYWORD $Pn` (RFC 5267): its tag and result. */
  ctxTag = ''
  readonly ctx = new Set<number>()
  readonly #missingReported = new Set<string>()
  /** The view a SELECT opens, once the old one is closed (OK [CLOSED]). */
  #nextView: View | null = null

  readonly index: number

  constructor (world: World, index: number, user: string, mode: Mode, seed: number) {
    this.index = index
    this.world = world
    this.name = `s${index}`
    this.user = user
    this.mode = mode
    this.rnd = prng(seed)
    this.privKeyword = `$P${index}`
    this.timeoutMs = world.target === 'one' ? 60_000 : 20_000
  }

  pick<T> (items: readonly T[]): T { return items[Math.floor(this.rnd() * items.length)]! }
  int (lo: number, hi: number): number { return lo + Math.floor(this.rnd() * (hi - lo + 1)) }

  get condstore (): boolean { return this.mode !== 'plain' }

  #viewProblem = (kind: string, detail: string): void => { this.bad(kind, detail) }

  /** A view inconsistency this session found (with its last lines when MAILGRID_STRESS_TRACE is set). */
  bad (kind: string, detail: string): void {
    this.world.inconsistent(this.name, kind, detail)
    if (this.conn !== null && this.conn.trace.length > 0) this.world.log(`trace ${this.name}:\n  ${this.conn.trace.join('\n  ')}`)
  }

  async cmd (name: string, text: string, opts: { noExpunge?: boolean, idleMs?: number, onDone?: () => void } = {}): Promise<Reply> {
    const conn = this.conn
    if (conn === null) throw new Disconnected('not connected')
    this.world.commands++
    this.world.byCommand.set(name, (this.world.byCommand.get(name) ?? 0) + 1)
    const reply = await conn.command(name, text, this.timeoutMs, opts)
    if (reply.status === 'BAD') this.world.protocol(this.name, `BAD for ${name}: ${text.slice(0, 100)} → ${reply.text}`)
    if (reply.status === 'NO') {
      const why = `${name} NO ${reply.code ?? ''} ${reply.text.slice(0, 60)}`.replace(/\d+/g, 'N')
      this.world.refused.set(why, (this.world.refused.get(why) ?? 0) + 1)
    }
    return reply
  }

  /** Every untagged response, in arrival order, applied to the view before anything else looks at it. */
  #untagged (line: string, pending: Pending | null): void {
    const status = statusOf(line)
    if (status !== null) {
      if (status.status === 'BAD') this.world.protocol(this.name, `untagged BAD: ${line.trim().slice(0, 120)}`)
      if (status.status === 'BYE' && pending?.name !== 'LOGOUT' && this.world.target === 'one' && !this.world.stopping) {
        this.world.protocol(this.name, `unexpected BYE: ${line.trim()}`)
      }
      const code = status.code ?? ''
      if (code === 'CLOSED' && this.#nextView !== null) {
        this.dropView()
        this.view = this.#nextView
        this.#nextView = null
      }
      const view = this.view
      if (view !== null) {
        const m = /^(UIDVALIDITY|HIGHESTMODSEQ) (\d+)$/.exec(code)
        if (m?.[1] === 'UIDVALIDITY') view.uidValidity = Number(m[2])
        if (m?.[1] === 'HIGHESTMODSEQ' && this.condstore) view.applyHighestModseq(Number(m[2]))
      }
      return
    }
    let r: Response
    try {
      r = parseOne(line)
    } catch (err) {
      this.world.protocol(this.name, `unparsable: ${String(err)}`)
      return
    }
    pending?.untagged.push(r)
    const view = this.view
    const [first, second] = r.items
    if (typeof first === 'string' && /^\d+$/.test(first)) {
      const n = Number(first)
      const what = String(second).toUpperCase()
      if (view === null) {
        if (what === 'EXISTS' || what === 'EXPUNGE' || what === 'FETCH') this.world.protocol(this.name, `${what} with no mailbox selected`)
        return
      }
      if (what === 'EXISTS') view.applyExists(n)
      else if (what === 'EXPUNGE') {
        if (pending?.noExpunge === true) this.world.protocol(this.name, `EXPUNGE ${n} during ${pending.name} (RFC 3501 7.4.1)`)
        if (this.mode === 'qresync') this.world.protocol(this.name, `EXPUNGE after ENABLE QRESYNC (RFC 7162 3.2.10 asks VANISHED)`)
        view.applyExpunge(n)
        this.#drainExpunged()
      } else if (what === 'FETCH') {
        try {
          const seen = view.applyFetch(r)
          if (seen.body !== null) this.#checkBody(seen.uid, seen.body)
        } catch (err) {
          this.world.protocol(this.name, `FETCH: ${String(err)}`)
        }
      } else if (what !== 'RECENT') this.world.protocol(this.name, `unknown response ${what}`)
      return
    }
    const what = String(first).toUpperCase()
    if (what === 'FLAGS') {
      if (view !== null && Array.isArray(second)) view.applyFlags(second.map(String))
    } else if (what === 'VANISHED') {
      if (view === null) { this.world.protocol(this.name, 'VANISHED with no mailbox selected'); return }
      if (this.mode !== 'qresync') this.world.protocol(this.name, 'VANISHED without QRESYNC')
      if (Array.isArray(second)) { this.world.protocol(this.name, 'VANISHED (EARLIER) unasked'); return }
      if (pending?.noExpunge === true) this.world.protocol(this.name, `VANISHED during ${pending.name}`)
      view.applyVanished(String(second))
      this.#drainExpunged()
    } else if (what === 'ESEARCH' && Array.isArray(second) && second[1] === this.ctxTag && this.ctxTag !== '') {
      // ADDTO / REMOVEFROM of the session's context: (0 uid-set) each, SEARCH positions being 0
      for (let i = 2; i < r.items.length; i++) {
        const name = String(r.items[i]).toUpperCase()
        if (name !== 'ADDTO' && name !== 'REMOVEFROM') continue
        const data = r.items[++i]
        if (!Array.isArray(data) || data[0] !== '0') { this.world.protocol(this.name, `context update ${name} ${JSON.stringify(data)}`); continue }
        for (const uid of expandSet(String(data[1]))) {
          if (name === 'ADDTO') this.ctx.add(uid)
          else this.ctx.delete(uid)
        }
      }
    } else if (!['SEARCH', 'ESEARCH', 'CAPABILITY', 'ENABLED', 'LIST', 'STATUS', 'ID', 'NAMESPACE'].includes(what)) {
      this.world.protocol(this.name, `unknown untagged ${what}`)
    }
  }

  /** An expunged acknowledged APPEND must have been asked for (\Deleted or MOVE) by some session. */
  #drainExpunged (): void {
    const view = this.view
    if (view === null) return
    for (const uid of view.expunged.splice(0)) {
      this.ctx.delete(uid)
      const key = keyOf(this.user, view.mailbox, view.uidValidity, uid)
      if (!this.world.acked.has(key)) continue
      this.world.checks++
      if (this.world.intents.has(key)) continue
      const detail = `${view.mailbox} UID ${uid} (an acknowledged APPEND) expunged though no session stored \\Deleted on it or moved it`
      // on a grid a merge may have renumbered it (the old UID is expunged): judged at the end (World.deferredReports)
      if (this.world.target === 'grid') this.world.deferred.push({ key, session: this.name, kind: 'expunge-unasked', detail })
      else this.bad('expunge-unasked', detail)
    }
  }

  #checkBody (uid: number, body: string): void {
    const view = this.view
    this.world.checks++
    const v = verifyMessage(body)
    if ('error' in v) { this.bad('body', `${view?.mailbox} UID ${uid}: ${v.error}`); return }
    this.world.bodiesVerified++
    if (view === null || uid === 0) return
    const acked = this.world.acked.get(keyOf(this.user, view.mailbox, view.uidValidity, uid))
    if (acked !== undefined) {
      this.world.checks++
      if (acked.id !== v.id) this.bad('body-id', `${view.mailbox} UID ${uid} holds ${v.id}; the APPEND acknowledged as that UID sent ${acked.id}`)
    }
  }

  async connect (): Promise<void> {
    const ports = this.world.ports()
    if (ports.length === 0) throw new Disconnected('no live node')
    const conn = await Conn.open(this.pick(ports), 10_000)
    conn.onUntagged = (line, pending) => this.#untagged(line, pending)
    conn.onProblem = (detail) => this.world.protocol(this.name, detail)
    this.conn = conn
    this.dropView()
    this.#nextView = null
    const greeting = await Promise.race([conn.greeting, new Promise<string>((resolve) => setTimeout(() => resolve('timeout'), 15_000))])
    if (!greeting.startsWith('* OK')) throw new Disconnected(`greeting ${greeting.slice(0, 60)}`)
    const login = await this.cmd('LOGIN', `LOGIN "${this.user}" "${PASSWORD}"`)
    if (login.status !== 'OK') throw new Disconnected(`LOGIN ${login.status} ${login.text}`)
    if (this.mode !== 'plain') {
      const enable = await this.cmd('ENABLE', `ENABLE ${this.mode === 'qresync' ? 'QRESYNC' : 'CONDSTORE'}`)
      if (enable.status !== 'OK') throw new Disconnected(`ENABLE ${enable.text}`)
    }
    if (this.mode === 'qresync' && this.index !== 1000 && this.index !== 999) {
      // RFC 5465: the selected mailbox's changes pushed between commands (expunges held: SELECTED-DELAYED keeps the
      // sequence numbers of the session's commands valid), new messages with their UID and flags
      const n = await this.cmd('NOTIFY', 'NOTIFY SET (SELECTED-DELAYED (MessageNew (UID FLAGS) MessageExpunge FlagChange))')
      if (n.status !== 'OK') this.world.protocol(this.name, `NOTIFY ${n.status} ${n.text}`)
    }
  }

  async ensureMailboxes (): Promise<void> {
    for (const box of MAILBOXES.slice(1)) {
      const r = await this.cmd('CREATE', `CREATE ${box}`)
      if (r.status !== 'OK' && r.code !== 'ALREADYEXISTS') throw new Error(`CREATE ${box}: ${r.text}`)
    }
  }

  /** The view's checks count when it is dropped (a new SELECT, a lost connection). */
  dropView (): void {
    this.world.checks += this.view?.checks ?? 0
    this.view = null
    this.#mustBeGone.clear()
  }

  async select (box: string): Promise<void> {
    const next = new View(box, this.privKeyword, this.#viewProblem)
    // after QRESYNC the old mailbox's updates (NOTIFY pushes them between commands) end with OK [CLOSED] (RFC 7162
    // 3.2.11): until it comes, untagged responses are the old mailbox's
    const closing = this.mode === 'qresync' && this.view !== null
    if (closing) this.#nextView = next
    else {
      this.dropView()
      this.view = next
    }
    // only an APPEND acknowledged before SELECT is sent must be in its view: one acknowledged while SELECT runs may have
    // committed after the SELECT's last flush (its OK can be read first: another connection), and is told at the next
    // command
    const sent = this.world.tick()
    let r: Reply
    try {
      r = await this.cmd('SELECT', `SELECT ${box}${this.mode === 'condstore' ? ' (CONDSTORE)' : ''}`)
    } catch (err) {
      // the connection is gone: the view this SELECT would open must not wait for an OK [CLOSED] on the next one (it
      // took the next connection's SELECT responses for the old mailbox's, and its view had no UIDVALIDITY)
      this.#nextView = null
      throw err
    }
    if (this.#nextView !== null) {
      if (r.status === 'OK') this.world.protocol(this.name, 'SELECT after QRESYNC without OK [CLOSED]')
      this.dropView()
      this.view = this.#nextView
      this.#nextView = null
    }
    if (r.status !== 'OK') { this.view = null; throw new Disconnected(`SELECT ${r.status} ${r.text}`) }
    this.world.checks++
    if (this.view?.uidValidity === 0) this.world.protocol(this.name, `SELECT ${box} without UIDVALIDITY`)
    await this.learnUids()
    this.#checkAckedVisible(sent, true)
    this.ctxTag = ''
    this.ctx.clear()
    if (this.mode === 'condstore') {
      const s = await this.cmd('UID SEARCH', `UID SEARCH RETURN (ALL UPDATE) KEYWORD ${this.privKeyword}`)
      if (s.status !== 'OK') return
      this.ctxTag = this.conn?.lastTag ?? ''
      for (const u of s.untagged) {
        if (String(u.items[0]).toUpperCase() !== 'ESEARCH') continue
        const all = u.items.findIndex(x => String(x).toUpperCase() === 'ALL')
        if (all > 0) for (const uid of expandSet(String(u.items[all + 1]))) this.ctx.add(uid)
      }
    }
  }

  /** Fetches the UIDs of messages announced only by EXISTS. */
  async learnUids (): Promise<void> {
    for (let round = 0; round < 3; round++) {
      const view = this.view
      if (view === null || view.unknown === 0) return
      await this.cmd('FETCH', `FETCH ${view.firstUnknownSeq()}:* (UID FLAGS${this.condstore ? ' MODSEQ' : ''})`, { noExpunge: true })
    }
  }

  /** Every APPEND acknowledged before `before` and never asked to be removed is in the view. */
  #checkAckedVisible (before: number, afterSelect: boolean): void {
    const view = this.view
    if (view === null || view.unknown > 0) return
    const prefix = `${this.user}\0${view.mailbox}\0${view.uidValidity}\0`
    const known = new Set(view.uids)
    for (const [key, a] of this.world.acked) {
      if (a.at >= before || !key.startsWith(prefix) || this.world.intents.has(key)) continue
      this.world.checks++
      const uid = Number(key.slice(prefix.length))
      // once per message and session: the NOOPs after it would report the same absence again
      if (known.has(uid) || this.#missingReported.has(key)) continue
      this.#missingReported.add(key)
      const detail = `${view.mailbox} UID ${uid} (${a.id}, acknowledged) is not in the view after ${afterSelect ? 'SELECT' : 'NOOP'}`
      if (this.world.target === 'grid') this.world.deferred.push({ key, session: this.name, kind: 'acked-missing', detail })
      else this.bad('acked-missing', detail)
    }
  }

  knownUids (): number[] { return (this.view?.uids ?? []).filter(u => u !== 0) }

  someUids (max: number): number[] {
    const uids = this.knownUids()
    if (uids.length === 0) return []
    const n = this.int(1, max)
    const out = new Set<number>()
    for (let i = 0; i < n; i++) out.add(this.pick(uids))
    return [...out].sort((a, b) => a - b)
  }

  async opAppend (): Promise<void> {
    const view = this.view!
    const box = this.rnd() < 0.6 ? view.mailbox : this.pick(MAILBOXES)
    const id = `${this.name}-${++this.appended}-${Math.floor(this.rnd() * 1e9).toString(36)}`
    const lines: string[] = []
    for (let i = this.int(1, 40); i > 0; i--) lines.push(`line ${i} of ${id} ${'abcdefghij'.repeat(this.int(0, 7))}`)
    const raw = stressMessage(id, lines.join('\r\n') + '\r\n')
    const flags = ['\\Seen', '$shared1', this.privKeyword].filter(() => this.rnd() < 0.3)
    const r = await this.cmd('APPEND', `APPEND ${box} (${flags.join(' ')}) {${Buffer.byteLength(raw, 'latin1')}+}\r\n${raw}`)
    if (r.status !== 'OK') return
    const m = /^APPENDUID (\d+) (\d+)$/.exec(r.code ?? '')
    this.world.checks++
    if (m === null) { this.world.protocol(this.name, `APPEND OK without APPENDUID: ${r.code}`); return }
    const uidValidity = Number(m[1])
    const uid = Number(m[2])
    const key = keyOf(this.user, box, uidValidity, uid)
    if (this.world.acked.has(key)) this.bad('appenduid-reused', `${box} UID ${uid} acknowledged twice (${this.world.acked.get(key)!.id}, ${id})`)
    this.world.acked.set(key, { id, at: this.world.tick(), wall: Date.now() })
    if (this.view !== null && box === this.view.mailbox && uidValidity === this.view.uidValidity && !this.view.priv.has(uid)) {
      this.view.priv.set(uid, flags.includes(this.privKeyword))
    }
  }

  async opStore (): Promise<void> {
    const view = this.view!
    const byUid = this.rnd() < 0.5
    const deleting = this.rnd() < (view.exists > MAILBOX_SOFT_MAX ? 0.8 : 0.2)
    const uids = deleting && view.exists > MAILBOX_SOFT_MAX ? this.knownUids().slice(0, 15) : this.someUids(4)
    if (uids.length === 0) return
    const priv = !deleting && this.rnd() < 0.45
    const flags = deleting ? ['\\Deleted'] : priv ? [this.privKeyword] : [this.pick(['\\Seen', '\\Flagged', '$shared1', '$shared2', '\\Answered'])]
    const add = deleting || this.rnd() < 0.6
    const silent = this.rnd() < 0.2
    const unchanged = this.condstore && this.rnd() < 0.3 ? (this.rnd() < 0.5 ? view.highestModseq : view.modseq.get(uids[0]!) ?? 1) : null
    const set = byUid ? formatSet(uids) : formatSet(uids.map(u => view.seqOf(u)))
    if (deleting) for (const u of uids) this.world.intend(keyOf(this.user, view.mailbox, view.uidValidity, u))
    if (priv) for (const u of uids) { view.privBusy.add(u); view.priv.delete(u) }
    let r: Reply
    let last: Map<number, string[]> | null = null
    view.fetchLog = new Map()
    try {
      r = await this.cmd(byUid ? 'UID STORE' : 'STORE', `${byUid ? 'UID ' : ''}STORE ${set}${unchanged === null ? '' : ` (UNCHANGEDSINCE ${unchanged})`} ${add ? '+' : '-'}FLAGS${silent ? '.SILENT' : ''} (${flags.join(' ')})`, {
        noExpunge: !byUid,
        onDone: () => { last = view.fetchLog; view.fetchLog = null }
      })
    } finally {
      if (priv) for (const u of uids) view.privBusy.delete(u)
    }
    view.fetchLog = null
    if (this.view !== view || !priv || r.status !== 'OK') return
    // the messages the store did not change for UNCHANGEDSINCE: unknown from here (the model relearns them)
    const failed = new Set<number>()
    const mod = /^MODIFIED (\S+)$/.exec(r.code ?? '')
    if (mod !== null) for (const n of expandSet(mod[1]!)) failed.add(byUid ? n : view.uids[n - 1] ?? 0)
    for (const uid of uids) {
      if (failed.has(uid) || view.seqOf(uid) === 0) continue
      view.priv.set(uid, add)
      const flagsNow = (last as Map<number, string[]> | null)?.get(uid)
      if (flagsNow !== undefined) {
        this.world.checks++
        // RFC 2180 4.2: a message another session expunged (this one not told yet) may be left unchanged, and an
        // older change of it that was waiting still reported: then the next NOOP must report its expunge
        if (flagsNow.includes(this.privKeyword) !== add) this.#mustBeGone.set(uid, `the last FETCH of STORE ${add ? '+' : '-'}FLAGS${silent ? '.SILENT' : ''} (${this.privKeyword}) showed (${flagsNow.join(' ')})`)
      } else if (!silent && unchanged === null) {
        // RFC 2180 4.2: a message expunged by another session that this one was not told of yet may be left out;
        // then the next NOOP must report its expunge
        this.#mustBeGone.set(uid, `STORE ${set} without .SILENT reported no FETCH for it`)
      }
    }
  }

  async opExpunge (): Promise<void> {
    if (this.rnd() < 0.5) {
      await this.cmd('EXPUNGE', 'EXPUNGE')
    } else {
      const uids = this.someUids(6)
      if (uids.length === 0) return
      await this.cmd('UID EXPUNGE', `UID EXPUNGE ${formatSet(uids)}`)
    }
  }

  async opCopyMove (move: boolean): Promise<void> {
    const view = this.view!
    const uids = this.someUids(3)
    if (uids.length === 0) return
    const byUid = this.rnd() < 0.5
    const target = this.pick(MAILBOXES)
    if (move) for (const u of uids) this.world.intend(keyOf(this.user, view.mailbox, view.uidValidity, u))
    const set = byUid ? formatSet(uids) : formatSet(uids.map(u => view.seqOf(u)))
    const name = `${byUid ? 'UID ' : ''}${move ? 'MOVE' : 'COPY'}`
    const r = await this.cmd(name, `${name} ${set} ${target}`)
    if (r.status !== 'OK') return
    const copyuid = [r.code ?? '', ...r.lines.map(l => statusOf(l)?.code ?? '')].find(c => c.startsWith('COPYUID '))
    // no COPYUID: nothing was copied, which is only right when every source message was expunged meanwhile (RFC 2180
    // 4.4): the next NOOP must report them gone
    if (copyuid === undefined && this.view === view) for (const u of uids) this.#mustBeGone.set(u, `${name} answered OK without COPYUID`)
  }

  async opFetch (): Promise<void> {
    const view = this.view!
    const uids = this.someUids(8)
    if (uids.length === 0) return
    const items = `(FLAGS${this.condstore && this.rnd() < 0.8 ? ' MODSEQ' : ''})`
    if (this.rnd() < 0.5) await this.cmd('UID FETCH', `UID FETCH ${formatSet(uids)} ${items}`)
    else await this.cmd('FETCH', `FETCH ${formatSet(uids.map(u => view.seqOf(u)))} (UID ${items.slice(1)}`, { noExpunge: true })
  }

  async opBody (): Promise<void> {
    const uids = this.someUids(2)
    if (uids.length === 0) return
    await this.cmd('UID FETCH', `UID FETCH ${formatSet(uids)} (UID BODY.PEEK[])`)
  }

  async opSearch (): Promise<void> {
    const view = this.view!
    const byUid = this.rnd() < 0.5
    const name = byUid ? 'UID SEARCH' : 'SEARCH'
    // the model as it stands when the reply is read (a NOTIFY push right after it may teach the view more)
    let model: Array<[number, number]> = []
    const r = await this.cmd(name, `${name} KEYWORD ${this.privKeyword}`, {
      noExpunge: !byUid,
      onDone: () => { model = [...view.priv].filter(([uid, has]) => has && view.seqOf(uid) !== 0).map(([uid]) => [uid, view.seqOf(uid)]) }
    })
    if (r.status !== 'OK' || this.view !== view) return
    const hits = new Set<number>()
    for (const u of r.untagged) if (String(u.items[0]).toUpperCase() === 'SEARCH') for (const n of u.items.slice(1)) hits.add(Number(n))
    for (const n of hits) {
      this.world.checks++
      const uid = byUid ? n : view.uids[n - 1]
      if (!byUid && (n < 1 || n > view.exists)) { this.bad('search-range', `SEARCH returned ${n} with EXISTS ${view.exists}`); continue }
      if (uid === undefined || uid === 0) continue
      if (view.priv.get(uid) === false && !view.privBusy.has(uid)) this.bad('search-own-flag', `${view.mailbox}: ${name} KEYWORD ${this.privKeyword} returned UID ${uid}, which lacks it`)
    }
    for (const [uid, seq] of model) {
      if (!hits.has(byUid ? uid : seq)) this.#mustBeGone.set(uid, `${name} KEYWORD ${this.privKeyword} missed it`)
    }
  }

  /**
   * UIDs a command passed over as if expunged (a SEARCH for the private keyword that missed a message the model says
   * has it, a STORE that did not report one): after the next NOOP they must be gone.
   */
  #mustBeGone = new Map<number, string>()

  async opNoop (): Promise<void> {
    const before = this.world.tick()
    const r = await this.cmd('NOOP', 'NOOP')
    if (r.status !== 'OK') return
    await this.learnUids()
    this.#checkAckedVisible(before, false)
    const view = this.view
    if (view === null) return
    for (const [uid, what] of this.#mustBeGone) {
      this.world.checks++
      if (view.seqOf(uid) !== 0 && (!what.includes('SEARCH') || view.priv.get(uid) === true)) this.bad(what.startsWith('the last FETCH of STORE') ? 'store-result' : 'passed-over', `${view.mailbox} UID ${uid}: ${what}, and it is still there after NOOP`)
    }
    this.#mustBeGone.clear()
    // the SEARCH context follows the private keyword as the model does
    if (this.ctxTag !== '') {
      for (const uid of view.uids) {
        const has = view.priv.get(uid)
        if (uid === 0 || has === undefined || view.privBusy.has(uid)) continue
        this.world.checks++
        if (has !== this.ctx.has(uid)) this.bad('context', `${view.mailbox} UID ${uid}: the UPDATE context of KEYWORD ${this.privKeyword} ${this.ctx.has(uid) ? 'has' : 'lacks'} it, the flags say ${has}`)
      }
    }
  }

  async opIdle (): Promise<void> {
    await this.cmd('IDLE', 'IDLE', { idleMs: this.int(50, 600) })
    await this.learnUids()
  }

  async step (): Promise<void> {
    const view = this.view
    if (view === null) { await this.select(this.pick(MAILBOXES)); return }
    const full = view.exists > MAILBOX_SOFT_MAX
    const ops: Array<[number, () => Promise<void>]> = [
      [full ? 4 : 14, async () => await this.opAppend()],
      [20, async () => await this.opStore()],
      [full ? 16 : 6, async () => await this.opExpunge()],
      [5, async () => await this.opCopyMove(false)],
      [6, async () => await this.opCopyMove(true)],
      [12, async () => await this.opFetch()],
      [5, async () => await this.opBody()],
      [7, async () => await this.opSearch()],
      [10, async () => await this.opNoop()],
      [5, async () => await this.opIdle()],
      [2, async () => await this.select(this.pick(MAILBOXES))],
      [1, async () => { await this.cmd('LOGOUT', 'LOGOUT'); this.conn?.close(); this.conn = null }]
    ]
    let x = this.rnd() * ops.reduce((s, o) => s + o[0], 0)
    for (const [w, op] of ops) {
      x -= w
      if (x < 0) { await op(); break }
    }
    if (this.conn !== null && this.view !== null && this.view.unknown > 0) await this.learnUids()
  }

  async run (until: number): Promise<void> {
    let failures = 0
    while (Date.now() < until && !this.world.stopping) {
      try {
        if (this.conn === null || this.conn.closed) {
          if (this.conn !== null) this.world.reconnects++
          this.conn = null
          await this.connect()
          await this.select(this.pick(MAILBOXES))
        }
        await this.step()
        failures = 0
      } catch (err) {
        const timeout = err instanceof TimedOut
        if (timeout) this.world.timeouts++
        if (this.world.target === 'one' && !this.world.stopping) {
          this.world.protocol(this.name, `${timeout ? 'timeout' : 'connection lost'}: ${String(err)}`)
        } else if (!this.world.stopping) this.world.log(`${this.name}: ${String(err)}`)
        this.conn?.close()
        this.dropView()
        failures++
        await new Promise(resolve => setTimeout(resolve, Math.min(5000, 200 * failures)))
      }
    }
    // the mailbox stays selected until LOGOUT is answered: updates (a NOTIFY push) may come before it
    if (this.conn !== null && !this.conn.closed) {
      await this.cmd('LOGOUT', 'LOGOUT').catch(() => {})
      this.conn.close()
    }
    this.dropView()
  }
}

interface Target {
  ports: () => number[]
  /** The grid's kill loop; resolves when stopped. */
  chaos?: (until: number) => Promise<void>
  /** Before the final listing: every node up again and the grid formed. */
  settle: () => Promise<void>
  stop: () => Promise<void>
}

async function startOne (dir: string, users: string[]): Promise<Target> {
  const child: ChildProcess = spawn(process.execPath, ['test/helpers/node-proc.ts', dir, JSON.stringify({ domain: 'example.com', users, password: PASSWORD })], { stdio: ['pipe', 'pipe', 'inherit'] })
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  const ports = await new Promise<Record<string, number>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('node did not start in 60 s')), 60_000)
    lines.on('line', l => { if (l.startsWith('READY ')) { clearTimeout(timer); resolve(JSON.parse(l.slice(6))) } })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`node exited with ${code}`)) })
  })
  return {
    ports: () => [ports.imap!],
    settle: async () => {},
    stop: async () => {
      const exited = new Promise(resolve => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    }
  }
}

async function startGridTarget (dir: string, users: string[], world: World, rnd: () => number): Promise<Target> {
  const cleanups: Array<() => Promise<void>> = []
  const { cluster, nodes } = await startGrid({ after: (fn) => { cleanups.push(fn) } }, dir, 3, users)
  const live = (): ProcNode[] => cluster.nodes.filter(n => n.alive)
  /** Each live node's log position of each user (0: no copy), for the run's log. */
  const logPositions = async (when: string): Promise<void> => {
    const answers = await Promise.all(live().map(async n => `${n.name} ${await n.ask(`positions ${users.join(',')}`, 'POSITIONS').catch((e: unknown) => String(e))}`))
    world.log(`positions ${when}: ${answers.join('; ')}`)
  }
  return {
    ports: () => live().map(n => n.ports.imap!),
    chaos: async (until: number) => {
      // one node at a time: SIGKILL, down 2-5 s, restarted on its data dir, then 6-12 s of a whole grid
      while (Date.now() < until - 8000 && !world.stopping) {
        await new Promise(resolve => setTimeout(resolve, 6000 + rnd() * 6000))
        if (Date.now() >= until - 8000 || world.stopping) break
        const victim = nodes[Math.floor(rnd() * nodes.length)]!
        const current = cluster.nodes.find(n => n.name === victim.name)!
        await logPositions('before the kill')
        world.log(`kill ${current.name} (${current.id.slice(-6)})`)
        await cluster.kill(current)
        world.kills++
        await new Promise(resolve => setTimeout(resolve, 2000 + rnd() * 3000))
        await cluster.start(current.name, current.dir)
        world.log(`restarted ${current.name}`)
        await logPositions('after the restart')
      }
    },
    settle: async () => {
      await cluster.formed(3, 60_000)
      // the copies catch up with each other: every node answers the users' log positions alike
      await until('replicas agree', async () => {
        const answers = await Promise.all(live().map(async n => await n.ask(`positions ${users.join(',')}`, 'POSITIONS').catch(() => '{}')))
        const per = users.map(u => answers.map(a => (JSON.parse(a) as Record<string, number>)[u] ?? 0).filter(p => p > 0))
        return per.every(p => p.length >= 2 && new Set(p).size === 1)
      }, 60_000, 500).catch((err: unknown) => world.log(`settle: ${String(err)}`))
    },
    stop: async () => { for (const c of cleanups.reverse()) await c() }
  }
}

/** The final listing: every acknowledged APPEND is there with its body, unless some session asked to remove it. */
async function finalCheck (world: World, users: string[]): Promise<{ messages: number, found: number }> {
  let messages = 0
  let found = 0
  for (const user of users) {
    /** Every stress id in the user's mailboxes: where a lost APPEND may have gone (another UID, another mailbox). */
    const where = new Map<string, string[]>()
    const lost: Array<{ box: string, uid: number, id: string, at: number }> = []
    /** Renumbered by a merge, then removed under the new UID only (judged once every mailbox is listed). */
    const removedRenumbered: Array<{ box: string, from: string, uid: number, id: string }> = []
    const s = new StressSession(world, 999, user, 'plain', 1)
    for (let attempt = 0; ; attempt++) {
      try {
        await s.connect()
        break
      } catch (err) {
        if (attempt >= 20) throw err
        await new Promise(resolve => setTimeout(resolve, 1000))
      }
    }
    for (const box of MAILBOXES) {
      const view = new View(box, '$none', (kind, detail) => world.inconsistent('final', kind, detail))
      s.view = view
      const r = await s.cmd('EXAMINE', `EXAMINE ${box}`)
      if (r.status !== 'OK') { world.inconsistent('final', 'final-examine', `${user} ${box}: ${r.text}`); continue }
      const ids = new Map<number, string>()
      if (view.exists > 0) {
        const f = await s.cmd('UID FETCH', 'UID FETCH 1:* (UID BODY.PEEK[])')
        for (const u of f.untagged) {
          if (String(u.items[1]).toUpperCase() !== 'FETCH') continue
          const items = u.items[2] as unknown[]
          const uid = Number(items[items.findIndex(x => String(x).toUpperCase() === 'UID') + 1])
          const body = items[items.findIndex(x => String(x).toUpperCase().startsWith('BODY[')) + 1] as { literal: string }
          const v = verifyMessage(body.literal)
          if ('id' in v) {
            ids.set(uid, v.id)
            where.set(v.id, [...(where.get(v.id) ?? []), `${box} UID ${uid}`])
          }
        }
      }
      messages += view.exists
      const prefix = `${user}\0${box}\0`
      for (const [key, a] of world.acked) {
        if (!key.startsWith(prefix)) continue
        const [, , uidv, uidText] = key.split('\0')
        world.checks++
        if (Number(uidv) !== view.uidValidity) {
          world.inconsistent('final', 'uidvalidity-changed', `${user} ${box}: acknowledged under UIDVALIDITY ${uidv}, now ${view.uidValidity}`)
          continue
        }
        // a merge may have given it a new UID (World.moved): the old one names nothing now, the new one this message
        const moved = world.movedTo(key)
        const uid = moved === null ? Number(uidText) : Number(moved.split('\0')[3])
        if (moved !== null) world.renumbered++
        if (ids.has(uid)) {
          found++
          if (ids.get(uid) !== a.id) world.inconsistent('final', 'final-id', `${user} ${box} UID ${uid}${moved === null ? '' : ` (renumbered from ${uidText})`} holds ${ids.get(uid)}, acknowledged for ${a.id}`)
        } else if (!world.removalAsked(key)) {
          lost.push({ box, uid, id: a.id, at: a.wall })
        } else if (moved !== null && !world.intents.has(key)) {
          removedRenumbered.push({ box, from: uidText!, uid, id: a.id })
        }
      }
      world.checks += view.checks
    }
    for (const r of removedRenumbered) {
      // gone from every mailbox: what a tester that did not follow merges (before 08708b9) reported as acked-lost
      if (where.has(r.id)) continue
      world.removedAfterRenumbering++
      world.log(`renumbered then removed: ${user} ${r.box} UID ${r.from} -> ${r.uid} (${r.id})`)
    }
    for (const l of lost) {
      const elsewhere = where.get(l.id)
      world.inconsistent('final', elsewhere === undefined ? 'acked-lost' : 'acked-moved',
        `${user} ${l.box} UID ${l.uid} (${l.id}, acknowledged at ${new Date(l.at).toISOString().slice(11, 23)}): never asked to be removed, not in the final listing${elsewhere === undefined ? '' : `; the message is at ${elsewhere.join(', ')}`}`)
    }
    await s.cmd('LOGOUT', 'LOGOUT').catch(() => {})
    s.conn?.close()
  }
  return { messages, found }
}

export async function runStress (opts: StressOptions): Promise<StressReport> {
  const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 31)
  const rnd = prng(seed)
  const log = opts.log ?? (() => {})
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-stress-'))
  const users = opts.target === 'one' ? ['s0@example.com', 's1@example.com'] : ['g0@example.com', 'g1@example.com']
  let target: Target | null = null
  const world = new World(opts.target, () => target?.ports() ?? [], log)
  // grid: the nodes log at info into a cluster log (test/helpers/cluster.ts), where their merges name what they renumbered
  const env = new Map<string, string | undefined>()
  let clusterLog: { path: string, from: number } | null = null
  if (opts.target === 'grid') {
    const set = (name: string, value: string): void => { env.set(name, process.env[name]); process.env[name] = value }
    if (process.env.MAILGRID_TEST_LOG === undefined || process.env.MAILGRID_TEST_LOG === 'silent') set('MAILGRID_TEST_LOG', 'info')
    if (process.env.MAILGRID_CLUSTER_LOG === undefined) set('MAILGRID_CLUSTER_LOG', join(dir, 'cluster.log'))
    const path = process.env.MAILGRID_CLUSTER_LOG!
    clusterLog = { path, from: await stat(path).then(st => st.size, () => 0) }
  }
  try {
    target = opts.target === 'one' ? await startOne(join(dir, 'node'), users) : await startGridTarget(dir, users, world, rnd)
    // the mailboxes, once per user
    for (const user of users) {
      const s = new StressSession(world, 1000, user, 'plain', 1)
      await s.connect()
      await s.ensureMailboxes()
      await s.cmd('LOGOUT', 'LOGOUT')
      s.conn?.close()
    }
    log(`target ${opts.target} ready; seed ${seed}; ${opts.sessions} sessions for ${opts.seconds} s`)
    const modes: Mode[] = ['plain', 'condstore', 'qresync']
    const sessions = Array.from({ length: opts.sessions }, (_, i) => new StressSession(world, i, users[i % users.length]!, modes[i % modes.length]!, Math.floor(rnd() * 2 ** 31)))
    const started = Date.now()
    const deadline = started + opts.seconds * 1000
    const progress = setInterval(() => log(`${Math.round((Date.now() - started) / 1000)} s: ${world.commands} commands, ${world.checks} checks, ${world.protocolErrors} protocol errors, ${world.inconsistencies} inconsistencies, ${world.reconnects} reconnects, ${world.kills} kills`), 10_000)
    try {
      await Promise.all([...sessions.map(async s => await s.run(deadline)), target.chaos?.(deadline)])
    } finally {
      clearInterval(progress)
    }
    const elapsed = (Date.now() - started) / 1000
    world.stopping = true
    await target.settle()
    if (clusterLog !== null) {
      await new Promise(resolve => setTimeout(resolve, 1000)) // the nodes flush their log every 250 ms
      world.learnMerges((await readFile(clusterLog.path).catch(() => Buffer.alloc(0))).subarray(clusterLog.from).toString())
    }
    const final = await finalCheck(world, users)
    world.deferredReports()
    return {
      target: opts.target,
      seed,
      seconds: Math.round(elapsed),
      sessions: opts.sessions,
      commands: world.commands,
      commandsPerSecond: Math.round(world.commands / elapsed),
      byCommand: Object.fromEntries([...world.byCommand].sort((a, b) => b[1] - a[1])),
      checks: world.checks,
      protocolErrors: world.protocolErrors,
      inconsistencies: world.inconsistencies,
      errors: world.errors,
      refused: Object.fromEntries(world.refused),
      timeouts: world.timeouts,
      reconnects: world.reconnects,
      kills: world.kills,
      ackedAppends: world.acked.size,
      bodiesVerified: world.bodiesVerified,
      finalMessages: final.messages,
      finalAckedFound: final.found,
      renumbered: world.renumbered,
      excusedByRenumbering: world.excused,
      removedAfterRenumbering: world.removedAfterRenumbering
    }
  } finally {
    world.stopping = true
    await target?.stop().catch(() => {})
    for (const [name, value] of env) {
      if (value === undefined) delete process.env[name]
      else process.env[name] = value
    }
    if (process.env.MAILGRID_STRESS_KEEP === undefined) await rm(dir, { recursive: true, force: true })
    else log(`kept ${dir} (MAILGRID_STRESS_KEEP)`)
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name: string, fallback: string): string => {
    const i = process.argv.indexOf(`--${name}`)
    return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback
  }
  const t = arg('target', 'one')
  if (t !== 'one' && t !== 'grid') throw new Error('--target one|grid')
  const report = await runStress({
    seconds: Number(arg('seconds', '60')),
    sessions: Number(arg('sessions', '12')),
    target: t,
    ...(process.argv.includes('--seed') ? { seed: Number(arg('seed', '0')) } : {}),
    log: (line) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`)
  })
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`)
  process.exit(report.protocolErrors === 0 && report.inconsistencies === 0 ? 0 : 1)
}

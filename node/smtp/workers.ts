// SMTP worker processes: how a node uses more than one core. The node's process (the primary) stays the grid
// member, the store's owner and the IMAP/POP3 server; it binds the SMTP listeners as before and passes each listening
// socket to N child processes (node/smtp/worker.ts), which accept connections on it alongside the primary (the kernel
// hands each new connection to whichever process accepts first; a busy primary accepts few). A worker runs the whole
// SMTP session and asks the primary, over IPC, for everything that touches the node's state: recipients and quotas,
// AUTH, the connection limits (one count for all processes), the delivery and the outbound queue. Each user's writes
// are still ordered by one owner (the primary's store and grid), and a worker answers 250 only once the primary said
// the copies are durable. A worker that dies is started again; what it had not answered was never acknowledged.
// Directory answers (domains, users, aliases: what RCPT asks several times per message) are kept by the worker until
// the directory changes here: the primary tells every worker at each change (onDirectoryChange), so a worker's view
// is as current as the primary's, one IPC hop later; a message to a user without a quota costs one round trip (its
// delivery), not seven.

import { fork } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'
import type { Logger } from 'pino'
import type { Server, Socket } from 'node:net'
import { Batcher, timeBatch, toWire } from './ipc.ts'
import type { Message, Target } from './ipc.ts'
import type { WorkerInit, WorkerServiceName } from './worker.ts'
import { CLOSE_TIMEOUT_MS } from './server.ts'
import { stage, timing } from './timings.ts'
import type { SmtpLimiter } from './server.ts'

export const WORKERS_MAX = 16
const RESTART_DELAY_MIN_MS = 100
const RESTART_DELAY_MAX_MS = 5000
const STOP_GRACE_MS = CLOSE_TIMEOUT_MS + 5000 // then SIGKILL

/** `workers` as configured: -1 = one per core but one (the primary's), at least one; 0 = off; capped. */
export function workerCount (configured: number, cores = availableParallelism()): number {
  if (configured < 0) return Math.min(WORKERS_MAX, Math.max(1, cores - 1))
  return Math.min(WORKERS_MAX, configured)
}

/** The primary's objects a worker may call, by target (node/smtp/ipc.ts). */
export type WorkerTargets = Partial<Record<Exclude<Target, 'limiter'>, object>> & { limiter: { tryOpen: (ip: string) => (() => void) | null } }

export interface SmtpWorkersInit {
  count: number
  workerInit: Omit<WorkerInit, 't' | 'dirGen' | 'dirCache'>
  listeners: Array<{ name: WorkerServiceName, server: Server }>
}

interface Worker {
  child: ChildProcess
  channel: Batcher
  releases: Map<number, () => void> // connection-limit slots this worker holds, by token
  ready: boolean
}

export class SmtpWorkers {
  private readonly workers = new Set<Worker>()
  private stopping = false
  private restartDelay = RESTART_DELAY_MIN_MS
  private nextToken = 1
  private readonly log: Logger
  private readonly targets: WorkerTargets
  private readonly init: SmtpWorkersInit
  /** Directory changes seen so far; an answer tagged with an older count is not kept by the worker. */
  private dirGen = 0
  private unsubscribe: (() => void) | null = null

  constructor (targets: WorkerTargets, init: SmtpWorkersInit, logger: Logger) {
    this.targets = targets
    this.init = init
    this.log = logger.child({ ns: 'smtp-workers' })
  }

  private readonly own = new Map<Server, Array<(...a: unknown[]) => void>>()
  private turn = 0

  /** Starts the workers; resolves when each accepts on every listener. */
  async start (): Promise<void> {
    const dir = this.targets.directory as { onDirectoryChange?: (l: () => void) => () => void } | undefined
    this.unsubscribe = dir?.onDirectoryChange?.(() => {
      this.dirGen++
      // through each worker's batch, so it arrives after the answers read before the change and before the later
      // ones; sent now, before the change's writer hears it is done (so before any session it then opens)
      for (const w of this.workers) {
        w.channel.post({ t: 'dir', gen: this.dirGen })
        w.channel.flush()
      }
    }) ?? null
    await Promise.all(Array.from({ length: this.init.count }, async () => { await this.spawn() }))
    // A connection the primary's copy of a listening socket accepts goes to a worker too (round robin), so no session
    // runs here while a worker is up; with none up (all restarting), the primary's own SMTP service takes it.
    for (const l of this.init.listeners) {
      const listeners = l.server.listeners('connection') as Array<(...a: unknown[]) => void>
      this.own.set(l.server, listeners)
      l.server.removeAllListeners('connection')
      // not read here: a TLS client speaks first, and bytes read by this process would be lost in the hand-over
      ;(l.server as Server & { pauseOnConnect: boolean }).pauseOnConnect = true
      l.server.on('connection', (socket: Socket) => { this.pass(l.name, l.server, socket) })
    }
  }

  private pass (name: WorkerServiceName, server: Server, socket: Socket): void {
    const ready = [...this.workers].filter(w => w.ready && w.child.connected)
    if (ready.length === 0 || this.stopping) {
      for (const f of this.own.get(server) ?? []) f.call(server, socket)
      return
    }
    const w = ready[this.turn++ % ready.length]!
    w.child.send({ t: 'socket', name }, socket, { keepOpen: false }, err => {
      if (err !== null) socket.destroy()
    })
  }

  /** Worker processes' ids (tests kill one). */
  get pids (): number[] {
    return [...this.workers].flatMap(w => w.child.pid !== undefined && w.ready ? [w.child.pid] : [])
  }

  private async spawn (): Promise<void> {
    const path = fileURLToPath(new URL('./worker.ts', import.meta.url))
    // the parent's flags (e.g. a test runner's) are not the worker's: only what Node needs to run TypeScript
    const execArgv = process.execArgv.filter(a => !a.startsWith('--test') && !a.startsWith('--inspect') && !a.startsWith('--experimental-test'))
    const child = fork(path, [], { serialization: 'advanced', execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    const w: Worker = { child, channel: new Batcher(child as unknown as { send: (m: unknown, cb?: (err: Error | null) => void) => boolean, connected: boolean }), releases: new Map(), ready: false }
    this.workers.add(w)
    let readyResolve: () => void = () => {}
    let readyReject: (e: Error) => void = () => {}
    const ready = new Promise<void>((resolve, reject) => { readyResolve = resolve; readyReject = reject })
    child.on('message', (m: unknown) => {
      if (!Array.isArray(m)) return
      timeBatch(m as Message[])
      for (const x of m as Message[]) {
        if (x.t === 'ready') {
          w.ready = true
          this.restartDelay = RESTART_DELAY_MIN_MS
          this.log.info({ pid: child.pid, ports: x.ports }, 'smtp_worker_ready')
          readyResolve()
        } else {
          this.handle(w, x)
        }
      }
    })
    child.on('error', err => { this.log.error({ err, pid: child.pid }, 'smtp_worker_error') })
    child.once('exit', (code, signal) => {
      this.workers.delete(w)
      // its sessions are gone: their connection slots come back
      for (const release of w.releases.values()) release()
      w.releases.clear()
      readyReject(new Error(`smtp worker exited (${signal ?? code}) before it was ready`))
      if (this.stopping) return
      this.log.warn({ pid: child.pid, code, signal }, 'smtp_worker_exited')
      const delay = this.restartDelay
      this.restartDelay = Math.min(RESTART_DELAY_MAX_MS, this.restartDelay * 2)
      setTimeout(() => {
        if (!this.stopping) this.spawn().catch((err: unknown) => { this.log.error({ err }, 'smtp_worker_restart_failed') })
      }, delay).unref()
    })
    child.send({ t: 'init', ...this.init.workerInit, dirGen: this.dirGen, dirCache: this.unsubscribe !== null })
    for (const l of this.init.listeners) child.send({ t: 'listen', name: l.name }, l.server)
    await ready
  }

  private handle (w: Worker, m: Message): void {
    if (m.t === 'release') {
      const release = w.releases.get(m.token)
      w.releases.delete(m.token)
      release?.()
      return
    }
    if (m.t !== 'req' && m.t !== 'ev') return
    if (m.target === 'limiter') {
      if (m.t !== 'req' || m.method !== 'tryOpen') return
      const release = this.targets.limiter.tryOpen(String(m.args[0]))
      let token: number | null = null
      if (release !== null) {
        token = this.nextToken++
        w.releases.set(token, release)
      }
      w.channel.post({ t: 'res', id: m.id, value: token })
      return
    }
    const obj = this.targets[m.target] as Record<string, unknown> | undefined
    if (m.t === 'ev' && m.method === 'batch') {
      // counters summed by the worker over one turn (node/smtp/worker.ts)
      if (obj === undefined) return
      try {
        if (m.target === 'metrics') {
          const metrics = obj as { inc: (n: string, l: string, v: number) => void, observe: (n: string, l: string, s: number) => void }
          for (const [n, l, v] of m.args[0] as Array<[string, string, number]>) metrics.inc(n, l, v)
          for (const [n, l, sec] of m.args[1] as Array<[string, string, number]>) metrics.observe(n, l, sec)
        } else if (m.target === 'stats') {
          const stats = obj as { add: (s: string, a: string | null, n: number) => void }
          for (const [series, address, n] of m.args[0] as Array<[string, string | null, number]>) stats.add(series, address, n)
        }
      } catch (err) { this.log.error({ err, target: m.target }, 'smtp_worker_event_failed') }
      return
    }
    const fn = obj?.[m.method]
    if (typeof fn !== 'function') {
      if (m.t === 'req') w.channel.post({ t: 'res', id: m.id, error: { message: `no ${m.target}.${m.method} here` } })
      return
    }
    if (m.t === 'ev') {
      try { (fn as (...a: unknown[]) => unknown).apply(obj, m.args) } catch (err) { this.log.error({ err, target: m.target, method: m.method }, 'smtp_worker_event_failed') }
      return
    }
    const id = m.id
    // the directory's answers are tagged with the change count they were read under (see dirGen)
    const gen = m.target === 'directory' ? this.dirGen : undefined
    // bytes arrive as Uint8Array or Buffer depending on the serializer: the primary's code wants Buffers
    const args = m.args.map(a => a instanceof Uint8Array && !Buffer.isBuffer(a) ? Buffer.from(a.buffer, a.byteOffset, a.byteLength) : a)
    const started = performance.now()
    Promise.resolve().then(async () => await (fn as (...a: unknown[]) => Promise<unknown>).apply(obj, args)).then(
      value => { if (timing) stage(`serve.${m.target}.${m.method}`, performance.now() - started); w.channel.post({ t: 'res', id, value, ...(gen !== undefined ? { gen } : {}) }) },
      (err: unknown) => { w.channel.post({ t: 'res', id, error: toWire(err) }) }
    )
  }

  /** Drains: each worker stops accepting, lets its sessions finish, and exits (killed after a grace period). */
  async stop (): Promise<void> {
    this.stopping = true
    this.unsubscribe?.()
    this.unsubscribe = null
    for (const [server, listeners] of this.own) {
      ;(server as Server & { pauseOnConnect: boolean }).pauseOnConnect = false
      server.removeAllListeners('connection')
      for (const f of listeners) server.on('connection', f)
    }
    await Promise.all([...this.workers].map(async w => {
      if (w.child.exitCode !== null || w.child.signalCode !== null) return
      const exited = new Promise<void>(resolve => { w.child.once('exit', () => { resolve() }) })
      w.channel.post({ t: 'stop' })
      const timer = setTimeout(() => { w.child.kill('SIGKILL') }, STOP_GRACE_MS)
      await exited
      clearTimeout(timer)
    }))
  }
}

/** The limiter seen by a worker's sessions (re-exported type for node/index.ts). */
export type { SmtpLimiter }

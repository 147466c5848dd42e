// An SMTP worker process (started by node/smtp/workers.ts with child_process.fork). It runs the node's SMTP listeners
// on the listening sockets the primary passes it: smtp-server, TLS, the DATA path and its limits, the inbound
// SPF/DKIM/DMARC/ARC checks and the rspamd call, all in this process. Everything that reads or writes the node's
// state is asked of the primary over IPC: the directory and quotas at RCPT, AUTH (the grid-wide throttle lives
// there), the connection limits (so they stay global), the delivery and the outbound queue. A message is answered
// 250 only when the primary says its copies are durable, exactly as in the primary's own SMTP service.

import type { Server, Socket } from 'node:net'
import pino from 'pino'
import type { Logger } from 'pino'
import { createSmtpService, MemoryBudget } from './server.ts'
import type { SmtpComponents, SmtpInit, SmtpService } from './server.ts'
import { createSrs } from '../mailauth/index.ts'
import { createInboundChecker } from '../mailauth/index.ts'
import { createRspamdFilter } from '../filters/index.ts'
import type { RspamdInit } from '../filters/rspamd.ts'
import { Batcher, fromWire, timeBatch } from './ipc.ts'
import { BurlError } from './burl.ts'
import type { Message, Target } from './ipc.ts'
import { stage, timing } from './timings.ts'

export type WorkerServiceName = 'smtp' | 'submission' | 'smtps'

/** What the primary sends first: each service's settings and which optional components it has. */
export interface WorkerInit {
  t: 'init'
  logLevel: string
  srsSecret: Buffer
  services: Array<{ name: WorkerServiceName, init: SmtpInit, has: { outbound: boolean, sealer: boolean, domainUsage: boolean, burl: boolean, metrics: boolean, stats: boolean, srs: boolean, inbound: boolean, filter: boolean } }>
  inbound?: { hostname: string, dmarcReject: boolean, dnsServers: string[] }
  rspamd?: RspamdInit
  /** The primary's count of directory changes when it sent this (node/smtp/workers.ts). */
  dirGen: number
  /** Whether the primary tells of directory changes; if not, nothing is cached. */
  dirCache: boolean
}

if (process.send === undefined) throw new Error('node/smtp/worker.ts runs as a child process of a node (node/smtp/workers.ts)')
const channel = new Batcher(process as unknown as { send: (m: unknown, cb?: (err: Error | null) => void) => boolean, connected: boolean }, () => counted())

// Counters (metrics, statistics) are summed until the next batch leaves (node/smtp/ipc.ts: with a request, or after
// COUNTERS_DELAY_MS): a few entries instead of a dozen per message (a command count and a duration per command,
// several per delivery), and no write of their own
const incs = new Map<string, [string, string, number]>()
const observes: Array<[string, string, number]> = []
const adds = new Map<string, [string, string | null, number]>()
function counted (): Message[] {
  const out: Message[] = []
  if (incs.size > 0 || observes.length > 0) out.push({ t: 'ev', target: 'metrics', method: 'batch', args: [[...incs.values()], observes.splice(0)] })
  if (adds.size > 0) out.push({ t: 'ev', target: 'stats', method: 'batch', args: [[...adds.values()]] })
  incs.clear()
  adds.clear()
  return out
}
const metricsSink = {
  inc (name: string, label: string, value = 1): void {
    const k = name + '\0' + label
    const e = incs.get(k)
    if (e !== undefined) e[2] += value
    else incs.set(k, [name, label, value])
    channel.touchLater()
  },
  observe (name: string, label: string, seconds: number): void {
    observes.push([name, label, seconds])
    channel.touchLater()
  }
}
const statsSink = {
  add (series: string, address: string | null, n = 1): void {
    const k = series + '\0' + (address ?? '\u0001')
    const e = adds.get(k)
    if (e !== undefined) e[2] += n
    else adds.set(k, [series, address, n])
    channel.touchLater()
  }
}

// the primary gone: this process has no one to deliver to, so it ends (its unanswered messages were never acknowledged)
process.on('disconnect', () => { process.exit(0) })

let nextId = 1
const pending = new Map<number, { resolve: (v: unknown, gen?: number) => void, reject: (e: Error) => void }>()

function call (target: Target, method: string, args: unknown[]): Promise<unknown> {
  return callTagged(target, method, args).then(r => r.value)
}

/** A call, with the directory change count the primary read the answer under (directory calls only). */
function callTagged (target: Target, method: string, args: unknown[]): Promise<{ value: unknown, gen?: number }> {
  const id = nextId++
  const asked = performance.now()
  return new Promise((resolve, reject) => {
    pending.set(id, {
      resolve: (value, gen) => {
        if (timing) stage(`rtt.${target}.${method}`, performance.now() - asked)
        resolve(gen === undefined ? { value } : { value, gen })
      },
      reject
    })
    channel.post({ t: 'req', id, target, method, args })
  })
}

// The directory's answers SMTP asks for (several per RCPT), kept until the primary says the directory changed: each
// answer comes tagged with the change count it was read under and is kept only if no change was announced since, so
// a change made at the primary while the answer travelled cannot leave an old answer behind. Bounded: hostile RCPTs
// to made-up addresses evict the oldest entries, never grow the map beyond DIRECTORY_CACHE_MAX.
const DIRECTORY_CACHE_MAX = 20_000
const DIRECTORY_CACHED = new Set(['isLocalDomain', 'getDomain', 'getUser', 'expandRecipient', 'resolveRecipient', 'mayUseAddress'])
let dirGen = 0
let dirCache = false
const dirAnswers = new Map<string, unknown>()
const dirAsked = new Map<string, Promise<unknown>>() // in flight, shared by sessions asking the same

function directoryChanged (gen: number): void {
  dirGen = gen
  dirAnswers.clear()
  dirAsked.clear()
}

function cachedDirectory (): SmtpComponents['directory'] {
  const direct = remote<SmtpComponents['directory']>('directory')
  return new Proxy(direct, {
    get: (o, method) => {
      if (typeof method !== 'string' || !DIRECTORY_CACHED.has(method)) return Reflect.get(o, method)
      return async (...args: unknown[]) => {
        if (!dirCache) return await call('directory', method, args)
        const key = method + '\0' + JSON.stringify(args)
        if (dirAnswers.has(key)) return dirAnswers.get(key)
        const asked = dirAsked.get(key)
        if (asked !== undefined) return await asked
        const p = callTagged('directory', method, args).then(r => {
          if (dirAsked.get(key) === p) dirAsked.delete(key)
          if (r.gen === dirGen) {
            if (dirAnswers.size >= DIRECTORY_CACHE_MAX) dirAnswers.delete(dirAnswers.keys().next().value as string)
            dirAnswers.set(key, r.value)
          }
          return r.value
        }, (err: unknown) => {
          if (dirAsked.get(key) === p) dirAsked.delete(key)
          throw err
        })
        dirAsked.set(key, p)
        return await p
      }
    }
  })
}

/** The primary's object `target`, every method an IPC call (fire-and-forget for the void ones named in `events`). */
function remote<T> (target: Target, events: string[] = []): T {
  return new Proxy({}, {
    get: (_o, method) => {
      if (typeof method !== 'string' || method === 'then') return undefined
      if (events.includes(method)) return (...args: unknown[]) => { channel.post({ t: 'ev', target, method, args }) }
      return async (...args: unknown[]) => await call(target, method, args)
    }
  }) as T
}

let init: WorkerInit | null = null
const services = new Map<WorkerServiceName, SmtpService>()
const ports: Record<string, number> = {}
let stopping = false

// like the primary's (appliance/logger.ts): lines leave in one asynchronous write per few KB or per quarter second,
// and at exit
const LOG_BUFFER_BYTES = 4096
const LOG_FLUSH_INTERVAL_MS = 250
let logger: Logger | undefined

function build (w: WorkerInit, name: WorkerServiceName): SmtpService {
  const s = w.services.find(x => x.name === name)
  if (s === undefined) throw new Error(`no settings for ${name}`)
  logger ??= pino({ level: w.logLevel, base: { pid: process.pid, worker: true } }, pino.destination({ dest: process.stdout.fd, sync: false, minLength: LOG_BUFFER_BYTES, periodicFlush: LOG_FLUSH_INTERVAL_MS } as Parameters<typeof pino.destination>[0]))
  const limiter = {
    async tryOpen (ip: string): Promise<(() => void) | null> {
      const token = await call('limiter', 'tryOpen', [ip]) as number | null
      if (token === null) return null
      let released = false
      return () => {
        if (released) return
        released = true
        channel.post({ t: 'release', token })
      }
    }
  }
  const has = s.has
  const components: SmtpComponents = {
    directory: cachedDirectory(),
    delivery: remote('delivery'),
    auth: remote('auth'),
    limiter,
    budget: new MemoryBudget(), // DATA held in this process's heap
    logger: logger.child({ ns: 'smtp' }),
    ...(has.outbound ? { outbound: remote('outbound') } : {}),
    ...(has.srs ? { srs: createSrs({ secret: Buffer.from(w.srsSecret) }) } : {}),
    ...(has.sealer ? { sealer: remote('sealer') } : {}),
    ...(has.metrics ? { metrics: metricsSink as unknown as NonNullable<SmtpComponents['metrics']> } : {}),
    ...(has.stats ? { stats: statsSink as unknown as NonNullable<SmtpComponents['stats']> } : {}),
    ...(has.domainUsage ? { domainUsage: remote('domainUsage', ['added']) } : {}),
    ...(has.burl ? { burl: fetchUrl } : {}),
    ...(has.inbound && w.inbound !== undefined ? { inbound: createInboundChecker({ logger: logger.child({ ns: 'mailauth' }) }, w.inbound) } : {}),
    ...(has.filter && w.rspamd !== undefined ? { filter: createRspamdFilter({ logger: logger.child({ ns: 'rspamd' }) }, w.rspamd) } : {})
  }
  return createSmtpService(components, s.init)
}

/** BURL's URL fetch at the primary; its refusals are BurlErrors again here (their code is the reply). */
async function fetchUrl (user: string, url: string, max: number): Promise<Buffer> {
  try {
    return Buffer.from(await call('burl', 'fetch', [user, url, max]) as Uint8Array)
  } catch (err) {
    const code = (err as { responseCode?: unknown }).responseCode
    throw typeof code === 'number' ? new BurlError(code, (err as Error).message) : err
  }
}

async function stop (): Promise<void> {
  if (stopping) return
  stopping = true
  // no new connections; sessions finish (smtp-server's close timeout), their deliveries answered by the primary
  await Promise.allSettled([...services.values()].map(async s => { await s.close() }))
  channel.flush()
  process.disconnect()
}

process.on('message', (m: unknown, handle: unknown) => {
  if (Array.isArray(m)) {
    timeBatch(m as Message[])
    for (const x of m as Message[]) {
      if (x.t === 'res') {
        const p = pending.get(x.id)
        if (p === undefined) continue
        pending.delete(x.id)
        if (x.error !== undefined) p.reject(fromWire(x.error))
        else p.resolve(x.value, x.gen)
      } else if (x.t === 'dir') {
        directoryChanged(x.gen)
      } else if (x.t === 'stop') {
        void stop()
      }
    }
    return
  }
  const msg = m as WorkerInit | { t: 'listen' | 'socket', name: WorkerServiceName } | { t: 'stop' }
  if (msg.t === 'socket') {
    // a connection the primary accepted on its copy of the listening socket
    const socket = handle as Socket | undefined
    const service = services.get(msg.name)?.listener()
    if (socket === undefined) return
    if (service === undefined || service === null || stopping) socket.destroy()
    else service.emit('connection', socket)
  } else if (msg.t === 'init') {
    init = msg
    dirGen = msg.dirGen
    dirCache = msg.dirCache
  } else if (msg.t === 'stop') {
    void stop()
  } else if (msg.t === 'listen' && init !== null && !stopping) {
    const w = init
    const service = build(w, msg.name)
    services.set(msg.name, service)
    service.listen(handle as Server).then(a => {
      ports[msg.name] = a.port
      if (Object.keys(ports).length === w.services.length) channel.post({ t: 'ready', ports: { ...ports } })
    }, (err: unknown) => {
      console.error('smtp worker: cannot listen', err)
      process.exit(1)
    })
  }
})

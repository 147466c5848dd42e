// The inbound checks on other cores. SPF, DKIM, DMARC and ARC (mailauth) are a fifth to a quarter of the main
// thread's time per received message (canonicalizing and hashing the body for DKIM, parsing the SPF records and
// evaluating them, DMARC's alignment), and they need nothing of the node but the message, the session's facts and
// DNS. So they run in worker threads (check-thread.ts), each with its own DNS answer cache, while the node's main
// thread goes on with the SMTP sessions and the store: the main thread pays a copy of the message into the thread
// (a memcpy) and one message each way, and the second core does the checking.
//
// The same contract as the checker in the main thread (verify.ts): fail open. A thread that does not answer within
// the check's own bound plus THREAD_GRACE_MS (a check that spins on hostile input) is ended, its checks answered
// temperror and accepted, and the next check starts a new thread; so is a thread that dies. Threads start at the
// first check (an idle node does not pay their memory) and end with `close`.

import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import type { Logger } from 'pino'
import { CHECK_TIMEOUT_MS, failOpenResult } from './verify.ts'
import type { CheckContext, CheckResult, InboundChecker, InboundCheckerInit } from './verify.ts'

/** Above the check's own bound (CHECK_TIMEOUT_MS): the thread answers a timed-out check itself well within this. */
export const THREAD_GRACE_MS = 5000
/** Threads at most, whatever the configuration asks: the checks' CPU per message is a fraction of the node's. */
export const CHECK_THREADS_MAX = 8
/** The check threads' nice value: below the main thread, so a busy machine serves the sessions and the store first. */
export const CHECK_THREAD_NICE = 10

/** The threads for a configured count: -1 = one per core but one (none on one core), else the count, capped. */
export function inboundThreadCount (configured: number, cores = availableParallelism()): number {
  if (configured < 0) return Math.min(CHECK_THREADS_MAX, Math.max(0, cores - 1))
  return Math.min(CHECK_THREADS_MAX, configured)
}

export interface ThreadLogLine { level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal', obj: Record<string, unknown>, msg?: string }
/** What the check context carries across (the signal stays here: a cancel message stands for it). */
export type WireContext = Omit<CheckContext, 'signal'>
export type WireResult = Omit<CheckResult, 'cleaned'> & { cleaned?: Uint8Array }
export type ThreadRequest =
  | { id: number, message: Uint8Array, ctx: WireContext, cancel?: undefined }
  | { cancel: number }
export type ThreadReply =
  | { id: number, result: WireResult, error?: undefined, log?: undefined }
  | { id: number, error: string, result?: undefined, log?: undefined }
  | { log: ThreadLogLine, id?: undefined }

export interface ThreadedCheckerComponents {
  logger: Logger
  /** The thread's module (tests: a thread that dies or hangs); default check-thread.ts. */
  threadUrl?: URL
}

export interface ThreadedCheckerInit {
  /** Threads to run the checks on, 1..CHECK_THREADS_MAX. */
  threads: number
  /** The threads' nice value (Linux); CHECK_THREAD_NICE by default, 0 = the process's own. */
  nice?: number
}

interface Pending {
  resolve: (r: CheckResult) => void
  reject: (err: unknown) => void
  timer: NodeJS.Timeout
  done: () => void
}

interface Slot {
  worker: Worker
  pending: Map<number, Pending>
}

export interface ThreadedInboundChecker extends InboundChecker {
  close: () => Promise<void>
  /** Threads running now (tests). */
  readonly running: number
  /** Threads started since the checker was made (tests: a stuck or dead thread is replaced). */
  readonly started: number
}

export function createThreadedInboundChecker (components: ThreadedCheckerComponents, init: InboundCheckerInit, threads: ThreadedCheckerInit): ThreadedInboundChecker {
  const log = components.logger
  const count = Math.max(1, Math.min(CHECK_THREADS_MAX, Math.floor(threads.threads)))
  const boundMs = (init.timeoutMs ?? CHECK_TIMEOUT_MS) + THREAD_GRACE_MS
  const slots: Slot[] = []
  let nextId = 1
  let started = 0
  let closed = false

  const failOpen = (why: string): CheckResult => failOpenResult(init.hostname, why)

  /** Ends a thread that died or hangs: its checks are answered fail-open, the next check starts another. */
  const retire = async (slot: Slot, why: string): Promise<void> => {
    const i = slots.indexOf(slot)
    if (i < 0) return
    slots.splice(i, 1)
    for (const p of slot.pending.values()) {
      p.done()
      p.resolve(failOpen('internal error'))
    }
    slot.pending.clear()
    if (!closed) log.error({ event: 'inbound_check_thread_ended', why }, 'a sender-authentication thread ended; its checks were accepted with temperror')
    await slot.worker.terminate().catch(() => {})
  }

  const spawn = (): Slot => {
    const worker = new Worker(components.threadUrl ?? new URL('./check-thread.ts', import.meta.url), {
      workerData: { init, level: log.level, nice: threads.nice ?? CHECK_THREAD_NICE },
      // a thread's heap is for one message's checks at a time, times the checks in flight
      resourceLimits: { maxOldGenerationSizeMb: 256 }
    })
    worker.unref()
    const slot: Slot = { worker, pending: new Map() }
    started++
    worker.on('message', (reply: ThreadReply) => {
      if (reply.log !== undefined) {
        const l = reply.log
        log[l.level](l.obj, l.msg)
        return
      }
      const p = slot.pending.get(reply.id)
      if (p === undefined) return // answered already (cancelled, or the thread was given up on)
      slot.pending.delete(reply.id)
      p.done()
      if (reply.error !== undefined) { p.reject(new Error(reply.error)); return }
      const { cleaned, ...rest } = reply.result
      p.resolve(cleaned === undefined ? rest : { ...rest, cleaned: Buffer.from(cleaned.buffer, cleaned.byteOffset, cleaned.byteLength) })
    })
    worker.on('error', err => { void retire(slot, `error: ${err.message}`) })
    worker.on('exit', code => { void retire(slot, `exit ${code}`) })
    slots.push(slot)
    return slot
  }

  /** The thread with the fewest checks in flight; a new one while fewer than `count` run and all are busy. */
  const pick = (): Slot => {
    let best: Slot | undefined
    for (const s of slots) if (best === undefined || s.pending.size < best.pending.size) best = s
    if (best === undefined || (best.pending.size > 0 && slots.length < count)) return spawn()
    return best
  }

  return {
    get running () { return slots.length },
    get started () { return started },
    async check (message, ctx) {
      ctx.signal?.throwIfAborted()
      if (closed) return failOpen('shutting down')
      const slot = pick()
      const id = nextId++
      // the bytes cross once: copied into a buffer of their own that is moved, not cloned, into the thread
      const bytes = new Uint8Array(message.length)
      bytes.set(message)
      const { signal, ...wire } = ctx
      return await new Promise<CheckResult>((resolve, reject) => {
        const onAbort = (): void => {
          if (!slot.pending.delete(id)) return
          done()
          slot.worker.postMessage({ cancel: id } satisfies ThreadRequest)
          reject(signal?.reason ?? new Error('aborted'))
        }
        const timer = setTimeout(() => {
          if (!slot.pending.has(id)) return
          log.warn({ event: 'inbound_check_thread_stuck', ip: ctx.ip, ms: boundMs }, 'a sender-authentication thread did not answer; ending it')
          void retire(slot, 'no answer')
        }, boundMs)
        const done = (): void => {
          clearTimeout(timer)
          signal?.removeEventListener('abort', onAbort)
        }
        slot.pending.set(id, { resolve, reject, timer, done })
        signal?.addEventListener('abort', onAbort, { once: true })
        slot.worker.postMessage({ id, message: bytes, ctx: wire } satisfies ThreadRequest, [bytes.buffer])
      })
    },
    async close () {
      if (closed) return
      closed = true
      await Promise.all([...slots].map(async s => { await retire(s, 'closed') }))
    }
  }
}

// The inbound checks on other cores. SPF, DKIM, DMARC and ARC (mailauth) are a fifth to a quarter of the main
// thread's time per received message (canonicalizing and hashing the body for DKIM, parsing the SPF records and
// evaluating them, DMARC's alignment), and they need nothing of the node but the message, the session's facts and
// DNS. So they run in worker threads (check-thread.ts), each with its own DNS answer cache, while the node's main
// thread goes on with the SMTP sessions and the store.
//
// What the main thread still pays per message is kept small:
// - it removes our own Authentication-Results itself (a search of the header block) and sends an unsigned
//   message's header block alone, since no method reads its body (verify.ts, unsignedHeaderBlock); a signed
//   message is sent whole. The bytes are copied once into a buffer that is moved, not cloned, into the thread;
// - the requests of one event-loop turn go to a thread in one message, and a thread answers the checks it
//   finished in one turn in one message: a convoy of deliveries (the sessions' DATA read in one poll) costs one
//   wake-up and one message event each way instead of one per check.
//
// The same contract as the checker in the main thread (verify.ts): fail open. A thread that does not answer within
// the check's own bound plus THREAD_GRACE_MS (a check that spins on hostile input) is ended, its checks answered
// temperror and accepted, and the next check starts a new thread; so is a thread that dies. Threads start at the
// first check (an idle node does not pay their memory) and end with `close`.

import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import type { Logger } from 'pino'
import { withoutOwnAuthResults } from './headers.ts'
import { CHECK_TIMEOUT_MS, failOpenResult, unsignedHeaderBlock } from './verify.ts'
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
export type WireResult = Omit<CheckResult, 'cleaned'>
/** `unsigned`: `message` is the header block of an unsigned message, its body left out (verify.ts, evaluate). */
export type ThreadRequest =
  | { id: number, message: Uint8Array, unsigned: boolean, ctx: WireContext, cancel?: undefined }
  | { cancel: number }
export type ThreadReply =
  | { id: number, result: WireResult, error?: undefined, log?: undefined }
  | { id: number, error: string, result?: undefined, log?: undefined }
  | { log: ThreadLogLine, id?: undefined }
/** One message between the node and a thread carries what one side had for the other in one turn, in order. */
export type ThreadRequests = ThreadRequest[]
export type ThreadReplies = ThreadReply[]

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
  /** Requests of this turn not yet posted, and the buffers they move. */
  outbox: ThreadRequest[]
  transfer: ArrayBuffer[]
  retired: boolean
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
    slot.retired = true
    slot.outbox = []
    slot.transfer = []
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
    const slot: Slot = { worker, pending: new Map(), outbox: [], transfer: [], retired: false }
    started++
    const answer = (reply: ThreadReply): void => {
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
      p.resolve(reply.result)
    }
    worker.on('message', (replies: ThreadReplies) => { for (const r of replies) answer(r) })
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

  /** Posts what this turn gave a thread, in one message. */
  const flush = (slot: Slot): void => {
    if (slot.retired || slot.outbox.length === 0) return
    const requests = slot.outbox
    const transfer = slot.transfer
    slot.outbox = []
    slot.transfer = []
    slot.worker.postMessage(requests satisfies ThreadRequests, transfer)
  }
  const send = (slot: Slot, request: ThreadRequest, transfer?: ArrayBuffer): void => {
    if (slot.outbox.length === 0) setImmediate(flush, slot)
    slot.outbox.push(request)
    if (transfer !== undefined) slot.transfer.push(transfer)
  }

  const ours = [init.hostname, ...(init.trustedIds ?? [])]

  return {
    get running () { return slots.length },
    get started () { return started },
    async check (message, ctx) {
      ctx.signal?.throwIfAborted()
      // our own Authentication-Results are removed here, as the checker in this thread does (verify.ts, check)
      const cleaned = withoutOwnAuthResults(message, ours)
      if (cleaned !== null) log.warn({ event: 'inbound_auth_forged', ip: ctx.ip, from: ctx.mailFrom }, 'removed Authentication-Results that claim our name')
      if (closed) return cleaned === null ? failOpen('shutting down') : { ...failOpen('shutting down'), cleaned }
      const header = ctx.sender === undefined ? unsignedHeaderBlock(message) : null
      const slot = pick()
      const id = nextId++
      // the bytes the checks read cross once: copied into a buffer of their own that is moved, not cloned (none for
      // a submission: its result is the session's login alone)
      const part = ctx.sender !== undefined ? message.subarray(0, 0) : header ?? message
      const bytes = new Uint8Array(Buffer.allocUnsafeSlow(part.length).buffer, 0, part.length)
      bytes.set(part)
      const { signal, ...wire } = ctx
      const result = await new Promise<CheckResult>((resolve, reject) => {
        const onAbort = (): void => {
          if (!slot.pending.delete(id)) return
          done()
          send(slot, { cancel: id })
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
        send(slot, { id, message: bytes, unsigned: header !== null, ctx: wire }, bytes.buffer as ArrayBuffer)
      })
      return cleaned === null ? result : { ...result, cleaned }
    },
    async close () {
      if (closed) return
      closed = true
      await Promise.all([...slots].map(async s => { await retire(s, 'closed') }))
    }
  }
}

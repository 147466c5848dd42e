// The wire between the node's primary process and its SMTP worker processes (node/smtp/workers.ts, worker.ts): the
// child_process IPC channel with V8 serialization (Buffers travel as bytes, not JSON). Messages are batched: all
// those posted in one turn of the event loop leave as one array, so fifty sessions' requests cost one write.
// Counters (metrics, statistics) do not make a write of their own: they leave with the next batch that carries a
// request or answer, or after COUNTERS_DELAY_MS at the latest (a write costs each side a wake-up and a system call).

import { MailError, isMailError } from '../../store/index.ts'
import type { MailErrorKind } from '../../store/index.ts'
import { stage, stamp, timing } from './timings.ts'

/** Components a worker asks the primary for; each call is `target.method(...args)` on the primary's object. */
export type Target = 'directory' | 'delivery' | 'auth' | 'limiter' | 'outbound' | 'sealer' | 'domainUsage' | 'burl' | 'metrics' | 'stats'

export type Message =
  | { t: 'req', id: number, target: Target, method: string, args: unknown[] }
  | { t: 'ev', target: Target, method: string, args: unknown[] } // no answer (counters, releases)
  | { t: 'res', id: number, value?: unknown, error?: WireFailure, gen?: number } // gen: directory answers (below)
  | { t: 'dir', gen: number } // the directory changed at the primary: a worker drops what it cached
  | { t: 'release', token: number }
  | { t: 'ready', ports: Record<string, number> }
  | { t: 'stop' }
  | { t: 'stamp', at: number } // when the batch left (node/smtp/timings.ts, only while timing)

export interface WireFailure { message: string, kind?: MailErrorKind, responseCode?: number }

/** An error as it crosses: a MailError keeps its kind (the SMTP reply depends on it), a reply its code. */
export function toWire (err: unknown): WireFailure {
  if (isMailError(err)) return { message: err.message, kind: err.kind }
  const e = err instanceof Error ? err : new Error(String(err))
  const code = (e as { responseCode?: unknown }).responseCode
  return { message: e.message, ...(typeof code === 'number' ? { responseCode: code } : {}) }
}

export function fromWire (f: WireFailure): Error {
  if (f.kind !== undefined) return new MailError(f.kind, f.message)
  const e = new Error(f.message)
  return f.responseCode !== undefined ? Object.assign(e, { responseCode: f.responseCode }) : e
}

interface Endpoint {
  send (message: unknown, callback?: (err: Error | null) => void): boolean
  readonly connected: boolean
}

/** How long summed counters may wait for a batch to ride on. */
export const COUNTERS_DELAY_MS = 200

/** Queues messages and sends them as one array per event-loop turn. */
export class Batcher {
  private queue: Message[] = []
  private scheduled = false
  private timer: NodeJS.Timeout | null = null
  private readonly to: Endpoint
  /** Messages made at flush time (counters summed over the turn), appended to the batch. */
  private readonly late: () => Message[]
  constructor (to: Endpoint, late: () => Message[] = () => []) {
    this.to = to
    this.late = late
  }

  post (m: Message): void {
    this.queue.push(m)
    this.touch()
  }

  /** Makes sure a flush comes this turn. */
  touch (): void {
    if (this.scheduled) return
    this.scheduled = true
    if (!timing) {
      setImmediate(() => { this.flush() })
      return
    }
    const t = performance.now()
    setImmediate(() => { stage('ipc.flushWait', performance.now() - t); this.flush() })
  }

  /** Makes sure a flush comes within COUNTERS_DELAY_MS (something for `late` is waiting). */
  touchLater (): void {
    if (this.scheduled || this.timer !== null) return
    this.timer = setTimeout(() => { this.timer = null; this.flush() }, COUNTERS_DELAY_MS)
  }

  flush (): void {
    this.scheduled = false
    if (this.timer !== null) { clearTimeout(this.timer); this.timer = null }
    this.queue.push(...this.late())
    if (this.queue.length === 0) return
    const batch = this.queue
    this.queue = []
    if (timing) {
      stage('ipc.batchOut', batch.length)
      batch.push({ t: 'stamp', at: stamp() })
    }
    // a closed channel (the other side died) drops the batch: its requests were never answered, so never acknowledged
    if (this.to.connected) this.to.send(batch, () => {})
  }
}

/** Times a batch that arrived (node/smtp/timings.ts): its size and how long it took from the other process's flush. */
export function timeBatch (batch: Message[]): void {
  if (!timing) return
  stage('ipc.batchIn', batch.length)
  const last = batch[batch.length - 1]
  if (last?.t === 'stamp') stage('ipc.transit', stamp() - last.at)
}

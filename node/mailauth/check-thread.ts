// The inner side of threads.ts: one worker thread running the inbound checker of verify.ts (mailauth's SPF, DKIM,
// DMARC and ARC, with its own DNS answer cache). It is pure computation plus DNS: no store, no sockets of the node.
// A request carries the message, or an unsigned message's header block (its bytes transferred, not shared), and the
// check context; the node has already removed our own Authentication-Results, so the thread evaluates only. The
// answer carries the result; the log lines a check writes go to the node before its answer, and the node writes them
// through its own logger, so one process has one log. Requests come in batches (one per turn of the node's loop),
// and what the thread has for the node in one turn of its own loop leaves in one message. A cancel ends a running
// check the way an aborted signal does in the main thread.

import { readlinkSync } from 'node:fs'
import { setPriority } from 'node:os'
import { parentPort, workerData } from 'node:worker_threads'
import type { Logger } from 'pino'
import { createInboundChecker } from './verify.ts'
import type { CheckContext, InboundCheckerInit } from './verify.ts'
import type { ThreadLogLine, ThreadReplies, ThreadReply, ThreadRequest, ThreadRequests } from './threads.ts'

const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const
type Level = keyof typeof LEVELS

const port = parentPort
if (port === null) throw new Error('check-thread.ts runs only as a worker thread')
const { init, level } = workerData as { init: InboundCheckerInit, level: Level }
const threshold: number = (LEVELS as Record<string, number>)[level] ?? Infinity // 'silent': nothing

// what this turn has for the node, posted at its end in one message
let outbox: ThreadReply[] = []
function post (reply: ThreadReply): void {
  if (outbox.length === 0) setImmediate(flush)
  outbox.push(reply)
}
function flush (): void {
  const replies = outbox
  outbox = []
  port?.postMessage(replies satisfies ThreadReplies)
}

// a line goes to the node as it is written (before the answer of its check); below the node's level nothing is built
function logger (): Logger {
  const at = (l: Level) => (obj: unknown, msg?: string): void => {
    if (LEVELS[l] < threshold) return
    const line: ThreadLogLine = { level: l, obj: plain(obj), ...(msg === undefined ? {} : { msg }) }
    post({ log: line })
  }
  const self = {
    trace: at('trace'), debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), fatal: at('fatal'),
    isLevelEnabled: (l: string) => (LEVELS[l as Level] ?? 0) >= threshold,
    child: () => self,
    level
  }
  return self as unknown as Logger
}

/** What crosses to the node: an Error as its message and code (pino's err serializer sees an Error again there). */
function plain (obj: unknown): Record<string, unknown> {
  if (typeof obj !== 'object' || obj === null) return { value: String(obj) }
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(obj)) {
    out[k] = v instanceof Error ? { message: v.message, ...('code' in v ? { code: String((v as { code: unknown }).code) } : {}), error: true } : v
  }
  return out
}

// Below the node's main thread: the sessions and the store go first, the checks take the cycles left over. On Linux
// a thread has its own nice value (setpriority on its thread id, which /proc/thread-self names); elsewhere, or
// when refused, the thread runs at the process's priority.
const { nice } = workerData as { nice?: number }
if (nice !== undefined && nice > 0) {
  try {
    setPriority(Number(readlinkSync('/proc/thread-self').split('/').pop()), nice)
  } catch {}
}

const checker = createInboundChecker({ logger: logger() }, init)
const running = new Map<number, AbortController>()

function serve (req: ThreadRequest): void {
  if (req.cancel !== undefined) {
    running.get(req.cancel)?.abort(new Error('cancelled'))
    return
  }
  const { id, ctx } = req
  const message = Buffer.from(req.message.buffer, req.message.byteOffset, req.message.byteLength)
  const abort = new AbortController()
  running.set(id, abort)
  const context: CheckContext = { ...ctx, signal: abort.signal }
  checker.evaluate(message, req.unsigned ? message : null, context).then(result => {
    post({ id, result })
  }, (err: unknown) => {
    post({ id, error: err instanceof Error ? err.message : String(err) })
  }).finally(() => { running.delete(id) })
}

port.on('message', (requests: ThreadRequests) => { for (const req of requests) serve(req) })

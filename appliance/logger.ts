// Structured logs: one pino root logger per process, namespaced children ('smtp', 'pop3', 'admin', ...) so a
// line says which part spoke, and credentials censored wherever they appear as a field (top level or one
// object down, e.g. `{ req: { headers: { authorization } } }`), so a careless log call cannot leak them.
//
// A node logs a line per message (`smtp_delivered`), so writing must cost little: lines collect in a buffer
// (sonic-boom, pino's destination) and leave in one asynchronous write once LOG_BUFFER_BYTES have collected, or
// LOG_FLUSH_INTERVAL_MS after the first, instead of one write system call per line on the event loop. What is
// buffered is written synchronously when the process exits (a clean stop after SIGTERM or SIGINT, a normal
// exit, process.exit, an uncaught exception: pino registers that flush for an asynchronous destination). A
// SIGKILL or a power cut loses what was still in the buffer: the lines of at most the last
// LOG_FLUSH_INTERVAL_MS (and of a write in flight), never anything of the mail, which is durable before it is
// acknowledged.

import { pino } from 'pino'
import type { DestinationStream, Level, Logger } from 'pino'

export type { Logger }

export const LOG_LEVELS: readonly Level[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace']

const SECRET_KEYS = ['password', 'pass', 'token', 'authorization', 'clusterKey']

/** The paths censored, as pino's redaction would name them: the key itself and up to two levels down. */
export const REDACT_PATHS: readonly string[] = SECRET_KEYS.flatMap(k => [k, `*.${k}`, `*.*.${k}`])

export const REDACTED = '[redacted]'

const SECRETS: ReadonlySet<string> = new Set(SECRET_KEYS)
const LEVELS_DOWN_MAX = 2

function isPlain (v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false
  const proto = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null || Array.isArray(v)
}

/**
 * The fields of a line with every secret key (SECRET_KEYS) at the top or up to two plain objects (or arrays)
 * down replaced by REDACTED; the object itself when there is none (the common case costs a look at each key).
 * Done here rather than with pino's `redact` paths: fast-redact's wildcard paths cost about 12 µs per line,
 * 25 µs per message at the two info lines a delivery writes (measured), more than formatting the line.
 */
export function censor<T extends Record<string, unknown>> (fields: T, depth = 0): T {
  let out: Record<string, unknown> | undefined
  for (const k of Object.keys(fields)) {
    const v = fields[k]
    const next = SECRETS.has(k) ? REDACTED : depth < LEVELS_DOWN_MAX && isPlain(v) ? censor(v, depth + 1) : v
    if (next !== v) {
      out ??= (Array.isArray(fields) ? [...fields] : { ...fields }) as Record<string, unknown>
      out[k] = next
    }
  }
  return (out ?? fields) as T
}

/** Lines are written once this many bytes have collected (one write system call for a few dozen lines). */
export const LOG_BUFFER_BYTES = 4096
/** ... or this long after they were logged, whichever comes first: how late a line may reach the log. */
export const LOG_FLUSH_INTERVAL_MS = 250

export interface LoggerInit {
  level?: Level | 'silent'
  /** Where lines go; stdout, buffered (see above), when absent. Tests pass a stream to read the lines back. */
  destination?: DestinationStream
}

/** stdout as an asynchronous, buffered destination, flushed on a timer and at exit. */
export function bufferedStdout (): DestinationStream & { flushSync: () => void } {
  return pino.destination({ dest: process.stdout.fd, sync: false, minLength: LOG_BUFFER_BYTES, periodicFlush: LOG_FLUSH_INTERVAL_MS } as Parameters<typeof pino.destination>[0])
}

export function createLogger (init: LoggerInit = {}): Logger {
  const options = {
    level: init.level ?? 'info',
    base: { pid: process.pid },
    formatters: { log: censor, bindings: censor }
  }
  return pino(options, init.destination ?? bufferedStdout())
}

/** A child logger for one part of the program; every line carries `ns`. */
export function namespaced (logger: Logger, ns: string): Logger {
  return logger.child({ ns })
}

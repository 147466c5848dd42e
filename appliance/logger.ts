// Structured logs: one pino root logger per process, namespaced children ('smtp', 'pop3', 'admin', ...) so a
// line says which part spoke, and credentials censored wherever they appear as a field (top level or one
// object down, e.g. `{ req: { headers: { authorization } } }`), so a careless log call cannot leak them.

import { pino } from 'pino'
import type { DestinationStream, Level, Logger } from 'pino'

export type { Logger }

export const LOG_LEVELS: readonly Level[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace']

const SECRET_KEYS = ['password', 'pass', 'token', 'authorization', 'clusterKey']

/** pino's redaction takes explicit paths (fast-redact); cover the key itself and up to two levels down. */
export const REDACT_PATHS: readonly string[] = SECRET_KEYS.flatMap(k => [k, `*.${k}`, `*.*.${k}`])

export const REDACTED = '[redacted]'

export interface LoggerInit {
  level?: Level
  /** Where lines go; stdout when absent. Tests pass a stream to read the lines back. */
  destination?: DestinationStream
}

export function createLogger (init: LoggerInit = {}): Logger {
  const options = {
    level: init.level ?? 'info',
    base: { pid: process.pid },
    redact: { paths: [...REDACT_PATHS], censor: REDACTED }
  }
  return init.destination === undefined ? pino(options) : pino(options, init.destination)
}

/** A child logger for one part of the program; every line carries `ns`. */
export function namespaced (logger: Logger, ns: string): Logger {
  return logger.child({ ns })
}

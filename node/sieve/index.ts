/**
 * node/sieve: the Sieve mail filtering language (RFC 5228 and extensions; node/sieve/README.md lists them).
 * compileSieve parses and validates a script (errors with byte-exact positions); runSieve interprets a compiled
 * script against one message and returns what to do with it. No I/O here: the environment passes in storage.
 */

import { execute } from './interp.ts'
import type { ScriptAst } from './compile.ts'
import type { CompiledScript, SieveEnvironment, SieveMessage, SieveOutcome } from './types.ts'

export type * from './types.ts'
export * from './limits.ts'
export { compileSieve } from './compile.ts'
export { SIEVE_EXTENSIONS } from './spec.ts'
export { VACATION_DAYS_DEFAULT, VACATION_SECONDS_MAX, VACATION_SECONDS_MIN } from './vacation.ts'
export { DUPLICATE_SECONDS_DEFAULT, DUPLICATE_SECONDS_MAX } from './interp.ts'

/** Runs a compiled script against one message. Never throws: a runtime error gives the implicit keep with `errors` set. */
export async function runSieve (script: CompiledScript, message: SieveMessage, env: SieveEnvironment): Promise<SieveOutcome> {
  return await execute(script.ast as ScriptAst, message, env)
}

/**
 * node/sieve: the Sieve mail filtering language (RFC 5228 and extensions; node/sieve/README.md lists them).
 * compileSieve parses and validates a script (errors with byte-exact positions); runSieve interprets a compiled
 * script against one message and returns what to do with it. No I/O here: the environment passes in storage.
 *
 * Work in progress (issue 14): the signatures below are the stable interface; the bodies land in the next commits.
 */

import type { CompileOptions, CompileResult, CompiledScript, SieveEnvironment, SieveMessage, SieveOutcome } from './types.ts'

export type * from './types.ts'
export * from './limits.ts'

export function compileSieve (source: string, opts: CompileOptions = {}): CompileResult {
  void source; void opts
  return { ok: false, errors: [{ line: 1, column: 1, offset: 0, message: 'sieve: compiler not implemented yet' }] }
}

export async function runSieve (script: CompiledScript, message: SieveMessage, env: SieveEnvironment): Promise<SieveOutcome> {
  void script; void env
  return {
    keep: [{ mailbox: 'INBOX', flags: [], create: false }], redirects: [], reject: null, vacation: null, memory: [], editedMessage: null,
    errors: [{ line: 1, column: 1, offset: 0, message: 'sieve: interpreter not implemented yet; message kept' }]
  }
}

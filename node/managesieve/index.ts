// node/managesieve: the ManageSieve server (RFC 5804) and the store of a user's Sieve scripts (user attributes,
// replicated with the user's mail). README.md beside this file has the design and the limits.

export { createManageSieveServer } from './server.ts'
export type { ManageSieveComponents, ManageSieveInit, ManageSieveRouter, ManageSieveServer } from './server.ts'
export {
  ACTIVE_KEY, checkScriptName, describeErrors, SCRIPT_BYTES_MAX, SCRIPT_NAME_CHARS_MAX, SCRIPT_PREFIX, ScriptError,
  SCRIPTS_BYTES_PER_USER_MAX, SCRIPTS_PER_USER_MAX, SieveScripts
} from './scripts.ts'
export type { ScriptErrorKind, ScriptInfo } from './scripts.ts'
export { MANAGESIEVE_PORT } from './constants.ts'
export { SieveService, SIEVE_SCRIPTS_PROTOCOL } from './service.ts'
export type { SieveServiceComponents } from './service.ts'

// The bounds every Sieve script compiles and runs under (STYLE habit 9: units last, sources named). A script
// that exceeds a compile-time bound is refused with an error at the place it crossed it; one that exceeds a
// run-time bound stops with a runtime error, and the message is kept (RFC 5228 2.10.6).

import type { SieveLimits } from './types.ts'

export const SCRIPT_BYTES_MAX = 1024 * 1024 // Pigeonhole's sieve_max_script_size default (1M)
export const NESTING_DEPTH_MAX = 32 // blocks + test lists + not(); hand-written scripts rarely pass 5
export const ACTIONS_MAX = 32 // Pigeonhole's sieve_max_actions default
export const REDIRECTS_MAX = 4 // Pigeonhole's sieve_max_redirects default; RFC 5228 4.2 allows a limit
export const INCLUDE_DEPTH_MAX = 10 // Pigeonhole's sieve_include_max_nesting_depth default (RFC 6609 3.2)
export const INCLUDE_SCRIPTS_MAX = 255 // Pigeonhole's sieve_include_max_includes default
export const VARIABLE_BYTES_MAX = 4096 // Pigeonhole's sieve_variables_max_variable_size default (RFC 5229 3 lets us truncate)
export const VARIABLES_MAX = 255 // Pigeonhole's sieve_variables_max_scope_size default
export const REGEX_INPUT_BYTES_MAX = 64 * 1024 // a :regex sees at most this much of a value (the body test's text)
export const REGEX_PATTERN_BYTES_MAX = 1024 // program size bounds the linear-time matcher's per-byte cost
export const STEPS_MAX = 2_000_000 // interpreter steps incl. regex VM steps; ~tens of ms on this machine
export const STRING_LIST_MAX = 1024 // strings in one list
export const BODY_BYTES_MAX = 1024 * 1024 // body test reads at most this much decoded text
export const HEADERS_ADDED_MAX = 64 // addheader per run
export const HEADER_FIELD_BYTES_MAX = 8 * 1024 // one addheader value (RFC 5322 2.1.1 line limits apply per line)
export const STRING_BYTES_MAX = 256 * 1024 // one string after variable expansion (before truncation to a variable)

export const SIEVE_LIMITS_DEFAULT: SieveLimits = Object.freeze({
  scriptBytesMax: SCRIPT_BYTES_MAX,
  nestingDepthMax: NESTING_DEPTH_MAX,
  actionsMax: ACTIONS_MAX,
  redirectsMax: REDIRECTS_MAX,
  includeDepthMax: INCLUDE_DEPTH_MAX,
  includeScriptsMax: INCLUDE_SCRIPTS_MAX,
  variableBytesMax: VARIABLE_BYTES_MAX,
  variablesMax: VARIABLES_MAX,
  regexInputBytesMax: REGEX_INPUT_BYTES_MAX,
  regexPatternBytesMax: REGEX_PATTERN_BYTES_MAX,
  stepsMax: STEPS_MAX,
  stringListMax: STRING_LIST_MAX,
  bodyBytesMax: BODY_BYTES_MAX,
  headersAddedMax: HEADERS_ADDED_MAX
})

/** The defaults with the given bounds over them; a bound that is not a non-negative number is ignored (so a
 * `Partial` with an `undefined` field cannot lift a limit). */
export function mergeLimits (base: SieveLimits, over: Partial<SieveLimits> | undefined): SieveLimits {
  const out: SieveLimits = { ...base }
  if (over === undefined) return out
  for (const k of Object.keys(base) as Array<keyof SieveLimits>) {
    const v = over[k]
    if (typeof v === 'number' && Number.isFinite(v) && v >= 0) out[k] = v
  }
  return out
}

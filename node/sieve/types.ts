/**
 * The face of the Sieve module (RFC 5228 and the extensions listed in node/sieve/README.md):
 * what the delivery integration codes against. The module does no I/O of its own; storage
 * (includes, duplicate/vacation memory, mailbox existence) comes in through SieveEnvironment.
 *
 * Stable once committed: fields are only added, never renamed.
 */

/** A compile or run-time error. Positions are of the script source: line and column are 1-based,
 * column counts bytes of UTF-8 on that line (1 = first byte), offset is the 0-based byte offset
 * in the UTF-8 encoding of the whole source. Runtime errors carry the position of the command or
 * test that failed. For an error inside an included script, `script` names it (absent: the main script). */
export interface SieveError { line: number, column: number, offset: number, message: string, script?: string }

/** The bounds a script runs under; every one has a default in limits.ts (SIEVE_LIMITS_DEFAULT). */
export interface SieveLimits {
  /** Source size, in bytes of UTF-8, refused at compile time. */
  scriptBytesMax: number
  /** Nesting of blocks, test lists and not(). */
  nestingDepthMax: number
  /** Actions (keep, fileinto, redirect, reject, vacation, addflag..., addheader...) executed per run. */
  actionsMax: number
  /** redirect actions per message (RFC 5228 4.2 allows a limit). */
  redirectsMax: number
  /** include nesting (RFC 6609 3.2). */
  includeDepthMax: number
  /** Distinct scripts pulled in by include, over the whole tree. */
  includeScriptsMax: number
  /** Bytes of one variable's value (RFC 5229 3: may be truncated; we truncate). */
  variableBytesMax: number
  /** Distinct variables (local + global). */
  variablesMax: number
  /** Bytes of input a :regex is matched against (longer input is cut to this). */
  regexInputBytesMax: number
  /** Bytes of one :regex pattern. */
  regexPatternBytesMax: number
  /** Interpreter steps (commands, tests, string comparisons, regex matches) per run. */
  stepsMax: number
  /** Strings in one string list / keys of one test. */
  stringListMax: number
  /** Bytes of a message body searched by the body test. */
  bodyBytesMax: number
  /** Headers added by editheader per run. */
  headersAddedMax: number
}

/** An opaque compiled script: pass it to runSieve. Reusable, immutable. */
export interface CompiledScript {
  readonly kind: 'sieve'
  /** The capabilities the script (and all its includes) declared with `require`. */
  readonly requires: readonly string[]
  /** Internal representation; do not depend on it. */
  readonly ast: unknown
}

export type CompileResult = { ok: true, script: CompiledScript, requires: string[] } | { ok: false, errors: SieveError[] }

export interface CompileOptions {
  /** Includes are resolved at compile time when given (a missing non-:optional script is then a compile
   * error); otherwise they are resolved at run time through SieveEnvironment.resolveInclude. */
  resolveInclude?: (name: string, location: 'personal' | 'global') => string | null
  limits?: Partial<SieveLimits>
}

export interface SieveMessage {
  raw: Buffer /* the whole message as received */
  envelope: { from: string /* '' for the null sender */, to: string /* the recipient being delivered */, auth?: string }
  size: number
}

export interface SieveEnvironment {
  now: Date
  user: string                        // the address the script belongs to (for vacation :addresses defaults and subaddress)
  domain: string; host: string        // environment items
  mailboxExists (name: string): Promise<boolean> | boolean
  /** duplicate and vacation memory: true when `key` was recorded within `seconds`; `track` records it (only if the script's actions are executed). */
  seen (kind: 'duplicate' | 'vacation', key: string, seconds: number): Promise<boolean>
  resolveInclude?: (name: string, location: 'personal' | 'global') => Promise<string | null> | string | null
  /** Refinement (added): the local time zone as "+hhmm" for date/currentdate without :zone (RFC 5260 4.1); "+0000" when absent. */
  zone?: string
  /** Optional per-run overrides of the compile-time limits (e.g. a stricter stepsMax). */
  limits?: Partial<SieveLimits>
}

export interface SieveOutcome {
  keep: Array<{ mailbox: string /* 'INBOX' for keep */, flags: string[], create: boolean }> // implicit keep included when it applies; empty when discarded/rejected/redirected without copy
  redirects: Array<{ address: string, copy: boolean }>
  reject: { reason: string, ereject: boolean } | null
  /** Refinements (added fields): `key` is the memory key of this reply (also listed in `memory`); runSieve has already
   * asked env.seen('vacation', key, seconds) and gives null when this sender was answered within the period.
   * `inReplyTo`/`references` are for the reply's headers (RFC 5230 5.8); `subject` is final (default "Auto: " + original). */
  vacation: { to: string, from: string | null, subject: string, body: string, mime: boolean, handle: string, seconds: number, key: string, inReplyTo: string | null, references: string | null } | null  // already filtered by the RFC 5230/3834 rules you can decide from the message (lists, bulk, auto-submitted, null sender, :addresses); the integration checks `seen` via the key you give
  /** Each entry: record `key` as seen now, expiring after `seconds` (a duplicate with :last that was already
   * seen is listed again to refresh it, RFC 7352 3.3; one without :last is not). */
  memory: Array<{ kind: 'duplicate' | 'vacation', key: string, seconds: number }> // what to record if the outcome is carried out
  editedMessage: Buffer | null        // the message after editheader, or null when unchanged
  errors: SieveError[]                // runtime errors (the outcome then is the implicit keep, RFC 5228 2.10.6)
}

// A user's Sieve scripts as user attributes (MailStore.setAttrs): 'sieve/script/NAME' holds a script's source and
// 'sieve/active' the name of the active one. So scripts live, replicate, fail over and merge with the user's mail
// (every change is an entry of the user's log). ManageSieve, the admin API and delivery all go through here; the
// rules (names, sizes, counts, the active script cannot be deleted) are checked once, in this file.

import { MailError } from '../../store/index.ts'
import type { MailStore, OpOptions } from '../../store/index.ts'
import { compileSieve } from '../sieve/index.ts'
import type { SieveError } from '../sieve/index.ts'

export const SCRIPT_PREFIX = 'sieve/script/'
export const ACTIVE_KEY = 'sieve/active'

// Per-user bounds. Pigeonhole's defaults are 1 MiB per script and no count limit; ours are lower because a script
// travels in a log entry to every replica, and a user's attributes are 1 MiB together (store/mail.ts).
export const SCRIPT_BYTES_MAX = 128 * 1024 // one script: a hand-written one is a few KiB, generated ones (Roundcube) tens
export const SCRIPTS_PER_USER_MAX = 32
export const SCRIPTS_BYTES_PER_USER_MAX = 512 * 1024 // all of a user's scripts together
export const SCRIPT_NAME_CHARS_MAX = 128 // RFC 5804 1.6 lets a server refuse long names; Dovecot allows 256 bytes

export type ScriptErrorKind = 'nonExistent' | 'alreadyExists' | 'active' | 'maxScripts' | 'maxSize' | 'badName' | 'invalid'

/** A refusal a client can act on; ManageSieve maps `kind` to its response codes (RFC 5804 1.3). */
export class ScriptError extends Error {
  readonly kind: ScriptErrorKind
  constructor (kind: ScriptErrorKind, message: string) {
    super(message)
    this.kind = kind
    this.name = 'ScriptError'
  }
}

/**
 * RFC 5804 1.6: a script name is a non-empty UTF-8 string without control characters (CR, LF, NUL, 0x00-0x1f,
 * 0x7f-0x9f, U+2028, U+2029). '/' is refused too: names are the tail of an attribute key.
 */
export function checkScriptName (name: string): string {
  // eslint-disable-next-line no-control-regex
  if (name === '' || [...name].length > SCRIPT_NAME_CHARS_MAX || /[\x00-\x1f\x7f-\x9f\u2028\u2029/]/.test(name) || !name.isWellFormed()) {
    throw new ScriptError('badName', 'Invalid script name')
  }
  return name.normalize('NFC')
}

/** "line N: message" for the first compile error (what PUTSCRIPT and CHECKSCRIPT answer). */
export function describeErrors (errors: SieveError[]): string {
  const first = errors[0]
  if (first === undefined) return 'Invalid script'
  const where = first.script !== undefined ? `${first.script}: ` : ''
  return `${where}line ${first.line}: ${first.message}`
}

export interface ScriptInfo { name: string, active: boolean }

// The active script of each user, kept in memory for delivery (node/rules reads it for every message: a LevelDB
// get or two, 3-5 % of the MX's busy time under load). Bounded by users and by bytes of source, least recently
// used out first; a user without an active script is kept too (most users: one entry, no source).
export const ACTIVE_CACHE_USERS_MAX = 10_000
export const ACTIVE_CACHE_BYTES_MAX = 16 * 1024 * 1024

/** What the cache needs of the store: the change feed of users' attributes (store/types.ts Store.onAttrChange). */
export interface AttrChanges {
  onAttrChange (listener: (user: string, keys: string[] | null) => void): () => void
}

type Active = { name: string, source: string } | null

/**
 * Users' active scripts in memory, dropped whenever the store says a user's script attributes changed: this node's
 * writes, entries applied from another node (log shipping, catch-up, a merge), the user's copy dropped or the user
 * deleted. A read that a change overtook is not kept (the generation counter), so a stale script is never kept.
 */
export class ActiveScriptCache {
  private readonly entries = new Map<string, { value: Active, bytes: number }>() // Map order: least recently used first
  private readonly usersMax: number
  private readonly bytesMax: number
  private bytes = 0
  private generation = 0
  private readonly unsubscribe: () => void
  hits = 0
  misses = 0

  constructor (changes: AttrChanges, init: { usersMax?: number, bytesMax?: number } = {}) {
    this.usersMax = init.usersMax ?? ACTIVE_CACHE_USERS_MAX
    this.bytesMax = init.bytesMax ?? ACTIVE_CACHE_BYTES_MAX
    this.unsubscribe = changes.onAttrChange((user, keys) => {
      if (keys !== null && !keys.some(k => k === ACTIVE_KEY || k.startsWith(SCRIPT_PREFIX))) return // e.g. vacation memory
      this.generation++
      this.drop(user)
    })
  }

  async get (user: string, read: () => Promise<Active>): Promise<Active> {
    const hit = this.entries.get(user)
    if (hit !== undefined) {
      this.entries.delete(user)
      this.entries.set(user, hit)
      this.hits++
      return hit.value
    }
    this.misses++
    const generation = this.generation
    const value = await read()
    if (generation === this.generation) this.keep(user, value)
    return value
  }

  get size (): number { return this.entries.size }

  stop (): void {
    this.unsubscribe()
    this.entries.clear()
    this.bytes = 0
  }

  private keep (user: string, value: Active): void {
    const bytes = user.length + (value === null ? 0 : value.name.length + value.source.length) + 64
    this.drop(user)
    this.entries.set(user, { value, bytes })
    this.bytes += bytes
    for (const k of this.entries.keys()) {
      if (this.entries.size <= this.usersMax && this.bytes <= this.bytesMax) break
      this.drop(k)
    }
  }

  private drop (user: string): void {
    const e = this.entries.get(user)
    if (e === undefined) return
    this.entries.delete(user)
    this.bytes -= e.bytes
  }
}

export class SieveScripts {
  private readonly store: Pick<MailStore, 'getAttr' | 'listAttrs' | 'setAttrs'>
  private readonly cache: ActiveScriptCache | null

  /** With `cache`, active() answers from memory (delivery); without, every call reads the store. */
  constructor (store: Pick<MailStore, 'getAttr' | 'listAttrs' | 'setAttrs'>, cache?: ActiveScriptCache) {
    this.store = store
    this.cache = cache ?? null
  }

  async list (user: string): Promise<ScriptInfo[]> {
    const active = await this.store.getAttr(user, ACTIVE_KEY)
    return (await this.store.listAttrs(user, SCRIPT_PREFIX)).map(a => {
      const name = a.key.slice(SCRIPT_PREFIX.length)
      return { name, active: name === active }
    })
  }

  async get (user: string, name: string): Promise<string> {
    const src = await this.store.getAttr(user, SCRIPT_PREFIX + checkScriptName(name))
    if (src === null) throw new ScriptError('nonExistent', 'There is no script by that name')
    return src
  }

  async active (user: string): Promise<{ name: string, source: string } | null> {
    if (this.cache !== null) return await this.cache.get(user, async () => await this.readActive(user))
    return await this.readActive(user)
  }

  private async readActive (user: string): Promise<{ name: string, source: string } | null> {
    const name = await this.store.getAttr(user, ACTIVE_KEY)
    if (name === null) return null
    const source = await this.store.getAttr(user, SCRIPT_PREFIX + name)
    return source === null ? null : { name, source }
  }

  /** Compiles a script; the errors name line and column (RFC 5804 2.6: PUTSCRIPT and CHECKSCRIPT refuse with them). */
  check (source: string): void {
    if (Buffer.byteLength(source) > SCRIPT_BYTES_MAX) throw new ScriptError('maxSize', `Script larger than ${SCRIPT_BYTES_MAX} bytes`)
    const r = compileSieve(source, { limits: { scriptBytesMax: SCRIPT_BYTES_MAX } })
    if (!r.ok) throw new ScriptError('invalid', describeErrors(r.errors))
  }

  /** RFC 5804 2.3 HAVESPACE: whether a script of `bytes` under `name` would fit the user's bounds. */
  async haveSpace (user: string, name: string, bytes: number): Promise<void> {
    const n = checkScriptName(name)
    if (bytes > SCRIPT_BYTES_MAX) throw new ScriptError('maxSize', `Script larger than ${SCRIPT_BYTES_MAX} bytes`)
    const all = await this.store.listAttrs(user, SCRIPT_PREFIX)
    const others = all.filter(a => a.key !== SCRIPT_PREFIX + n)
    if (others.length >= SCRIPTS_PER_USER_MAX) throw new ScriptError('maxScripts', `At most ${SCRIPTS_PER_USER_MAX} scripts`)
    const used = others.reduce((sum, a) => sum + Buffer.byteLength(a.value), 0)
    if (used + bytes > SCRIPTS_BYTES_PER_USER_MAX) throw new ScriptError('maxSize', `Scripts of this account may take ${SCRIPTS_BYTES_PER_USER_MAX} bytes together`)
  }

  /** Stores a script after compiling it (an invalid script is never stored, RFC 5804 2.6). */
  async put (user: string, name: string, source: string, opts?: OpOptions & { activate?: boolean }): Promise<void> {
    const n = checkScriptName(name)
    await this.haveSpace(user, n, Buffer.byteLength(source))
    this.check(source)
    const changes: Array<{ key: string, value: string | null }> = [{ key: SCRIPT_PREFIX + n, value: source }]
    if (opts?.activate === true) changes.push({ key: ACTIVE_KEY, value: n })
    await this.write(user, changes, opts)
  }

  /** RFC 5804 2.8: an empty name deactivates; a script that does not exist is refused. */
  async setActive (user: string, name: string, opts?: OpOptions): Promise<void> {
    if (name === '') {
      await this.write(user, [{ key: ACTIVE_KEY, value: null }], opts)
      return
    }
    const n = checkScriptName(name)
    if (await this.store.getAttr(user, SCRIPT_PREFIX + n) === null) throw new ScriptError('nonExistent', 'There is no script by that name')
    await this.write(user, [{ key: ACTIVE_KEY, value: n }], opts)
  }

  /** RFC 5804 2.10: the active script cannot be deleted. */
  async delete (user: string, name: string, opts?: OpOptions): Promise<void> {
    const n = checkScriptName(name)
    if (await this.store.getAttr(user, SCRIPT_PREFIX + n) === null) throw new ScriptError('nonExistent', 'There is no script by that name')
    if (await this.store.getAttr(user, ACTIVE_KEY) === n) throw new ScriptError('active', 'You may not delete an active script')
    await this.write(user, [{ key: SCRIPT_PREFIX + n, value: null }], opts)
  }

  /** RFC 5804 2.11.1: renaming the active script keeps it active; one atomic change. */
  async rename (user: string, from: string, to: string, opts?: OpOptions): Promise<void> {
    const a = checkScriptName(from)
    const b = checkScriptName(to)
    const src = await this.store.getAttr(user, SCRIPT_PREFIX + a)
    if (src === null) throw new ScriptError('nonExistent', 'There is no script by that name')
    if (a === b) return
    if (await this.store.getAttr(user, SCRIPT_PREFIX + b) !== null) throw new ScriptError('alreadyExists', 'A script with that name already exists')
    const changes: Array<{ key: string, value: string | null }> = [{ key: SCRIPT_PREFIX + b, value: src }, { key: SCRIPT_PREFIX + a, value: null }]
    if (await this.store.getAttr(user, ACTIVE_KEY) === a) changes.push({ key: ACTIVE_KEY, value: b })
    await this.write(user, changes, opts)
  }

  private async write (user: string, changes: Array<{ key: string, value: string | null }>, opts?: OpOptions): Promise<void> {
    try {
      await this.store.setAttrs(user, changes, opts)
    } catch (err) {
      // the store's own bounds (all attributes of the user together) reached before ours
      if (err instanceof MailError && (err.kind === 'limit' || err.kind === 'tooBig')) throw new ScriptError('maxSize', err.message)
      throw err
    }
  }
}

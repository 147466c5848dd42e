// The directory (domains, users, aliases) and the Store that joins it to the mail store. Directory records
// carry a version (hybrid logical clock: milliseconds * 1000 + a counter) and deletes leave tombstones, so
// the grid can replicate them last-writer-wins and repair by digest exchange.

import { isQueueShard } from './shards.ts'
import { createHash } from 'node:crypto'
import { mkdir } from 'node:fs/promises'
import { domainOf, normalizeAddress, normalizeAliasAddress, normalizeDomain } from './address.ts'
import type { BatchOp } from './commit.ts'
import { MailError } from './errors.ts'
import { keys } from './keys.ts'
import { MailStoreBase } from './mail.ts'
import type { StoreComponents, StoreInit } from './mail.ts'
import { dummyHash, hashPassword, SCRYPT_LOG_N, verifyPassword } from './password.ts'
import type { AccountStatus, Alias, DirectoryRecord, DkimKey, Domain, NewUser, OpOptions, Store, User } from './types.ts'

const isDirectoryKey = (key: string): boolean => key.startsWith('dd\x00') || key.startsWith('du\x00') || key.startsWith('da\x00') || key.startsWith('dx\x00')

export const ALIAS_DEPTH_MAX = 8 // alias chains longer than this are a loop or a mistake
export const ALIAS_TARGETS_MAX = 1000 // expansion fan-out bound
export const PASSWORD_BYTES_MAX = 1024
const DIRECTORY_LOCK = '\x00directory' // directory writes are rare: one lock orders them all
export const DKIM_KEYS_MAX = 8 // active, pending and a few old ones still published: rotation never needs more
export const DISPLAY_NAME_CHARS_MAX = 200
export const ENTRY_NAME_CHARS_MAX = 200
export const ENTRY_BYTES_MAX = 16 * 1024 // an admin account with a few hundred domains fits
const ENTRY_NAME = /^[\x21-\x7e]+$/ // printable ASCII: no NUL (the key separator), no spaces
const SELECTOR = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i // one DNS label (RFC 6376 3.1: a selector may have several; ours have one)

interface Versioned {
  ver: number
  deleted?: boolean
}
type DomainRec = Domain & Versioned & { dkim?: DkimKey[] }
type UserRec = User & Versioned & { hash: string }
type AliasRec = Alias & Versioned
type EntryRec = Versioned & { value?: Record<string, unknown> }

export class LevelStore extends MailStoreBase implements Store {
  private readonly scryptLogN: number
  private lastVer = 0
  // The whole directory in memory (it is small, and every node holds all of it anyway), loaded at start and
  // updated after every durable directory write and merge, so that SMTP's per-recipient lookups (domain, user,
  // alias, quota) cost no LevelDB read. Null while stopped: reads then go to LevelDB.
  private dir: Map<string, DirectoryRecord['value']> | null = null
  private readonly dirListeners = new Set<(records: DirectoryRecord[]) => void>()
  private started = false

  constructor (components: StoreComponents, init: StoreInit) {
    super(components, init)
    this.scryptLogN = init.scryptLogN ?? SCRYPT_LOG_N
  }

  async start (): Promise<void> {
    if (this.started) return
    await mkdir(this.path, { recursive: true })
    await this.db.open()
    await this.blobs.start()
    const dir = new Map<string, DirectoryRecord['value']>()
    for (const r of [keys.domainRange(), keys.userRange(), keys.aliasRange(), keys.entryRange()]) {
      for await (const [key, value] of this.db.iterator(r) as AsyncIterable<[string, DirectoryRecord['value']]>) dir.set(key, value)
    }
    this.dir = dir
    this.blobFilter.start()
    this.started = true
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    await this.lock.with([DIRECTORY_LOCK], async () => {})
    this.dir = null
    await this.blobFilter.stop()
    await this.blobs.stop()
    await this.db.close()
  }

  private version (): number {
    this.lastVer = Math.max(this.now() * 1000, this.lastVer + 1)
    return this.lastVer
  }

  /** A directory record (a copy: callers may change it), tombstones included. */
  protected override async directoryRecord (key: string): Promise<any> {
    if (this.dir === null) return await this.db.get(key)
    const rec = this.dir.get(key)
    return rec === undefined ? undefined : { ...rec }
  }

  private async live<T extends Versioned> (key: string): Promise<T | null> {
    const rec: T | undefined = await this.directoryRecord(key)
    return rec === undefined || rec.deleted === true ? null : rec
  }

  /** Brings the in-memory directory up to date with ops that are now durable. */
  private cacheDirectory (ops: BatchOp[]): void {
    if (this.dir === null) return
    for (const o of ops) {
      if (!isDirectoryKey(o.key)) continue
      if (o.type === 'put') this.dir.set(o.key, { ...(o as { value: DirectoryRecord['value'] }).value })
      else this.dir.delete(o.key)
    }
  }

  private async dirWrite<T> (fn: (ops: BatchOp[]) => Promise<T>, opts?: OpOptions): Promise<T> {
    return await this.lock.with([DIRECTORY_LOCK], async () => {
      opts?.signal?.throwIfAborted()
      const ops: BatchOp[] = []
      const out = await fn(ops)
      if (ops.length > 0) await this.committer.submit(ops)
      this.cacheDirectory(ops)
      this.announce(ops.filter(o => o.type === 'put' && isDirectoryKey(o.key)).map(o => ({ key: o.key, value: (o as { value: DirectoryRecord['value'] }).value })))
      return out
    })
  }

  private announce (records: DirectoryRecord[]): void {
    if (records.length === 0) return
    for (const l of this.dirListeners) {
      try { l(records) } catch { /* the listener's problem; the change is durable */ }
    }
  }

  // ---- replication of the directory (last writer wins per record, tombstones for deletes) --------------

  onDirectoryChange (listener: (records: DirectoryRecord[]) => void): () => void {
    this.dirListeners.add(listener)
    return () => { this.dirListeners.delete(listener) }
  }

  async exportDirectory (): Promise<DirectoryRecord[]> {
    const out: DirectoryRecord[] = []
    for (const r of [keys.domainRange(), keys.userRange(), keys.aliasRange(), keys.entryRange()]) {
      for await (const [key, value] of this.db.iterator(r) as AsyncIterable<[string, DirectoryRecord['value']]>) out.push({ key, value })
    }
    return out
  }

  /** SHA-256 over every (key, version): equal on two nodes exactly when their directories agree. */
  async directoryDigest (): Promise<string> {
    const h = createHash('sha256')
    for (const r of await this.exportDirectory()) h.update(`${r.key}\x00${r.value.ver}\x00`)
    return h.digest('hex')
  }

  /**
   * Merges records from another node: a record replaces ours when its version is higher (ties broken by
   * content, so every node picks the same). A new user gets its mail state (deterministic, see initUser); a
   * user tombstone drops the user's mail. Returns the records that changed something here.
   */
  async mergeDirectory (records: DirectoryRecord[]): Promise<DirectoryRecord[]> {
    return await this.lock.with([DIRECTORY_LOCK], async () => {
      const applied: DirectoryRecord[] = []
      for (const r of records) {
        if (!isDirectoryKey(r.key) || typeof r.value?.ver !== 'number') continue
        this.lastVer = Math.max(this.lastVer, r.value.ver) // hybrid logical clock: never issue a version below one seen
        const mine: DirectoryRecord['value'] | undefined = await this.directoryRecord(r.key)
        if (mine !== undefined && (mine.ver > r.value.ver || (mine.ver === r.value.ver && JSON.stringify(mine) >= JSON.stringify(r.value)))) continue
        const put: BatchOp = { type: 'put', key: r.key, value: r.value }
        if (r.key.startsWith(keys.user(''))) {
          const address = r.key.slice(keys.user('').length)
          if (r.value.deleted === true) {
            await this.lock.with([address], async () => {
              await this.committer.submit([...await this.userDeletionOps(address), put])
              this.forget(address)
            })
          } else if (mine === undefined || mine.deleted === true) {
            this.forget(address)
            await this.initUser(address, Number(r.value.created), [put])
          } else {
            await this.committer.submit([put])
          }
        } else {
          await this.committer.submit([put])
        }
        this.cacheDirectory([put])
        applied.push(r)
      }
      this.announce(applied)
      return applied
    })
  }

  // ---- domains -----------------------------------------------------------------------------------------

  async addDomain (name: string, opts?: OpOptions & { dkim?: DkimKey }): Promise<Domain> {
    const d = normalizeDomain(name)
    if (d === null) throw new MailError('invalid', `Invalid domain name: ${name}`)
    const dkim = opts?.dkim === undefined ? undefined : checkDkimKeys([opts.dkim])
    return await this.dirWrite(async ops => {
      if (await this.live(keys.domain(d)) !== null) throw new MailError('exists', `Domain ${d} already exists`)
      const rec: DomainRec = { name: d, created: this.now(), ver: this.version(), ...(dkim === undefined ? {} : { dkim }) }
      ops.push({ type: 'put', key: keys.domain(d), value: rec })
      return { name: rec.name, created: rec.created }
    }, opts)
  }

  private static publicDomain (r: DomainRec): Domain {
    return {
      name: r.name,
      created: r.created,
      ...((r.quotaBytes ?? 0) > 0 ? { quotaBytes: r.quotaBytes } : {}),
      ...((r.quotaUsers ?? 0) > 0 ? { quotaUsers: r.quotaUsers } : {})
    }
  }

  async listDomains (): Promise<Domain[]> {
    const out: Domain[] = []
    for await (const r of this.db.values(keys.domainRange()) as AsyncIterable<DomainRec>) {
      if (r.deleted !== true) out.push(LevelStore.publicDomain(r))
    }
    return out
  }

  async setDomainQuota (name: string, quota: { bytes?: number, users?: number }, opts?: OpOptions): Promise<Domain> {
    const d = normalizeDomain(name)
    if (d === null) throw new MailError('invalid', `Invalid domain name: ${name}`)
    for (const v of [quota.bytes, quota.users]) {
      if (v !== undefined && !(Number.isSafeInteger(v) && v >= 0)) throw new MailError('invalid', 'Quota must be a whole number')
    }
    return await this.dirWrite(async ops => {
      const r = await this.live<DomainRec>(keys.domain(d))
      if (r === null) throw new MailError('notFound', `No such domain: ${d}`)
      const next: DomainRec = { ...r, ver: this.version() }
      if (quota.bytes !== undefined) next.quotaBytes = quota.bytes
      if (quota.users !== undefined) next.quotaUsers = quota.users
      ops.push({ type: 'put', key: keys.domain(d), value: next })
      return LevelStore.publicDomain(next)
    }, opts)
  }

  async getDomain (name: string): Promise<Domain | null> {
    const d = normalizeDomain(name)
    if (d === null) return null
    const r = await this.live<DomainRec>(keys.domain(d))
    return r === null ? null : LevelStore.publicDomain(r)
  }

  async isLocalDomain (domain: string): Promise<boolean> {
    return await this.getDomain(domain) !== null
  }

  async deleteDomain (name: string, opts?: OpOptions): Promise<void> {
    const d = normalizeDomain(name)
    if (d === null) throw new MailError('invalid', `Invalid domain name: ${name}`)
    await this.dirWrite(async ops => {
      if (await this.live(keys.domain(d)) === null) throw new MailError('notFound', `No such domain: ${d}`)
      if ((await this.listUsers(d)).length > 0) throw new MailError('denied', `Domain ${d} still has users`)
      if ((await this.listAliases(d)).length > 0) throw new MailError('denied', `Domain ${d} still has aliases`)
      ops.push({ type: 'put', key: keys.domain(d), value: { name: d, created: 0, ver: this.version(), deleted: true } })
    }, opts)
  }

  async dkimKeys (domain: string): Promise<DkimKey[]> {
    const d = normalizeDomain(domain)
    const r = d === null ? null : await this.live<DomainRec>(keys.domain(d))
    return (r?.dkim ?? []).map(k => ({ ...k }))
  }

  async updateDkimKeys (domain: string, change: (keys: DkimKey[]) => DkimKey[], opts?: OpOptions): Promise<DkimKey[]> {
    const d = normalizeDomain(domain)
    if (d === null) throw new MailError('invalid', `Invalid domain name: ${domain}`)
    return await this.dirWrite(async ops => {
      const r = await this.live<DomainRec>(keys.domain(d))
      if (r === null) throw new MailError('notFound', `No such domain: ${d}`)
      const next = checkDkimKeys(change((r.dkim ?? []).map(k => ({ ...k }))))
      ops.push({ type: 'put', key: keys.domain(d), value: { ...r, dkim: next, ver: this.version() } })
      return next.map(k => ({ ...k }))
    }, opts)
  }

  // ---- users -------------------------------------------------------------------------------------------

  private checkPassword (password: string): void {
    if (password.length === 0) throw new MailError('invalid', 'Empty password')
    if (Buffer.byteLength(password) > PASSWORD_BYTES_MAX) throw new MailError('invalid', 'Password too long')
  }

  private async mustAddress (address: string): Promise<string> {
    const a = normalizeAddress(address)
    if (a === null) throw new MailError('invalid', `Invalid address: ${address}`)
    if (await this.getDomain(domainOf(a)) === null) throw new MailError('notFound', `Unknown domain: ${domainOf(a)}`)
    return a
  }

  private static publicUser (r: UserRec): User {
    return { address: r.address, quotaBytes: r.quotaBytes, quotaMessages: r.quotaMessages, status: r.status, created: r.created, ...(r.displayName === undefined ? {} : { displayName: r.displayName }) }
  }

  async addUser (user: NewUser, opts?: OpOptions): Promise<User> {
    const a = await this.mustAddress(user.address)
    this.checkPassword(user.password)
    const quotaBytes = user.quotaBytes ?? 0
    const quotaMessages = user.quotaMessages ?? 0
    if (!(Number.isSafeInteger(quotaBytes) && quotaBytes >= 0 && Number.isSafeInteger(quotaMessages) && quotaMessages >= 0)) {
      throw new MailError('invalid', 'Quota must be a whole number of bytes and messages')
    }
    const displayName = checkDisplayName(user.displayName ?? '')
    const hash = await hashPassword(user.password, this.scryptLogN)
    return await this.dirWrite(async ops => {
      if (await this.live(keys.user(a)) !== null) throw new MailError('exists', `User ${a} already exists`)
      if (await this.live(keys.alias(a)) !== null) throw new MailError('exists', `${a} is an alias`)
      // the domain's quota of users (issue 11), counted under the directory lock
      const limit = (await this.live<DomainRec>(keys.domain(domainOf(a))))?.quotaUsers ?? 0
      if (limit > 0 && (await this.listUsers(domainOf(a))).length >= limit) {
        throw new MailError('noQuota', `Domain ${domainOf(a)} has reached its quota of ${limit} users`)
      }
      const rec: UserRec = { address: a, hash, quotaBytes, quotaMessages, status: 'active', created: this.now(), ver: this.version(), ...(displayName === '' ? {} : { displayName }) }
      // the mail state of a previous user of the same address was removed with it; start afresh, and
      // commit the directory record in the same batch as the first mail state
      this.forget(a)
      const put: BatchOp = { type: 'put', key: keys.user(a), value: rec }
      await this.initUser(a, rec.created, [put])
      this.cacheDirectory([put])
      this.announce([{ key: keys.user(a), value: { ...rec } }])
      void ops
      return LevelStore.publicUser(rec)
    }, opts)
  }

  async ensureUserMail (user: string): Promise<void> {
    // a queue shard: one INBOX, the same first entries on every node (created at time 0, so UIDVALIDITY 1)
    if (isQueueShard(user)) {
      if (await this.logPosition(user) === 0) await this.initUser(user, 0, [], [['INBOX', null]])
      return
    }
    const a = normalizeAddress(user)
    if (a === null || await this.logPosition(a) > 0) return
    const r = await this.live<UserRec>(keys.user(a))
    if (r === null) throw new MailError('notFound', 'No such user')
    await this.initUser(a, r.created)
  }

  async getUser (address: string): Promise<User | null> {
    const a = normalizeAddress(address)
    if (a === null) return null
    const r = await this.live<UserRec>(keys.user(a))
    return r === null ? null : LevelStore.publicUser(r)
  }

  async messageByGid (user: string, gid: string): Promise<{ mailbox: string, uid: number } | null> {
    const at: unknown = await this.db.get(keys.gid(user, gid))
    if (typeof at !== 'string') return null
    const [mailbox, uid] = at.split('\x00')
    return { mailbox, uid: Number(uid) }
  }

  userCreatedAt (address: string): number | undefined {
    const a = normalizeAddress(address)
    const rec = a === null ? undefined : this.dir?.get(keys.user(a)) as UserRec | undefined
    return rec === undefined || rec.deleted === true ? undefined : rec.created
  }

  async listUsers (domain?: string): Promise<User[]> {
    const d = domain === undefined ? undefined : normalizeDomain(domain)
    const out: User[] = []
    for await (const r of this.db.values(keys.userRange()) as AsyncIterable<UserRec>) {
      if (r.deleted !== true && (d === undefined || domainOf(r.address) === d)) out.push(LevelStore.publicUser(r))
    }
    return out
  }

  private async updateUser (address: string, change: (r: UserRec) => void, opts?: OpOptions): Promise<void> {
    const a = normalizeAddress(address)
    if (a === null) throw new MailError('invalid', `Invalid address: ${address}`)
    await this.dirWrite(async ops => {
      const r = await this.live<UserRec>(keys.user(a))
      if (r === null) throw new MailError('notFound', `No such user: ${a}`)
      change(r)
      r.ver = this.version()
      ops.push({ type: 'put', key: keys.user(a), value: r })
    }, opts)
  }

  async setPassword (address: string, password: string, opts?: OpOptions): Promise<void> {
    this.checkPassword(password)
    const hash = await hashPassword(password, this.scryptLogN)
    await this.updateUser(address, r => { r.hash = hash }, opts)
  }

  async setQuota (address: string, quota: { bytes?: number, messages?: number }, opts?: OpOptions): Promise<void> {
    for (const v of [quota.bytes, quota.messages]) {
      if (v !== undefined && !(Number.isSafeInteger(v) && v >= 0)) throw new MailError('invalid', 'Quota must be a whole number')
    }
    await this.updateUser(address, r => {
      if (quota.bytes !== undefined) r.quotaBytes = quota.bytes
      if (quota.messages !== undefined) r.quotaMessages = quota.messages
    }, opts)
  }

  async setStatus (address: string, status: AccountStatus, opts?: OpOptions): Promise<void> {
    await this.updateUser(address, r => { r.status = status }, opts)
  }

  async setDisplayName (address: string, name: string, opts?: OpOptions): Promise<void> {
    const n = checkDisplayName(name)
    await this.updateUser(address, r => { if (n === '') delete r.displayName; else r.displayName = n }, opts)
  }

  // ---- entries of other kinds (appliance/console: admin accounts, the sessions' secret) ----------------

  async getEntry (name: string): Promise<Record<string, unknown> | null> {
    if (!validEntryName(name)) return null
    const r = await this.live<EntryRec>(keys.entry(name))
    return r?.value === undefined ? null : structuredClone(r.value)
  }

  async listEntries (prefix: string): Promise<Array<{ name: string, value: Record<string, unknown> }>> {
    const out: Array<{ name: string, value: Record<string, unknown> }> = []
    const start = keys.entry('')
    for await (const [key, r] of this.db.iterator(keys.entryRange(prefix)) as AsyncIterable<[string, EntryRec]>) {
      if (r.deleted !== true && r.value !== undefined) out.push({ name: key.slice(start.length), value: r.value })
    }
    return out
  }

  async updateEntry (name: string, change: (current: Record<string, unknown> | null) => Record<string, unknown> | null, opts?: OpOptions): Promise<Record<string, unknown> | null> {
    if (!validEntryName(name)) throw new MailError('invalid', `Invalid entry name: ${name}`)
    return await this.dirWrite(async ops => {
      const r = await this.live<EntryRec>(keys.entry(name))
      const current = r?.value === undefined ? null : structuredClone(r.value)
      const next = change(current)
      if (next === null) {
        if (current !== null) ops.push({ type: 'put', key: keys.entry(name), value: { ver: this.version(), deleted: true } })
        return null
      }
      if (typeof next !== 'object' || Array.isArray(next) || Buffer.byteLength(JSON.stringify(next)) > ENTRY_BYTES_MAX) {
        throw new MailError('invalid', `Entry ${name}: a JSON object of at most ${ENTRY_BYTES_MAX} bytes`)
      }
      const value = JSON.parse(JSON.stringify(next)) as Record<string, unknown>
      ops.push({ type: 'put', key: keys.entry(name), value: { value, ver: this.version() } })
      return structuredClone(value)
    }, opts)
  }

  async deleteUser (address: string, opts?: OpOptions): Promise<void> {
    const a = normalizeAddress(address)
    if (a === null) throw new MailError('invalid', `Invalid address: ${address}`)
    await this.dirWrite(async ops => {
      await this.lock.with([a], async () => {
        if (await this.live(keys.user(a)) === null) throw new MailError('notFound', `No such user: ${a}`)
        ops.push(...await this.userDeletionOps(a))
        ops.push({ type: 'put', key: keys.user(a), value: { address: a, ver: this.version(), deleted: true } })
        this.forget(a)
      })
    }, opts)
    // the deletion commits after the user's lock is released: a state loaded meanwhile must not outlive it
    // (logPosition answers from the cached state)
    this.forget(a)
  }

  async verifyPassword (address: string, password: string): Promise<User | null> {
    const a = normalizeAddress(address)
    if (Buffer.byteLength(password) > PASSWORD_BYTES_MAX) return null
    const r = a === null ? null : await this.live<UserRec>(keys.user(a))
    // Unknown users cost the same scrypt work as known ones: no timing oracle for account existence
    const ok = await verifyPassword(password, r?.hash ?? await dummyHash(this.scryptLogN))
    if (r === null || !ok || r.status !== 'active') return null
    return LevelStore.publicUser(r)
  }

  // ---- aliases -----------------------------------------------------------------------------------------

  async addAlias (address: string, targets: string[], opts?: OpOptions): Promise<Alias> {
    const a = normalizeAliasAddress(address)
    if (a === null) throw new MailError('invalid', `Invalid alias address: ${address}`)
    if (await this.getDomain(domainOf(a)) === null) throw new MailError('notFound', `Unknown domain: ${domainOf(a)}`)
    if (targets.length === 0 || targets.length > ALIAS_TARGETS_MAX) throw new MailError('invalid', 'An alias needs 1 to 1000 targets')
    const ts = targets.map(t => {
      const n = normalizeAddress(t)
      if (n === null) throw new MailError('invalid', `Invalid target address: ${t}`)
      return n
    })
    return await this.dirWrite(async ops => {
      if (!a.startsWith('@') && await this.live(keys.user(a)) !== null) throw new MailError('exists', `${a} is a user`)
      const prev = await this.live<AliasRec>(keys.alias(a))
      const merged = [...new Set([...(prev?.targets ?? []), ...ts])]
      const rec: AliasRec = { address: a, targets: merged, created: prev?.created ?? this.now(), ver: this.version() }
      ops.push({ type: 'put', key: keys.alias(a), value: rec })
      return { address: a, targets: merged, created: rec.created }
    }, opts)
  }

  async deleteAlias (address: string, opts?: OpOptions): Promise<void> {
    const a = normalizeAliasAddress(address)
    if (a === null) throw new MailError('invalid', `Invalid alias address: ${address}`)
    await this.dirWrite(async ops => {
      if (await this.live(keys.alias(a)) === null) throw new MailError('notFound', `No such alias: ${a}`)
      ops.push({ type: 'put', key: keys.alias(a), value: { address: a, targets: [], created: 0, ver: this.version(), deleted: true } })
    }, opts)
  }

  async listAliases (domain?: string): Promise<Alias[]> {
    const d = domain === undefined ? undefined : normalizeDomain(domain)
    const out: Alias[] = []
    for await (const r of this.db.values(keys.aliasRange()) as AsyncIterable<AliasRec>) {
      if (r.deleted !== true && (d === undefined || domainOf(r.address) === d)) out.push({ address: r.address, targets: r.targets, created: r.created })
    }
    return out
  }

  async resolveRecipient (address: string): Promise<string[]> {
    return (await this.expandRecipient(address)).users
  }

  async expandRecipient (address: string): Promise<{ users: string[], remote: string[] }> {
    const a = normalizeAddress(address)
    if (a === null) return { users: [], remote: [] }
    const found = new Set<string>()
    const remote = new Set<string>()
    const seen = new Set<string>()
    const visit = async (addr: string, depth: number): Promise<void> => {
      if (depth > ALIAS_DEPTH_MAX || seen.has(addr) || found.size >= ALIAS_TARGETS_MAX) return
      seen.add(addr)
      const user = await this.live<UserRec>(keys.user(addr))
      if (user !== null) {
        found.add(addr)
        return
      }
      // An exact alias first; the domain's catch-all only for addresses that are neither user nor alias
      const alias = await this.live<AliasRec>(keys.alias(addr)) ?? (depth === 0 ? await this.live<AliasRec>(keys.alias('@' + domainOf(addr))) : null)
      // a target in a domain that is not ours leaves through the outbound queue
      if (alias === null && depth > 0 && !await this.isLocalDomain(domainOf(addr))) remote.add(addr)
      for (const t of alias?.targets ?? []) await visit(t, depth + 1)
    }
    await visit(a, 0)
    return { users: [...found], remote: [...remote].slice(0, ALIAS_TARGETS_MAX) }
  }

  async mayUseAddress (user: string, address: string): Promise<boolean> {
    const u = normalizeAddress(user)
    const a = normalizeAddress(address)
    if (u === null || a === null) return false
    if (u === a) return true
    // an explicit alias that delivers to the user; a catch-all does not make every address of a domain yours
    if (await this.live(keys.alias(a)) === null) return false
    return (await this.resolveRecipient(a)).includes(u)
  }
}

function validEntryName (name: string): boolean {
  return name.length > 0 && name.length <= ENTRY_NAME_CHARS_MAX && ENTRY_NAME.test(name)
}

/** A display name as stored: trimmed, no control characters, at most DISPLAY_NAME_CHARS_MAX characters. */
function checkDisplayName (name: string): string {
  if (typeof name !== 'string') throw new MailError('invalid', 'Display name must be text')
  const n = name.trim()
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(n)) throw new MailError('invalid', 'Display name has control characters')
  if ([...n].length > DISPLAY_NAME_CHARS_MAX) throw new MailError('invalid', `Display name longer than ${DISPLAY_NAME_CHARS_MAX} characters`)
  return n
}

/** A domain's DKIM keys as the directory accepts them (see DkimKey); copies. */
function checkDkimKeys (list: DkimKey[]): DkimKey[] {
  if (list.length > DKIM_KEYS_MAX) throw new MailError('limit', `At most ${DKIM_KEYS_MAX} DKIM keys per domain: retire an old one first`)
  const seen = new Set<string>()
  for (const k of list) {
    if (!SELECTOR.test(k.selector)) throw new MailError('invalid', `Invalid DKIM selector: ${k.selector}`)
    if (seen.has(k.selector.toLowerCase())) throw new MailError('exists', `DKIM selector ${k.selector} already exists`)
    seen.add(k.selector.toLowerCase())
    if (typeof k.privateKey !== 'string' || typeof k.publicKey !== 'string' || !['active', 'pending', 'published'].includes(k.state)) {
      throw new MailError('invalid', `Malformed DKIM key ${k.selector}`)
    }
  }
  if (list.filter(k => k.state === 'active').length > 1) throw new MailError('invalid', 'At most one DKIM key may be active')
  return list.map(k => ({ selector: k.selector, algorithm: k.algorithm, privateKey: k.privateKey, publicKey: k.publicKey, created: k.created, state: k.state }))
}

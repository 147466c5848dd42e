// Console admin accounts and the console's sessions, both kept in the replicated directory (store/directory.ts
// entries), so every node of the grid knows every account and honours every session.
//
//   admin/NAME       { name, hash, domains: string[] | null, created, epoch, revoked: [{ n, exp }] }
//   console/secret   { key (base64, 32 random bytes), created }
//
// A session is signed, not stored: the cookie holds NAME.EXPIRES.NONCE.MAC, MAC = HMAC-SHA256 over those and
// the account's epoch with the grid-wide secret. The nonce (16 random bytes) makes each session id unguessable;
// logging out puts the nonce on the account's revoked list (bounded: past REVOKED_MAX the epoch goes up, which
// ends every session of the account); a password change bumps the epoch too. The CSRF token is an HMAC of the
// nonce under the same secret: per session, checked on the server, never stored.

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { dummyHash, hashPassword, normalizeDomain, SCRYPT_LOG_N, verifyPassword } from '../../store/index.ts'
import type { Directory } from '../../store/index.ts'

export const ADMIN_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/ // no dots: the session token's separator
export const ADMIN_PASSWORD_BYTES_MAX = 1024
export const ADMIN_DOMAINS_MAX = 200
export const SESSION_TTL_MS = 8 * 60 * 60 * 1000 // a working day; then log in again
export const REVOKED_MAX = 64 // logged-out sessions remembered per account until they would expire anyway
const SECRET_ENTRY = 'console/secret'
const entryName = (name: string): string => `admin/${name}`

export interface AdminAccount {
  name: string
  /** null: every domain and the whole grid; a list: only these domains' users, aliases and DNS records. */
  domains: string[] | null
  created: number
}

interface AdminRecord extends AdminAccount {
  hash: string
  epoch: number
  revoked: Array<{ n: string, exp: number }>
}

/** Who a request acts as: the bearer token (the CLI), or an admin account logged in to the console. */
export type Principal =
  | { kind: 'token' }
  | { kind: 'admin', name: string, domains: string[] | null, nonce: string, csrf: string, expires: number }

export class AccountError extends Error {
  readonly status: number
  constructor (status: number, message: string) {
    super(message)
    this.status = status
  }
}

export function checkAdminName (name: string): string {
  const n = typeof name === 'string' ? name.toLowerCase() : ''
  if (!ADMIN_NAME.test(n)) throw new AccountError(400, `Invalid admin name: ${String(name)} (letters, digits, _ and -, at most 64)`)
  return n
}

function checkPassword (password: unknown): string {
  if (typeof password !== 'string' || password.length === 0) throw new AccountError(400, 'password: must be a non-empty string')
  if (Buffer.byteLength(password) > ADMIN_PASSWORD_BYTES_MAX) throw new AccountError(400, 'password: too long')
  return password
}

export function checkDomains (domains: unknown): string[] | null {
  if (domains === null || domains === undefined) return null
  if (!Array.isArray(domains) || domains.length === 0 || domains.length > ADMIN_DOMAINS_MAX) {
    throw new AccountError(400, `domains: a list of 1 to ${ADMIN_DOMAINS_MAX} domain names, or null for all`)
  }
  return [...new Set(domains.map(d => {
    const n = typeof d === 'string' ? normalizeDomain(d) : null
    if (n === null) throw new AccountError(400, `Invalid domain name: ${String(d)}`)
    return n
  }))].sort()
}

function isRecord (v: Record<string, unknown> | null): v is Record<string, unknown> & AdminRecord {
  return v !== null && typeof v.name === 'string' && typeof v.hash === 'string' && typeof v.epoch === 'number'
}

const publicView = (r: AdminRecord): AdminAccount => ({ name: r.name, domains: r.domains === null ? null : [...r.domains], created: r.created })

export interface Accounts {
  add (name: string, password: string, domains?: string[] | null): Promise<AdminAccount>
  list (): Promise<AdminAccount[]>
  get (name: string): Promise<AdminAccount | null>
  remove (name: string): Promise<void>
  setPassword (name: string, password: string): Promise<void>
  setDomains (name: string, domains: string[] | null): Promise<AdminAccount>
  /** The account for these credentials, or null; the same scrypt work whether or not the account exists. */
  verify (name: string, password: string): Promise<AdminAccount | null>
  /** A new session's cookie value and CSRF token. */
  openSession (name: string, now: number): Promise<{ id: string, csrf: string, expires: number }>
  /** The session behind a cookie value, or null (malformed, forged, expired, logged out, account gone). */
  session (id: string, now: number): Promise<Principal | null>
  closeSession (principal: Principal): Promise<void>
}

export function createAccounts (dir: Directory, scryptLogN = SCRYPT_LOG_N, clock: () => number = Date.now): Accounts {
  let secret: Buffer | null = null
  const key = async (): Promise<Buffer> => {
    if (secret !== null) return secret
    let v = await dir.getEntry(SECRET_ENTRY)
    // made once, by whichever node needs it first; two nodes racing at the very start end with one secret
    // (the directory's last writer wins), and a session signed with the other one is simply refused
    v ??= await dir.updateEntry(SECRET_ENTRY, cur => cur ?? { key: randomBytes(32).toString('base64'), created: clock() })
    if (v === null || typeof v.key !== 'string') throw new Error('console secret missing')
    secret = Buffer.from(v.key, 'base64')
    return secret
  }
  // the secret is re-read now and then: another node's write may have replaced the one made here
  const refresh = setInterval(() => { secret = null }, 60_000)
  refresh.unref()

  const record = async (name: string): Promise<AdminRecord | null> => {
    if (!ADMIN_NAME.test(name)) return null
    const v = await dir.getEntry(entryName(name))
    return isRecord(v) ? v : null
  }
  const update = async (name: string, change: (r: AdminRecord) => AdminRecord | null): Promise<AdminRecord | null> => {
    let missing = false
    const out = await dir.updateEntry(entryName(name), cur => {
      if (!isRecord(cur)) { missing = true; return cur }
      const next = change(cur)
      return next === null ? null : { ...next }
    })
    if (missing) throw new AccountError(404, `No such admin: ${name}`)
    return out as AdminRecord | null
  }
  const mac = (k: Buffer, s: string): string => createHmac('sha256', k).update(s).digest('base64url')
  const signed = (name: string, expires: number, nonce: string, epoch: number): string => `s1|${name}|${expires}|${nonce}|${epoch}`

  return {
    async add (name, password, domains = null) {
      const n = checkAdminName(name)
      const hash = await hashPassword(checkPassword(password), scryptLogN)
      const ds = checkDomains(domains)
      await key()
      let exists = false
      const out = await dir.updateEntry(entryName(n), cur => {
        if (cur !== null) { exists = true; return cur }
        return { name: n, hash, domains: ds, created: clock(), epoch: 0, revoked: [] } satisfies AdminRecord
      })
      if (exists) throw new AccountError(409, `Admin ${n} already exists`)
      return publicView(out as unknown as AdminRecord)
    },
    async list () {
      return (await dir.listEntries('admin/')).map(e => e.value).filter(v => isRecord(v)).map(v => publicView(v as unknown as AdminRecord))
    },
    async get (name) {
      const r = await record(name.toLowerCase())
      return r === null ? null : publicView(r)
    },
    async remove (name) {
      await update(checkAdminName(name), () => null)
    },
    async setPassword (name, password) {
      const hash = await hashPassword(checkPassword(password), scryptLogN)
      // every session of the account ends with the old password
      await update(checkAdminName(name), r => ({ ...r, hash, epoch: r.epoch + 1, revoked: [] }))
    },
    async setDomains (name, domains) {
      const ds = checkDomains(domains)
      return publicView((await update(checkAdminName(name), r => ({ ...r, domains: ds, epoch: r.epoch + 1, revoked: [] })))!)
    },
    async verify (name, password) {
      const n = typeof name === 'string' ? name.toLowerCase() : ''
      const r = typeof password === 'string' && Buffer.byteLength(password) <= ADMIN_PASSWORD_BYTES_MAX ? await record(n) : null
      const ok = await verifyPassword(typeof password === 'string' ? password : '', r?.hash ?? await dummyHash(scryptLogN))
      return r === null || !ok ? null : publicView(r)
    },
    async openSession (name, now) {
      const r = await record(name)
      if (r === null) throw new AccountError(404, `No such admin: ${name}`)
      const k = await key()
      const nonce = randomBytes(16).toString('base64url')
      const expires = now + SESSION_TTL_MS
      return { id: `${r.name}.${expires}.${nonce}.${mac(k, signed(r.name, expires, nonce, r.epoch))}`, csrf: mac(k, `csrf|${nonce}`), expires }
    },
    async session (id, now) {
      if (typeof id !== 'string' || id.length > 300) return null
      const m = /^([a-z0-9_-]{1,64})\.(\d{13,15})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/.exec(id)
      if (m === null) return null
      const [, name, exp, nonce, got] = m
      const expires = Number(exp)
      if (!(expires > now)) return null
      const r = await record(name)
      if (r === null) return null
      const k = await key()
      const want = Buffer.from(mac(k, signed(name, expires, nonce, r.epoch)))
      const have = Buffer.from(got)
      if (want.length !== have.length || !timingSafeEqual(want, have)) return null
      if (r.revoked.some(x => x.n === nonce)) return null
      return { kind: 'admin', name, domains: r.domains === null ? null : [...r.domains], nonce, csrf: mac(k, `csrf|${nonce}`), expires }
    },
    async closeSession (p) {
      if (p.kind !== 'admin') return
      const now = clock()
      await update(p.name, r => {
        const revoked = [...r.revoked.filter(x => x.exp > now), { n: p.nonce, exp: p.expires }]
        // too many open at once: end them all rather than forget one
        return revoked.length > REVOKED_MAX ? { ...r, epoch: r.epoch + 1, revoked: [] } : { ...r, revoked }
      }).catch(err => { if (!(err instanceof AccountError)) throw err })
    }
  }
}

/** Whether an admin may act on this domain (full admins: every one). */
export function mayManage (p: Principal, domain: string): boolean {
  if (p.kind === 'token' || p.domains === null) return true
  const d = normalizeDomain(domain)
  return d !== null && p.domains.includes(d)
}

export function isFullAdmin (p: Principal): boolean {
  return p.kind === 'token' || p.domains === null
}

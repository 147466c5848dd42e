// Admin API of mail collection (node/collect): a user's accounts elsewhere, kept as replicated directory entries
// and fetched by the user's primary. The password is stored as given (collection logs in with it) and never
// shown; each account's view carries its last run, last error and counts. The host is checked when the account is
// added (node/host-policy.ts: 400 with the reason for loopback, link-local, a grid member, a private address unless
// collect.allowPrivate, a privileged port other than POP3/IMAP's), and again by the collector before every connection.
//
//   GET    /v1/users/ADDRESS/collect                 the accounts with their state
//   POST   /v1/users/ADDRESS/collect {protocol, host, port?, tls?, username, password, folder?, source?, leave?,
//                                     intervalMinutes?, ca?, insecure?}
//   DELETE /v1/users/ADDRESS/collect/ID
//   POST   /v1/users/ADDRESS/collect/ID/run          fetch now (the primary starts within a moment)

import { randomBytes } from 'node:crypto'
import { checkMailboxName, normalizeAddress } from '../store/index.ts'
import type { Directory } from '../store/index.ts'
import {
  accountEntry, COLLECT_ACCOUNTS_PER_USER_MAX, COLLECT_ENTRY_PREFIX, COLLECT_INTERVAL_DEFAULT_MINUTES, COLLECT_INTERVAL_MIN_MINUTES, emptyState, stateEntry
} from '../node/collect/index.ts'
import type { CollectAccount, CollectState } from '../node/collect/index.ts'
import { HostRefused } from '../node/host-policy.ts'
import type { HostPolicy } from '../node/host-policy.ts'
import { HttpError, str } from './admin.ts'
import type { Body, Route } from './admin.ts'

export const COLLECT_FIELD_BYTES_MAX = 1024
export const COLLECT_INTERVAL_MAX_MINUTES = 7 * 24 * 60

function field (b: Body, key: string, fallback?: string): string {
  const v = b[key] === undefined && fallback !== undefined ? fallback : str(b, key)
  if (v === '' || Buffer.byteLength(v) > COLLECT_FIELD_BYTES_MAX || /[\r\n\x00]/.test(v)) throw new HttpError(400, `${key}: 1-${COLLECT_FIELD_BYTES_MAX} bytes, no line breaks`)
  return v
}

export function accountView (a: CollectAccount, st: CollectState): Record<string, unknown> {
  const { password: _password, ca, runNow: _runNow, ...rest } = a
  return { ...rest, ...(ca !== undefined ? { ca: '(given)' } : {}), state: { lastRunAt: st.lastRunAt, lastOkAt: st.lastOkAt, lastError: st.lastError, lastCount: st.lastCount, total: st.total } }
}

export function collectRoutes (directory: Directory, hosts: HostPolicy): Route[] {
  const userOf = async (address: string): Promise<string> => {
    const a = normalizeAddress(address)
    if (a === null || await directory.getUser(a) === null) throw new HttpError(404, `No such user: ${address}`)
    return a
  }
  const accounts = async (user: string): Promise<CollectAccount[]> =>
    (await directory.listEntries(`${COLLECT_ENTRY_PREFIX}${user}/`)).map(e => e.value as unknown as CollectAccount)
  const view = async (a: CollectAccount): Promise<Record<string, unknown>> =>
    accountView(a, (await directory.getEntry(stateEntry(a.user, a.id))) as CollectState | null ?? emptyState())
  const account = async (user: string, id: string): Promise<CollectAccount> => {
    const a = /^[a-f0-9]{8,32}$/.test(id) ? await directory.getEntry(accountEntry(user, id)) : null
    if (a === null) throw new HttpError(404, `No collection account ${id} for ${user}`)
    return a as unknown as CollectAccount
  }
  return [
    {
      method: 'GET',
      pattern: /^\/v1\/users\/([^/]+)\/collect$/,
      handler: async r => {
        const user = await userOf(r.params[0])
        return { json: { accounts: await Promise.all((await accounts(user)).map(view)) } }
      }
    },
    {
      method: 'POST',
      pattern: /^\/v1\/users\/([^/]+)\/collect$/,
      handler: async r => {
        const user = await userOf(r.params[0])
        const b = await r.body()
        const protocol = b.protocol
        if (protocol !== 'pop3' && protocol !== 'imap') throw new HttpError(400, 'protocol: pop3 or imap')
        const tls = b.tls ?? 'implicit'
        if (tls !== 'implicit' && tls !== 'starttls' && tls !== 'none') throw new HttpError(400, 'tls: implicit, starttls or none')
        const port = b.port === undefined ? (protocol === 'pop3' ? (tls === 'implicit' ? 995 : 110) : (tls === 'implicit' ? 993 : 143)) : b.port
        if (!Number.isInteger(port) || (port as number) < 1 || (port as number) > 65535) throw new HttpError(400, 'port: 1-65535')
        const interval = b.intervalMinutes ?? COLLECT_INTERVAL_DEFAULT_MINUTES
        if (!Number.isInteger(interval) || (interval as number) < COLLECT_INTERVAL_MIN_MINUTES || (interval as number) > COLLECT_INTERVAL_MAX_MINUTES) {
          throw new HttpError(400, `intervalMinutes: ${COLLECT_INTERVAL_MIN_MINUTES}-${COLLECT_INTERVAL_MAX_MINUTES}`)
        }
        const folder = field(b, 'folder', 'INBOX')
        if (folder.toUpperCase() !== 'INBOX') {
          try { checkMailboxName(folder) } catch { throw new HttpError(400, `folder: not a valid folder name: ${folder}`) }
        }
        const ca = typeof b.ca === 'string' && b.ca !== '' ? b.ca : undefined
        if (ca !== undefined && (Buffer.byteLength(ca) > 8192 || !ca.includes('-----BEGIN CERTIFICATE-----'))) throw new HttpError(400, 'ca: PEM certificates, at most 8192 bytes')
        if ((await accounts(user)).length >= COLLECT_ACCOUNTS_PER_USER_MAX) throw new HttpError(429, `At most ${COLLECT_ACCOUNTS_PER_USER_MAX} collection accounts per user`)
        const host = field(b, 'host')
        try {
          await hosts.check(host, port as number)
        } catch (err) {
          if (err instanceof HostRefused) throw new HttpError(400, err.message)
          throw err
        }
        const a: CollectAccount = {
          id: randomBytes(6).toString('hex'),
          user,
          protocol,
          host,
          port: port as number,
          tls,
          username: field(b, 'username'),
          password: field(b, 'password'),
          folder: folder.toUpperCase() === 'INBOX' ? 'INBOX' : folder,
          source: protocol === 'imap' ? field(b, 'source', 'INBOX') : 'INBOX',
          leave: b.leave !== false,
          intervalMinutes: interval as number,
          ...(ca !== undefined ? { ca } : {}),
          ...(b.insecure === true ? { insecure: true } : {}),
          created: Date.now()
        }
        await directory.updateEntry(accountEntry(user, a.id), () => a as unknown as Record<string, unknown>)
        return { status: 201, json: { account: accountView(a, emptyState()) } }
      }
    },
    {
      method: 'DELETE',
      pattern: /^\/v1\/users\/([^/]+)\/collect\/([^/]+)$/,
      handler: async r => {
        const user = await userOf(r.params[0])
        const a = await account(user, r.params[1])
        await directory.updateEntry(accountEntry(user, a.id), () => null)
        await directory.updateEntry(stateEntry(user, a.id), () => null)
        return { json: { deleted: a.id } }
      }
    },
    {
      method: 'POST',
      pattern: /^\/v1\/users\/([^/]+)\/collect\/([^/]+)\/run$/,
      handler: async r => {
        const user = await userOf(r.params[0])
        const a = await account(user, r.params[1])
        const saved = await directory.updateEntry(accountEntry(user, a.id), cur => cur === null ? null : { ...cur, runNow: Date.now() })
        if (saved === null) throw new HttpError(404, `No collection account ${a.id} for ${user}`)
        return { status: 202, json: { account: await view(saved as unknown as CollectAccount) } }
      }
    }
  ]
}

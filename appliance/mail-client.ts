// The CLI's side of appliance/mail-routes.ts: one user's mail (MailSource, MailTarget), the grid as a backup source
// and as a restore target, each call one bounded request to the node the CLI talks to (which reaches the user's
// primary itself). Bodies above INLINE_BYTES_MAX go up in chunks under their SHA-256 first.

import { createHash } from 'node:crypto'
import type { DirectoryRecord, LogAnchor, LogEntry, Mailbox, MessageRecord, SpecialUse } from '../store/index.ts'
import type { MailSource, MailTarget } from '../node/migrate/types.ts'
import type { BackupSource, RestoreTarget } from '../node/backup/index.ts'
import { MailError } from '../store/index.ts'
import { HTTP_STATUS } from './admin.ts'
import { CliError } from './client.ts'
import type { AdminClient } from './client.ts'
import { UPLOAD_CHUNK_BYTES } from './mail-routes.ts'

export const INLINE_BYTES_MAX = 256 * 1024 // bodies up to this go inside the request (base64 in a 1 MiB JSON body)
const INLINE_BATCH_BYTES_MAX = 512 * 1024 // inline bodies of one restore request, together
const DIRECTORY_BATCH_BYTES_MAX = 512 * 1024

const path = (user: string, rest: string): string => `/v1/mail/${encodeURIComponent(user)}/${rest}`

/** Sends a body in chunks under its SHA-256; resolves to the hash the request names it by. */
async function upload (api: AdminClient, data: Buffer): Promise<string> {
  const hash = createHash('sha256').update(data).digest('hex')
  for (let offset = 0; offset < data.length || offset === 0; offset += UPLOAD_CHUNK_BYTES) {
    await api.request('POST', `/v1/uploads/${hash}`, { offset, data: data.subarray(offset, offset + UPLOAD_CHUNK_BYTES).toString('base64') })
    if (data.length === 0) break
  }
  return hash
}

export function httpMailSource (api: AdminClient, user: string): MailSource {
  return {
    mailboxes: async () => await api.request('GET', path(user, 'mailboxes')) as { mailboxes: Mailbox[], subscriptions: string[] },
    messages: async (mailbox, from, limit) => await api.request('GET', path(user, `messages?mailbox=${encodeURIComponent(mailbox)}&from=${from}&limit=${limit}`)) as { messages: MessageRecord[], next: number | null },
    blob: async (hash, offset) => {
      const r = await api.request('GET', path(user, `blobs/${hash}?offset=${offset}`)) as { size: number, data: string }
      return { size: r.size, data: Buffer.from(r.data, 'base64') }
    }
  }
}

export function httpMailTarget (api: AdminClient, user: string): MailTarget {
  return {
    ensureMailbox: async (name: string, specialUse?: SpecialUse | null) => (await api.request('POST', path(user, 'mailboxes'), { name, specialUse: specialUse ?? null })).mailbox as Mailbox,
    subscribe: async (name: string) => { await api.request('POST', path(user, 'subscriptions'), { name }) },
    append: async (mailbox, m) => {
      const body = m.raw.length <= INLINE_BYTES_MAX ? { data: m.raw.toString('base64') } : { upload: await upload(api, m.raw) }
      let r: Record<string, unknown>
      try {
        r = await api.request('POST', path(user, 'append'), { mailbox, flags: m.flags, internalDate: m.internalDate, gid: m.gid, ...(m.uid !== undefined ? { uid: m.uid } : {}), ...body })
      } catch (err) {
        // 507 is the API's over-quota answer (appliance/admin.ts HTTP_STATUS): the importer skips that message
        if (err instanceof CliError && err.status === HTTP_STATUS.noQuota) throw new MailError('noQuota', err.message)
        throw err
      }
      return { uid: Number(r.uid), existed: r.existed === true }
    }
  }
}

export function httpBackupSource (api: AdminClient, node: string): BackupSource {
  return {
    node,
    directory: async () => (await api.request('GET', '/v1/directory/records')).records as DirectoryRecord[],
    users: async () => ((await api.request('GET', '/v1/users')).users as Array<{ address: string }>).map(u => u.address),
    position: async user => await api.request('GET', path(user, 'log/position')) as LogAnchor,
    readLog: async (user, from, to) => (await api.request('GET', path(user, `log?from=${from}&to=${to}`))).entries as LogEntry[],
    blob: async (user, hash, offset) => await httpMailSource(api, user).blob(hash, offset)
  }
}

export function httpRestoreTarget (api: AdminClient): RestoreTarget {
  return {
    mergeDirectory: async records => {
      let batch: DirectoryRecord[] = []
      let bytes = 0
      const flush = async (): Promise<void> => {
        if (batch.length > 0) await api.request('POST', '/v1/directory/records', { records: batch })
        batch = []
        bytes = 0
      }
      for (const r of records) {
        const n = Buffer.byteLength(JSON.stringify(r))
        if (bytes + n > DIRECTORY_BATCH_BYTES_MAX) await flush()
        batch.push(r)
        bytes += n
      }
      await flush()
    },
    directory: async () => (await api.request('GET', '/v1/directory/records')).records as DirectoryRecord[],
    hasUser: async user => {
      try {
        await api.request('GET', `/v1/users/${encodeURIComponent(user)}`)
        return true
      } catch (err) {
        if (/404|No such user|not found/i.test(String((err as Error).message))) return false
        throw err
      }
    },
    position: async user => await api.request('GET', path(user, 'log/position')) as LogAnchor,
    restoreLog: async (user, entries, blobs, prev) => {
      // one request of at most ~1 MiB: the entries, small bodies inline, the rest uploaded first
      let inline = 0
      const items: Array<{ data: string } | { upload: string }> = []
      for (const b of blobs) {
        if (b.length <= INLINE_BYTES_MAX && inline + b.length <= INLINE_BATCH_BYTES_MAX) {
          inline += b.length
          items.push({ data: b.toString('base64') })
        } else {
          items.push({ upload: await upload(api, b) })
        }
      }
      const r = await api.request('POST', path(user, 'log'), { entries, blobs: items, ...(prev !== undefined ? { prev } : {}) })
      return Number(r.position)
    },
    mail: user => httpMailTarget(api, user)
  }
}

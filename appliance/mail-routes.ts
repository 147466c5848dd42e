// Admin API of file import, export, backup and restore (issue 15, items 2-4): one user's mail at its primary
// (node/migrate/user-mail.ts), in bounded pages and chunks, so the CLI can stream a whole account or grid through
// requests of bounded size in both directions; and the directory's versioned records. Bodies travel base64 in
// JSON: a request body is at most ADMIN_BODY_BYTES_MAX, so a larger message or body is first uploaded in chunks
// under its SHA-256 (DATA/uploads/HASH.part, checked against the hash when used, then removed).
//
//   GET  /v1/mail/ADDRESS/mailboxes                      {mailboxes, subscriptions}
//   POST /v1/mail/ADDRESS/mailboxes {name, specialUse?}  the mailbox, created with its parents if missing
//   POST /v1/mail/ADDRESS/subscriptions {name}
//   GET  /v1/mail/ADDRESS/messages?mailbox=ID&from=UID&limit=N     {messages, next}
//   GET  /v1/mail/ADDRESS/blobs/HASH?offset=N            {size, data}: at most BLOB_READ_BYTES_MAX from offset
//   POST /v1/mail/ADDRESS/append {mailbox, flags, internalDate, gid, uid?, data | upload}    {uid, existed}
//   GET  /v1/mail/ADDRESS/log/position                   {seq, eid}
//   GET  /v1/mail/ADDRESS/log?from=N&to=N                {entries}
//   POST /v1/mail/ADDRESS/log {entries, prev?, blobs: [{data} | {upload}]}   {position} (restore)
//   POST /v1/uploads/HASH {offset, data}                 {bytes}
//   GET  /v1/directory/records                           {records} (password hashes and DKIM keys included)
//   POST /v1/directory/records {records}                 {applied} (restore: merged by version)

import { createHash } from 'node:crypto'
import { mkdir, open, readFile, readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { normalizeAddress } from '../store/index.ts'
import type { DirectoryRecord, LogAnchor, LogEntry, SpecialUse, Store } from '../store/index.ts'
import type { UserMail } from '../node/migrate/user-mail.ts'
import { HttpError, str } from './admin.ts'
import type { Body, Route } from './admin.ts'

export const UPLOAD_BYTES_MAX = 64 * 1024 * 1024 // a message or body; above the node's message size limit
export const UPLOAD_CHUNK_BYTES = 512 * 1024 // raw bytes a request carries (base64 in a 1 MiB JSON body)
export const UPLOAD_STALE_MS = 3600_000 // an upload nobody used within the hour is removed
export const UPLOADS_MAX = 256 // uploads waiting at once
export const RECORDS_PER_REQUEST_MAX = 10_000

const HASH = /^[0-9a-f]{64}$/

function user (param: string): string {
  const a = normalizeAddress(param)
  if (a === null) throw new HttpError(400, `Not an address: ${param}`)
  return a
}

function num (q: URLSearchParams, key: string, fallback?: number): number {
  const v = q.get(key)
  if (v === null || v === '') {
    if (fallback !== undefined) return fallback
    throw new HttpError(400, `${key}: missing`)
  }
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < 0) throw new HttpError(400, `${key}: must be a whole number`)
  return n
}

function b64 (body: Body, key: string): Buffer {
  const v = body[key]
  if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) throw new HttpError(400, `${key}: must be base64`)
  return Buffer.from(v, 'base64')
}

export interface MailRoutesComponents {
  store: Store
  userMail: UserMail
  /** The node's data dir: uploads wait in DATA/uploads. */
  dataDir: string
}

export function mailRoutes (c: MailRoutesComponents): Route[] {
  const um = c.userMail
  const uploads = join(c.dataDir, 'uploads')
  const uploaded = async (hash: unknown): Promise<Buffer> => {
    if (typeof hash !== 'string' || !HASH.test(hash)) throw new HttpError(400, 'upload: must be a SHA-256')
    const file = join(uploads, `${hash}.part`)
    let data: Buffer
    try {
      data = await readFile(file)
    } catch {
      throw new HttpError(404, `No upload ${hash}`)
    }
    if (createHash('sha256').update(data).digest('hex') !== hash) {
      await rm(file, { force: true })
      throw new HttpError(400, `Upload ${hash} is incomplete or does not match its hash`)
    }
    return data
  }
  const done = async (hash: unknown): Promise<void> => {
    if (typeof hash === 'string' && HASH.test(hash)) await rm(join(uploads, `${hash}.part`), { force: true })
  }
  const bodyOf = async (b: Record<string, unknown>): Promise<Buffer> => b.upload !== undefined ? await uploaded(b.upload) : b64(b, 'data')

  return [
    { method: 'GET', pattern: /^\/v1\/mail\/([^/]+)\/mailboxes$/, handler: async r => ({ json: await um.mailboxes(user(r.params[0])) }) },
    {
      method: 'POST',
      pattern: /^\/v1\/mail\/([^/]+)\/mailboxes$/,
      handler: async r => {
        const b = await r.body()
        const use = b.specialUse === undefined || b.specialUse === null ? null : str(b, 'specialUse') as SpecialUse
        return { json: { mailbox: await um.ensureMailbox(user(r.params[0]), str(b, 'name'), use) } }
      }
    },
    {
      method: 'POST',
      pattern: /^\/v1\/mail\/([^/]+)\/subscriptions$/,
      handler: async r => { await um.subscribe(user(r.params[0]), str(await r.body(), 'name')); return { json: { subscribed: true } } }
    },
    {
      method: 'GET',
      pattern: /^\/v1\/mail\/([^/]+)\/messages$/,
      handler: async r => {
        const mailbox = r.query.get('mailbox')
        if (mailbox === null || mailbox === '') throw new HttpError(400, 'mailbox: missing')
        return { json: await um.messages(user(r.params[0]), mailbox, Math.max(1, num(r.query, 'from', 1)), Math.max(1, num(r.query, 'limit', 200))) }
      }
    },
    {
      method: 'GET',
      pattern: /^\/v1\/mail\/([^/]+)\/blobs\/([0-9a-f]{64})$/,
      handler: async r => {
        const { data, size } = await um.blob(user(r.params[0]), r.params[1], num(r.query, 'offset', 0))
        return { json: { size, data: data.toString('base64') } }
      }
    },
    {
      method: 'POST',
      pattern: /^\/v1\/mail\/([^/]+)\/append$/,
      handler: async r => {
        const b = await r.body()
        const raw = await bodyOf(b)
        const internalDate = b.internalDate
        if (!Number.isSafeInteger(internalDate) || (internalDate as number) < 0) throw new HttpError(400, 'internalDate: ms since the epoch')
        if (!Array.isArray(b.flags) || !b.flags.every(f => typeof f === 'string')) throw new HttpError(400, 'flags: a list of strings')
        const uid = b.uid === undefined || b.uid === null ? undefined : Number(b.uid)
        if (uid !== undefined && (!Number.isSafeInteger(uid) || uid < 1)) throw new HttpError(400, 'uid: a positive whole number')
        const res = await um.append(user(r.params[0]), str(b, 'mailbox'), { raw, flags: b.flags as string[], internalDate: internalDate as number, gid: str(b, 'gid'), ...(uid !== undefined ? { uid } : {}) })
        await done(b.upload)
        return { json: res }
      }
    },
    { method: 'GET', pattern: /^\/v1\/mail\/([^/]+)\/log\/position$/, handler: async r => ({ json: await um.position(user(r.params[0])) }) },
    {
      method: 'GET',
      pattern: /^\/v1\/mail\/([^/]+)\/log$/,
      handler: async r => ({ json: { entries: await um.readLog(user(r.params[0]), Math.max(1, num(r.query, 'from')), num(r.query, 'to')) } })
    },
    {
      method: 'POST',
      pattern: /^\/v1\/mail\/([^/]+)\/log$/,
      handler: async r => {
        const b = await r.body()
        if (!Array.isArray(b.entries)) throw new HttpError(400, 'entries: a list of log entries')
        const items = Array.isArray(b.blobs) ? b.blobs as Array<Record<string, unknown>> : []
        const blobs: Buffer[] = []
        for (const i of items) blobs.push(await bodyOf(i))
        const prev = b.prev === undefined || b.prev === null ? undefined : b.prev as LogAnchor
        const position = await um.restoreLog(user(r.params[0]), b.entries as LogEntry[], blobs, prev)
        for (const i of items) await done(i.upload)
        return { json: { position } }
      }
    },
    {
      method: 'POST',
      pattern: /^\/v1\/uploads\/([0-9a-f]{64})$/,
      handler: async r => {
        const b = await r.body()
        const offset = b.offset
        if (!Number.isSafeInteger(offset) || (offset as number) < 0) throw new HttpError(400, 'offset: a whole number')
        const data = b64(b, 'data')
        if ((offset as number) + data.length > UPLOAD_BYTES_MAX) throw new HttpError(413, `An upload is at most ${UPLOAD_BYTES_MAX} bytes`)
        await mkdir(uploads, { recursive: true })
        const file = join(uploads, `${r.params[0]}.part`)
        if (offset === 0) {
          // a new upload: forget the stale ones, and refuse more than UPLOADS_MAX waiting
          const names = await readdir(uploads)
          for (const n of names) {
            const st = await stat(join(uploads, n)).catch(() => null)
            if (st !== null && Date.now() - st.mtimeMs > UPLOAD_STALE_MS) await rm(join(uploads, n), { force: true })
          }
          if (names.length >= UPLOADS_MAX) throw new HttpError(429, 'Too many uploads waiting')
        }
        const size = offset === 0 ? 0 : await stat(file).then(s => s.size, () => -1)
        if (size !== offset) throw new HttpError(409, `Upload ${r.params[0]} has ${Math.max(size, 0)} bytes, not ${offset as number}`)
        const fh = await open(file, offset === 0 ? 'w' : 'a')
        try { await fh.write(data) } finally { await fh.close() }
        return { json: { bytes: (offset as number) + data.length } }
      }
    },
    { method: 'GET', pattern: /^\/v1\/directory\/records$/, handler: async () => ({ json: { records: await c.store.exportDirectory() } }) },
    {
      method: 'POST',
      pattern: /^\/v1\/directory\/records$/,
      handler: async r => {
        const b = await r.body()
        if (!Array.isArray(b.records) || b.records.length > RECORDS_PER_REQUEST_MAX) throw new HttpError(400, `records: a list of at most ${RECORDS_PER_REQUEST_MAX} directory records`)
        const records = b.records as DirectoryRecord[]
        for (const rec of records) {
          if (typeof rec?.key !== 'string' || typeof rec.value !== 'object' || rec.value === null || !Number.isSafeInteger(rec.value.ver)) throw new HttpError(400, 'records: each {key, value: {ver, ...}}')
        }
        return { json: { applied: (await c.store.mergeDirectory(records)).length } }
      }
    }
  ]
}

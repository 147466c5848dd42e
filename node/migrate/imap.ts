// Import of one user's mail from another IMAP server (issue 15, item 1): every folder with its hierarchy (the
// source's delimiter mapped to ours, '/'), subscriptions, special-use, flags and keywords, internal dates and
// the messages byte for byte, written through the MailStore the caller gives (on a grid node: the replicated
// one, so every append is durable on the user's replicas before the next).
//
// It keeps no state of its own: a message already in the target folder is skipped, so a second run copies
// nothing and an interrupted run continues where it stopped. A message's identity is its internal date (to the
// second, IMAP's precision), its RFC 822 size and its Message-ID when it has one (read from the ENVELOPE, so a
// second run downloads no message); without a Message-ID, the SHA-256 of its bytes (downloaded, compared with
// the body hash the store keeps). Identical copies in one folder are counted: three in the source, three here.

import { createHash } from 'node:crypto'
import type { FetchMessageObject, ImapFlow, ListResponse } from 'imapflow'
import type { Logger } from 'pino'
import { isMailError } from '../../store/index.ts'
import type { MailStore, Mailbox, MessageRecord, SpecialUse } from '../../store/index.ts'
import { connectRemoteImap } from '../remote-imap.ts'
import { OVER_QUOTA } from './quota.ts'
import type { ImportQuota } from './quota.ts'
import type { RemoteImapAccount } from '../remote-imap.ts'

export const IMPORT_FOLDERS_MAX = 10_000 // Dovecot's default mailbox_list_... has none; a sane bound for one account
export const IMPORT_MESSAGES_PER_FOLDER_MAX = 1_000_000
export const IMPORT_BATCH_MESSAGES_MAX = 100 // messages fetched per FETCH BODY.PEEK[] round
export const IMPORT_BATCH_BYTES_MAX = 32 * 1024 * 1024 // bytes held in memory per round (a large message is a round alone)
export const IMPORT_APPENDS_IN_FLIGHT = 8 // appends waiting on the store at once (they share its group commit)
export const IMPORT_ERRORS_KEPT = 50 // per-message errors listed in the report (all are counted)
export const IMPORT_FOLDERS_KEPT = 200 // folders listed in the report (all are counted)

const SPECIAL_USES: readonly string[] = ['\\Sent', '\\Drafts', '\\Trash', '\\Junk', '\\Archive', '\\All', '\\Flagged']

export type ImapSource = RemoteImapAccount

/** Parses `imaps://HOST[:PORT]` or `imap://HOST[:PORT]` (plain, or STARTTLS with `?tls=starttls`). */
export function parseSourceUrl (text: string): Pick<ImapSource, 'host' | 'port' | 'tls'> | null {
  let u: URL
  try {
    u = new URL(text)
  } catch {
    return null
  }
  if ((u.protocol !== 'imaps:' && u.protocol !== 'imap:') || u.hostname === '' || u.username !== '' || u.password !== '' || (u.pathname !== '' && u.pathname !== '/')) return null
  const port = u.port === '' ? (u.protocol === 'imaps:' ? 993 : 143) : Number(u.port)
  const tls = u.protocol === 'imaps:' ? 'implicit' : u.searchParams.get('tls') === 'starttls' ? 'starttls' : 'none'
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port, tls }
}

export interface FolderReport {
  source: string
  target: string
  messages: number // in the source
  copied: number
  bytes: number // copied
  skipped: number // already there
  overQuota: number // not copied: the user's or the domain's quota would be exceeded
  failed: number
}

export interface ImportReport {
  folders: number
  messages: number // in the source, every folder
  copied: number
  bytes: number
  skipped: number // already present in the target folder
  overQuota: number // not copied: the user's or the domain's quota would be exceeded (each listed in errors, up to IMPORT_ERRORS_KEPT)
  failed: number
  /** The first IMPORT_FOLDERS_KEPT folders. */
  perFolder: FolderReport[]
  /** The first IMPORT_ERRORS_KEPT problems: a message or a folder, with the reason. */
  errors: Array<{ folder: string, uid?: number, reason: string }>
  notes: string[]
}

export interface ImapImportComponents {
  /** Writes and reads of the target user's mail (the replicated store on a grid node). */
  mail: MailStore
  /** The user's and the domain's quota (node/migrate/quota.ts); absent: the store's own check only. */
  quota?: ImportQuota
  logger: Logger
}

export interface ImapImportInit {
  source: ImapSource
  target: string // the local user
  messageBytesMax: number // the store's cap: a larger message is reported, not copied
  signal?: AbortSignal
  /** Called after each folder and each batch with the report so far. */
  onProgress?: (report: ImportReport) => void
}

export function emptyReport (): ImportReport {
  return { folders: 0, messages: 0, copied: 0, bytes: 0, skipped: 0, overQuota: 0, failed: 0, perFolder: [], errors: [], notes: [] }
}

/** Our name for a source folder: its path split at the source's delimiter, joined with '/'. */
export function mapFolderName (path: string, delimiter: string | null | undefined): { name: string, changed: boolean } {
  if (/^inbox$/i.test(path)) return { name: 'INBOX', changed: false }
  const parts = delimiter === null || delimiter === undefined || delimiter === '' ? [path] : path.split(delimiter)
  // a '/' inside one level of a source that uses another delimiter would make a level here: it becomes '_'
  const clean = parts.map(p => p.replace(/\//g, '_'))
  if (/^inbox$/i.test(clean[0])) clean[0] = 'INBOX'
  const name = clean.join('/')
  return { name, changed: clean.some((p, i) => p !== parts[i]) }
}

interface Identity { date: number, size: number, messageId: string | null }

const keyOf = (date: number, size: number, what: string): string => `${Math.floor(date / 1000)}\x00${size}\x00${what}`

function normalizeMessageId (id: string | null | undefined): string | null {
  if (typeof id !== 'string') return null
  const t = id.trim()
  return t === '' ? null : t
}

/** What the target folder already holds, by both identities, counted. */
async function targetIndex (mail: MailStore, user: string, box: Mailbox): Promise<Map<string, number>> {
  const out = new Map<string, number>()
  const add = (k: string): void => { out.set(k, (out.get(k) ?? 0) + 1) }
  if (box.messages === 0) return out
  const recs: MessageRecord[] = await mail.listMessages(user, box.id)
  for (const r of recs) {
    if (r.prefix === '') add(keyOf(r.internalDate, r.size, 'h:' + r.blob))
    const mid = normalizeMessageId((await mail.getMeta(r)).envelope.messageId)
    if (mid !== null) add(keyOf(r.internalDate, r.size, 'm:' + mid))
  }
  return out
}

function take (index: Map<string, number>, key: string): boolean {
  const n = index.get(key) ?? 0
  if (n === 0) return false
  index.set(key, n - 1)
  return true
}

function describe (err: unknown): string {
  if (isMailError(err)) return `${err.kind}: ${err.message}`
  const e = err as { message?: string, responseText?: string, code?: string }
  return String(e.responseText ?? e.message ?? err).replace(/[\r\n]+/g, ' ').slice(0, 300)
}

/**
 * Copies the source account into the target user. Resolves to the report; rejects only when the source cannot
 * be reached or logged into, or the run is aborted (what was copied stays: a run later continues).
 */
export async function importImap (c: ImapImportComponents, init: ImapImportInit): Promise<ImportReport> {
  const { mail } = c
  const user = init.target
  const log = c.logger.child({ ns: 'migrate:imap', target: user, source: `${init.source.host}:${init.source.port}` })
  const report = emptyReport()
  if (init.source.insecure === true) report.notes.push('the source certificate was not verified (insecure)')
  const problem = (folder: string, reason: string, uid?: number): void => {
    report.failed++
    if (report.errors.length < IMPORT_ERRORS_KEPT) report.errors.push({ folder, ...(uid !== undefined ? { uid } : {}), reason })
  }
  const signal = init.signal
  // timeouts, TLS and the literal bound: node/remote-imap.ts
  const remote = await connectRemoteImap({
    ...init.source, messageBytesMax: init.messageBytesMax, ...(signal !== undefined ? { signal } : {}),
    onError: err => { log.warn({ err: describe(err) }, 'import_source_error') }
  })
  const client = remote.client
  try {
    log.info({ user: init.source.user }, 'import_connected')
    const list: ListResponse[] = await client.list({ statusQuery: { messages: true } })
    if (list.length > IMPORT_FOLDERS_MAX) throw new Error(`the source has ${list.length} folders, more than ${IMPORT_FOLDERS_MAX}`)
    // parents before children, INBOX first
    list.sort((a, b) => (a.path.toUpperCase() === 'INBOX' ? -1 : b.path.toUpperCase() === 'INBOX' ? 1 : a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
    const existing = new Map((await mail.listMailboxes(user)).map(b => [b.name, b]))
    const bySpecialUse = new Map([...existing.values()].filter(b => b.specialUse !== null).map(b => [b.specialUse as string, b.name]))
    const used = new Set<string>()
    for (const f of list) {
      signal?.throwIfAborted()
      const noselect = f.flags.has('\\Noselect') || f.flags.has('\\NonExistent')
      const mapped = mapFolderName(f.path, f.delimiter)
      // special-use as the server declared it (RFC 6154), never imapflow's guess from the name
      const su = f.specialUseSource === 'extension' && SPECIAL_USES.includes(f.specialUse ?? '') ? f.specialUse as SpecialUse : null
      let target = mapped.name
      // the source's \Sent (under whatever name) fills our \Sent when we have no folder of its name
      if (su !== null && !existing.has(target) && bySpecialUse.has(su) && !used.has(bySpecialUse.get(su)!)) {
        target = bySpecialUse.get(su)!
        report.notes.push(`${f.path} (${su}) imported into ${target}`)
      }
      if (mapped.changed) report.notes.push(`${f.path}: '/' inside a level became '_' (${target})`)
      used.add(target)
      if (noselect) {
        // a level of the hierarchy only: made so that the tree matches (our folders can all hold mail)
        if (!existing.has(target)) {
          try {
            existing.set(target, await mail.createMailbox(user, target))
          } catch (err) {
            if (!isMailError(err, 'exists')) problem(f.path, `folder not created: ${describe(err)}`)
          }
        }
        continue
      }
      report.folders++
      let box = existing.get(target) ?? null
      if (box === null) {
        try {
          box = await mail.createMailbox(user, target, su !== null && !bySpecialUse.has(su) ? { specialUse: su } : {})
          if (su !== null) bySpecialUse.set(su, target)
        } catch (err) {
          if (!isMailError(err, 'exists')) {
            problem(f.path, `folder not created: ${describe(err)}`)
            continue
          }
          box = await mail.getMailbox(user, target)
          if (box === null) continue
        }
        existing.set(target, box)
      }
      if (f.subscribed === true && !box.subscribed) {
        await mail.setSubscribed(user, target, true).catch((err: unknown) => problem(f.path, `subscription not set: ${describe(err)}`))
      }
      const fr: FolderReport = { source: f.path, target, messages: 0, copied: 0, bytes: 0, skipped: 0, overQuota: 0, failed: 0 }
      if (report.perFolder.length < IMPORT_FOLDERS_KEPT) report.perFolder.push(fr)
      try {
        await copyFolder(client, c, user, f.path, box, fr, report, init, problem)
      } catch (err) {
        if (signal?.aborted === true) throw err
        // a folder the source will not open, or the store refusing this user now: reported, the next folder goes on
        // unless the store is unavailable (this node no longer leads the user: the run stops, another continues)
        if (isMailError(err, 'unavailable')) throw err
        problem(f.path, `folder not copied: ${describe(err)}`)
      }
      init.onProgress?.(report)
      log.info({ ...fr }, 'import_folder_done')
    }
  } finally {
    await remote.close()
  }
  log.info({ folders: report.folders, messages: report.messages, copied: report.copied, bytes: report.bytes, skipped: report.skipped, failed: report.failed }, 'import_done')
  return report
}

async function copyFolder (
  client: ImapFlow, c: ImapImportComponents, user: string, path: string, box: Mailbox, fr: FolderReport, report: ImportReport,
  init: ImapImportInit, problem: (folder: string, reason: string, uid?: number) => void
): Promise<void> {
  const { mail, quota } = c
  const signal = init.signal
  // a message the quota has no room for is skipped whole (listed with the reason), never partly written
  const overQuota = (reason: string, uid: number): void => {
    fr.overQuota++
    report.overQuota++
    if (report.errors.length < IMPORT_ERRORS_KEPT) report.errors.push({ folder: path, uid, reason })
  }
  const opened = await client.mailboxOpen(path, { readOnly: true })
  if (opened.exists === 0) return
  if (opened.exists > IMPORT_MESSAGES_PER_FOLDER_MAX) throw new Error(`${opened.exists} messages, more than ${IMPORT_MESSAGES_PER_FOLDER_MAX}`)
  const metas: FetchMessageObject[] = await client.fetchAll('1:*', { uid: true, flags: true, internalDate: true, size: true, envelope: true })
  metas.sort((a, b) => a.uid - b.uid)
  fr.messages = metas.length
  report.messages += metas.length
  const index = await targetIndex(mail, user, (await mail.getMailbox(user, box.name)) ?? box)
  // what is already here is skipped: by Message-ID from the metadata alone; the rest is fetched, and a message
  // without a Message-ID is compared by the hash of its bytes once they are here
  const wanted: Array<{ uid: number, id: Identity, flags: string[] }> = []
  for (const m of metas) {
    const date = m.internalDate instanceof Date ? m.internalDate.getTime() : Date.parse(String(m.internalDate))
    const size = Number(m.size)
    const flags = [...(m.flags ?? new Set<string>())].filter(f => f.toLowerCase() !== '\\recent')
    if (!Number.isFinite(date) || !Number.isSafeInteger(size)) {
      fr.failed++
      problem(path, 'no internal date or size from the source', m.uid)
      continue
    }
    const messageId = normalizeMessageId(m.envelope?.messageId)
    if (messageId !== null && take(index, keyOf(date, size, 'm:' + messageId))) {
      fr.skipped++
      report.skipped++
      continue
    }
    if (size > init.messageBytesMax) {
      fr.failed++
      problem(path, `${size} bytes, larger than this server's limit of ${init.messageBytesMax}`, m.uid)
      continue
    }
    // no room even now (usage only grows while we import): not downloaded at all
    const full = quota === undefined ? null : await quota.check(user, size)
    if (full !== null) {
      overQuota(full, m.uid)
      continue
    }
    wanted.push({ uid: m.uid, id: { date, size, messageId }, flags })
  }
  const batches: Array<typeof wanted> = []
  for (let i = 0; i < wanted.length;) {
    const batch: typeof wanted = []
    let bytes = 0
    while (i < wanted.length && batch.length < IMPORT_BATCH_MESSAGES_MAX && (batch.length === 0 || bytes + wanted[i].id.size <= IMPORT_BATCH_BYTES_MAX)) {
      bytes += wanted[i].id.size
      batch.push(wanted[i++])
    }
    batches.push(batch)
  }
  const download = async (batch: typeof wanted): Promise<Map<number, Buffer>> => {
    const sources = new Map<number, Buffer>()
    for await (const m of client.fetch(batch.map(b => b.uid).join(','), { uid: true, source: true }, { uid: true })) {
      if (m.source !== undefined) sources.set(m.uid, m.source)
    }
    return sources
  }
  // the next batch downloads while this one is stored (two batches in memory at most)
  let next: Promise<Map<number, Buffer>> | null = batches.length > 0 ? download(batches[0]) : null
  for (const [k, batch] of batches.entries()) {
    signal?.throwIfAborted()
    const sources = await next!
    next = k + 1 < batches.length ? download(batches[k + 1]) : null
    next?.catch(() => {}) // awaited on the next round; a failure after this round's error is not unhandled
    signal?.throwIfAborted()
    let inFlight: Array<Promise<void>> = []
    for (const b of batch) {
      const raw = sources.get(b.uid)
      if (raw === undefined) {
        fr.failed++
        problem(path, 'the source returned no content (expunged meanwhile?)', b.uid)
        continue
      }
      if (b.id.messageId === null) {
        const hash = createHash('sha256').update(raw).digest('hex')
        if (take(index, keyOf(b.id.date, raw.length, 'h:' + hash))) {
          fr.skipped++
          report.skipped++
          continue
        }
      }
      if (raw.length > init.messageBytesMax) {
        fr.failed++
        problem(path, `${raw.length} bytes, larger than this server's limit of ${init.messageBytesMax}`, b.uid)
        continue
      }
      const full = quota === undefined ? null : await quota.check(user, raw.length)
      if (full !== null) {
        overQuota(full, b.uid)
        continue
      }
      inFlight.push(mail.append(user, box.name, { raw, flags: b.flags, internalDate: b.id.date }).then(() => {
        fr.copied++
        fr.bytes += raw.length
        report.copied++
        report.bytes += raw.length
        quota?.added(user, raw.length)
      }, (err: unknown) => {
        if (isMailError(err, 'unavailable')) throw err
        // the store's own check (appends in flight together): the same outcome
        if (isMailError(err, 'noQuota')) {
          overQuota(`${OVER_QUOTA} (${err.message})`, b.uid)
          return
        }
        fr.failed++
        problem(path, `not stored: ${describe(err)}`, b.uid)
      }))
      if (inFlight.length >= IMPORT_APPENDS_IN_FLIGHT) {
        await Promise.all(inFlight)
        inFlight = []
      }
    }
    await Promise.all(inFlight)
    init.onProgress?.(report)
  }
}

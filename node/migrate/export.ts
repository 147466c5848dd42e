// Export of one user's mail as files: a Maildir that Dovecot serves as it is (maildir.ts has the layout), or one
// mbox file per folder. Read from a MailSource page by page and body by body in bounded chunks, so memory stays
// flat whatever the mailbox size. Written the Maildir way: into tmp/, then renamed into cur/, the internal date
// set as the file's mtime. dovecot-uidlist carries our UIDVALIDITY, UIDNEXT and UIDs, so a client's cache of the
// mailbox stays valid when Dovecot serves it. A run into a directory that holds an earlier export writes only the
// messages that are not there yet.

import { createHash } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import type { WriteStream } from 'node:fs'
import { mkdir, open, readdir, rename, utimes, writeFile } from 'node:fs/promises'
import { once } from 'node:events'
import { dirname, join } from 'node:path'
import type { Mailbox, MessageRecord } from '../../store/index.ts'
import { encodeMutf7, FLAG_LETTERS, KEYWORD_LETTERS, maildirFolderName } from './maildir.ts'
import { writeMboxMessage } from './mbox.ts'
import type { ExportReport, MailSource } from './types.ts'

export const EXPORT_PAGE_MESSAGES = 200
export const EXPORT_READ_AHEAD = 8 // messages read at once (each one request per 4 MiB at the user's primary)
export const EXPORT_READ_AHEAD_BYTES = 16 * 1024 * 1024

/** The message's bytes (the prefix the server added, then the body), chunk by chunk. */
async function * messageChunks (source: MailSource, r: MessageRecord): AsyncIterable<Buffer> {
  if (r.prefix !== '') yield Buffer.from(r.prefix)
  let offset = 0
  for (;;) {
    const { data, size } = await source.blob(r.blob, offset)
    if (data.length > 0) yield data
    offset += data.length
    if (offset >= size || data.length === 0) return
  }
}

/** Count of bare LFs: Dovecot's W= (the size with CRLF line ends) is the size plus these. */
function bareLfs (b: Buffer, prevCr: boolean): { n: number, lastCr: boolean } {
  let n = 0
  let from = 0
  let i: number
  while ((i = b.indexOf(10, from)) >= 0) {
    if (i === 0 ? !prevCr : b[i - 1] !== 13) n++
    from = i + 1
  }
  return { n, lastCr: b.length > 0 ? b[b.length - 1] === 13 : prevCr }
}

function infoOf (flags: string[], keywordIndex: Map<string, number>): string {
  let letters = ''
  for (const [l, f] of FLAG_LETTERS) if (flags.includes(f) && f !== '$Forwarded') letters += l
  const kws = flags.filter(f => !f.startsWith('\\')).map(k => keywordIndex.get(k)).filter((i): i is number => i !== undefined).sort((a, b) => a - b)
  return letters + kws.map(i => KEYWORD_LETTERS[i]).join('')
}

async function writeAll (out: WriteStream, chunks: AsyncIterable<Buffer>): Promise<number> {
  let n = 0
  for await (const c of chunks) {
    n += c.length
    if (!out.write(c)) await once(out, 'drain')
  }
  return n
}

async function closeStream (out: WriteStream): Promise<void> {
  out.end()
  await once(out, 'close')
}

async function * records (source: MailSource, box: Mailbox): AsyncIterable<MessageRecord> {
  let from: number | null = 1
  while (from !== null) {
    const page: { messages: MessageRecord[], next: number | null } = await source.messages(box.id, from, EXPORT_PAGE_MESSAGES)
    yield * page.messages
    from = page.next
  }
}

/**
 * The records with their bytes read ahead: up to EXPORT_READ_AHEAD messages (EXPORT_READ_AHEAD_BYTES together)
 * are read at once while the files are written in order; a message larger than one body read is left to be
 * streamed (`chunks` null).
 */
async function * withBodies (source: MailSource, box: Mailbox, skip: (r: MessageRecord) => boolean): AsyncIterable<{ r: MessageRecord, chunks: Buffer[] | null }> {
  let group: MessageRecord[] = []
  let bytes = 0
  const flush = async function * (): AsyncIterable<{ r: MessageRecord, chunks: Buffer[] | null }> {
    const read = await Promise.all(group.map(async r => {
      if (r.size > EXPORT_READ_AHEAD_BYTES || skip(r)) return null
      const parts: Buffer[] = []
      for await (const c of messageChunks(source, r)) parts.push(c)
      return parts
    }))
    for (const [i, r] of group.entries()) yield { r, chunks: read[i] }
    group = []
    bytes = 0
  }
  for await (const r of records(source, box)) {
    if (group.length >= EXPORT_READ_AHEAD || (group.length > 0 && bytes + r.size > EXPORT_READ_AHEAD_BYTES)) yield * flush()
    group.push(r)
    bytes += r.size
  }
  yield * flush()
}

/** A mailbox's GUID for dovecot-uidlist: stable for the same mailbox id and UIDVALIDITY. */
function guidOf (box: Mailbox): string {
  return createHash('sha256').update(`${box.id}\x00${box.uidValidity}`).digest('hex').slice(0, 32)
}

export async function exportMaildir (source: MailSource, root: string, opts: { signal?: AbortSignal, onMessage?: (bytes: number) => void } = {}): Promise<ExportReport> {
  const report: ExportReport = { folders: 0, messages: 0, bytes: 0, skipped: [] }
  const { mailboxes, subscriptions } = await source.mailboxes()
  await mkdir(root, { recursive: true })
  for (const box of mailboxes) {
    opts.signal?.throwIfAborted()
    const dir = join(root, maildirFolderName(box.name))
    for (const sub of ['cur', 'new', 'tmp']) await mkdir(join(dir, sub), { recursive: true })
    if (box.name !== 'INBOX') await writeFile(join(dir, 'maildirfolder'), '')
    report.folders++
    // an earlier export's files, by the part of the name that names the message (before the sizes)
    const have = new Map((await readdir(join(dir, 'cur'))).map(f => [f.split(',S=')[0], f.split(':')[0]]))
    const keywordIndex = new Map<string, number>()
    const dropped = new Set<string>()
    // the uidlist: header first (UIDVALIDITY and UIDNEXT are known), a line per message as it is written
    const uidlistTmp = join(dir, 'tmp', 'dovecot-uidlist.mailgrid')
    const uidlist = createWriteStream(uidlistTmp)
    uidlist.write(`3 V${box.uidValidity} N${box.uidNext} G${guidOf(box)}\n`)
    // a message an earlier export wrote is not read again
    const written = (r: MessageRecord): boolean => have.has(`${Math.floor(r.internalDate / 1000)}.M${r.uid}P${box.uidValidity}.mailgrid`)
    for await (const { r, chunks } of withBodies(source, box, written)) {
      opts.signal?.throwIfAborted()
      for (const k of r.flags) {
        if (k.startsWith('\\') || keywordIndex.has(k)) continue
        if (keywordIndex.size < KEYWORD_LETTERS.length) keywordIndex.set(k, keywordIndex.size)
        else if (!dropped.has(k)) {
          dropped.add(k)
          report.skipped.push({ folder: box.name, item: `keyword ${k}`, reason: `more than ${KEYWORD_LETTERS.length} keywords in the folder (Dovecot's Maildir limit)` })
        }
      }
      const base = `${Math.floor(r.internalDate / 1000)}.M${r.uid}P${box.uidValidity}.mailgrid`
      const earlier = have.get(base)
      if (earlier === undefined) {
        const tmp = join(dir, 'tmp', `${base}.part`)
        const fh = await open(tmp, 'w')
        const out = fh.createWriteStream()
        let lf = { n: 0, lastCr: false }
        const counted = async function * (): AsyncIterable<Buffer> {
          for await (const c of chunks ?? messageChunks(source, r)) {
            const b = bareLfs(c, lf.lastCr)
            lf = { n: lf.n + b.n, lastCr: b.lastCr }
            yield c
          }
        }
        const written = await writeAll(out, counted())
        await closeStream(out)
        const vsize = written + lf.n
        const name = `${base},S=${written},W=${vsize}:2,${infoOf(r.flags, keywordIndex)}`
        const when = r.internalDate / 1000
        await utimes(tmp, when, when)
        await rename(tmp, join(dir, 'cur', name))
        uidlist.write(`${r.uid} :${base},S=${written},W=${vsize}\n`)
        report.messages++
        report.bytes += written
        opts.onMessage?.(written)
      } else {
        uidlist.write(`${r.uid} :${earlier}\n`)
      }
    }
    await closeStream(uidlist)
    await rename(uidlistTmp, join(dir, 'dovecot-uidlist'))
    if (keywordIndex.size > 0) await writeFile(join(dir, 'dovecot-keywords'), [...keywordIndex].map(([k, i]) => `${i} ${k}\n`).join(''))
  }
  // Dovecot's subscriptions file, version 2: levels joined by TAB, each in modified UTF-7
  await writeFile(join(root, 'subscriptions'), 'V\t2\n\n' + subscriptions.map(s => s.split('/').map(encodeMutf7).join('\t') + '\n').join(''))
  return report
}

/** One mbox file per folder: DIR/INBOX.mbox, DIR/Work.mbox, DIR/Work/Sub.mbox (a folder and its children never clash). */
export async function exportMbox (source: MailSource, root: string, opts: { signal?: AbortSignal, onMessage?: (bytes: number) => void } = {}): Promise<ExportReport> {
  const report: ExportReport = { folders: 0, messages: 0, bytes: 0, skipped: [] }
  const { mailboxes } = await source.mailboxes()
  for (const box of mailboxes) {
    const file = join(root, ...box.name.split('/').map(l => l.replace(/^\.+/, '_'))) + '.mbox'
    await mkdir(dirname(file), { recursive: true })
    const out = createWriteStream(`${file}.part`)
    for await (const r of records(source, box)) {
      opts.signal?.throwIfAborted()
      const parts: Buffer[] = []
      for await (const c of messageChunks(source, r)) parts.push(c)
      const raw = Buffer.concat(parts)
      await writeMboxMessage(out, raw, r.flags, r.internalDate)
      report.messages++
      report.bytes += raw.length
      opts.onMessage?.(raw.length)
    }
    await closeStream(out)
    await rename(`${file}.part`, file)
    report.folders++
  }
  return report
}

// Dovecot's Maildir, read (import) and its naming rules (shared with export.ts). The layout, as Dovecot 2.3 writes
// it with its defaults:
//   ROOT/{cur,new,tmp}                 INBOX
//   ROOT/.A.B/{cur,new,tmp}            the folder A/B (Maildir++: '.' separates levels; names in modified UTF-7,
//                                      RFC 3501 5.1.3; a '.' inside a level is written \2e, as Dovecot's listescape)
//   ROOT/A/B/{cur,new,tmp}             the same folder under LAYOUT=fs (found when no Maildir++ folder is there)
//   FOLDER/cur/BASE:2,FLAGS            flags: D F P R S T (cr.yp.to/proto/maildir.html), a-z the folder's keywords
//   FOLDER/dovecot-keywords            "N keyword" lines: letter a is keyword 0
//   FOLDER/dovecot-uidlist             "3 V<uidvalidity> N<uidnext> G<guid>", then "UID [ext] :BASE" lines
//   ROOT/subscriptions                 "V\t2\n\n" then names with levels joined by TAB (or one name a line)
// The internal date is the file's mtime (what Dovecot reads); Dovecot stores LF line ends and serves CRLF, so an
// imported message gets CRLF line ends: the bytes a client fetched from Dovecot.

import { createHash } from 'node:crypto'
import { readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { MailError } from '../../store/index.ts'
import type { MailTarget, ImportReport } from './types.ts'
import { emptyImportReport } from './types.ts'
import { appendOrSkip } from './quota.ts'

export const MAILDIR_MESSAGE_BYTES_MAX = 64 * 1024 * 1024 // above the SMTP limit a node admits (50 MiB in tests)
export const MAILDIR_FOLDERS_MAX = 10_000 // the store's MAILBOXES_PER_USER_MAX
export const MAILDIR_DEPTH_MAX = 32 // LAYOUT=fs nesting
export const KEYWORD_LETTERS = 'abcdefghijklmnopqrstuvwxyz' // Dovecot: at most 26 keywords per folder in file names

/** Maildir info letters (sorted, as the spec asks) and the IMAP flags they stand for. */
export const FLAG_LETTERS: Array<[string, string]> = [['D', '\\Draft'], ['F', '\\Flagged'], ['P', '$Forwarded'], ['R', '\\Answered'], ['S', '\\Seen'], ['T', '\\Deleted']]

// ---- names ----------------------------------------------------------------------------------------------

/** RFC 3501 5.1.3 modified UTF-7 of one hierarchy level. */
export function encodeMutf7 (s: string): string {
  let out = ''
  let run = ''
  const flush = (): void => {
    if (run === '') return
    const u16 = Buffer.alloc(run.length * 2)
    for (let i = 0; i < run.length; i++) u16.writeUInt16BE(run.charCodeAt(i), i * 2)
    out += '&' + u16.toString('base64').replace(/=+$/, '').replace(/\//g, ',') + '-'
    run = ''
  }
  for (const ch of s) {
    const c = ch.codePointAt(0) as number
    if (c >= 0x20 && c <= 0x7e) {
      flush()
      out += ch === '&' ? '&-' : ch
    } else {
      run += ch
    }
  }
  flush()
  return out
}

export function decodeMutf7 (s: string): string {
  return s.replace(/&([^-]*)-/g, (_, b64: string) => {
    if (b64 === '') return '&'
    const buf = Buffer.from(b64.replace(/,/g, '/'), 'base64')
    let out = ''
    for (let i = 0; i + 1 < buf.length; i += 2) out += String.fromCharCode(buf.readUInt16BE(i))
    return out
  })
}

/** A mailbox name ('/' levels) as a Maildir++ directory name ('.Work.Sub'); INBOX is the root (''). */
export function maildirFolderName (name: string): string {
  if (name === 'INBOX') return ''
  return '.' + name.split('/').map(level => encodeMutf7(level).replace(/\\/g, '\\5c').replace(/\./g, '\\2e')).join('.')
}

function unescapeLevel (level: string): string {
  return decodeMutf7(level.replace(/\\([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))))
}

// ---- flags, keywords, uidlist ------------------------------------------------------------------------------

/** The flags of a file name's info part (`:2,` followed by letters). */
export function parseInfo (file: string, keywords: string[]): string[] {
  const i = file.indexOf(':2,')
  if (i < 0) return []
  const out: string[] = []
  for (const ch of file.slice(i + 3)) {
    const sys = FLAG_LETTERS.find(([l]) => l === ch)
    if (sys !== undefined) out.push(sys[1])
    else if (ch >= 'a' && ch <= 'z') {
      const kw = keywords[ch.charCodeAt(0) - 97]
      if (kw !== undefined && kw !== '') out.push(kw)
    }
  }
  return [...new Set(out)]
}

/** dovecot-keywords: index → keyword. */
export function parseKeywords (text: string): string[] {
  const out: string[] = []
  for (const line of text.split('\n')) {
    const m = /^(\d+) (\S+)$/.exec(line.trim())
    if (m !== null && Number(m[1]) < KEYWORD_LETTERS.length) out[Number(m[1])] = m[2]
  }
  return out
}

export interface Uidlist { uidValidity: number | null, uidNext: number | null, uids: Map<string, number> }

/** dovecot-uidlist (versions 1 and 3): base name → UID. */
export function parseUidlist (text: string): Uidlist {
  const lines = text.split('\n')
  const out: Uidlist = { uidValidity: null, uidNext: null, uids: new Map() }
  const head = lines[0]?.trim() ?? ''
  const v3 = /^3 /.test(head)
  if (v3) {
    for (const f of head.split(' ').slice(1)) {
      if (f.startsWith('V')) out.uidValidity = Number(f.slice(1)) || null
      if (f.startsWith('N')) out.uidNext = Number(f.slice(1)) || null
    }
  } else {
    const m = /^1 (\d+) (\d+)/.exec(head)
    if (m !== null) { out.uidValidity = Number(m[1]); out.uidNext = Number(m[2]) }
  }
  for (const line of lines.slice(1)) {
    const m = v3 ? /^(\d+)(?: [^:]*)?:(.+)$/.exec(line.trimEnd()) : /^(\d+) (.+)$/.exec(line.trimEnd())
    if (m === null) continue
    const uid = Number(m[1])
    if (Number.isSafeInteger(uid) && uid > 0) out.uids.set(baseOf(m[2]), uid)
  }
  return out
}

/** A Maildir file name without its info part. */
export function baseOf (file: string): string {
  const i = file.indexOf(':')
  return i < 0 ? file : file.slice(0, i)
}

/** Bare LF line ends as CRLF (what Dovecot serves for a file it stored with LF). */
export function toCrlf (raw: Buffer): Buffer {
  if (!raw.includes(10)) return raw
  const s = raw.toString('latin1').replace(/\r?\n/g, '\r\n')
  return Buffer.from(s, 'latin1')
}

/** A global id from a stable description of where the message came from: the same source gives the same id. */
export function importGid (...parts: string[]): string {
  return createHash('sha256').update(parts.join('\x00')).digest('hex').slice(0, 24)
}

// ---- reading a Maildir -------------------------------------------------------------------------------------

export interface MaildirFolder { name: string, path: string }

async function isMaildir (path: string): Promise<boolean> {
  try {
    return (await stat(join(path, 'cur'))).isDirectory()
  } catch {
    return false
  }
}

/** Subscriptions as Dovecot writes them (version 2: TAB-separated levels), or one name a line. */
export function parseSubscriptions (text: string): string[] {
  const lines = text.split('\n')
  if (lines[0] === 'V\t2') return lines.slice(2).filter(l => l !== '').map(l => l.split('\t').map(unescapeLevel).join('/'))
  return lines.map(l => l.trim()).filter(l => l !== '').map(l => decodeMutf7(l))
}

/** The folders of a Maildir: Maildir++ ('.A.B' directories) or, with none of those, LAYOUT=fs subdirectories. */
export async function scanMaildir (root: string): Promise<{ folders: MaildirFolder[], subscriptions: string[], layout: 'maildir++' | 'fs' }> {
  if (!await isMaildir(root)) throw new MailError('invalid', `${root} is not a Maildir (no cur/ directory)`)
  const folders: MaildirFolder[] = [{ name: 'INBOX', path: root }]
  const entries = await readdir(root, { withFileTypes: true })
  const plus = entries.filter(e => e.isDirectory() && e.name.startsWith('.') && e.name !== '.' && e.name !== '..')
  let layout: 'maildir++' | 'fs' = 'maildir++'
  for (const e of plus) {
    if (!await isMaildir(join(root, e.name))) continue
    folders.push({ name: e.name.slice(1).split('.').map(unescapeLevel).join('/'), path: join(root, e.name) })
  }
  if (folders.length === 1) {
    layout = 'fs'
    const walk = async (dir: string, prefix: string[], depth: number): Promise<void> => {
      if (depth > MAILDIR_DEPTH_MAX) return
      for (const e of await readdir(dir, { withFileTypes: true })) {
        if (!e.isDirectory() || ['cur', 'new', 'tmp'].includes(e.name) || e.name.startsWith('.')) continue
        const p = join(dir, e.name)
        const name = [...prefix, decodeMutf7(e.name)]
        if (await isMaildir(p)) folders.push({ name: name.join('/'), path: p })
        if (folders.length > MAILDIR_FOLDERS_MAX) throw new MailError('limit', `more than ${MAILDIR_FOLDERS_MAX} folders`)
        await walk(p, name, depth + 1)
      }
    }
    await walk(root, [], 0)
  }
  if (folders.length > MAILDIR_FOLDERS_MAX) throw new MailError('limit', `more than ${MAILDIR_FOLDERS_MAX} folders`)
  let subscriptions: string[] = []
  try {
    subscriptions = parseSubscriptions(await readFile(join(root, 'subscriptions'), 'utf8'))
  } catch {}
  // INBOX first, then parents before children
  folders.sort((a, b) => a.name === 'INBOX' ? -1 : b.name === 'INBOX' ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  return { folders, subscriptions, layout }
}

export interface MaildirMessage { file: string, path: string, base: string, uid: number | null, flags: string[] }

/** A folder's messages (cur/ and new/), in UID order (those the uidlist does not know after, by name). */
export async function folderMessages (folder: MaildirFolder): Promise<{ messages: MaildirMessage[], uidlist: Uidlist | null }> {
  let keywords: string[] = []
  try { keywords = parseKeywords(await readFile(join(folder.path, 'dovecot-keywords'), 'utf8')) } catch {}
  let uidlist: Uidlist | null = null
  try { uidlist = parseUidlist(await readFile(join(folder.path, 'dovecot-uidlist'), 'utf8')) } catch {}
  const out: MaildirMessage[] = []
  for (const sub of ['cur', 'new']) {
    let files: string[] = []
    try { files = await readdir(join(folder.path, sub)) } catch {}
    for (const file of files) {
      if (file.startsWith('.')) continue
      const base = baseOf(file)
      // new/ holds mail not yet seen by a client: no flags (the file has no info part yet)
      out.push({ file, path: join(folder.path, sub, file), base, uid: uidlist?.uids.get(base) ?? null, flags: sub === 'cur' ? parseInfo(file, keywords) : [] })
    }
  }
  out.sort((a, b) => (a.uid ?? Infinity) - (b.uid ?? Infinity) || (a.base < b.base ? -1 : a.base > b.base ? 1 : 0))
  return { messages: out, uidlist }
}

// ---- import -------------------------------------------------------------------------------------------------

/**
 * Copies a Maildir into a user's mail: every folder (created if missing), every message with its flags, keywords
 * and internal date, the subscriptions. A message's global id is derived from its folder and base name, so a
 * second run adds nothing. UIDs: each message is offered the UID the uidlist gives it; the user's primary takes
 * it when it is at or above the mailbox's UIDNEXT (an empty or freshly created mailbox), else the next one (the
 * order is kept either way).
 */
export async function importMaildir (root: string, target: MailTarget, opts: { signal?: AbortSignal, onMessage?: (bytes: number) => void } = {}): Promise<ImportReport> {
  const report = emptyImportReport()
  const { folders, subscriptions } = await scanMaildir(root)
  for (const folder of folders) {
    opts.signal?.throwIfAborted()
    await target.ensureMailbox(folder.name)
    report.folders++
    const { messages } = await folderMessages(folder)
    for (const m of messages) {
      opts.signal?.throwIfAborted()
      let st
      try {
        st = await stat(m.path)
      } catch (err) {
        report.skipped.push({ folder: folder.name, item: m.file, reason: `unreadable: ${(err as Error).message}` })
        continue
      }
      if (st.size > MAILDIR_MESSAGE_BYTES_MAX) {
        report.skipped.push({ folder: folder.name, item: m.file, reason: `larger than ${MAILDIR_MESSAGE_BYTES_MAX} bytes` })
        continue
      }
      const raw = toCrlf(await readFile(m.path))
      const res = await appendOrSkip(target, folder.name, m.file, {
        raw, flags: m.flags, internalDate: Math.floor(st.mtimeMs), gid: importGid('maildir', folder.name, m.base), ...(m.uid !== null ? { uid: m.uid } : {})
      }, report)
      if (res === null) continue
      if (res.existed) {
        report.existing++
        continue
      }
      report.messages++
      report.bytes += raw.length
      if (m.uid !== null && res.uid === m.uid) report.uidsKept++
      opts.onMessage?.(raw.length)
    }
  }
  const names = new Set(folders.map(f => f.name))
  for (const s of subscriptions) {
    if (names.has(s)) await target.subscribe(s)
  }
  return report
}

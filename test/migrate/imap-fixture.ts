// The source mailbox of the IMAP import tests and benchmark, and the comparison of two accounts by a real client
// (imapflow) on both sides: every folder (hierarchy mapped to '/'), special-use, subscriptions, and per folder
// every message as (internal date, size, flags and keywords, SHA-256 of its bytes), compared as multisets.

import { createHash } from 'node:crypto'
import assert from 'node:assert/strict'
import { ImapFlow } from 'imapflow'
import { prng } from '../helpers/prng.ts'

export interface FixtureStats { folders: number, messages: number, bytes: number }

// Dovecot's Maildir++ uses '.' as the delimiter: 'Work.Projects' is Work/Projects here. 'Lists' is never made,
// so the source shows it as a \NonExistent parent of Lists.dev.
export const FOLDERS = ['INBOX', 'INBOX.Receipts', 'Work', 'Work.Projects', 'Work.Projects.2026', 'Sent', 'Drafts', 'Trash', 'Junk', 'Archive', 'Archive.2025', 'Lists.dev', 'Ünïcödé']
const SUBSCRIBED = new Set(['INBOX', 'Work', 'Work.Projects', 'Sent', 'Drafts', 'Archive', 'Ünïcödé'])
const SYSTEM_FLAGS = ['\\Seen', '\\Answered', '\\Flagged', '\\Deleted', '\\Draft']
const KEYWORDS = ['$Forwarded', '$MDNSent', 'project-x', 'Important_2']

export function client (port: number, user: string, pass: string, opts: { secure?: boolean, ca?: string } = {}): ImapFlow {
  const c = new ImapFlow({
    host: '127.0.0.1',
    port,
    secure: opts.secure ?? false,
    doSTARTTLS: opts.secure === true ? undefined : false,
    auth: { user, pass },
    logger: false,
    disableAutoIdle: true,
    tls: { rejectUnauthorized: false }
  } as ConstructorParameters<typeof ImapFlow>[0])
  c.on('error', () => {})
  return c
}

function message (rand: () => number, i: number, size: number, withId: boolean): Buffer {
  const head = [
    `From: Sender ${i} <sender${i}@source.test>`,
    'To: alice@source.test',
    `Subject: message ${i} ${rand() < 0.3 ? 'caf\u00e9 \u00fcber' : 'plain'}`,
    `Date: Mon, 1 Jun 2025 10:${String(i % 60).padStart(2, '0')}:00 +0000`,
    ...(withId ? [`Message-ID: <m${i}.${Math.floor(rand() * 1e9)}@source.test>`] : []),
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit'
  ].join('\r\n') + '\r\n\r\n'
  const lines: string[] = []
  let n = Buffer.byteLength(head)
  while (n < size) {
    const l = `line ${lines.length} of ${i}: ${'x'.repeat(Math.floor(rand() * 60))} \u00e9\u00e8 \u2713`
    lines.push(l)
    n += Buffer.byteLength(l) + 2
  }
  return Buffer.from(head + lines.join('\r\n') + '\r\n')
}

/** Fills the source account: FOLDERS, `messages` messages spread over them (a few large, some without a
 * Message-ID, a duplicate pair), random flags and keywords, internal dates over five years. */
export async function populate (c: ImapFlow, opts: { messages: number, seed?: number, large?: number }): Promise<FixtureStats> {
  const rand = prng(opts.seed ?? 15)
  const stats: FixtureStats = { folders: FOLDERS.length, messages: 0, bytes: 0 }
  for (const f of FOLDERS) {
    if (f !== 'INBOX') await c.mailboxCreate(f).catch(() => {})
    if (SUBSCRIBED.has(f)) await c.mailboxSubscribe(f)
    else await c.mailboxUnsubscribe(f).catch(() => {})
  }
  const large = opts.large ?? 3
  const append = async (folder: string, raw: Buffer, flags: string[], date: Date): Promise<void> => {
    await c.append(folder, raw, flags, date)
    stats.messages++
    stats.bytes += raw.length
  }
  for (let i = 0; i < opts.messages; i++) {
    const folder = i < opts.messages / 3 ? 'INBOX' : FOLDERS[Math.floor(rand() * FOLDERS.length)]
    const size = i < large ? 2_000_000 + Math.floor(rand() * 3_000_000) : 300 + Math.floor(rand() * 20_000)
    const raw = message(rand, i, size, rand() > 0.1)
    const flags = [...SYSTEM_FLAGS, ...KEYWORDS].filter(() => rand() < 0.25)
    const date = new Date(Date.UTC(2021, 0, 1) + Math.floor(rand() * 5 * 365 * 86400) * 1000)
    await append(folder, raw, flags, date)
    if (i === 7) await append(folder, raw, flags, date) // an identical copy: both arrive, once each
  }
  return stats
}

/** Adds `n` messages to INBOX and Work (the second, incremental, run copies exactly these). */
export async function addMore (c: ImapFlow, n: number, seed = 99): Promise<void> {
  const rand = prng(seed)
  for (let i = 0; i < n; i++) {
    await c.append(i % 2 === 0 ? 'INBOX' : 'Work', message(rand, 100_000 + i, 1000 + Math.floor(rand() * 5000), true), ['\\Seen'], new Date(Date.UTC(2026, 0, 1) + i * 1000))
  }
}

export const mapName = (p: string): string => p.split('.').map((x, i) => i === 0 && x.toUpperCase() === 'INBOX' ? 'INBOX' : x).join('/')

async function folderDigest (c: ImapFlow, path: string): Promise<string[]> {
  const box = await c.mailboxOpen(path, { readOnly: true })
  if (box.exists === 0) return []
  const out: string[] = []
  for await (const m of c.fetch('1:*', { uid: true, flags: true, internalDate: true, size: true, source: true })) {
    const flags = [...(m.flags ?? [])].filter(f => f !== '\\Recent').sort().join(' ')
    const date = m.internalDate instanceof Date ? m.internalDate.getTime() : Date.parse(String(m.internalDate))
    out.push(`${date} ${m.size} [${flags}] ${createHash('sha256').update(m.source ?? Buffer.alloc(0)).digest('hex')}`)
  }
  return out.sort()
}

/** Asserts that every folder of the source is in the target with the same messages, flags and dates. */
export async function assertSameMail (src: ImapFlow, dst: ImapFlow): Promise<{ folders: number, messages: number }> {
  const srcList = await src.list()
  const dstList = await dst.list()
  const dstByName = new Map(dstList.map(f => [f.path, f]))
  let folders = 0
  let messages = 0
  for (const f of srcList) {
    const name = mapName(f.path)
    const d = dstByName.get(name)
    assert.ok(d !== undefined, `folder ${f.path} is in the target as ${name}`)
    if (f.flags.has('\\Noselect') || f.flags.has('\\NonExistent')) continue
    if (f.specialUseSource === 'extension') assert.equal(d.specialUse, f.specialUse, `special-use of ${name}`)
    if (f.subscribed === true) assert.equal(d.subscribed, true, `${name} subscribed`)
    const a = await folderDigest(src, f.path)
    const b = await folderDigest(dst, name)
    assert.deepEqual(b, a, `messages of ${f.path} / ${name}`)
    folders++
    messages += a.length
  }
  return { folders, messages }
}

// mbox, read (import) and written (export). A message starts at a line "From " (after a blank line or at the start
// of the file); inside a message mboxrd escapes every line matching /^>*From / with one more '>', mboxo only
// "From " itself: reading removes one '>' from /^>+From / (right for mboxrd, and for mboxo's only escape).
// Flags travel in Status: (R = \Seen, O = not recent), X-Status: (A = \Answered, F = \Flagged, T = \Draft,
// D = \Deleted) and X-Keywords: (space-separated), as Dovecot's and Thunderbird's mbox code write them; those
// three headers are taken out of the message when read (Dovecot hides them the same way). The From_ line's date
// is the internal date. Line ends: LF in the file, CRLF in the store.

import { createReadStream } from 'node:fs'
import type { WriteStream } from 'node:fs'
import { once } from 'node:events'
import { MailError } from '../../store/index.ts'
import { importGid, MAILDIR_MESSAGE_BYTES_MAX, toCrlf } from './maildir.ts'
import type { ImportReport, MailTarget } from './types.ts'
import { emptyImportReport } from './types.ts'
import { createHash } from 'node:crypto'
import { appendOrSkip } from './quota.ts'

export const MBOX_MESSAGE_BYTES_MAX = MAILDIR_MESSAGE_BYTES_MAX
const FLAG_HEADERS = /^(status|x-status|x-keywords):/i

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat']

/** asctime(3) in UTC, as From_ lines carry it: "Thu Jan  2 03:04:05 2020". */
export function asctime (ms: number): string {
  const d = new Date(ms)
  const p = (n: number): string => String(n).padStart(2, '0')
  return `${DAYS[d.getUTCDay()]} ${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} ${d.getUTCFullYear()}`
}

/** The date of a From_ line ("From sender Thu Jan  2 03:04:05 2020"), or null. */
export function fromLineDate (line: string): number | null {
  const m = /([A-Z][a-z]{2}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2})(?: [A-Z+-][\w+-]*)? (\d{4})\s*$/.exec(line)
  if (m === null) return null
  const mon = MONTHS.indexOf(m[1])
  if (mon < 0) return null
  const t = Date.UTC(Number(m[6]), mon, Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5]))
  return Number.isFinite(t) ? t : null
}

export interface MboxMessage { raw: Buffer, flags: string[], internalDate: number | null }

/** Turns one message's lines (LF-split, From_ line excluded) into the stored message and its flags. */
function finish (lines: Buffer[], fromDate: number | null): MboxMessage {
  // the blank line that separates messages belongs to the mbox, not to the message
  if (lines.length > 0 && lines[lines.length - 1].length === 0) lines.pop()
  const flags = new Set<string>()
  const out: Buffer[] = []
  let inHeader = true
  for (const l of lines) {
    let line = l.length > 0 && l[l.length - 1] === 13 ? l.subarray(0, l.length - 1) : l
    if (inHeader && line.length === 0) inHeader = false
    if (inHeader) {
      const text = line.toString('latin1')
      if (FLAG_HEADERS.test(text)) {
        const [name, value] = [text.slice(0, text.indexOf(':')).toLowerCase(), text.slice(text.indexOf(':') + 1).trim()]
        if (name === 'status' && value.includes('R')) flags.add('\\Seen')
        if (name === 'x-status') {
          if (value.includes('A')) flags.add('\\Answered')
          if (value.includes('F')) flags.add('\\Flagged')
          if (value.includes('T')) flags.add('\\Draft')
          if (value.includes('D')) flags.add('\\Deleted')
        }
        if (name === 'x-keywords') for (const k of value.split(/[\s,]+/)) if (k !== '') flags.add(k)
        continue
      }
    }
    if (line.length >= 6 && line[0] === 0x3e) { // '>': mboxrd unescaping
      let i = 0
      while (i < line.length && line[i] === 0x3e) i++
      if (line.subarray(i, i + 5).toString('latin1') === 'From ') line = line.subarray(1)
    }
    out.push(line)
  }
  const raw = out.length === 0 ? Buffer.alloc(0) : Buffer.concat(out.flatMap((l, i) => i < out.length - 1 ? [l, Buffer.from('\r\n')] : [l, Buffer.from('\r\n')]))
  return { raw: toCrlf(raw), flags: [...flags], internalDate: fromDate }
}

/** The messages of an mbox file, one at a time (memory: one message). */
export async function * readMbox (file: string, opts: { signal?: AbortSignal } = {}): AsyncIterable<MboxMessage | { tooBig: number }> {
  let lines: Buffer[] = []
  let size = 0
  let fromDate: number | null = null
  let started = false
  let skipping = false
  let prevBlank = true
  let carry: Buffer = Buffer.alloc(0)
  const take = function * (line: Buffer): Generator<MboxMessage | { tooBig: number }> {
    const isFrom = prevBlank && line.length >= 5 && line.subarray(0, 5).toString('latin1') === 'From '
    const blank = line.length === 0 || (line.length === 1 && line[0] === 13)
    if (isFrom) {
      if (started) {
        if (skipping) yield { tooBig: size }
        else yield finish(lines, fromDate)
      }
      started = true
      skipping = false
      lines = []
      size = 0
      fromDate = fromLineDate(line.toString('latin1'))
    } else if (started) {
      size += line.length + 2
      if (size > MBOX_MESSAGE_BYTES_MAX) {
        skipping = true
        lines = []
      } else if (!skipping) {
        lines.push(line)
      }
    } else if (!blank) {
      throw new MailError('invalid', 'not an mbox file: it does not start with a "From " line')
    }
    prevBlank = blank
  }
  for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
    opts.signal?.throwIfAborted()
    let buf = carry.length === 0 ? chunk : Buffer.concat([carry, chunk])
    let nl: number
    while ((nl = buf.indexOf(10)) >= 0) {
      yield * take(Buffer.from(buf.subarray(0, nl)))
      buf = buf.subarray(nl + 1)
    }
    // a line longer than a message can be is the rest of a message being skipped
    carry = buf.length > MBOX_MESSAGE_BYTES_MAX ? Buffer.alloc(0) : Buffer.from(buf)
    if (buf.length > MBOX_MESSAGE_BYTES_MAX && started) { skipping = true; size += buf.length }
  }
  if (carry.length > 0) yield * take(carry)
  if (started) {
    if (skipping) yield { tooBig: size }
    else yield finish(lines, fromDate)
  }
}

/**
 * Copies an mbox file into one folder of a user's mail (created if missing). A message's global id comes from the
 * folder, its position in the file and its content, so a second run adds nothing.
 */
export async function importMbox (file: string, folder: string, target: MailTarget, opts: { signal?: AbortSignal, now?: () => number } = {}): Promise<ImportReport> {
  const report = emptyImportReport()
  await target.ensureMailbox(folder)
  report.folders = 1
  let n = 0
  for await (const m of readMbox(file, opts)) {
    n++
    if ('tooBig' in m) {
      report.skipped.push({ folder, item: `message ${n}`, reason: `larger than ${MBOX_MESSAGE_BYTES_MAX} bytes` })
      continue
    }
    const digest = createHash('sha256').update(m.raw).digest('hex')
    const res = await appendOrSkip(target, folder, `message ${n}`, { raw: m.raw, flags: m.flags, internalDate: m.internalDate ?? (opts.now ?? Date.now)(), gid: importGid('mbox', folder, String(n), digest) }, report)
    if (res === null) continue
    if (res.existed) { report.existing++; continue }
    report.messages++
    report.bytes += m.raw.length
  }
  return report
}

/** Writes one message in mboxrd form (LF line ends, flags as Status/X-Status/X-Keywords at the end of the header). */
export async function writeMboxMessage (out: WriteStream, raw: Buffer, flags: string[], internalDate: number): Promise<number> {
  const text = raw.toString('latin1').replace(/\r\n/g, '\n')
  const split = text.indexOf('\n\n')
  const header = split < 0 ? text : text.slice(0, split + 1)
  const body = split < 0 ? '' : text.slice(split + 1)
  const status = (flags.includes('\\Seen') ? 'R' : '') + 'O'
  const xs = [['\\Answered', 'A'], ['\\Flagged', 'F'], ['\\Draft', 'T'], ['\\Deleted', 'D']].filter(([f]) => flags.includes(f)).map(([, l]) => l).join('')
  const kws = flags.filter(f => !f.startsWith('\\'))
  const added = `Status: ${status}\n` + (xs !== '' ? `X-Status: ${xs}\n` : '') + (kws.length > 0 ? `X-Keywords: ${kws.join(' ')}\n` : '')
  const escape = (s: string): string => s.replace(/^(>*From )/gm, '>$1')
  const withNl = (header.endsWith('\n') || header === '' ? header : header + '\n')
  let chunk = `From MAILER-DAEMON ${asctime(internalDate)}\n` + escape(withNl) + added + escape(body)
  if (!chunk.endsWith('\n')) chunk += '\n'
  chunk += '\n'
  const buf = Buffer.from(chunk, 'latin1')
  if (!out.write(buf)) await once(out, 'drain')
  return buf.length
}

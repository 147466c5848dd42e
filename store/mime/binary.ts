// Binary content appended with an IMAP literal8 (RFC 3516 section 4.4): parts whose bytes a base-spec literal
// cannot carry are stored base64-encoded, as Dovecot does. RFC 3516 section 6 asks that BODYSTRUCTURE describe such
// parts in a transfer encoding IMAP4 accepts and that BODY[n] return them in that form; the decoded bytes stay
// reachable whole through BINARY[n] (section 4.4: "MUST NOT result in a loss of data").

import { fieldName, scanHeader } from './header.ts'
import { analyze } from './parse.ts'
import type { MimePart } from './types.ts'

/** RFC 2045 section 6.8: encoded lines are at most 76 characters. */
const BASE64_LINE_CHARS = 76

/** Whether a leaf part must be re-encoded: declared binary, or any NUL (no IMAP literal may carry one). */
function needsEncoding (raw: Buffer, part: MimePart): boolean {
  if (part.parts !== undefined || part.message !== undefined) return false
  if (part.encoding === 'binary') return true
  if (part.encoding !== '7bit' && part.encoding !== '8bit') return false
  return raw.subarray(part.bodyStart, part.bodyEnd).includes(0)
}

function leaves (part: MimePart, out: MimePart[]): MimePart[] {
  if (part.parts !== undefined) for (const child of part.parts) leaves(child, out)
  else if (part.message !== undefined) leaves(part.message.root, out)
  else out.push(part)
  return out
}

/** The length of the blank line that ends a header block [start, end), or 0 when it has none. */
function blankLineBytes (raw: Buffer, start: number, end: number): number {
  if (end - start >= 2 && raw[end - 1] === 0x0a && raw[end - 2] === 0x0d && (end - start === 2 || raw[end - 3] === 0x0a)) return 2
  if (end - start >= 1 && raw[end - 1] === 0x0a && (end - start === 1 || raw[end - 2] === 0x0a)) return 1
  return 0
}

function base64Lines (body: Buffer): Buffer {
  const text = body.toString('base64')
  const lines: string[] = []
  for (let i = 0; i < text.length; i += BASE64_LINE_CHARS) lines.push(text.slice(i, i + BASE64_LINE_CHARS))
  return Buffer.from(lines.join('\r\n'), 'latin1')
}

/**
 * The message with every binary leaf part (CTE binary, or NUL in a 7bit/8bit part) base64-encoded and its
 * Content-Transfer-Encoding field replaced; the message itself when no part needs it. A part whose header has no
 * blank line to insert the field before is left as it is.
 */
export function encodeBinaryParts (raw: Buffer): Buffer {
  if (!raw.includes(0) && !/content-transfer-encoding\s*:\s*binary/i.test(raw.toString('latin1'))) return raw
  let root: MimePart
  try {
    root = analyze(raw).root
  } catch {
    return raw // analyzeMessage's fallback: one opaque part, stored as sent
  }
  const parts = leaves(root, []).filter((p) => needsEncoding(raw, p))
  const out: Buffer[] = []
  let pos = 0
  for (const part of parts) {
    const blank = blankLineBytes(raw, part.headerStart, part.headerEnd)
    if (blank === 0 || part.headerStart < pos) continue
    const insertAt = part.headerEnd - blank
    // the header without its Content-Transfer-Encoding fields, then ours before the blank line
    for (const field of scanHeader(raw, part.headerStart, insertAt, null).fields) {
      if (fieldName(raw, field).toLowerCase() !== 'content-transfer-encoding') continue
      out.push(raw.subarray(pos, field.start))
      pos = field.end
    }
    out.push(raw.subarray(pos, insertAt), Buffer.from('Content-Transfer-Encoding: base64\r\n'), raw.subarray(insertAt, part.bodyStart))
    out.push(base64Lines(raw.subarray(part.bodyStart, part.bodyEnd)))
    pos = part.bodyEnd
  }
  if (pos === 0) return raw
  out.push(raw.subarray(pos))
  return Buffer.concat(out)
}

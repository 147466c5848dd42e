/**
 * store/mime: parse a message once at delivery into the structure IMAP needs. Pure: a Buffer in, plain
 * JSON-serialisable data out, no I/O. IMAP renders ENVELOPE, BODYSTRUCTURE and BODY[section] from the
 * cached MessageMeta and slices the raw message with its offsets; SEARCH uses textParts, decodedText,
 * headerFields and decodeHeaderValue.
 *
 * analyzeMessage never throws, runs in time linear in the message (times a small constant bounded by
 * MIME_DEPTH_MAX), and bounds the size of its output by the limits in constants.ts.
 */

import { emptyEnvelope } from './address.ts'
import { fieldName, fieldValue, scanHeader } from './header.ts'
import { analyze } from './parse.ts'
import type { HeaderField, MessageMeta, MimePart } from './types.ts'

export type { Address, EncapsulatedMessage, Envelope, HeaderField, MessageMeta, MimePart } from './types.ts'
export type { Params } from './params.ts'
export * from './constants.ts'
export { decodeCharset, decodeHeaderValue, decodedText, decodeTransfer, paramValue } from './decode.ts'
export { parseAddressList } from './address.ts'
export { encodeBinaryParts } from './binary.ts'

/** The structure of a raw message (RFC 5322 + MIME). Any byte string is a message: garbage yields a
 * text/plain part holding it. */
export function analyzeMessage (raw: Buffer): MessageMeta {
  try {
    return analyze(raw)
  } catch {
    // Defence in depth: the parser has no throwing path that tests found, but delivery must not fail on a
    // structure it cannot read. The whole message is then one opaque text part.
    const len = raw.length
    return {
      envelope: emptyEnvelope(),
      root: {
        headerStart: 0, headerEnd: 0, bodyStart: 0, bodyEnd: len, type: 'text', subtype: 'plain',
        params: [['charset', 'us-ascii']], id: null, description: null, encoding: '7bit', size: len, lines: 0,
        md5: null, disposition: null, language: null, location: null
      }
    }
  }
}

/**
 * The part an IMAP section path names (RFC 3501 section 6.4.5), or null. `[]` is the message itself.
 * A multipart's children are numbered from 1; a message/rfc822 part numbers into its encapsulated message
 * (its multipart children, or 1 = its non-multipart body); a non-multipart top-level message has part 1 =
 * itself. For a returned message/rfc822 part, `part.message.root` holds the header that HEADER and TEXT of
 * that section refer to; MIME refers to the returned part's own header.
 */
export function findPart (meta: MessageMeta, path: readonly number[]): MimePart | null {
  let cur = meta.root
  for (let i = 0; i < path.length; i++) {
    const n = path[i]
    if (!Number.isSafeInteger(n) || n < 1) return null
    let top = i === 0
    // A message/rfc822 part numbers into its encapsulated message. The top-level message does not: even when
    // its own type is message/rfc822, its part 1 is its body (the encapsulated message whole, RFC 3501 6.4.5).
    if (cur.message !== undefined && i > 0) {
      cur = cur.message.root
      top = true
    }
    if (cur.parts !== undefined) {
      const child = cur.parts[n - 1]
      if (child === undefined) return null
      cur = child
    } else if (!top || n !== 1) {
      return null
    }
  }
  return cur
}

/** Leaf text/* parts, in order, including those inside encapsulated messages: what SEARCH BODY/TEXT reads. */
export function textParts (meta: MessageMeta): MimePart[] {
  const out: MimePart[] = []
  const walk = (part: MimePart): void => {
    if (part.parts !== undefined) for (const child of part.parts) walk(child)
    else if (part.message !== undefined) walk(part.message.root)
    else if (part.type === 'text') out.push(part)
  }
  walk(meta.root)
  return out
}

/** The fields of the header block raw[start, end) as names (as written) and byte spans, values not decoded: what
 * HEADER.FIELDS needs (decoding every value was most of a header FETCH's time). */
export function headerFieldSpans (raw: Buffer, start: number, end: number): Array<{ name: string, start: number, end: number }> {
  const limit = Math.min(Math.max(0, end), raw.length)
  const from = Math.min(Math.max(0, start), limit)
  return scanHeader(raw, from, limit, null).fields.map(f => ({ name: fieldName(raw, f), start: f.start, end: f.end }))
}

/** The fields of the header block raw[start, end): names as written, values unfolded and trimmed (8-bit
 * bytes read as UTF-8 when the field is valid UTF-8, else as Latin-1), with the byte span of each field. */
export function headerFields (raw: Buffer, start: number, end: number): HeaderField[] {
  const limit = Math.min(Math.max(0, end), raw.length)
  const from = Math.min(Math.max(0, start), limit)
  return scanHeader(raw, from, limit, null).fields.map(f => ({ name: fieldName(raw, f), value: fieldValue(raw, f), start: f.start, end: f.end }))
}

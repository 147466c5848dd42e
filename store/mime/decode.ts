// Decoding for search and display: RFC 2047 encoded words, RFC 2231 extended parameter values, transfer
// encodings (RFC 2045 section 6) and charsets. Only called on demand, never at delivery. libmime does the
// encoded words and the charsets that WHATWG TextDecoder does not know (it falls back to UTF-8 itself).

import { createRequire } from 'node:module'
import { TextDecoder } from 'node:util'
import { FIELD_VALUE_BYTES_MAX } from './constants.ts'
import type { Params } from './params.ts'
import type { MimePart } from './types.ts'

interface Libmime {
  decodeWords (value: string): string
  decodeWord (charset: string, encoding: string, text: string | Buffer): string
}

// libmime ships no types; this is the slice of its public API used here.
const libmime = createRequire(import.meta.url)('libmime') as Libmime

/** Decoders built so far, by charset label; bounded because the labels come from messages. */
const DECODERS_CACHED_MAX = 64
const decoders = new Map<string, TextDecoder | null>()

/** Decodes RFC 2047 encoded words to a Unicode string; anything undecodable stays as written. */
export function decodeHeaderValue (value: string): string {
  if (!value.includes('=?')) return value
  try {
    return libmime.decodeWords(value.length > FIELD_VALUE_BYTES_MAX ? value.slice(0, FIELD_VALUE_BYTES_MAX) : value)
  } catch {
    return value
  }
}

/** Bytes in a named charset to a string. Unknown charsets decode as UTF-8 (with replacement characters). */
export function decodeCharset (bytes: Buffer, charset: string | null): string {
  const label = (charset ?? '').trim().toLowerCase()
  if (label === '' || label === 'utf-8' || label === 'utf8' || label === 'us-ascii' || label === 'ascii') {
    // 8-bit bytes under us-ascii are most often UTF-8 (RFC 6532 senders that forgot to say so).
    return bytes.toString('utf8')
  }
  let decoder = decoders.get(label)
  if (decoder === undefined) {
    try {
      decoder = new TextDecoder(label)
    } catch {
      decoder = null
    }
    if (decoders.size < DECODERS_CACHED_MAX) decoders.set(label, decoder)
  }
  if (decoder !== null) return decoder.decode(bytes)
  try {
    // Any encoding letter other than Q or B makes libmime decode the bytes as they are, in the charset.
    return libmime.decodeWord(label, 'binary', bytes)
  } catch {
    return bytes.toString('utf8')
  }
}

/** Undoes the Content-Transfer-Encoding of a body; unknown encodings pass the bytes through. */
export function decodeTransfer (body: Buffer, encoding: string): Buffer {
  if (encoding === 'base64') return decodeBase64(body)
  if (encoding === 'quoted-printable') return decodeQuotedPrintable(body)
  return body
}

function decodeBase64 (body: Buffer): Buffer {
  // Node skips white space itself, but stops at `=` or junk in the middle: keep only the alphabet.
  const text = body.toString('latin1')
  return Buffer.from(/[^A-Za-z0-9+/\r\n]/.test(text) ? text.replace(/[^A-Za-z0-9+/]/g, '') : text, 'base64')
}

function hexValue (c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30
  if (c >= 0x41 && c <= 0x46) return c - 0x37
  if (c >= 0x61 && c <= 0x66) return c - 0x57
  return -1
}

/**
 * RFC 2045 section 6.7; lenient: a broken `=` escape stays literal. Rule 3: white space at the end of an encoded
 * line is transport padding, deleted when decoding.
 */
export function decodeQuotedPrintable (body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(body.length)
  let n = 0
  const len = body.length
  for (let i = 0; i < len; i++) {
    const c = body[i]
    if (c === 0x20 || c === 0x09) {
      let j = i + 1
      while (j < len && (body[j] === 0x20 || body[j] === 0x09)) j++
      // trailing: before CRLF, LF or the end of the body. Before a soft line break (`=`) it is kept: that is how
      // an encoder protects white space that ends a line.
      if (j === len || body[j] === 0x0a || (body[j] === 0x0d && body[j + 1] === 0x0a)) {
        i = j - 1
        continue
      }
      body.copy(out, n, i, j)
      n += j - i
      i = j - 1
      continue
    }
    if (c !== 0x3d) { out[n++] = c; continue }
    const hi = i + 1 < len ? hexValue(body[i + 1]) : -1
    const lo = i + 2 < len ? hexValue(body[i + 2]) : -1
    if (hi >= 0 && lo >= 0) {
      out[n++] = hi * 16 + lo
      i += 2
      continue
    }
    // Soft line break: `=`, optional transport padding, then the line break.
    let j = i + 1
    while (j < len && (body[j] === 0x20 || body[j] === 0x09)) j++
    if (j < len && body[j] === 0x0d && j + 1 < len && body[j + 1] === 0x0a) { i = j + 1; continue }
    if (j < len && body[j] === 0x0a) { i = j; continue }
    if (j === len) break
    out[n++] = c
  }
  return out.subarray(0, n)
}

/** The value of a parameter, decoded: the RFC 2231 `name*` form first, else `name` with RFC 2047 words
 * decoded (many senders put encoded words in quoted filenames). Null when absent. */
export function paramValue (params: Params, name: string): string | null {
  const key = name.toLowerCase()
  let plain: string | null = null
  for (const [k, v] of params) {
    if (k === key + '*') return decodeExtended(v)
    if (k === key && plain === null) plain = v
  }
  return plain === null ? null : decodeHeaderValue(plain)
}

/** RFC 2231 section 4: `charset'language'percent-encoded`. */
function decodeExtended (value: string): string {
  const q1 = value.indexOf("'")
  const q2 = q1 === -1 ? -1 : value.indexOf("'", q1 + 1)
  const charset = q2 === -1 ? 'utf-8' : value.slice(0, q1)
  const text = q2 === -1 ? value : value.slice(q2 + 1)
  const bytes: number[] = []
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 0x25 && i + 2 < text.length && hexValue(text.charCodeAt(i + 1)) >= 0 && hexValue(text.charCodeAt(i + 2)) >= 0) {
      bytes.push(hexValue(text.charCodeAt(i + 1)) * 16 + hexValue(text.charCodeAt(i + 2)))
      i += 2
    } else if (c < 0x80) {
      bytes.push(c)
    } else {
      const cp = text.codePointAt(i) ?? c
      for (const b of Buffer.from(String.fromCodePoint(cp), 'utf8')) bytes.push(b)
      if (cp > 0xffff) i++
    }
  }
  return decodeCharset(Buffer.from(bytes), charset === '' ? null : charset)
}

/** The text of a leaf part for SEARCH: transfer-decoded, then converted from its charset. */
export function decodedText (raw: Buffer, part: MimePart): string {
  const body = raw.subarray(part.bodyStart, part.bodyEnd)
  return decodeCharset(decodeTransfer(body, part.encoding), paramValue(part.params, 'charset'))
}

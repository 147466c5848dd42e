// Header blocks: split into fields (RFC 5322 section 2.2), unfold (section 2.2.3) and decode field bytes as
// UTF-8 when they are valid UTF-8 (RFC 6532), else as Latin-1 so that no byte is lost. Everything here walks
// each line once; no regular expression that can backtrack touches untrusted text.

import { isAscii, isUtf8 } from 'node:buffer'
import { FIELD_VALUE_BYTES_MAX } from './constants.ts'

export const LF = 0x0a
export const CR = 0x0d
export const SP = 0x20
export const HT = 0x09
export const DASH = 0x2d
const COLON = 0x3a

/** Byte positions of one field; `end` is after the line break of its last line. */
export interface RawField {
  start: number
  nameEnd: number // the name is raw[start, nameEnd), trailing blanks before the colon removed
  valueStart: number // after the colon
  end: number
}

export type HeaderEnd = 'blank' | 'stop' | 'eof'

export interface HeaderScan {
  fields: RawField[]
  /** How the block ended: a blank line, a line `stopAt` accepted, or the limit. */
  kind: HeaderEnd
  /** After the blank line ('blank'), at the start of the accepted line ('stop'), or the limit ('eof'). */
  end: number
}

/** Splits the header block that starts at `start` into fields. Before each line that starts with `--`,
 * `stopAt(lineStart)` may end the block (a MIME boundary inside a part whose header never ended). */
export function scanHeader (raw: Buffer, start: number, limit: number, stopAt: ((lineStart: number) => boolean) | null): HeaderScan {
  const fields: RawField[] = []
  let current: RawField | null = null
  let pos = start
  while (pos < limit) {
    const c = raw[pos]
    if (c === LF) return { fields, kind: 'blank', end: pos + 1 }
    if (c === CR && pos + 1 < limit && raw[pos + 1] === LF) return { fields, kind: 'blank', end: pos + 2 }
    if (c === DASH && stopAt !== null && pos + 1 < limit && raw[pos + 1] === DASH && stopAt(pos)) {
      return { fields, kind: 'stop', end: pos }
    }
    const nl = raw.indexOf(LF, pos)
    const lineEnd = nl === -1 || nl >= limit ? limit : nl + 1
    if (c === SP || c === HT) {
      // RFC 5322 section 2.2.3: a line that starts with white space continues the field above it.
      if (current !== null) current.end = lineEnd
    } else {
      let colon = pos
      while (colon < lineEnd && raw[colon] !== COLON) colon++
      if (colon < lineEnd) {
        let nameEnd = colon
        while (nameEnd > pos && (raw[nameEnd - 1] === SP || raw[nameEnd - 1] === HT)) nameEnd--
        current = { start: pos, nameEnd, valueStart: colon + 1, end: lineEnd }
        fields.push(current)
      } else {
        // Not a field (no colon): skipped, and so are its continuation lines.
        current = null
      }
    }
    pos = lineEnd
  }
  return { fields, kind: 'eof', end: limit }
}

export type TextEncoding = 'latin1' | 'utf8'

/** How the bytes raw[start, end) read: as UTF-8 when they are valid UTF-8 (RFC 6532), else as Latin-1.
 * Decided per field, so that one stray Latin-1 byte elsewhere does not garble a UTF-8 subject. */
export function textEncoding (raw: Buffer, start: number, end: number): TextEncoding {
  if (end <= start) return 'latin1'
  const bytes = raw.subarray(start, end)
  if (isAscii(bytes)) return 'latin1'
  return isUtf8(bytes) ? 'utf8' : 'latin1'
}

export function fieldName (raw: Buffer, f: RawField): string {
  return raw.toString('latin1', f.start, f.nameEnd)
}

/** The bytes of a field value that are read: at most FIELD_VALUE_BYTES_MAX. */
export function valueEnd (f: RawField): number {
  return Math.min(f.end, f.valueStart + FIELD_VALUE_BYTES_MAX)
}

/** The field value, unfolded (every line break inside a field precedes white space, so removing them all
 * is RFC 5322 unfolding) and trimmed of blanks. */
export function fieldValue (raw: Buffer, f: RawField): string {
  const end = valueEnd(f)
  let s = raw.toString(textEncoding(raw, f.valueStart, end), f.valueStart, end)
  if (s.includes('\n')) s = s.replace(/\r?\n/g, '')
  return trimBlanks(s)
}

function isBlank (code: number): boolean {
  return code === SP || code === HT || code === CR || code === LF
}

/** Trims SP, HT, CR and LF only: String.prototype.trim would also eat U+00A0 of a Latin-1 value. */
export function trimBlanks (s: string): string {
  let a = 0
  let b = s.length
  while (a < b && isBlank(s.charCodeAt(a))) a++
  while (b > a && isBlank(s.charCodeAt(b - 1))) b--
  return a === 0 && b === s.length ? s : s.slice(a, b)
}

/**
 * The base subject of RFC 5256 section 2.1, which SORT SUBJECT and both THREAD algorithms compare, and whether
 * the extraction removed a reply or forward mark (section 3, REFERENCES step 5). "All servers and disconnected
 * clients MUST use exactly this algorithm", so the steps below follow the section's numbering; the grammar is
 * section 5's:
 *
 *     subj-refwd   = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
 *     subj-blob    = "[" *BLOBCHAR "]" *WSP
 *     subj-leader  = (*subj-blob subj-refwd) / WSP
 *     subj-trailer = "(fwd)" / WSP
 *     subj-fwd-hdr = "[fwd:"          subj-fwd-trl = "]"
 */
import { mime } from '../../store/index.ts'

export interface BaseSubject {
  /** The base subject, decoded and casemapped (casemap below): the form SORT and both THREAD algorithms compare. */
  subject: string
  /** A subj-refwd, a "(fwd)" subj-trailer or a subj-fwd-hdr/subj-fwd-trl pair was removed. */
  reply: boolean
}

/** Longest subject considered (decoded characters): a header field can be long, the sort key need not be. */
export const BASE_SUBJECT_CHARS_MAX = 4096

const BLOB = '\\[[^\\[\\]]*\\][ \\t]*'
/** Step 3: one subj-leader that is not white space: blobs, then "re", "fw" or "fwd", white space, a blob, ":". */
const REFWD = new RegExp(`^(?:${BLOB})*(?:re|fwd?)[ \\t]*(?:${BLOB})?:`, 'i')
/** Step 4: a leading subj-blob. */
const LEADING_BLOB = new RegExp(`^${BLOB}`)
const TRAILER_FWD = /\(fwd\)$/i

function isWsp (code: number): boolean {
  return code === 0x20 || code === 0x09
}

/**
 * i;unicode-casemap (RFC 5051), the collation I18NLEVEL=1 asks of SORT and THREAD (RFC 5256 section 1, RFC 5255
 * section 4.1): each character's simple case mapping (upper case stands in for title case; they differ only for the
 * few digraph letters), then compatibility decomposition (NFKD), so `Résumé`, `RÉSUMÉ` and `RE\u0301SUME\u0301` are one
 * key. ASCII text, the common case, is upper-cased alone.
 */
export function casemap (s: string): string {
  if (/^[\x00-\x7f]*$/.test(s)) return s.replace(/[a-z]+/g, (m) => m.toUpperCase())
  let out = ''
  for (const ch of s) {
    const upper = ch.toUpperCase()
    // a full mapping (ß → SS) is not a simple one: the character stays
    out += upper.length === ch.length ? upper : ch
  }
  return out.normalize('NFKD')
}

/** `value`: the Subject field as the header holds it (unfolded, RFC 2047 words still encoded), or null when absent. */
export function baseSubject (value: string | null): BaseSubject {
  if (value === null) return { subject: '', reply: false }
  // (1) encoded words decoded; tabs and line breaks become spaces, runs of spaces one space
  let s = mime.decodeHeaderValue(value).slice(0, BASE_SUBJECT_CHARS_MAX).replace(/[\t\r\n]/g, ' ').replace(/ {2,}/g, ' ')
  let reply = false
  for (;;) {
    // (2) trailers: "(fwd)" and white space, repeatedly
    for (;;) {
      if (s.length > 0 && isWsp(s.charCodeAt(s.length - 1))) s = s.slice(0, -1)
      else if (TRAILER_FWD.test(s)) { s = s.slice(0, -5); reply = true } else break
    }
    // (3) and (4), repeated (5) until neither removes anything
    for (let found = true; found;) {
      found = false
      for (;;) {
        if (s.length > 0 && isWsp(s.charCodeAt(0))) { s = s.slice(1); found = true; continue }
        const leader = REFWD.exec(s)
        if (leader === null) break
        s = s.slice(leader[0].length)
        reply = true
        found = true
      }
      const blob = LEADING_BLOB.exec(s)
      // a blob goes only if something is left after it (the blob swallows the white space after it)
      if (blob !== null && blob[0].length < s.length) { s = s.slice(blob[0].length); found = true }
    }
    // (6) "[fwd:" ... "]" around the whole text: removed, and again from step 2
    if (s.length >= 6 && s.slice(0, 5).toLowerCase() === '[fwd:' && s.endsWith(']')) {
      s = s.slice(5, -1)
      reply = true
      continue
    }
    break
  }
  return { subject: casemap(s), reply }
}

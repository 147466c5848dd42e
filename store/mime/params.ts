// Content-Type and Content-Disposition values (RFC 2045 section 5.1, RFC 2183) with RFC 2231 parameter
// continuations joined. Lenient, as mail in the wild needs: a missing `;`, unquoted values with spaces,
// unterminated quotes and comments all parse to something; nothing here can throw or backtrack.

import { PARAM_SECTIONS_MAX, PARAMS_MAX } from './constants.ts'

export type Params = [string, string][]

export interface ContentType {
  type: string
  subtype: string
  params: Params
}

// RFC 2045 section 5.1: token := 1*<any (US-ASCII) CHAR except SPACE, CTLs, or tspecials>.
const TSPECIALS = '()<>@,;:\\"/[]?='
const TOKEN = new Uint8Array(128)
for (let c = 0x21; c < 0x7f; c++) TOKEN[c] = TSPECIALS.includes(String.fromCharCode(c)) ? 0 : 1

function isToken (code: number): boolean {
  // 8-bit characters are let through: some senders put them in parameter names or types.
  return code >= 0x80 || TOKEN[code] === 1
}

/** Skips white space and (nested) comments. */
function skipCfws (s: string, i: number): number {
  while (i < s.length) {
    const c = s.charCodeAt(i)
    if (c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a) {
      i++
    } else if (c === 0x28) {
      let depth = 0
      while (i < s.length) {
        const d = s.charCodeAt(i)
        if (d === 0x5c) i++
        else if (d === 0x28) depth++
        else if (d === 0x29 && --depth === 0) { i++; break }
        i++
      }
    } else {
      break
    }
  }
  return i
}

function readToken (s: string, i: number): number {
  while (i < s.length && isToken(s.charCodeAt(i))) i++
  return i
}

/** `type/subtype; params`, or null when the value is syntactically invalid (RFC 2045 section 5.2 then
 * asks for the default type). */
export function parseContentType (value: string): ContentType | null {
  let i = skipCfws(value, 0)
  const typeEnd = readToken(value, i)
  const type = value.slice(i, typeEnd).toLowerCase()
  i = skipCfws(value, typeEnd)
  if (type === '' || value.charCodeAt(i) !== 0x2f) return null
  i = skipCfws(value, i + 1)
  const subEnd = readToken(value, i)
  const subtype = value.slice(i, subEnd).toLowerCase()
  if (subtype === '') return null
  return { type, subtype, params: parseParams(value, subEnd) }
}

/** `inline; filename=...`, or null when there is no disposition type. */
export function parseDisposition (value: string): [string, Params] | null {
  const i = skipCfws(value, 0)
  const end = readToken(value, i)
  if (end === i) return null
  return [value.slice(i, end).toLowerCase(), parseParams(value, end)]
}

/** Parameters from position `i` on, RFC 2231 continuations joined. */
export function parseParams (s: string, i: number): Params {
  const raw: Params = []
  while (i < s.length && raw.length < PARAMS_MAX) {
    i = skipCfws(s, i)
    if (s.charCodeAt(i) === 0x3b) { i++; continue }
    if (i >= s.length) break
    const nameStart = i
    i = readToken(s, i)
    const name = s.slice(nameStart, i).toLowerCase()
    i = skipCfws(s, i)
    if (name === '' || s.charCodeAt(i) !== 0x3d) {
      // Not `name=`: skip to the next parameter.
      const next = s.indexOf(';', i + 1)
      i = next === -1 ? s.length : next
      continue
    }
    i = skipCfws(s, i + 1)
    let val: string
    if (s.charCodeAt(i) === 0x22) {
      const parts: string[] = []
      let j = i + 1
      let from = j
      while (j < s.length && s.charCodeAt(j) !== 0x22) {
        if (s.charCodeAt(j) === 0x5c && j + 1 < s.length) {
          parts.push(s.slice(from, j))
          from = j + 1
          j += 2
        } else {
          j++
        }
      }
      parts.push(s.slice(from, j))
      val = parts.join('')
      i = j + 1
    } else {
      // A token by the RFC; leniently anything up to `;` or a comment, so `name=my file.pdf` survives.
      let j = i
      while (j < s.length) {
        const c = s.charCodeAt(j)
        if (c === 0x3b || c === 0x28) break
        j++
      }
      val = trimEnd(s.slice(i, j))
      i = j
    }
    raw.push([name, val])
    const next = s.indexOf(';', i)
    if (next === -1) break
    i = next
  }
  return joinContinuations(raw)
}

function trimEnd (s: string): string {
  let b = s.length
  while (b > 0 && (s.charCodeAt(b - 1) === 0x20 || s.charCodeAt(b - 1) === 0x09)) b--
  return s.slice(0, b)
}

interface Continued {
  at: number // index of the output slot
  base: string
  sections: Map<number, { value: string, extended: boolean }>
}

/**
 * RFC 2231 section 3: `name*0`, `name*1*`, ... are one parameter. Joined, it becomes `name` (no section
 * extended) or `name*` whose value is one RFC 2231 extended value `charset'lang'%XX...` (plain sections are
 * percent-encoded so the whole stays one valid extended value). Single `name*` parameters pass unchanged.
 */
function joinContinuations (raw: Params): Params {
  let groups: Map<string, Continued> | null = null
  const out: (Params[number] | Continued)[] = []
  for (const [name, value] of raw) {
    const section = sectionOf(name)
    if (section === null) {
      out.push([name, value])
      continue
    }
    groups ??= new Map()
    let g = groups.get(section.base)
    if (g === undefined) {
      g = { at: out.length, base: section.base, sections: new Map() }
      groups.set(section.base, g)
      out.push(g)
    }
    if (!g.sections.has(section.index)) g.sections.set(section.index, { value, extended: section.extended })
  }
  if (groups === null) return raw
  return out.map(entry => Array.isArray(entry) ? entry : joinGroup(entry))
}

function joinGroup (g: Continued): [string, string] {
  const ordered = [...g.sections.entries()].sort((a, b) => a[0] - b[0]).map(e => e[1])
  if (!ordered.some(s => s.extended)) return [g.base, ordered.map(s => s.value).join('')]
  const first = ordered[0]
  let value = first.extended && first === g.sections.get(0) ? '' : "''"
  for (const s of ordered) value += s.extended ? s.value : percentEncode(s.value)
  return [g.base + '*', value]
}

/** `name*3*` → { base: name, index: 3, extended: true }; null for a name without a section number. */
function sectionOf (name: string): { base: string, index: number, extended: boolean } | null {
  const extended = name.endsWith('*')
  const core = extended ? name.slice(0, -1) : name
  const star = core.lastIndexOf('*')
  if (star <= 0) return null
  const digits = core.slice(star + 1)
  if (digits.length === 0 || digits.length > 3) return null
  for (let k = 0; k < digits.length; k++) {
    const c = digits.charCodeAt(k)
    if (c < 0x30 || c > 0x39) return null
  }
  const index = Number(digits)
  if (index > PARAM_SECTIONS_MAX) return null
  return { base: core.slice(0, star), index, extended }
}

// RFC 2231 section 7: attribute-char := <any (US-ASCII) CHAR except SPACE, CTLs, "*", "'", "%", or tspecials>
function percentEncode (s: string): string {
  let out = ''
  for (const byte of Buffer.from(s, 'utf8')) {
    const ch = String.fromCharCode(byte)
    out += byte < 0x80 && TOKEN[byte] === 1 && ch !== '*' && ch !== "'" && ch !== '%'
      ? ch
      : '%' + (byte < 16 ? '0' : '') + byte.toString(16).toUpperCase()
  }
  return out
}

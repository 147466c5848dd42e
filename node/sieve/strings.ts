// Strings at compile time: RFC 5228 2.4.2.4 encoded characters (${hex:..}, ${unicode:..}) are decoded when
// "encoded-character" is required; RFC 5229 3 variable references (${name}, ${global.name}, ${1}) are split
// out when "variables" is required. Both scans are linear; a malformed reference stays literal text.

import type { Pos } from './ast.ts'
import type { Part, VString } from './program.ts'

export class StringError extends Error {}

function isHex (c: string): boolean { return /^[0-9a-fA-F]$/.test(c) }

/** Decodes ${hex:...} and ${unicode:...}; throws StringError for a code point that is not a Unicode scalar value. */
export function decodeEncodedCharacters (s: string): string {
  if (!s.includes('${')) return s
  let out = ''
  let i = 0
  for (;;) {
    const at = s.indexOf('${', i)
    if (at === -1) return out + s.slice(i)
    const close = s.indexOf('}', at + 2)
    if (close === -1) return out + s.slice(i)
    const inner = s.slice(at + 2, close)
    const colon = inner.indexOf(':')
    const kind = colon === -1 ? '' : inner.slice(0, colon).toLowerCase()
    const decoded = kind === 'hex' ? decodeHex(inner.slice(colon + 1)) : kind === 'unicode' ? decodeUnicode(inner.slice(colon + 1)) : null
    if (decoded === null) {
      out += s.slice(i, at + 2)
      i = at + 2
    } else {
      out += s.slice(i, at) + decoded
      i = close + 1
    }
  }
}

function words (body: string): string[] | null {
  const w = body.split(/[ \t\r\n]+/).filter(x => x !== '')
  return w.length === 0 ? null : w
}

function decodeHex (body: string): string | null {
  const w = words(body)
  if (w === null) return null
  const bytes: number[] = []
  for (const x of w) {
    if (x.length > 2 || ![...x].every(isHex)) return null
    bytes.push(parseInt(x, 16))
  }
  return Buffer.from(bytes).toString('utf8')
}

function decodeUnicode (body: string): string | null {
  const w = words(body)
  if (w === null) return null
  let out = ''
  for (const x of w) {
    if (x.length > 8 || ![...x].every(isHex)) return null
    const cp = parseInt(x, 16)
    // RFC 5228 2.4.2.4: a value outside Unicode (or a surrogate) is an error
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) throw new StringError(`\${unicode:${x}} is not a Unicode character`)
    out += String.fromCodePoint(cp)
  }
  return out
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/

/** A variable name as `set` and references take it: identifier, or `global.identifier` with include. null: not a name. */
export function variableName (name: string): { ns: string | null, name: string } | null {
  const dot = name.indexOf('.')
  if (dot === -1) return IDENT.test(name) ? { ns: null, name: name.toLowerCase() } : null
  const ns = name.slice(0, dot).toLowerCase()
  const rest = name.slice(dot + 1)
  return IDENT.test(ns) && IDENT.test(rest) ? { ns, name: rest.toLowerCase() } : null
}

/**
 * Splits a string into literal text and variable references. `onNamespace` is asked about `${ns.name}`:
 * it throws for an unknown namespace (RFC 5229 3: an error) or says whether it is known.
 */
export function splitVariables (s: string, pos: Pos, variables: boolean, onNamespace: (ns: string) => void): VString {
  if (!variables || !s.includes('${')) return { pos, parts: s === '' ? [] : [s], constant: s }
  const parts: Part[] = []
  let text = ''
  let i = 0
  for (;;) {
    const at = s.indexOf('${', i)
    if (at === -1) { text += s.slice(i); break }
    const close = s.indexOf('}', at + 2)
    if (close === -1) { text += s.slice(i); break }
    const inner = s.slice(at + 2, close)
    let part: Part | null = null
    if (/^[0-9]+$/.test(inner)) {
      part = { m: Number(inner.length > 3 ? 1000 : inner) }
    } else {
      const v = variableName(inner)
      if (v !== null) {
        if (v.ns !== null) onNamespace(v.ns)
        part = { v: v.name, g: v.ns !== null }
      }
    }
    if (part === null) {
      text += s.slice(i, at + 2)
      i = at + 2
      continue
    }
    text += s.slice(i, at)
    if (text !== '') parts.push(text)
    text = ''
    parts.push(part)
    i = close + 1
  }
  if (text !== '') parts.push(text)
  const constant = parts.every(p => typeof p === 'string') ? parts.join('') : null
  return { pos, parts, constant }
}

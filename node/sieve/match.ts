// Comparators (RFC 4790: i;octet, i;ascii-casemap, i;ascii-numeric) and match types (RFC 5228 2.7.1 :is
// :contains :matches, RFC 5231 :count :value, :regex). Every comparison is charged to the run's step budget
// in proportion to the text it reads, so no test can run unbounded.

import type { Node } from './program.ts'
import { compileRegex, execRegex, RegexSyntaxError } from './regex.ts'
import type { Budget, Regex } from './regex.ts'
import { foldAscii, truncateBytes } from './util.ts'

const REGEX_CACHE_MAX = 64

export interface MatchContext {
  budget: Budget
  regexInputMax: number
  regexPatternMax: number
  regexCache: Map<string, Regex>
}

/** A key that cannot be used at run time (a :regex pattern built from variables that does not compile). */
export class MatchError extends Error {}

/** RFC 4790 9.1: the number the leading digits spell, or null for "positive infinity" (no leading digit). */
function numeric (s: string): string | null {
  let i = 0
  while (i < s.length && s.charCodeAt(i) >= 0x30 && s.charCodeAt(i) <= 0x39) i++
  if (i === 0) return null
  let z = 0
  while (z < i - 1 && s[z] === '0') z++
  return s.slice(z, i)
}

function compareNumeric (a: string, b: string): number {
  const x = numeric(a)
  const y = numeric(b)
  if (x === null || y === null) return x === y ? 0 : x === null ? 1 : -1
  if (x.length !== y.length) return x.length < y.length ? -1 : 1
  return x < y ? -1 : x > y ? 1 : 0
}

/** Code point order, which is the order of the UTF-8 octets (i;octet). */
function compareOctets (a: string, b: string): number {
  if (a === b) return 0
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i) ?? 0
    const y = b.codePointAt(i) ?? 0
    if (x !== y) return x < y ? -1 : 1
    if (x > 0xffff) i++
  }
  return a.length < b.length ? -1 : a.length > b.length ? 1 : 0
}

export function compare (comparator: string, a: string, b: string): number {
  if (comparator === 'i;ascii-numeric') return compareNumeric(a, b)
  if (comparator === 'i;ascii-casemap') return compareOctets(foldAscii(a), foldAscii(b))
  return compareOctets(a, b)
}

function relation (op: string, c: number): boolean {
  switch (op) {
    case 'gt': return c > 0
    case 'ge': return c >= 0
    case 'lt': return c < 0
    case 'le': return c <= 0
    case 'ne': return c !== 0
    default: return c === 0
  }
}

/**
 * RFC 5228 2.7.1 :matches: `*` any sequence, `?` one character, `\` escapes. Earlier wildcards take the
 * shortest text (RFC 5229 3.2); returns the match variables (${0} the whole value, then one per wildcard)
 * or null. Works on UTF-16 indices (ASCII folding keeps them), never splitting a surrogate pair; at most
 * value x pattern steps, charged to the budget.
 */
export function wildcard (value: string, pattern: string, fold: boolean, budget: Budget): string[] | null {
  const str = fold ? foldAscii(value) : value
  const toks: Array<{ k: 0 | 1 | 2, c: string }> = [] // 0 literal, 1 '*', 2 '?'
  const pat = Array.from(fold ? foldAscii(pattern) : pattern)
  for (let i = 0; i < pat.length; i++) {
    const c = pat[i]
    if (c === '\\' && i + 1 < pat.length) toks.push({ k: 0, c: pat[++i] })
    else if (c === '*') toks.push({ k: 1, c })
    else if (c === '?') toks.push({ k: 2, c })
    else toks.push({ k: 0, c })
  }
  const width = (at: number): number => {
    const u = str.charCodeAt(at)
    return u >= 0xd800 && u <= 0xdbff && at + 1 < str.length ? 2 : 1
  }
  const start = new Int32Array(toks.length)
  const end = new Int32Array(toks.length)
  const n = str.length
  const m = toks.length
  let p = 0
  let s = 0
  let starP = -1
  let starS = 0
  let work = 0
  while (s < n) {
    if (++work === 4096) { budget.charge(work); work = 0 }
    const t = p < m ? toks[p] : null
    if (t !== null && t.k === 2) {
      start[p] = s; s += width(s); end[p] = s; p++
    } else if (t !== null && t.k === 0 && str.startsWith(t.c, s)) {
      p++; s += t.c.length
    } else if (t !== null && t.k === 1) {
      starP = p; starS = s; start[p] = s; end[p] = s; p++
    } else if (starP !== -1) {
      p = starP + 1
      starS += width(starS)
      s = starS
      end[starP] = starS
    } else {
      budget.charge(work)
      return null
    }
  }
  while (p < m && toks[p].k === 1) { start[p] = n; end[p] = n; p++ }
  budget.charge(work)
  if (p !== m) return null
  const caps = [value]
  for (let k = 0; k < m; k++) if (toks[k].k !== 0) caps.push(value.slice(start[k], end[k]))
  return caps
}

function regex (ctx: MatchContext, pattern: string, ci: boolean): Regex {
  const key = `${ci ? 'i' : 'o'}${pattern}`
  let re = ctx.regexCache.get(key)
  if (re === undefined) {
    // a constant pattern was checked at compile time; one built from variables is checked here
    if (Buffer.byteLength(pattern) > ctx.regexPatternMax) throw new MatchError(`regular expression longer than ${ctx.regexPatternMax} bytes`)
    try {
      re = compileRegex(pattern, ci)
    } catch (e) {
      if (e instanceof RegexSyntaxError) throw new MatchError(`invalid regular expression: ${e.message}`)
      throw e
    }
    if (ctx.regexCache.size >= REGEX_CACHE_MAX) ctx.regexCache.clear()
    ctx.regexCache.set(key, re)
  }
  return re
}

/**
 * Does any value match any key under the node's comparator and match type? On a :matches or :regex success,
 * `captures` receives the match variables. :count compares the number of values (RFC 5231 4.1).
 */
export function matchAny (ctx: MatchContext, n: Node, values: string[], keys: string[], captures: (caps: string[]) => void): boolean {
  const cmp = n.comparator
  if (n.match === 'count') {
    const count = String(values.length)
    ctx.budget.charge(keys.length)
    return keys.some(k => relation(n.relop ?? 'eq', compare(cmp, count, k)))
  }
  // i;ascii-casemap: fold every value and key once, then compare octets (:matches and :regex fold themselves,
  // as their captures come from the original text)
  const fold = cmp === 'i;ascii-casemap' && n.match !== 'matches' && n.match !== 'regex'
  let work = 0
  for (const v of values) work += v.length
  for (const k of keys) work += k.length
  ctx.budget.charge(fold ? work >> 6 : 0)
  const vs = fold ? values.map(foldAscii) : values
  const ks = fold ? keys.map(foldAscii) : keys
  const octets = fold ? 'i;octet' : cmp
  for (let i = 0; i < vs.length; i++) {
    const v = vs[i]
    for (const k of ks) {
      ctx.budget.charge(1 + ((v.length + k.length) >> 6))
      switch (n.match) {
        case 'value':
          if (relation(n.relop ?? 'eq', compare(octets, v, k))) return true
          break
        case 'contains':
          // a substring search can cost value x key in the worst case (a long key of repeats): charged so
          ctx.budget.charge((v.length >> 6) * (k.length >> 6))
          if (v.includes(k)) return true
          break
        case 'matches': {
          const caps = wildcard(v, k, cmp === 'i;ascii-casemap', ctx.budget)
          if (caps !== null) { captures(caps); return true }
          break
        }
        case 'regex': {
          const input = truncateBytes(v, ctx.regexInputMax) // a longer value is matched on its first bytes
          const caps = execRegex(regex(ctx, k, cmp === 'i;ascii-casemap'), input, ctx.budget)
          if (caps !== null) { captures(caps.map(c => c ?? '')); return true }
          break
        }
        default:
          if (compare(octets, v, k) === 0) return true
      }
    }
  }
  return false
}

// POSIX extended regular expressions (the :regex match type of draft-ietf-sieve-regex, as Pigeonhole and Cyrus
// run it with regcomp(REG_EXTENDED)), matched by a Pike VM of our own instead of Node's backtracking RegExp.
// Why: a pattern such as (a+)+$ makes a backtracking engine take time exponential in the input, and Node's
// RegExp cannot be interrupted. The VM runs every alternative in lock step, so a match costs at most
// (input code points + 1) x (program size) steps; every step is charged to the caller's budget, which stops
// the script when it runs out (runtime error, implicit keep). Back-references are refused at compile time:
// they cannot be matched in linear time. Captures follow leftmost-first preference (Perl), not POSIX
// leftmost-longest; whether a pattern matches at all is the same under both.

export class RegexSyntaxError extends Error {}
export class StepBudgetExceeded extends Error {}

export const REGEX_PROGRAM_MAX = 10_000 // instructions after {m,n} expansion; ~1 KiB patterns stay far below
export const REGEX_GROUP_DEPTH_MAX = 64 // nested parentheses
export const REGEX_REPEAT_MAX = 255 // RE_DUP_MAX of POSIX
export const REGEX_CAPTURES_MAX = 9 // groups whose text is kept

const CHAR = 0
const SET = 1
const ANY = 2
const SPLIT = 3
const JMP = 4
const SAVE = 5
const BOL = 6
const EOL = 7
const MATCH = 8

type Node =
  | { t: 'char', c: number }
  | { t: 'set', ranges: number[], neg: boolean }
  | { t: 'any' }
  | { t: 'bol' } | { t: 'eol' }
  | { t: 'group', n: number, body: Node }
  | { t: 'cat', items: Node[] }
  | { t: 'alt', items: Node[] }
  | { t: 'rep', body: Node, min: number, max: number } // max -1: unbounded

export interface Regex {
  readonly op: Int32Array
  readonly a: Int32Array
  readonly b: Int32Array
  readonly sets: Array<{ ranges: number[], neg: boolean }>
  readonly groups: number // capture groups, without group 0
  readonly ci: boolean
}

const CLASSES: Record<string, number[]> = {
  alpha: [0x41, 0x5a, 0x61, 0x7a],
  digit: [0x30, 0x39],
  alnum: [0x30, 0x39, 0x41, 0x5a, 0x61, 0x7a],
  upper: [0x41, 0x5a],
  lower: [0x61, 0x7a],
  space: [0x09, 0x0d, 0x20, 0x20],
  blank: [0x09, 0x09, 0x20, 0x20],
  punct: [0x21, 0x2f, 0x3a, 0x40, 0x5b, 0x60, 0x7b, 0x7e],
  print: [0x20, 0x7e],
  graph: [0x21, 0x7e],
  cntrl: [0x00, 0x1f, 0x7f, 0x7f],
  xdigit: [0x30, 0x39, 0x41, 0x46, 0x61, 0x66]
}
const WORD = [0x30, 0x39, 0x41, 0x5a, 0x5f, 0x5f, 0x61, 0x7a]

class ReParser {
  private readonly s: number[]
  private i = 0
  groups = 0

  constructor (pattern: string) {
    this.s = Array.from(pattern, ch => ch.codePointAt(0) ?? 0)
  }

  private fail (message: string): never {
    throw new RegexSyntaxError(`${message} at character ${this.i + 1} of the pattern`)
  }

  parse (): Node {
    const n = this.alt(0)
    if (this.i < this.s.length) this.fail('unmatched ")"')
    return n
  }

  private peek (): number { return this.i < this.s.length ? this.s[this.i] : -1 }

  private alt (depth: number): Node {
    const items = [this.cat(depth)]
    while (this.peek() === 0x7c) { this.i++; items.push(this.cat(depth)) }
    return items.length === 1 ? items[0] : { t: 'alt', items }
  }

  private cat (depth: number): Node {
    const items: Node[] = []
    for (;;) {
      const c = this.peek()
      if (c === -1 || c === 0x7c || c === 0x29) break
      let atom = this.atom(depth)
      for (;;) {
        const q = this.peek()
        if (q === 0x2a) { this.i++; atom = { t: 'rep', body: atom, min: 0, max: -1 } } else if (q === 0x2b) { this.i++; atom = { t: 'rep', body: atom, min: 1, max: -1 } } else if (q === 0x3f) { this.i++; atom = { t: 'rep', body: atom, min: 0, max: 1 } } else if (q === 0x7b) atom = this.interval(atom)
        else break
      }
      items.push(atom)
    }
    return items.length === 1 ? items[0] : { t: 'cat', items }
  }

  private int (): number {
    let v = -1
    while (this.peek() >= 0x30 && this.peek() <= 0x39) {
      v = (v < 0 ? 0 : v) * 10 + this.s[this.i++] - 0x30
      if (v > REGEX_REPEAT_MAX) this.fail(`repetition count above ${REGEX_REPEAT_MAX}`)
    }
    return v
  }

  private interval (body: Node): Node {
    this.i++
    const min = this.int()
    if (min < 0) this.fail('invalid repetition "{"')
    let max = min
    if (this.peek() === 0x2c) {
      this.i++
      max = this.int()
    }
    if (this.peek() !== 0x7d) this.fail('unterminated repetition "{"')
    this.i++
    if (max !== -1 && max < min) this.fail('invalid repetition range')
    return { t: 'rep', body, min, max }
  }

  private atom (depth: number): Node {
    const c = this.s[this.i++]
    switch (c) {
      case 0x28: { // (
        if (depth + 1 > REGEX_GROUP_DEPTH_MAX) this.fail(`parentheses nested deeper than ${REGEX_GROUP_DEPTH_MAX}`)
        const n = ++this.groups
        const body = this.peek() === 0x29 ? { t: 'cat', items: [] } as Node : this.alt(depth + 1)
        if (this.peek() !== 0x29) this.fail('unmatched "("')
        this.i++
        return { t: 'group', n, body }
      }
      case 0x2e: return { t: 'any' }
      case 0x5e: return { t: 'bol' }
      case 0x24: return { t: 'eol' }
      case 0x5b: return this.bracket()
      case 0x2a: case 0x2b: case 0x3f: case 0x7b:
        this.i--
        return this.fail('nothing to repeat')
      case 0x5c: {
        if (this.i >= this.s.length) this.fail('trailing backslash')
        const e = this.s[this.i++]
        if (e >= 0x31 && e <= 0x39) { this.i--; this.fail('back-references are not supported (they cannot be matched in linear time)') }
        if (e === 0x77) return { t: 'set', ranges: WORD, neg: false } // \w, \W, \s, \S: GNU extensions Pigeonhole scripts use
        if (e === 0x57) return { t: 'set', ranges: WORD, neg: true }
        if (e === 0x73) return { t: 'set', ranges: CLASSES.space, neg: false }
        if (e === 0x53) return { t: 'set', ranges: CLASSES.space, neg: true }
        if (e === 0x62 || e === 0x42 || e === 0x3c || e === 0x3e || e === 0x60 || e === 0x27) { this.i--; this.fail(`the assertion "\\${String.fromCodePoint(e)}" is not supported`) }
        return { t: 'char', c: e }
      }
      default: return { t: 'char', c }
    }
  }

  /** POSIX bracket expression: backslash is literal inside, "]" first is literal, [:class:]. */
  private bracket (): Node {
    const ranges: number[] = []
    let neg = false
    if (this.peek() === 0x5e) { neg = true; this.i++ }
    let first = true
    for (;;) {
      if (this.i >= this.s.length) this.fail('unmatched "["')
      let c = this.s[this.i]
      if (c === 0x5d && !first) { this.i++; break }
      first = false
      if (c === 0x5b && this.s[this.i + 1] === 0x3a) {
        const end = this.s.indexOf(0x3a, this.i + 2)
        if (end === -1 || this.s[end + 1] !== 0x5d) this.fail('unterminated character class')
        const name = String.fromCodePoint(...this.s.slice(this.i + 2, end))
        const cls = CLASSES[name]
        if (cls === undefined) this.fail(`unknown character class "${name}"`)
        ranges.push(...cls)
        this.i = end + 2
        continue
      }
      if (c === 0x5b && (this.s[this.i + 1] === 0x2e || this.s[this.i + 1] === 0x3d)) {
        // [.x.] and [=x=] with a single character: that character (no locale collation here).
        const d = this.s[this.i + 1]
        if (this.s[this.i + 3] !== d || this.s[this.i + 4] !== 0x5d) this.fail('unsupported collating element')
        c = this.s[this.i + 2]
        this.i += 5
      } else {
        this.i++
      }
      if (this.peek() === 0x2d && this.s[this.i + 1] !== 0x5d && this.i + 1 < this.s.length) {
        this.i++
        const hi = this.s[this.i++]
        if (hi < c) this.fail('invalid range in a bracket expression')
        ranges.push(c, hi)
      } else {
        ranges.push(c, c)
      }
    }
    return { t: 'set', ranges, neg }
  }
}

class Emitter {
  op: number[] = []
  a: number[] = []
  b: number[] = []
  sets: Array<{ ranges: number[], neg: boolean }> = []
  private readonly ci: boolean

  constructor (ci: boolean) {
    this.ci = ci
  }

  emit (o: number, a = 0, b = 0): number {
    if (this.op.length >= REGEX_PROGRAM_MAX) throw new RegexSyntaxError(`pattern too complex (more than ${REGEX_PROGRAM_MAX} instructions after expanding repetitions)`)
    this.op.push(o); this.a.push(a); this.b.push(b)
    return this.op.length - 1
  }

  node (n: Node): void {
    switch (n.t) {
      case 'char': this.emit(CHAR, this.ci ? lowerAscii(n.c) : n.c); break
      case 'set': this.sets.push({ ranges: n.ranges, neg: n.neg }); this.emit(SET, this.sets.length - 1); break
      case 'any': this.emit(ANY); break
      case 'bol': this.emit(BOL); break
      case 'eol': this.emit(EOL); break
      case 'group':
        // Only groups 1-9 can be read (${1}..${9}, RFC 5229 3.2): the others match without capturing, so a
        // thread's capture array stays 20 slots however many groups a pattern has.
        if (n.n > REGEX_CAPTURES_MAX) { this.node(n.body); break }
        this.emit(SAVE, 2 * n.n); this.node(n.body); this.emit(SAVE, 2 * n.n + 1); break
      case 'cat': for (const item of n.items) this.node(item); break
      case 'alt': {
        const jumps: number[] = []
        for (let k = 0; k < n.items.length; k++) {
          if (k < n.items.length - 1) {
            const split = this.emit(SPLIT)
            this.a[split] = split + 1
            this.node(n.items[k])
            jumps.push(this.emit(JMP))
            this.b[split] = this.op.length
          } else {
            this.node(n.items[k])
          }
        }
        for (const j of jumps) this.a[j] = this.op.length
        break
      }
      case 'rep': {
        for (let k = 0; k < n.min; k++) this.node(n.body)
        if (n.max === -1) {
          const split = this.emit(SPLIT)
          this.a[split] = split + 1
          this.node(n.body)
          this.emit(JMP, split)
          this.b[split] = this.op.length
        } else {
          const splits: number[] = []
          for (let k = n.min; k < n.max; k++) {
            const split = this.emit(SPLIT)
            this.a[split] = split + 1
            splits.push(split)
            this.node(n.body)
          }
          for (const s of splits) this.b[s] = this.op.length
        }
        break
      }
    }
  }
}

function lowerAscii (c: number): number { return c >= 0x41 && c <= 0x5a ? c + 32 : c }
function swapAscii (c: number): number { return c >= 0x41 && c <= 0x5a ? c + 32 : c >= 0x61 && c <= 0x7a ? c - 32 : c }

/** Compiles a POSIX ERE; throws RegexSyntaxError with a readable message. `ci`: ASCII case-insensitive (i;ascii-casemap). */
export function compileRegex (pattern: string, ci: boolean): Regex {
  const p = new ReParser(pattern)
  const ast = p.parse()
  const e = new Emitter(ci)
  e.emit(SAVE, 0)
  e.node(ast)
  e.emit(SAVE, 1)
  e.emit(MATCH)
  return { op: Int32Array.from(e.op), a: Int32Array.from(e.a), b: Int32Array.from(e.b), sets: e.sets, groups: Math.min(p.groups, REGEX_CAPTURES_MAX), ci }
}

function inSet (set: { ranges: number[], neg: boolean }, c: number, ci: boolean): boolean {
  const r = set.ranges
  let hit = false
  for (let k = 0; k < r.length && !hit; k += 2) if (c >= r[k] && c <= r[k + 1]) hit = true
  if (!hit && ci) {
    const d = swapAscii(c)
    if (d !== c) for (let k = 0; k < r.length && !hit; k += 2) if (d >= r[k] && d <= r[k + 1]) hit = true
  }
  return hit !== set.neg
}

/** The step counter shared with the interpreter: `charge` throws StepBudgetExceeded past the budget. */
export interface Budget { charge (steps: number): void }

/**
 * Searches `input` for the leftmost match. Returns the captured substrings (index 0: the whole match;
 * undefined for a group that did not take part) or null.
 */
export function execRegex (re: Regex, input: string, budget: Budget): Array<string | undefined> | null {
  const cps: number[] = []
  const offs: number[] = []
  for (let i = 0; i < input.length;) {
    const cp = input.codePointAt(i) ?? 0
    offs.push(i)
    cps.push(re.ci ? lowerAscii(cp) : cp)
    i += cp > 0xffff ? 2 : 1
  }
  offs.push(input.length)
  const n = cps.length
  const size = re.op.length
  const slots = 2 * (re.groups + 1)
  let clist: Array<{ pc: number, caps: Int32Array }> = []
  let nlist: Array<{ pc: number, caps: Int32Array }> = []
  const mark = new Int32Array(size).fill(-1)
  let gen = 0
  let matched: Int32Array | null = null
  const stack: Array<{ pc: number, caps: Int32Array }> = []

  const add = (list: Array<{ pc: number, caps: Int32Array }>, pc0: number, caps0: Int32Array, pos: number): void => {
    stack.push({ pc: pc0, caps: caps0 })
    let work = 0
    while (stack.length > 0) {
      const t = stack.pop() as { pc: number, caps: Int32Array }
      const pc = t.pc
      if (mark[pc] === gen) continue
      mark[pc] = gen
      work++
      switch (re.op[pc]) {
        case JMP: stack.push({ pc: re.a[pc], caps: t.caps }); break
        case SPLIT: stack.push({ pc: re.b[pc], caps: t.caps }, { pc: re.a[pc], caps: t.caps }); break // a is tried first
        case SAVE: {
          const caps = t.caps.slice()
          caps[re.a[pc]] = pos
          stack.push({ pc: pc + 1, caps })
          break
        }
        case BOL: if (pos === 0) stack.push({ pc: pc + 1, caps: t.caps }); break
        case EOL: if (pos === n) stack.push({ pc: pc + 1, caps: t.caps }); break
        default: list.push(t)
      }
    }
    budget.charge(work)
  }

  const fresh = new Int32Array(slots).fill(-1)
  gen++
  for (let pos = 0; pos <= n; pos++) {
    // The seed joins the threads already in clist under the generation they were added with, so a pc is
    // never listed twice; then a new generation for nlist.
    if (matched === null) add(clist, 0, fresh, pos)
    gen++
    budget.charge(clist.length)
    const c = pos < n ? cps[pos] : -1
    let setWork = 0
    for (let k = 0; k < clist.length; k++) {
      const t = clist[k]
      const o = re.op[t.pc]
      if (o === MATCH) {
        matched = t.caps
        break // lower-priority threads are cut (leftmost-first)
      }
      if (c === -1) continue
      if (o === SET) setWork += re.sets[re.a[t.pc]].ranges.length >> 4 // a long bracket expression costs its length
      if ((o === CHAR && re.a[t.pc] === c) || o === ANY || (o === SET && inSet(re.sets[re.a[t.pc]], c, re.ci))) add(nlist, t.pc + 1, t.caps, pos + 1)
    }
    if (setWork > 0) budget.charge(setWork)
    const tmp = clist
    clist = nlist
    nlist = tmp
    nlist.length = 0
    if (clist.length === 0 && matched !== null) break
  }
  if (matched === null) return null
  const out: Array<string | undefined> = []
  for (let g = 0; g <= re.groups; g++) {
    const s = matched[2 * g]
    const e = matched[2 * g + 1]
    out.push(s < 0 || e < 0 ? undefined : input.slice(offs[s], offs[e]))
  }
  return out
}

// Checks a parsed script against the signature table (spec.ts) and the rules of each RFC, and turns it into
// the Program the interpreter runs. Collects every error it finds (up to VALIDATE_ERRORS_MAX), each at the
// byte position of the argument or command at fault.

import type { Arg, CommandNode, Pos, StringArg, TestNode } from './ast.ts'
import type { Node, Program, VArg, VString } from './program.ts'
import { compileRegex, RegexSyntaxError } from './regex.ts'
import { COMPARATORS, DATE_PARTS, IMPLIED, RELATIONAL_OPS, SIEVE_EXTENSIONS, SPECS } from './spec.ts'
import type { ArgType } from './spec.ts'
import { decodeEncodedCharacters, splitVariables, StringError, variableName } from './strings.ts'
import type { SieveError, SieveLimits } from './types.ts'
import { isAddressHeader, isProtectedHeader, validFieldName, validRedirectAddress, validSender, validZone } from './util.ts'

export const VALIDATE_ERRORS_MAX = 20

class Fatal extends Error {}

interface Ctx {
  requires: Set<string>
  errors: SieveError[]
  limits: SieveLimits
}

function err (ctx: Ctx, pos: Pos, message: string): void {
  if (ctx.errors.length >= VALIDATE_ERRORS_MAX) throw new Fatal()
  ctx.errors.push({ line: pos.line, column: pos.column, offset: pos.offset, message })
}

function typeName (a: Arg): string {
  return a.kind === 'tag' ? `tag ":${a.name}"` : a.kind === 'number' ? 'a number' : a.kind === 'string' ? 'a string' : 'a string list'
}

function fits (a: Arg, t: ArgType): boolean {
  if (t === 'number') return a.kind === 'number'
  if (t === 'string') return a.kind === 'string'
  return a.kind === 'string' || a.kind === 'list'
}

function needs (ctx: Ctx, ext: string, pos: Pos, what: string): void {
  if (!ctx.requires.has(ext)) err(ctx, pos, `${what} needs the "${ext}" extension: add require "${ext}"; at the top of the script`)
}

function vstring (ctx: Ctx, a: StringArg, expand: boolean): VString {
  let s = a.value
  if (ctx.requires.has('encoded-character')) {
    try {
      s = decodeEncodedCharacters(s)
    } catch (e) {
      if (!(e instanceof StringError)) throw e
      err(ctx, a.pos, e.message)
    }
  }
  return splitVariables(s, a.pos, expand && ctx.requires.has('variables'), ns => {
    if (ns !== 'global' || !ctx.requires.has('include')) err(ctx, a.pos, `unknown variable namespace "${ns}"`)
  })
}

function varg (ctx: Ctx, a: Arg, expand: boolean): VArg {
  if (a.kind === 'number') return { t: 'n', n: a.value, pos: a.pos }
  if (a.kind === 'string') return { t: 's', s: vstring(ctx, a, expand), pos: a.pos }
  if (a.kind === 'list') return { t: 'l', items: a.items.map(i => vstring(ctx, i, expand)), pos: a.pos }
  throw new Error('a tag is not an argument value')
}

/** The constant strings of a string/list argument, or null (with an error) when one holds a variable. */
export function constants (ctx: Ctx, a: VArg, what: string): string[] | null {
  const items = a.t === 's' ? [a.s] : a.t === 'l' ? a.items : []
  const out: string[] = []
  for (const i of items) {
    if (i.constant === null) {
      err(ctx, i.pos, `${what} must be a constant string (no variables)`)
      return null
    }
    out.push(i.constant)
  }
  return out
}

function node (ctx: Ctx, n: CommandNode | TestNode, kind: 'command' | 'test'): Node | null {
  const spec = SPECS[n.name]
  if (spec === undefined || (kind === 'test') !== (spec.kind === 'test')) {
    const other = spec === undefined ? '' : kind === 'test' ? ` ("${n.name}" is a command, not a test)` : ` ("${n.name}" is a test, not a command)`
    err(ctx, n.pos, `unknown ${kind} "${n.name}"${other}`)
    return null
  }
  if (spec.ext !== undefined && !spec.ext.some(e => ctx.requires.has(e))) needs(ctx, spec.ext[0], n.pos, `"${n.name}"`)
  const noExpand = n.name === 'set' || n.name === 'include' || n.name === 'global' || n.name === 'require'
  const tags = new Map<string, VArg | null>()
  const groups = new Map<string, string>()
  const positional: Arg[] = []
  for (let i = 0; i < n.args.length; i++) {
    const a = n.args[i]
    if (a.kind !== 'tag') { positional.push(a); continue }
    if (positional.length > 0) { err(ctx, a.pos, `tag ":${a.name}" must come before the positional arguments of "${n.name}"`); continue }
    const ts = spec.tags?.[a.name]
    if (ts === undefined) { err(ctx, a.pos, `"${n.name}" has no tag ":${a.name}"`); continue }
    if (ts.ext !== undefined) needs(ctx, ts.ext, a.pos, `":${a.name}"`)
    if (tags.has(a.name)) err(ctx, a.pos, `tag ":${a.name}" given twice`)
    if (ts.group !== undefined) {
      const other = groups.get(ts.group)
      if (other !== undefined) err(ctx, a.pos, `":${a.name}" cannot be used with ":${other}"`)
      groups.set(ts.group, a.name)
    }
    let value: VArg | null = null
    if (ts.arg !== undefined) {
      const next = n.args[i + 1]
      if (next === undefined || !fits(next, ts.arg)) {
        err(ctx, next?.pos ?? a.pos, `":${a.name}" takes ${ts.arg === 'number' ? 'a number' : ts.arg === 'string' ? 'a string' : 'a string list'}${next === undefined ? '' : `, found ${typeName(next)}`}`)
        continue
      }
      i++
      value = varg(ctx, next, a.name !== 'comparator' && a.name !== 'count' && a.name !== 'value')
    }
    tags.set(a.name, value)
  }
  if (spec.requiredGroup !== undefined && !groups.has(spec.requiredGroup)) {
    const names = Object.entries(spec.tags ?? {}).filter(([, t]) => t.group === spec.requiredGroup).map(([k]) => `:${k}`)
    err(ctx, n.pos, `"${n.name}" needs one of ${names.join(' or ')}`)
  }
  // positional arguments
  const lead = spec.optionalLeading ?? 0
  const trail = spec.optionalTrailing ?? 0
  const min = spec.args.length - lead - trail
  let types = spec.args
  if (positional.length < min || positional.length > spec.args.length) {
    const want = min === spec.args.length ? `${min}` : `${min} to ${spec.args.length}`
    err(ctx, positional[spec.args.length]?.pos ?? n.pos, `"${n.name}" takes ${want} positional argument${spec.args.length === 1 ? '' : 's'}, found ${positional.length}`)
    return null
  }
  if (lead > 0 && positional.length < spec.args.length) types = spec.args.slice(spec.args.length - positional.length)
  const args: VArg[] = []
  for (let k = 0; k < positional.length; k++) {
    const a = positional[k]
    if (!fits(a, types[k])) {
      err(ctx, a.pos, `argument ${k + 1} of "${n.name}" must be ${types[k] === 'number' ? 'a number' : types[k] === 'string' ? 'a string' : 'a string or string list'}, found ${typeName(a)}`)
      return null
    }
    args.push(varg(ctx, a, !noExpand || (n.name === 'set' && k === 1)))
  }
  // tests and block
  const tests: Node[] = []
  if (spec.tests === undefined && n.tests.length > 0) {
    // Most often a forgotten ';': the next command was read as a test of this one
    const t = n.tests[0]
    if (kind === 'command') err(ctx, n.pos, `missing ';' after "${n.name}" ("${n.name}" takes no test; found "${t.name}" at line ${t.pos.line} column ${t.pos.column})`)
    else err(ctx, n.pos, `"${n.name}" takes no test; found "${t.name}" at line ${t.pos.line} column ${t.pos.column} (a missing ',' between tests?)`)
    return null
  }
  if (spec.tests === 'one' && (n.tests.length !== 1 || n.testList)) err(ctx, n.tests[0]?.pos ?? n.pos, `"${n.name}" takes exactly one test${n.testList ? ' (not a test list)' : ''}`)
  if (spec.tests === 'list' && !n.testList) err(ctx, n.tests[0]?.pos ?? n.pos, `"${n.name}" takes a test list in parentheses`)
  for (const t of n.tests) {
    const v = node(ctx, t, 'test')
    if (v !== null) tests.push(v)
  }
  let block: Node[] | null = null
  if ('block' in n) {
    if (spec.block === true && n.block === null) err(ctx, n.pos, `"${n.name}" needs a block { ... }`)
    if (spec.block !== true && n.block !== null) err(ctx, n.pos, `"${n.name}" takes no block; end it with ';'`)
    if (n.block !== null) block = commands(ctx, n.block, false)
  }
  const out: Node = { name: n.name, pos: n.pos, tags, args, tests, block, comparator: 'i;ascii-casemap', match: 'is', relop: null }
  semantics(ctx, out)
  return out
}

/** Per-command rules beyond the table. */
function semantics (ctx: Ctx, n: Node): void {
  const cmp = n.tags.get('comparator')
  if (cmp != null) {
    const name = constants(ctx, cmp, 'a comparator name')?.[0]
    if (name !== undefined) {
      const key = name.toLowerCase()
      if (!(key in COMPARATORS)) err(ctx, cmp.pos, `unknown comparator "${name}"`)
      else {
        const ext = COMPARATORS[key]
        if (ext !== null) needs(ctx, ext, cmp.pos, `comparator "${name}"`)
        n.comparator = key
      }
    }
  }
  for (const m of ['is', 'contains', 'matches', 'regex', 'count', 'value']) {
    if (!n.tags.has(m)) continue
    n.match = m
    const op = n.tags.get(m)
    if (op != null) {
      const v = constants(ctx, op, 'a relational operator')?.[0]?.toLowerCase()
      if (v !== undefined && !RELATIONAL_OPS.has(v)) err(ctx, op.pos, `unknown relational operator "${v}" (gt, ge, lt, le, eq or ne)`)
      n.relop = v ?? 'eq'
    }
  }
  if (n.comparator === 'i;ascii-numeric' && (n.match === 'contains' || n.match === 'matches' || n.match === 'regex')) {
    err(ctx, n.pos, `comparator "i;ascii-numeric" cannot be used with :${n.match} (RFC 4790 9.1: no substring matching)`)
  }
  if (n.match === 'regex') {
    const keys = n.name === 'deleteheader' ? n.args[1] : n.args[n.args.length - 1]
    for (const k of keys?.t === 'l' ? keys.items : keys?.t === 's' ? [keys.s] : []) {
      if (k.constant === null) continue
      if (Buffer.byteLength(k.constant) > ctx.limits.regexPatternBytesMax) { err(ctx, k.pos, `regular expression longer than ${ctx.limits.regexPatternBytesMax} bytes`); continue }
      try {
        compileRegex(k.constant, n.comparator === 'i;ascii-casemap')
      } catch (e) {
        if (!(e instanceof RegexSyntaxError)) throw e
        err(ctx, k.pos, `invalid regular expression: ${e.message}`)
      }
    }
  }
  if (n.tags.has('last') && !n.tags.has('index') && n.name !== 'addheader' && n.name !== 'duplicate') err(ctx, n.pos, '":last" is only allowed with ":index"')
  const index = n.tags.get('index')
  if (index?.t === 'n' && index.n < 1) err(ctx, index.pos, '":index" counts from 1')
  switch (n.name) {
    case 'set': {
      const name = n.args[0]?.t === 's' ? n.args[0].s : null
      if (name !== null) {
        const v = variableName(name.constant ?? '')
        if (v === null || name.constant === null) err(ctx, name.pos, `"${name.constant ?? ''}" is not a valid variable name`)
        else if (v.ns !== null && (v.ns !== 'global' || !ctx.requires.has('include'))) err(ctx, name.pos, `unknown variable namespace "${v.ns}"`)
      }
      break
    }
    case 'global':
      for (const s of constants(ctx, n.args[0], 'a global variable name') ?? []) {
        const v = variableName(s)
        if (v === null || v.ns !== null) err(ctx, n.args[0].pos, `"${s}" is not a valid variable name`)
      }
      needs(ctx, 'variables', n.pos, '"global"')
      break
    case 'include': {
      const name = constants(ctx, n.args[0], 'an included script name')?.[0]
      if (name !== undefined && (name === '' || name.includes('/') || /[\x00-\x1f\x7f]/.test(name) || Buffer.byteLength(name) > 255)) {
        err(ctx, n.args[0].pos, `"${name}" is not a valid script name`)
      }
      break
    }
    case 'setflag': case 'addflag': case 'removeflag': case 'hasflag':
      if (n.args.length === 2) {
        needs(ctx, 'variables', n.args[0].pos, 'a flag variable')
        const names = n.args[0].t === 's' ? [n.args[0].s] : n.args[0].t === 'l' ? n.args[0].items : []
        for (const s of names) if (s.constant !== null && variableName(s.constant) === null) err(ctx, s.pos, `"${s.constant}" is not a valid variable name`)
      }
      break
    case 'redirect': {
      const a = n.args[0]
      if (a?.t === 's' && a.s.constant !== null && validRedirectAddress(a.s.constant) === null) err(ctx, a.pos, `"${a.s.constant}" is not a valid address to redirect to`)
      break
    }
    case 'fileinto': {
      const a = n.args[0]
      if (a?.t === 's' && a.s.constant === '') err(ctx, a.pos, 'the mailbox name is empty')
      break
    }
    case 'addheader': case 'deleteheader': {
      const a = n.args[0]
      if (a?.t === 's' && a.s.constant !== null) {
        if (!validFieldName(a.s.constant)) err(ctx, a.pos, `"${a.s.constant}" is not a valid header field name`)
        else if (isProtectedHeader(a.s.constant)) err(ctx, a.pos, `the "${a.s.constant}" header field is protected: it cannot be added or deleted (RFC 5293 section 4)`)
      }
      break
    }
    case 'date': case 'currentdate': {
      const part = n.args[n.name === 'date' ? 1 : 0]
      if (part?.t === 's' && part.s.constant !== null && !DATE_PARTS.has(part.s.constant.toLowerCase())) err(ctx, part.pos, `unknown date part "${part.s.constant}"`)
      const zone = n.tags.get('zone')
      if (zone?.t === 's' && zone.s.constant !== null && !validZone(zone.s.constant)) err(ctx, zone.pos, `"${zone.s.constant}" is not a time zone (+hhmm or -hhmm)`)
      break
    }
    case 'address': {
      const a = n.args[0]
      for (const h of a?.t === 'l' ? a.items : a?.t === 's' ? [a.s] : []) {
        if (h.constant !== null && !isAddressHeader(h.constant)) err(ctx, h.pos, `the address test only reads fields that hold addresses; "${h.constant}" does not (RFC 5228 5.1)`)
      }
      break
    }
    case 'vacation': {
      const from = n.tags.get('from')
      if (from?.t === 's' && from.s.constant !== null && !validSender(from.s.constant)) err(ctx, from.pos, `":from" must be an address, "${from.s.constant}" is not one`)
      for (const a of n.tags.get('addresses')?.t === 'l' || n.tags.get('addresses')?.t === 's' ? constants(ctx, n.tags.get('addresses') as VArg, 'an address') ?? [] : []) {
        if (!validSender(a)) err(ctx, (n.tags.get('addresses') as VArg).pos, `":addresses" must list addresses, "${a}" is not one`)
      }
      break
    }
    case 'envelope': {
      const a = n.args[0]
      for (const s of a?.t === 'l' ? a.items : a?.t === 's' ? [a.s] : []) {
        if (s.constant !== null && !['from', 'to', 'auth'].includes(s.constant.toLowerCase())) err(ctx, s.pos, `unknown envelope part "${s.constant}" (from, to or auth)`)
      }
      break
    }
  }
}

function commands (ctx: Ctx, list: CommandNode[], top: boolean): Node[] {
  const out: Node[] = []
  let prev: string | null = null
  let requiresOpen = top
  for (const c of list) {
    if (c.name === 'require') {
      if (!requiresOpen) err(ctx, c.pos, '"require" must come before any other command (RFC 5228 3.2)')
    } else {
      requiresOpen = false
    }
    if ((c.name === 'elsif' || c.name === 'else') && prev !== 'if' && prev !== 'elsif') err(ctx, c.pos, `"${c.name}" must follow "if" or "elsif"`)
    const v = node(ctx, c, 'command')
    if (v !== null && c.name !== 'require') out.push(v)
    prev = c.name
  }
  return out
}

/** Reads the leading require commands into ctx.requires (unknown capabilities are errors). */
function collectRequires (ctx: Ctx, list: CommandNode[]): void {
  for (const c of list) {
    if (c.name !== 'require') break
    for (const a of c.args) {
      const items = a.kind === 'list' ? a.items : a.kind === 'string' ? [a] : []
      for (const s of items) {
        const cap = s.value.toLowerCase()
        if (!SIEVE_EXTENSIONS.includes(cap)) err(ctx, s.pos, `unsupported extension "${s.value}"`)
        else {
          ctx.requires.add(cap)
          for (const i of IMPLIED[cap] ?? []) ctx.requires.add(i)
        }
      }
    }
  }
}

export function validateScript (list: CommandNode[], limits: SieveLimits, name: string | null, location: 'personal' | 'global' | null): { program: Program, errors: SieveError[] } {
  const ctx: Ctx = { requires: new Set(), errors: [], limits }
  let cmds: Node[] = []
  try {
    collectRequires(ctx, list)
    cmds = commands(ctx, list, true)
  } catch (e) {
    if (!(e instanceof Fatal)) throw e
  }
  return {
    program: { name, location, commands: cmds, requires: ctx.requires, variables: ctx.requires.has('variables'), includes: new Map() },
    errors: ctx.errors
  }
}

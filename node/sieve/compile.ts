// compileSieve: size check, parse, validate, and (when the caller can resolve them) the included scripts,
// with RFC 6609's rules: a script may not include itself through any chain, the chain is at most
// includeDepthMax deep, and the whole tree holds at most includeScriptsMax scripts.

import type { CommandNode } from './ast.ts'
import { mergeLimits, SIEVE_LIMITS_DEFAULT } from './limits.ts'
import { parseSieve } from './parser.ts'
import type { Node, Program } from './program.ts'
import type { CompileOptions, CompileResult, CompiledScript, SieveError, SieveLimits } from './types.ts'
import { validateScript } from './validate.ts'

export interface ScriptAst {
  main: Program
  limits: SieveLimits
}

/** The line and column of byte `offset` of `src`. */
function locate (src: Buffer, offset: number): { line: number, column: number } {
  let line = 1
  let start = 0
  for (let i = src.indexOf(0x0a); i !== -1 && i < offset; i = src.indexOf(0x0a, i + 1)) {
    line++
    start = i + 1
  }
  return { line, column: offset - start + 1 }
}

/** Parses and validates one script (no includes). */
export function compileProgram (source: string, limits: SieveLimits, name: string | null, location: 'personal' | 'global' | null): { program: Program | null, errors: SieveError[] } {
  const src = Buffer.from(source, 'utf8')
  if (src.length > limits.scriptBytesMax) {
    const at = locate(src, limits.scriptBytesMax)
    return { program: null, errors: [{ ...at, offset: limits.scriptBytesMax, message: `script too large: ${src.length} bytes, the limit is ${limits.scriptBytesMax} bytes` }] }
  }
  const parsed = parseSieve(src, limits)
  if (!parsed.ok) return { program: null, errors: [parsed.error] }
  const { program, errors } = validateScript(parsed.commands, limits, name, location)
  return { program: errors.length === 0 ? program : null, errors }
}

/** Every include command of a program, in order, with its arguments. */
export function includesOf (commands: Node[]): Node[] {
  const out: Node[] = []
  const walk = (list: Node[]): void => {
    for (const c of list) {
      if (c.name === 'include') out.push(c)
      if (c.block !== null) walk(c.block)
    }
  }
  walk(commands)
  return out
}

export function includeTarget (c: Node): { key: string, name: string, location: 'personal' | 'global', once: boolean, optional: boolean } {
  const location = c.tags.has('global') ? 'global' : 'personal'
  const a = c.args[0]
  const name = a.t === 's' ? a.s.constant ?? '' : ''
  return { key: `${location}:${name}`, name, location, once: c.tags.has('once'), optional: c.tags.has('optional') }
}

function tagErrors (errors: SieveError[], name: string, location: string): SieveError[] {
  return errors.map(e => ({ ...e, script: `${location}:${name}`, message: `in included script "${name}" (${location}): ${e.message}` }))
}

export function compileSieve (source: string, opts: CompileOptions = {}): CompileResult {
  const limits: SieveLimits = mergeLimits(SIEVE_LIMITS_DEFAULT, opts.limits)
  const { program, errors } = compileProgram(source, limits, null, null)
  if (program === null) return { ok: false, errors }
  const requires = new Set(program.requires)
  const resolve = opts.resolveInclude
  if (resolve !== undefined) {
    const compiled = new Map<string, Program | null>()
    const done = new Map<string, number>() // key -> height of its include tree (memoized: each script is walked once)
    const out: SieveError[] = []
    // Depth-first with a stack: a key on the stack reached again is a loop (RFC 6609 3.2).
    const visit = (p: Program, stack: string[]): number => {
      let height = 0
      for (const c of includesOf(p.commands)) {
        if (out.length > 0) return height
        const t = includeTarget(c)
        const at = { line: c.pos.line, column: c.pos.column, offset: c.pos.offset }
        const where = p.name === null ? {} : { script: `${p.location ?? 'personal'}:${p.name}` }
        if (stack.includes(t.key)) { out.push({ ...at, ...where, message: `include loop: "${t.name}" includes itself (${[...stack.slice(1), t.key].join(' -> ')})` }); return height }
        if (stack.length > limits.includeDepthMax) { out.push({ ...at, ...where, message: `includes nested deeper than ${limits.includeDepthMax}` }); return height }
        let child = compiled.get(t.key)
        if (child === undefined) {
          if (compiled.size >= limits.includeScriptsMax) { out.push({ ...at, ...where, message: `more than ${limits.includeScriptsMax} included scripts` }); return height }
          const text = resolve(t.name, t.location)
          if (text === null) {
            if (!t.optional) { out.push({ ...at, ...where, message: `included script "${t.name}" (${t.location}) does not exist` }); return height }
            child = null
          } else {
            const r = compileProgram(text, limits, t.name, t.location)
            if (r.program === null) { out.push(...tagErrors(r.errors, t.name, t.location)); return height }
            child = r.program
            for (const x of child.requires) requires.add(x)
          }
          compiled.set(t.key, child)
        }
        p.includes.set(t.key, child)
        if (child === null) continue
        let h = done.get(t.key)
        if (h === undefined) {
          h = visit(child, [...stack, t.key])
          if (out.length > 0) return height
          done.set(t.key, h)
        }
        if (stack.length + h > limits.includeDepthMax) { out.push({ ...at, ...where, message: `includes nested deeper than ${limits.includeDepthMax}` }); return height }
        height = Math.max(height, h + 1)
      }
      return height
    }
    visit(program, [':main'])
    if (out.length > 0) return { ok: false, errors: out }
  }
  const ast: ScriptAst = { main: program, limits }
  const script: CompiledScript = Object.freeze({ kind: 'sieve', requires: Object.freeze([...requires]), ast })
  return { ok: true, script, requires: [...requires] }
}

export type { CommandNode }

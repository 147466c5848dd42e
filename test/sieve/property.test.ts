// Property tests: the compiler never throws, whatever the bytes (it returns errors), and a printed syntax tree
// parses back to the same tree.

import assert from 'node:assert/strict'
import { it } from 'node:test'
import fc from 'fast-check'
import type { Arg, CommandNode, StringArg, TestNode } from '../../node/sieve/ast.ts'
import { compileSieve } from '../../node/sieve/index.ts'
import { SIEVE_LIMITS_DEFAULT } from '../../node/sieve/limits.ts'
import { parseSieve } from '../../node/sieve/parser.ts'
import { printScript } from '../../node/sieve/printer.ts'

// Fragments a script is made of, so that random input reaches deep into the grammar, not only the lexer.
const TOKENS = ['require', 'if', 'elsif', 'else', 'header', 'address', ':is', ':contains', ':matches', ':regex', ':count', '"gt"',
  '"subject"', '"a*b"', '[', ']', '(', ')', '{', '}', ',', ';', ' ', '\n', '\r\n', 'text:', '.', '\\', '"', '#', '/*', '*/', '10K',
  'anyof', 'allof', 'not', 'true', 'false', 'fileinto', 'keep', 'stop', 'set', '"${1}"', '"${hex:41}"', '"variables"', '"fileinto"',
  ':comparator', '"i;ascii-numeric"', 'include', 'vacation', ':days', 'é', '\u0000', '99999999999999999999', 'G', ':']

it('compileSieve never throws: random bytes and random token soups only produce errors', () => {
  const soup = fc.array(fc.constantFrom(...TOKENS), { maxLength: 60 }).map(a => a.join(''))
  const bytes = fc.uint8Array({ maxLength: 300 }).map(b => Buffer.from(b).toString('latin1'))
  fc.assert(fc.property(fc.oneof(soup, bytes, fc.string({ maxLength: 200 })), (source) => {
    const r = compileSieve(source)
    if (!r.ok) {
      assert.ok(r.errors.length > 0)
      for (const e of r.errors) {
        assert.ok(e.line >= 1 && e.column >= 1 && e.offset >= 0 && e.offset <= Buffer.byteLength(source), JSON.stringify(e))
        assert.equal(typeof e.message, 'string')
      }
    }
  }), { numRuns: 3000 })
})

// Syntax trees (any identifiers, any strings without NUL): the parser checks syntax only, so none are refused.
const ident = fc.stringMatching(/^[a-z_][a-z0-9_]{0,8}$/).filter(s => s !== 'text')
const text = fc.string({ unit: 'grapheme', maxLength: 20 }).filter(s => !s.includes('\u0000'))
const P = { offset: 0, line: 0, column: 0 }
const str: fc.Arbitrary<StringArg> = text.map(value => ({ kind: 'string', value, multiline: false, pos: P }))
const arg: fc.Arbitrary<Arg> = fc.oneof(
  ident.map(name => ({ kind: 'tag' as const, name, pos: P })),
  fc.integer({ min: 0, max: 2 ** 40 }).map(value => ({ kind: 'number' as const, value, pos: P })),
  str,
  fc.array(str, { minLength: 1, maxLength: 4 }).map(items => ({ kind: 'list' as const, items, pos: P }))
)
const { test } = fc.letrec<{ test: TestNode }>(tie => ({
  test: fc.record({
    name: ident,
    pos: fc.constant(P),
    args: fc.array(arg, { maxLength: 3 }),
    tests: fc.oneof({ depthSize: 'small' }, fc.constant<TestNode[]>([]), fc.array(tie('test'), { minLength: 1, maxLength: 3 })),
    testList: fc.boolean()
  }).map(t => ({ ...t, testList: t.tests.length > 1 || (t.tests.length === 1 && t.testList) }))
}))
const { commands } = fc.letrec<{ commands: CommandNode[] }>(tie => ({
  commands: fc.array(fc.record({
    name: ident,
    pos: fc.constant(P),
    args: fc.array(arg, { maxLength: 3 }),
    tests: fc.oneof(fc.constant<TestNode[]>([]), fc.array(test, { minLength: 1, maxLength: 2 })),
    testList: fc.boolean(),
    block: fc.oneof({ depthSize: 'small' }, fc.constant<CommandNode[] | null>(null), tie('commands'))
  }).map(c => ({ ...c, testList: c.tests.length > 1 || (c.tests.length === 1 && c.testList) })), { maxLength: 4 })
}))

function strip (v: unknown): unknown {
  if (Array.isArray(v)) return v.map(strip)
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, x] of Object.entries(v)) if (k !== 'pos' && k !== 'multiline') out[k] = strip(x)
    return out
  }
  return v
}

it('a printed syntax tree parses back to the same tree', () => {
  fc.assert(fc.property(commands, (tree) => {
    const source = printScript(tree)
    const r = parseSieve(Buffer.from(source), { nestingDepthMax: 1000, stringListMax: SIEVE_LIMITS_DEFAULT.stringListMax })
    if (!r.ok) assert.fail(`${JSON.stringify(r.error)} in:\n${source}`)
    assert.deepEqual(strip(r.commands), strip(tree))
  }), { numRuns: 1000 })
})

it('parser fed a valid script with each byte position cut off never throws', () => {
  const full = 'require ["fileinto", "variables"];\nif header :matches "subject" "[*] *" {\n  fileinto "lists.${1}";\n} elsif size :over 10K { discard; }\nset "v" text:\nx\n..y\n.\n;\n'
  for (let i = 0; i <= full.length; i++) {
    const r = compileSieve(full.slice(0, i))
    if (!r.ok) assert.ok(r.errors[0].offset <= i)
  }
})

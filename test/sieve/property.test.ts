// Property tests: the compiler never throws, whatever the bytes (it returns errors), and a printed syntax tree
// parses back to the same tree.

import assert from 'node:assert/strict'
import { it } from 'node:test'
import fc from 'fast-check'
import type { Arg, CommandNode, StringArg, TestNode } from '../../node/sieve/ast.ts'
import { compileSieve, runSieve } from '../../node/sieve/index.ts'
import { environment, message } from './helpers.ts'
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

it('runSieve never throws: random valid scripts run to an outcome without an internal error', async () => {
  const HEADER = 'require ["fileinto", "variables", "imap4flags", "regex", "relational", "comparator-i;ascii-numeric", "body", "editheader", "include", "envelope", "subaddress", "date", "index", "duplicate", "vacation", "copy", "mailbox", "reject"];\n'
  const key = fc.constantFrom('"a"', '"*a*"', '"${1}"', '["x", "${0}"]', '"12"', '""', '"?*"', '"\\\\*"')
  const rx = fc.constantFrom('"(a|b)+"', '"^[[:alpha:]]+$"', '"x{2,3}"', '"(a*)*b"', '"."')
  const match = fc.oneof(fc.tuple(fc.constantFrom(':is', ':contains', ':matches', ':count "ge" :comparator "i;ascii-numeric"', ':value "lt"'), key), rx.map(r => [':regex', r] as [string, string]))
  const index = fc.constantFrom('', ':index 1', ':index 2 :last')
  const test: fc.Arbitrary<string> = fc.letrec<{ t: string }>(tie => ({
    t: fc.oneof({ depthSize: 'small' },
      fc.tuple(index, match, fc.constantFrom('"subject"', '["from", "to"]', '"x-absent"')).map(([i, [m, k], h]) => `header ${i} ${m} ${h} ${k}`),
      fc.tuple(fc.constantFrom('', ':user', ':detail', ':domain', ':localpart'), match).map(([p, [m, k]]) => `address ${p} ${m} "from" ${k}`),
      fc.tuple(fc.constantFrom('"from"', '"to"'), key).map(([p, k]) => `envelope :detail ${p} ${k}`),
      key.map(k => `body :text :contains ${k}`),
      key.map(k => `string :matches "\${v}" ${k}`),
      key.map(k => `hasflag :contains ${k}`),
      fc.constantFrom('"hour"', '"date"', '"zone"').map(p => `date :originalzone :value "ge" "date" ${p} "1"`),
      fc.constantFrom('duplicate', 'duplicate :last :seconds 10', 'exists "subject"', 'true', 'false', 'size :over 10'),
      tie('t').map(t => `not ${t}`),
      fc.array(tie('t'), { minLength: 1, maxLength: 3 }).map(ts => `anyof (${ts.join(', ')})`)
    )
  })).t
  const action = fc.oneof(
    fc.constantFrom('keep;', 'discard;', 'stop;', 'fileinto "f${1}";', 'fileinto :copy :create "x";', 'redirect "x@example.org";', 'redirect :copy "y${1}@example.org";',
      'set "v" "${0}${v}";', 'set :length "v" "${v}";', 'addflag "\\\\Seen ${1}";', 'removeflag "a";', 'addheader "X-A" "${v}";', 'deleteheader :index 1 "subject";',
      'vacation "away";', 'reject "no";', 'include :optional "v";', 'return;'),
    key.map(k => `setflag ${k};`)
  )
  const block: fc.Arbitrary<string> = fc.letrec<{ b: string }>(tie => ({
    b: fc.array(fc.oneof({ depthSize: 'small' }, action, fc.tuple(test, tie('b'), fc.option(tie('b'))).map(([t, a, e]) => `if ${t} { ${a} }${e === null ? '' : ` else { ${e} }`}`)), { maxLength: 5 }).map(a => a.join('\n'))
  })).b
  const msg = message('From: a+b@example.org\nTo: user@example.com\nSubject: abc [x] 12\nDate: Tue, 1 Apr 1997 09:06:31 -0800\nMessage-ID: <1@x>')
  await fc.assert(fc.asyncProperty(block, async (body) => {
    const r = compileSieve(HEADER + body)
    if (!r.ok) assert.fail(`${JSON.stringify(r.errors)}\n${body}`)
    const o = await runSieve(r.script, msg, environment({ scripts: { 'personal:v': 'keep;' } }))
    for (const e of o.errors) assert.doesNotMatch(e.message, /internal error/, body)
    if (o.errors.length > 0) assert.deepEqual(o.keep, [{ mailbox: 'INBOX', flags: [], create: false }])
  }), { numRuns: 1500 })
})

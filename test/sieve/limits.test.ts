// Hostile scripts: each limit of node/sieve/limits.ts is refused at compile time or stops the run with the
// implicit keep (RFC 5228 2.10.6). Nothing here measures time: a limit that failed would hang or exhaust the
// stack, and the run's step budget is what bounds the work.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { compileSieve, runSieve, SIEVE_LIMITS_DEFAULT } from '../../node/sieve/index.ts'
import { compileErr, compileOk, environment, folders, message, run } from './helpers.ts'

const L = SIEVE_LIMITS_DEFAULT

describe('sieve limits', () => {
  it('nesting: blocks, not() and test lists deeper than nestingDepthMax are refused at the exact byte', () => {
    const blocks = 'if true {'.repeat(1000) + '}'.repeat(1000)
    const e = compileErr(blocks)[0]
    assert.match(e.message, /nesting too deep \(the limit is 32/)
    assert.equal(e.offset, 32 * 9 + 3) // 32 nested blocks are allowed; the test of the 33rd "if" is one level too deep
    assert.match(compileErr(`if ${'not '.repeat(100000)}true { keep; }`)[0].message, /nesting too deep/)
    assert.match(compileErr(`if ${'anyof('.repeat(100000)}`)[0].message, /nesting too deep/)
    compileOk('if true {'.repeat(15) + '}'.repeat(15))
  })

  it('script size: one byte over scriptBytesMax is refused with the size in the message', () => {
    const big = '#'.repeat(L.scriptBytesMax) + '\n'
    const e = compileErr(big)[0]
    assert.equal(e.message, `script too large: ${L.scriptBytesMax + 1} bytes, the limit is ${L.scriptBytesMax} bytes`)
    assert.equal(e.offset, L.scriptBytesMax)
  })

  it('a script of about 1 MB below the limit compiles and runs within its step budget', async () => {
    const line = 'if header :contains "subject" "needle" { keep; }\n'
    const source = 'require "fileinto";\n' + line.repeat(Math.floor((L.scriptBytesMax - 100) / line.length))
    assert.ok(Buffer.byteLength(source) > 1_000_000)
    const c = compileOk(source)
    const o = await runSieve(c.script, message('Subject: no'), environment())
    assert.deepEqual(folders(o), ['INBOX'])
    const small = await runSieve(c.script, message('Subject: no'), environment({ limits: { stepsMax: 10_000 } }))
    assert.match(small.errors[0].message, /more than 10000 steps/)
    assert.deepEqual(folders(small), ['INBOX'])
  })

  it('string lists longer than stringListMax are refused', () => {
    const list = `[${Array.from({ length: L.stringListMax + 1 }, (_, i) => `"k${i}"`).join(',')}]`
    assert.match(compileErr(`if header :is "subject" ${list} { keep; }`)[0].message, /too many strings in a list/)
  })

  it('10,000 redirects: the run stops at redirectsMax, nothing is redirected, the message is kept', async () => {
    const source = Array.from({ length: 10_000 }, (_, i) => `redirect "user${i}@example.org";`).join('\n')
    const o = await run(source, message('Subject: x'))
    assert.deepEqual(o.redirects, [])
    assert.deepEqual(folders(o), ['INBOX'])
    assert.match(o.errors[0].message, new RegExp(`more than ${L.redirectsMax} redirects`))
    assert.equal(o.errors[0].line, L.redirectsMax + 1)
    const same = await run('redirect "a@example.org";\n'.repeat(20), message('Subject: x'))
    assert.deepEqual(same.errors, []) // the same address twice is one redirect (RFC 5228 2.10.3)
  })

  it('actions: more than actionsMax is a runtime error', async () => {
    const source = 'require "fileinto";\n' + Array.from({ length: 100 }, (_, i) => `fileinto "f${i}";`).join('\n')
    const o = await run(source, message('Subject: x'))
    assert.deepEqual(folders(o), ['INBOX'])
    assert.match(o.errors[0].message, new RegExp(`more than ${L.actionsMax} actions`))
    assert.equal(o.errors[0].line, L.actionsMax + 2)
  })

  it('variables: values are truncated to variableBytesMax, at most variablesMax names', async () => {
    const long = await run(`require ["variables", "fileinto"];\nset "a" "${'é'.repeat(5000)}";\nset :length "n" "\${a}";\nfileinto "\${n}";`, message('Subject: x'))
    assert.deepEqual(folders(long), [String(L.variableBytesMax / 2)]) // 2-byte characters, cut on a character boundary
    const many = 'require "variables";\n' + Array.from({ length: L.variablesMax + 1 }, (_, i) => `set "v${i}" "x";`).join('\n')
    const o = await run(many, message('Subject: x'))
    assert.match(o.errors[0].message, new RegExp(`more than ${L.variablesMax} variables`))
  })

  it('catastrophic regexes run in linear time: (a+)+$ on 100 KB, and a heavier one stops at the step budget', async () => {
    const script = 'require ["regex", "fileinto"];\nif header :regex "subject" "(a+)+$" { fileinto "matched"; }'
    const m = message(`Subject: ${'a'.repeat(60_000)}!`)
    const o = await run(script, m)
    assert.deepEqual(o.errors, [])
    assert.deepEqual(folders(o), ['INBOX'])
    // a longer value is matched on its first regexInputBytesMax bytes (here all a's: a match)
    const cut = await run(script, message(`Subject: ${'a'.repeat(100_000)}!`))
    assert.deepEqual(folders(cut), ['matched'])
    const heavy = await run('require ["regex", "fileinto"];\nif header :regex "subject" "(a|aa|a?a|(a*)*)*(a*)*(b|aab)" { fileinto "matched"; }', m)
    assert.deepEqual(folders(heavy), ['INBOX'])
    assert.match(heavy.errors[0].message, /more than \d+ steps/)
    assert.equal(heavy.errors[0].line, 2)
  })

  it('includes nested deeper than includeDepthMax, and more scripts than includeScriptsMax, are refused', async () => {
    const chain: Record<string, string> = {}
    for (let i = 0; i < 20; i++) chain[`personal:s${i}`] = `require "include"; include "s${i + 1}";`
    chain['personal:s20'] = 'keep;'
    const resolve = (n: string, l: string): string | null => chain[`${l}:${n}`] ?? null
    assert.match(compileErr('require "include"; include "s0";', { resolveInclude: resolve })[0].message, /includes nested deeper than 10/)
    const o = await run('require "include"; include "s0";', message('Subject: x'), environment({ scripts: chain }))
    assert.match(o.errors[0].message, /includes nested deeper than 10/)
    const wide = 'require "include";\n' + Array.from({ length: 5 }, (_, i) => `include "s${15 + (i % 5)}";`).join('\n')
    assert.match(compileErr(wide, { resolveInclude: resolve, limits: { includeScriptsMax: 3 } })[0].message, /more than 3 included scripts/)
  })

  it('a diamond of includes is walked once per script, not once per path', () => {
    // 10 layers of 8 scripts, each including all 8 of the next layer: 8^10 paths, 80 scripts.
    const scripts: Record<string, string> = {}
    for (let layer = 0; layer < 9; layer++) {
      for (let k = 0; k < 8; k++) scripts[`personal:l${layer}k${k}`] = 'require "include";\n' + Array.from({ length: 8 }, (_, j) => `include "l${layer + 1}k${j}";`).join('\n')
    }
    for (let k = 0; k < 8; k++) scripts[`personal:l9k${k}`] = 'keep;'
    const r = compileSieve('require "include"; include "l0k0";', { resolveInclude: (n, l) => scripts[`${l}:${n}`] ?? null })
    assert.equal(r.ok, true)
  })

  it('added header fields are bounded by headersAddedMax', async () => {
    const o = await run('require "editheader";\n' + 'addheader "X-A" "1";\n'.repeat(L.headersAddedMax + 1), message('Subject: x'))
    assert.match(o.errors[0].message, new RegExp(`more than ${L.headersAddedMax} added header fields`))
    assert.equal(o.editedMessage, null)
  })

  it(':matches with many wildcards on a long value is charged to the step budget', async () => {
    const m = message(`Subject: ${'ab'.repeat(30_000)}`)
    const o = await run('require "fileinto";\nif header :matches "subject" "*a*a*a*a*a*a*a*a*c" { fileinto "x"; }', m, environment({ limits: { stepsMax: 50_000 } }))
    assert.deepEqual(folders(o), ['INBOX'])
    assert.match(o.errors[0].message, /more than 50000 steps/)
  })

  it('a :regex pattern built from variables is checked at run time: invalid or too long is a runtime error', async () => {
    const bad = await run('require ["regex", "variables", "fileinto"];\nset "p" "(a";\nif header :regex "subject" "${p}" { fileinto "x"; }', message('Subject: a'))
    assert.deepEqual(folders(bad), ['INBOX'])
    assert.match(bad.errors[0].message, /^invalid regular expression: unmatched "\("/)
    assert.equal(bad.errors[0].line, 3)
    const long = await run(`require ["regex", "variables", "fileinto"];\nset "p" "${'a'.repeat(2000)}";\nif header :regex "subject" "\${p}" { fileinto "x"; }`, message('Subject: a'), environment(), { variableBytesMax: 4096 })
    assert.match(long.errors[0].message, /regular expression longer than 1024 bytes/)
  })

  it('a limit given as undefined does not lift the default', async () => {
    const o = await run('redirect "a@example.org"; redirect "b@example.org"; redirect "c@example.org"; redirect "d@example.org"; redirect "e@example.org";', message('Subject: x'), environment({ limits: { redirectsMax: undefined } }), { stepsMax: undefined })
    assert.match(o.errors[0].message, /more than 4 redirects/)
  })
})

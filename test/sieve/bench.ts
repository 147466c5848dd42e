// Not a test: figures for node/sieve/README.md. `node test/sieve/bench.ts` prints the cost of a typical script
// (compile and run), then the wall time of hostile scripts that stay within the default limits, each either
// finishing or stopped by the step budget. Timings depend on the machine; nothing asserts them.

import { compileSieve, runSieve } from '../../node/sieve/index.ts'
import type { SieveMessage } from '../../node/sieve/index.ts'
import { environment, message } from './helpers.ts'

const TYPICAL = `require ["fileinto", "vacation", "variables", "imap4flags"];
if header :is "Sender" "owner-ietf-mta-filters@imc.org" { fileinto "filter"; }
elsif address :DOMAIN :is ["From", "To"] "example.com" { keep; }
elsif anyof (NOT address :all :contains ["To", "Cc", "Bcc"] "me@example.com", header :matches "subject" ["*make*money*fast*", "*university*dipl*mas*"]) { fileinto "spam"; }
else { fileinto "personal"; }
if header :matches "subject" "*" { set "s" "\${1}"; }
vacation :days 7 "Away until Monday";`

async function typical (): Promise<void> {
  const m = message('From: x@y.org\nTo: me@example.com\nCc: a@b.org\nSubject: hello there\nMessage-ID: <1@x>', 'body\r\n'.repeat(2000))
  const env = environment()
  const c = compileSieve(TYPICAL)
  if (!c.ok) throw new Error(JSON.stringify(c.errors))
  for (let i = 0; i < 200; i++) await runSieve(c.script, m, env)
  const N = 2000
  let t = performance.now()
  for (let i = 0; i < N; i++) compileSieve(TYPICAL)
  const compileUs = (performance.now() - t) / N * 1000
  t = performance.now()
  for (let i = 0; i < N; i++) await runSieve(c.script, m, env)
  const runUs = (performance.now() - t) / N * 1000
  console.log(`typical script (10 lines, 12 KB message): compile ${compileUs.toFixed(0)} µs, run ${runUs.toFixed(0)} µs`)
}

async function hostile (): Promise<void> {
  const R = 'require ["regex", "variables", "fileinto", "body", "editheader", "include", "imap4flags", "relational"];\n'
  const bigSubject = message(`Subject: ${'a'.repeat(60000)}`)
  const manyFields = message(Array.from({ length: 50000 }, (_, i) => `X-F: ${i}`).join('\n') + '\nSubject: x')
  const bigBody = message('Subject: x\nContent-Type: text/plain', 'hello world '.repeat(1_000_000))
  const cases: Array<[string, string, SieveMessage]> = [
    ['regex, 300 groups', R + `if header :regex "subject" "${'(a)'.repeat(300)}x" { keep; }\n`, bigSubject],
    ['regex, long brackets x100', R + `if header :regex "subject" "[${'bcdefghijklmnopqrstuvwxyz'.repeat(40)}]" { keep; }\n`.repeat(100), bigSubject],
    ['regex, 200 alternatives x20', R + `if header :regex "subject" "${Array.from({ length: 200 }, (_, i) => 'a'.repeat(i % 5 + 1) + 'b').join('|')}" { keep; }\n`.repeat(20), bigSubject],
    [':matches, 1000 keys x30', R + `if header :matches "subject" [${Array.from({ length: 1000 }, () => '"*a*a*a*b"').join(',')}] { keep; }\n`.repeat(30), bigSubject],
    [':contains, 1000 long keys', R + `if header :contains "subject" [${Array.from({ length: 1000 }, () => `"${'a'.repeat(500)}b"`).join(',')}] { keep; }\n`, bigSubject],
    ['150,000 empty variable refs', R + `set "e" ""; if string "${'${e}'.repeat(150000)}" "x" { keep; }\n`, bigSubject],
    ['growing variables x3000', R + 'set "a" "' + 'x'.repeat(4000) + '";\n' + 'set "b" "${a}${a}${a}${a}${a}${a}${a}${a}";\nif string :contains "${b}${b}${b}${b}${b}${b}${b}${b}" "y" { keep; }\n'.repeat(3000), bigSubject],
    ['50,000 fields, 2000 header tests', R + 'if header :contains "x-f" "zz" { keep; }\n'.repeat(2000), manyFields],
    ['50,000 fields, 2000 deleteheader', R + 'deleteheader :index 1 "x-f";\n'.repeat(2000), manyFields],
    ['12 MB body, 500 body tests', R + 'if body :text :contains "zzz" { keep; }\n'.repeat(500), bigBody],
    ['12 MB body, 50 body regexes', R + 'if body :text :regex "(a|b)*zzz" { keep; }\n'.repeat(50), bigBody]
  ]
  for (const [name, src, msg] of cases) {
    const t0 = performance.now()
    const c = compileSieve(src)
    const t1 = performance.now()
    if (!c.ok) { console.log(`${name.padEnd(34)} refused at compile time (${(t1 - t0).toFixed(0)} ms): ${c.errors[0].message.slice(0, 80)}`); continue }
    const o = await runSieve(c.script, msg, environment())
    const t2 = performance.now()
    console.log(`${name.padEnd(34)} ${(Buffer.byteLength(src) / 1024).toFixed(0).padStart(4)} KiB: compile ${(t1 - t0).toFixed(0).padStart(4)} ms, run ${(t2 - t1).toFixed(0).padStart(4)} ms, ${o.errors[0]?.message ?? 'finished'}`)
  }
}

await typical()
await hostile()

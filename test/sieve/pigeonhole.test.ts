// Differential tests against Dovecot's Pigeonhole (Debian's dovecot-sieve, the implementation users compare
// us with): the same scripts and messages through both, and the same folders, flags, redirects, rejects and
// vacation replies must come out; the same scripts must be refused, with the first error on the same line.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import { compileSieve, runSieve } from '../../node/sieve/index.ts'
import type { SieveOutcome } from '../../node/sieve/index.ts'
import { environment, message, run } from './helpers.ts'
import { isPigeonholeInstalled, Pigeonhole } from './pigeonhole.ts'

const skip = isPigeonholeInstalled() ? false : 'Pigeonhole (dovecot-sieve) is not installed'

const PLAIN = message(`Received: from mx.example.org by mx1.example.com; Tue, 1 Apr 1997 09:06:31 -0800
Received: from a.example.org by mx.example.org; Tue, 1 Apr 1997 09:05:00 -0800
Date: Tue, 1 Apr 1997 09:06:31 -0800
From: "Joe Q. Public" <Joe.Public+news@Example.org>
To: User <user@example.com>, other@example.net
Cc: team: a@example.net, b@example.net;
Subject: [acme-users] [fwd] version 1.0 is out
Message-ID: <m1@example.org>
X-Priority: 3 (Normal)
X-Spam-Score: 12.5
X-Spam: yes
X-Spam: no`, 'Hello,\r\nMake money fast!\r\n')

const LIST = message(`From: list-owner@lists.example.org
To: acme-users@lists.example.org
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus Berlin
List-Id: Acme users <acme-users.lists.example.org>
Precedence: list`, 'digest\r\n', { from: 'acme-users-bounces@lists.example.org' })

const MULTI = message(`From: joe@example.org
To: user@example.com
Subject: parts
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="b1"`, '--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nMake m=C3=B6ney fast\r\n--b1\r\nContent-Type: text/html\r\n\r\n<p>HTML only phrase</p>\r\n--b1--\r\n')

const MESSAGES = { PLAIN, LIST, MULTI }

const CASES: Array<[string, string]> = [
  ['', 'PLAIN'],
  ['discard;', 'PLAIN'],
  ['require "fileinto"; if header :contains "subject" "ACME" { fileinto "acme"; }', 'PLAIN'],
  ['require "fileinto"; if header :is :comparator "i;octet" "subject" "[ACME-users] [fwd] version 1.0 is out" { fileinto "x"; }', 'PLAIN'],
  ['require "fileinto"; if header :contains "subject" "Grüße" { fileinto "de"; }', 'LIST'],
  ['require "fileinto"; if address :domain :is "from" "example.org" { fileinto "dom"; } if address :localpart :is "from" "joe.public+news" { fileinto "lp"; }', 'PLAIN'],
  ['require ["fileinto", "subaddress"]; if address :user "from" "joe.public" { fileinto "u"; } if address :detail "from" "news" { fileinto "d"; } if address :detail "to" "" { fileinto "none"; }', 'PLAIN'],
  ['require ["fileinto", "envelope"]; if envelope :domain "from" "example.org" { fileinto "env"; } if envelope :all :is "to" "user@example.com" { fileinto "to"; }', 'PLAIN'],
  ['require "fileinto"; if address :is "cc" "b@example.net" { fileinto "group"; }', 'PLAIN'],
  ['require "fileinto"; if exists ["x-spam", "x-priority"] { fileinto "both"; } if exists ["x-spam", "x-absent"] { fileinto "never"; }', 'PLAIN'],
  ['require "fileinto"; if size :over 100 { fileinto "big"; } if size :under 100 { fileinto "small"; }', 'PLAIN'],
  ['require "fileinto"; if anyof (not header :contains "subject" "acme", allof (true, false)) { fileinto "no"; } else { fileinto "yes"; }', 'PLAIN'],
  ['require ["relational", "comparator-i;ascii-numeric", "fileinto"]; if header :value "lt" :comparator "i;ascii-numeric" "x-priority" "5" { fileinto "lt5"; } if header :count "eq" :comparator "i;ascii-numeric" "received" "2" { fileinto "two"; } if address :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] "4" { fileinto "four"; }', 'PLAIN'],
  ['require ["relational", "fileinto"]; if header :value "gt" "x-spam-score" "12.0" { fileinto "gt"; } if header :count "eq" "x-spam" "2" { fileinto "c2"; }', 'PLAIN'],
  ['require ["variables", "fileinto"]; if header :matches "subject" "[*] *" { fileinto "lists.${1}"; } if header :matches "from" "*<*@*>" { fileinto "f.${2}.${3}"; }', 'PLAIN'],
  ['require ["variables", "fileinto"]; set "a" "juMBlEd lETteRS"; set :upperfirst :lower "b" "${a}"; set :length "n" "${a}"; fileinto "${b}-${n}";', 'PLAIN'],
  ['require ["variables", "fileinto"]; set :quotewildcard "q" "a*b?"; if string :matches "a*b?" "${q}" { fileinto "lit"; }', 'PLAIN'],
  ['require ["regex", "variables", "fileinto"]; if header :regex "subject" "^\\\\[([a-z-]+)\\\\] \\\\[([a-z]+)\\\\]" { fileinto "${1}.${2}"; }', 'PLAIN'],
  ['require ["regex", "fileinto"]; if header :regex :comparator "i;octet" "subject" "^\\\\[ACME" { fileinto "case"; } if header :regex "x-spam-score" "^[0-9]{2}\\\\.[0-9]$" { fileinto "score"; }', 'PLAIN'],
  ['require ["imap4flags", "fileinto"]; addflag "\\\\Seen"; fileinto "a"; addflag ["$Work", "\\\\Flagged"]; removeflag "\\\\Seen"; keep;', 'PLAIN'],
  ['require ["imap4flags", "fileinto"]; setflag "\\\\Answered"; fileinto :flags "\\\\Flagged" "b";', 'PLAIN'],
  ['require ["imap4flags", "fileinto"]; addflag "$A"; if hasflag :is "$a" { fileinto "has"; }', 'PLAIN'],
  ['require ["fileinto", "copy"]; fileinto :copy "archive"; redirect :copy "backup@example.net";', 'PLAIN'],
  ['redirect "fwd@example.net"; redirect "FWD@example.net";', 'PLAIN'],
  ['redirect "Fred <fred@example.net>"; redirect "joe@example.net (Joe)"; redirect "<ann@example.net>";', 'PLAIN'],
  ['redirect "a1@example.net"; redirect "a2@example.net"; redirect "a3@example.net"; redirect "a4@example.net"; redirect "a5@example.net";', 'PLAIN'],
  ['require "fileinto"; fileinto "a"; fileinto "a"; fileinto "INBOX"; keep;', 'PLAIN'],
  ['require ["fileinto", "mailbox"]; fileinto :create "New/Folder";', 'PLAIN'],
  ['require "reject"; reject "not here";', 'PLAIN'],
  ['require ["reject", "fileinto"]; fileinto "x"; reject "no";', 'PLAIN'],
  ['require ["reject", "fileinto"];\nreject "no";\nfileinto "x";', 'PLAIN'],
  ['require ["reject", "vacation"];\nreject "no";\nvacation "x";', 'PLAIN'],
  ['require ["reject", "vacation"];\nvacation "x";\nreject "no";', 'PLAIN'],
  ['require "vacation"; vacation "away";', 'PLAIN'],
  ['require "vacation"; vacation :days 3 "away";', 'PLAIN'],
  // (a list message gets no vacation reply from us, RFC 5230 4.6; sieve-test prints the reply before the
  // checks Pigeonhole makes when it executes, so that case is in extensions.test.ts, not here)
  ['require "vacation-seconds"; vacation :seconds 3600 "away";', 'PLAIN'],
  ['require "vacation"; vacation "away";', 'MULTI'],
  ['require ["body", "fileinto"]; if body :text :contains "MAKE MONEY" { fileinto "spam"; }', 'PLAIN'],
  ['require ["body", "fileinto"]; if body :content "text/html" :contains "HTML only" { fileinto "html"; } if body :content "text/plain" :contains "HTML only" { fileinto "plain"; }', 'MULTI'],
  ['require ["body", "fileinto"]; if body :raw :contains "m=C3=B6ney" { fileinto "raw"; } if body :text :contains "möney" { fileinto "text"; }', 'MULTI'],
  ['require ["date", "relational", "fileinto"]; if date :value "ge" :originalzone "date" "hour" "09" { fileinto "morning"; } if date :is "date" "hour" "17" { fileinto "utc17"; }', 'PLAIN'],
  ['require ["date", "fileinto"]; if date :zone "+0200" :is "date" "time" "19:06:31" { fileinto "z"; } if date :is "date" "weekday" "2" { fileinto "tue"; } if date :is "date" "julian" "50539" { fileinto "mjd"; }', 'PLAIN'],
  ['require ["date", "index", "fileinto"]; if date :index 1 :last :is "received" "time" "17:05:00" { fileinto "first-hop"; }', 'PLAIN'],
  ['require ["index", "fileinto"]; if header :index 2 :is "x-spam" "no" { fileinto "second"; } if header :index 1 :last :is "x-spam" "yes" { fileinto "wrong"; }', 'PLAIN'],
  ['require ["editheader", "fileinto"]; addheader "X-Sieve" "yes"; if header :is "x-sieve" "yes" { fileinto "added"; } deleteheader "x-spam"; if not exists "x-spam" { fileinto "deleted"; }', 'PLAIN'],
  ['require ["editheader", "index", "fileinto"]; deleteheader :index 1 "x-spam"; if header :is "x-spam" "no" { fileinto "one-left"; }', 'PLAIN'],
  ['require ["encoded-character", "fileinto"]; fileinto "${hex:41 42}${unicode:43}";', 'PLAIN'],
  ['require "fileinto"; if header :matches "x-priority" "3*" { fileinto "p3"; } if header :matches "subject" "*version ?.?*" { fileinto "v"; }', 'PLAIN'],
  ['require "fileinto"; if header :contains "list-id" "acme-users" { fileinto "list"; stop; } fileinto "never";', 'LIST'],
  ['require ["date", "fileinto", "variables"]; if date :originalzone :matches "date" "std11" "*" { set "a" "${1}"; } if date :originalzone :matches "date" "iso8601" "*" { set "b" "${1}"; } if date :matches "date" "zone" "*" { set "c" "${1}"; } fileinto "${a}|${b}|${c}";', 'PLAIN'],
  ['require ["date", "fileinto", "variables"]; if date :zone "-0330" :matches "received" "iso8601" "*" { fileinto "${1}"; }', 'PLAIN'],
  ['require ["body", "fileinto"]; if body :content "text" :contains "HTML only" { fileinto "t"; } if body :content "multipart" :contains "html" { fileinto "m"; } if body :content "image/png" :contains "" { fileinto "png"; }', 'MULTI'],
  ['require ["imap4flags", "variables", "fileinto"]; set "fv" "a b"; addflag "fv" "c"; if hasflag :is "fv" "c" { fileinto "c"; } if hasflag :is "fv" "d" { fileinto "d"; } if hasflag "b" { fileinto "internal"; }', 'PLAIN'],
  ['require ["variables", "relational", "fileinto"]; set "e" ""; if string :count "eq" ["a", "${e}", "b"] "2" { fileinto "two"; } if string :value "gt" "b" "a" { fileinto "gt"; }', 'PLAIN'],
  // (ASCII: Pigeonhole 2.3 matches "?" against a multi-byte character but then loses the match variables)
  ['require ["variables", "fileinto"]; if header :matches "subject" "*?ersion ?.? *" { fileinto "${2}-${3}-${4}-${5}"; }', 'PLAIN'],
  ['require ["index", "fileinto"]; if address :index 2 :is "to" "other@example.net" { fileinto "idx"; } if address :index 1 :last :domain :is "cc" "example.net" { fileinto "cc"; }', 'PLAIN'],
  ['require ["envelope", "subaddress", "fileinto", "variables"]; if envelope :matches :detail "from" "*" { fileinto "d-${1}"; } if envelope :user "to" "user" { fileinto "u"; }', 'LIST'],
  ['require ["variables", "fileinto"]; set :lower :upperfirst "n" "hELLO"; set :upper "m" "${n}"; fileinto "${n}.${m}";', 'PLAIN'],
  ['require "fileinto"; if header :contains ["x-absent", "x-spam"] "no" { fileinto "any"; } if header :is "x-spam" ["maybe", "yes"] { fileinto "key"; }', 'PLAIN'],
  ['require ["fileinto", "reject"]; if header :contains "subject" "acme" { reject text:\nNo lists here.\n..\n.\n; }', 'PLAIN']
]

function ours (o: SieveOutcome): { failed: boolean, errorLine: number | null, stores: string[], redirects: string[], reject: string | null, vacation: { seconds: number } | null } {
  return {
    failed: o.errors.length > 0,
    errorLine: o.errors[0]?.line ?? null,
    stores: o.keep.map(k => k.flags.length === 0 ? k.mailbox : `${k.mailbox}[${k.flags.map(f => f.toLowerCase()).sort().join(' ')}]`).sort(),
    redirects: o.redirects.map(r => r.address.toLowerCase()).sort(),
    reject: o.reject?.reason.replace(/[\r\n]/g, '?') ?? null, // sieve-test prints CR and LF as '?'
    vacation: o.vacation === null ? null : { seconds: o.vacation.seconds }
  }
}

const RANDOM_HEADER = 'require ["fileinto", "variables", "imap4flags", "regex", "relational", "comparator-i;ascii-numeric", "body", "editheader", "include", "envelope", "subaddress", "date", "index", "vacation", "copy", "mailbox", "reject"];\n'

/** Random scripts from a grammar of valid ones, and one-token mutations of them. No "true"/"false" tests:
 * Pigeonhole does not validate code it can tell is dead ("if false { ... }"). `edits`: with addheader and
 * deleteheader (Pigeonhole 2.3's body test sees no body once the header was edited, so runs compare without). */
function generators (edits: boolean): { block: fc.Arbitrary<string>, mutated: fc.Arbitrary<string> } {
  const key = fc.constantFrom('"a"', '"*a*"', '"${1}"', '["x", "${0}"]', '"12"', '""', '"?*"', '"\\\\*"')
  const rx = fc.constantFrom('"(a|b)+"', '"^[[:alpha:]]+$"', '"x{2,3}"', '"(a*)*b"', '"."')
  const match = fc.oneof(fc.tuple(fc.constantFrom(':is', ':contains', ':matches', ':count "ge" :comparator "i;ascii-numeric"', ':value "lt"', ':value "ge" :comparator "i;octet"'), key), rx.map(r => [':regex', r] as [string, string]))
  const index = fc.constantFrom('', ':index 1', ':index 2 :last')
  const test: fc.Arbitrary<string> = fc.letrec<{ t: string }>(tie => ({
    t: fc.oneof({ depthSize: 'small' },
      fc.tuple(index, match, fc.constantFrom('"subject"', '["from", "to"]', '"x-absent"')).map(([i, [m, k], h]) => `header ${i} ${m} ${h} ${k}`),
      fc.tuple(fc.constantFrom('', ':user', ':detail', ':domain', ':localpart', ':all'), match, fc.constantFrom('"from"', '["to", "cc"]', '"sender"')).map(([p, [m, k], h]) => `address ${p} ${m} ${h} ${k}`),
      fc.tuple(fc.constantFrom('"from"', '"to"', '["from", "to"]'), key, fc.constantFrom('', ':localpart', ':detail')).map(([p, k, a]) => `envelope ${a} ${p} ${k}`),
      fc.tuple(fc.constantFrom(':text', ':raw', ':content "text"', ':content ["text/plain", "image"]', ''), key).map(([tr, k]) => `body ${tr} :contains ${k}`),
      // (an explicit comparator: Pigeonhole's string test defaults to i;octet, ours to i;ascii-casemap as RFC 5228 2.7.3 says)
    fc.tuple(fc.constantFrom('i;octet', 'i;ascii-casemap'), key).map(([c, k]) => `string :matches :comparator "${c}" "\${v}" ${k}`),
      key.map(k => `hasflag :contains ${k}`),
      fc.tuple(fc.constantFrom('"hour"', '"date"', '"zone"', '"std11"'), fc.constantFrom(':originalzone', ':zone "+0100"', '')).map(([p, z]) => `date ${z} :value "ge" "date" ${p} "1"`),
      fc.constantFrom('currentdate :is "year" "2026"', 'exists "subject"', 'exists ["a", "b"]', 'size :over 10', 'size :under 1M', 'mailboxexists "x"'),
      tie('t').map(t => `not ${t}`),
      fc.array(tie('t'), { minLength: 1, maxLength: 3 }).map(ts => `anyof (${ts.join(', ')})`),
      fc.array(tie('t'), { minLength: 1, maxLength: 3 }).map(ts => `allof (${ts.join(', ')})`)
    )
  })).t
  const action = fc.oneof(
    fc.constantFrom('keep;', 'discard;', 'stop;', 'fileinto "f${1}";', 'fileinto :copy :create "x";', 'redirect "x@example.org";', 'redirect :copy "y@example.org";',
      'set "v" "${0}${v}";', 'set :length "v" "${v}";', 'set :lower :upperfirst "v" "x";', 'addflag "\\\\Seen ${1}";', 'removeflag "a";', 'addflag "fv" "b";', ...(edits ? ['addheader "X-A" "${v}";', 'addheader :last "X-B" "1";', 'deleteheader :index 1 "subject";', 'deleteheader :matches "x-a" "*";'] : []),
      'vacation "away";', 'vacation :days 3 :subject "s" :from "me@example.com" :addresses ["a@b.c"] :mime :handle "h" "away";', 'reject "no";', 'keep :flags "a";', 'fileinto :flags ["a", "b"] "INBOX";'),
    key.map(k => `setflag ${k};`)
  )
  const block: fc.Arbitrary<string> = fc.letrec<{ b: string }>(tie => ({
    b: fc.array(fc.oneof({ depthSize: 'small' }, action, fc.tuple(test, tie('b'), fc.option(tie('b'))).map(([t, a, e]) => `if ${t} { ${a} }${e === null ? '' : ` else { ${e} }`}`)), { maxLength: 5 }).map(a => a.join('\n'))
  })).b
  // mutations: drop or duplicate one token, or swap in a foreign one
  const TOK = [';', '{', '}', '(', ')', ',', ':is', ':last', ':index', '"x"', '1', 'true', 'keep', 'elsif', 'else', ':copy', ':flags', '[', ']', 'text:\n.\n']
  const mutated = fc.tuple(block, fc.nat(), fc.constantFrom(...TOK), fc.constantFrom(0, 1, 2)).map(([b, at, tok, kind]) => {
    const parts = b.split(/(\s+)/)
    const i = parts.length === 0 ? 0 : at % parts.length
    if (kind === 0) parts.splice(i, 1)
    else if (kind === 1) parts.splice(i, 0, ` ${tok} `)
    else parts[i] = ` ${tok} `
    return parts.join('')
  })
  return { block, mutated }
}

describe('differential: node/sieve against Pigeonhole', { skip }, () => {
  let ph: Pigeonhole
  before(async () => { ph = await Pigeonhole.start() })
  after(async () => { await ph?.stop() })

  for (const [i, [script, name]] of CASES.entries()) {
    it(`case ${i + 1}: ${script.slice(0, 90)} (${name})`, async () => {
      const msg = MESSAGES[name as keyof typeof MESSAGES]
      const theirs = await ph.run(script, msg.raw, msg.envelope)
      const mine = ours(await run(script, msg))
      const { output, ...them } = theirs
      assert.deepEqual({ ...mine, redirects: mine.redirects }, { ...them, redirects: them.redirects.map(r => r.toLowerCase()) }, output)
    })
  }

  const BAD: string[] = [
    'keep\nkeep;',
    'if true {\n  keep;\n',
    'require "fileinto";\nfilein "x";',
    'fileinto "x";',
    'require ["x-unknown"];',
    'keep;\nrequire "fileinto";',
    'elsif true { keep; }',
    'if true;',
    'keep { stop; }',
    'if header :foo "a" "b" { keep; }',
    'if header :is :contains "a" "b" { keep; }',
    'if header "a" { keep; }',
    'redirect ["a@b.c", "d@e.f"];',
    'if size 10 { keep; }',
    'if header :comparator "i;foo" "a" "b" { keep; }',
    'require "comparator-i;ascii-numeric";\nif header :contains :comparator "i;ascii-numeric" "a" "1" { keep; }',
    'require "relational";\nif header :value "gx" "a" "1" { keep; }',
    'require "regex";\n\nif header :regex "s" "(a" { keep; }',
    'require "variables";\nset "a-b" "c";',
    'require "envelope";\n\nif envelope "cc" "a" { keep; }',
    'require "vacation";\nvacation :seconds 60 "x";',
    'if allof true { keep; }',
    'require "fileinto";\nif address :is "subject" "x" { keep; }',
    '"abc',
    'keep; /* open',
    'require "variables";\nset "a" text:\nabc\n' // we point at "text:" (line 2), Pigeonhole at the end of the file
  ]
  const OURS_AT: Record<string, number> = { 'require "variables";\nset "a" text:\nabc\n': 2 }
  for (const [i, script] of BAD.entries()) {
    it(`refused alike, first error on the same line: ${JSON.stringify(script).slice(0, 70)}`, async () => {
      const theirs = await ph.compileErrors(script)
      const mine = compileSieve(script)
      assert.equal(mine.ok, false, `case ${i}: we compiled what Pigeonhole refuses:\n${theirs.output}`)
      assert.ok(theirs.lines.length > 0, `case ${i}: Pigeonhole compiled it`)
      if (!mine.ok && theirs.lines[0] !== 0) assert.equal(mine.errors[0].line, OURS_AT[script] ?? theirs.lines[0], `${JSON.stringify(mine.errors)}\n${theirs.output}`)
    })
  }

  it('random scripts and one-token mutations of them: accepted or refused alike, the first error on the same line (fixed seed)', async () => {
    const { block, mutated } = generators(true)
    // Where we are stricter than Pigeonhole 2.3, on purpose: a tag given twice (it lets ":last :last" pass, no
    // other) and a flag command with more than two arguments (RFC 5232 3 gives it one or two).
    const STRICTER = /tag ":last" given twice|"(?:add|set|remove)flag" takes 1 to 2 positional arguments/
    let both = 0
    let refusedBoth = 0
    const scripts = [...fc.sample(block, { numRuns: 100, seed: 7 }), ...fc.sample(mutated, { numRuns: 250, seed: 7 })]
    for (const body of scripts) {
      const source = RANDOM_HEADER + body
      const mine = compileSieve(source)
      const theirs = await ph.compileErrors(source)
      if (mine.ok && theirs.lines.length === 0) both++
      if (!mine.ok && theirs.lines.length === 0 && STRICTER.test(mine.errors[0].message)) continue
      assert.equal(mine.ok, theirs.lines.length === 0, `${mine.ok ? 'we accept' : `we refuse (${mine.errors[0].message})`}, Pigeonhole ${theirs.lines.length === 0 ? 'accepts' : 'refuses'}:\n${body}\n${theirs.output}`)
      if (!mine.ok && theirs.lines[0] > 0) {
        refusedBoth++
        assert.equal(mine.errors[0].line, theirs.lines[0], `first error: ours ${JSON.stringify(mine.errors[0])}, Pigeonhole:\n${theirs.output}\n${body}`)
      }
    }
    assert.ok(refusedBoth > 100, `only ${refusedBoth} scripts refused by both`)
    assert.ok(both > 100, `only ${both} scripts compiled in both`)
  })

  it('random valid scripts give the same outcome on the same messages (fixed seed)', async () => {
    const { block } = generators(false)
    let compared = 0
    for (const [i, body] of fc.sample(block, { numRuns: 300, seed: 11 }).entries()) {
      const source = RANDOM_HEADER + body
      const c = compileSieve(source)
      if (!c.ok) assert.fail(`${JSON.stringify(c.errors[0])}\n${body}`)
      const msg = i % 2 === 0 ? PLAIN : MULTI // (not LIST: there we send no vacation reply and sieve-test prints one)
      const mine = ours(await runSieve(c.script, msg, environment()))
      const { output, ...them } = await ph.run(source, msg.raw, msg.envelope)
      assert.deepEqual(mine, { ...them, redirects: them.redirects.map(r => r.toLowerCase()) }, `${body}\n${output}`)
      compared++
    }
    assert.equal(compared, 300)
  })

  it('include (RFC 6609): global variables, return, :once, :global, :optional, stop; loops and missing scripts refused alike', async () => {
    const scripts: Record<string, string> = {
      'personal:sub': 'require ["variables", "include", "fileinto"]; global "g"; if string :is "${g}" "1" { fileinto "sub-saw-g"; } set "g" "2"; set "loc" "sub"; return; fileinto "never";',
      'personal:stopper': 'require ["fileinto"]; fileinto "stopper"; stop;',
      'personal:loop_a': 'require "include"; include "loop_b";',
      'personal:loop_b': 'require "include"; include "loop_a";',
      'global:gl': 'require ["fileinto"]; fileinto "from-global";'
    }
    await ph.setIncludes(scripts)
    const resolveInclude = (name: string, location: string): string | null => scripts[`${location}:${name}`] ?? null
    const runs = [
      'require ["variables", "include", "fileinto"]; global "g"; set "g" "1"; set "loc" "main"; include "sub"; include :once "sub"; include :global "gl"; include :optional "nope"; fileinto "g-${g}-${loc}";',
      'require ["include", "fileinto"]; include :personal "stopper"; fileinto "after-stop";',
      'require ["variables", "include", "fileinto"]; set "g" "local"; include "sub"; fileinto "g-${g}";'
    ]
    for (const source of runs) {
      const c = compileSieve(source, { resolveInclude })
      if (!c.ok) assert.fail(JSON.stringify(c.errors))
      const mine = ours(await runSieve(c.script, PLAIN, environment()))
      const { output, ...them } = await ph.run(source, PLAIN.raw, PLAIN.envelope)
      assert.deepEqual(mine, them, `${source}\n${output}`)
    }
    for (const source of ['require "include";\ninclude "loop_a";', 'require "include";\ninclude "missing";', 'require "include";\ninclude :global "sub";']) {
      const theirs = await ph.compileErrors(source)
      assert.ok(theirs.lines.length > 0, `Pigeonhole compiled ${source}`)
      assert.equal(compileSieve(source, { resolveInclude }).ok, false, source)
    }
  })
})

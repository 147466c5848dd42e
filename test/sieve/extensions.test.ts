// variables (RFC 5229), vacation (RFC 5230, RFC 6131), body (RFC 5173), date and index (RFC 5260), regex,
// include (RFC 6609), duplicate (RFC 7352), editheader (RFC 5293), environment (RFC 5183), encoded-character.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { runSieve } from '../../node/sieve/index.ts'
import { compileErr, compileOk, environment, folders, message, remember, run } from './helpers.ts'

describe('variables (RFC 5229)', () => {
  it('section 4 modifiers', async () => {
    const script = `require ["variables", "fileinto"];
set "a" "juMBlEd lETteRS";
set :length "b" "\${a}";              if string :is "\${b}" "15" { fileinto "1"; }
set :lower "b" "\${a}";               if string :is :comparator "i;octet" "\${b}" "jumbled letters" { fileinto "2"; }
set :upperfirst "b" "\${a}";          if string :is :comparator "i;octet" "\${b}" "JuMBlEd lETteRS" { fileinto "3"; }
set :upperfirst :lower "b" "\${a}";   if string :is :comparator "i;octet" "\${b}" "Jumbled letters" { fileinto "4"; }
set :quotewildcard "b" "Rock*";       if string :is :comparator "i;octet" "\${b}" "Rock\\\\*" { fileinto "5"; }
set "company" "ACME"; set "x" "\${company} \${unset}\${}!"; if string :is "\${x}" "ACME \${}!" { fileinto "6"; }`
    assert.deepEqual(folders(await run(script, message('Subject: x'))), ['1', '2', '3', '4', '5', '6'])
  })

  it('match variables: :matches fills ${0}..${9}, shortest match first (3.2)', async () => {
    const script = `require ["variables", "fileinto"];
if header :matches "List-ID" "*<*@*" { fileinto "INBOX.lists.\${2}"; }
if header :matches "Subject" "[*] *" { fileinto "\${1}/\${2}/\${0}"; }
if header :matches "subject" "no match here" { fileinto "never"; }
fileinto "after-\${1}";`
    const o = await run(script, message('List-ID: Acme users <acme-users@lists.example.org>\nSubject: [acme-users] [fwd] version 1.0 is out'))
    assert.deepEqual(folders(o), ['INBOX.lists.acme-users', 'acme-users/[fwd] version 1.0 is out/[acme-users] [fwd] version 1.0 is out', 'after-acme-users'].sort())
  })

  it('"?" takes one character, also one outside the BMP or in a folded value; captures keep the original case', async () => {
    const o = await run('require ["variables", "fileinto"];\nif string :matches "A\u{1F600}b Grüße" "a?B gr??e" { fileinto "${1}|${2}${3}"; }', message('Subject: x'))
    assert.deepEqual(folders(o), ['\u{1F600}|üß'])
  })

  it('string test with :count ignores empty strings (section 5)', async () => {
    const o = await run('require ["variables", "relational", "fileinto"]; set "e" ""; if string :count "eq" ["a", "${e}", "b"] "2" { fileinto "two"; }', message('Subject: x'))
    assert.deepEqual(folders(o), ['two'])
  })
})

describe('vacation (RFC 5230, RFC 6131, RFC 3834)', () => {
  const script = `require "vacation";
if header :contains "subject" "cyrus" {
    vacation "I'm out -- send mail to cyrus-bugs";
} else {
    vacation "I'm out -- call me at 321-1723";
}`
  const to = 'From: Joe <joe@example.org>\nTo: User <user@example.com>\nMessage-ID: <m1@example.org>\n'

  it('section 6 example: answers the first message of a sender, not a second within the period', async () => {
    const env = environment()
    const first = await run(script, message(to + 'Subject: about cyrus'), env)
    assert.deepEqual(folders(first), ['INBOX']) // vacation does not cancel the implicit keep
    assert.ok(first.vacation !== null)
    assert.equal(first.vacation.to, 'sender@example.org') // the envelope sender
    assert.equal(first.vacation.body, "I'm out -- send mail to cyrus-bugs")
    assert.equal(first.vacation.subject, 'Auto: about cyrus')
    assert.equal(first.vacation.seconds, 7 * 86400)
    assert.equal(first.vacation.inReplyTo, '<m1@example.org>')
    assert.deepEqual(first.memory, [{ kind: 'vacation', key: first.vacation.key, seconds: 7 * 86400 }])
    remember(env, first)
    const second = await run(script, message(to + 'Subject: about cyrus again'), env)
    assert.equal(second.vacation, null)
    // another reason is another handle: answered again
    const other = await run(script, message(to + 'Subject: other'), env)
    assert.notEqual(other.vacation, null)
    // after the period, answered again
    const later = await run(script, message(to + 'Subject: cyrus'), environment({ memory: env.memory, now: new Date(env.now.getTime() + 8 * 86400_000) }))
    assert.notEqual(later.vacation, null)
  })

  it('never answers lists, bulk, auto-submitted mail, bounces, daemons, or mail not addressed to the user', async () => {
    const cases = [
      [to + 'List-Id: <x.lists.example.org>', {}],
      [to + 'Precedence: bulk', {}],
      [to + 'Auto-Submitted: auto-replied', {}],
      [to, { from: '' }],
      [to, { from: 'MAILER-DAEMON@example.org' }],
      [to, { from: 'owner-list@example.org' }],
      [to, { from: 'list-request@example.org' }],
      ['From: joe@example.org\nTo: someone@else.org', {}],
      [to, { from: 'user@example.com' }]
    ] as const
    for (const [header, envelope] of cases) {
      const o = await run(script, message(header + '\nSubject: x', 'b', envelope))
      assert.equal(o.vacation, null, `${header} ${JSON.stringify(envelope)}`)
      assert.deepEqual(folders(o), ['INBOX'])
    }
    const ok = await run(script, message(to + 'Auto-Submitted: no\nSubject: x'))
    assert.notEqual(ok.vacation, null)
  })

  it(':addresses, :subject, :from, :handle, :mime, :days and :seconds', async () => {
    const s = `require ["vacation", "vacation-seconds", "variables"];
if header :matches "subject" "*" { set "s" "\${1}"; }
vacation :days 3 :subject "Re: \${s}" :from "me@example.com" :addresses ["alias@example.com"] :handle "h1" :mime text:
Content-Type: text/plain

Away.
.
;`
    const o = await run(s, message('From: joe@example.org\nTo: alias@example.com\nSubject: hello'))
    assert.ok(o.vacation !== null)
    assert.equal(o.vacation.subject, 'Re: hello')
    assert.equal(o.vacation.from, 'me@example.com')
    assert.equal(o.vacation.handle, 'h1')
    assert.equal(o.vacation.mime, true)
    assert.equal(o.vacation.seconds, 3 * 86400)
    assert.equal(o.vacation.body, 'Content-Type: text/plain\r\n\r\nAway.\r\n') // multi-line strings end lines in CRLF
    const sec = await run('require "vacation-seconds"; vacation :seconds 1800 "brb";', message(to + 'Subject: x'))
    assert.equal(sec.vacation?.seconds, 1800)
    const tiny = await run('require "vacation-seconds"; vacation :seconds 0 "brb";', message(to + 'Subject: x'))
    assert.equal(tiny.vacation?.seconds, 60) // VACATION_SECONDS_MIN
  })
})

describe('body (RFC 5173)', () => {
  const multipart = message('From: a@b.org\nSubject: x\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="b1"',
    '--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nMake m=C3=B6ney fast\r\n--b1\r\nContent-Type: text/html\r\n\r\n<p>HTML only phrase</p>\r\n--b1--\r\n')
  const cases: Array<[string, boolean]> = [
    ['body :text :contains "MAKE MÖNEY"', false], // i;ascii-casemap folds ASCII only
    ['body :text :contains "MAKE Möney"', true],
    ['body :contains "html only"', true],
    ['body :content "text/html" :contains "HTML only"', true],
    ['body :content "text/plain" :contains "HTML only"', false],
    ['body :content "image" :contains ""', false],
    ['body :raw :contains "m=C3=B6ney"', true],
    ['body :text :contains "m=C3=B6ney"', false]
  ]
  for (const [test, want] of cases) {
    it(`${test} is ${want}`, async () => {
      const o = await run(`require ["body", "fileinto"]; if ${test} { fileinto "yes"; }`, multipart)
      assert.equal(folders(o)[0] === 'yes', want)
    })
  }
})

describe('date and index (RFC 5260)', () => {
  const m = message(`Received: from a by b; Tue, 1 Apr 1997 09:06:31 -0800
Received: from c by d; Wed, 2 Apr 1997 10:00:00 +0000
Date: Tue, 1 Apr 1997 09:06:31 -0800 (PST)
From: boss@example.com
From: second@example.org
Subject: x`)
  const cases: Array<[string, boolean]> = [
    // section 7 example: between 9 and 17 in the sender's zone
    ['allof (header :is "from" "boss@example.com", date :value "ge" :originalzone "date" "hour" "09", date :value "lt" :originalzone "date" "hour" "17")', true],
    ['date :is "date" "hour" "17"', true], // no :zone: the local zone, "+0000" here
    ['date :zone "+0200" :is "date" "time" "19:06:31"', true],
    ['date :originalzone :is "date" "zone" "-0800"', true],
    ['date :is "date" "date" "1997-04-01"', true],
    ['date :is "date" "weekday" "2"', true],
    ['date :is "date" "julian" "50539"', true],
    ['date :originalzone :is "date" "iso8601" "1997-04-01T09:06:31-08:00"', true],
    ['date :originalzone :is "date" "std11" "Tue, 01 Apr 1997 09:06:31 -0800"', true],
    ['date :is "received" "date" "1997-04-01"', true],
    ['date :index 2 :is "received" "date" "1997-04-02"', true],
    ['date :index 1 :last :is "received" "day" "02"', true],
    ['header :index 2 :is "from" "second@example.org"', true],
    ['address :index 1 :last :is "from" "second@example.org"', true],
    ['address :index 1 :is "from" "second@example.org"', false],
    ['header :index 3 :contains "from" ""', false],
    ['currentdate :is "date" "2026-12-05"', true],
    ['currentdate :zone "-1100" :is "date" "2026-12-04"', true],
    ['currentdate :value "ge" "year" "2026"', true]
  ]
  for (const [test, want] of cases) {
    it(`${test} is ${want}`, async () => {
      const o = await run(`require ["date", "index", "relational", "fileinto"]; if ${test} { fileinto "yes"; }`, m)
      assert.deepEqual(o.errors, [])
      assert.equal(folders(o)[0] === 'yes', want)
    })
  }
})

describe('regex', () => {
  it('POSIX extended expressions with match variables, case-insensitive by default', async () => {
    const script = `require ["regex", "variables", "fileinto"];
if header :regex "subject" "^\\\\[([a-z0-9-]+)\\\\] (.*)$" { fileinto "lists/\${1}"; }
if address :regex :comparator "i;octet" "from" "^[[:upper:]]" { fileinto "upper"; }
if header :regex "x-spam-score" "^[0-9]{2,}" { fileinto "spam"; }`
    assert.deepEqual(folders(await run(script, message('From: Joe@x.org\nSubject: [Sieve-WG] hello\nX-Spam-Score: 12.5'))), ['lists/Sieve-WG', 'spam', 'upper'])
    assert.deepEqual(folders(await run(script, message('From: joe@x.org\nSubject: hello\nX-Spam-Score: 2.5'))), ['INBOX'])
  })
  it(':quoteregex makes a value literal', async () => {
    const o = await run('require ["regex", "variables", "fileinto"]; set :quoteregex "q" "a.b(c)"; if string :regex "xa.b(c)y" "^x${q}y$" { fileinto "lit"; } if string :regex "xaXb(c)y" "^x${q}y$" { fileinto "no"; }', message('Subject: x'))
    assert.deepEqual(folders(o), ['lit'])
  })
})

describe('include (RFC 6609)', () => {
  const scripts: Record<string, string> = {
    'personal:always_allow': 'require ["fileinto"]; if address :is "from" "boss@example.com" { fileinto "boss"; }',
    'global:spam_tests': 'require ["fileinto"]; if header :contains "x-spam" "yes" { fileinto "Spam"; }',
    'personal:spam_tests': 'require ["fileinto", "include"]; if header :contains "x-spam" "maybe" { fileinto "Maybe"; return; } fileinto "not-reached-when-maybe";',
    'personal:mailing_lists': 'require ["fileinto", "include"]; include :once "spam_tests"; if exists "list-id" { fileinto "lists"; }',
    'personal:globals': 'require ["variables", "include", "fileinto"]; global "test"; if string :is "${test}" "$$" { fileinto "seen-global"; } set "local" "x"; set "global.out" "from-sub";',
    'personal:loop_a': 'require "include"; include "loop_b";',
    'personal:loop_b': 'require "include"; include "loop_a";'
  }
  // section 3.2 example
  const main = 'require ["include"];\ninclude :personal "always_allow";\ninclude :global "spam_tests";\ninclude :personal "spam_tests";\ninclude :personal "mailing_lists";'

  it('section 3.2 example, includes resolved at compile time and at run time alike', async () => {
    const m = message('From: boss@example.com\nX-Spam: maybe\nList-Id: <l.example.org>')
    const compiled = compileOk(main, { resolveInclude: (n, l) => scripts[`${l}:${n}`] ?? null })
    const a = await runSieve(compiled.script, m, environment())
    const b = await runSieve(compileOk(main).script, m, environment({ scripts }))
    for (const o of [a, b]) {
      assert.deepEqual(o.errors, [])
      // personal spam_tests returns after "Maybe"; mailing_lists' include :once skips it, as it already ran
      assert.deepEqual(folders(o), ['Maybe', 'boss', 'lists'])
    }
    assert.deepEqual(compiled.requires.sort(), ['fileinto', 'include'])
  })

  it('global variables are shared, locals are not (3.3-3.5)', async () => {
    const s = 'require ["variables", "include", "fileinto"];\nglobal "test";\nset "test" "$$";\nset "local" "main";\ninclude "globals";\nfileinto "${local}-${global.out}";'
    const o = await run(s, message('Subject: x'), environment({ scripts }))
    assert.deepEqual(folders(o), ['main-from-sub', 'seen-global'])
  })

  it('a missing script is an error unless :optional; loops are refused at compile time and at run time', async () => {
    const errs = compileErr('require "include"; include "nope";', { resolveInclude: () => null })
    assert.match(errs[0].message, /included script "nope" \(personal\) does not exist/)
    compileOk('require "include"; include :optional "nope";', { resolveInclude: () => null })
    const loop = compileErr('require "include";\ninclude "loop_a";', { resolveInclude: (n, l) => scripts[`${l}:${n}`] ?? null })
    assert.match(loop[0].message, /include loop: "loop_a" includes itself/)
    const rt = await run('require "include";\ninclude "loop_a";', message('Subject: x'), environment({ scripts }))
    assert.deepEqual(folders(rt), ['INBOX'])
    assert.match(rt.errors[0].message, /include loop/)
    const missing = await run('require "include";\ninclude "nope";', message('Subject: x'), environment({ scripts }))
    assert.match(missing.errors[0].message, /does not exist/)
    assert.equal(`${missing.errors[0].line}:${missing.errors[0].column}`, '2:1')
  })

  it('an included script that does not compile is reported with its name and position', () => {
    const errs = compileErr('require "include"; include "bad";', { resolveInclude: () => 'require "fileinto";\nfileinto;' })
    assert.equal(errs[0].script, 'personal:bad')
    assert.equal(`${errs[0].line}:${errs[0].column}`, '2:1')
  })
})

describe('duplicate (RFC 7352)', () => {
  it('section 3 example: the second delivery of a Message-ID is a duplicate', async () => {
    const script = 'require ["duplicate", "fileinto", "mailbox"];\nif duplicate { fileinto :create "Trash/Duplicate"; }'
    const env = environment()
    const m = message('Message-ID: <abc@example.org>\nSubject: x')
    const first = await runSieve(compileOk(script).script, m, env)
    assert.deepEqual(folders(first), ['INBOX'])
    assert.equal(first.memory.length, 1)
    remember(env, first)
    const second = await runSieve(compileOk(script).script, m, env)
    assert.deepEqual(folders(second), ['Trash/Duplicate'])
    assert.deepEqual(second.memory, []) // without :last the first sighting's period stands
    const last = await run('require "duplicate";\nif duplicate :last { discard; }', m, env)
    assert.equal(last.memory.length, 1)
  })

  it(':header, :uniqueid with variables, :handle and :seconds', async () => {
    const env = environment()
    const s = 'require ["duplicate", "variables"];\nif header :matches "subject" "ALERT: *" { if duplicate :handle "alerts" :uniqueid "${1}" :seconds 3600 { discard; } }'
    const a = await run(s, message('Subject: ALERT: disk full'), env)
    assert.equal(a.memory[0].seconds, 3600)
    remember(env, a)
    assert.deepEqual(folders(await run(s, message('Subject: ALERT: disk full'), env)), [])
    assert.deepEqual(folders(await run(s, message('Subject: ALERT: cpu hot'), env)), ['INBOX'])
    const h = 'require "duplicate";\nif duplicate :header "x-event-id" { discard; }'
    const b = await run(h, message('X-Event-ID: 42'), env)
    remember(env, b)
    assert.deepEqual(folders(await run(h, message('X-Event-ID: 42'), env)), [])
    assert.deepEqual(folders(await run(h, message('Subject: none'), env)), ['INBOX']) // no id: never a duplicate
  })
})

describe('editheader (RFC 5293)', () => {
  it('addheader at the top or :last, deleteheader by name, :index and value; later tests see the change', async () => {
    const m = message('Received: from x by y; Tue, 1 Apr 1997 09:06:31 -0800\nX-Spam: yes\nX-Spam: no\nX-Other: 1\nSubject: hi')
    const o = await run(`require ["editheader", "fileinto", "variables"];
addheader "X-Sieve" "filtered";
addheader :last "X-Note" "Grüße";
deleteheader :index 1 :last "x-spam";
deleteheader :matches "x-other" "1*";
set "h" "received";
deleteheader "\${h}";
if header :is "x-sieve" "filtered" { fileinto "seen"; }`, m)
    assert.deepEqual(folders(o), ['seen'])
    assert.ok(o.editedMessage !== null)
    const text = o.editedMessage.toString()
    assert.ok(text.startsWith('X-Sieve: filtered\r\nReceived: from x by y;'), text) // a protected field is left alone
    assert.match(text, /X-Spam: yes\r\nSubject: hi\r\nX-Note: =\?UTF-8\?Q\?Gr=C3=BC=C3=9Fe\?=\r\n\r\nHello\.\r\n$/)
    assert.doesNotMatch(text, /X-Other|X-Spam: no/)
  })
  it('unchanged message: editedMessage is null', async () => {
    const o = await run('require "editheader"; deleteheader "x-absent";', message('Subject: x'))
    assert.equal(o.editedMessage, null)
  })
})

describe('environment (RFC 5183) and encoded-character (RFC 5228 2.4.2.4)', () => {
  it('domain, host, name', async () => {
    const o = await run('require ["environment", "fileinto", "encoded-character"];\nif allof (environment :is "domain" "example.com", environment :contains "host" "mx1", environment :is "name" "${hex:6d 61 69 6c}grid") { fileinto "env"; }', message('Subject: x'))
    assert.deepEqual(folders(o), ['env'])
  })
})

// RFC 5228 (the base language), fileinto, reject/ereject (RFC 5429), envelope, copy (RFC 3894), imap4flags
// (RFC 5232), mailbox (RFC 5490), relational (RFC 5231), subaddress (RFC 5233): scripts and messages from the
// RFCs' own examples, and what the outcome must be.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { environment, folders, message, run } from './helpers.ts'

// RFC 5228 section 9
const RFC5228_EXAMPLE = `require ["fileinto"];
if header :is "Sender" "owner-ietf-mta-filters@imc.org" { fileinto "filter"; }
elsif address :DOMAIN :is ["From", "To"] "example.com" { keep; }
elsif anyof (NOT address :all :contains ["To", "Cc", "Bcc"] "me@example.com",
             header :matches "subject" ["*make*money*fast*", "*university*dipl*mas*"]) { fileinto "spam"; }
else { fileinto "personal"; }`

describe('RFC 5228', () => {
  it('section 9 example: each message lands where the script says', async () => {
    const cases: Array<[string, string[]]> = [
      ['Sender: owner-ietf-mta-filters@imc.org\nFrom: a@b.org\nTo: me@example.com\nSubject: hi', ['filter']],
      ['From: boss@EXAMPLE.com\nTo: me@example.com\nSubject: hi', ['INBOX']],
      ['From: x@y.org\nTo: someone@else.org\nSubject: hi', ['spam']],
      ['From: x@y.org\nTo: me@example.com.au\nSubject: MAKE lots of MONEY FAST now', ['spam']],
      ['From: x@y.org\nTo: list@else.org\nCc: Me <me@example.com>\nSubject: dinner', ['personal']]
    ]
    for (const [header, want] of cases) {
      const o = await run(RFC5228_EXAMPLE, message(header))
      assert.deepEqual(folders(o), want, header)
      assert.deepEqual(o.errors, [])
    }
  })

  it('implicit keep, discard, stop, keep', async () => {
    const m = message('From: a@b.org\nSubject: x')
    assert.deepEqual(folders(await run('', m)), ['INBOX'])
    assert.deepEqual(folders(await run('discard;', m)), [])
    assert.deepEqual(folders(await run('discard; keep;', m)), ['INBOX'])
    assert.deepEqual(folders(await run('require "fileinto"; stop; fileinto "never";', m)), ['INBOX'])
  })

  it('redirect cancels the implicit keep; :copy does not (RFC 3894); duplicates collapse (2.10.3)', async () => {
    const m = message('From: a@b.org\nSubject: x')
    let o = await run('redirect "fred@example.org"; redirect "fred@Example.ORG";', m)
    assert.deepEqual(o.redirects, [{ address: 'fred@example.org', copy: false }])
    assert.deepEqual(o.keep, [])
    o = await run('require "copy"; redirect :copy "fred@example.org";', m)
    assert.deepEqual(o.redirects, [{ address: 'fred@example.org', copy: true }])
    assert.deepEqual(folders(o), ['INBOX'])
    o = await run('require ["fileinto", "copy"]; fileinto :copy "archive"; fileinto "archive"; fileinto "INBOX"; keep;', m)
    assert.deepEqual(folders(o), ['INBOX', 'archive'])
  })

  it('header decodes RFC 2047 words; comparators i;octet and i;ascii-casemap; exists; size', async () => {
    const m = message('From: a@b.org\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus Berlin\nX-Tag: Alpha', 'x'.repeat(2000))
    const ok = async (test: string): Promise<boolean> => folders(await run(`require "fileinto"; if ${test} { fileinto "yes"; }`, m))[0] === 'yes'
    assert.equal(await ok('header :contains "subject" "Grüße"'), true)
    assert.equal(await ok('header :is "x-tag" "alpha"'), true)
    assert.equal(await ok('header :is :comparator "i;octet" "x-tag" "alpha"'), false)
    assert.equal(await ok('header :is :comparator "i;octet" "x-tag" "Alpha"'), true)
    assert.equal(await ok('exists ["from", "x-tag"]'), true)
    assert.equal(await ok('exists ["from", "cc"]'), false)
    assert.equal(await ok('size :over 1K'), true)
    assert.equal(await ok('size :under 1K'), false)
    assert.equal(await ok('header :matches "subject" "Gr??e *"'), true)
    assert.equal(await ok('header :matches "subject" "*berlin"'), true)
    assert.equal(await ok('header :matches "x-tag" "a\\\\*"'), false)
    assert.equal(await ok('not anyof (false, header :contains "x-tag" "zzz")'), true)
    assert.equal(await ok('allof (true, header :contains "x-tag" "LPH")'), true)
  })

  it('address parts, envelope (RFC 5228 5.1, 5.4), a null sender', async () => {
    const m = message('From: "Joe Q." <Joe.Q@Sub.Example.org>\nTo: undisclosed-recipients:;\nCc: a@x.org, team: b@y.org;', 'x', { from: '', to: 'user+lists@example.com' })
    const ok = async (test: string): Promise<boolean> => folders(await run(`require ["fileinto", "envelope", "subaddress"]; if ${test} { fileinto "yes"; }`, m))[0] === 'yes'
    assert.equal(await ok('address :localpart "from" "joe.q"'), true)
    assert.equal(await ok('address :domain :is "from" "sub.example.org"'), true)
    assert.equal(await ok('address :all :is "from" "joe.q@sub.example.org"'), true)
    assert.equal(await ok('address :is "cc" "b@y.org"'), true) // inside a group
    assert.equal(await ok('envelope :all :is "from" ""'), true) // RFC 5228 5.4: the null reverse-path
    assert.equal(await ok('envelope :user "to" "user"'), true)
    assert.equal(await ok('envelope :detail "to" "lists"'), true)
    assert.equal(await ok('address :detail :contains "from" ""'), false) // no separator: no detail (RFC 5233 4)
  })
})

describe('reject and ereject (RFC 5429)', () => {
  it('reject cancels the implicit keep and carries the reason', async () => {
    const o = await run('require "reject"; reject text:\nI do not accept mail about this.\n.\n;', message('Subject: x'))
    assert.deepEqual(o.reject, { reason: 'I do not accept mail about this.\r\n', ereject: false })
    assert.deepEqual(o.keep, [])
    const e = await run('require "ereject"; ereject "no";', message('Subject: x'))
    assert.deepEqual(e.reject, { reason: 'no', ereject: true })
  })

  it('reject with fileinto is a runtime error: the message is kept (RFC 5228 2.10.6)', async () => {
    const o = await run('require ["reject", "fileinto"];\nfileinto "x";\nreject "no";', message('Subject: x'))
    assert.equal(o.reject, null)
    assert.deepEqual(folders(o), ['INBOX'])
    assert.equal(o.errors.length, 1)
    assert.equal(`${o.errors[0].line}:${o.errors[0].column}`, '3:1')
  })
})

describe('imap4flags (RFC 5232)', () => {
  it('section 7 example: flags set, added and removed, and given to fileinto/keep', async () => {
    const script = `require ["imap4flags", "fileinto"];
if header :contains "from" "boss@frobnitzm.example.edu" { setflag "\\\\Flagged"; fileinto "INBOX.From Boss"; }
if header :contains "subject" "Make money" { addflag ["\\\\Deleted", "$Junk"]; fileinto "INBOX.spam"; removeflag "\\\\deleted"; }
keep :flags "\\\\Answered";`
    const o = await run(script, message('From: boss@frobnitzm.example.edu\nSubject: Make money fast'))
    assert.deepEqual(folders(o), ['INBOX.From Boss[\\Flagged]', 'INBOX.spam[\\Flagged \\Deleted $Junk]', 'INBOX[\\Answered]'])
  })

  it('the implicit keep takes the current flags; hasflag with :count and variables', async () => {
    const o = await run('require ["imap4flags", "variables", "relational", "comparator-i;ascii-numeric"];\naddflag "a b";\naddflag "myvar" "x y z";\nif allof (hasflag "A", hasflag :count "eq" :comparator "i;ascii-numeric" "myvar" "3") { addflag "ok"; }', message('Subject: x'))
    assert.deepEqual(folders(o), ['INBOX[a b ok]'])
  })
})

describe('mailbox (RFC 5490)', () => {
  it('mailboxexists and fileinto :create', async () => {
    const script = 'require ["fileinto", "mailbox"];\nif mailboxexists "Partners" { fileinto "Partners"; } else { fileinto :create "Others"; }'
    let o = await run(script, message('Subject: x'), environment({ mailboxes: ['INBOX', 'Partners'] }))
    assert.deepEqual(o.keep, [{ mailbox: 'Partners', flags: [], create: false }])
    o = await run(script, message('Subject: x'))
    assert.deepEqual(o.keep, [{ mailbox: 'Others', flags: [], create: true }])
  })
})

describe('relational (RFC 5231)', () => {
  // RFC 5231 section 6 message
  const m = message(`Received: ...
Received: ...
Subject: example
To: foo@example.com, baz@example.com
CC: qux@example.com`)
  const cases: Array<[string, boolean]> = [
    ['address :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] ["3"]', true],
    ['anyof ( address :count "ge" :comparator "i;ascii-numeric" ["to"] ["3"], address :count "ge" :comparator "i;ascii-numeric" ["cc"] ["3"] )', false],
    ['header :count "ge" :comparator "i;ascii-numeric" ["received"] ["3"]', false],
    ['header :count "ge" :comparator "i;ascii-numeric" ["received", "subject"] ["3"]', true],
    ['header :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] ["3"]', false],
    ['header :value "gt" :comparator "i;ascii-numeric" "x-nothere" "1"', false],
    ['header :value "lt" "subject" "f"', true],
    ['header :value "gt" "subject" "EXAM"', true]
  ]
  for (const [test, want] of cases) {
    it(`${test} is ${want}`, async () => {
      const o = await run(`require ["relational", "comparator-i;ascii-numeric", "fileinto"]; if ${test} { fileinto "yes"; }`, m)
      assert.equal(folders(o)[0] === 'yes', want)
    })
  }
  it('i;ascii-numeric: non-digits are positive infinity (RFC 4790 9.1)', async () => {
    const m2 = message('X-Priority: 3 (Normal)\nX-Score: none')
    const ok = async (test: string): Promise<boolean> => folders(await run(`require ["relational", "comparator-i;ascii-numeric", "fileinto"]; if ${test} { fileinto "yes"; }`, m2))[0] === 'yes'
    assert.equal(await ok('header :value "lt" :comparator "i;ascii-numeric" "x-priority" "10"'), true)
    assert.equal(await ok('header :value "gt" :comparator "i;ascii-numeric" "x-score" "99999999999"'), true)
    assert.equal(await ok('header :is :comparator "i;ascii-numeric" "x-priority" "003"'), true)
  })
})

describe('subaddress (RFC 5233)', () => {
  it('section 6 example', async () => {
    const script = `require ["envelope", "subaddress", "fileinto"];
if envelope :user "to" "postmaster" { fileinto "inbox.postmaster"; stop; }
if envelope :detail :is "to" "mta-filters" { fileinto "inbox.ietf-mta-filters"; }
if address :user "from" "ken" { fileinto "inbox.ken"; }`
    assert.deepEqual(folders(await run(script, message('From: x@y', 'b', { to: 'postmaster+abc@example.com' }))), ['inbox.postmaster'])
    assert.deepEqual(folders(await run(script, message('From: ken+x@y', 'b', { to: 'user+mta-filters@example.com' }))), ['inbox.ietf-mta-filters', 'inbox.ken'])
  })
})

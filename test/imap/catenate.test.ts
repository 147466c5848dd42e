// CATENATE (RFC 4469): APPEND of a message built from TEXT literals and IMAP URLs (RFC 5092) of messages and parts
// the user can read; BADURL for a URL that names nothing readable (another user's message among them), TOOBIG for a
// result above APPENDLIMIT. Raw protocol: neither imapflow nor imaplib sends CATENATE.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, OTHER, RawImap, tagged, USER } from './helpers.ts'
import fc from 'fast-check'
import { BadUrl, parseImapUrl } from '../../node/imap/urls.ts'

const plusOrTagged = (tag: string) => (buf: string): boolean => /(^|\r\n)\+ [^\r\n]*\r\n$/.test(buf) || tagged(tag)(buf)

/** A command whose segments each end in a literal announcement but the last; waits for every "+". */
async function literals (c: RawImap, tag: string, segments: Array<string | Buffer>): Promise<string> {
  let seen = ''
  for (const [i, seg] of segments.entries()) {
    const announces = /\{\d+\}$/.test(seg.toString('latin1'))
    c.client.write(seg)
    if (i === segments.length - 1 || announces) c.client.write('\r\n')
    if (announces) {
      const answer = await c.client.read(plusOrTagged(tag))
      seen += answer
      if (!answer.startsWith('+')) return seen
    }
  }
  return seen + await c.client.read(tagged(tag))
}

const crlf = (lines: string[]): Buffer => Buffer.from(lines.join('\r\n'))
const BOUNDARY = '------------030308070208000400050907'
// the draft of RFC 4469's example: a header, and a body part to be forwarded
const DRAFT = crlf([
  'Date: Mon, 7 Feb 1994 21:52:25 -0800', 'From: Fred Foobar <foobar@Blurdybloop.example>', 'Subject: afternoon meeting',
  'To: mooch@owatagu.example', 'Message-Id: <B27397-0100000@Blurdybloop.example>', 'MIME-Version: 1.0',
  `Content-Type: multipart/mixed; boundary="${BOUNDARY}"`, '',
  `--${BOUNDARY}`, 'Content-Type: text/plain; charset=us-ascii', '', 'Hello Joe, do you think we can meet at 3:30 tomorrow?',
  `--${BOUNDARY}--`, '',
])
const FORWARDED = crlf(['From: joe@example.org', 'Subject: the agenda', '', 'Item 1', ''])

test('CATENATE: the RFC 4469 section 5 example: a header, a part and a whole message by URL, joined by TEXT literals', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server()
  const draft = await f.store.append(USER, 'Drafts', { raw: DRAFT })
  const fwd = await f.store.append(USER, 'Drafts', { raw: FORWARDED })
  const v = draft.uidValidity
  const c = await RawImap.connect(port)
  t.after(() => { c.close() })
  await c.login()
  assert.match(await c.cmd('CAPABILITY'), / CATENATE/)
  const sep = `\r\n--${BOUNDARY}\r\n`
  const tail = `\r\n--${BOUNDARY}--\r\n`
  const out = await literals(c, 'A003', [
    `A003 APPEND Drafts (\\Seen \\Draft $MDNSent) CATENATE (URL "/Drafts;UIDVALIDITY=${v}/;UID=${draft.uid}/;section=HEADER" TEXT {${sep.length - 2}}`,
    `${sep.slice(2)} URL "/Drafts;UIDVALIDITY=${v}/;UID=${draft.uid}/;section=1.MIME" URL "/Drafts;UIDVALIDITY=${v}/;UID=${draft.uid}/;section=1" TEXT {${sep.length + 'Content-Type: message/rfc822\r\n\r\n'.length}}`,
    `${sep}Content-Type: message/rfc822\r\n\r\n URL "imap://${encodeURIComponent(USER)}@localhost/Drafts;UIDVALIDITY=${v}/;UID=${fwd.uid}" TEXT {${tail.length}}`,
    `${tail})`,
  ])
  const m = /A003 OK \[APPENDUID \d+ (\d+)\]/.exec(out)
  assert.ok(m, out)
  const box = (await f.store.getMailbox(USER, 'Drafts'))!
  const rec = (await f.store.getMessage(USER, box.id, Number(m[1])))!
  assert.deepEqual(rec.flags.sort(), ['$MDNSent', '\\Draft', '\\Seen'])
  const built = (await f.store.readMessage(rec)).toString()
  const header = DRAFT.toString().slice(0, DRAFT.indexOf('\r\n\r\n') + 4)
  const expected = header + sep.slice(2) + 'Content-Type: text/plain; charset=us-ascii\r\n\r\n' + 'Hello Joe, do you think we can meet at 3:30 tomorrow?' +
    sep + 'Content-Type: message/rfc822\r\n\r\n' + FORWARDED.toString() + tail
  assert.equal(built, expected)
  // the result is a message like any other: its structure is read from the new bytes
  await c.cmd('SELECT Drafts')
  assert.match(await c.cmd(`UID FETCH ${m[1]} BODY.PEEK[2.HEADER.FIELDS (SUBJECT)]`), /Subject: the agenda/)
})

test('CATENATE refusals: BADURL for another user\'s message, a wrong UIDVALIDITY, a missing message or part; TOOBIG', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server({ limits: { appendBytesMax: 4096 } })
  const mine = await f.store.append(USER, 'INBOX', { raw: FORWARDED })
  const theirs = await f.store.append(OTHER, 'INBOX', { raw: crlf(['Subject: secret', '', 'bob only', '']) })
  const c = await RawImap.connect(port)
  t.after(() => { c.close() })
  await c.login()
  const count = async (): Promise<number> => (await f.store.getMailbox(USER, 'Drafts'))!.messages
  const badUrl = async (url: string): Promise<void> => {
    const out = await c.cmd(`APPEND Drafts CATENATE (URL "${url}")`, 'x')
    assert.match(out, new RegExp(`x NO \\[BADURL "${url.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}"\\]`), `${url}: ${out}`)
  }
  // another user's message: bob's INBOX has a UID 1 under the same UIDVALIDITY scheme; alice may not read it
  await badUrl(`imap://${encodeURIComponent(OTHER)}@localhost/INBOX;UIDVALIDITY=${theirs.uidValidity}/;UID=${theirs.uid}`)
  await badUrl(`imap://${OTHER.replace('@', '%40')}@localhost/INBOX/;UID=${theirs.uid}`)
  await badUrl(`/INBOX;UIDVALIDITY=${mine.uidValidity + 1}/;UID=${mine.uid}`)
  await badUrl(`/INBOX/;UID=${mine.uid + 5}`)
  await badUrl(`/INBOX/;UID=${mine.uid}/;SECTION=7`)
  await badUrl('/Nowhere/;UID=1')
  await badUrl('/INBOX')
  await badUrl('http://example.com/INBOX/;UID=1')
  await badUrl('/INBOX/;UID=0')
  await badUrl(`/INBOX/;UID=${mine.uid};URLAUTH=anonymous:INTERNAL:0123456789abcdef0123456789abcdef`)
  assert.equal(await count(), 0)
  // a result above APPENDLIMIT (RFC 4469 section 5: TOOBIG): 3 copies of a 3 KB message against 4 KiB
  const big = await f.store.append(USER, 'INBOX', { raw: Buffer.concat([FORWARDED, Buffer.alloc(3000, 'a')]) })
  const url = `/INBOX/;UID=${big.uid}`
  assert.match(await c.cmd(`APPEND Drafts CATENATE (URL "${url}" URL "${url}" URL "${url}")`, 'y'), /y NO \[TOOBIG\]/)
  // an empty result is refused, PARTIAL past the end is empty
  assert.match(await c.cmd(`APPEND Drafts CATENATE (URL "/INBOX/;UID=${mine.uid}/;PARTIAL=99999")`, 'z'), /z NO/)
  // malformed CATENATE arguments are BAD
  assert.match(await c.cmd('APPEND Drafts CATENATE ()', 'b1'), /b1 BAD/)
  assert.match(await c.cmd('APPEND Drafts CATENATE (FOO "x")', 'b2'), /b2 BAD/)
  assert.match(await c.cmd('APPEND Drafts CATENATE (TEXT "not a literal")', 'b3'), /b3 BAD/)
  assert.equal(await count(), 0)
  // PARTIAL and a section of a message, with MULTIAPPEND: two built messages in one command
  const ok = await c.cmd(`APPEND Drafts CATENATE (URL "/INBOX/;UID=${mine.uid}/;SECTION=HEADER") CATENATE (URL "/INBOX/;UID=${mine.uid}/;PARTIAL=0.4")`, 'w')
  assert.match(ok, /w OK \[APPENDUID \d+ 1:2\]/)
  const box = (await f.store.getMailbox(USER, 'Drafts'))!
  const [one, two] = await f.store.listMessages(USER, box.id)
  assert.equal((await f.store.readMessage(one!)).toString(), 'From: joe@example.org\r\nSubject: the agenda\r\n\r\n')
  assert.equal((await f.store.readMessage(two!)).toString(), 'From')
})

test('IMAP URL parsing (RFC 5092): absolute and relative forms, sections, partials, URLAUTH parts; hostile forms refused', () => {
  const u = parseImapUrl('imap://fred%40example.com;AUTH=*@mail.example:143/Shared%20Box/Sub;UIDVALIDITY=42/;UID=7/;SECTION=1.2.MIME/;PARTIAL=10.20;EXPIRE=2026-12-05T02:00:00Z;URLAUTH=submit+fred%40example.com:INTERNAL:0123456789abcdef0123456789abcdef')
  assert.equal(u.user, 'fred@example.com')
  assert.equal(u.host, 'mail.example')
  assert.equal(u.mailbox, 'Shared Box/Sub')
  assert.equal(u.uidValidity, 42)
  assert.equal(u.uid, 7)
  assert.equal(u.sectionText, '1.2.MIME')
  assert.deepEqual(u.partial, { offset: 10, length: 20 })
  assert.equal(u.expire, Date.UTC(2026, 11, 5, 2))
  assert.deepEqual(u.urlauth, { access: 'submit+fred@example.com', mechanism: 'INTERNAL', token: '0123456789abcdef0123456789abcdef' })
  assert.equal(u.rump, 'imap://fred%40example.com;AUTH=*@mail.example:143/Shared%20Box/Sub;UIDVALIDITY=42/;UID=7/;SECTION=1.2.MIME/;PARTIAL=10.20;EXPIRE=2026-12-05T02:00:00Z;URLAUTH=submit+fred%40example.com')
  assert.equal(parseImapUrl('/inbox/;uid=3/;section=HEADER.FIELDS%20(SUBJECT%20FROM)').section?.fields?.join(','), 'SUBJECT,FROM')
  assert.equal(parseImapUrl('/inbox/;uid=3').mailbox, 'INBOX')
  for (const bad of ['', '/', '//host/INBOX/;UID=1', '/INBOX/;UID=1/;UID=2', '/INBOX/;UID=1/;SECTION=1/;SECTION=2', '/INBOX/;UID=99999999999',
    '/IN%ZZBOX/;UID=1', '/INBOX/;UID=1;URLAUTH=root', '/INBOX/;UID=1;URLAUTH=anonymous:INTERNAL', '/INBOX/;UID=1/;PARTIAL=1.0',
    '/INBOX/;UID=1 x', `/${'a'.repeat(9000)}/;UID=1`, '/INBOX/;UID=1;EXPIRE=tomorrow;URLAUTH=anonymous', '/%C3%28/;UID=1']) {
    assert.throws(() => parseImapUrl(bad), Error, bad)
  }
})

test('IMAP URL parsing of hostile input: any string parses or is refused as a bad URL, nothing else is thrown', () => {
  const piece = fc.constantFrom('imap://', '/', ';UID=', '/;UID=', ';UIDVALIDITY=', '/;SECTION=', '/;PARTIAL=', ';URLAUTH=', ';EXPIRE=', ':', '@',
    '%', '%4', '%40', '%C3%28', 'INBOX', '1', '0', '.', '4294967296', 'HEADER.FIELDS (A)', 'anonymous', 'submit+', 'internal', '0123456789abcdef'.repeat(2))
  fc.assert(fc.property(fc.array(fc.oneof(piece, fc.string({ maxLength: 8 })), { maxLength: 24 }), (parts) => {
    const text = parts.join('')
    try {
      const url = parseImapUrl(text)
      assert.ok(url.uid >= 1 && url.uid <= 0xffffffff)
      assert.ok(url.mailbox.length > 0)
    } catch (err) {
      assert.ok(err instanceof BadUrl, `${JSON.stringify(text)}: ${String(err)}`)
    }
  }), { numRuns: 3000 })
})

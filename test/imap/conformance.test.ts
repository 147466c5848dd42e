// Issue 12, findings 3 to 10, each written from the RFC text it breaks: `~` as an ATOM-CHAR (RFC 3516 section 7),
// APPEND with literal8 (RFC 3516 sections 4.4, 6), BINARY of quoted-printable (RFC 2045 section 6.7), BODY[n] of
// message/rfc822 parts (RFC 3501 section 6.4.5 and its example), MOVE and COPY into the selected mailbox (RFC 6851,
// RFC 4315), RECURSIVEMATCH and CHILDINFO (RFC 5258 sections 3.3, 3.5 and the examples of section 5), SEARCH on
// addresses (RFC 3501 section 6.4.4 over RFC 5322 section 3.4 syntax) and CONDSTORE with ESEARCH (RFC 7162 sections
// 3.1, 3.1.5; RFC 4731). Finding 1 and 2 (\Recent, keywords) are in recent.test.ts.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { mime } from '../../store/index.ts'
import { ImapParser } from '../../node/imap/protocol/parser.ts'
import { python } from '../helpers/client.ts'
import { fixture, PASSWORD, RawImap, simpleMessage, USER } from './helpers.ts'
import { fetchResponses, parseResponses } from './wire.ts'
import type { Item } from './wire.ts'

type TestContext = Parameters<typeof fixture>[0]

async function session (t: TestContext): Promise<{ f: Awaited<ReturnType<typeof fixture>>, c: RawImap, port: number }> {
  const f = await fixture(t)
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(async () => { c.close() })
  await c.login()
  return { f, c, port }
}

const crlf = (lines: string[]): string => lines.join('\r\n')
const text = (item: Item | undefined): string => (item as { literal: string }).literal

test('`~` is an ATOM-CHAR: only `~{` opens a literal8 (RFC 3516 section 7)', async (t) => {
  const parser = new ImapParser()
  parser.push(Buffer.from('a1 LIST "" ~foo\r\na2 SELECT ~{3}\r\n'))
  const first = parser.next()
  assert.equal(first.type, 'command')
  assert.deepEqual(first.type === 'command' ? first.command.args[1] : null, { type: 'atom', value: '~foo' })
  const second = parser.next()
  assert.equal(second.type, 'continue', '`~{3}` still announces a literal8')

  const { c } = await session(t)
  assert.match(await c.cmd('LIST "" ~foo', 'l1'), /^l1 OK/m)
  assert.match(await c.cmd('SELECT ~foo', 's1'), /^s1 NO \[NONEXISTENT\]/m, 'an unknown mailbox, not a BAD and not a disconnect')
  assert.match(await c.cmd('CREATE ~foo', 'c1'), /^c1 OK/m)
  assert.match(await c.cmd('LIST "" ~*', 'l2'), /\* LIST \([^)]*\) "\/" "?~foo"?\r\nl2 OK/)
  assert.match(await c.cmd('SELECT ~foo', 's2'), /^s2 OK \[READ-WRITE\]/m)
  assert.match(await c.cmd('STORE 1:* +FLAGS (~kw)', 'k1'), /^k1 OK/m, 'a keyword may start with ~ too')
})

test('APPEND with a literal8 stores the message whole; binary parts come back base64 in BODY and as sent in BINARY (RFC 3516 4.4, 6)', async (t) => {
  const { c } = await session(t)
  const binary = Buffer.from([0, 1, 2, 0x0d, 0, 0x0a, 0xff, 0x80, 0x0d, 0x0a, 0, 0])
  const head = crlf(['From: user@domain.org', 'Subject: binary', 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="foo bar"', '',
    '--foo bar', 'Content-Type: text/plain', '', 'hello', '--foo bar', 'Content-Type: application/octet-stream', 'Content-Transfer-Encoding: binary', '', ''])
  const message = Buffer.concat([Buffer.from(head), binary, Buffer.from('\r\n--foo bar--\r\n')])
  c.client.write(Buffer.concat([Buffer.from(`a1 APPEND INBOX ~{${message.length}}\r\n`)]))
  assert.match(await c.client.read((b) => b.endsWith('\r\n')), /^\+ /)
  c.client.write(Buffer.concat([message, Buffer.from('\r\n')]))
  assert.match(await c.client.read((b) => /a1 (OK|NO|BAD)[^\r\n]*\r\n$/.test(b)), /^a1 OK \[APPENDUID \d+ 1\]/m)
  // The same message with nothing binary in it, as literal8: stored byte for byte.
  const plain = Buffer.from(crlf(['From: user@domain.org', 'Subject: plain', '', 'just text', '']))
  c.client.write(Buffer.from(`a2 APPEND INBOX ~{${plain.length}+}\r\n${plain.toString('latin1')}\r\n`, 'latin1'))
  assert.match(await c.client.read((b) => /a2 (OK|NO|BAD)[^\r\n]*\r\n$/.test(b)), /^a2 OK/m)

  await c.cmd('SELECT INBOX')
  const reply = await c.cmd('FETCH 1:2 (BODY.PEEK[1] BODY.PEEK[2] BINARY.PEEK[2] BINARY.SIZE[2] BODYSTRUCTURE BODY.PEEK[])', 'f1')
  assert.ok(!/\{\d+\}\r\n[^~]*\0/.test(reply.replace(/~\{\d+\}\r\n[\s\S]*?(?= BINARY\.SIZE)/g, '')), 'no NUL in a plain literal')
  const m = fetchResponses(reply).get(1)!
  assert.equal(text(m.get('BODY[1]')), 'hello', 'the part before the binary one is whole')
  assert.equal(text(m.get('BODY[2]')), binary.toString('base64'), 'RFC 3516 section 6: BODY in the encoding BODYSTRUCTURE names')
  assert.equal(Buffer.from(text(m.get('BINARY[2]')), 'latin1').toString('hex'), binary.toString('hex'), 'BINARY: the bytes as appended')
  assert.equal(m.get('BINARY.SIZE[2]'), String(binary.length))
  assert.equal((((m.get('BODYSTRUCTURE') as Item[])[1] as Item[])[5]), 'BASE64')
  assert.ok(text(m.get('BODY[]')).startsWith(head.slice(0, head.indexOf('Content-Transfer-Encoding'))))
  assert.equal(text(fetchResponses(reply).get(2)!.get('BODY[]')), plain.toString('latin1'), 'nothing binary: nothing changed')
})

test('literal8 conversion loses nothing: any bytes in a binary part come back whole from its base64 (RFC 3516 4.4, property)', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), fc.boolean(), (bytes, declared) => {
    const payload = Buffer.from(bytes)
    const head = Buffer.from(crlf(['Subject: p', 'Content-Type: multipart/mixed; boundary="=_b"', '', '--=_b', 'Content-Type: text/plain', '', 'text',
      '--=_b', 'Content-Type: application/octet-stream', ...(declared ? ['Content-Transfer-Encoding: binary'] : []), '', '']))
    const raw = Buffer.concat([head, payload, Buffer.from('\r\n--=_b--\r\n')])
    const stored = mime.encodeBinaryParts(raw)
    const meta = mime.analyzeMessage(stored)
    const part = mime.findPart(meta, [2])!
    assert.equal(stored.subarray(mime.findPart(meta, [1])!.bodyStart, mime.findPart(meta, [1])!.bodyEnd).toString(), 'text')
    assert.ok(!stored.subarray(part.bodyStart, part.bodyEnd).includes(0), 'no NUL left in what BODY returns')
    assert.equal(mime.decodeTransfer(stored.subarray(part.bodyStart, part.bodyEnd), part.encoding).toString('hex'), payload.toString('hex'))
    if (!declared && !payload.includes(0)) assert.equal(stored, raw, 'nothing binary: the same buffer')
  }), { numRuns: 300 })
})

test('BINARY and BINARY.SIZE of a quoted-printable part follow RFC 2045 section 6.7', async (t) => {
  const { f, c } = await session(t)
  // Rule 3: white space at the end of an encoded line is padding, deleted; white space before a soft line break (=)
  // is kept. Rule 5: `=` at a line end is a soft line break. Rule 1: =XX is one octet, either case of hex.
  const encoded = [
    'hello  \t', // trailing white space: deleted
    'foo\tbar', // inner white space kept
    'foo\t \t=', // protected by the soft line break: kept, and the line joins the next
    'b', 'foo=20', // an encoded trailing space: kept
    'soft=', 'break', 'eq=3D=3d', 'last line   ',
  ]
  const decoded = ['hello', 'foo\tbar', 'foo\t \tb', 'foo ', 'softbreak', 'eq==', 'last line'].join('\r\n')
  await f.store.append(USER, 'INBOX', {
    raw: Buffer.from(crlf(['From: a@b.example', 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary=q', '', '--q',
      'Content-Type: text/plain; charset=us-ascii', 'Content-Transfer-Encoding: quoted-printable', '', ...encoded, '--q--', ''])),
  })
  await c.cmd('SELECT INBOX')
  const m = fetchResponses(await c.cmd('FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1] BINARY.PEEK[1]<5.10>)')).get(1)!
  assert.equal(text(m.get('BINARY[1]')), decoded)
  assert.equal(m.get('BINARY.SIZE[1]'), String(decoded.length), 'RFC 3516 4.3: the size of what BINARY returns')
  assert.equal(text(m.get('BINARY[1]<5>')), decoded.slice(5, 15), 'partial offsets count decoded octets')
})

/** The example structure of RFC 3501 section 6.4.5, with a body in every part. */
const RFC3501_EXAMPLE = crlf([
  'From: a@example.org', 'Subject: 6.4.5', 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="b0"', '',
  '--b0', 'Content-Type: text/plain', '', 'part 1',
  '--b0', 'Content-Type: application/octet-stream', 'Content-Transfer-Encoding: base64', '', 'AAEC',
  '--b0', 'Content-Type: message/rfc822', '',
  'From: b@example.org', 'Subject: part 3', 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="b3"', '',
  '--b3', 'Content-Type: text/plain', '', 'part 3.1',
  '--b3', 'Content-Type: application/octet-stream', '', 'part 3.2',
  '--b3--',
  '--b0', 'Content-Type: multipart/mixed; boundary="b4"', '',
  '--b4', 'Content-Type: image/gif', 'Content-Transfer-Encoding: base64', '', 'R0lG',
  '--b4', 'Content-Type: message/rfc822', '',
  'From: c@example.org', 'Subject: part 4.2', 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="b42"', '',
  '--b42', 'Content-Type: text/plain', '', 'part 4.2.1',
  '--b42', 'Content-Type: multipart/alternative; boundary="b422"', '',
  '--b422', 'Content-Type: text/plain', '', 'part 4.2.2.1',
  '--b422', 'Content-Type: text/richtext', '', 'part 4.2.2.2',
  '--b422--',
  '--b42--',
  '--b4--',
  '--b0--', '',
])

/** The text from `start` (included) to `end` (excluded), each the first occurrence at or after the previous. */
function span (whole: string, start: string, end: string): string {
  const from = whole.indexOf(start)
  assert.ok(from !== -1, start)
  const to = whole.indexOf(end, from + start.length)
  assert.ok(to !== -1, end)
  return whole.slice(from, to)
}

test('BODY[section] over the example structure of RFC 3501 section 6.4.5, message/rfc822 parts included', async (t) => {
  const { f, c } = await session(t)
  await f.store.append(USER, 'INBOX', { raw: Buffer.from(RFC3501_EXAMPLE) })
  const w = RFC3501_EXAMPLE
  const cases: Array<[string, string]> = [
    ['HEADER', span(w, 'From: a@', '--b0') ],
    ['TEXT', w.slice(w.indexOf('--b0'))],
    ['1', 'part 1'],
    ['2', 'AAEC'],
    // a message/rfc822 part: BODY[3] is the encapsulated message, HEADER and TEXT are its own, MIME the part's header
    ['3', span(w, 'From: b@', '\r\n--b0')],
    ['3.HEADER', span(w, 'From: b@', '--b3')],
    ['3.TEXT', span(w, '--b3\r\nContent-Type: text/plain', '\r\n--b0')],
    ['3.MIME', 'Content-Type: message/rfc822\r\n\r\n'],
    ['3.1', 'part 3.1'],
    ['3.2', 'part 3.2'],
    ['4', span(w, '--b4\r\nContent-Type: image/gif', '\r\n--b0--')],
    ['4.1', 'R0lG'],
    ['4.1.MIME', 'Content-Type: image/gif\r\nContent-Transfer-Encoding: base64\r\n\r\n'],
    ['4.2', span(w, 'From: c@', '\r\n--b4--')],
    ['4.2.HEADER', span(w, 'From: c@', '--b42')],
    ['4.2.TEXT', span(w, '--b42\r\nContent-Type: text/plain', '\r\n--b4--')],
    ['4.2.MIME', 'Content-Type: message/rfc822\r\n\r\n'],
    ['4.2.1', 'part 4.2.1'],
    ['4.2.2', span(w, '--b422\r\nContent-Type: text/plain', '\r\n--b42--')],
    ['4.2.2.1', 'part 4.2.2.1'],
    ['4.2.2.2', 'part 4.2.2.2'],
  ]
  await c.cmd('SELECT INBOX')
  const m = fetchResponses(await c.cmd(`FETCH 1 (${cases.map(([s]) => `BODY.PEEK[${s}]`).join(' ')})`)).get(1)!
  for (const [section, expected] of cases) assert.equal(text(m.get(`BODY[${section}]`)), expected, section)
  const binary = fetchResponses(await c.cmd('FETCH 1 (BINARY.PEEK[3] BINARY.SIZE[4.2])')).get(1)!
  assert.equal(text(binary.get('BINARY[3]')), span(w, 'From: b@', '\r\n--b0'), 'BINARY of a message/rfc822 part is the message')
  assert.equal(binary.get('BINARY.SIZE[4.2]'), String(span(w, 'From: c@', '\r\n--b4--').length))
})

test('BODY[section] of a message that is itself message/rfc822, nested twice (RFC 3501 section 6.4.5)', async (t) => {
  const { f, c } = await session(t)
  const inner = crlf(['From: sub@domain.org', 'Subject: submsg', '', 'Hello world', ''])
  const middle = crlf(['From: user2@domain.org', 'MIME-Version: 1.0', 'Content-Type: message/rfc822', '', inner])
  const outer = crlf(['From: user@domain.org', 'MIME-Version: 1.0', 'Content-Type: message/rfc822', '', middle])
  await f.store.append(USER, 'INBOX', { raw: Buffer.from(outer) })
  // A non-multipart message has one part, 1, its body (RFC 3501 6.4.5: "every message has at least one part number");
  // that body is a message/rfc822 here, so 1.HEADER and 1.TEXT are the header and text of the message it holds.
  const cases: Array<[string, string]> = [
    ['TEXT', middle],
    ['1', middle],
    ['1.HEADER', middle.slice(0, middle.indexOf('\r\n\r\n') + 4)],
    ['1.TEXT', inner],
    ['1.1', inner],
    ['1.1.HEADER', inner.slice(0, inner.indexOf('\r\n\r\n') + 4)],
    ['1.1.TEXT', 'Hello world\r\n'],
    ['1.1.1', 'Hello world\r\n'],
  ]
  await c.cmd('SELECT INBOX')
  const m = fetchResponses(await c.cmd(`FETCH 1 (${cases.map(([s]) => `BODY.PEEK[${s}]`).join(' ')})`)).get(1)!
  for (const [section, expected] of cases) assert.equal(text(m.get(`BODY[${section}]`)), expected, section)
})

test('BODY[section] inside a multipart/digest, whose parts are message/rfc822 by default (RFC 2046 5.1.5, RFC 3501 6.4.5)', async (t) => {
  const { f, c } = await session(t)
  const digest = crlf(['From: sub@domain.org', 'Subject: submsg', 'Content-Type: multipart/digest; boundary="foo"', '', 'prologue', '',
    '--foo ', '', 'From: m1@example.com', 'Subject: m1', '', 'm1 body', '',
    '--foo ', 'X-Mime: m2 header', '', 'From: m2@example.com', 'Subject: m2', '', 'm2 body', '',
    '--foo--', '', 'epilogue', ''])
  await f.store.append(USER, 'INBOX', { raw: Buffer.from(crlf(['From: user@domain.org', 'MIME-Version: 1.0', 'Content-Type: message/rfc822', '', digest])) })
  const cases: Array<[string, string]> = [
    ['1', digest],
    ['1.HEADER', digest.slice(0, digest.indexOf('\r\n\r\n') + 4)],
    ['1.TEXT', digest.slice(digest.indexOf('\r\n\r\n') + 4)],
    ['1.1', 'From: m1@example.com\r\nSubject: m1\r\n\r\nm1 body\r\n'],
    ['1.1.MIME', '\r\n'], // the digest part's own (empty) header
    ['1.1.HEADER', 'From: m1@example.com\r\nSubject: m1\r\n\r\n'],
    ['1.1.TEXT', 'm1 body\r\n'],
    ['1.2', 'From: m2@example.com\r\nSubject: m2\r\n\r\nm2 body\r\n'],
    ['1.2.MIME', 'X-Mime: m2 header\r\n\r\n'],
    ['1.2.HEADER', 'From: m2@example.com\r\nSubject: m2\r\n\r\n'],
    ['1.2.TEXT', 'm2 body\r\n'],
  ]
  await c.cmd('SELECT INBOX')
  const m = fetchResponses(await c.cmd(`FETCH 1 (${cases.map(([s]) => `BODY.PEEK[${s}]`).join(' ')})`)).get(1)!
  for (const [section, expected] of cases) assert.equal(text(m.get(`BODY[${section}]`)), expected, section)
})

test('MOVE and COPY into the selected mailbox itself: allowed, with COPYUID (RFC 6851, RFC 4315)', async (t) => {
  const { f, c, port } = await session(t)
  for (let i = 1; i <= 3; i++) await f.store.append(USER, 'INBOX', { raw: simpleMessage(`m${i}`) })
  const observer = await RawImap.connect(port)
  t.after(async () => { observer.close() })
  await observer.login()
  const selected = await c.cmd('SELECT INBOX')
  const uidValidity = /UIDVALIDITY (\d+)/.exec(selected)![1]
  await observer.cmd('SELECT INBOX')
  // RFC 6851 section 4.3: COPYUID in an untagged OK before the expunge; the message comes back under a new UID.
  const moved = await c.cmd('MOVE 1 INBOX', 'm1')
  assert.match(moved, new RegExp(`^\\* OK \\[COPYUID ${uidValidity} 1 4\\][^\\r]*\\r\\n\\* 1 EXPUNGE\\r\\n\\* 3 EXISTS\\r\\n`, 'm'))
  assert.match(moved, /^m1 OK/m)
  assert.match(await c.cmd('UID MOVE 3 INBOX', 'm2'), new RegExp(`\\[COPYUID ${uidValidity} 3 5\\][\\s\\S]*\\* 2 EXPUNGE\\r\\n\\* 3 EXISTS`))
  assert.match(await c.cmd('COPY 1 INBOX', 'c1'), new RegExp(`^c1 OK \\[COPYUID ${uidValidity} 2 6\\]`, 'm'))
  assert.match(await c.cmd('UID FETCH 1:* (UID)', 'u1'), /\* 1 FETCH \(UID 2\)\r\n\* 2 FETCH \(UID 4\)\r\n\* 3 FETCH \(UID 5\)\r\n\* 4 FETCH \(UID 6\)\r\nu1 OK/)
  assert.equal((await f.store.getMailbox(USER, 'INBOX'))!.messages, 4)
  // The observer sees the same mailbox: the moved ones expunged, the new ones arrived.
  const heard = await observer.cmd('NOOP', 'o1')
  assert.match(heard, /\* 1 EXPUNGE\r\n/)
  assert.match(await observer.cmd('UID FETCH 1:* (UID)', 'o2'), /\* 1 FETCH \(UID 2\)\r\n\* 2 FETCH \(UID 4\)\r\n\* 3 FETCH \(UID 5\)\r\n\* 4 FETCH \(UID 6\)\r\no2 OK/)
})

/** name → attributes (lower-cased; \HasChildren/\HasNoChildren left out unless `children`) and whether CHILDINFO came. */
function listed (reply: string, children: boolean): Map<string, { attrs: string[], childInfo: boolean }> {
  const out = new Map<string, { attrs: string[], childInfo: boolean }>()
  for (const r of parseResponses(reply)) {
    if (r.tag !== '*' || r.items[0] !== 'LIST') continue
    const attrs = (r.items[1] as string[]).map((a) => a.toLowerCase()).filter((a) => children || !/^\\has(no)?children$/.test(a)).sort()
    const extended = r.items[4] as Item[] | undefined
    out.set(r.items[3] as string, { attrs, childInfo: extended !== undefined && String(extended[0]).toUpperCase() === 'CHILDINFO' })
  }
  return out
}

type Expected = Record<string, [string[], boolean]>

async function checkList (c: RawImap, command: string, expected: Expected, why: string): Promise<void> {
  const children = /RETURN \([^)]*CHILDREN/i.test(command)
  const reply = await c.cmd(command, 'lx')
  assert.match(reply, /^lx OK/m, `${why}: ${reply}`)
  const got = Object.fromEntries([...listed(reply, children)].map(([name, v]) => [name, [v.attrs, v.childInfo]]))
  const want = Object.fromEntries(Object.entries(expected).map(([name, [attrs, info]]) => [name, [attrs.map((a) => a.toLowerCase()).sort(), info]]))
  assert.deepEqual(got, want, `${why}\n${command}`)
}

test('LIST-EXTENDED: RECURSIVEMATCH and CHILDINFO as RFC 5258 sections 3.3 and 3.5 and the examples of section 5 have them', async (t) => {
  const { f, c } = await session(t)
  const S = '\\Subscribed'
  for (const name of await f.store.listSubscriptions(USER)) await f.store.setSubscribed(USER, name, false)
  // Example 8's hierarchy: Foo, Foo/Bar, Foo/Baz, Moo.
  for (const name of ['Foo/Bar', 'Foo/Baz', 'Moo']) await f.store.createMailbox(USER, name)
  // 8 A: only Foo/Baz subscribed.
  await f.store.setSubscribed(USER, 'Foo/Baz', true)
  await checkList(c, 'LIST (SUBSCRIBED) "" "Foo*"', { 'Foo/Baz': [[S], false] }, 'example 8 A')
  await checkList(c, 'LIST (SUBSCRIBED) "" "%"', {}, 'example 8 A: no name at the top level is subscribed')
  await checkList(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"', { Foo: [[], true] }, 'example 8 A: Foo has a subscribed child')
  // 8 A1: Foo subscribed as well: \Subscribed and CHILDINFO (the table of section 3.5, row yes/yes/yes).
  await f.store.setSubscribed(USER, 'Foo', true)
  await checkList(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"', { Foo: [[S], true] }, 'example 8 A1')
  // 8 B: nothing subscribed: nothing listed, although Foo has children.
  await f.store.setSubscribed(USER, 'Foo', false)
  await f.store.setSubscribed(USER, 'Foo/Baz', false)
  await checkList(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"', {}, 'example 8 B')
  // 8 C: Foo and Moo subscribed: \HasChildren says Foo has children, no CHILDINFO since none of them is subscribed.
  await f.store.setSubscribed(USER, 'Foo', true)
  await f.store.setSubscribed(USER, 'Moo', true)
  await checkList(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)',
    { Foo: [['\\HasChildren', S], false], Moo: [['\\HasNoChildren', S], false] }, 'example 8 C')
  await f.store.setSubscribed(USER, 'Foo', false)
  await f.store.setSubscribed(USER, 'Moo', false)

  // Example 9's hierarchy and subscriptions (qux2 exists here: the store creates a child's parents).
  for (const name of ['foo2/bar1', 'foo2/bar2', 'baz2/bar2', 'baz2/bar22', 'baz2/bar222', 'eps2/mamba', 'qux2/bar2']) await f.store.createMailbox(USER, name)
  for (const name of ['foo2/bar1', 'foo2/bar2', 'baz2/bar2', 'baz2/bar22', 'baz2/bar222', 'eps2', 'eps2/mamba', 'qux2/bar2']) await f.store.setSubscribed(USER, name, true)
  // "*2": foo2 and eps2 have a subscribed child the pattern does not match (foo2/bar1, eps2/mamba); baz2's and qux2's
  // subscribed children are all listed, so their CHILDINFO would be redundant, which section 3.5 says to suppress
  // (the example's "may also include ... but this would violate a SHOULD NOT").
  await checkList(c, 'LIST (RECURSIVEMATCH SUBSCRIBED) "" "*2"', {
    foo2: [[], true], 'foo2/bar2': [[S], false], 'baz2/bar2': [[S], false], 'baz2/bar22': [[S], false], 'baz2/bar222': [[S], false],
    eps2: [[S], true], 'qux2/bar2': [[S], false],
  }, 'example 9, pattern *2')
  // "*": every subscribed name is listed itself; a parent not subscribed has no subscribed child left unlisted, so
  // (section 3.3 rule 2B) it is not listed, and CHILDINFO would be redundant everywhere (section 3.5's SHOULD; the
  // example shows the redundant form, which it calls redundant).
  await checkList(c, 'LIST (RECURSIVEMATCH SUBSCRIBED) "" "*2/*"', {
    'foo2/bar1': [[S], false], 'foo2/bar2': [[S], false], 'baz2/bar2': [[S], false], 'baz2/bar22': [[S], false], 'baz2/bar222': [[S], false],
    'eps2/mamba': [[S], false], 'qux2/bar2': [[S], false],
  }, 'example 9, every child listed: no parent')
  await checkList(c, 'LIST (RECURSIVEMATCH SUBSCRIBED) "" "*"', {
    'foo2/bar1': [[S], false], 'foo2/bar2': [[S], false], 'baz2/bar2': [[S], false], 'baz2/bar22': [[S], false], 'baz2/bar222': [[S], false],
    eps2: [[S], false], 'eps2/mamba': [[S], false], 'qux2/bar2': [[S], false],
  }, 'example 9, pattern *: redundant CHILDINFO suppressed')

  // The finding: a child matched by one of several patterns is listed itself, so its parent gets no CHILDINFO and,
  // not being subscribed, is not listed at all (section 3.3 rule 2B); with the parent's pattern alone it is.
  await checkList(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" (foo2 foo2/bar1 foo2/bar2)', { 'foo2/bar1': [[S], false], 'foo2/bar2': [[S], false] }, 'multiple patterns')
  await checkList(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" (foo2 foo2/bar1)', { foo2: [[], true], 'foo2/bar1': [[S], false] }, 'bar2 left out: CHILDINFO')
  await checkList(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" (foo2)', { foo2: [[], true] }, 'the parent alone')

  // Example 10: CHILDINFO does not imply \HasChildren (a subscribed child that does not exist).
  await f.store.createMailbox(USER, 'foo/bar')
  await f.store.setSubscribed(USER, 'foo/bar', true)
  await f.store.deleteMailbox(USER, 'foo/bar')
  await checkList(c, 'LIST "" (foo foo/*)', { foo: [[], false] }, 'example 10 a1')
  await checkList(c, 'LIST (SUBSCRIBED) "" "foo/*"', { 'foo/bar': [[S, '\\NonExistent'], false] }, 'example 10 a2')
  await checkList(c, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" foo RETURN (CHILDREN)', { foo: [['\\HasNoChildren'], true] }, 'example 10 a3')

  // Section 3.1: RECURSIVEMATCH alone (or with REMOTE only) is a BAD.
  assert.match(await c.cmd('LIST (RECURSIVEMATCH) "" "%"', 'b1'), /^b1 BAD/m)
  assert.match(await c.cmd('LIST (REMOTE RECURSIVEMATCH) "" "%"', 'b2'), /^b2 BAD/m)
})

test('SEARCH FROM/TO/CC/BCC match parsed addresses, comments and folding removed (imaplib; RFC 3501 6.4.4, RFC 5322 3.4)', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server()
  const messages = [
    ['From: <user-from (comment)@ (comment) domain.org>', 'To: "Real \\"Quoted\\" To" <user-to@domain.org>'],
    ['From: user-from@domain.org (Real From)', 'Cc: user-cc@', ' domain.org'],
    ['From: =?UTF-8?Q?J=C3=B6rg?= <joerg@example.org>', 'To: team: one@domain.org, two@domain.org;'],
    ['From: other@domain.org', 'Bcc: Hidden <user-bcc@domain.org>'],
  ]
  for (const headers of messages) await f.store.append(USER, 'INBOX', { raw: Buffer.from(crlf([...headers, 'Subject: s', '', 'body', ''])) })
  const script = `
import imaplib, json, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
m = imaplib.IMAP4('127.0.0.1', port); m.login(user, password); m.select('INBOX')
out = {}
for key, value in [('FROM', 'user-from@domain.org'), ('FROM', '"Real From"'), ('FROM', 'domain.org'), ('FROM', 'nobody@domain.org'),
                   ('TO', 'user-to@domain.org'), ('TO', 'two@domain.org'), ('TO', 'team'), ('CC', 'user-cc@domain.org'),
                   ('BCC', 'user-bcc@domain.org'), ('BCC', 'Hidden'), ('FROM', 'joerg@example.org')]:
    out[key + ' ' + value] = m.search(None, key, value)[1][0].decode()
m.literal = 'Real "Quoted" To'.encode()
out['TO quoted'] = m.search(None, 'TO')[1][0].decode()
m.literal = 'Jörg <joerg@example.org>'.encode()
out['FROM name and address'] = m.search('UTF-8', 'FROM')[1][0].decode()
m.logout()
print(json.dumps(out))
`
  const result = await python(script, [String(port), USER, PASSWORD])
  assert.equal(result.code, 0, result.stderr)
  assert.deepEqual(JSON.parse(result.stdout), {
    'FROM user-from@domain.org': '1 2', // 1: comments and white space inside the addr-spec; 2: the comment after it
    'FROM "Real From"': '2',
    'FROM domain.org': '1 2 4',
    'FROM nobody@domain.org': '',
    'TO user-to@domain.org': '1',
    'TO two@domain.org': '3', // a group member
    'TO team': '3', // the group name, in the field text
    'CC user-cc@domain.org': '2', // folded inside the address
    'BCC user-bcc@domain.org': '4',
    'BCC Hidden': '4',
    'FROM joerg@example.org': '3',
    'TO quoted': '1', // a quoted display name, unquoted
    'FROM name and address': '3', // the decoded encoded word with the address
  })
})

test('CONDSTORE: the first enabling command in the selected state gets OK [HIGHESTMODSEQ]; ESEARCH reports the MODSEQ of what it returns', async (t) => {
  const { f, c } = await session(t)
  for (let i = 1; i <= 4; i++) await f.store.append(USER, 'INBOX', { raw: simpleMessage(`c${i}`) })
  await c.cmd('SELECT INBOX')
  // A change of our own before CONDSTORE is on: the HIGHESTMODSEQ reported later includes it.
  await c.cmd('STORE 4 +FLAGS.SILENT (\\Answered)')
  const highest = (await f.store.getMailbox(USER, 'INBOX'))!.highestModseq
  // RFC 7162 section 3.1: FETCH MODSEQ enables CONDSTORE; a server "MUST ... send HIGHESTMODSEQ" in the selected state.
  const first = await c.cmd('FETCH 1 (MODSEQ)', 'h1')
  assert.match(first, new RegExp(`^\\* OK \\[HIGHESTMODSEQ ${highest}\\]`, 'm'))
  assert.match(first, /^\* 1 FETCH \(MODSEQ \(\d+\)\)\r\n/m)
  assert.doesNotMatch(await c.cmd('FETCH 1 (MODSEQ)', 'h2'), /HIGHESTMODSEQ/, 'only the first time')

  const modseq: number[] = []
  for (const seq of [1, 3, 2, 4]) {
    const reply = await c.cmd(`STORE ${seq} +FLAGS (\\Seen)`)
    modseq[seq] = Number(new RegExp(`\\* ${seq} FETCH \\(FLAGS \\([^)]*\\) MODSEQ \\((\\d+)\\)\\)`).exec(reply)![1])
  }
  // RFC 4731 section 3.1 with RFC 7162 section 3.1.5: MODSEQ is the highest mod-sequence of the messages returned:
  // MIN or MAX alone return one message; ALL and COUNT return all that matched.
  const cases: Array<[string, string]> = [
    ['RETURN (MIN) 1:3 MODSEQ 1', `MIN 1 MODSEQ ${modseq[1]}`],
    ['RETURN (MAX) 1:3 MODSEQ 1', `MAX 3 MODSEQ ${modseq[3]}`],
    ['RETURN () 1:3 MODSEQ 1', `ALL 1:3 MODSEQ ${modseq[2]}`],
    ['RETURN (MIN MAX) 2:3 MODSEQ 1', `MIN 2 MAX 3 MODSEQ ${Math.max(modseq[2]!, modseq[3]!)}`],
    ['RETURN (COUNT) 1:3 MODSEQ 1', `COUNT 3 MODSEQ ${modseq[2]}`],
    ['RETURN (MIN COUNT) 1:3 MODSEQ 1', `MIN 1 COUNT 3 MODSEQ ${modseq[2]}`],
    [`RETURN (ALL) 2:3 MODSEQ ${modseq[2]}`, `ALL 2 MODSEQ ${modseq[2]}`],
    [`RETURN (ALL) 2:3 MODSEQ ${modseq[4]}`, ''],
  ]
  for (const [program, expected] of cases) {
    const reply = await c.cmd(`SEARCH ${program}`, 'e')
    assert.match(reply, new RegExp(`^\\* ESEARCH \\(TAG "e"\\)${expected === '' ? '' : ' ' + expected.replace(/[()]/g, '\\$&')}\\r\\ne OK`, 'm'), program)
  }
})

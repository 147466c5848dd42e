// Every FETCH item over a raw socket, checked byte for byte against the message as delivered (with the
// server's Received prefix): BODYSTRUCTURE and BODY as Dovecot writes them for the same message (RFC 3501
// section 7.4.2, RFC 9051 section 7.5.2), BODY[section]<partial> for HEADER, HEADER.FIELDS(.NOT), TEXT, MIME
// and nested parts, PEEK against \Seen, the macros, RFC822.*, BINARY and BINARY.SIZE (RFC 3516).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, RawImap, richMessage, USER } from './helpers.ts'
import { fetchResponses, text } from './wire.ts'
import type { Item } from './wire.ts'

const PREFIX = 'Received: from mx.example.org by mailgrid; Mon, 02 Feb 2026 10:00:01 +0000\r\n'

/** The bytes between two markers of the raw message (latin1, one char per byte). */
function between (whole: string, from: string, to: string, after = 0): string {
  const start = whole.indexOf(from, after)
  assert.ok(start >= 0, from)
  const end = whole.indexOf(to, start + from.length)
  assert.ok(end >= 0, to)
  return whole.slice(start, end)
}

// What Dovecot answers for richMessage(): the multipart/alternative inside multipart/mixed, the base64
// attachment with its disposition, the message/rfc822 part with its envelope, body and line count. Extension
// data: a multipart carries (params disposition language location), a leaf (md5 disposition language location).
const ENVELOPE_INNER = '(NIL "inner message" ((NIL NIL "inner" "example.org")) ((NIL NIL "inner" "example.org")) ((NIL NIL "inner" "example.org")) NIL NIL NIL NIL NIL)'
const BODYSTRUCTURE = '(' +
  '(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "8BIT" 53 1 NIL NIL NIL NIL) ' +
  '("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 22 1 NIL NIL NIL NIL) ' +
  '"ALTERNATIVE" ("BOUNDARY" "inner") NIL NIL NIL) ' +
  '("APPLICATION" "OCTET-STREAM" ("NAME" "data.bin") NIL NIL "BASE64" 12 NIL ("ATTACHMENT" ("FILENAME" "data.bin")) NIL NIL) ' +
  `("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 61 ${ENVELOPE_INNER} ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 10 1 NIL NIL NIL NIL) 4 NIL NIL NIL NIL) ` +
  '"MIXED" ("BOUNDARY" "outer") NIL NIL NIL)'
const BODY = '(' +
  '(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "8BIT" 53 1) ("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 22 1) "ALTERNATIVE") ' +
  '("APPLICATION" "OCTET-STREAM" ("NAME" "data.bin") NIL NIL "BASE64" 12) ' +
  `("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 61 ${ENVELOPE_INNER} ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 10 1) 4) "MIXED")`

/** Re-serialises a parsed item, to compare structures as text. */
function render (item: Item): string {
  if (item === null) return 'NIL'
  if (typeof item === 'string') return /^[\w.\\-]+$/.test(item) && !/^[A-Za-z]/.test(item) ? item : JSON.stringify(item)
  if (Array.isArray(item)) return '(' + item.map(render).join(' ') + ')'
  return JSON.stringify(item.literal)
}

test('BODYSTRUCTURE and BODY of a nested multipart match what Dovecot returns', async (t) => {
  const f = await fixture(t)
  await f.store.deliver(richMessage(), [{ user: USER, prefix: PREFIX }])
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  await c.login()
  await c.cmd('EXAMINE INBOX')
  const reply = await c.cmd('FETCH 1 (BODYSTRUCTURE BODY)')
  assert.ok(reply.includes(`BODYSTRUCTURE ${BODYSTRUCTURE}`), reply)
  assert.ok(reply.includes(`BODY ${BODY})`), reply)
})

test('BODYSTRUCTURE extension data: md5, disposition with RFC 2231 parameters, languages, location, default charset', async (t) => {
  const f = await fixture(t)
  const raw = [
    'Subject: ext', 'MIME-Version: 1.0', 'Content-Type: multipart/related; boundary=b; type="text/html"',
    'Content-Language: fr', 'Content-Location: http://example.org/page', '',
    '--b', 'Content-Type: text/plain; format=flowed', 'Content-ID: <p1@example.org>', 'Content-Description: the text',
    'Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==', 'Content-Language: en, de', 'Content-Disposition: inline; filename*=utf-8\'\'%C3%A4.txt',
    '', 'line one', 'line two', '--b--', '',
  ].join('\r\n')
  await f.store.append(USER, 'INBOX', { raw: Buffer.from(raw) })
  await f.store.append(USER, 'INBOX', { raw: Buffer.from('Subject: bare\r\n\r\nno content-type at all\r\n') })
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  await c.login()
  await c.cmd('EXAMINE INBOX')
  const reply = await c.cmd('FETCH 1:2 BODYSTRUCTURE')
  // A text part without charset gets Dovecot's default ("charset" "us-ascii") after its own parameters; one
  // language is still a list; the multipart's own extension data follows its subtype.
  assert.ok(reply.includes('* 1 FETCH (BODYSTRUCTURE (("TEXT" "PLAIN" ("FORMAT" "flowed" "CHARSET" "us-ascii") "<p1@example.org>" "the text" "7BIT" 18 2 ' +
    '"Q2hlY2sgSW50ZWdyaXR5IQ==" ("INLINE" ("FILENAME*" "utf-8\'\'%C3%A4.txt")) ("en" "de") NIL) ' +
    '"RELATED" ("BOUNDARY" "b" "TYPE" "text/html") NIL ("fr") "http://example.org/page"))'), reply)
  assert.ok(reply.includes('* 2 FETCH (BODYSTRUCTURE ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 24 1 NIL NIL NIL NIL))'), reply)
})

test('every FETCH item, byte for byte, and PEEK against \\Seen', async (t) => {
  const f = await fixture(t)
  const raw = richMessage()
  const internal = Date.UTC(2026, 1, 2, 10, 0, 1)
  await f.store.deliver(raw, [{ user: USER, prefix: PREFIX }], { internalDate: internal })
  const whole = PREFIX + raw.toString('latin1')
  const headerEnd = whole.indexOf('\r\n\r\n') + 4
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  await c.login()
  await c.cmd('SELECT INBOX')

  let m = fetchResponses(await c.cmd('FETCH 1 (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE RFC822.HEADER BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[TEXT])')).get(1)!
  assert.equal(m.get('UID'), '1')
  assert.deepEqual(m.get('FLAGS'), ['\\Recent'], 'PEEK and RFC822.HEADER leave \\Seen alone (delivered before the SELECT: recent here)')
  assert.equal(m.get('INTERNALDATE'), '02-Feb-2026 10:00:01 +0000')
  assert.equal(m.get('RFC822.SIZE'), String(whole.length))
  const envelope = m.get('ENVELOPE') as Item[]
  assert.equal(envelope[0], 'Mon, 02 Feb 2026 10:00:00 +0000')
  assert.equal(envelope[1], `=?UTF-8?B?${Buffer.from('Grüße aus Köln').toString('base64')}?=`, 'RFC 2047 words stay encoded')
  assert.equal(render(envelope[2]!), '(("=?UTF-8?Q?J=C3=B6rg?=" NIL "joerg" "example.org"))')
  assert.equal(render(envelope[3]!), render(envelope[2]!), 'sender defaults to from')
  assert.equal(render(envelope[4]!), render(envelope[2]!), 'reply-to defaults to from')
  assert.equal(render(envelope[5]!), '(("Alice" NIL "alice" "example.com") (NIL NIL "bob" "example.com"))')
  assert.equal(render(envelope[6]!), '((NIL NIL "carol" "example.net"))')
  assert.equal(envelope[7], null)
  assert.equal(envelope[8], null)
  assert.equal(envelope[9], '<rich-1@example.org>')
  assert.equal(text(m.get('RFC822.HEADER')), whole.slice(0, headerEnd))
  assert.equal(text(m.get('BODY[]')), whole)
  assert.equal(text(m.get('BODY[HEADER]')), whole.slice(0, headerEnd))
  assert.equal(text(m.get('BODY[TEXT]')), whole.slice(headerEnd))

  m = fetchResponses(await c.cmd('FETCH 1 (BODY.PEEK[HEADER.FIELDS (Subject message-id X-Absent)] BODY.PEEK[HEADER.FIELDS.NOT (Received From To Cc Subject Date Message-ID Content-Type)] ' +
    'BODY.PEEK[1] BODY.PEEK[1.1] BODY.PEEK[1.2] BODY.PEEK[1.1.MIME] BODY.PEEK[2] BODY.PEEK[2.MIME] BODY.PEEK[3] BODY.PEEK[3.MIME] BODY.PEEK[3.HEADER] BODY.PEEK[3.TEXT] BODY.PEEK[3.1] ' +
    'BODY.PEEK[3.HEADER.FIELDS (SUBJECT)] BODY.PEEK[9] BODY.PEEK[]<6.10> BODY.PEEK[TEXT]<0.7> BODY.PEEK[1.1]<100000.5>)')).get(1)!
  assert.equal(text(m.get('BODY[HEADER.FIELDS (SUBJECT MESSAGE-ID X-ABSENT)]')),
    between(whole, 'Subject:', '\r\nDate:') + '\r\n' + between(whole, 'Message-ID:', '\r\nMIME') + '\r\n\r\n', 'fields as written, then the blank line')
  assert.equal(text(m.get('BODY[HEADER.FIELDS.NOT (RECEIVED FROM TO CC SUBJECT DATE MESSAGE-ID CONTENT-TYPE)]')), 'MIME-Version: 1.0\r\n\r\n')
  const firstPart = between(whole, 'Content-Type: multipart/alternative', '\r\n--outer', headerEnd)
  assert.equal(text(m.get('BODY[1]')), firstPart.slice(firstPart.indexOf('\r\n\r\n') + 4), 'a multipart part is its body, MIME header excluded')
  assert.equal(text(m.get('BODY[1.1]')), 'Hallo Wält, this is the plain body with needle-word.'.replace(/./gu, (ch) => Buffer.from(ch).toString('latin1')))
  assert.equal(text(m.get('BODY[1.2]')), '<p>Hallo W=C3=A4lt</p>')
  assert.equal(text(m.get('BODY[1.1.MIME]')), 'Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n')
  assert.equal(text(m.get('BODY[2]')), Buffer.from([0, 1, 2, 3, 255, 254, 0, 10]).toString('base64'))
  assert.equal(text(m.get('BODY[2.MIME]')), 'Content-Type: application/octet-stream; name="data.bin"\r\nContent-Disposition: attachment; filename="data.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n')
  assert.equal(text(m.get('BODY[3]')), 'From: inner@example.org\r\nSubject: inner message\r\n\r\ninner body')
  assert.equal(text(m.get('BODY[3.MIME]')), 'Content-Type: message/rfc822\r\n\r\n')
  assert.equal(text(m.get('BODY[3.HEADER]')), 'From: inner@example.org\r\nSubject: inner message\r\n\r\n', 'HEADER of a message/rfc822 part is the encapsulated header')
  assert.equal(text(m.get('BODY[3.TEXT]')), 'inner body')
  assert.equal(text(m.get('BODY[3.1]')), 'inner body', 'part 1 of a non-multipart encapsulated message is its body')
  assert.equal(text(m.get('BODY[3.HEADER.FIELDS (SUBJECT)]')), 'Subject: inner message\r\n\r\n')
  assert.equal(text(m.get('BODY[9]')), '', 'a part that does not exist is empty')
  assert.equal(text(m.get('BODY[]<6>')), whole.slice(6, 16), 'partial: origin echoed, length cut')
  assert.equal(text(m.get('BODY[TEXT]<0>')), '--outer')
  assert.equal(text(m.get('BODY[1.1]<100000>')), '', 'a partial beyond the end is empty')

  m = fetchResponses(await c.cmd('FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2] BINARY.PEEK[1.2] BINARY.SIZE[1.2] BINARY.PEEK[1.1]<0.5> BINARY.SIZE[] BINARY.PEEK[] BINARY.PEEK[1])')).get(1)!
  assert.deepEqual([...Buffer.from(text(m.get('BINARY[2]')), 'latin1')], [0, 1, 2, 3, 255, 254, 0, 10], 'base64 decoded, in a literal8')
  assert.equal(m.get('BINARY.SIZE[2]'), '8')
  assert.equal(Buffer.from(text(m.get('BINARY[1.2]')), 'latin1').toString('utf8'), '<p>Hallo Wält</p>', 'quoted-printable decoded')
  assert.equal(m.get('BINARY.SIZE[1.2]'), String(Buffer.byteLength('<p>Hallo Wält</p>')))
  assert.equal(text(m.get('BINARY[1.1]<0>')), 'Hallo')
  assert.equal(m.get('BINARY.SIZE[]'), String(whole.length))
  assert.equal(text(m.get('BINARY[]')), whole, 'BINARY[] is the whole message')
  assert.equal(m.get('BINARY[1]'), null, 'a multipart has no BINARY content')

  const macros = await c.cmd('FETCH 1 FAST')
  assert.match(macros, /\* 1 FETCH \(FLAGS \(\\Recent\) INTERNALDATE "02-Feb-2026 10:00:01 \+0000" RFC822\.SIZE \d+\)/)
  assert.match(await c.cmd('FETCH 1 ALL'), /\* 1 FETCH \(FLAGS \(\\Recent\) INTERNALDATE "[^"]+" RFC822\.SIZE \d+ ENVELOPE \(/)
  assert.match(await c.cmd('FETCH 1 FULL'), /ENVELOPE \(.*\) BODY \(\(\(/)
  assert.equal(fetchResponses(await c.cmd('FETCH 1 FLAGS')).get(1)!.get('FLAGS')!.toString(), '\\Recent', 'still unseen')

  // Non-PEEK body items set \Seen and report the new flags with the same response.
  m = fetchResponses(await c.cmd('FETCH 1 (BODY[1.2])')).get(1)!
  assert.deepEqual(m.get('FLAGS'), ['\\Seen', '\\Recent'])
  await c.cmd('STORE 1 -FLAGS.SILENT (\\Seen)')
  m = fetchResponses(await c.cmd('FETCH 1 (RFC822.TEXT)')).get(1)!
  assert.equal(text(m.get('RFC822.TEXT')), whole.slice(headerEnd))
  assert.deepEqual(m.get('FLAGS'), ['\\Seen', '\\Recent'], 'RFC822.TEXT sets \\Seen')
  await c.cmd('STORE 1 -FLAGS.SILENT (\\Seen)')
  m = fetchResponses(await c.cmd('FETCH 1 RFC822')).get(1)!
  assert.equal(text(m.get('RFC822')), whole)
  assert.deepEqual(m.get('FLAGS'), ['\\Seen', '\\Recent'], 'RFC822 sets \\Seen')
  await c.cmd('STORE 1 -FLAGS.SILENT (\\Seen)')
  m = fetchResponses(await c.cmd('FETCH 1 BINARY[2]')).get(1)!
  assert.deepEqual(m.get('FLAGS'), ['\\Seen', '\\Recent'], 'BINARY sets \\Seen')

  // EXAMINE never sets \Seen.
  await c.cmd('STORE 1 -FLAGS.SILENT (\\Seen)')
  await c.cmd('EXAMINE INBOX')
  m = fetchResponses(await c.cmd('FETCH 1 (BODY[TEXT] FLAGS)')).get(1)!
  assert.deepEqual(m.get('FLAGS'), [], 'claimed by the SELECT before: not recent any more')
  assert.match(await c.cmd('FETCH 1 (BODY[HEADER.FIELDS ()])', 'b1'), /^b1 BAD/m)
  assert.match(await c.cmd('FETCH 1 (BODY[MIME])', 'b2'), /^b2 BAD/m, 'MIME needs a part number')
  assert.match(await c.cmd('FETCH 1 (BINARY[1.MIME])', 'b3'), /^b3 BAD/m)
  assert.match(await c.cmd('FETCH 1 (FROB)', 'b4'), /^b4 BAD/m)
  assert.match(await c.cmd('FETCH 2 FLAGS', 'b5'), /^b5 BAD/m, 'a sequence number above EXISTS')
})

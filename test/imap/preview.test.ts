// PREVIEW (RFC 8970): FETCH PREVIEW and PREVIEW (LAZY): at most 256 characters from the first text part, decoded,
// HTML reduced to its text. Raw protocol: neither imapflow nor imaplib asks for PREVIEW.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, RawImap, USER } from './helpers.ts'
import { fetchResponses, text } from './wire.ts'

const crlf = (lines: string[]): Buffer => Buffer.from(lines.join('\r\n'), 'utf8')

const MESSAGES: Record<string, Buffer> = {
  plain: crlf(['Subject: plain', '', 'Hello, this is a test message.', '', 'Second   line.', '']),
  html: crlf([
    'Subject: html', 'Content-Type: text/html; charset=utf-8', '',
    '<html><head><title>T</title><style>p { color: red }</style></head><body><!-- hidden -->',
    '<p>Hello &amp; <b>welcome</b>&nbsp;&#8212; caf&#xE9;</p><script>alert(1)</script></body></html>', '',
  ]),
  alternative: crlf([
    'Subject: alt', 'MIME-Version: 1.0', 'Content-Type: multipart/alternative; boundary="b"', '',
    '--b', 'Content-Type: text/html', '', '<p>the html version</p>',
    '--b', 'Content-Type: text/plain; charset=iso-8859-1', 'Content-Transfer-Encoding: base64', '',
    Buffer.from('Grüße aus Köln', 'latin1').toString('base64'), '--b--', '',
  ]),
  attachment: crlf([
    'Subject: att', 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="b"', '',
    '--b', 'Content-Type: text/plain', 'Content-Disposition: attachment; filename="a.txt"', '', 'not the preview',
    '--b', 'Content-Type: application/pdf', 'Content-Transfer-Encoding: base64', '', 'JVBERi0=', '--b--', '',
  ]),
  long: crlf(['Subject: long', 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: quoted-printable', '',
    ...Array.from({ length: 40 }, () => 'Gr=C3=BC=C3=9Fe Welt, ein l=C3=A4ngerer Text ohne Ende ='), 'fin', '']),
}

test('PREVIEW: plain, HTML, multipart/alternative, base64 Latin-1, an attachment-only message, 256 characters at most', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server()
  for (const raw of Object.values(MESSAGES)) await f.store.append(USER, 'INBOX', { raw })
  const c = await RawImap.connect(port)
  t.after(() => { c.close() })
  await c.login()
  assert.match(await c.cmd('CAPABILITY'), / PREVIEW/)
  await c.cmd('SELECT INBOX')
  const out = await c.cmd('FETCH 1:5 (PREVIEW)')
  const got = fetchResponses(out)
  const preview = (n: number): string => Buffer.from(text(got.get(n)!.get('PREVIEW')), 'latin1').toString('utf8')
  // section 3.1: the text of the message, white space collapsed
  assert.equal(preview(1), 'Hello, this is a test message. Second line.')
  // HTML: no markup, no title/style/script/comment, entities decoded
  assert.equal(preview(2), 'Hello & welcome \u2014 caf\u00e9')
  // the plain alternative, charset decoded
  assert.equal(preview(3), 'Grüße aus Köln')
  // nothing to preview: the empty string
  assert.equal(preview(4), '')
  // section 3.1: "MUST NOT be more than 256 characters" (characters, not octets: this one is 8-bit)
  const full = 'Grüße Welt, ein längerer Text ohne Ende '.repeat(40) + 'fin'
  assert.equal(preview(5), [...full].slice(0, 256).join('').trimEnd())
  assert.ok([...preview(5)].length >= 255)
  // 8-bit text without UTF8=ACCEPT goes as a literal
  assert.match(out, /^\* 5 FETCH \(PREVIEW \{\d+\}\r$/m)
  // PREVIEW does not set \Seen (it is not BODY[])
  assert.doesNotMatch(await c.cmd('FETCH 1 FLAGS'), /\\Seen/)
})

test('PREVIEW (LAZY): NIL for a large message not yet previewed, the preview once one was made; bad modifiers are BAD', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server()
  await f.store.append(USER, 'INBOX', { raw: MESSAGES.plain! })
  const big = Buffer.concat([crlf(['Subject: big', '', 'The big one starts here.', '']), Buffer.alloc(400 * 1024, 'x\r\n')])
  await f.store.append(USER, 'INBOX', { raw: big })
  const c = await RawImap.connect(port)
  t.after(() => { c.close() })
  await c.login()
  await c.cmd('SELECT INBOX')
  // section 3.2: LAZY lets the server answer NIL when a preview is costly to make now; a small message gets one
  assert.match(await c.cmd('FETCH 1 (PREVIEW (LAZY))'), /PREVIEW "Hello, this is a test message\. Second line\."/)
  assert.match(await c.cmd('FETCH 2 (PREVIEW (LAZY))'), /^\* 2 FETCH \(PREVIEW NIL\)\r$/m)
  // without LAZY it is made (and kept), then LAZY has it
  assert.match(await c.cmd('UID FETCH 2 (PREVIEW)'), /PREVIEW "The big one starts here\. x x x/)
  assert.match(await c.cmd('FETCH 2 (PREVIEW (LAZY))'), /PREVIEW "The big one starts here\./)
  assert.match(await c.cmd('FETCH 1 (PREVIEW ())'), /BAD/)
  assert.match(await c.cmd('FETCH 1 (PREVIEW (EAGER))'), /BAD/)
  assert.match(await c.cmd('FETCH 1 PREVIEW'), /PREVIEW "Hello/)
})

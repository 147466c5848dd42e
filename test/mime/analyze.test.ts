// analyzeMessage on hand-written messages: structure, byte offsets (checked by slicing the raw message),
// sizes, lines, content fields, section numbering, SEARCH helpers. Each case runs with CRLF and bare LF.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { analyzeMessage, decodedText, findPart, headerFields, paramValue, textParts } from '../../store/mime/index.ts'
import type { MimePart } from '../../store/mime/index.ts'
import { body, header, msg, shape, validate } from './helpers.ts'

interface Case {
  name: string
  rows: string[]
  shape: string
  /** Section path (`''` = whole message, `1.2` = part) → the exact body bytes (lines joined by the eol). */
  bodies?: Record<string, string[]>
  /** Section path → the exact header block. */
  headers?: Record<string, string[]>
  check?: (part: (path: string) => MimePart) => void
}

const NESTED = [
  'From: a@example.com',
  'Subject: nested',
  'Content-Type: multipart/mixed; boundary="outer"',
  '',
  'This is the preamble.',
  '--outer',
  'Content-Type: multipart/alternative; boundary=alt',
  '',
  '--alt',
  'Content-Type: text/plain; charset=utf-8',
  '',
  'plain text',
  '--alt',
  'Content-Type: multipart/related; boundary="rel"; type="text/html"',
  '',
  '--rel',
  'Content-Type: text/html; charset=utf-8',
  '',
  '<p>html</p>',
  '',
  '--rel',
  'Content-Type: image/png',
  'Content-ID: <img1@example.com>',
  'Content-Transfer-Encoding: base64',
  '',
  'iVBORw0KGgo=',
  '--rel--',
  '--alt--',
  '',
  '--outer',
  'Content-Type: application/pdf;',
  " name*0*=utf-8''%E2%82%AC%20; name*1*=r%C3%A9sum%C3%A9; name*2=\".pdf\"",
  'Content-Disposition: attachment; filename*=iso-8859-1\'fr\'r%E9sum%E9.pdf; size=12',
  'Content-Transfer-Encoding: BASE64',
  'Content-Description: the report',
  'Content-Language: fr, en-GB',
  'Content-Location: http://example.com/r.pdf',
  'Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==',
  '',
  'JVBERi0=',
  '--outer--',
  'The epilogue.',
  ''
]

const CASES: Case[] = [
  {
    name: 'single text part',
    rows: ['Subject: hi', '', 'hello', 'world', ''],
    shape: 'text/plain',
    headers: { '': ['Subject: hi', '', ''] },
    bodies: { '': ['hello', 'world', ''], 1: ['hello', 'world', ''] },
    check: (p) => {
      assert.deepEqual(p('').params, [['charset', 'us-ascii']])
      assert.equal(p('').lines, 2)
      assert.equal(p('').encoding, '7bit')
    }
  },
  {
    name: 'header only, no blank line',
    rows: ['Subject: no body', 'From: x@y'],
    shape: 'text/plain',
    headers: { '': ['Subject: no body', 'From: x@y'] },
    bodies: { '': [''] },
    check: (p) => assert.equal(p('').lines, 0)
  },
  { name: 'empty message', rows: [''], shape: 'text/plain', headers: { '': [''] }, bodies: { '': [''] } },
  { name: 'blank line only', rows: ['', ''], shape: 'text/plain', headers: { '': ['', ''] }, bodies: { '': [''] } },
  { name: 'body without header', rows: ['', 'just a body'], shape: 'text/plain', bodies: { '': ['just a body'] } },
  {
    name: 'nested mixed, alternative, related and an RFC 2231 attachment',
    rows: NESTED,
    shape: 'multipart/mixed(multipart/alternative(text/plain,multipart/related(text/html,image/png)),application/pdf)',
    headers: {
      '1.1': ['Content-Type: text/plain; charset=utf-8', '', ''],
      '1.2.2': ['Content-Type: image/png', 'Content-ID: <img1@example.com>', 'Content-Transfer-Encoding: base64', '', '']
    },
    bodies: {
      1: ['--alt', 'Content-Type: text/plain; charset=utf-8', '', 'plain text', '--alt',
        'Content-Type: multipart/related; boundary="rel"; type="text/html"', '', '--rel', 'Content-Type: text/html; charset=utf-8', '',
        '<p>html</p>', '', '--rel', 'Content-Type: image/png', 'Content-ID: <img1@example.com>', 'Content-Transfer-Encoding: base64', '',
        'iVBORw0KGgo=', '--rel--', '--alt--', ''],
      1.1: ['plain text'],
      '1.2.1': ['<p>html</p>', ''],
      '1.2.2': ['iVBORw0KGgo='],
      2: ['JVBERi0=']
    },
    check: (p) => {
      assert.deepEqual(p('1.2').params, [['boundary', 'rel'], ['type', 'text/html']])
      assert.equal(p('1.2.2').id, '<img1@example.com>')
      assert.equal(p('1.1').lines, 1)
      assert.equal(p('1.2.1').lines, 1)
      const pdf = p('2')
      assert.deepEqual(pdf.params, [['name*', "utf-8''%E2%82%AC%20r%C3%A9sum%C3%A9.pdf"]])
      assert.equal(paramValue(pdf.params, 'name'), '€ résumé.pdf')
      assert.deepEqual(pdf.disposition, ['attachment', [['filename*', "iso-8859-1'fr'r%E9sum%E9.pdf"], ['size', '12']]])
      assert.equal(paramValue(pdf.disposition?.[1] ?? [], 'filename'), 'résumé.pdf')
      assert.equal(pdf.encoding, 'base64')
      assert.equal(pdf.description, 'the report')
      assert.deepEqual(pdf.language, ['fr', 'en-GB'])
      assert.equal(pdf.location, 'http://example.com/r.pdf')
      assert.equal(pdf.md5, 'Q2hlY2sgSW50ZWdyaXR5IQ==')
      assert.equal(pdf.lines, 0)
    }
  },
  {
    name: 'message/rfc822 inside multipart',
    rows: [
      'Subject: fwd', 'Content-Type: multipart/mixed; boundary=b1', '',
      '--b1', '', 'see attached', '--b1', 'Content-Type: message/rfc822', 'Content-Disposition: inline', '',
      'Subject: inner', 'From: Inner <in@example.com>', 'Content-Type: multipart/alternative; boundary=b2', '',
      '--b2', 'Content-Type: text/plain', '', 'inner plain', '--b2', 'Content-Type: text/html', '', '<b>inner</b>', '--b2--', '',
      '--b1--', ''
    ],
    shape: 'multipart/mixed(text/plain,message/rfc822[multipart/alternative(text/plain,text/html)])',
    headers: {
      1: ['', ''],
      '2.1': ['Content-Type: text/plain', '', '']
    },
    bodies: {
      1: ['see attached'],
      2: ['Subject: inner', 'From: Inner <in@example.com>', 'Content-Type: multipart/alternative; boundary=b2', '',
        '--b2', 'Content-Type: text/plain', '', 'inner plain', '--b2', 'Content-Type: text/html', '', '<b>inner</b>', '--b2--', ''],
      2.1: ['inner plain'],
      2.2: ['<b>inner</b>']
    },
    check: (p) => {
      const m = p('2')
      assert.equal(m.message?.envelope.subject, 'inner')
      assert.deepEqual(m.message?.envelope.from, [{ name: 'Inner', adl: null, mailbox: 'in', host: 'example.com' }])
      assert.equal(m.lines, 13)
      assert.deepEqual(m.disposition, ['inline', []])
    }
  },
  {
    name: 'multipart/digest defaults to message/rfc822',
    rows: ['Content-Type: multipart/digest; boundary=d', '', '--d', '', 'Subject: one', '', 'first', '--d',
      'Content-Type: text/plain', '', 'not a message', '--d--'],
    shape: 'multipart/digest(message/rfc822[text/plain],text/plain)',
    bodies: { 1: ['Subject: one', '', 'first'], 1.1: ['first'], 2: ['not a message'] }
  },
  {
    name: 'boundary with trailing blanks, close delimiter with padding',
    rows: ['Content-Type: multipart/mixed; boundary=XX', '', '--XX  \t', '', 'a', '--XX', '', 'b', '--XX--   anything', 'epilogue'],
    shape: 'multipart/mixed(text/plain,text/plain)',
    bodies: { 1: ['a'], 2: ['b'] }
  },
  {
    name: 'boundary never closed: last part runs to the end',
    rows: ['Content-Type: multipart/mixed; boundary=XX', '', '--XX', '', 'a', '--XX', '', 'b', 'c', ''],
    shape: 'multipart/mixed(text/plain,text/plain)',
    bodies: { 1: ['a'], 2: ['b', 'c', ''] }
  },
  {
    name: 'a longer line is not the boundary',
    rows: ['Content-Type: multipart/mixed; boundary=XX', '', '--XX', '', 'a', '--XXY', '-- XX', ' --XX', '--XX', '', 'b', '--XX--'],
    shape: 'multipart/mixed(text/plain,text/plain)',
    bodies: { 1: ['a', '--XXY', '-- XX', ' --XX'], 2: ['b'] }
  },
  {
    name: 'multipart without boundary parameter is a basic part',
    rows: ['Content-Type: multipart/mixed', '', '--XX', '', 'a', '--XX--'],
    shape: 'multipart/mixed',
    bodies: { '': ['--XX', '', 'a', '--XX--'], 1: ['--XX', '', 'a', '--XX--'] }
  },
  {
    name: 'multipart with no delimiter has no parts',
    rows: ['Content-Type: multipart/mixed; boundary=XX', '', 'only a preamble', ''],
    shape: 'multipart/mixed()'
  },
  {
    name: 'outer boundary closes an unclosed inner multipart',
    rows: ['Content-Type: multipart/mixed; boundary=out', '', '--out', 'Content-Type: multipart/alternative; boundary=in', '',
      '--in', '', 'x', '--out', '', 'y', '--out--'],
    shape: 'multipart/mixed(multipart/alternative(text/plain),text/plain)',
    bodies: { 1: ['--in', '', 'x'], 1.1: ['x'], 2: ['y'] }
  },
  {
    name: 'the same boundary nested: the innermost wins',
    rows: ['Content-Type: multipart/mixed; boundary=same', '', '--same', 'Content-Type: multipart/alternative; boundary=same', '',
      '--same', '', 'x', '--same--', '--same', '', 'y', '--same--'],
    shape: 'multipart/mixed(multipart/alternative(text/plain),text/plain)',
    bodies: { 1.1: ['x'], 2: ['y'] }
  },
  {
    name: 'consecutive delimiters make an empty part; a header may run into a boundary',
    rows: ['Content-Type: multipart/mixed; boundary=XX', '', '--XX', '--XX', 'Content-Type: text/html', '--XX', '', 'z', '--XX--'],
    shape: 'multipart/mixed(text/plain,text/html,text/plain)',
    headers: { 1: [''], 2: ['Content-Type: text/html'] },
    bodies: { 1: [''], 2: [''], 3: ['z'] }
  },
  {
    name: 'delimiter straight after the header, no preamble; empty epilogue',
    rows: ['Content-Type: multipart/mixed; boundary=XX', '', '--XX', 'Content-Type: text/plain', '', 'a', '--XX--'],
    shape: 'multipart/mixed(text/plain)',
    bodies: { '': ['--XX', 'Content-Type: text/plain', '', 'a', '--XX--'], 1: ['a'] }
  },
  {
    name: 'base64 on a multipart hides the structure',
    rows: ['Content-Type: multipart/mixed; boundary=XX', 'Content-Transfer-Encoding: base64', '', '--XX', '', 'a', '--XX--'],
    shape: 'multipart/mixed'
  },
  {
    name: 'invalid Content-Type means text/plain; us-ascii, first of duplicates wins',
    rows: ['Content-Type: garbage', 'Content-Type: text/html', '', 'x'],
    shape: 'text/plain',
    check: (p) => assert.deepEqual(p('').params, [['charset', 'us-ascii']])
  },
  {
    name: 'content type with comments, odd case and a missing semicolon',
    rows: ['Content-Type: (c) TEXT / HTML (c) ; CHARSET = "ISO-8859-1" (Latin) ; format=flowed x=1', '', 'x'],
    shape: 'text/html',
    check: (p) => assert.deepEqual(p('').params, [['charset', 'ISO-8859-1'], ['format', 'flowed x=1']])
  },
  {
    // RFC 3501 6.4.5: a non-multipart message's part 1 is its body, here the encapsulated message whole; as a
    // message/rfc822 part, 1 numbers into it (Dovecot's answers to imaptest's fetch-body-message-rfc822 tests)
    name: 'top-level message/rfc822: part 1 is the encapsulated message, 1.n its parts',
    rows: ['Content-Type: message/rfc822', '', 'Subject: in', 'Content-Type: multipart/mixed; boundary=q', '', '--q', '', 'one', '--q', '', 'two', '--q--'],
    shape: 'message/rfc822[multipart/mixed(text/plain,text/plain)]',
    bodies: { 1: ['Subject: in', 'Content-Type: multipart/mixed; boundary=q', '', '--q', '', 'one', '--q', '', 'two', '--q--'], '1.1': ['one'], '1.2': ['two'] }
  },
  {
    name: 'top-level message/rfc822 around a single part',
    rows: ['Content-Type: message/rfc822', '', 'Subject: in', '', 'inner'],
    shape: 'message/rfc822[text/plain]',
    bodies: { 1: ['Subject: in', '', 'inner'], '1.1': ['inner'] }
  },
  {
    name: '8-bit body and UTF-8 header (RFC 6532)',
    rows: ['Subject: Grüße aus Köln', 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: 8bit', '', 'Grüße ✓', ''],
    shape: 'text/plain',
    bodies: { '': ['Grüße ✓', ''] },
    check: (p) => assert.equal(p('').encoding, '8bit')
  }
]

const byPath = (meta: ReturnType<typeof analyzeMessage>) => (path: string): MimePart => {
  const part = findPart(meta, path === '' ? [] : path.split('.').map(Number))
  assert.ok(part !== null, `no part ${path}`)
  return part
}

for (const eol of ['\r\n', '\n']) {
  const label = eol === '\n' ? 'LF' : 'CRLF'
  for (const c of CASES) {
    test(`${c.name} (${label})`, () => {
      const raw = msg(c.rows, eol)
      const meta = analyzeMessage(raw)
      validate(meta, raw)
      assert.equal(shape(meta.root), c.shape)
      const part = byPath(meta)
      for (const [path, rows] of Object.entries(c.headers ?? {})) {
        assert.equal(header(raw, part(path)), Buffer.from(rows.join(eol)).toString('latin1'), `header of ${path}`)
      }
      for (const [path, rows] of Object.entries(c.bodies ?? {})) {
        assert.equal(body(raw, part(path)), Buffer.from(rows.join(eol)).toString('latin1'), `body of ${path}`)
      }
      c.check?.(part)
    })
  }
}

test('envelope: raw values, unfolded; sender and reply-to default to from', () => {
  const raw = msg([
    'Date: Tue, 1 Apr 2025 10:00:00 +0000',
    'Subject: =?UTF-8?B?R3LDvMOfZQ==?=',
    '  and more',
    'From: =?ISO-8859-1?Q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>',
    'Reply-To:',
    'To: undisclosed-recipients:;',
    'Cc: A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;, Mary <mary@x.test>',
    'BCC: <@relay1.test,@relay2.test:route@final.test>',
    'In-Reply-To: <parent@example.com>',
    'Message-ID:',
    ' <id@example.com>',
    'Subject: second subject is ignored',
    '', 'body'
  ])
  const { envelope } = analyzeMessage(raw)
  const from = [{ name: '=?ISO-8859-1?Q?Andr=E9?= Pirard', adl: null, mailbox: 'PIRARD', host: 'vm1.ulg.ac.be' }]
  assert.deepEqual(envelope, {
    date: 'Tue, 1 Apr 2025 10:00:00 +0000',
    subject: '=?UTF-8?B?R3LDvMOfZQ==?=  and more',
    from,
    sender: from,
    replyTo: from,
    to: [{ name: null, adl: null, mailbox: 'undisclosed-recipients', host: null }, { name: null, adl: null, mailbox: null, host: null }],
    cc: [
      { name: null, adl: null, mailbox: 'A Group', host: null },
      { name: 'Ed Jones', adl: null, mailbox: 'c', host: 'a.test' },
      { name: null, adl: null, mailbox: 'joe', host: 'where.test' },
      { name: 'John', adl: null, mailbox: 'jdoe', host: 'one.test' },
      { name: null, adl: null, mailbox: null, host: null },
      { name: 'Mary', adl: null, mailbox: 'mary', host: 'x.test' }
    ],
    bcc: [{ name: null, adl: '@relay1.test,@relay2.test', mailbox: 'route', host: 'final.test' }],
    inReplyTo: '<parent@example.com>',
    messageId: '<id@example.com>'
  })
})

test('envelope: 8-bit header bytes are UTF-8 when valid, Latin-1 otherwise', () => {
  const utf8 = analyzeMessage(Buffer.from('Subject: Grüße\r\nFrom: Jörg <j@x.de>\r\n\r\n', 'utf8')).envelope
  assert.equal(utf8.subject, 'Grüße')
  assert.equal(utf8.from?.[0].name, 'Jörg')
  const latin = analyzeMessage(Buffer.from('Subject: Gr\xfc\xdfe\xa0\r\n\r\n', 'latin1')).envelope
  assert.equal(latin.subject, 'Grüße\u00a0')
  // Decided per field: a stray Latin-1 byte in another field leaves a UTF-8 subject intact.
  const mixed = Buffer.concat([Buffer.from('X-Junk: \xe9\r\n', 'latin1'), Buffer.from('Subject: Grüße\r\n\r\n', 'utf8')])
  assert.equal(analyzeMessage(mixed).envelope.subject, 'Grüße')
  assert.deepEqual(headerFields(mixed, 0, mixed.length).map(f => f.value), ['é', 'Grüße'])
})

test('an 8-bit boundary is matched as the bytes it was written with', () => {
  for (const encoding of ['utf8', 'latin1'] as const) {
    const raw = msg(['Content-Type: multipart/mixed; boundary="bé"', '', '--bé', '', 'one', '--bé', '', 'two', '--bé--'], '\r\n', encoding)
    const meta = analyzeMessage(raw)
    assert.equal(shape(meta.root), 'multipart/mixed(text/plain,text/plain)', encoding)
    assert.equal(body(raw, meta.root.parts?.[1] as MimePart), 'two')
  }
})

test('headerFields: names as written, values unfolded, spans slice the raw field', () => {
  for (const eol of ['\r\n', '\n']) {
    const raw = msg(['X-One: a', 'not a header line', 'Subject:  split', '\tacross lines ', 'x-two : b', '', 'Body: no'], eol)
    const meta = analyzeMessage(raw)
    const fields = headerFields(raw, meta.root.headerStart, meta.root.headerEnd)
    assert.deepEqual(fields.map(f => [f.name, f.value]), [['X-One', 'a'], ['Subject', 'split\tacross lines'], ['x-two', 'b']])
    assert.equal(raw.subarray(fields[1].start, fields[1].end).toString(), ['Subject:  split', '\tacross lines ', ''].join(eol))
  }
})

test('findPart follows RFC 3501 section 6.4.5 numbering', () => {
  const raw = msg(NESTED)
  const meta = analyzeMessage(raw)
  const at = (path: number[]): string | null => {
    const p = findPart(meta, path)
    return p === null ? null : shape(p)
  }
  assert.equal(at([]), shape(meta.root))
  assert.equal(at([1, 2, 2]), 'image/png')
  assert.equal(at([2]), 'application/pdf')
  assert.equal(at([3]), null)
  assert.equal(at([2, 1]), null)
  assert.equal(at([0]), null)
  assert.equal(at([1.5]), null)
  const single = analyzeMessage(msg(['Subject: x', '', 'y']))
  assert.equal(findPart(single, [1]), single.root)
  assert.equal(findPart(single, [2]), null)
  assert.equal(findPart(single, [1, 1]), null)
})

test('textParts and decodedText: transfer encodings and charsets', () => {
  const raw = msg([
    'Content-Type: multipart/mixed; boundary=b', '',
    '--b', 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: base64', '', Buffer.from('Grüße ✓').toString('base64'),
    '--b', 'Content-Type: text/plain; charset=ISO-8859-1', 'Content-Transfer-Encoding: quoted-printable', '', 'caf=E9 au lait=', ' soft=3D', '',
    '--b', 'Content-Type: text/html; charset=windows-1252', '', Buffer.from([0x93, 0x71, 0x94]).toString('latin1'),
    '--b', 'Content-Type: text/plain; charset=x-unknown-charset', '', 'fallback',
    '--b', 'Content-Type: text/plain; charset=koi8-r', 'Content-Transfer-Encoding: base64', '', Buffer.from([0xf0, 0xd2, 0xc9]).toString('base64'),
    '--b', 'Content-Type: image/png', 'Content-Transfer-Encoding: base64', '', 'AAAA',
    '--b', 'Content-Type: message/rfc822', '', 'Subject: in', '', 'inner text',
    '--b--'
  ], '\r\n', 'latin1')
  const meta = analyzeMessage(raw)
  const texts = textParts(meta).map(p => decodedText(raw, p))
  assert.deepEqual(texts, ['Grüße ✓', 'café au lait soft=\r\n', '\u201cq\u201d', 'fallback', 'При', 'inner text'])
})

test('RFC 2231: continuations joined in section order, plain ones unchanged', () => {
  const raw = msg(['Content-Type: text/plain; title*1=" world"; title*0="hello"; url*0="ftp://"; URL*1="x.test/"; charset*="us-ascii\'en\'abc"', '', 'x'])
  const { params } = analyzeMessage(raw).root
  assert.deepEqual(params, [['title', 'hello world'], ['url', 'ftp://x.test/'], ['charset*', "us-ascii'en'abc"]])
  assert.equal(paramValue(params, 'charset'), 'abc')
  assert.equal(paramValue(params, 'title'), 'hello world')
  assert.equal(paramValue(params, 'missing'), null)
  // A plain section after an extended one is percent-encoded into the one extended value.
  const mixed = analyzeMessage(msg(["Content-Type: a/b; n*0*=utf-8''%C3%A9; n*1=\" 100%\"", '', ''])).root.params
  assert.deepEqual(mixed, [['n*', "utf-8''%C3%A9%20100%25"]])
  assert.equal(paramValue(mixed, 'n'), 'é 100%')
  // RFC 2047 words inside a quoted filename, as many senders write them.
  const rfc2047 = analyzeMessage(msg(['Content-Disposition: attachment; filename="=?UTF-8?Q?r=C3=A9sum=C3=A9.pdf?="', '', ''])).root
  assert.equal(paramValue(rfc2047.disposition?.[1] ?? [], 'filename'), 'résumé.pdf')
})

// SEARCH over a raw socket, key by key: every search key of RFC 3501 section 6.4.4 and RFC 9051 section 6.4.4,
// OR/NOT nesting and parenthesised groups, sequence and UID sets, `$` (RFC 5182 SEARCHRES), ESEARCH return
// options (RFC 4731), MODSEQ (RFC 7162), CHARSET UTF-8 with non-ASCII text in quoted strings and literals,
// RFC 2047 headers (B and Q, UTF-8 and Latin-1), and text in base64 and quoted-printable parts.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, RawImap, richMessage, USER } from './helpers.ts'

const DAY = 24 * 3600 * 1000

function message (lines: string[]): Buffer {
  return Buffer.from(lines.join('\r\n'), 'utf8')
}

const LATIN1_BODY = Buffer.from('Größenwahn in der Straße\r\n', 'latin1').toString('base64')

const MESSAGES: Array<{ raw: Buffer, flags: string[], internalDate: number }> = [
  // 1: nested multipart, RFC 2047 B subject and Q display name, 8-bit and QP text, base64 attachment.
  { raw: richMessage(), flags: [], internalDate: Date.UTC(2026, 0, 10, 12) },
  // 2: a Date: header west of UTC late in the day: written as the 20th, which is the 21st in UTC.
  {
    raw: message(['From: Anna <anna@example.org>', 'To: team@example.com', 'Subject: alpha report', 'Date: Tue, 20 Jan 2026 23:30:00 -0800',
      'X-Priority: 1', '', 'big body '.repeat(400)]),
    flags: ['\\Seen'], internalDate: Date.UTC(2026, 0, 20, 23, 59),
  },
  // 3: Bcc, keywords.
  {
    raw: message(['From: beta@example.org', 'To: alice@example.com', 'Bcc: hidden@example.net', 'Subject: beta', 'Date: Thu, 05 Feb 2026 08:00:00 +0000', '', 'short']),
    flags: ['\\Flagged', 'project-x'], internalDate: Date.UTC(2026, 1, 5),
  },
  // 4: Latin-1 Q-encoded subject, a base64 text part in ISO-8859-1.
  {
    raw: message(['From: cafe@example.org', 'To: alice@example.com', 'Subject: =?ISO-8859-1?Q?Caf=E9_cr=E8me?=', 'Date: Fri, 06 Feb 2026 09:00:00 +0100',
      'MIME-Version: 1.0', 'Content-Type: text/plain; charset=ISO-8859-1', 'Content-Transfer-Encoding: base64', '', LATIN1_BODY, '']),
    flags: ['\\Answered', '\\Draft', '\\Deleted'], internalDate: Date.UTC(2026, 1, 6),
  },
  // 5: a quoted-printable UTF-8 part with a soft line break inside a word, inside multipart/mixed.
  {
    raw: message(['From: zurich@example.org', 'To: alice@example.com', 'Cc: Ünal <uenal@example.com>', 'Subject: travel', 'Date: 7 Feb 2026 10:00:00 GMT',
      'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary=zz', '', '--zz', 'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: quoted-printable', '', 'Z=C3=BCrich ist sch=', '=C3=B6n im Fr=C3=BChling', '--zz--', '']),
    flags: ['$Label'], internalDate: Date.UTC(2026, 1, 7),
  },
]

type TestContext = Parameters<typeof fixture>[0]

async function setup (t: TestContext): Promise<RawImap> {
  const f = await fixture(t)
  for (const m of MESSAGES) await f.store.append(USER, 'INBOX', m)
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(async () => { c.close() })
  await c.login()
  await c.cmd('SELECT INBOX')
  return c
}

/** The numbers of the `* SEARCH` response (the tagged reply must be OK). */
async function search (c: RawImap, program: string): Promise<number[]> {
  const reply = await c.cmd(program.startsWith('UID SEARCH') ? program : `SEARCH ${program}`, 's')
  assert.match(reply, /^s OK/m, `${program}: ${reply}`)
  const line = /^\* SEARCH([\d ]*)/m.exec(reply)
  assert.ok(line, reply)
  return line[1]!.trim() === '' ? [] : line[1]!.trim().split(' ').map(Number)
}

/** A LITERAL+ literal of the UTF-8 bytes of `text`. */
const lit = (text: string): string => `{${Buffer.byteLength(text)}+}\r\n${text}`

test('every RFC 3501 / RFC 9051 search key', async (t) => {
  const c = await setup(t)
  const cases: Array<[string, number[]]> = [
    ['ALL', [1, 2, 3, 4, 5]],
    ['ANSWERED', [4]], ['UNANSWERED', [1, 2, 3, 5]],
    ['DELETED', [4]], ['UNDELETED', [1, 2, 3, 5]],
    ['DRAFT', [4]], ['UNDRAFT', [1, 2, 3, 5]],
    ['FLAGGED', [3]], ['UNFLAGGED', [1, 2, 4, 5]],
    ['SEEN', [2]], ['UNSEEN', [1, 3, 4, 5]],
    ['KEYWORD project-x', [3]], ['KEYWORD PROJECT-X', [3]], ['UNKEYWORD project-x', [1, 2, 4, 5]], ['KEYWORD $Label', [5]],
    // Appended before this node kept a \Recent record of the mailbox: the messages after the last \Seen one are
    // recent for the first session to select it (recent.ts); NEW is RECENT UNSEEN, OLD is NOT RECENT.
    ['NEW', [3, 4, 5]], ['RECENT', [3, 4, 5]], ['OLD', [1, 2]],
    ['BCC hidden', [3]], ['CC carol@example.net', [1]], ['FROM anna', [2]], ['TO team@', [2]],
    ['SUBJECT report', [2]], ['SUBJECT "ALPHA REPORT"', [2]],
    ['HEADER X-Priority 1', [2]], ['HEADER x-priority ""', [2]], ['HEADER Message-ID rich-1', [1]], ['HEADER X-Absent ""', []],
    ['BODY needle-word', [1]], ['BODY "big body"', [2]], ['BODY Subject', []],
    ['TEXT carol@example.net', [1]], ['TEXT "inner message"', [1]], ['TEXT short', [3]], ['TEXT X-Priority', [2]],
    ['LARGER 2000', [2]], ['SMALLER 200', [3]], ['SMALLER 134', [3]], ['SMALLER 133', []], ['LARGER 133', [1, 2, 4, 5]],
    // Internal dates (UTC, as INTERNALDATE is written): time of day and zone disregarded.
    ['BEFORE 20-Jan-2026', [1]], ['ON 20-Jan-2026', [2]], ['SINCE 5-Feb-2026', [3, 4, 5]], ['SINCE 05-FEB-2026', [3, 4, 5]],
    // Date: headers compared by the day they name, as written (message 2 is the 21st in UTC).
    ['SENTON 20-Jan-2026', [2]], ['SENTBEFORE 3-Feb-2026', [1, 2]], ['SENTSINCE 6-Feb-2026', [4, 5]], ['SENTON 7-Feb-2026', [5]],
    ['1', [1]], ['2:4', [2, 3, 4]], ['*', [5]], ['4:*', [4, 5]], ['1,3,5', [1, 3, 5]], ['5:3', [3, 4, 5]],
    ['UID 2', [2]], ['UID 3:*', [3, 4, 5]], ['UID 1,5', [1, 5]], ['UID 999', []],
    ['NOT SEEN', [1, 3, 4, 5]], ['NOT NOT SEEN', [2]],
    ['OR SEEN FLAGGED', [2, 3]], ['OR OR SEEN FLAGGED DELETED', [2, 3, 4]], ['OR SEEN (FLAGGED KEYWORD project-x)', [2, 3]],
    ['NOT OR SEEN FLAGGED', [1, 4, 5]], ['OR NOT SEEN NOT UNSEEN', [1, 2, 3, 4, 5]],
    ['(UNSEEN UNDELETED) SINCE 1-Feb-2026', [3, 5]], ['((((UNSEEN))))', [1, 3, 4, 5]],
    ['UNSEEN 1:3 NOT FLAGGED', [1]], ['OR 1 UID 5 UNSEEN', [1, 5]], ['NOT (OR 1:2 OR 3 4)', [5]], ['NOT (1:2 OR 3 4)', [1, 2, 3, 4, 5]],
    ['ALL ALL SEEN', [2]], ['seen', [2]], ['sUbJeCt BETA', [3]],
  ]
  for (const [program, expected] of cases) assert.deepEqual(await search(c, program), expected, program)
  assert.deepEqual(await search(c, 'UID SEARCH UID 2:4 NOT 3'), [2, 4])
  for (const bad of ['FROB', 'BEFORE 2026-01-01', 'LARGER x', 'OR SEEN', 'NOT', '()', 'HEADER', 'UID x', '0:3', 'SUBJECT']) {
    assert.match(await c.cmd(`SEARCH ${bad}`, 'b'), /^b BAD/m, bad)
  }
})

test('CHARSET UTF-8 and non-ASCII text: RFC 2047 headers, 8-bit, base64 and quoted-printable parts', async (t) => {
  const c = await setup(t)
  const cases: Array<[string, number[]]> = [
    [`CHARSET UTF-8 SUBJECT ${lit('Köln')}`, [1]], // RFC 2047 B, UTF-8
    [`CHARSET UTF-8 SUBJECT ${lit('GRÜSSE')}`, []], // no Unicode full case folding of ß
    [`CHARSET UTF-8 SUBJECT ${lit('grüße')}`, [1]],
    [`CHARSET UTF-8 SUBJECT ${lit('café crème')}`, [4]], // RFC 2047 Q, ISO-8859-1, with _ for space
    [`CHARSET UTF-8 FROM ${lit('jörg')}`, [1]], // RFC 2047 Q display name
    [`CHARSET UTF-8 CC ${lit('Ünal')}`, [5]], // raw UTF-8 header (RFC 6532)
    [`CHARSET UTF-8 BODY ${lit('wält')}`, [1]], // 8-bit text and QP html of the same message
    [`CHARSET UTF-8 BODY ${lit('STRASSE')}`, []],
    [`CHARSET UTF-8 BODY ${lit('straße')}`, [4]], // base64 in ISO-8859-1
    [`CHARSET UTF-8 BODY ${lit('größenwahn')}`, [4]],
    [`CHARSET UTF-8 BODY ${lit('schön im')}`, [5]], // QP soft line break inside a word
    [`CHARSET UTF-8 TEXT ${lit('zürich')}`, [5]],
    [`CHARSET UTF-8 TEXT ${lit('café')}`, [4]], // TEXT searches decoded headers too
    ['CHARSET UTF-8 SUBJECT "Köln"', [1]], // UTF-8 in a quoted string
    ['CHARSET US-ASCII SUBJECT travel', [5]],
    [`SUBJECT ${lit('köln')}`, [1]], // RFC 9051: UTF-8 without CHARSET
    [`OR SUBJECT ${lit('köln')} BODY ${lit('frühling')}`, [1, 5]],
  ]
  for (const [program, expected] of cases) assert.deepEqual(await search(c, program), expected, program)
  assert.match(await c.cmd('SEARCH CHARSET KOI8-R SUBJECT x', 'b1'), /^b1 NO \[BADCHARSET \(UTF-8 US-ASCII\)\]/m)
})

test('ESEARCH return options, SEARCHRES $ and MODSEQ', async (t) => {
  const c = await setup(t)
  const esearch = async (program: string): Promise<string> => {
    const reply = await c.cmd(program, 'e')
    assert.match(reply, /^e OK/m, reply)
    return /^\* ESEARCH [^\r\n]*/m.exec(reply)?.[0] ?? ''
  }
  assert.equal(await esearch('SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN'), '* ESEARCH (TAG "e") MIN 1 MAX 5 ALL 1,3:5 COUNT 4')
  assert.equal(await esearch('UID SEARCH RETURN () UNSEEN'), '* ESEARCH (TAG "e") UID ALL 1,3:5')
  assert.equal(await esearch('SEARCH RETURN (COUNT) KEYWORD nothing'), '* ESEARCH (TAG "e") COUNT 0')
  assert.equal(await esearch('SEARCH RETURN (MIN) KEYWORD nothing'), '* ESEARCH (TAG "e")')

  // SAVE alone: no ESEARCH, `$` holds the result for later commands.
  assert.equal(await esearch('SEARCH RETURN (SAVE) OR FLAGGED SEEN'), '')
  assert.deepEqual(await search(c, '$'), [2, 3])
  assert.deepEqual(await search(c, 'NOT $'), [1, 4, 5])
  assert.deepEqual(await search(c, 'UID SEARCH UID $'), [2, 3])
  assert.match(await c.cmd('FETCH $ (UID)', 'f1'), /\* 2 FETCH \(UID 2\)\r\n\* 3 FETCH \(UID 3\)\r\nf1 OK/)
  assert.match(await c.cmd('UID STORE $ +FLAGS.SILENT (saved)', 'f2'), /^f2 OK/m)
  assert.deepEqual(await search(c, 'KEYWORD saved'), [2, 3])
  // A search may use `$` and replace it at once (RFC 5182 section 2.2).
  assert.equal(await esearch('SEARCH RETURN (SAVE ALL) $ SEEN'), '* ESEARCH (TAG "e") ALL 2')
  assert.deepEqual(await search(c, '$'), [2])
  // With MIN or MAX only, only those are saved (RFC 5182 section 2.4).
  assert.equal(await esearch('SEARCH RETURN (SAVE MIN MAX) UNSEEN'), '* ESEARCH (TAG "e") MIN 1 MAX 5')
  assert.deepEqual(await search(c, '$'), [1, 5])
  // A failed SAVE search empties `$`.
  assert.match(await c.cmd('SEARCH RETURN (SAVE) FROB', 'b'), /^b BAD/m)
  assert.deepEqual(await search(c, '$'), [])

  // MODSEQ turns CONDSTORE on and reports the highest mod-sequence of the result.
  assert.match(await c.cmd('STORE 3 +FLAGS (\\Answered)', 'm1'), /^m1 OK/m)
  const reply = await c.cmd('SEARCH MODSEQ 1', 'm2')
  assert.match(reply, /\* SEARCH 1 2 3 4 5 \(MODSEQ \d+\)/)
  const highest = Number(/\(MODSEQ (\d+)\)/.exec(reply)![1])
  assert.match(await c.cmd(`SEARCH MODSEQ ${highest}`, 'm3'), new RegExp(`\\* SEARCH 3 \\(MODSEQ ${highest}\\)`))
  assert.match(await c.cmd(`SEARCH MODSEQ "/flags/\\\\answered" all ${highest + 1}`, 'm4'), /\* SEARCH\r\n/)
  assert.equal(await esearch(`SEARCH RETURN (COUNT) MODSEQ ${highest}`), `* ESEARCH (TAG "e") COUNT 1 MODSEQ ${highest}`)
})

test('SEARCH in an empty mailbox, then over mail delivered meanwhile', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  await c.login()
  await c.cmd('SELECT Archive')
  assert.deepEqual(await search(c, 'ALL'), [])
  assert.deepEqual(await search(c, '1:*'), [])
  assert.deepEqual(await search(c, 'UID 1:*'), [])
  for (let i = 0; i < 3; i++) await f.store.append(USER, 'Archive', { raw: richMessage(`m${i}`), internalDate: Date.now() - i * DAY })
  assert.deepEqual(await search(c, 'ALL'), [1, 2, 3], 'new messages are announced before the tagged reply, then searchable')
})

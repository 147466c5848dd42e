// SORT and UID SORT (RFC 5256), DISPLAYFROM/DISPLAYTO (RFC 5957), ESORT return options (RFC 5267 section 3) and
// PARTIAL (RFC 9394) over a raw socket; the base subject of RFC 5256 section 2.1, Date: parsing and msg-id reading as
// tables; the node's sort-key cache (keys read once, dropped on expunge, new mail picked up); and a 50,000-message
// mailbox sorted by DATE and SUBJECT and threaded, timed (the times are printed as test diagnostics).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { counting, fixture, PASSWORD, RawImap, USER } from './helpers.ts'
import { python } from '../helpers/client.ts'
import { parseResponses } from './wire.ts'
import { baseSubject } from '../../node/imap/base-subject.ts'
import { messageIds, parseDate, SortKeyCache, sortKeyCacheFor, wantedFields } from '../../node/imap/sort-keys.ts'
import { mime } from '../../store/index.ts'
import { partialSlice } from '../../node/imap/commands/sort.ts'

test('base subject: RFC 5256 section 2.1 steps 1 to 6, and whether a reply or forward mark was removed', () => {
  const table: Array<[string | null, string, boolean]> = [
    [null, '', false],
    ['', '', false],
    ['apple', 'APPLE', false],
    ['Re: apple', 'APPLE', true],
    ['RE: [list] Re: apple', 'APPLE', true],
    ['re:Re:RE: apple', 'APPLE', true],
    ['Re : spaced', 'SPACED', true], // subj-refwd allows white space before the colon
    ['Re[2]: counted', 'COUNTED', true], // and a blob
    ['[list] apple', 'APPLE', false], // step 4: a blob goes when something is left
    ['[list]', '[LIST]', false], // ... and stays when nothing would be
    ['[list]   ', '[LIST]', false],
    ['[a][b] Re: Fwd: x (fwd)', 'X', true],
    ['Fw: test', 'TEST', true],
    ['FWD: test', 'TEST', true],
    ['[Fwd: re: hello]', 'HELLO', true], // step 6
    ['Re: [fwd: [list] x] (fwd)', 'X', true], // step 6 then again from step 2
    ['apple (fwd)', 'APPLE', true], // step 2
    ['apple (fwd) (FWD)  ', 'APPLE', true],
    ['(fwd)', '', true],
    ['\t tabs\tand  spaces ', 'TABS AND SPACES', false], // step 1
    ['Refresh', 'REFRESH', false], // no colon: no subj-refwd
    ['Re: [list]: x', ': X', true],
    // encoded words first; then i;unicode-casemap: upper case, decomposed (NFKD)
    ['=?UTF-8?Q?Re=3A_R=C3=A9sum=C3=A9?=', 'RE\u0301SUME\u0301', true],
    ['=?ISO-8859-1?Q?Caf=E9?= (fwd)', 'CAFE\u0301', true],
    ['RÉSUMÉ', 'RE\u0301SUME\u0301', false],
    ['Straße ｗｉｄｅ', 'STRAßE WIDE', false], // ß has no simple upper case; full-width letters decompose
  ]
  for (const [input, subject, reply] of table) {
    assert.deepEqual(baseSubject(input), { subject, reply }, JSON.stringify(input))
  }
})

test('Date: fields parsed to UTC (RFC 5322 3.3 and the obsolete forms of 4.3); message ids read from fields', () => {
  const dates: Array<[string, number | null]> = [
    ['Tue, 20 Jan 2026 23:30:00 -0800', Date.UTC(2026, 0, 21, 7, 30)],
    ['7 Feb 2026 10:00:00 GMT', Date.UTC(2026, 1, 7, 10)],
    ['Mon, 2 Feb 26 10:00 EST', Date.UTC(2026, 1, 2, 15)],
    ['Mon, 2 Feb 99 10:00:05 +0130 (comment)', Date.UTC(1999, 1, 2, 8, 30, 5)],
    ['Thu, 05 February 2026 08:00:00 +0000', Date.UTC(2026, 1, 5, 8)],
    ['not a date', null],
  ]
  for (const [text, ms] of dates) assert.equal(parseDate(text), ms, text)
  assert.deepEqual(messageIds('<a@b> (comment) <c@d>'), ['a@b', 'c@d'])
  assert.deepEqual(messageIds('<no-at> <@x> <y@>'), [])
  assert.deepEqual(messageIds(' < x@y\r\n > junk'), ['x@y'])
  assert.deepEqual(messageIds('<a@b (note)>'), ['a@b'])
})

test('the fields the keys read are those mime.headerFields reads: folding, 8-bit text, first occurrence, odd line ends', () => {
  const headers = [
    Buffer.from('From: a@b\r\nSubject: one\r\n two\r\n\tthree \r\nsubject: second\r\nDATE : Mon, 2 Feb 2026 10:00 +0000\r\n\r\nBody: no\r\n'),
    Buffer.concat([Buffer.from('Subject: '), Buffer.from('Grüße', 'utf8'), Buffer.from('\r\nTo: '), Buffer.from('Jürgen <j@x>', 'latin1'), Buffer.from('\r\n\r\n')]),
    Buffer.from('X-Long-Field-Name-Here: Subject: no\nReferences: <a@b>\n <c@d>\nIn-Reply-To:<e@f>\nMessage-ID:   <g@h>   \nCc:\n'),
    Buffer.from('Received: from x\r\n\tby y\r\nFrom: x@y'),
  ]
  const wanted = ['cc', 'date', 'from', 'in-reply-to', 'message-id', 'references', 'subject', 'to']
  for (const header of headers) {
    const expected = new Map<string, string>()
    for (const f of mime.headerFields(header, 0, header.length)) {
      const name = f.name.trimEnd().toLowerCase()
      if (wanted.includes(name) && !expected.has(name)) expected.set(name, f.value)
    }
    assert.deepEqual(wantedFields(header), expected, header.toString('latin1'))
  }
})

test('PARTIAL ranges (RFC 9394): positions from the start and from the end, clipped to the result', () => {
  assert.deepEqual(partialSlice({ first: 1, last: 2 }, 5), [0, 2])
  assert.deepEqual(partialSlice({ first: 4, last: 9 }, 5), [3, 5])
  assert.deepEqual(partialSlice({ first: 7, last: 9 }, 5), [5, 5])
  assert.deepEqual(partialSlice({ first: -1, last: -2 }, 5), [3, 5])
  assert.deepEqual(partialSlice({ first: -4, last: -9 }, 5), [0, 2])
  assert.deepEqual(partialSlice({ first: -6, last: -9 }, 5), [0, 0])
})

const DAY = 24 * 3600 * 1000
const FEB = (day: number, hour = 0): number => Date.UTC(2026, 1, day, hour)

function message (lines: string[], body = 'x'): Buffer {
  return Buffer.from([...lines, '', body].join('\r\n'), 'utf8')
}

// Sequence numbers 1 to 5; UIDs 2 to 6 (a first message is expunged, so UIDs and sequence numbers differ).
const MESSAGES: Array<{ raw: Buffer, internalDate: number, flags?: string[] }> = [
  {
    raw: message(['From: "Zed Zulu" <zz@example.org>', 'To: bob@b.example', 'Cc: carol@c.example', 'Subject: Re: apple',
      'Date: Mon, 02 Feb 2026 10:00:00 +0000'], 'a'.repeat(300)),
    internalDate: FEB(10),
  },
  {
    raw: message(['From: anna@example.org', 'To: Xavier <aa@x.example>', 'Subject: banana', 'Date: Sun, 01 Feb 2026 23:00:00 -0200'], 'b'.repeat(10)),
    internalDate: FEB(9),
    flags: ['\\Seen'],
  },
  {
    // no Date: sorts by its internal date
    raw: message([`From: =?UTF-8?B?${Buffer.from('Émile').toString('base64')}?= <mike@example.org>`, 'Subject: [list] Fwd: Apple (fwd)'], 'c'.repeat(5000)),
    internalDate: FEB(1),
  },
  {
    // an unreadable Date: also its internal date
    raw: message(['From: <bob@example.org>', 'To: dave@d.example', 'Cc: "Amy" <amy@a.example>', 'Subject: =?UTF-8?Q?Cherry?=', 'Date: not a date'], 'd'.repeat(1000)),
    internalDate: FEB(5),
  },
  {
    // no From, To or Subject; the same Date: as message 1: the sequence number decides
    raw: message(['Date: Mon, 02 Feb 2026 05:00:00 -0500'], 'e'.repeat(50)),
    internalDate: FEB(7),
  },
]

async function sortFixture (t: { after: (fn: () => void | Promise<void>) => void }): Promise<{ c: RawImap, f: Awaited<ReturnType<typeof fixture>>, port: number }> {
  const f = await fixture(t)
  const gone = await f.store.append(USER, 'INBOX', { raw: message(['Subject: gone']), internalDate: FEB(1) })
  for (const m of MESSAGES) await f.store.append(USER, 'INBOX', { raw: m.raw, internalDate: m.internalDate, flags: m.flags ?? [] })
  const inbox = (await f.store.getMailbox(USER, 'INBOX'))!
  await f.store.expunge(USER, inbox.id, [gone.uid])
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  await c.login()
  await c.cmd('SELECT INBOX')
  return { c, f, port }
}

/** The numbers of the `* SORT` response of a reply. */
function sorted (reply: string): number[] {
  const line = parseResponses(reply).find((r) => r.tag === '*' && r.items[0] === 'SORT')
  assert.ok(line !== undefined, reply)
  return line.items.slice(1).map(Number)
}

/** The items of the `* ESEARCH` response of a reply after its tag correlator, as a name → value map. */
function esearch (reply: string): Map<string, unknown> {
  const line = parseResponses(reply).find((r) => r.tag === '*' && r.items[0] === 'ESEARCH')
  assert.ok(line !== undefined, reply)
  const out = new Map<string, unknown>()
  let i = 2
  if (line.items[i] === 'UID') { out.set('UID', true); i++ }
  for (; i < line.items.length; i += 2) out.set(line.items[i] as string, line.items[i + 1])
  return out
}

test('SORT by every key of RFC 5256 and RFC 5957, REVERSE, several keys, ties by sequence number, UID SORT', async (t) => {
  const { c, f } = await sortFixture(t)
  const cases: Array<[string, number[]]> = [
    // base subjects: APPLE, BANANA, APPLE, CHERRY, '' (empty first; equal ones by sequence number)
    ['(SUBJECT)', [5, 1, 3, 2, 4]],
    // sent dates in UTC: Feb 2 10:00, Feb 2 01:00, (Feb 1 internal), (Feb 5 internal), Feb 2 10:00
    ['(DATE)', [3, 2, 1, 5, 4]],
    ['(REVERSE DATE)', [4, 1, 5, 2, 3]],
    ['(ARRIVAL)', [3, 4, 5, 2, 1]],
    ['(REVERSE ARRIVAL)', [1, 2, 5, 4, 3]],
    // addr-mailbox of the first address: ZZ, ANNA, MIKE, BOB, ''
    ['(FROM)', [5, 2, 4, 3, 1]],
    // display name else addr-spec: ZED ZULU, ANNA@EXAMPLE.ORG, ÉMILE (decoded; E + U+0301 under i;unicode-casemap),
    // BOB@EXAMPLE.ORG, ''
    ['(DISPLAYFROM)', [5, 2, 4, 3, 1]],
    ['(TO)', [3, 5, 2, 1, 4]],
    ['(DISPLAYTO)', [3, 5, 1, 4, 2]],
    ['(CC)', [2, 3, 5, 4, 1]],
    ['(SUBJECT DATE)', [5, 3, 1, 2, 4]],
    ['(SUBJECT REVERSE DATE)', [5, 1, 3, 2, 4]],
    ['(REVERSE SUBJECT ARRIVAL)', [4, 2, 3, 1, 5]],
  ]
  for (const [criteria, expected] of cases) {
    assert.deepEqual(sorted(await c.cmd(`SORT ${criteria} UTF-8 ALL`)), expected, criteria)
  }
  const inbox = (await f.store.getMailbox(USER, 'INBOX'))!
  const sizes = (await f.store.listMessages(USER, inbox.id)).map((r, i) => ({ seq: i + 1, size: r.size }))
  assert.deepEqual(sorted(await c.cmd('SORT (SIZE) UTF-8 ALL')), [...sizes].sort((a, b) => a.size - b.size).map((s) => s.seq))
  // UID SORT answers UIDs (sequence number + 1 here)
  assert.deepEqual(sorted(await c.cmd('UID SORT (DATE) US-ASCII ALL')), [4, 3, 2, 6, 5])
  // the search criteria of SEARCH: FROM matches parsed addresses; flags; sequence sets; UID sets
  assert.deepEqual(sorted(await c.cmd('SORT (SUBJECT) UTF-8 FROM example.org NOT FROM bob')), [1, 3, 2])
  assert.deepEqual(sorted(await c.cmd('SORT (DATE) UTF-8 UNSEEN')), [3, 1, 5, 4])
  assert.deepEqual(sorted(await c.cmd('SORT (DATE) UTF-8 2:4')), [3, 2, 4])
  assert.deepEqual(sorted(await c.cmd('UID SORT (REVERSE DATE) UTF-8 UID 2:4')), [2, 3, 4])
  assert.deepEqual(sorted(await c.cmd('SORT (SUBJECT) UTF-8 SUBJECT apple')), [1, 3])
  // `$`, the result a SEARCH saved (RFC 5182)
  await c.cmd('SEARCH RETURN (SAVE) OR SUBJECT apple SUBJECT cherry')
  assert.deepEqual(sorted(await c.cmd('SORT (REVERSE DATE) UTF-8 $')), [4, 1, 3])
  assert.match(await c.cmd('SORT (DATE) UTF-8 SUBJECT nothing-like-this', 'e1'), /^\* SORT\r\ne1 OK/m)
  // RFC 7162 section 3.1.5: with the MODSEQ criterion the answer carries the highest mod-sequence of what it returns
  const records = await f.store.listMessages(USER, inbox.id)
  const highest = Math.max(...records.map((r) => r.modseq))
  assert.match(await c.cmd('SORT (DATE) UTF-8 MODSEQ 1', 'm1'), new RegExp(`^\\* SORT 3 2 1 5 4 \\(MODSEQ ${highest}\\)\\r\\n`, 'm'))
  const esort = esearch(await c.cmd('SORT RETURN (MIN) (DATE) UTF-8 MODSEQ 1', 'm2'))
  assert.equal(esort.get('MIN'), '3')
  assert.equal(esort.get('MODSEQ'), String(records[2]!.modseq))
})

// Python's imaplib has sort() and thread() (RFC 5256): a real client's view of the same mailbox.
const IMAPLIB = String.raw`
import imaplib, json, sys
m = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))
m.login(sys.argv[2], sys.argv[3])
m.select('INBOX')
out = {'caps': ' '.join(m.capabilities)}
out['sort'] = m.sort('(REVERSE DATE)', 'UTF-8', 'ALL')[1][0].decode()
out['sort_display'] = m.sort('(DISPLAYFROM)', 'UTF-8', 'ALL')[1][0].decode()
out['uid_sort'] = m.uid('SORT', '(SUBJECT DATE)', 'UTF-8', 'FROM', 'example.org')[1][0].decode()
out['thread'] = m.thread('ORDEREDSUBJECT', 'UTF-8', 'ALL')[1][0].decode()
out['uid_thread'] = m.uid('THREAD', 'REFERENCES', 'UTF-8', 'ALL')[1][0].decode()
typ, data = m.sort('(DATE)', 'KOI8-R', 'ALL')
out['badcharset'] = typ + ' ' + data[0].decode()
m.logout()
print(json.dumps(out))
`

test('imaplib sorts and threads: SORT, UID SORT, THREAD, UID THREAD, and the NO for an unknown charset', async (t) => {
  const { port } = await sortFixture(t)
  const result = await python(IMAPLIB, [String(port), USER, PASSWORD])
  assert.equal(result.code, 0, result.stderr)
  const out = JSON.parse(result.stdout) as Record<string, string>
  for (const cap of ['SORT', 'SORT=DISPLAY', 'THREAD=ORDEREDSUBJECT', 'THREAD=REFERENCES', 'ESORT']) assert.ok(out.caps!.split(' ').includes(cap), cap)
  assert.equal(out.sort, '4 1 5 2 3')
  assert.equal(out.sort_display, '5 2 4 3 1')
  // FROM example.org: messages 1 to 4 (UIDs 2 to 5); by subject APPLE (3, then 1 by date), BANANA (2), CHERRY (4)
  assert.equal(out.uid_sort, '4 2 3 5')
  // ORDEREDSUBJECT: APPLE (3 before 1), threads by their first date: 3 (Feb 1), 2 (Feb 2 01:00), 5, 4
  assert.equal(out.thread, '(3 1)(2)(5)(4)')
  // REFERENCES: no references; 1 and 3 share the base subject APPLE and both are replies ("Re:", "Fwd:"), so a dummy
  // holds both (step 5.C), in the place of 3, the earlier
  assert.equal(out.uid_thread, '((4)(2))(3)(6)(5)')
  assert.match(out.badcharset!, /^NO \[BADCHARSET \(UTF-8 US-ASCII\)\]/)
})

test('SORT refuses what RFC 5256 does not allow: BAD for bad criteria, NO [BADCHARSET] for an unknown charset', async (t) => {
  const { c, port } = await sortFixture(t)
  for (const bad of ['SORT (FOO) UTF-8 ALL', 'SORT (REVERSE) UTF-8 ALL', 'SORT (REVERSE REVERSE DATE) UTF-8 ALL', 'SORT () UTF-8 ALL',
    'SORT DATE UTF-8 ALL', 'SORT (DATE) UTF-8', 'SORT (DATE) UTF-8 NOSUCHKEY', 'SORT RETURN (SAVE) (DATE) UTF-8 ALL',
    'SORT RETURN (PARTIAL 1:2 ALL) (DATE) UTF-8 ALL', 'SORT RETURN (PARTIAL 0:2) (DATE) UTF-8 ALL', 'SORT RETURN (PARTIAL 1:-2) (DATE) UTF-8 ALL',
    'THREAD FOO UTF-8 ALL', 'THREAD REFERENCES UTF-8']) {
    assert.match(await c.cmd(bad, 'b'), /^b BAD /m, bad)
  }
  assert.match(await c.cmd('SORT (DATE) KOI8-R ALL', 'n'), /^n NO \[BADCHARSET \(UTF-8 US-ASCII\)\]/m)
  assert.match(await c.cmd('THREAD REFERENCES KOI8-R ALL', 'n'), /^n NO \[BADCHARSET \(UTF-8 US-ASCII\)\]/m)
  const caps = await c.cmd('CAPABILITY')
  for (const cap of ['SORT', 'SORT=DISPLAY', 'THREAD=ORDEREDSUBJECT', 'THREAD=REFERENCES', 'ESORT']) assert.match(caps, new RegExp(` ${cap}[ \\r]`), cap)
  // not before SELECT
  const other = await RawImap.connect(port)
  t.after(() => other.close())
  await other.login()
  assert.match(await other.cmd('SORT (DATE) UTF-8 ALL', 's'), /^s BAD /m)
})

test('ESORT (RFC 5267 section 3): MIN and MAX in sort order, COUNT, ALL as an ordered set; PARTIAL (RFC 9394)', async (t) => {
  const { c } = await sortFixture(t)
  // DATE order: 3 2 1 5 4
  let r = esearch(await c.cmd('SORT RETURN (MIN MAX COUNT) (DATE) UTF-8 ALL', 'x1'))
  assert.equal(r.get('MIN'), '3')
  assert.equal(r.get('MAX'), '4')
  assert.equal(r.get('COUNT'), '5')
  assert.equal(r.has('ALL'), false)
  r = esearch(await c.cmd('SORT RETURN (ALL) (SUBJECT) UTF-8 ALL'))
  assert.equal(r.get('ALL'), '5,1,3,2,4')
  // RETURN () is RETURN (ALL)
  r = esearch(await c.cmd('SORT RETURN () (SUBJECT) UTF-8 ALL'))
  assert.equal(r.get('ALL'), '5,1,3,2,4')
  // UIDs 4 5 6 3 2: an ascending run becomes a range, nothing else does
  r = esearch(await c.cmd('UID SORT RETURN (ALL COUNT) (ARRIVAL) UTF-8 ALL'))
  assert.equal(r.get('UID'), true)
  assert.equal(r.get('ALL'), '4:6,3,2')
  assert.equal(r.get('COUNT'), '5')
  // nothing matched: COUNT 0 and no MIN, MAX or ALL
  r = esearch(await c.cmd('SORT RETURN (MIN MAX ALL COUNT) (DATE) UTF-8 SUBJECT nothing-like-this'))
  assert.deepEqual([...r.keys()], ['COUNT'])
  assert.equal(r.get('COUNT'), '0')
  // PARTIAL: positions in sort order, from the start or from the end
  r = esearch(await c.cmd('SORT RETURN (PARTIAL 1:2) (DATE) UTF-8 ALL'))
  assert.deepEqual(r.get('PARTIAL'), ['1:2', '3,2'])
  r = esearch(await c.cmd('SORT RETURN (PARTIAL -2:-1 COUNT) (DATE) UTF-8 ALL'))
  assert.deepEqual(r.get('PARTIAL'), ['-1:-2', '5,4'])
  assert.equal(r.get('COUNT'), '5')
  r = esearch(await c.cmd('SORT RETURN (PARTIAL 7:9) (DATE) UTF-8 ALL'))
  assert.deepEqual(r.get('PARTIAL'), ['7:9', null])
  r = esearch(await c.cmd('UID SORT RETURN (PARTIAL 2:4) (REVERSE DATE) UTF-8 ALL'))
  assert.deepEqual(r.get('PARTIAL'), ['2:4', '2,6,3'])
})

test('SEARCH RETURN (PARTIAL) (RFC 9394): positions of the ascending result, with COUNT, MIN/MAX, UID, SAVE; BAD with ALL', async (t) => {
  const { c } = await sortFixture(t)
  // five messages, sequence numbers 1 to 5
  let r = esearch(await c.cmd('SEARCH RETURN (PARTIAL 1:2) ALL'))
  assert.deepEqual(r.get('PARTIAL'), ['1:2', '1:2'])
  assert.equal(r.has('ALL'), false)
  r = esearch(await c.cmd('SEARCH RETURN (PARTIAL -1:-3 COUNT) ALL'))
  assert.deepEqual(r.get('PARTIAL'), ['-1:-3', '3:5'])
  assert.equal(r.get('COUNT'), '5')
  r = esearch(await c.cmd('SEARCH RETURN (PARTIAL 4:100 MIN) ALL'))
  assert.deepEqual(r.get('PARTIAL'), ['4:100', '4:5'])
  assert.equal(r.get('MIN'), '1')
  r = esearch(await c.cmd('SEARCH RETURN (PARTIAL 6:9) ALL'))
  assert.deepEqual(r.get('PARTIAL'), ['6:9', null])
  // UID SEARCH: the positions are the same, the answer is in UIDs (the fixture's UIDs are 2 to 6)
  r = esearch(await c.cmd('UID SEARCH RETURN (PARTIAL 2:3) ALL'))
  assert.equal(r.get('UID'), true)
  assert.deepEqual(r.get('PARTIAL'), ['2:3', '3:4'])
  // SAVE keeps what PARTIAL returned: the next FETCH of $ names those two
  assert.match(await c.cmd('SEARCH RETURN (SAVE PARTIAL -1:-2) ALL', 's'), /^s OK/m)
  const fetched = (await c.cmd('FETCH $ (UID)')).split('\r\n').flatMap(l => { const m = /^\* (\d+) FETCH/.exec(l); return m === null ? [] : [Number(m[1])] })
  assert.deepEqual(fetched, [4, 5])
  for (const bad of ['SEARCH RETURN (PARTIAL 1:2 ALL) ALL', 'SEARCH RETURN (PARTIAL 0:2) ALL', 'SEARCH RETURN (PARTIAL) ALL', 'SEARCH RETURN (PARTIAL 1:-2) ALL']) {
    assert.match(await c.cmd(bad, 'b'), /^b BAD /m, bad)
  }
})

test('the sort-key cache: headers read once per message, expunged messages dropped, new mail sorted in', async (t) => {
  const f = await fixture(t)
  for (const m of MESSAGES) await f.store.append(USER, 'INBOX', { raw: m.raw, internalDate: m.internalDate })
  const { store, calls } = counting(f.store)
  const { port } = await f.server({}, store)
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  await c.login()
  await c.cmd('SELECT INBOX')
  const cache = sortKeyCacheFor(store)
  assert.deepEqual(sorted(await c.cmd('SORT (DATE) UTF-8 ALL')), [3, 2, 1, 5, 4])
  assert.equal(calls.get('readHeader'), 5)
  assert.equal(cache.size, 5)
  const before = new Map(calls)
  assert.deepEqual(sorted(await c.cmd('SORT (SUBJECT) UTF-8 ALL')), [5, 1, 3, 2, 4])
  assert.match(await c.cmd('THREAD ORDEREDSUBJECT UTF-8 ALL', 'th'), /^\* THREAD \(3 1\)\(2\)\(5\)\(4\)\r\n/m)
  // from memory: no header, record or structure read
  for (const method of ['readHeader', 'getMeta', 'listMessages', 'getMessages', 'readMessage', 'streamMessage']) {
    assert.equal(calls.get(method) ?? 0, before.get(method) ?? 0, method)
  }
  // another session expunges message 3: the cache drops it when the store reports the expunge
  const other = await RawImap.connect(port)
  t.after(() => other.close())
  await other.login()
  await other.cmd('SELECT INBOX')
  await other.cmd('STORE 3 +FLAGS (\\Deleted)')
  await other.cmd('EXPUNGE')
  assert.equal(cache.size, 4)
  // new mail: keys computed for it alone, once (by the cache's background fill on the append event, or by the SORT)
  const headers = calls.get('readHeader')!
  await f.store.append(USER, 'INBOX', { raw: message(['Subject: aardvark', 'Date: Sat, 31 Jan 2026 00:00:00 +0000']), internalDate: FEB(20) })
  const noop = await c.cmd('NOOP')
  assert.match(noop, /\* 3 EXPUNGE\r\n/)
  assert.match(noop, /\* 5 EXISTS\r\n/)
  assert.deepEqual(sorted(await c.cmd('SORT (DATE) UTF-8 ALL')), [5, 2, 1, 4, 3])
  assert.deepEqual(sorted(await c.cmd('SORT (SUBJECT) UTF-8 ALL')), [4, 5, 1, 2, 3])
  assert.equal(calls.get('readHeader'), headers + 1)
  assert.equal(cache.size, 5)
})

test('the kept sort orders and THREAD answers follow new mail, expunges and flag changes (checked against a model)', async (t) => {
  const f = await fixture(t)
  // the model: every message the mailbox holds, by UID
  const model = new Map<number, { id: number, subject: string, date: number, flagged: boolean }>()
  const add = async (i: number, subject: string, extra: string[] = []): Promise<number> => {
    const date = FEB(1 + (i * 7) % 27, i % 24)
    const { uid } = await f.store.append(USER, 'INBOX', { raw: message([`Subject: ${subject}`, `Date: ${new Date(date).toUTCString()}`, `Message-ID: <k${i}@example.org>`, ...extra]), internalDate: FEB(1) })
    // the base subject (RFC 5256 section 2.1): no reply mark
    model.set(uid, { id: i, subject: subject.replace(/^re: /i, '').toUpperCase(), date, flagged: false })
    return uid
  }
  // 40 messages, subjects in another order than the UIDs', some equal (ties go by UID)
  for (let i = 0; i < 40; i++) await add(i, `topic ${String((i * 11) % 29).padStart(2, '0')}`)
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  await c.login()
  await c.cmd('SELECT INBOX')
  const seqs = (): number[] => [...model.keys()].sort((a, b) => a - b)
  const bySubject = (only: (uid: number) => boolean = () => true): number[] =>
    seqs().filter(only).sort((a, b) => model.get(a)!.subject < model.get(b)!.subject ? -1 : model.get(a)!.subject > model.get(b)!.subject ? 1 : a - b)
  const byReverseDate = (): number[] => seqs().sort((a, b) => model.get(b)!.date - model.get(a)!.date || a - b)
  const seqOf = (uid: number): number => seqs().indexOf(uid) + 1
  const check = async (when: string): Promise<void> => {
    assert.deepEqual(sorted(await c.cmd('UID SORT (SUBJECT) UTF-8 ALL')), bySubject(), `UID SORT (SUBJECT), ${when}`)
    assert.deepEqual(sorted(await c.cmd('SORT (SUBJECT) UTF-8 ALL')), bySubject().map(seqOf), `SORT (SUBJECT), ${when}`)
    assert.deepEqual(sorted(await c.cmd('UID SORT (REVERSE DATE) UTF-8 ALL')), byReverseDate(), `UID SORT (REVERSE DATE), ${when}`)
    assert.deepEqual(sorted(await c.cmd('UID SORT (SUBJECT) UTF-8 FLAGGED')), bySubject((uid) => model.get(uid)!.flagged), `SORT ... FLAGGED, ${when}`)
    // a subset by UID range: the kept order filtered
    const some = seqs().slice(5, 25)
    assert.deepEqual(sorted(await c.cmd(`UID SORT (SUBJECT) UTF-8 UID ${some[0]}:${some[some.length - 1]}`)), bySubject((uid) => some.includes(uid)), `subset, ${when}`)
  }
  await check('first')
  await check('again, from the kept orders')
  // a few new messages (merged into the kept orders), some sorting first, between and last
  for (const [i, subject] of [[40, 'aardvark'], [41, 'topic 13'], [42, 'zebra']] as const) await add(i, subject)
  await c.cmd('NOOP')
  await check('after three new messages')
  // many new messages at once (the orders are sorted anew)
  for (let i = 43; i < 63; i++) await add(i, `topic ${String((i * 5) % 31).padStart(2, '0')}`)
  await c.cmd('NOOP')
  await check('after twenty new messages')
  // flags change (what FLAGGED matches), and another session expunges four messages
  const other = await RawImap.connect(port)
  t.after(() => other.close())
  await other.login()
  await other.cmd('SELECT INBOX')
  const flagged = seqs().filter((_, k) => k % 3 === 0)
  await other.cmd(`UID STORE ${flagged.join(',')} +FLAGS (\\Flagged)`)
  for (const uid of flagged) model.get(uid)!.flagged = true
  const expunged = [seqs()[0]!, seqs()[10]!, seqs()[41]!, seqs()[seqs().length - 1]!]
  await other.cmd(`UID STORE ${expunged.join(',')} +FLAGS (\\Deleted)`)
  await other.cmd('EXPUNGE')
  for (const uid of expunged) model.delete(uid)
  await c.cmd('NOOP')
  await check('after flag changes and four expunges')
  // THREAD: the same question answered again; a reply to a message joins its thread; an expunge renumbers
  const root = seqs()[1]!
  const thread = async (cmd: string): Promise<string> => /^\* THREAD (.*)\r\n/m.exec(await c.cmd(cmd))![1]!
  const before = await thread('UID THREAD REFERENCES UTF-8 ALL')
  assert.equal(await thread('UID THREAD REFERENCES UTF-8 ALL'), before)
  assert.ok(before.includes(`(${root})`), before)
  const reply = await add(100, 'Re: whatever', [`References: <k${model.get(root)!.id}@example.org>`])
  await c.cmd('NOOP')
  const after = await thread('UID THREAD REFERENCES UTF-8 ALL')
  assert.ok(after.includes(`(${root} ${reply})`), after)
  const seqBefore = await thread('THREAD REFERENCES UTF-8 ALL')
  assert.ok(seqBefore.includes(`(${seqOf(root)} ${seqOf(reply)})`), seqBefore)
  // the first message goes: the same UIDs but one, every sequence number above it one lower
  const first = seqs()[0]!
  await other.cmd(`UID STORE ${first} +FLAGS (\\Deleted)`)
  await other.cmd('EXPUNGE')
  model.delete(first)
  await c.cmd('NOOP')
  const seqAfter = await thread('THREAD REFERENCES UTF-8 ALL')
  assert.ok(seqAfter.includes(`(${seqOf(root)} ${seqOf(reply)})`), seqAfter)
  assert.notEqual(seqAfter, seqBefore)
  await check('at the end')
})

test('the sort-key cache is bounded: least recently sorted mailboxes go, a deleted mailbox goes, a new UIDVALIDITY starts over', async (t) => {
  const f = await fixture(t)
  const { store, calls } = counting(f.store)
  const cache = new SortKeyCache(store, { entriesMax: 6 })
  const boxes = new Map<string, { id: string, uidValidity: number, uids: number[] }>()
  for (const [name, count] of [['A', 4], ['B', 4], ['Big', 8]] as const) {
    if (name !== 'A') await f.store.createMailbox(USER, name)
    const uids: number[] = []
    for (let i = 0; i < count; i++) uids.push((await f.store.append(USER, name === 'A' ? 'INBOX' : name, { raw: message([`Subject: ${name} ${count - i}`]) })).uid)
    const box = (await f.store.getMailbox(USER, name === 'A' ? 'INBOX' : name))!
    boxes.set(name, { id: box.id, uidValidity: box.uidValidity, uids })
  }
  const keys = async (name: string, uidValidity?: number): Promise<string[]> => {
    const box = boxes.get(name)!
    return (await cache.keys(USER, box.id, uidValidity ?? box.uidValidity, box.uids)).map((k) => k.subject)
  }
  assert.deepEqual(await keys('A'), ['A 4', 'A 3', 'A 2', 'A 1'])
  assert.equal(cache.size, 4)
  assert.equal(calls.get('subscribe'), 1)
  // B pushes the node past 6 entries: A, the least recently sorted, goes
  await keys('B')
  assert.equal(cache.size, 4)
  const read = calls.get('readHeader')!
  await keys('B')
  assert.equal(calls.get('readHeader'), read, 'B is cached')
  await keys('A')
  assert.equal(calls.get('readHeader'), read + 4, 'A was dropped and is read again')
  // a mailbox larger than the bound: every key is answered, 6 are kept
  assert.deepEqual(await keys('Big'), ['BIG 8', 'BIG 7', 'BIG 6', 'BIG 5', 'BIG 4', 'BIG 3', 'BIG 2', 'BIG 1'])
  assert.equal(cache.size, 6)
  // another UIDVALIDITY for the same mailbox id: nothing of the old one is used
  await keys('Big', 12345)
  assert.equal(calls.get('readHeader'), read + 4 + 8 + 8)
  // Big was the user's only cached mailbox: its subscription ended with it and a new one began
  assert.equal(calls.get('subscribe'), 2)
  // deleting the mailbox drops its entries, and with the user's last mailbox the store subscription
  await f.store.deleteMailbox(USER, 'Big')
  assert.equal(cache.size, 0)
  await keys('A')
  assert.equal(calls.get('subscribe'), 3)
})

const LARGE = 50_000
/** Deliveries in flight at once while filling the mailbox (as test/imap/large-mailbox.test.ts). */
const PARALLEL = 32
const WORDS = ['report', 'lunch', 'release', 'invoice', 'party', 'build', 'meeting', 'review']

test('50,000 messages: SORT by DATE and SUBJECT and THREAD REFERENCES, cold and with the keys cached (timed)', async (t) => {
  const f = await fixture(t)
  // message i: one of 5,000 threads (i % 5000), replying to the message 5,000 before it; dates spread over a year
  // and not in arrival order, so the DATE order is a real permutation
  const subjectOf = (i: number): string => `${WORDS[i % WORDS.length]} ${i % 5000}`
  const dateOf = (i: number): number => Date.UTC(2025, 0, 1) + ((i * 7919) % LARGE) * 600_000
  for (let i = 0; i < LARGE; i += PARALLEL) {
    const batch: Array<Promise<unknown>> = []
    for (let j = i; j < Math.min(LARGE, i + PARALLEL); j++) {
      const lines = [`From: user${j % 97}@example.org`, `Subject: ${j >= 5000 ? 'Re: ' : ''}${subjectOf(j)}`,
        `Date: ${new Date(dateOf(j)).toUTCString().replace('GMT', '+0000')}`, `Message-ID: <m${j}@example.org>`]
      if (j >= 5000) lines.push(`References: <m${j - 5000}@example.org>`)
      batch.push(f.store.deliver(message(lines, `body ${j}`), [{ user: USER, prefix: '' }]))
    }
    await Promise.all(batch)
  }
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  await c.login()
  await c.cmd('SELECT INBOX')
  const inbox = (await f.store.getMailbox(USER, 'INBOX'))!
  const records = await f.store.listMessages(USER, inbox.id)
  // which message got which UID (deliveries ran in parallel), read back from the Message-ID
  const indexOfSeq: number[] = []
  for (const record of records) {
    const header = (await f.store.readHeader!(record))!.toString('latin1')
    indexOfSeq.push(Number(/Message-ID: <m(\d+)@/.exec(header)![1]))
  }
  // wall time, and the CPU time of this process (server and client both run in it), which a loaded machine inflates less
  const cpu: string[] = []
  const timed = async (command: string): Promise<[string, number]> => {
    const start = performance.now()
    const used = process.cpuUsage()
    const reply = await c.cmd(command)
    const spent = process.cpuUsage(used)
    cpu.push(`${command}: ${((spent.user + spent.system) / 1000).toFixed(0)} ms CPU`)
    return [reply, performance.now() - start]
  }
  const [coldDate, coldDateMs] = await timed('SORT (DATE) UTF-8 ALL')
  const [warmDate, warmDateMs] = await timed('SORT (DATE) UTF-8 ALL')
  const [subject, subjectMs] = await timed('SORT (SUBJECT) UTF-8 ALL')
  const [threads, threadMs] = await timed('THREAD REFERENCES UTF-8 ALL')
  const [esort, esortMs] = await timed('SORT RETURN (MIN MAX COUNT) (REVERSE DATE) UTF-8 ALL')
  t.diagnostic(`SORT (DATE) cold ${coldDateMs.toFixed(0)} ms, warm ${warmDateMs.toFixed(0)} ms; SORT (SUBJECT) warm ${subjectMs.toFixed(0)} ms; ` +
    `THREAD REFERENCES warm ${threadMs.toFixed(0)} ms; ESORT (MIN MAX COUNT) warm ${esortMs.toFixed(0)} ms (wall)`)
  t.diagnostic(cpu.join('; '))
  const expectedDate = [...indexOfSeq.keys()].sort((a, b) => dateOf(indexOfSeq[a]!) - dateOf(indexOfSeq[b]!) || a - b).map((s) => s + 1)
  assert.deepEqual(sorted(coldDate), expectedDate)
  assert.deepEqual(sorted(warmDate), expectedDate)
  const subjectKey = (s: number): string => subjectOf(indexOfSeq[s]!).toUpperCase()
  const expectedSubject = [...indexOfSeq.keys()].sort((a, b) => subjectKey(a) < subjectKey(b) ? -1 : subjectKey(a) > subjectKey(b) ? 1 : a - b).map((s) => s + 1)
  assert.deepEqual(sorted(subject), expectedSubject)
  // 5,000 threads, each a chain of ten messages (every message the only reply to the one 5,000 before it)
  const line = /^\* THREAD (.*)\r\n/m.exec(threads)![1]!
  const chains = line.slice(1, -1).split(')(')
  assert.equal(chains.length, 5000)
  const seqOfIndex = new Map(indexOfSeq.map((index, s) => [index, s + 1]))
  const chainOf = (root: number): string => Array.from({ length: 10 }, (_, k) => seqOfIndex.get(root + k * 5000)).join(' ')
  assert.ok(chains.every((chain) => chain === chainOf(indexOfSeq[Number(chain.split(' ')[0]) - 1]!)))
  const r = esearch(esort)
  assert.equal(r.get('MIN'), String(expectedDate[expectedDate.length - 1]))
  assert.equal(r.get('MAX'), String(expectedDate[0]))
  assert.equal(r.get('COUNT'), String(LARGE))
})

// The HEADER.FIELDS answers FETCH keeps (node/imap/fields-memo.ts): bounded, keyed by the header block (body hash and
// this server's prefix) and the field list, and never an answer for another message or another field list. The
// end-to-end test delivers one body twice with different prefixes, so a memo keyed by the body alone would answer
// the second message with the first one's Received line.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { FieldsMemo, fieldsKey } from '../../node/imap/fields-memo.ts'
import { counting, fixture, RawImap, USER } from './helpers.ts'

test('FieldsMemo: keys by body, prefix and field list; stays within its bytes; the first bodies go first', () => {
  const memo = new FieldsMemo(1000)
  const a = Buffer.from('Subject: a\r\n\r\n')
  const b = Buffer.from('Subject: b\r\n\r\n')
  memo.set('h1', 'P1', fieldsKey(['Subject'], false), a)
  memo.set('h1', 'P2', fieldsKey(['Subject'], false), b)
  assert.equal(memo.get('h1', 'P1', fieldsKey(['SUBJECT'], false)), a, 'names match without regard to case')
  assert.equal(memo.get('h1', 'P2', fieldsKey(['subject'], false)), b)
  assert.equal(memo.get('h1', 'P1', fieldsKey(['Subject'], true)), undefined, '.NOT is another list')
  assert.equal(memo.get('h1', 'P1', fieldsKey(['Subject', 'From'], false)), undefined)
  assert.equal(memo.get('h2', 'P1', fieldsKey(['Subject'], false)), undefined)
  assert.notEqual(fieldsKey(['a', 'b'], false), fieldsKey(['a b'], false), 'names are kept apart in the key')

  // replacing an answer does not count it twice
  const before = memo.bytes
  memo.set('h1', 'P1', fieldsKey(['Subject'], false), a)
  assert.equal(memo.bytes, before)

  // 40 bodies of ~90 bytes each against 1,000 bytes: the oldest bodies leave, the newest stay
  for (let i = 0; i < 40; i++) memo.set(`b${i}`, '', fieldsKey(['x'], false), Buffer.alloc(20, 0x41))
  assert.ok(memo.bytes <= 1000, `${memo.bytes} bytes kept`)
  assert.equal(memo.get('h1', 'P1', fieldsKey(['Subject'], false)), undefined, 'the first body left first')
  assert.notEqual(memo.get('b39', '', fieldsKey(['x'], false)), undefined, 'the newest body is kept')
  assert.equal(memo.get('b0', '', fieldsKey(['x'], false)), undefined)

  // an answer larger than the whole memo is not kept, and does not empty it
  memo.set('big', '', fieldsKey(['x'], false), Buffer.alloc(2000))
  assert.equal(memo.get('big', '', fieldsKey(['x'], false)), undefined)
  assert.notEqual(memo.get('b39', '', fieldsKey(['x'], false)), undefined)
})

test('HEADER.FIELDS answered again from the memo: the same bytes, each message its own prefix, each list its own fields', async (t) => {
  const f = await fixture(t)
  const body = Buffer.from(`From: Ann <ann@example.com>\r\nTo: <${USER}>\r\nSubject: same body\r\nX-Tag: one\r\n\r\nhello\r\n`)
  // one body, delivered twice with different prefixes: the same hash, two header blocks
  await f.store.deliver(body, [{ user: USER, prefix: 'Received: first\r\n' }])
  await f.store.deliver(body, [{ user: USER, prefix: 'Received: second\r\n' }])
  const { store, calls } = counting(f.store)
  const { port } = await f.server({}, store)
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  await c.login()
  await c.cmd('SELECT INBOX')

  const ask = 'UID FETCH 1:2 (BODY.PEEK[HEADER.FIELDS (RECEIVED SUBJECT)] BODY.PEEK[HEADER.FIELDS.NOT (RECEIVED SUBJECT)])'
  const first = await c.cmd(ask, 'a1')
  const expect = (n: number, received: string): RegExp => new RegExp(
    `\\* ${n} FETCH \\(UID ${n} BODY\\[HEADER\\.FIELDS \\(RECEIVED SUBJECT\\)\\] \\{\\d+\\}\\r\\nReceived: ${received}\\r\\nSubject: same body\\r\\n\\r\\n ` +
    `BODY\\[HEADER\\.FIELDS\\.NOT \\(RECEIVED SUBJECT\\)\\] \\{\\d+\\}\\r\\nFrom: Ann <ann@example\\.com>\\r\\nTo: <[^>]+>\\r\\nX-Tag: one\\r\\n\\r\\n\\)`)
  assert.match(first, expect(1, 'first'))
  assert.match(first, expect(2, 'second'))

  // again: both lists answered from the memo, the same bytes, no header copy read
  calls.clear()
  const again = await c.cmd(ask, 'a2')
  assert.equal(calls.get('readHeader') ?? 0, 0, 'both lists answered from the memo')
  assert.equal(again.replace(/a2 OK.*/s, ''), first.replace(/a1 OK.*/s, ''), 'the memo gives the bytes the first FETCH gave')
  // names match without regard to case: the same answers
  calls.clear()
  const lower = await c.cmd('UID FETCH 1:2 (BODY.PEEK[HEADER.FIELDS (received subject)])', 'a3')
  assert.equal(calls.get('readHeader') ?? 0, 0)
  assert.match(lower, /\* 1 FETCH \(UID 1 BODY\[HEADER\.FIELDS \(RECEIVED SUBJECT\)\] \{\d+\}\r\nReceived: first\r\nSubject: same body\r\n\r\n\)/)
  assert.match(lower, /\* 2 FETCH \(UID 2 BODY\[HEADER\.FIELDS \(RECEIVED SUBJECT\)\] \{\d+\}\r\nReceived: second\r\nSubject: same body\r\n\r\n\)/)
  // another list is another answer: read and picked
  calls.clear()
  const other = await c.cmd('UID FETCH 1:2 (BODY.PEEK[HEADER.FIELDS (X-TAG)])', 'a4')
  assert.equal(calls.get('readHeader') ?? 0, 2)
  assert.match(other, /\* 2 FETCH \(UID 2 BODY\[HEADER\.FIELDS \(X-TAG\)\] \{14\}\r\nX-Tag: one\r\n\r\n\)/)

  // a partial of a kept answer is cut from it, not from anything else
  const part = await c.cmd('UID FETCH 2 (BODY.PEEK[HEADER.FIELDS (RECEIVED SUBJECT)]<10.6>)', 'a5')
  assert.match(part, /BODY\[HEADER\.FIELDS \(RECEIVED SUBJECT\)\]<10> \{6\}\r\nsecond\)/)
})

// What FETCH and SEARCH read: whole-message FETCH needs no parsed structure and answers in order while it reads
// ahead (small messages whole, a large one streamed); header SEARCH keys and HEADER.FIELDS are answered from
// the header kept beside the structure without reading message bytes. The store is wrapped in a counting proxy;
// nothing is timed (`npm run bench` measures speed).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { INLINE_LITERAL_BYTES_MAX } from '../../node/imap/commands/fetch.ts'
import { counting, fixture, RawImap, USER } from './helpers.ts'

const MESSAGES = 120 // more than FETCH_READ_AHEAD and SEARCH_CONCURRENCY, fewer than a record batch

const message = (i: number): Buffer => Buffer.from(
  `From: Sender ${i} <s${i}@example.com>\r\nTo: <${USER}>\r\nSubject: message ${i}\r\nDate: Mon, 2 Feb 2026 10:00:00 +0000\r\n\r\n` +
  (i === 7 ? 'L'.repeat(INLINE_LITERAL_BYTES_MAX + 1000) : `body ${i} ${'x'.repeat(i * 37)}`) + '\r\n')

test('whole-message FETCH, header FETCH and header SEARCH read only what they need, in order', async (t) => {
  const f = await fixture(t)
  for (let i = 1; i <= MESSAGES; i++) await f.store.deliver(message(i), [{ user: USER, prefix: `Received: for ${i}\r\n` }])
  const { store, calls } = counting(f.store)
  const { port } = await f.server({}, store)
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  await c.login()
  await c.cmd('SELECT INBOX')

  calls.clear()
  const all = await c.cmd('UID FETCH 1:* (FLAGS BODY.PEEK[])', 'f1')
  assert.equal(calls.get('getMeta') ?? 0, 0, 'BODY[] needs no structure')
  assert.equal(calls.get('streamMessage') ?? 0, 1, 'only the message above the inline size is streamed')
  let at = 0
  for (let i = 1; i <= MESSAGES; i++) {
    const body = `Received: for ${i}\r\n` + message(i).toString()
    const head = `* ${i} FETCH (UID ${i} FLAGS (\\Recent) BODY[] {${Buffer.byteLength(body)}}\r\n`
    const found = all.indexOf(head, at)
    assert.equal(found, at, `message ${i} comes next`)
    at = found + head.length
    assert.equal(all.slice(at, at + body.length), body)
    at += body.length
    assert.equal(all.slice(at, at + 3), ')\r\n')
    at += 3
  }
  assert.match(all.slice(at), /^f1 OK/)

  calls.clear()
  const headers = await c.cmd('UID FETCH 10:12 (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)] BODY.PEEK[HEADER])', 'f2')
  assert.match(headers, /\* 11 FETCH \(UID 11 BODY\[HEADER\.FIELDS \(SUBJECT FROM\)\] \{\d+\}\r\nFrom: Sender 11 <s11@example\.com>\r\nSubject: message 11\r\n\r\n BODY\[HEADER\] \{\d+\}\r\nReceived: for 11\r\nFrom:/)
  assert.equal((calls.get('streamMessage') ?? 0) + (calls.get('readMessage') ?? 0) + (calls.get('getMeta') ?? 0), 0, 'headers come from the kept copy')

  calls.clear()
  // the Received line is the prefix this server added: header keys see it too
  const found = await c.cmd('UID SEARCH OR SUBJECT "message 11" FROM "s12@example" NOT HEADER Received "for 11"', 'f3')
  // ("for 11" is also in "for 110" to "for 119")
  assert.match(found, /^\* SEARCH 12\r\n/)
  assert.equal(calls.get('getMeta') ?? 0, 0, 'header keys need no structure')
  const narrow = await c.cmd('UID SEARCH SUBJECT "message 11" SENTON 2-Feb-2026', 'f4')
  assert.match(narrow, /^\* SEARCH 11 110 111 112 113 114 115 116 117 118 119\r\n/)
  assert.equal((calls.get('streamMessage') ?? 0) + (calls.get('readMessage') ?? 0), 0, 'header keys read no message bytes')

  await c.cmd('UID STORE 3,50,120 +FLAGS.SILENT (\\Flagged)')
  calls.clear()
  const flagged = await c.cmd('SEARCH OR FLAGGED 1:2 NOT DELETED', 'f6')
  assert.match(flagged, /^\* SEARCH 1 2 3 50 120\r\n/)
  assert.equal((calls.get('listMessages') ?? 0) + (calls.get('getMessages') ?? 0), 0, 'flag keys read no record')

  calls.clear()
  const text = await c.cmd('UID SEARCH BODY "body 99 "', 'f5')
  assert.match(text, /^\* SEARCH 99\r\n/)
  assert.ok((calls.get('readMessage') ?? 0) > 0, 'BODY still reads messages')
})

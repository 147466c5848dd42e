// A 50,000-message mailbox selects, and answers FETCH of flags and sparse UID sets, without reading a single
// message body: SELECT works from the index records alone. The store is wrapped in a counting proxy; nothing
// is timed (`npm run bench` measures speed).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { counting, fixture, RawImap, USER } from './helpers.ts'

const MESSAGES = 50_000
/** Deliveries in flight at once while filling the mailbox (bounds memory; the loop is bounded by MESSAGES). */
const PARALLEL = 32
/** How long one command's answer may take: 50,000 FETCH lines on a machine loaded to 50 took more than 10 s. */
const REPLY_MS = 120_000

test('a 50,000-message mailbox SELECTs, FETCHes flags and SEARCHes flags without reading any message body', async (t) => {
  const f = await fixture(t)
  for (let i = 0; i < MESSAGES; i += PARALLEL) {
    const batch: Array<Promise<unknown>> = []
    for (let j = i; j < Math.min(MESSAGES, i + PARALLEL); j++) {
      batch.push(f.store.deliver(Buffer.from(`Subject: m${j}\r\n\r\nbody ${j}\r\n`), [{ user: USER, prefix: '', flags: j % 7 === 0 ? ['\\Seen'] : [] }]))
    }
    await Promise.all(batch)
  }
  // Deliveries run in parallel, so which UID got \Seen is read back rather than assumed.
  const inbox = (await f.store.getMailbox(USER, 'INBOX'))!
  const records = await f.store.listMessages(USER, inbox.id)
  const firstUnseen = records.findIndex((r) => !r.flags.includes('\\Seen')) + 1
  // No \Recent record yet on this node: the messages after the last \Seen one are recent (node/imap/recent.ts).
  const lastSeen = records.findLastIndex((r) => r.flags.includes('\\Seen'))
  const recent = records.length - 1 - lastSeen
  const lastFlags = [...records[records.length - 1]!.flags, ...(recent > 0 ? ['\\Recent'] : [])].join(' ').replace(/\\/g, '\\\\')
  const { store, calls } = counting(f.store)
  const { port } = await f.server({}, store)
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  await c.login()
  const selected = await c.cmd('SELECT INBOX', 's1', REPLY_MS)
  assert.match(selected, /\* 50000 EXISTS\r\n/)
  assert.match(selected, new RegExp(`\\* ${recent} RECENT\\r\\n`))
  assert.match(selected, new RegExp(`\\[UNSEEN ${firstUnseen}\\]`))
  assert.match(selected, /\[UIDNEXT 50001\]/)
  assert.match(selected, /^s1 OK \[READ-WRITE\]/m)
  const sparse = await c.cmd('UID FETCH 1,25000,50000 (FLAGS RFC822.SIZE)', 's2', REPLY_MS)
  assert.equal(sparse.match(/\* \d+ FETCH/g)?.length, 3)
  assert.match(sparse, new RegExp(`\\* 50000 FETCH \\(UID 50000 FLAGS \\(${lastFlags}\\) RFC822\\.SIZE \\d+\\)`))
  const status = await c.cmd('STATUS INBOX (MESSAGES UNSEEN UIDNEXT SIZE)', 's3', REPLY_MS)
  assert.match(status, /MESSAGES 50000 UNSEEN 42857 UIDNEXT 50001 SIZE \d+/)
  const flags = await c.cmd('FETCH 1:* (FLAGS)', 's4', REPLY_MS)
  assert.equal(flags.match(/\* \d+ FETCH /g)?.length, MESSAGES)
  const unseen = await c.cmd('SEARCH RETURN (COUNT) UNSEEN SINCE 1-Jan-2000 NOT KEYWORD $Junk', 's5', REPLY_MS)
  assert.match(unseen, /\* ESEARCH \(TAG "s5"\) COUNT 42857\r\n/)
  assert.equal(calls.get('readMessage') ?? 0, 0, 'no message body was read')
  assert.equal(calls.get('streamMessage') ?? 0, 0, 'no message body was streamed')
  assert.equal(calls.get('getMeta') ?? 0, 0, 'no parsed structure was needed')
  // The sparse UID FETCH used the multi-get, not a range over 50,000 records.
  assert.ok((calls.get('getMessages') ?? 0) >= 1)
})

// SEARCH, FETCH and STORE answer from the message records the store keeps in memory (store/record-cache.ts) once a
// mailbox is in use: a change made through another session, or straight through the store (as a replicated entry
// arrives), must show in the next command of a session that has the mailbox open, never a stale flag or an
// expunged message.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, RawImap, simpleMessage, USER, sessionPair } from './helpers.ts'

test('a session sees flag changes and expunges of another session and of the store at once, not stale kept records', async (t) => {
  const f = await fixture(t)
  for (let i = 1; i <= 30; i++) await f.store.deliver(simpleMessage(`message ${i}`), [{ user: USER, prefix: '' }])
  const inbox = (await f.store.getMailbox(USER, 'INBOX'))!
  const { port } = await f.server()
  const [a, b] = await sessionPair(t, port)
  await a.cmd('SELECT INBOX')
  await b.cmd('SELECT INBOX')
  // A reads the mailbox: from here on its records are kept
  assert.match(await a.cmd('UID FETCH 1:* (FLAGS)'), /\* 30 FETCH \(UID 30 FLAGS \(\\Recent\)\)/)
  assert.match(await a.cmd('UID SEARCH SUBJECT "message 1"'), /\* SEARCH 1 10 11 12 13 14 15 16 17 18 19\r\n/)

  // another session changes flags and expunges
  await b.cmd('UID STORE 5 +FLAGS.SILENT (\\Flagged)')
  await b.cmd('UID STORE 6 +FLAGS.SILENT (\\Deleted)')
  await b.cmd('UID EXPUNGE 6')
  assert.match(await a.cmd('UID SEARCH FLAGGED'), /\* SEARCH 5\r\n/)
  assert.match(await a.cmd('UID SEARCH KEYWORD $x UNFLAGGED'), /\* SEARCH\r\n/)
  const flags = await a.cmd('UID FETCH 4:7 (FLAGS)')
  assert.match(flags, /FETCH \(UID 5 FLAGS \([^)]*\\Flagged[^)]*\)\)/)
  assert.doesNotMatch(flags, /UID 6 FLAGS/, 'the expunged message is not fetched')
  const all = await a.cmd('UID SEARCH ALL')
  assert.doesNotMatch(all, /\* SEARCH .*\b6\b/, 'the expunged message is not found')

  // a change straight through the store (a replicated entry takes that path)
  await f.store.storeFlags(USER, inbox.id, [7], 'add', ['$x'])
  await f.store.expunge(USER, inbox.id, [8])
  assert.match(await a.cmd('UID SEARCH KEYWORD $x'), /\* SEARCH 7\r\n/)
  assert.match(await b.cmd('UID FETCH 7 (FLAGS)'), /UID 7 FLAGS \([^)]*\$x/)
  assert.doesNotMatch(await a.cmd('UID FETCH 8 (FLAGS)'), /UID 8 FLAGS/)
  assert.match(await a.cmd('UID STORE 7 -FLAGS ($x)'), /FETCH \(FLAGS \((\\Recent)?\) UID 7\)/)
  assert.match(await b.cmd('UID SEARCH KEYWORD $x'), /\* SEARCH\r\n/)

  // new mail reaches the kept records too
  await f.store.deliver(simpleMessage('message 31'), [{ user: USER, prefix: '' }])
  assert.match(await a.cmd('UID SEARCH SUBJECT "message 31"'), /\* SEARCH 31\r\n/)
  assert.match(await a.cmd('UID FETCH 31 (FLAGS RFC822.SIZE)'), /UID 31 /)
})

test('header SEARCH answered again from the folded headers it kept: the prefix tells copies of one body apart, encoded words are still decoded', async (t) => {
  const f = await fixture(t)
  const body = simpleMessage('the same body')
  await f.store.deliver(body, [{ user: USER, prefix: 'Received: from alpha\r\n' }])
  await f.store.deliver(body, [{ user: USER, prefix: 'Received: from beta\r\n' }])
  await f.store.deliver(Buffer.from('Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nhi\r\n'), [{ user: USER, prefix: '' }])
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(() => { c.close() })
  await c.login()
  await c.cmd('SELECT INBOX')
  for (let round = 0; round < 3; round++) {
    assert.match(await c.cmd('UID SEARCH HEADER Received "from alpha"'), /\* SEARCH 1\r\n/, `round ${round}`)
    assert.match(await c.cmd('UID SEARCH HEADER Received "from beta"'), /\* SEARCH 2\r\n/, `round ${round}`)
    assert.match(await c.cmd('UID SEARCH SUBJECT "same body"'), /\* SEARCH 1 2\r\n/, `round ${round}`)
    assert.match(await c.cmd('UID SEARCH CHARSET UTF-8 SUBJECT "grüße"'), /\* SEARCH 3\r\n/, `round ${round}`)
    assert.match(await c.cmd('UID SEARCH SUBJECT "nowhere"'), /\* SEARCH\r\n/, `round ${round}`)
  }
})

// The imapflow calls a client application makes, in one session: mailboxOpen, fetch of 1:* with
// { envelope, bodyStructure, flags, uid, internalDate, size }, search, messageMove and idle (woken by a
// delivery from the store, as SMTP delivers).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, flow, richMessage, simpleMessage, USER } from './helpers.ts'

test('imapflow: mailboxOpen, fetch 1:* with envelope and bodyStructure, search, messageMove, idle', async (t) => {
  const f = await fixture(t)
  const dates = [Date.UTC(2026, 0, 5, 8), Date.UTC(2026, 0, 6, 9), Date.UTC(2026, 0, 7, 10)]
  await f.store.deliver(richMessage(), [{ user: USER, prefix: '' }], { internalDate: dates[0] })
  await f.store.deliver(simpleMessage('plain one'), [{ user: USER, prefix: '', flags: ['\\Seen'] }], { internalDate: dates[1] })
  await f.store.deliver(simpleMessage('plain two', 'needle in here\r\n'), [{ user: USER, prefix: '', flags: ['$Tag'] }], { internalDate: dates[2] })
  const { port } = await f.server()
  const client = await flow(t, port)

  const box = await client.mailboxOpen('INBOX')
  assert.equal(box.path, 'INBOX')
  assert.equal(box.exists, 3)
  assert.equal(box.uidNext, 4)
  assert.ok(box.uidValidity > 0n)
  assert.ok(box.permanentFlags?.has('\\*'))

  const fetched = []
  for await (const m of client.fetch('1:*', { envelope: true, bodyStructure: true, flags: true, uid: true, internalDate: true, size: true })) fetched.push(m)
  assert.deepEqual(fetched.map((m) => m.seq), [1, 2, 3])
  assert.deepEqual(fetched.map((m) => m.uid), [1, 2, 3])
  assert.deepEqual(fetched.map((m) => [...m.flags!]), [[], ['\\Seen'], ['$Tag']])
  assert.deepEqual(fetched.map((m) => (m.internalDate as Date).getTime()), dates)
  assert.deepEqual(fetched.map((m) => m.size), [richMessage().length, simpleMessage('plain one').length, simpleMessage('plain two', 'needle in here\r\n').length])
  assert.equal(fetched[0]!.envelope!.subject, 'Grüße aus Köln')
  assert.equal(fetched[0]!.envelope!.from![0]!.name, 'Jörg')
  assert.equal(fetched[0]!.envelope!.cc![0]!.address, 'carol@example.net')
  assert.equal((fetched[0]!.envelope!.date as Date).toISOString(), '2026-02-02T10:00:00.000Z')
  assert.equal(fetched[1]!.envelope!.subject, 'plain one')
  const rich = fetched[0]!.bodyStructure!
  assert.equal(rich.type, 'multipart/mixed')
  assert.deepEqual(rich.childNodes!.map((n) => n.part), ['1', '2', '3'])
  assert.deepEqual(rich.childNodes![0]!.childNodes!.map((n) => [n.part, n.type, n.encoding]), [['1.1', 'text/plain', '8bit'], ['1.2', 'text/html', 'quoted-printable']])
  assert.equal(rich.childNodes![1]!.dispositionParameters!.filename, 'data.bin')
  assert.equal(rich.childNodes![1]!.size, 12)
  assert.equal(rich.childNodes![2]!.type, 'message/rfc822')
  assert.equal(fetched[2]!.bodyStructure!.type, 'text/plain')
  assert.equal(fetched[2]!.bodyStructure!.lineCount, 1)

  assert.deepEqual(await client.search({ seen: false }, { uid: true }), [1, 3])
  assert.deepEqual(await client.search({ body: 'needle in' }), [3])
  assert.deepEqual(await client.search({ or: [{ keyword: '$Tag' }, { subject: 'köln' }] }, { uid: true }), [1, 3])

  const moved = await client.messageMove('2', 'Archive')
  assert.ok(moved)
  assert.equal(moved.destination, 'Archive')
  assert.deepEqual([...moved.uidMap!.entries()], [[2, 1]])
  assert.equal(client.mailbox !== false && client.mailbox.exists, 2)
  assert.equal((await f.store.getMailbox(USER, 'Archive'))!.messages, 1)

  const exists = new Promise<number>((resolve) => client.on('exists', (e: { count: number }) => resolve(e.count)))
  const idle = client.idle()
  await f.store.deliver(simpleMessage('during idle'), [{ user: USER, prefix: '' }])
  const count = await Promise.race([exists, new Promise<number>((_, reject) => setTimeout(() => reject(new Error('no EXISTS while idling')), 5000).unref())])
  assert.equal(count, 3)
  // Any command ends IDLE (imapflow sends DONE first); the new message is then fetchable.
  const last = await client.fetchOne('*', { envelope: true, uid: true })
  assert.ok(last)
  assert.equal(last.uid, 4)
  assert.equal(last.envelope!.subject, 'during idle')
  await idle // IDLE ended cleanly (a failure would reject)
})

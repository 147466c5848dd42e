// RETR without a store read per command: a client walking the maildrop (pipelined) gets every message whole
// and in order while the server reads ahead, and a message another session expunged after login is refused
// from what the store's change events told the session, not from a record read per RETR.

import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { RawClient, USER, fixture, rawLogin } from './helpers.ts'

const f = await fixture({ after })
const MESSAGES = 30 // more than the read-ahead window

const message = (i: number): string => `Subject: m${i}\r\n\r\n${i % 3 === 0 ? '.leading dot\r\n' : ''}body ${i} ${'z'.repeat(i * 91)}\r\n`

test('pipelined RETR of a whole maildrop, and RETR of a message expunged by another session', async () => {
  for (let i = 1; i <= MESSAGES; i++) await f.store.deliver(Buffer.from(message(i)), [{ user: USER, prefix: '' }])
  const { port } = await f.server({ allowPlaintextOnLoopback: true })
  const c = await RawClient.open(port)
  await rawLogin(c)
  const calls = { getMessage: 0 }
  const original = f.store.getMessage.bind(f.store)
  f.store.getMessage = async (...args) => { calls.getMessage++; return await original(...args) }
  after(() => { f.store.getMessage = original })

  c.send(Array.from({ length: MESSAGES }, (_, k) => `RETR ${k + 1}\r\n`).join(''))
  for (let i = 1; i <= MESSAGES; i++) {
    const raw = message(i)
    assert.equal(await c.line(), `+OK ${Buffer.byteLength(raw)} octets`)
    const body = (await c.multiline()).toString()
    assert.equal(body.replace(/^\.\./gm, '.'), raw, `message ${i}`)
  }
  assert.equal(calls.getMessage, 0, 'no record read per RETR')

  // another session (IMAP, here the store directly) expunges message 5 and 6 while this session holds them
  const inbox = (await f.store.getMailbox(USER, 'INBOX'))!
  await f.store.expunge(USER, inbox.id, [5, 6])
  c.send('RETR 5\r\nRETR 7\r\nRETR 6\r\n')
  assert.match(await c.line(), /^-ERR Message was removed by another session/)
  assert.equal(await c.line(), `+OK ${Buffer.byteLength(message(7))} octets`)
  await c.multiline()
  assert.match(await c.line(), /^-ERR Message was removed by another session/)
  c.send('QUIT\r\n')
  assert.match(await c.line(), /^\+OK/)
})

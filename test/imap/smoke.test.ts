// A first conversation over a raw socket: greeting, capabilities, login, select, append, fetch, logout.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, RawImap, simpleMessage } from './helpers.ts'

test('raw conversation', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  assert.match(c.greeting, /^\* OK \[CAPABILITY IMAP4rev1 /)
  assert.match(await c.cmd('CAPABILITY'), /\* CAPABILITY .*STARTTLS.*AUTH=PLAIN/)
  assert.match(await c.cmd('SELECT INBOX'), /BAD SELECT not allowed now/)
  assert.match(await c.login(), /t\d OK \[CAPABILITY /)
  const msg = simpleMessage('first')
  c.client.write(`a1 APPEND INBOX (\\Flagged) {${msg.length}}\r\n`)
  assert.match(await c.client.read((b) => b.includes('\r\n')), /^\+ /)
  const appended = await c.client.cmd(msg.toString('latin1'), (b) => /a1 (OK|NO|BAD)[^\r\n]*\r\n$/.test(b))
  assert.match(appended, /a1 OK \[APPENDUID \d+ 1\]/)
  const selected = await c.cmd('SELECT INBOX')
  assert.match(selected, /\* 1 EXISTS/)
  assert.match(selected, /OK \[READ-WRITE\]/)
  const fetched = await c.cmd('FETCH 1 (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (Subject)] ENVELOPE BODYSTRUCTURE)')
  assert.match(fetched, /\* 1 FETCH \(UID 1 FLAGS \(\\Flagged \\Recent\) RFC822.SIZE \d+ BODY\[HEADER.FIELDS \(SUBJECT\)\] \{18\}\r\nSubject: first\r\n\r\n ENVELOPE/)
  assert.match(await c.cmd('LOGOUT'), /\* BYE/)
})

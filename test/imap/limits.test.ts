// Literal and line limits answered as RFC 7889 (APPENDLIMIT), RFC 7888 (LITERAL+) and RFC 9051 section 7.1
// ask: a literal above the limit is refused with [TOOBIG] before its bytes are read (tagged NO for a
// synchronising literal, after which the session goes on; BAD and BYE for a non-synchronising one, whose bytes
// are already on the way); an overlong line is BAD [TOOBIG] and the end of the session; limits of ours that
// the grammar does not set (tokens, nesting, literals, fetch items, flags, set ranges) are BAD [LIMIT].
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, RawImap, USER } from './helpers.ts'

const APPEND_LIMIT = 1000

async function open (t: Parameters<typeof fixture>[0]): Promise<{ c: RawImap, port: number, f: Awaited<ReturnType<typeof fixture>> }> {
  const f = await fixture(t)
  const { port } = await f.server({ limits: { appendBytesMax: APPEND_LIMIT } })
  const c = await RawImap.connect(port)
  t.after(async () => { c.close() })
  await c.login()
  return { c, port, f }
}

test('APPENDLIMIT is advertised and a synchronising literal above it is refused with NO [TOOBIG] before it is sent', async (t) => {
  const { c, f } = await open(t)
  assert.match(await c.cmd('CAPABILITY'), new RegExp(`APPENDLIMIT=${APPEND_LIMIT}\\b`))
  assert.match(await c.cmd('STATUS INBOX (APPENDLIMIT)'), new RegExp(`APPENDLIMIT ${APPEND_LIMIT}\\)`))
  c.client.write(`a1 APPEND INBOX {${APPEND_LIMIT + 1}}\r\n`)
  assert.match(await c.client.read((b) => /\r\n$/.test(b)), /^a1 NO \[TOOBIG\] /, 'no "+" continuation')
  // The client sends no literal bytes; the session goes on.
  const body = 'Subject: fits\r\n\r\n' + 'x'.repeat(APPEND_LIMIT - 17)
  assert.equal(Buffer.byteLength(body), APPEND_LIMIT)
  assert.match(await c.cmd(`APPEND INBOX {${APPEND_LIMIT}+}\r\n${body}`, 'a2'), /^a2 OK \[APPENDUID \d+ 1\]/m, 'exactly the limit is accepted (LITERAL+)')
  assert.equal((await f.store.getMailbox(USER, 'INBOX'))!.messages, 1)
})

test('a non-synchronising literal above the limit is BAD [TOOBIG], then BYE', async (t) => {
  const { c } = await open(t)
  c.client.write(`a1 APPEND INBOX {${APPEND_LIMIT + 1}+}\r\n${'x'.repeat(100)}`)
  const reply = await c.client.read((b) => b.includes('* BYE'))
  assert.match(reply, /^a1 BAD \[TOOBIG\] /m)
  assert.equal(await c.client.waitClosed(), true)
})

test('the account quota refuses APPEND with NO [OVERQUOTA]', async (t) => {
  const { c, f } = await open(t)
  await f.store.setQuota(USER, { bytes: 100 })
  const body = 'Subject: big\r\n\r\n' + 'y'.repeat(200)
  assert.match(await c.cmd(`APPEND INBOX {${body.length}+}\r\n${body}`, 'q1'), /^q1 NO \[OVERQUOTA\]/m)
  assert.match(await c.cmd('NOOP', 'q2'), /^q2 OK/m)
})

test('an overlong line is BAD [TOOBIG] with its tag, then BYE', async (t) => {
  const { c } = await open(t)
  c.client.write('long1 NOOP ' + 'x'.repeat(70_000) + '\r\n')
  const reply = await c.client.read((b) => b.includes('* BYE'))
  assert.match(reply, /^long1 BAD \[TOOBIG\] Line too long\r\n\* BYE/m)
  assert.equal(await c.client.waitClosed(), true)
})

test('limits of ours are BAD [LIMIT], and the session goes on', async (t) => {
  const { c } = await open(t)
  await c.cmd('SELECT INBOX')
  assert.match(await c.cmd('SEARCH ' + 'ALL '.repeat(10_001), 'l1'), /^l1 BAD \[LIMIT\] Too many tokens/m)
  assert.match(await c.cmd('SEARCH ' + '('.repeat(40) + 'ALL' + ')'.repeat(40), 'l2'), /^l2 BAD \[LIMIT\] Too deeply nested/m)
  assert.match(await c.cmd('FETCH 1 (' + 'UID '.repeat(65).trim() + ')', 'l3'), /^l3 BAD \[LIMIT\] Too many fetch items/m)
  assert.match(await c.cmd('APPEND INBOX (' + Array.from({ length: 129 }, (_, i) => `k${i}`).join(' ') + ') {1+}\r\nx', 'l4'), /^l4 BAD \[LIMIT\] Too many flags/m)
  assert.match(await c.cmd('UID FETCH ' + '1,'.repeat(20_000) + '1 UID', 'l5'), /^l5 BAD \[LIMIT\]/m)
  assert.match(await c.cmd('CREATE ' + 'n'.repeat(1100), 'l6'), /^l6 BAD \[LIMIT\] Mailbox name too long/m)
  assert.match(await c.cmd('NOOP', 'l7'), /^l7 OK/m)
  // Too many literals in one command: the stream carries them already, so this one ends the session.
  c.client.write('l8 SEARCH' + ' TEXT {1+}\r\nx'.repeat(65) + '\r\n')
  const reply = await c.client.read((b) => b.includes('* BYE'))
  assert.match(reply, /^l8 BAD \[LIMIT\] Too many literals/m)
})

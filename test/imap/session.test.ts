// Session rules over a raw socket: state enforcement, authentication paths, the bad-command budget, hostile
// input on a live server, and the RFC 3501 7.4.1 rule that EXPUNGE waits while FETCH/STORE/SEARCH answer.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { deflateRawSync, inflateRawSync, constants as zlib } from 'node:zlib'
import { fixture, flow, PASSWORD, RawImap, simpleMessage, tagged, USER } from './helpers.ts'

test('commands are refused in the wrong state, with the tag', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  assert.match(await c.cmd('FETCH 1 FLAGS', 'x1'), /^x1 BAD FETCH not allowed now/m)
  assert.match(await c.cmd('LIST "" *', 'x2'), /^x2 BAD LIST not allowed now/m)
  await c.login()
  assert.match(await c.cmd('FETCH 1 FLAGS', 'x3'), /^x3 BAD FETCH not allowed now/m)
  assert.match(await c.cmd('LOGIN a b', 'x4'), /^x4 BAD LOGIN not allowed now/m)
  assert.match(await c.cmd('SELECT', 'x5'), /^x5 BAD Syntax: SELECT/m)
  assert.match(await c.cmd('SELECT Nowhere', 'x6'), /^x6 NO \[NONEXISTENT\]/m)
})

test('LOGINDISABLED without TLS off loopback policy; AUTHENTICATE PLAIN with SASL-IR and with a continuation', async (t) => {
  const f = await fixture(t)
  const strict = await f.server({ allowInsecureAuthOnLoopback: false })
  const c = await RawImap.connect(strict.port)
  t.after(() => c.close())
  assert.match(c.greeting, /LOGINDISABLED/)
  assert.match(await c.cmd(`LOGIN ${USER} "${PASSWORD}"`, 'a1'), /^a1 NO \[PRIVACYREQUIRED\]/m)

  const { port } = await f.server()
  const d = await RawImap.connect(port)
  t.after(() => d.close())
  const plain = Buffer.from(`\0${USER}\0${PASSWORD}`).toString('base64')
  assert.match(await d.cmd(`AUTHENTICATE PLAIN ${Buffer.from(`\0${USER}\0wrong`).toString('base64')}`, 'b1'), /^b1 NO \[AUTHENTICATIONFAILED\]/m)
  d.client.write('b2 AUTHENTICATE PLAIN\r\n')
  assert.match(await d.client.read((b) => b.endsWith('\r\n')), /^\+ /)
  assert.match(await d.client.cmd(plain, tagged('b2')), /^b2 OK \[CAPABILITY /m)
  assert.match(await d.cmd('NAMESPACE', 'b3'), /\* NAMESPACE \(\("" "\/"\)\) NIL NIL/)
  // Credentials never reach the log.
  assert.ok(!JSON.stringify(f.logs).includes(PASSWORD))
})

test('a client sending garbage is cut off after the bad-command budget', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server({ limits: { badCommandsMax: 5 } })
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  for (let i = 0; i < 4; i++) assert.match(await c.cmd('FROB', `g${i}`), new RegExp(`^g${i} BAD`, 'm'))
  c.client.write('g9 FROB\r\n')
  assert.match(await c.client.read((b) => b.includes('* BYE')), /\* BYE Too many invalid commands/)
  assert.equal(await c.client.waitClosed(), true)
})

test('hostile input on a live server: deep nesting, NUL, an unfinished literal, an overlong line', async (t) => {
  const f = await fixture(t)
  const { port, server } = await f.server()
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  assert.match(await c.cmd('SEARCH ' + '('.repeat(10_000), 'h1'), /^h1 BAD \[LIMIT\] Too deeply nested/m)
  assert.match(await c.cmd('NOOP\0', 'h2'), /^h2 BAD/m)
  assert.match(await c.cmd('LOGIN {999999}', 'h3'), /^h3 NO \[TOOBIG\]/m, 'before login a big literal is refused before it is sent')
  assert.match(await c.cmd('NOOP', 'h4'), /^h4 OK/m)
  c.client.write('h5 LOGIN {20+}\r\nabc')
  // The literal never finishes; the session holds 3 bytes and stays usable for nothing else.
  assert.equal(server.sessions, 1)
  c.close()

  const d = await RawImap.connect(port)
  t.after(() => d.close())
  d.client.write('x'.repeat(70_000))
  assert.match(await d.client.read((b) => b.includes('* BYE')), /BAD \[TOOBIG\] Line too long[\s\S]*\* BYE/)
  assert.equal(await d.client.waitClosed(), true)
})

test('an EXPUNGE from another session waits until a command that allows it (RFC 3501 7.4.1)', async (t) => {
  const f = await fixture(t)
  for (let i = 1; i <= 3; i++) await f.store.append(USER, 'INBOX', { raw: simpleMessage(`e${i}`) })
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  await c.login()
  await c.cmd('SELECT INBOX')
  const other = await flow(t, port)
  await other.mailboxOpen('INBOX')
  await other.messageFlagsAdd('2', ['\\Deleted'])
  await other.messageDelete('2')
  const fetched = await c.cmd('FETCH 1:* (FLAGS)', 'f1')
  assert.doesNotMatch(fetched, /EXPUNGE/, 'no EXPUNGE while answering FETCH')
  assert.match(fetched, /\* 3 FETCH/, 'sequence numbers are the ones the client knows')
  const searched = await c.cmd('SEARCH ALL', 'f2')
  assert.doesNotMatch(searched, /EXPUNGE/)
  assert.match(searched, /\* SEARCH 1 3\r\n/, "the expunged message no longer matches; the others keep their numbers")
  assert.match(await c.cmd('NOOP', 'f3'), /\* 2 EXPUNGE\r\nf3 OK/)
  assert.match(await c.cmd('FETCH 1:* (UID)', 'f4'), /\* 1 FETCH \(UID 1\)\r\n\* 2 FETCH \(UID 3\)\r\n/)
})

test('COMPRESS=DEFLATE: both directions are compressed after the OK', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  await c.login()
  assert.match(await c.cmd('COMPRESS DEFLATE', 'z1'), /^z1 OK/m)
  const compressed: Buffer[] = []
  const socket = (c.client as unknown as { socket: import('node:net').Socket }).socket
  socket.removeAllListeners('data')
  const reply = new Promise<string>((resolve) => {
    socket.on('data', (chunk: Buffer | string) => {
      compressed.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, 'latin1'))
      const text = inflateRawSync(Buffer.concat(compressed), { finishFlush: zlib.Z_SYNC_FLUSH }).toString()
      if (/z2 OK[^\r\n]*\r\n$/.test(text)) resolve(text)
    })
  })
  socket.write(deflateRawSync(Buffer.from('z2 CAPABILITY\r\n'), { finishFlush: zlib.Z_SYNC_FLUSH }))
  const text = await reply
  assert.match(text, /\* CAPABILITY IMAP4rev1 /)
  assert.doesNotMatch(text, /COMPRESS=DEFLATE/, 'not offered again once active')
})

test('an unexpected exception is "Internal error" with a log id, and the session goes on', async (t) => {
  const f = await fixture(t)
  const failing = new Proxy(f.store, {
    get (target, key, receiver) {
      if (key === 'quota') return async () => { throw new Error('disk on fire at /secret/path') }
      const value = Reflect.get(target, key, receiver)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
  const { port } = await f.server({}, failing)
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  await c.login()
  const reply = await c.cmd('GETQUOTAROOT INBOX', 'q1')
  const match = /^q1 NO \[SERVERBUG\] Internal error[^\r\n]*\[([0-9a-f]+)\]/m.exec(reply)
  assert.ok(match, reply)
  assert.doesNotMatch(reply, /secret|fire/)
  assert.ok(f.logs.some((l) => l.logId === match[1] && l.event === 'imap_internal_error'))
  assert.match(await c.cmd('NOOP', 'q2'), /^q2 OK/m)
})

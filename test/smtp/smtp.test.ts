// SMTP with real clients (nodemailer, Python's smtplib) and raw sockets against a real node: delivery
// byte-identical, recipient and relay checks, submission rules, size and quota answers, hostile input.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import nodemailer from 'nodemailer'
import type { Store } from '../../store/index.ts'
import { python, RawClient } from '../helpers/client.ts'
import { startNode } from '../helpers/node.ts'
import type { TestNode } from '../helpers/node.ts'

async function setup (t: { after: (fn: () => Promise<void>) => void }, overrides = {}): Promise<TestNode & { store: Store }> {
  const n = await startNode(t, overrides)
  const store = n.node.store
  await store.addDomain('example.com')
  await store.addUser({ address: 'bob@example.com', password: 'bobpass' })
  await store.addUser({ address: 'carol@example.com', password: 'carolpass', quotaMessages: 1 })
  await store.addAlias('sales@example.com', ['bob@example.com', 'carol@example.com'])
  return { ...n, store }
}

async function inbox (store: Store, user: string): Promise<Buffer[]> {
  const box = await store.getMailbox(user, 'INBOX')
  assert.ok(box !== null)
  const out: Buffer[] = []
  for (const r of await store.listMessages(user, box.id)) out.push(await store.readMessage(r))
  return out
}

/** The message as the client sent it: what follows our Return-Path and Received lines. */
function withoutTrace (m: Buffer): Buffer {
  const s = m.toString('latin1')
  assert.match(s, /^Return-Path: <[^>]*>\r\nReceived: from [^\r\n]*\r\n\tby mx\.test \(mailgrid\) with [^\r\n]*\r\n\tfor <[^>]+>; [^\r\n]+\r\n/)
  const end = s.indexOf('\r\n', s.indexOf('\tfor <')) + 2
  return m.subarray(end)
}

test('inbound MX: nodemailer delivers byte-identical, aliases fan out once per user', async (t) => {
  const { store, port } = await setup(t)
  const raw = Buffer.concat([
    Buffer.from('From: Alice <alice@example.org>\r\nTo: sales@example.com\r\nSubject: =?UTF-8?B?SGVsbG8g8J+Ri++4jw==?=\r\n'),
    Buffer.from('Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n'),
    Buffer.from('Grüße aus Köln\r\n.leading dot survives dot-stuffing\r\n..two dots\r\n', 'utf8')
  ])
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: port('smtp'), secure: false, ignoreTLS: true })
  const info = await transport.sendMail({ envelope: { from: 'alice@example.org', to: ['sales@example.com', 'bob@example.com'] }, raw })
  assert.match(info.response, /^250 2\.0\.0 Ok: queued as /)
  const bob = await inbox(store, 'bob@example.com')
  assert.equal(bob.length, 1, 'bob is named twice (alias and address) but gets one copy')
  assert.deepEqual(withoutTrace(bob[0]), raw)
  assert.match(bob[0].toString(), /^Return-Path: <alice@example\.org>\r\n/)
  const carol = await inbox(store, 'carol@example.com')
  assert.deepEqual(withoutTrace(carol[0]), raw)
  assert.match(carol[0].toString(), /for <sales@example\.com>/, 'each copy names only its own recipient')
})

test('inbound MX: unknown recipients, relay attempts and AUTH get the right codes', async (t) => {
  const { port } = await setup(t)
  const c = await RawClient.connect(port('smtp'))
  t.after(() => c.close())
  assert.match(await c.read(), /^220 mx\.test ESMTP/)
  const ehlo = await c.cmd('EHLO client.example.org')
  assert.match(ehlo, /250[- ]SIZE 10485760\r\n/)
  assert.match(ehlo, /STARTTLS/)
  assert.doesNotMatch(ehlo, /AUTH/, 'no AUTH on the MX port')
  assert.match(await c.cmd('MAIL FROM:<alice@example.org>'), /^250 /)
  assert.match(await c.cmd('RCPT TO:<nobody@example.com>'), /^550 5\.1\.1 /)
  assert.match(await c.cmd('RCPT TO:<someone@elsewhere.test>'), /^550 5\.7\.1 Relay access denied/)
  assert.match(await c.cmd('RCPT TO:<bob@EXAMPLE.com>'), /^250 /)
  assert.match(await c.cmd('AUTH PLAIN AGJvYgBib2JwYXNz'), /^5\d\d /)
  assert.match(await c.cmd('QUIT'), /^221 /)
})

test('submission: no AUTH before TLS, then AUTH, sender ownership, remote recipients queued', async (t) => {
  const { store, port, node } = await setup(t)
  const c = await RawClient.connect(port('submission'))
  t.after(() => c.close())
  await c.read()
  assert.doesNotMatch(await c.cmd('EHLO client'), /AUTH/, 'AUTH is never offered before TLS')
  assert.match(await c.cmd('AUTH PLAIN AGJvYkBleGFtcGxlLmNvbQBib2JwYXNz'), /^5\d\d /)
  assert.match(await c.cmd('MAIL FROM:<bob@example.com>'), /^530 5\.7\.0 /)
  assert.match(await c.cmd('STARTTLS'), /^220 /)
  await c.upgrade()
  assert.match(await c.cmd('EHLO client'), /250-AUTH PLAIN LOGIN/)
  assert.match(await c.cmd('AUTH PLAIN ' + Buffer.from('\0bob@example.com\0wrong').toString('base64')), /^535 5\.7\.8 /)
  assert.match(await c.cmd('AUTH PLAIN ' + Buffer.from('\0bob@example.com\0bobpass').toString('base64')), /^235 /)
  assert.match(await c.cmd('MAIL FROM:<carol@example.com>'), /^553 5\.7\.1 /)
  assert.match(await c.cmd('MAIL FROM:<sales@example.com>'), /^250 /, 'an alias of the user is a valid sender')
  assert.match(await c.cmd('RCPT TO:<friend@remote.test>'), /^250 /, 'an authenticated user may send to other domains')
  assert.match(await c.cmd('RCPT TO:<carol@example.com>'), /^250 /)
  assert.match(await c.cmd('DATA'), /^354 /)
  assert.match(await c.cmd('Subject: hi\r\n\r\nsubmitted\r\n.'), /^250 /)
  assert.equal((await inbox(store, 'carol@example.com')).length, 1)
  // the remote copy waits in the outbound queue (this test node resolves nothing: see test/helpers/node.ts)
  const queued = await node.queue.list()
  assert.equal(queued.length, 1)
  assert.deepEqual(queued[0].rcpts.map(r => r.address), ['friend@remote.test'])
  assert.equal(queued[0].from, 'sales@example.com')
})

test('submission over implicit TLS with Python smtplib, and LOGIN auth', async (t) => {
  const { store, port } = await setup(t)
  const r = await python(`
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP_SSL('127.0.0.1', int(sys.argv[1]), context=ctx, timeout=20)
s.ehlo()
assert 'auth' in s.esmtp_features, s.esmtp_features
try:
    s.login('bob@example.com', 'nope')
    print('login-accepted')
except smtplib.SMTPAuthenticationError as e:
    print('badauth', e.smtp_code)
s.login('bob@example.com', 'bobpass')
refused = s.sendmail('bob@example.com', ['carol@example.com'], b'Subject: via smtps\\r\\n\\r\\nbody\\r\\n')
print('refused', len(refused))
s.quit()
`, [String(port('smtps'))])
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stdout, /badauth 535/)
  assert.match(r.stdout, /refused 0/)
  const got = await inbox(store, 'carol@example.com')
  assert.match(got[0].toString(), /with ESMTPSA id /)
})

test('size limit and quota answers', async (t) => {
  const { store, port } = await setup(t, { limits: { messageBytesMax: 100_000 } })
  const c = await RawClient.connect(port('smtp'))
  t.after(() => c.close())
  await c.read()
  await c.cmd('EHLO client')
  assert.match(await c.cmd('MAIL FROM:<a@example.org> SIZE=200000'), /^552 /, 'declared SIZE over the limit')
  assert.match(await c.cmd('MAIL FROM:<a@example.org> SIZE=1000'), /^250 /)
  assert.match(await c.cmd('RCPT TO:<bob@example.com>'), /^250 /)
  assert.match(await c.cmd('DATA'), /^354 /)
  c.write('Subject: big\r\n\r\n' + ('x'.repeat(998) + '\r\n').repeat(150))
  assert.match(await c.cmd('.'), /^552 5\.3\.4 /, 'actual size over the limit')
  assert.equal((await inbox(store, 'bob@example.com')).length, 0)

  // carol may hold one message: the first is accepted, then RCPT answers 452 4.2.2
  for (const expect of [/^250 /, /^452 4\.2\.2 /]) {
    assert.match(await c.cmd('MAIL FROM:<a@example.org>'), /^250 /)
    const rcpt = await c.cmd('RCPT TO:<carol@example.com>')
    assert.match(rcpt, expect)
    if (rcpt.startsWith('250')) {
      await c.cmd('DATA')
      assert.match(await c.cmd('Subject: q\r\n\r\nq\r\n.'), /^250 /)
    } else {
      await c.cmd('RSET')
    }
  }
  // through an alias, carol's full mailbox fails the whole transaction temporarily: nothing half-delivered
  await store.setQuota('carol@example.com', { messages: 2 })
  await store.append('carol@example.com', 'INBOX', { raw: Buffer.from('Subject: filler\r\n\r\nx\r\n') })
  assert.match(await c.cmd('MAIL FROM:<a@example.org>'), /^250 /)
  assert.match(await c.cmd('RCPT TO:<sales@example.com>'), /^452 4\.2\.2 /)
})

test('hostile input is answered with errors and the server keeps serving', async (t) => {
  const { store, port } = await setup(t)
  const cases: Array<[string, string | Buffer, RegExp]> = [
    ['overlong line', 'EHLO ' + 'a'.repeat(10_000) + '\r\n', /^(421|500|501)/m],
    ['HTTP on the SMTP port', 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', /^421 /m],
    ['binary garbage', Buffer.from([0, 1, 2, 255, 254, 13, 10]), /^5\d\d /m],
    ['bad address syntax', 'EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<@@@>\r\n', /^50[01] |^553 /m],
    ['DATA before RCPT', 'EHLO x\r\nMAIL FROM:<a@example.org>\r\nDATA\r\n', /^503 /m]
  ]
  for (const [name, input, expect] of cases) {
    const c = await RawClient.connect(port('smtp'))
    await c.read()
    c.write(input)
    const got = await c.read(buf => expect.test(buf), 5000).catch((err: Error) => err.message)
    assert.match(got, expect, name)
    c.close()
  }
  // too many unknown commands end the session
  const c = await RawClient.connect(port('smtp'))
  await c.read()
  let all = ''
  for (let i = 0; i < 12 && !c.closed; i++) all += await c.cmd(`FOO${i}`)
  assert.match(all, /^421 /m)
  assert.ok(await c.waitClosed(), 'the server hangs up after 421')
  c.close()

  // and a normal client still gets through
  const ok = await python(`
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=20)
print(s.sendmail('x@example.org', ['bob@example.com'], b'Subject: still here\\r\\n\\r\\nok\\r\\n'))
s.quit()
`, [String(port('smtp'))])
  assert.equal(ok.code, 0, ok.stderr)
  assert.equal((await inbox(store, 'bob@example.com')).length, 1)
})

test('connections per IP are limited', async (t) => {
  const { port } = await setup(t, { limits: { connectionsPerIpMax: 3 } })
  const open: RawClient[] = []
  t.after(() => { for (const c of open) c.close() })
  for (let i = 0; i < 3; i++) {
    const c = await RawClient.connect(port('smtp'))
    assert.match(await c.read(), /^220 /)
    open.push(c)
  }
  const extra = await RawClient.connect(port('smtp'))
  open.push(extra)
  assert.match(await extra.read(), /^421 /)
  open[0].close()
  await open[0].waitClosed(2000)
  // the slot is released on close; retry briefly while the server notices
  let greeting = ''
  for (let i = 0; i < 50 && !greeting.startsWith('220'); i++) {
    const c = await RawClient.connect(port('smtp'))
    open.push(c)
    greeting = await c.read()
    if (!greeting.startsWith('220')) await new Promise(resolve => setTimeout(resolve, 20))
  }
  assert.match(greeting, /^220 /)
})

test('pipelined commands (RFC 2920) are answered in order, in one write; a failure among them is not held back', async (t) => {
  const { port, store } = await setup(t)
  const { connect, Socket } = await import('node:net')
  // the node runs in this process: its socket writes to the handle (one per write, or one writev for corked ones)
  // are counted on the server's side of connections to the SMTP port
  const proto = Socket.prototype as unknown as { _writeGeneric: (...args: unknown[]) => unknown }
  const original = proto._writeGeneric
  let serverWrites = 0
  proto._writeGeneric = function (this: InstanceType<typeof Socket>, ...args: unknown[]) {
    if (this.localPort === port('smtp')) serverWrites++
    return original.apply(this, args)
  }
  t.after(() => { proto._writeGeneric = original })
  const socket = connect(port('smtp'), '127.0.0.1')
  t.after(() => { socket.destroy() })
  const chunks: string[] = []
  let waiting: { lines: number, resolve: () => void } | null = null
  const lines = (): string[] => chunks.join('').split('\r\n').filter(l => l !== '')
  socket.on('data', (d: Buffer) => {
    chunks.push(d.toString('latin1'))
    if (waiting !== null && lines().length >= waiting.lines) waiting.resolve()
  })
  const until = async (n: number): Promise<void> => {
    if (lines().length >= n) return
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`waited for ${n} lines, have: ${JSON.stringify(chunks)}`)), 10_000)
      waiting = { lines: n, resolve: () => { clearTimeout(timer); resolve() } }
    })
  }
  await until(1)
  assert.match(lines()[0], /^220 /)
  socket.write('EHLO client.example\r\n')
  await until(2)
  const afterEhlo = lines().length
  for (let round = 0; round < 3; round++) {
    const had = lines().length
    const writes = serverWrites
    socket.write('MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n')
    await until(had + 3)
    assert.deepEqual(lines().slice(had).map(l => l.slice(0, 4)), ['250 ', '250 ', '354 '])
    assert.equal(serverWrites - writes, 1, 'three replies in one write')
    socket.write(`Subject: r${round}\r\n\r\nbody\r\n.\r\n`)
    await until(had + 4)
    assert.match(lines()[had + 3], /^250 2\.0\.0 /)
  }
  // an unknown recipient among pipelined commands: the 550 goes at once, with the 250 before it, in order
  const had = lines().length
  socket.write('MAIL FROM:<alice@example.org>\r\nRCPT TO:<nobody@example.com>\r\nRCPT TO:<bob@example.com>\r\nRSET\r\n')
  await until(had + 4)
  assert.deepEqual(lines().slice(had).map(l => l.slice(0, 4)), ['250 ', '550 ', '250 ', '250 '])
  socket.write('QUIT\r\n')
  await until(had + 5)
  assert.match(lines()[had + 4], /^221 /)
  assert.ok(afterEhlo >= 2)
  assert.equal((await inbox(store, 'bob@example.com')).length, 3)
})

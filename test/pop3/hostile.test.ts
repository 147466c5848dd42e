// Hostile and awkward clients on raw sockets: overlong lines, garbage, commands in the wrong state, a flood of
// bad commands, pipelining, STLS command injection, throttling, connection limits, idle timeout, a client
// that stops reading, and shutdown. Each time the server answers with an error, keeps its bounds, and goes
// on serving other clients.

import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { connect as tlsConnect } from 'node:tls'
import { setTimeout as delay } from 'node:timers/promises'
import { createAuthenticator } from '../../node/auth.ts'
import { AuthThrottle, ConnectionLimiter } from '../../node/limits.ts'
import type { MessageRecord, Store } from '../../store/index.ts'
import { PASSWORD, RawClient, USER, bigMessage, fixture, rawLogin } from './helpers.ts'

const f = await fixture({ after })
await f.store.append(USER, 'INBOX', { raw: Buffer.from('Subject: one\r\n\r\n.dot\r\nbody\r\n') })
const loopback = await f.server({ allowPlaintextOnLoopback: true })
const strict = await f.server({})

/** The server still serves a fresh client after whatever the test did. */
async function stillServes (port = loopback.port): Promise<void> {
  const c = await RawClient.open(port)
  assert.match(await c.line(), /^\+OK/)
  c.send('CAPA\r\n')
  assert.equal(await c.line(), '+OK Capability list follows')
  await c.multiline()
  c.close()
}

test('overlong lines get -ERR and the session goes on', async () => {
  const c = await RawClient.open(loopback.port)
  await c.line()
  c.send('NOOP ' + 'x'.repeat(300) + '\r\n')
  assert.equal(await c.line(), '-ERR Line too long')
  c.send('USER ' + 'a'.repeat(248) + '\r\n') // exactly 255 octets with CRLF: allowed
  assert.match(await c.line(), /^\+OK/)
  c.send('CAPA\r\n')
  assert.match(await c.line(), /^\+OK/)
  await c.multiline()
  c.close()
})

test('a line with no end at all is cut off', async () => {
  const c = await RawClient.open(loopback.port)
  await c.line()
  c.send(Buffer.alloc(200_000, 0x41))
  assert.equal(await c.line(), '-ERR Line too long')
  await c.closedByServer()
  await stillServes()
})

test('binary garbage gets -ERR, then the bad-command budget closes the connection', async () => {
  const c = await RawClient.open(loopback.port)
  await c.line()
  const garbage = [Buffer.from([0x00, 0xff, 0xfe, 0x0d, 0x0a]), Buffer.from('\x16\x03\x01\x02\x00\x01\x00\r\n', 'latin1'), Buffer.from('GET / HTTP/1.1\r\n'), Buffer.from('\x1b[31mRETR 1\r\n')]
  for (const g of garbage) {
    c.send(g)
    assert.match(await c.line(), /^-ERR /)
  }
  c.close()
  await stillServes()
})

test('commands in the wrong state are refused', async () => {
  const c = await RawClient.open(loopback.port)
  await c.line()
  for (const cmd of ['STAT', 'LIST', 'RETR 1', 'DELE 1', 'NOOP', 'UIDL', 'TOP 1 1', 'RSET', 'PASS x']) {
    c.send(cmd + '\r\n')
    assert.match(await c.line(), /^-ERR /, cmd)
  }
  c.close()
  const d = await RawClient.open(loopback.port)
  await rawLogin(d)
  for (const cmd of ['USER x', 'PASS x', 'STLS', 'AUTH PLAIN']) {
    d.send(cmd + '\r\n')
    assert.match(await d.line(), /^-ERR .*after login/, cmd)
  }
  d.close()
  const e = await RawClient.open(loopback.port)
  await rawLogin(e)
  for (const cmd of ['RETR 0', 'RETR 2', 'RETR x', 'RETR -1', 'RETR 1 2', 'TOP 1', 'TOP 1 -1', 'DELE 99999999999', 'LIST 2 3']) {
    e.send(cmd + '\r\n')
    assert.match(await e.line(), /^-ERR /, cmd)
  }
  e.close()
})

test('1000 bad commands: the connection is closed after the budget', async () => {
  const c = await RawClient.open(loopback.port)
  await c.line()
  c.send('XYZZY\r\n'.repeat(1000))
  await c.closedByServer()
  const answers = c.pending.split('\r\n').filter(l => l !== '')
  assert.equal(answers.length, 10)
  assert.ok(answers.every(l => l.startsWith('-ERR ')))
  assert.match(answers[9], /Too many bad commands/)
  await stillServes()
})

test('pipelined commands are answered in order (RFC 2449 PIPELINING)', async () => {
  const c = await RawClient.open(loopback.port)
  await c.line()
  c.send(`USER ${USER}\r\nPASS ${PASSWORD}\r\nSTAT\r\nLIST\r\nRETR 1\r\nUIDL 1\r\nTOP 1 0\r\nNOOP\r\nQUIT\r\n`)
  assert.match(await c.line(), /^\+OK Send PASS/)
  assert.match(await c.line(), /^\+OK Logged in/)
  assert.match(await c.line(), /^\+OK 1 \d+$/)
  assert.match(await c.line(), /^\+OK 1 messages/)
  assert.match((await c.multiline()).toString(), /^1 \d+\r\n$/)
  assert.match(await c.line(), /^\+OK \d+ octets/)
  assert.equal((await c.multiline()).toString(), 'Subject: one\r\n\r\n..dot\r\nbody\r\n')
  assert.match(await c.line(), /^\+OK 1 [0-9a-f]+$/)
  assert.match(await c.line(), /^\+OK Top/)
  assert.equal((await c.multiline()).toString(), 'Subject: one\r\n\r\n')
  assert.equal(await c.line(), '+OK')
  assert.match(await c.line(), /^\+OK Bye/)
  await c.closedByServer()
})

test('STLS: commands pipelined after STLS in plaintext are dropped (RFC 2595 3.1)', async () => {
  const c = await RawClient.open(strict.port)
  await c.line()
  c.send('STLS\r\nCAPA\r\n')
  assert.match(await c.line(), /^\+OK Begin TLS/)
  const secure = tlsConnect({ socket: c.socket, rejectUnauthorized: false })
  await new Promise<void>((resolve, reject) => { secure.once('secureConnect', resolve); secure.once('error', reject) })
  let got = ''
  secure.on('data', (d: Buffer) => { got += d.toString('latin1') })
  secure.write('XYZZY\r\n')
  for (let i = 0; i < 100 && !got.includes('\r\n'); i++) await delay(20)
  assert.equal(got, '-ERR Unknown command\r\n') // not the CAPA listing
  secure.write('CAPA\r\n')
  for (let i = 0; i < 100 && !got.includes('\r\n.\r\n'); i++) await delay(20)
  assert.match(got, /\r\nUSER\r\n/)
  assert.doesNotMatch(got, /STLS/)
  secure.destroy()
})

test('strict server: no plaintext authentication before TLS, AUTH lists no mechanism', async () => {
  const c = await RawClient.open(strict.port)
  await c.line()
  c.send(`USER ${USER}\r\n`)
  assert.match(await c.line(), /^-ERR \[AUTH\] /)
  c.send(`PASS ${PASSWORD}\r\n`)
  assert.match(await c.line(), /^-ERR \[AUTH\] /)
  c.send('AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHg=\r\n')
  assert.match(await c.line(), /^-ERR \[AUTH\] /)
  c.send('AUTH\r\n')
  assert.equal(await c.line(), '+OK Mechanisms follow')
  assert.equal((await c.multiline()).toString(), '')
  c.close()
})

test('AUTH PLAIN: cancel, malformed responses, no proxy logins', async () => {
  const c = await RawClient.open(loopback.port)
  await c.line()
  c.send('AUTH PLAIN\r\n*\r\n')
  assert.equal(await c.line(), '+ ')
  assert.match(await c.line(), /^-ERR .*cancelled/)
  c.send('AUTH PLAIN !!!notbase64\r\n')
  assert.match(await c.line(), /^-ERR \[AUTH\] /)
  const proxy = Buffer.from(`bob@example.com\0${USER}\0${PASSWORD}`).toString('base64')
  c.send(`AUTH PLAIN ${proxy}\r\n`)
  assert.match(await c.line(), /^-ERR \[AUTH\] /)
  c.send('AUTH CRAM-MD5\r\n')
  assert.match(await c.line(), /^-ERR /)
  c.close()
})

test('throttled logins answer [SYS/TEMP]; three failures end the session', async () => {
  const auth = createAuthenticator({ directory: f.store, throttle: new AuthThrottle({ perIp: 10_000, perAccount: 2 }) })
  const { port } = await f.server({ allowPlaintextOnLoopback: true }, { auth })
  const c = await RawClient.open(port)
  await c.line()
  c.send(`USER ${USER}\r\nPASS bad 1\r\nUSER ${USER}\r\nPASS bad 2\r\nUSER ${USER}\r\nPASS ${PASSWORD}\r\n`)
  const lines = await c.lines(6)
  assert.match(lines[1], /^-ERR \[AUTH\] /)
  assert.match(lines[3], /^-ERR \[AUTH\] /)
  assert.match(lines[5], /^-ERR \[SYS\/TEMP\] /) // right password, but the account is throttled
  await c.closedByServer()
  assert.ok(f.logs.some(l => l.event === 'pop3_auth_failed' && l.reason === 'throttled'))
})

test('connection limit: the connection over it gets -ERR [SYS/TEMP]; its slot frees on close', async () => {
  const { port } = await f.server({ allowPlaintextOnLoopback: true }, { limiter: new ConnectionLimiter({ perIp: 2 }) })
  const a = await RawClient.open(port)
  const b = await RawClient.open(port)
  assert.match(await a.line(), /^\+OK/)
  assert.match(await b.line(), /^\+OK/)
  const c = await RawClient.open(port)
  assert.match(await c.line(), /^-ERR \[SYS\/TEMP\] /)
  await c.closedByServer()
  a.send('QUIT\r\n')
  await a.line()
  await a.closedByServer()
  // The server releases the slot when it sees the close; retry a bounded number of times
  let greeting = ''
  for (let i = 0; i < 50 && !greeting.startsWith('+OK'); i++) {
    const d = await RawClient.open(port)
    greeting = await d.line().catch(() => '')
    d.close()
    if (!greeting.startsWith('+OK')) await delay(20)
  }
  assert.match(greeting, /^\+OK/)
  b.close()
})

test('idle timeout: autologout with -ERR, nothing deleted', async () => {
  const { port } = await f.server({ allowPlaintextOnLoopback: true, idleTimeoutMs: 300 })
  const c = await RawClient.open(port)
  await rawLogin(c)
  c.send('DELE 1\r\n')
  assert.match(await c.line(), /^\+OK/)
  assert.match(await c.line(), /^-ERR Idle timeout/)
  await c.closedByServer()
  const box = await f.store.getMailbox(USER, 'INBOX')
  assert.equal((await f.store.listMessages(USER, box!.id)).length, 1)
})

test('a client that stops reading: the server stops reading the message too (back-pressure)', async () => {
  const dave = 'dave@example.com'
  await f.store.addUser({ address: dave, password: 'dave password' })
  const raw = bigMessage(20 * 1024 * 1024)
  await f.store.append(dave, 'INBOX', { raw })
  let pulled = 0
  const counting = new Proxy(f.store, {
    get (target, prop) {
      if (prop === 'streamMessage') {
        return async function * (record: MessageRecord, range?: { start?: number, end?: number }) {
          for await (const chunk of target.streamMessage(record, range)) {
            pulled += chunk.length
            yield chunk
          }
        }
      }
      const v = Reflect.get(target, prop)
      return typeof v === 'function' ? v.bind(target) : v
    }
  }) as Store
  const { createPop3Server } = await import('../../node/pop3/index.ts')
  const server = createPop3Server({ store: counting, auth: f.auth, logger: f.logger, limiter: new ConnectionLimiter() }, { host: '127.0.0.1', port: 0, allowPlaintextOnLoopback: true, idleTimeoutMs: 60_000 })
  const { port } = await server.listen()
  after(async () => { await server.close() })
  const c = await RawClient.open(port)
  await c.line()
  c.send(`USER ${dave}\r\nPASS dave password\r\n`)
  await c.lines(2)
  c.socket.pause()
  c.send('RETR 1\r\n')
  // Wait until the server stops pulling (bounded), then check it did not read the whole message
  let last = -1
  for (let i = 0; i < 100 && pulled !== last; i++) {
    last = pulled
    await delay(100)
  }
  assert.equal(pulled, last, 'the server kept reading while the client did not')
  assert.ok(pulled > 0 && pulled < raw.length / 2, `pulled ${pulled} of ${raw.length} bytes while the client was not reading`)
  c.socket.resume()
  assert.equal(await c.line(), `+OK ${raw.length} octets`)
  const body = await c.multiline(60_000) // 20 MB: generous on a loaded machine
  assert.equal(pulled, raw.length)
  assert.deepEqual(Buffer.from(body.toString('latin1').replace(/^\./gm, ''), 'latin1'), raw)
  c.close()
})

test('close() ends every session and is idempotent', async () => {
  const { port, server } = await f.server({ allowPlaintextOnLoopback: true })
  const a = await RawClient.open(port)
  const b = await RawClient.open(port)
  await a.line()
  await rawLogin(b)
  b.send('DELE 1\r\n')
  await b.line()
  await Promise.all([server.close(), server.close()])
  await a.closedByServer()
  await b.closedByServer()
  await server.close()
  const box = await f.store.getMailbox(USER, 'INBOX')
  assert.equal((await f.store.listMessages(USER, box!.id)).length, 1) // no QUIT, no deletion
  await stillServes()
})

test('a stored message with bare LF line ends is sent with CRLF (its LIST size is then the stored size)', async () => {
  const erin = 'erin@example.com'
  await f.store.addUser({ address: erin, password: 'erin password' })
  const raw = Buffer.from('Subject: lf\n\nline\n.dot\nlast')
  await f.store.append(erin, 'INBOX', { raw })
  const c = await RawClient.open(loopback.port)
  await c.line()
  c.send(`USER ${erin}\r\nPASS erin password\r\nLIST 1\r\nRETR 1\r\nTOP 1 1\r\n`)
  await c.lines(2)
  assert.equal(await c.line(), `+OK 1 ${raw.length}`)
  assert.equal(await c.line(), `+OK ${raw.length} octets`)
  assert.equal((await c.multiline()).toString(), 'Subject: lf\r\n\r\nline\r\n..dot\r\nlast\r\n')
  await c.line()
  assert.equal((await c.multiline()).toString(), 'Subject: lf\r\n\r\nline\r\n')
  c.close()
})

test('POP3S: garbage instead of a TLS handshake is dropped; an idle TLS session is logged out', async () => {
  const { port } = await f.server({ implicitTls: true, idleTimeoutMs: 300 })
  const c = await RawClient.open(port)
  c.send('USER plaintext\r\n')
  await c.closedByServer()
  assert.equal(c.pending, '')
  const d = await RawClient.open(port, true)
  assert.match(await d.line(), /^\+OK/)
  assert.match(await d.line(), /^-ERR Idle timeout/)
  await d.closedByServer()
})

test('a client that half-closes after pipelining still gets every answer, and its QUIT applies', async () => {
  const frank = 'frank@example.com'
  await f.store.addUser({ address: frank, password: 'frank password' })
  await f.store.append(frank, 'INBOX', { raw: Buffer.from('Subject: x\r\n\r\nx\r\n') })
  const c = await RawClient.open(loopback.port)
  c.socket.end(`USER ${frank}\r\nPASS frank password\r\nDELE 1\r\nQUIT\r\n`)
  const lines = await c.lines(5)
  assert.match(lines[0], /^\+OK/)
  assert.match(lines[4], /^\+OK Bye, 1 messages deleted/)
  await c.closedByServer()
  const box = await f.store.getMailbox(frank, 'INBOX')
  assert.equal((await f.store.listMessages(frank, box!.id)).length, 0)
})

test('random garbage on many connections: errors only, and the server keeps serving', async () => {
  let seed = 42
  const rnd = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n }
  for (let i = 0; i < 30; i++) {
    const c = await RawClient.open(loopback.port)
    await c.line()
    const bytes = Buffer.alloc(1 + rnd(2000), 0)
    for (let j = 0; j < bytes.length; j++) bytes[j] = rnd(5) === 0 ? 0x0a : rnd(256)
    c.send(bytes)
    c.send('\r\nQUIT\r\n')
    await c.closedByServer()
    for (const line of c.pending.split('\r\n').filter(l => l !== '')) assert.match(line, /^(-ERR |\+OK)/, `seed line ${JSON.stringify(line)}`)
  }
  await stillServes()
})

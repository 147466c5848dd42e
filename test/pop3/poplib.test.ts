// POP3 with a real client (Python's poplib) over STLS, implicit TLS and loopback plaintext, on a real store:
// messages come back byte-identical, sizes match, UIDL is stable, deletions happen at QUIT only, and the
// maildrop is a snapshot while IMAP-like changes happen beside it.

import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { PASSWORD, USER, bigMessage, bytesOf, fixture, poplib } from './helpers.ts'
import type { StepResult } from './helpers.ts'

const f = await fixture({ after })
const strict = await f.server({}) // STLS offered, no plaintext authentication before it
const pop3s = await f.server({ implicitTls: true })
const loopback = await f.server({ allowPlaintextOnLoopback: true, tls: undefined })

const MESSAGES: Array<{ name: string, raw: Buffer, prefix?: string, finalCrlf: boolean }> = [
  { name: 'plain', raw: Buffer.from('From: a@example.com\r\nSubject: hello\r\n\r\nHello.\r\n'), finalCrlf: true },
  { name: 'dots', raw: Buffer.from('Subject: dots\r\n\r\n.\r\n..\r\n.leading dot\r\nmiddle . dot\r\n...\r\nend\r\n'), finalCrlf: true },
  { name: 'no final CRLF', raw: Buffer.from('Subject: no end\r\n\r\nfirst\r\nlast line without end'), finalCrlf: false },
  { name: '5 MB', raw: bigMessage(5 * 1024 * 1024), finalCrlf: true },
  { name: 'with prefix', raw: Buffer.from('Subject: delivered\r\n\r\nbody\r\n'), prefix: 'Received: from test by mx.test\r\n', finalCrlf: true }
]
for (const m of MESSAGES) {
  if (m.prefix === undefined) await f.store.append(USER, 'INBOX', { raw: m.raw })
  else await f.store.deliver(m.raw, [{ user: USER, prefix: m.prefix }])
}
const stored = (m: typeof MESSAGES[number]): Buffer => Buffer.concat([Buffer.from(m.prefix ?? ''), m.raw])
const total = MESSAGES.reduce((s, m) => s + stored(m).length, 0)

function ok (r: StepResult | undefined): any {
  assert.ok(r !== undefined && r.ok, `expected success, got ${JSON.stringify(r)}`)
  return r.r
}

function errOf (r: StepResult | undefined): string {
  assert.ok(r !== undefined && !r.ok, `expected -ERR, got ${JSON.stringify(r)?.slice(0, 200)}`)
  return r.err
}

/** TOP's expected output: header, blank line, n body lines. */
function topOf (msg: Buffer, n: number): Buffer {
  let end = msg.indexOf('\r\n\r\n') + 4
  for (let i = 0; i < n && end < msg.length; i++) {
    const nl = msg.indexOf('\n', end)
    end = nl === -1 ? msg.length : nl + 1
  }
  return msg.subarray(0, end)
}

test('STLS: no plaintext login before TLS, then CAPA, STAT, LIST, UIDL and byte-identical RETR', async () => {
  const res = await poplib({
    port: strict.port,
    mode: 'plain',
    cafile: f.cafile,
    steps: [
      ['capa'], ['user', USER], ['auth_plain', USER, PASSWORD], ['stls'], ['capa'], ['user', USER], ['pass', PASSWORD],
      ['stat'], ['list'], ['uidl'], ...MESSAGES.map((_, i): [string, number] => ['retr', i + 1]), ['quit']
    ]
  })
  assert.match(ok(res[0]), /^\+OK/)
  const capaBefore = ok(res[1])
  assert.ok('STLS' in capaBefore && !('USER' in capaBefore) && !('SASL' in capaBefore), JSON.stringify(capaBefore))
  assert.match(errOf(res[2]), /^-ERR \[AUTH\]/)
  assert.match(errOf(res[3]), /^-ERR \[AUTH\]/)
  ok(res[4])
  const capaAfter = ok(res[5])
  assert.ok(!('STLS' in capaAfter) && 'USER' in capaAfter, JSON.stringify(capaAfter))
  assert.deepEqual(capaAfter.SASL, ['PLAIN'])
  for (const c of ['TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING']) assert.ok(c in capaAfter, c)
  ok(res[6])
  ok(res[7])
  assert.deepEqual(ok(res[8]), [MESSAGES.length, total])
  const list = ok(res[9])
  assert.deepEqual(list[1], MESSAGES.map((m, i) => `${i + 1} ${stored(m).length}`))
  const uidl = ok(res[10])[1] as string[]
  assert.equal(new Set(uidl.map(l => l.split(' ')[1])).size, MESSAGES.length)
  MESSAGES.forEach((m, i) => {
    const r = res[11 + i]
    assert.deepEqual(bytesOf(r, m.finalCrlf), stored(m), m.name)
    assert.equal(ok(r).resp, `+OK ${stored(m).length} octets`, m.name)
  })
  ok(res[11 + MESSAGES.length])
})

test('implicit TLS: RETR byte-identical, TOP gives header, blank line and n lines', async () => {
  const res = await poplib({
    port: pop3s.port,
    mode: 'ssl',
    cafile: f.cafile,
    steps: [['user', USER], ['pass', PASSWORD], ...MESSAGES.map((_, i): [string, number] => ['retr', i + 1]),
      ['top', 2, 0], ['top', 2, 3], ['top', 4, 5], ['top', 3, 100], ['top', 5, 0], ['top', 99, 1], ['quit']]
  })
  ok(res[1])
  ok(res[2])
  MESSAGES.forEach((m, i) => assert.deepEqual(bytesOf(res[3 + i], m.finalCrlf), stored(m), m.name))
  const t = 3 + MESSAGES.length
  assert.deepEqual(bytesOf(res[t], true), topOf(MESSAGES[1].raw, 0))
  assert.deepEqual(bytesOf(res[t + 1], true), topOf(MESSAGES[1].raw, 3))
  assert.deepEqual(bytesOf(res[t + 2], true), topOf(MESSAGES[3].raw, 5))
  assert.deepEqual(bytesOf(res[t + 3], false), MESSAGES[2].raw)
  assert.deepEqual(bytesOf(res[t + 4], true), topOf(stored(MESSAGES[4]), 0))
  assert.match(errOf(res[t + 5]), /^-ERR/)
})

test('AUTH PLAIN with and without an initial response; wrong credentials get [AUTH]', async () => {
  const res = await poplib({
    port: loopback.port,
    mode: 'plain',
    steps: [['auth_plain', USER, 'wrong'], ['user', USER], ['pass', 'wrong'], ['auth_plain_cont', USER, PASSWORD], ['stat'], ['quit']]
  })
  assert.match(errOf(res[1]), /^-ERR \[AUTH\]/)
  ok(res[2])
  assert.match(errOf(res[3]), /^-ERR \[AUTH\]/)
  const [challenge, done] = ok(res[4])
  assert.equal(challenge, '+ ')
  assert.match(done, /^\+OK/)
  assert.deepEqual(ok(res[5]), [MESSAGES.length, total])
  const again = await poplib({ port: loopback.port, mode: 'plain', steps: [['auth_plain', USER, PASSWORD], ['quit']] })
  ok(again[1])
})

test('UIDL is stable across sessions and protocols', async () => {
  const a = await poplib({ port: loopback.port, mode: 'plain', steps: [['user', USER], ['pass', PASSWORD], ['uidl'], ['uidl', 2], ['quit']] })
  const b = await poplib({ port: pop3s.port, mode: 'ssl', steps: [['user', USER], ['pass', PASSWORD], ['uidl'], ['quit']] })
  assert.deepEqual(ok(a[3])[1], ok(b[3])[1])
  const box = await f.store.getMailbox(USER, 'INBOX')
  const gids = (await f.store.listMessages(USER, box!.id)).map(r => r.gid)
  assert.deepEqual(ok(a[3])[1], gids.map((g, i) => `${i + 1} ${g}`))
  assert.equal(ok(a[4]), `+OK 2 ${gids[1]}`)
})

test('DELE takes effect at QUIT only; RSET and a dropped connection delete nothing', async () => {
  const bob = 'bob@example.com'
  await f.store.addUser({ address: bob, password: 'bob password' })
  for (let i = 1; i <= 4; i++) await f.store.append(bob, 'INBOX', { raw: Buffer.from(`Subject: ${i}\r\n\r\nbody ${i}\r\n`) })
  const login: Array<[string, string]> = [['user', bob], ['pass', 'bob password']]

  const dropped = await poplib({ port: loopback.port, mode: 'plain', steps: [...login, ['dele', 1], ['dele', 2], ['close']] })
  ok(dropped[3])
  const reset = await poplib({ port: loopback.port, mode: 'plain', steps: [...login, ['stat'], ['dele', 1], ['stat'], ['retr', 1], ['dele', 1], ['list', 1], ['rset'], ['stat'], ['quit']] })
  assert.equal(ok(reset[3])[0], 4) // the dropped session deleted nothing
  assert.equal(ok(reset[5])[0], 3)
  assert.match(errOf(reset[6]), /deleted/)
  assert.match(errOf(reset[7]), /already deleted/)
  assert.match(errOf(reset[8]), /deleted/)
  assert.equal(ok(reset[10])[0], 4)

  const done = await poplib({ port: loopback.port, mode: 'plain', steps: [...login, ['dele', 1], ['dele', 3], ['noop'], ['quit']] })
  assert.match(ok(done[6]), /2 messages deleted/)
  const box = await f.store.getMailbox(bob, 'INBOX')
  const left = await f.store.listMessages(bob, box!.id)
  assert.deepEqual(left.map(r => r.uid), [2, 4])
  const after = await poplib({ port: loopback.port, mode: 'plain', steps: [...login, ['stat'], ['retr', 1], ['quit']] })
  assert.equal(ok(after[3])[0], 2)
  assert.equal(bytesOf(after[4], true).toString(), 'Subject: 2\r\n\r\nbody 2\r\n')
})

test('snapshot: new mail waits for the next session; mail expunged meanwhile gets -ERR and QUIT skips it', async () => {
  const carol = 'carol@example.com'
  await f.store.addUser({ address: carol, password: 'carol password' })
  const box = (await f.store.getMailbox(carol, 'INBOX'))!
  for (let i = 1; i <= 3; i++) await f.store.append(carol, 'INBOX', { raw: Buffer.from(`Subject: ${i}\r\n\r\n${i}\r\n`) })
  // Drive the session step by step through the raw client so the store can change between commands
  const { RawClient } = await import('./helpers.ts')
  const c = await RawClient.open(loopback.port)
  await c.line()
  c.send(`USER ${carol}\r\nPASS carol password\r\n`)
  await c.lines(2)
  await f.store.append(carol, 'INBOX', { raw: Buffer.from('Subject: late\r\n\r\nlate\r\n') })
  await f.store.expunge(carol, box.id, [2])
  c.send('STAT\r\n')
  assert.match(await c.line(), /^\+OK 3 /)
  c.send('RETR 2\r\n')
  assert.match(await c.line(), /^-ERR /)
  c.send('DELE 1\r\nDELE 2\r\nQUIT\r\n')
  const [d1, d2, quit] = await c.lines(3)
  assert.match(d1, /^\+OK/)
  assert.match(d2, /^\+OK/)
  assert.match(quit, /^\+OK Bye, 1 messages deleted/)
  await c.closedByServer()
  const left = await f.store.listMessages(carol, box.id)
  assert.deepEqual(left.map(r => r.uid), [3, 4])
})

test('logs: session ids and named events, never a password', async () => {
  const text = f.logs.map(l => JSON.stringify(l)).join('\n')
  assert.ok(!text.includes(PASSWORD), 'password in logs')
  assert.ok(!text.includes('bob password'), 'password in logs')
  for (const event of ['pop3_login', 'pop3_auth_failed', 'pop3_quit']) {
    const lines = f.logs.filter(l => l.event === event)
    assert.ok(lines.length > 0, event)
    for (const l of lines) assert.match(String(l.sid), /^[0-9a-f]{12}$/)
  }
})

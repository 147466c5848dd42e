// One node, end to end with real clients: mail sent by SMTP (nodemailer, smtplib) comes back byte-identical by
// POP3 (poplib) and IMAP (imapflow), headers added by us aside; POP3 credentials and plaintext rules.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import nodemailer from 'nodemailer'
import { ImapFlow } from 'imapflow'
import { python } from '../helpers/client.ts'
import { startNode } from '../helpers/node.ts'

const TRACE = /^Return-Path: <[^>]*>\r\nReceived: from [^\r\n]*\r\n\tby [^\r\n]*\r\n\tfor <[^>]+>; [^\r\n]+\r\n/

function message (): Buffer {
  // multipart with an 8-bit part, a base64 attachment, a line starting with a dot and no final CRLF
  return Buffer.from([
    'From: =?UTF-8?Q?J=C3=BCrgen?= <juergen@example.org>',
    'To: bob@example.com',
    'Subject: =?UTF-8?B?w5xiZXJwcsO8ZnVuZw==?=',
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="b1"',
    '',
    '--b1',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
    '',
    'Grüße!',
    '.a line with a leading dot',
    '',
    '--b1',
    'Content-Type: application/octet-stream; name="x.bin"',
    'Content-Transfer-Encoding: base64',
    '',
    Buffer.from(Array.from({ length: 3000 }, (_, i) => i % 256)).toString('base64').replace(/.{76}/g, '$&\r\n'),
    '--b1--',
    'epilogue without newline'
  ].join('\r\n'), 'utf8')
}

test('SMTP in, POP3 and IMAP out: byte-identical', async (t) => {
  const { node, port } = await startNode(t)
  await node.store.addDomain('example.com')
  await node.store.addUser({ address: 'bob@example.com', password: 'pop-pass' })
  const raw = message()
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: port('smtp'), secure: false, ignoreTLS: true })
  await transport.sendMail({ envelope: { from: 'juergen@example.org', to: ['bob@example.com'] }, raw })

  const pop = await python(`
import poplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
p = poplib.POP3('127.0.0.1', int(sys.argv[1]), timeout=20)
p.stls(context=ctx)
try:
    p.user('bob@example.com'); p.pass_('wrong')
    print('accepted-wrong-password')
except poplib.error_proto as e:
    print('wrong:', e)
p.user('bob@example.com'); p.pass_('pop-pass')
count, size = p.stat()
resp, lines, octets = p.retr(1)
body = b'\\r\\n'.join(lines)
sys.stdout.buffer.write(b'COUNT %d SIZE %d OCTETS %d\\n' % (count, size, octets))
open(sys.argv[2], 'wb').write(body)
p.quit()
`, [String(port('pop3')), `${node.store.path}/retr.bin`])
  assert.equal(pop.code, 0, pop.stderr)
  assert.match(pop.stdout, /wrong: b'-ERR/)
  const { readFile } = await import('node:fs/promises')
  const retr = await readFile(`${node.store.path}/retr.bin`)
  // poplib strips line ends and dot-stuffing; compare what it rebuilt with CRLF joins
  const lines = retr.toString('latin1')
  const m = TRACE.exec(lines)
  assert.ok(m !== null, 'trace headers first')
  assert.equal(lines.slice(m[0].length), raw.toString('latin1'), 'POP3 RETR is byte-identical (poplib drops the final CRLF)')
  assert.match(pop.stdout, /COUNT 1 SIZE (\d+) OCTETS/)

  const client = new ImapFlow({ host: '127.0.0.1', port: port('imaps'), secure: true, tls: { rejectUnauthorized: false }, auth: { user: 'bob@example.com', pass: 'pop-pass' }, logger: false })
  await client.connect()
  t.after(async () => { await client.logout().catch(() => {}) })
  const lock = await client.getMailboxLock('INBOX')
  try {
    const msg = await client.fetchOne('*', { source: true, size: true })
    assert.ok(msg !== false && msg !== undefined && msg.source !== undefined)
    const src = msg.source
    const trace = TRACE.exec(src.toString('latin1'))
    assert.ok(trace !== null)
    // SMTP content always ends with CRLF (RFC 5321 4.1.1.4: the CRLF before the final dot ends the last line)
    assert.deepEqual(src.subarray(trace[0].length), Buffer.concat([raw, Buffer.from('\r\n')]), 'IMAP BODY[] is byte-identical')
    assert.equal(msg.size, src.length, 'RFC822.SIZE equals the octets of BODY[]')
  } finally {
    lock.release()
  }
})

test('POP3 refuses plaintext credentials before STLS from non-loopback rules, and counts failures', async (t) => {
  // plaintextAuthOnLoopback is false in the test node: even from 127.0.0.1, USER/PASS needs STLS first
  const { node, port } = await startNode(t)
  await node.store.addDomain('example.com')
  await node.store.addUser({ address: 'bob@example.com', password: 'pw' })
  const r = await python(`
import poplib, sys
p = poplib.POP3('127.0.0.1', int(sys.argv[1]), timeout=20)
caps = p.capa()
print('CAPA', sorted(caps.keys()))
try:
    p.user('bob@example.com'); p.pass_('pw')
    print('plaintext-accepted')
except poplib.error_proto as e:
    print('refused:', e)
`, [String(port('pop3'))])
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stdout, /'STLS'/)
  assert.doesNotMatch(r.stdout, /'USER'/, 'USER is not offered before TLS (RFC 2595)')
  assert.match(r.stdout, /refused: b'-ERR/)
})

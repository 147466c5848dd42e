// The rspamd hook against a real rspamd (Debian's, a private instance started here) and a real node: GTUBE is
// refused at DATA, a clean message is stored with rspamd's result header, a spammy one lands in Junk, a soft
// reject is a 451; with rspamd stopped, mail is accepted and the event logged (failOpen) or deferred with 451.
// Then the client's bounds against a hostile HTTP server: an answer that never comes, one that never ends.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import nodemailer from 'nodemailer'
import pino from 'pino'
import { createMailNode } from '../../node/index.ts'
import type { MailNode, NodeInit } from '../../node/index.ts'
import { createRspamdFilter, RSPAMD_ANSWER_BYTES_MAX } from '../../node/filters/index.ts'
import type { FilterEnvelope } from '../../node/filters/index.ts'
import { isRspamdInstalled, startRspamd } from '../helpers/rspamd.ts'
import type { RspamdServer } from '../helpers/rspamd.ts'
import { TEST_LIMITS, testCert } from '../helpers/node.ts'
import { tempDir } from '../helpers/tmp.ts'

const GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X'
const SMTP_TIMEOUT_MS = 20_000

// The test's own symbols: one that scores a "spammy" subject into add-header range, a prefilter that
// soft-rejects a "tempfail" subject, and one that reports the envelope rspamd was given (score 0).
const RULES = `
rspamd_config:register_symbol({
  name = 'MAILGRID_SPAMMY', score = 7.0, group = 'mailgrid',
  callback = function (task)
    local s = task:get_subject()
    return s ~= nil and s:find('spammy', 1, true) ~= nil
  end
})
rspamd_config:register_symbol({
  name = 'MAILGRID_TEMPFAIL', type = 'prefilter', priority = 10,
  callback = function (task)
    local s = task:get_subject()
    if s ~= nil and s:find('tempfail', 1, true) ~= nil then task:set_pre_result('soft reject', 'try again later') end
  end
})
rspamd_config:register_symbol({
  name = 'MAILGRID_ENVELOPE', score = 0.0, group = 'mailgrid',
  callback = function (task)
    local from = task:get_from('smtp')
    local rcpts = task:get_recipients('smtp') or {}
    local ip = task:get_from_ip()
    return true, 'from=' .. ((from and from[1] and from[1].addr) or '-'), 'rcpts=' .. #rcpts,
      'helo=' .. (task:get_helo() or '-'), 'ip=' .. (ip and ip:is_valid() and ip:to_string() or '-'),
      'qid=' .. (task:get_queue_id() or '-')
  end
})
`

interface Logged { msg: string, [k: string]: unknown }

async function startMailNode (t: { after: (fn: () => Promise<void>) => void }, rspamdUrl: string, failOpen: boolean): Promise<{ node: MailNode, smtpPort: number, logs: Logged[] }> {
  const ep = { host: '127.0.0.1', port: 0 }
  const off = null
  const init: NodeInit = {
    dataDir: await tempDir(t),
    hostname: 'mx.test',
    listen: { smtp: ep, submission: off, smtps: off, pop3: off, pop3s: off, imap: off, imaps: off },
    tls: await testCert(),
    plaintextAuthOnLoopback: false,
    sync: true,
    scryptLogN: 10,
    limits: TEST_LIMITS,
    filters: { rspamd: { url: rspamdUrl, failOpen } }
  }
  const logs: Logged[] = []
  const logger = pino({ level: 'info' }, { write (s: string) { logs.push(JSON.parse(s) as Logged) } })
  const node = createMailNode({ logger }, init)
  await node.start()
  t.after(async () => { await node.stop() })
  const smtp = (await node.status()).services.find(s => s.name === 'smtp')
  assert.ok(smtp !== undefined)
  await node.store.addDomain('example.com')
  await node.store.addUser({ address: 'bob@example.com', password: 'bobpass' })
  await node.store.addUser({ address: 'carol@example.com', password: 'carolpass' })
  return { node, smtpPort: smtp.port, logs }
}

function message (subject: string, body: string): Buffer {
  return Buffer.from(`From: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: ${subject}\r\n` +
    `Message-ID: <${subject.replace(/\W/g, '')}@example.org>\r\nDate: Fri, 04 Dec 2026 21:00:00 +0000\r\n\r\n${body}\r\n`)
}

/** Sends over SMTP; resolves to the server's final answer (250 ... or the refusal), never throws for a refusal. */
async function send (port: number, raw: Buffer, to = ['bob@example.com']): Promise<string> {
  const transport = nodemailer.createTransport({
    host: '127.0.0.1', port, secure: false, ignoreTLS: true, name: 'client.example.org',
    connectionTimeout: SMTP_TIMEOUT_MS, greetingTimeout: SMTP_TIMEOUT_MS, socketTimeout: SMTP_TIMEOUT_MS
  })
  try {
    return (await transport.sendMail({ envelope: { from: 'alice@example.org', to }, raw })).response
  } catch (err) {
    const e = err as { response?: string, message: string }
    return e.response ?? e.message
  } finally {
    transport.close()
  }
}

async function messages (node: MailNode, user: string, mailbox: string): Promise<string[]> {
  const box = await node.store.getMailbox(user, mailbox)
  if (box === null) return []
  const out: string[] = []
  for (const r of await node.store.listMessages(user, box.id)) out.push((await node.store.readMessage(r)).toString())
  return out
}

test('rspamd: GTUBE refused at DATA, clean mail stored with the result header, spam into Junk, soft reject 451; rspamd down: accepted and logged, or 451', { skip: isRspamdInstalled() ? false : 'rspamd is not installed (Debian package rspamd)' }, async (t) => {
  const rspamd: RspamdServer = await startRspamd({ rules: RULES })
  t.after(async () => { await rspamd.stop() })
  const { node, smtpPort, logs } = await startMailNode(t, rspamd.url, true)

  const gtube = await send(smtpPort, message('Test', `This is the GTUBE:\r\n${GTUBE}`))
  assert.match(gtube, /^550 5\.7\.1 /, 'GTUBE is refused at DATA')
  assert.deepEqual(await messages(node, 'bob@example.com', 'INBOX'), [], 'nothing stored')
  assert.ok(logs.some(l => l.msg === 'rspamd_checked' && l.action === 'reject'))

  const clean = await send(smtpPort, message('Lunch on Friday', 'Shall we meet at noon?'), ['bob@example.com', 'carol@example.com'])
  assert.match(clean, /^250 /)
  for (const user of ['bob@example.com', 'carol@example.com']) {
    const [stored, ...more] = await messages(node, user, 'INBOX')
    assert.equal(more.length, 0)
    assert.match(stored, /^X-Spamd-Result: default: False \[0\.00 \/ 15\.00\];\r\n\t/, 'rspamd\'s result at the top')
    assert.match(stored, /\r\nReturn-Path: <alice@example\.org>\r\nReceived: from client\.example\.org/, 'then our trace headers')
    assert.doesNotMatch(stored, /X-Spam: Yes/)
    // what rspamd was told: envelope sender, both recipients (one Rcpt header each), HELO, client IP, our id
    const env = /MAILGRID_ENVELOPE\(0\.00\)\[([^\]]*)\]/.exec(stored)
    assert.ok(env !== null, stored)
    const queueId = /\(mailgrid\) with \w+ id (\S+)\r\n/.exec(stored)?.[1]
    assert.ok(queueId !== undefined)
    assert.deepEqual(env[1].split(','), ['from=alice@example.org', 'rcpts=2', 'helo=client.example.org', 'ip=127.0.0.1', `qid=${queueId}`])
    assert.match(stored, /Shall we meet at noon\?/)
  }

  const spam = await send(smtpPort, message('spammy offer', 'Buy now.'))
  assert.match(spam, /^250 /, 'add header: accepted')
  assert.equal((await messages(node, 'bob@example.com', 'INBOX')).length, 1, 'not in INBOX')
  const [junk] = await messages(node, 'bob@example.com', 'Junk')
  assert.match(junk, /^X-Spam: Yes\r\nX-Spamd-Result: default: True \[7\.00 \/ 15\.00\];\r\n\tMAILGRID_SPAMMY\(7\.00\)\[\];/)

  // a recipient without a Junk folder still gets it, in INBOX
  await node.store.deleteMailbox('carol@example.com', 'Junk')
  assert.match(await send(smtpPort, message('spammy again', 'Buy now.'), ['carol@example.com']), /^250 /)
  const carol = await messages(node, 'carol@example.com', 'INBOX')
  assert.equal(carol.length, 2)
  assert.match(carol[1], /^X-Spam: Yes\r\n/)

  assert.match(await send(smtpPort, message('tempfail please', 'Later.')), /^451 4\.7\.1 /, 'soft reject: try again later')
  assert.equal((await messages(node, 'bob@example.com', 'INBOX')).length, 1)
  assert.ok(!logs.some(l => l.msg === 'rspamd_unavailable'))

  await rspamd.stop()
  const down = await send(smtpPort, message('While rspamd is down', 'Still here.'))
  assert.match(down, /^250 /, 'fail open: accepted')
  const inbox = await messages(node, 'bob@example.com', 'INBOX')
  assert.equal(inbox.length, 2)
  assert.match(inbox[1], /^Return-Path: /, 'no result header when rspamd was not asked')
  const event = logs.find(l => l.msg === 'rspamd_unavailable')
  assert.ok(event !== undefined, 'the event is logged')
  assert.equal(event.failOpen, true)
  assert.equal(event.level, 40, 'a warning')

  // failOpen = false: the same situation is a temporary failure, and nothing is stored
  const strict = await startMailNode(t, rspamd.url, false)
  assert.match(await send(strict.smtpPort, message('Strict node', 'Hello.')), /^451 4\.7\.1 /)
  assert.deepEqual(await messages(strict.node, 'bob@example.com', 'INBOX'), [])
  assert.ok(strict.logs.some(l => l.msg === 'rspamd_unavailable' && l.failOpen === false))
})

const ENVELOPE: FilterEnvelope = { ip: '192.0.2.1', helo: 'h\u0000\u00e9lo\r\n', from: 'j\u00fcrgen@example.org', rcpts: ['a@example.com'], queueId: 'q1', user: null }

test('rspamd client: bounded time, bounded answer, unreadable answers; each a failure that failOpen decides', async (t) => {
  let mode: 'silent' | 'endless' | 'garbage' | 'unknown' | 'error' | 'ok' = 'silent'
  const seen: Array<Record<string, string | string[] | undefined>> = []
  const server = createServer((req, res) => {
    seen.push(req.headers)
    req.resume()
    req.on('end', () => {
      if (mode === 'silent') return // never answers
      if (mode === 'endless') {
        res.writeHead(200, { 'content-type': 'application/json' })
        const chunk = Buffer.alloc(64 * 1024, 0x20)
        const pump = (): void => { while (!res.destroyed && res.write(chunk)); if (!res.destroyed) res.once('drain', pump) }
        pump()
        return
      }
      if (mode === 'error') { res.writeHead(500); res.end('{"error":"boom"}'); return }
      const body = mode === 'garbage' ? '{"action": "reject", "score": '
        : mode === 'unknown' ? '{"action":"delete everything","score":1,"required_score":15}'
          : '{"action":"no action","score":-0.5,"required_score":15,"symbols":{"X\\r\\nInjected: yes":{"score":-0.5,"options":["a;b]c","\\r\\nInjected: yes"]}}}'
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(body)
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.after(async () => { server.closeAllConnections(); await new Promise(resolve => server.close(resolve)) })
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const logs: Logged[] = []
  const logger = pino({ level: 'info' }, { write (s: string) { logs.push(JSON.parse(s) as Logged) } })
  const open = createRspamdFilter({ logger }, { url, failOpen: true, timeoutMs: 500 })
  const closed = createRspamdFilter({ logger }, { url: url + '/', failOpen: false, timeoutMs: 500 })

  const started = Date.now()
  assert.equal((await open.check(Buffer.from('Subject: x\r\n\r\nx\r\n'), ENVELOPE)).action, 'accept')
  assert.ok(Date.now() - started < 5000, 'gave up at its timeout')
  assert.match(logs.at(-1)?.reason as string, /no answer in 500 ms/)
  assert.equal((await closed.check(Buffer.from('x'), ENVELOPE)).action, 'tempfail')

  for (const m of ['endless', 'garbage', 'unknown', 'error'] as const) {
    mode = m
    const before = logs.length
    assert.equal((await closed.check(Buffer.from('x'), ENVELOPE)).action, 'tempfail', m)
    assert.equal((await open.check(Buffer.from('x'), ENVELOPE)).action, 'accept', m)
    assert.equal(logs.slice(before).filter(l => l.msg === 'rspamd_unavailable').length, 2, m)
  }
  assert.match(logs.find(l => typeof l.reason === 'string' && l.reason.includes('larger'))?.reason as string, new RegExp(`larger than ${RSPAMD_ANSWER_BYTES_MAX} bytes`))

  // a header rspamd's answer cannot inject into; request headers stripped of control characters
  mode = 'ok'
  const v = await open.check(Buffer.from('x'), { ...ENVELOPE, rcpts: ['a@example.com', 'b@example.com'] })
  assert.equal(v.action, 'accept')
  assert.equal(v.headers, 'X-Spamd-Result: default: False [-0.50 / 15.00];\r\n\tX__Injected__yes(-0.50)[a?b?c,??Injected: yes]\r\n')
  const last = seen.at(-1)
  assert.ok(last !== undefined)
  assert.equal(last.rcpt, 'a@example.com, b@example.com', 'two Rcpt header lines (node joins them when reading)')
  assert.equal(last.helo, Buffer.from('h\u00e9lo', 'utf8').toString('latin1'), 'control characters dropped, UTF-8 kept')
  assert.equal(last['queue-id'], 'q1')
  assert.equal(last.user, undefined)
})

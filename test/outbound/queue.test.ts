// The outbound queue end to end on one node, with real parts: a private Postfix as the remote MTA and a private
// dnsmasq serving the remote domains' MX records. Submission over 587 and 465 reaches Postfix; a 4xx is retried
// until the remote takes it; a 550 comes back to the sender as an RFC 3464 report; a remote that stays away
// produces a delay notice, then a bounce; a null MX bounces at once; aliases forward outside; the operator's
// queue commands work; a restart with mail queued loses none; a notice to a sender that bounces is dropped,
// never bounced again, and nothing stays stuck.

import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import nodemailer from 'nodemailer'
import type { Store } from '../../store/index.ts'
import { startNode } from '../helpers/node.ts'
import type { TestNode } from '../helpers/node.ts'
import { isPostfixInstalled, startPostfix } from '../helpers/postfix.ts'
import type { PostfixServer } from '../helpers/postfix.ts'
import { isDnsmasqInstalled, startDns } from '../helpers/dns.ts'
import type { DnsServer } from '../helpers/dns.ts'
import { tempDir } from '../helpers/tmp.ts'
import { createDkimKey, dkimName, dkimTxt } from '../../node/mailauth/index.ts'
import { DKIMPY_VERIFY, pythonWith } from '../mailauth/helpers.ts'

const WAIT_MS = 30_000
const missing = !isPostfixInstalled() || !isDnsmasqInstalled() ? 'postfix and dnsmasq are needed (apt-get install postfix dnsmasq-base)' : false

let postfix: PostfixServer
let dns: DnsServer

before(async () => {
  if (missing !== false) return
  postfix = await startPostfix({ domains: ['remote.test', 'other.test'], host: '127.0.0.2' })
  dns = await startDns({
    records: {
      mx: [{ name: 'remote.test', host: 'mx.remote.test', preference: 10 }],
      address: [{ name: 'mx.remote.test', address: '127.0.0.2' }, { name: 'other.test', address: '127.0.0.2' }],
      nullMx: ['nullmx.test']
    }
  })
})

after(async () => {
  await postfix?.stop()
  await dns?.stop()
})

interface Setup extends TestNode { store: Store }

async function setup (t: { after: (fn: () => Promise<void>) => void }, opts: { dataDir?: string, retryMinMs?: number, delayNoticeMs?: number, bounceAfterMs?: number, inbound?: boolean } = {}): Promise<Setup> {
  const n = await startNode(t, {
    ...(opts.dataDir !== undefined ? { dataDir: opts.dataDir } : {}),
    ...(opts.inbound === true ? { inbound: { dmarcReject: true } } : {}),
    outbound: {
      dnsServers: [dns.server],
      port: postfix.port,
      relay: '',
      retryMinMs: opts.retryMinMs ?? 300,
      delayNoticeMs: opts.delayNoticeMs ?? 3600_000,
      bounceAfterMs: opts.bounceAfterMs ?? 3600_000
    }
  })
  const store = n.node.store
  if (await store.getDomain('example.com') === null) {
    await store.addDomain('example.com', { dkim: await createDkimKey('mgtest', Date.now()) })
    await store.addUser({ address: 'alice@example.com', password: 'alicepass' })
  }
  return { ...n, store }
}

function submit (s: Setup, opts: { port?: 'submission' | 'smtps', from?: string, to: string[], subject: string, body?: string, dsn?: Record<string, unknown> }): Promise<{ response: string }> {
  const secure = opts.port === 'smtps'
  const transport = nodemailer.createTransport({
    host: '127.0.0.1', port: s.port(opts.port ?? 'submission'), secure, requireTLS: !secure,
    auth: { user: 'alice@example.com', pass: 'alicepass' }, tls: { rejectUnauthorized: false }
  })
  return transport.sendMail({
    from: opts.from ?? 'alice@example.com', to: opts.to, subject: opts.subject, text: opts.body ?? `body of ${opts.subject}\n`,
    messageId: `<${opts.subject.replace(/\W/g, '')}.${Date.now()}@example.com>`,
    ...(opts.dsn !== undefined ? { dsn: opts.dsn } : {})
  }).finally(() => transport.close())
}

async function received (subject: string, count = 1): Promise<Buffer[]> {
  const deadline = Date.now() + WAIT_MS
  for (;;) {
    const got = (await postfix.messages()).filter(m => m.raw.includes(`Subject: ${subject}`)).map(m => m.raw)
    if (got.length >= count || Date.now() > deadline) return got
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

async function inboxWith (store: Store, user: string, needle: string, count = 1): Promise<string[]> {
  const deadline = Date.now() + WAIT_MS
  for (;;) {
    const box = await store.getMailbox(user, 'INBOX')
    assert.ok(box !== null)
    const texts: string[] = []
    for (const r of await store.listMessages(user, box.id)) texts.push((await store.readMessage(r)).toString('utf8'))
    const hits = texts.filter(x => x.includes(needle))
    if (hits.length >= count || Date.now() > deadline) return hits
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

async function queueEmpty (s: Setup): Promise<boolean> {
  const deadline = Date.now() + WAIT_MS
  while (Date.now() < deadline) {
    if ((await s.node.queue.list()).length === 0) return true
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  return false
}

test('submission over 587 and 465 reaches the remote MTA, over TLS, without our envelope line', { skip: missing }, async (t) => {
  const s = await setup(t)
  const r1 = await submit(s, { to: ['bob@remote.test'], subject: 'via587' })
  assert.match(r1.response, /^250 /)
  const r2 = await submit(s, { port: 'smtps', to: ['bob@remote.test', 'carol@remote.test'], subject: 'via465' })
  assert.match(r2.response, /^250 /)
  const [m1] = await received('via587')
  assert.ok(m1 !== undefined, 'the 587 message arrived')
  const text = m1.toString('latin1')
  assert.doesNotMatch(text, /X-Mailgrid-Envelope/i)
  assert.match(text, /^Return-Path: <alice@example\.com>/m)
  assert.match(text, /Received: from [^\r\n]*\r?\n\tby mx\.test \(mailgrid\) with ESMTPSA/, 'our trace line, authenticated over TLS')
  assert.match(text, /with ESMTPS id/, 'Postfix received it over STARTTLS')
  assert.equal((await received('via465', 2)).length, 2, 'both recipients of the 465 message')
  // DKIM: python3-dkim, an independent verifier, with the record `mailgrid dns records` tells the operator to publish
  const [key] = await s.store.dkimKeys('example.com')
  const records = JSON.stringify({ [dkimName('example.com', key.selector)]: dkimTxt(key) })
  for (const m of [m1, (await received('via465'))[0]]) {
    assert.match(m.toString('latin1'), /^DKIM-Signature: .*d=example\.com/m)
    const crlf = Buffer.from(m.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1') // the Maildir keeps LF
    assert.equal((await pythonWith(t, DKIMPY_VERIFY, crlf, [records])).stdout.trim(), 'pass', 'the signature verifies')
  }
  assert.ok(await queueEmpty(s), 'delivered messages leave the queue')
})

test('a 4xx is retried until the remote takes the message', { skip: missing }, async (t) => {
  const s = await setup(t)
  await postfix.setReplies({ 'later@remote.test': '450 4.2.0 try again later' })
  t.after(async () => { await postfix.setReplies({}) })
  await submit(s, { to: ['later@remote.test'], subject: 'retried' })
  const deadline = Date.now() + WAIT_MS
  let item = (await s.node.queue.list())[0]
  while ((item === undefined || item.attempts === 0) && Date.now() < deadline) {
    await new Promise(resolve => setTimeout(resolve, 100))
    item = (await s.node.queue.list())[0]
  }
  assert.ok(item !== undefined && item.attempts >= 1, 'one attempt was deferred')
  assert.match(item.lastError, /450 4\.2\.0/)
  assert.equal(item.rcpts[0].state, 'pending')
  await postfix.setReplies({})
  assert.equal((await received('retried')).length, 1, 'delivered on a later attempt')
  assert.ok(await queueEmpty(s))
})

test('a 550 comes back to the sender as a delivery status report', { skip: missing }, async (t) => {
  const s = await setup(t)
  await postfix.setReplies({ 'nobody@remote.test': '550 5.1.1 no such user here' })
  t.after(async () => { await postfix.setReplies({}) })
  await submit(s, { to: ['nobody@remote.test', 'bob@remote.test'], subject: 'halfbounce' })
  const [dsn] = await inboxWith(s.store, 'alice@example.com', 'Undelivered Mail Returned to Sender')
  assert.ok(dsn !== undefined, 'a bounce in the INBOX')
  assert.match(dsn, /^Return-Path: <>/)
  assert.match(dsn, /Content-Type: multipart\/report; report-type=delivery-status/)
  assert.match(dsn, /Final-Recipient: rfc822; nobody@remote\.test/)
  assert.match(dsn, /Action: failed/)
  assert.match(dsn, /Status: 5\.1\.1/)
  assert.match(dsn, /Diagnostic-Code: smtp; 550 5\.1\.1 [^\r\n]*no such user here/)
  assert.match(dsn, /Subject: halfbounce/, 'the original is returned')
  assert.doesNotMatch(dsn, /Final-Recipient: rfc822; bob@remote\.test/, 'the delivered recipient is not in the bounce')
  assert.equal((await received('halfbounce')).length, 1, 'the other recipient got it')
  assert.ok(await queueEmpty(s))
})

test('a remote that stays away: a delay notice, then a bounce; NOTIFY=NEVER gets neither', { skip: missing }, async (t) => {
  const s = await setup(t, { retryMinMs: 200, delayNoticeMs: 1000, bounceAfterMs: 3000 })
  await postfix.down()
  t.after(async () => { await postfix.up() })
  await submit(s, { to: ['away@remote.test'], subject: 'staysaway' })
  await submit(s, { to: ['quiet@remote.test'], subject: 'quietly', dsn: { notify: 'NEVER' } })
  const [delay] = await inboxWith(s.store, 'alice@example.com', 'Delayed Mail')
  assert.ok(delay !== undefined, 'a delay notice')
  assert.match(delay, /Action: delayed/)
  assert.match(delay, /Will-Retry-Until: /)
  assert.match(delay, /Final-Recipient: rfc822; away@remote\.test/)
  const [bounce] = await inboxWith(s.store, 'alice@example.com', 'Undelivered Mail Returned to Sender')
  assert.ok(bounce !== undefined, 'then a bounce')
  assert.match(bounce, /Status: 4\.4\.7/)
  assert.match(bounce, /Final-Recipient: rfc822; away@remote\.test/)
  assert.ok(await queueEmpty(s), 'both messages left the queue')
  const all = await inboxWith(s.store, 'alice@example.com', 'quiet@remote.test', 0)
  assert.equal(all.length, 0, 'NOTIFY=NEVER: no notice at all')
})

test('a null MX (RFC 7505) bounces at once', { skip: missing }, async (t) => {
  const s = await setup(t)
  await submit(s, { to: ['x@nullmx.test'], subject: 'tonullmx' })
  const [dsn] = await inboxWith(s.store, 'alice@example.com', 'x@nullmx.test')
  assert.ok(dsn !== undefined)
  assert.match(dsn, /Action: failed/)
  assert.match(dsn, /Status: 5\.1\.10/)
  assert.ok(await queueEmpty(s))
})

test('an alias forwards to an outside address through the queue, with SRS and an ARC seal; a domain with no MX gets its A record', { skip: missing }, async (t) => {
  const s = await setup(t, { inbound: true })
  await s.store.addAlias('fwd@example.com', ['alice@example.com', 'dave@other.test'])
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: s.port('smtp'), secure: false, ignoreTLS: true })
  t.after(() => transport.close())
  await transport.sendMail({ envelope: { from: 'sender@elsewhere.test', to: ['fwd@example.com'] }, raw: 'From: sender@elsewhere.test\r\nTo: fwd@example.com\r\nSubject: forwarded\r\n\r\nhello\r\n' })
  const [m] = await received('forwarded')
  assert.ok(m !== undefined, 'the outside target got it')
  const text = m.toString('latin1')
  assert.match(text, /Delivered-To: dave@other\.test/)
  assert.match(text, /^Return-Path: <SRS0=[^=]+=[A-Z2-7]{2}=elsewhere\.test=sender@example\.com>/m, 'the envelope sender rewritten by SRS')
  assert.match(text, /^ARC-Seal: i=1; [^\r\n]*d=example\.com/m, 'sealed with the alias domain\'s key')
  assert.match(text, /^ARC-Authentication-Results: i=1; mx\.test;/m)
  assert.equal((await inboxWith(s.store, 'alice@example.com', 'Subject: forwarded')).length, 1, 'the local target too')
})

test('queue commands: hold, release, retry, delete', { skip: missing }, async (t) => {
  const s = await setup(t, { retryMinMs: 60_000 })
  await postfix.down()
  let up = false
  t.after(async () => { if (!up) await postfix.up() })
  await submit(s, { to: ['held@remote.test'], subject: 'heldone' })
  await submit(s, { to: ['gone@remote.test'], subject: 'deletedone' })
  const deadline = Date.now() + WAIT_MS
  let items = await s.node.queue.list()
  while (items.filter(i => i.attempts > 0).length < 2 && Date.now() < deadline) {
    await new Promise(resolve => setTimeout(resolve, 100))
    items = await s.node.queue.list()
  }
  assert.equal(items.length, 2)
  const held = items.find(i => i.rcpts[0].address === 'held@remote.test')
  const gone = items.find(i => i.rcpts[0].address === 'gone@remote.test')
  assert.ok(held !== undefined && gone !== undefined)
  assert.ok(held.nextAttemptAt > Date.now() + 30_000, 'next attempt a minute away')
  assert.equal(await s.node.queue.hold(held.id), true)
  assert.equal((await s.node.queue.show(held.id))?.held, true)
  assert.equal(await s.node.queue.delete(gone.id), true)
  assert.equal(await s.node.queue.show(gone.id), null)
  assert.equal(await s.node.queue.delete('07-nosuchid'), false)
  const stats = await s.node.queue.stats()
  assert.equal(stats.grid.size, 1)
  assert.ok(stats.grid.oldestAgeMs > 0)
  await postfix.up()
  up = true
  assert.equal(await s.node.queue.retry('all'), 0, 'the only message left is held: a retry leaves it')
  await new Promise(resolve => setTimeout(resolve, 1500))
  assert.equal((await received('heldone', 0)).length, 0, 'held: not delivered by a retry')
  assert.equal((await s.node.queue.show(held.id))?.held, true, 'held: still queued')
  assert.equal(await s.node.queue.release(held.id), true)
  assert.equal((await received('heldone')).length, 1, 'released: delivered at once')
  assert.equal((await received('deletedone', 0)).length, 0, 'deleted: never delivered')
  assert.ok(await queueEmpty(s))
})

test('a restart with mail queued loses none', { skip: missing }, async (t) => {
  const dir = await tempDir(t)
  await postfix.down()
  let up = false
  t.after(async () => { if (!up) await postfix.up() })
  const first = await setup(t, { dataDir: dir, retryMinMs: 60_000 })
  for (let i = 0; i < 5; i++) await submit(first, { to: [`r${i}@remote.test`], subject: `restart${i}` })
  assert.equal((await first.node.queue.list()).length, 5)
  await first.node.stop()
  await postfix.up()
  up = true
  const second = await setup(t, { dataDir: dir, retryMinMs: 60_000 })
  assert.equal((await second.node.queue.list()).length, 5, 'all five still queued after the restart')
  await second.node.queue.retry('all')
  for (let i = 0; i < 5; i++) assert.equal((await received(`restart${i}`)).length, 1, `restart${i} delivered once`)
  assert.ok(await queueEmpty(second))
})

test('a notice to a sender that itself bounces is dropped, never bounced again', { skip: missing }, async (t) => {
  const s = await setup(t)
  await postfix.setReplies({ 'nobody@remote.test': '550 5.1.1 no such user', 'sender@remote.test': '550 5.1.1 sender gone too' })
  t.after(async () => { await postfix.setReplies({}) })
  await s.store.addAlias('relay@example.com', ['nobody@remote.test'])
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: s.port('smtp'), secure: false, ignoreTLS: true })
  t.after(() => transport.close())
  await transport.sendMail({ envelope: { from: 'sender@remote.test', to: ['relay@example.com'] }, raw: 'From: sender@remote.test\r\nSubject: doublebounce\r\n\r\nx\r\n' })
  assert.ok(await queueEmpty(s), 'the message, its bounce, and nothing more: the queue empties')
  const log = await postfix.log()
  assert.match(log, /sender@remote\.test/, 'the bounce was attempted to the remote sender')
})

test('a receiving mailgrid sees SPF, DKIM and DMARC pass for our mail', { skip: missing }, async (t) => {
  // the receiver: a second node on 127.0.0.4, checking inbound mail against the same DNS
  const receiver = await startNode(t, {
    hostname: 'mx.remote2.test', // another name than the sender's: the same name in its greeting would be a loop
    listen: { smtp: { host: '127.0.0.4', port: 0 }, submission: null, smtps: null, pop3: null, pop3s: null, imap: null, imaps: null },
    inbound: { dmarcReject: true },
    outbound: { dnsServers: [dns.server], port: 25, relay: '', retryMinMs: 1000, delayNoticeMs: 3600_000, bounceAfterMs: 3600_000 }
  })
  await receiver.node.store.addDomain('remote2.test')
  await receiver.node.store.addUser({ address: 'zoe@remote2.test', password: 'zoepass' })
  const sender = await startNode(t, {
    outbound: { dnsServers: [dns.server], port: receiver.port('smtp'), relay: '', retryMinMs: 300, delayNoticeMs: 3600_000, bounceAfterMs: 3600_000 }
  })
  const key = await createDkimKey('mgtest', Date.now())
  await sender.node.store.addDomain('example.com', { dkim: key })
  await sender.node.store.addUser({ address: 'alice@example.com', password: 'alicepass' })
  const base = {
    mx: [{ name: 'remote.test', host: 'mx.remote.test', preference: 10 }, { name: 'remote2.test', host: 'mx.remote2.test', preference: 10 }],
    address: [{ name: 'mx.remote.test', address: '127.0.0.2' }, { name: 'other.test', address: '127.0.0.2' }, { name: 'mx.remote2.test', address: '127.0.0.4' }],
    nullMx: ['nullmx.test']
  }
  await dns.setRecords({
    ...base,
    txt: [
      { name: 'example.com', text: 'v=spf1 ip4:127.0.0.0/8 -all' },
      { name: dkimName('example.com', key.selector), text: dkimTxt(key) },
      { name: '_dmarc.example.com', text: 'v=DMARC1; p=reject' }
    ]
  })
  t.after(async () => { await dns.setRecords(base) })
  await submit({ ...sender, store: sender.node.store }, { to: ['zoe@remote2.test'], subject: 'authenticated' })
  const [got] = await inboxWith(receiver.node.store, 'zoe@remote2.test', 'Subject: authenticated')
  assert.ok(got !== undefined, 'delivered to the receiving node')
  const ar = /^Authentication-Results: [^\r\n]*(\r\n[ \t][^\r\n]*)*/m.exec(got)?.[0] ?? ''
  assert.match(ar, /spf=pass/)
  assert.match(ar, /dkim=pass[^;]*header\.d=example\.com/)
  assert.match(ar, /dmarc=pass/)
})

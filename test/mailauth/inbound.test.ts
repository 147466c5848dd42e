// Sender authentication on the MX of a real running node, with a private dnsmasq publishing the senders' SPF,
// DKIM and DMARC records and clients connecting from chosen loopback addresses (127.0.0.2 is the senders'
// permitted server, 127.0.0.3 is not). Each case checks the Authentication-Results on top of the stored copy
// and the outcome: INBOX, Junk (p=quarantine, or p=reject with dmarcReject = false) or 550 5.7.1 (p=reject).

import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import nodemailer from 'nodemailer'
import pino from 'pino'
import { dkimSign } from 'mailauth'
import type { DkimKey, Store } from '../../store/index.ts'
import { createDkimKey, dkimName, dkimTxt } from '../../node/mailauth/index.ts'
import { startNode } from '../helpers/node.ts'
import { isDnsmasqInstalled, startDns } from '../helpers/dns.ts'
import type { DnsServer } from '../helpers/dns.ts'

const missing = isDnsmasqInstalled() ? false : 'dnsmasq is needed (apt-get install dnsmasq-base)'
const GOOD_IP = '127.0.0.2'
const BAD_IP = '127.0.0.3'

let dns: DnsServer
let key: DkimKey

before(async () => {
  if (missing !== false) return
  key = await createDkimKey('s1', Date.now())
  const txt: Array<{ name: string, text: string }> = []
  // pass.test: SPF -all, DKIM key, DMARC p=reject; soft.test: SPF ~all, DMARC p=quarantine; none.test: no records
  for (const [d, spf, dmarc] of [['pass.test', '-all', 'reject'], ['soft.test', '~all', 'quarantine']]) {
    txt.push({ name: d, text: `v=spf1 ip4:${GOOD_IP} ${spf}` })
    txt.push({ name: `_dmarc.${d}`, text: `v=DMARC1; p=${dmarc}` })
    txt.push({ name: dkimName(d, 's1'), text: dkimTxt(key) })
  }
  dns = await startDns({ records: { txt } })
})

after(async () => { await dns?.stop() })

async function mx (t: { after: (fn: () => Promise<void>) => void }, opts: { dmarcReject?: boolean, dnsServers?: string[], logger?: pino.Logger } = {}): Promise<{ store: Store, port: number }> {
  const n = await startNode(t, {
    inbound: { dmarcReject: opts.dmarcReject ?? true, threads: 1 }, // the checks on a thread, as the appliance runs them
    outbound: { dnsServers: opts.dnsServers ?? [dns.server], port: 25, relay: '', retryMinMs: 300_000, delayNoticeMs: 3600_000, bounceAfterMs: 3600_000 }
  }, opts.logger === undefined ? {} : { logger: opts.logger })
  await n.node.store.addDomain('example.com')
  await n.node.store.addUser({ address: 'bob@example.com', password: 'bobpass' })
  return { store: n.node.store, port: n.port('smtp') }
}

function message (from: string, body = 'Hello Bob,\r\nthe figures are attached.\r\n'): Buffer {
  return Buffer.from(`From: Sender <${from}>\r\nTo: bob@example.com\r\nSubject: figures\r\nDate: Fri, 04 Dec 2026 21:00:00 +0000\r\nMessage-ID: <${Math.random().toString(36).slice(2)}@x>\r\n\r\n${body}`)
}

async function signed (raw: Buffer, domain: string): Promise<Buffer> {
  const sig = { signingDomain: domain, selector: 's1', privateKey: key.privateKey }
  const res = await dkimSign(raw, { ...sig, signatureData: [sig] })
  assert.equal(res.errors.length, 0)
  return Buffer.concat([Buffer.from(res.signatures), raw])
}

async function send (port: number, ip: string, mailFrom: string, raw: Buffer): Promise<string> {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, localAddress: ip, name: 'client.sender.test', connectionTimeout: 10_000, socketTimeout: 30_000 })
  try {
    const info = await transport.sendMail({ envelope: { from: mailFrom, to: ['bob@example.com'] }, raw })
    return info.response
  } finally {
    transport.close()
  }
}

/** The copies in a mailbox, each as its text. */
async function box (store: Store, name: string): Promise<string[]> {
  const b = await store.getMailbox('bob@example.com', name)
  assert.ok(b !== null)
  return await Promise.all((await store.listMessages('bob@example.com', b.id)).map(async r => (await store.readMessage(r)).toString('utf8')))
}

/** The top header field of a stored copy, unfolded: it must be our Authentication-Results. */
function topAuthResults (copy: string): string {
  const m = /^Authentication-Results: ((?:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*))\r\n/.exec(copy)
  assert.ok(m !== null, `the copy starts with Authentication-Results:\n${copy.slice(0, 400)}`)
  return m[1].replace(/\r\n[ \t]+/g, ' ')
}

test('inbound: SPF pass, DKIM pass, DMARC pass: INBOX, results on top above Received', { skip: missing }, async (t) => {
  const { store, port } = await mx(t)
  assert.match(await send(port, GOOD_IP, 'alice@pass.test', await signed(message('alice@pass.test'), 'pass.test')), /^250 /)
  const [copy] = await box(store, 'INBOX')
  const ar = topAuthResults(copy)
  assert.match(ar, /^mx\.test;/, 'authserv-id is the node\'s hostname')
  assert.match(ar, /\bspf=pass\b[^;]*smtp\.mailfrom=(alice@)?pass\.test/)
  assert.match(ar, /\bdkim=pass\b[^;]*header\.i=@pass\.test/)
  assert.match(ar, /\bdmarc=pass\b[^;]*header\.from=pass\.test/)
  assert.ok(copy.indexOf('Authentication-Results:') < copy.indexOf('\r\nReceived: from '), 'above our Received header')
  assert.match(copy, /\r\nReceived-SPF: pass /)
})

test('inbound: one info line per delivered message, smtp_delivered, carrying the sender authentication results', { skip: missing }, async (t) => {
  // issue 13: logging must cost little; the results were a second info line per message ('sender authentication')
  const lines: Array<Record<string, unknown>> = []
  const logger = pino({ level: 'info' }, { write: (line: string) => { lines.push(JSON.parse(line) as Record<string, unknown>) } })
  const { port } = await mx(t, { logger })
  assert.match(await send(port, GOOD_IP, 'alice@pass.test', await signed(message('alice@pass.test'), 'pass.test')), /^250 /)
  assert.match(await send(port, GOOD_IP, 'carol@none.test', message('carol@none.test')), /^250 /)
  const delivered = lines.filter(l => l.msg === 'smtp_delivered')
  assert.equal(delivered.length, 2, 'one smtp_delivered line per message')
  assert.deepEqual([delivered[0].from, delivered[0].spf, delivered[0].dkim, delivered[0].dmarc], ['alice@pass.test', 'pass', 'pass', 'pass'])
  assert.deepEqual([delivered[1].from, delivered[1].spf, delivered[1].dkim, delivered[1].dmarc], ['carol@none.test', 'none', 'none', 'none'])
  assert.equal(delivered[0].action, undefined, 'an accepted message names no action')
  assert.deepEqual(lines.filter(l => l.event === 'inbound_auth'), [], 'no second info line per message')
})

test('inbound: SPF fail with a valid aligned DKIM signature: DMARC passes, INBOX', { skip: missing }, async (t) => {
  const { store, port } = await mx(t)
  assert.match(await send(port, BAD_IP, 'alice@pass.test', await signed(message('alice@pass.test'), 'pass.test')), /^250 /)
  const ar = topAuthResults((await box(store, 'INBOX'))[0])
  assert.match(ar, /\bspf=fail\b/)
  assert.match(ar, /\bdkim=pass\b/)
  assert.match(ar, /\bdmarc=pass\b/)
})

test('inbound: SPF pass without DKIM: dkim=none, DMARC passes on SPF alignment', { skip: missing }, async (t) => {
  const { store, port } = await mx(t)
  assert.match(await send(port, GOOD_IP, 'alice@pass.test', message('alice@pass.test')), /^250 /)
  const ar = topAuthResults((await box(store, 'INBOX'))[0])
  assert.match(ar, /\bspf=pass\b/)
  assert.match(ar, /\bdkim=none\b/)
  assert.match(ar, /\bdmarc=pass\b/)
})

test('inbound: SPF fail, DKIM absent, DMARC p=reject: 550 5.7.1, nothing stored', { skip: missing }, async (t) => {
  const { store, port } = await mx(t)
  await assert.rejects(send(port, BAD_IP, 'alice@pass.test', message('alice@pass.test')), (err: Error & { responseCode?: number, response?: string }) => {
    assert.equal(err.responseCode, 550)
    assert.match(err.response ?? '', /^550 5\.7\.1 .*DMARC.*pass\.test/)
    return true
  })
  assert.equal((await box(store, 'INBOX')).length, 0)
  assert.equal((await box(store, 'Junk')).length, 0)
})

test('inbound: p=reject failure with dmarcReject = false goes to Junk instead', { skip: missing }, async (t) => {
  const { store, port } = await mx(t, { dmarcReject: false })
  assert.match(await send(port, BAD_IP, 'alice@pass.test', message('alice@pass.test')), /^250 /)
  assert.equal((await box(store, 'INBOX')).length, 0)
  const ar = topAuthResults((await box(store, 'Junk'))[0])
  assert.match(ar, /\bspf=fail\b/)
  assert.match(ar, /\bdmarc=fail\b/)
})

test('inbound: SPF softfail and DKIM fail (body altered after signing), DMARC p=quarantine: Junk', { skip: missing }, async (t) => {
  const { store, port } = await mx(t)
  const tampered = Buffer.from((await signed(message('carol@soft.test'), 'soft.test')).toString().replace('the figures', 'new bank details'))
  assert.match(await send(port, BAD_IP, 'carol@soft.test', tampered), /^250 /)
  assert.equal((await box(store, 'INBOX')).length, 0)
  const [copy] = await box(store, 'Junk')
  const ar = topAuthResults(copy)
  assert.match(ar, /\bspf=softfail\b/)
  assert.match(ar, /\bdkim=fail\b[^;]*header\.i=@soft\.test/)
  assert.match(ar, /\bdmarc=fail\b[^;]*header\.from=soft\.test/)
  assert.match(copy, /new bank details/, 'the message itself is unchanged')
})

test('inbound: a sender domain without records: spf=none, dkim=none, dmarc=none, INBOX', { skip: missing }, async (t) => {
  const { store, port } = await mx(t)
  assert.match(await send(port, BAD_IP, 'dave@none.test', message('dave@none.test')), /^250 /)
  const ar = topAuthResults((await box(store, 'INBOX'))[0])
  assert.match(ar, /\bspf=none\b/)
  assert.match(ar, /\bdkim=none\b/)
  assert.match(ar, /\bdmarc=none\b/)
})

test('inbound: DNS that refuses every query: accepted with temperror (fail open)', { skip: missing }, async (t) => {
  // a UDP port nobody listens on: every query is refused at once
  const sock = createSocket('udp4')
  await new Promise<void>(resolve => sock.bind(0, '127.0.0.1', () => resolve()))
  const deadPort = sock.address().port
  await new Promise<void>(resolve => sock.close(() => resolve()))
  const { store, port } = await mx(t, { dnsServers: [`127.0.0.1:${deadPort}`] })
  const started = Date.now()
  assert.match(await send(port, BAD_IP, 'alice@pass.test', message('alice@pass.test')), /^250 /)
  assert.ok(Date.now() - started < 20_000, 'bounded time')
  const ar = topAuthResults((await box(store, 'INBOX'))[0])
  assert.match(ar, /\b(spf|dmarc)=temperror\b/)
})

test('inbound: Authentication-Results forged under our name are removed, others kept (RFC 8601 5)', { skip: missing }, async (t) => {
  const { store, port } = await mx(t)
  const forged = Buffer.concat([
    Buffer.from('Authentication-Results: mx.test;\r\n\tdmarc=pass header.from=pass.test\r\nAuthentication-Results: (comment) MX.TEST 1; spf=pass\r\nAuthentication-Results: relay.elsewhere.test; spf=pass smtp.mailfrom=x.test\r\n'),
    message('alice@pass.test')
  ])
  await assert.rejects(send(port, BAD_IP, 'alice@pass.test', forged), /550 5\.7\.1/, 'the forgery does not help: still refused')
  assert.match(await send(port, GOOD_IP, 'alice@pass.test', forged), /^250 /)
  const [copy] = await box(store, 'INBOX')
  assert.equal(copy.match(/^Authentication-Results: (\(comment\) )?mx\.test/gim)?.length, 1, 'only ours')
  assert.match(topAuthResults(copy), /\bspf=pass\b/)
  assert.match(copy, /\r\nAuthentication-Results: relay\.elsewhere\.test; spf=pass smtp\.mailfrom=x\.test\r\n/)
})

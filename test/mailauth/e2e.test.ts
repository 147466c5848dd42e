// Two real nodes and a private dnsmasq: mail submitted on node A (domain a.test) leaves through A's outbound
// queue signed with a.test's DKIM key and arrives at node B's MX (domain b.test), whose check finds SPF, DKIM and
// DMARC passing for it, with the records `dns records` tells the operator to publish. Then an alias of B that
// forwards back to A: B rewrites the sender with SRS and seals with ARC; A's check sees SPF pass for B's
// domain, the original DKIM signature intact and the ARC chain passing.

import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import nodemailer from 'nodemailer'
import type { Store } from '../../store/index.ts'
import { createDkimKey, dkimName, dkimTxt } from '../../node/mailauth/index.ts'
import { startNode } from '../helpers/node.ts'
import type { TestNode } from '../helpers/node.ts'
import { isDnsmasqInstalled, startDns } from '../helpers/dns.ts'
import type { DnsRecords, DnsServer } from '../helpers/dns.ts'

const missing = isDnsmasqInstalled() ? false : 'dnsmasq is needed (apt-get install dnsmasq-base)'
const WAIT_MS = 30_000

let dns: DnsServer
before(async () => { if (missing === false) dns = await startDns({ records: {} }) })
after(async () => { await dns?.stop() })

async function node (t: { after: (fn: () => Promise<void>) => void }, hostname: string, mxPort: number): Promise<TestNode & { store: Store }> {
  const n = await startNode(t, {
    hostname,
    plaintextAuthOnLoopback: true,
    inbound: { dmarcReject: true },
    outbound: { dnsServers: [dns.server], port: mxPort, relay: '', retryMinMs: 200, delayNoticeMs: 3600_000, bounceAfterMs: 3600_000 }
  })
  return { ...n, store: n.node.store }
}

async function waitFor (store: Store, user: string, needle: string): Promise<string> {
  const deadline = Date.now() + WAIT_MS
  for (;;) {
    const box = await store.getMailbox(user, 'INBOX')
    assert.ok(box !== null)
    for (const r of await store.listMessages(user, box.id)) {
      const text = (await store.readMessage(r)).toString('utf8')
      if (text.includes(needle)) return text
    }
    assert.ok(Date.now() < deadline, `${needle} reached ${user} within ${WAIT_MS} ms`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

function authResults (copy: string): string {
  const m = /^Authentication-Results: ((?:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*))\r\n/.exec(copy)
  assert.ok(m !== null, copy.slice(0, 600))
  return m[1].replace(/\r\n[ \t]+/g, ' ')
}

test('A signs, B verifies: spf=pass dkim=pass dmarc=pass; B forwards back with SRS and ARC: A sees spf=pass arc=pass', { skip: missing }, async (t) => {
  // B first: its MX port is where A delivers (outbound.port); A's MX port is where B forwards
  const b = await node(t, 'mx.b.test', 0)
  const a = await node(t, 'mx.a.test', b.port('smtp'))
  // a node has one outbound port (tests point it at their receiver), so the forwarding side of b.test is a second
  // node whose outbound port is A's MX
  const bFwd = await node(t, 'mx.b.test', a.port('smtp'))
  for (const [n, d] of [[a, 'a.test'], [b, 'b.test'], [bFwd, 'b.test']] as const) {
    await n.store.addDomain(d, { dkim: await createDkimKey('mg202612', Date.now()) })
  }
  await a.store.addUser({ address: 'alice@a.test', password: 'alicepass' })
  await a.store.addUser({ address: 'ann@a.test', password: 'annpass' })
  await b.store.addUser({ address: 'bob@b.test', password: 'bobpass' })
  await bFwd.store.addAlias('list@b.test', ['ann@a.test'])
  const [aKey] = await a.store.dkimKeys('a.test')
  const [bKey] = await bFwd.store.dkimKeys('b.test')
  // what `mailgrid dns records` prints for each domain: MX to the node, SPF "mx -all", the DKIM key, DMARC
  const records: DnsRecords = {
    mx: [{ name: 'a.test', host: 'mx.a.test', preference: 10 }, { name: 'b.test', host: 'mx.b.test', preference: 10 }],
    address: [{ name: 'mx.a.test', address: '127.0.0.1' }, { name: 'mx.b.test', address: '127.0.0.1' }],
    txt: [
      { name: 'a.test', text: 'v=spf1 mx -all' }, { name: 'b.test', text: 'v=spf1 mx -all' },
      { name: dkimName('a.test', aKey.selector), text: dkimTxt(aKey) }, { name: dkimName('b.test', bKey.selector), text: dkimTxt(bKey) },
      { name: '_dmarc.a.test', text: 'v=DMARC1; p=reject; rua=mailto:dmarc@a.test' }, { name: '_dmarc.b.test', text: 'v=DMARC1; p=quarantine; rua=mailto:dmarc@b.test' }
    ]
  }
  await dns.setRecords(records)

  const submit = async (to: string, subject: string): Promise<void> => {
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: a.port('submission'), secure: false, ignoreTLS: true, auth: { user: 'alice@a.test', pass: 'alicepass' } })
    try {
      const info = await transport.sendMail({ from: 'Alice <alice@a.test>', to, subject, text: `${subject}\n`, messageId: `<${subject}@a.test>` })
      assert.match(info.response, /^250 /)
    } finally { transport.close() }
  }

  await submit('bob@b.test', 'direct')
  const direct = await waitFor(b.store, 'bob@b.test', 'Subject: direct')
  const ar = authResults(direct)
  assert.match(ar, /^mx\.b\.test;/)
  assert.match(ar, /\bdkim=pass\b[^;]*header\.i=@a\.test/)
  assert.match(ar, /\bspf=pass\b[^;]*smtp\.mailfrom=(alice@)?a\.test/)
  assert.match(ar, /\bdmarc=pass\b[^;]*header\.from=a\.test/)

  // forwarded through b.test's alias back to A: enveloped as SRS0=...@b.test, sealed by b.test. A's outbound port is
  // B's, so the message is signed with a.test's key here and handed to the forwarding node as A's server would
  const { dkimSign } = await import('mailauth')
  const raw = Buffer.from(`From: Alice <alice@a.test>\r\nTo: list@b.test\r\nSubject: forwarded\r\nDate: ${new Date().toUTCString()}\r\nMessage-ID: <fwd@a.test>\r\n\r\nvia the list\r\n`)
  const sig = { signingDomain: 'a.test', selector: aKey.selector, privateKey: aKey.privateKey }
  const signed = Buffer.concat([Buffer.from((await dkimSign(raw, { ...sig, signatureData: [sig] })).signatures), raw])
  const t2 = nodemailer.createTransport({ host: '127.0.0.1', port: bFwd.port('smtp'), secure: false, ignoreTLS: true })
  try {
    assert.match((await t2.sendMail({ envelope: { from: 'alice@a.test', to: ['list@b.test'] }, raw: signed })).response, /^250 /)
  } finally { t2.close() }
  const forwarded = await waitFor(a.store, 'ann@a.test', 'Subject: forwarded')
  const far = authResults(forwarded)
  assert.match(far, /^mx\.a\.test;/)
  assert.match(far, /\bspf=pass\b[^;]*smtp\.mailfrom=(SRS0=[^@;]+@)?b\.test/i, 'SPF passes for the rewritten sender\'s domain')
  assert.match(far, /\bdkim=pass\b[^;]*header\.i=@a\.test/, 'the original signature survives forwarding')
  assert.match(far, /\barc=pass\b/)
  assert.match(far, /\bdmarc=pass\b/)
  assert.match(forwarded, /^Return-Path: <SRS0=[A-Za-z0-9+/]{4}=[A-Z2-7]{2}=a\.test=alice@b\.test>/m)
  assert.match(forwarded, /^ARC-Seal: i=1; .*d=b\.test/m)
})

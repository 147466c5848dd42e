// An unsigned message is checked from its header block alone (verify.ts unsignedHeaderBlock): the header block is cut
// where mailauth's own parser ends it, any sign of a DKIM or ARC signature keeps the whole message, and mailauth
// gives the same results and header fields for the header block as for the whole message, against a private dnsmasq
// publishing the sender's SPF, DKIM and DMARC records. A signed message is still checked whole: a body changed after
// signing fails DKIM.

import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { authenticate, dkimSign } from 'mailauth'
import type { DkimKey } from '../../store/index.ts'
import { createDkimKey, createInboundChecker, createResolver, dkimName, dkimTxt } from '../../node/mailauth/index.ts'
import { authorFields, unsignedHeaderBlock } from '../../node/mailauth/verify.ts'
import { isDnsmasqInstalled, startDns } from '../helpers/dns.ts'
import type { DnsServer } from '../helpers/dns.ts'
import { quiet } from './helpers.ts'

const missing = isDnsmasqInstalled() ? false : 'dnsmasq is needed (apt-get install dnsmasq-base)'
const GOOD_IP = '192.0.2.1'
const BAD_IP = '192.0.2.66'

let dns: DnsServer
let key: DkimKey

before(async () => {
  if (missing !== false) return
  key = await createDkimKey('s1', Date.now())
  dns = await startDns({
    records: {
      txt: [
        { name: 'origin.test', text: `v=spf1 ip4:${GOOD_IP} -all` },
        { name: '_dmarc.origin.test', text: 'v=DMARC1; p=reject' },
        { name: dkimName('origin.test', 's1'), text: dkimTxt(key) }
      ]
    }
  })
})

after(async () => { await dns?.stop() })

const HEAD = 'From: Alice <alice@origin.test>\r\nTo: bob@example.com\r\nSubject: figures\r\nMessage-ID: <m1@origin.test>\r\n'
const BODY = 'Hello Bob,\r\nthe figures are attached.\r\n'

test('the header block is cut where mailauth ends it; a possible signature keeps the whole message', () => {
  const cut = (s: string): string | null => unsignedHeaderBlock(Buffer.from(s, 'latin1'))?.toString('latin1') ?? null
  assert.equal(cut(`${HEAD}\r\n${BODY}`), `${HEAD}\r\n`)
  assert.equal(cut('From: a@b.test\nSubject: x\n\nbody\n'), 'From: a@b.test\nSubject: x\n\n', 'bare LF')
  assert.equal(cut('From: a@b.test\nSubject: x\n\r\nbody\r\n'), 'From: a@b.test\nSubject: x\n\r\n', 'LF then CRLF')
  assert.equal(cut('From: a@b.test\r\n\nbody\r\n\r\nmore'), 'From: a@b.test\r\n\n', 'CRLF then LF: the first empty line ends it')
  assert.equal(cut('\r\nFrom: a@b.test\r\n\r\nbody'), '\r\n', 'an empty first line: an empty header block')
  assert.equal(cut('\nFrom: a@b.test\n\nbody'), '\n')
  assert.equal(cut(`${HEAD}${BODY}`), null, 'no empty line: no end of the header block')
  assert.equal(cut(`${HEAD}\r\n`), null, 'no body: nothing to leave out')
  assert.equal(cut(`DKIM-Signature: v=1; a=rsa-sha256; d=origin.test; s=s1;\r\n\tbh=x; b=y\r\n${HEAD}\r\n${BODY}`), null)
  assert.equal(cut(`${HEAD}dkim-signature: v=1\r\n\r\n${BODY}`), null, 'in any case')
  assert.equal(cut(`ARC-Seal: i=1; a=rsa-sha256; cv=none; d=fwd.test; s=s; b=z\r\n${HEAD}\r\n${BODY}`), null)
  assert.equal(cut(`${HEAD}X-Note: about DKIM-Signature\r\n\r\n${BODY}`), null, 'a mark inside another field keeps the whole message too')
  assert.equal(cut(`${HEAD}\r\nDKIM-Signature: in the body\r\n`), `${HEAD}\r\n`, 'a mark in the body is body')
})

test('mailauth gives the same results and header fields for an unsigned message and its From fields', { skip: missing }, async () => {
  const resolver = createResolver([dns.server]).resolve
  const messages = [
    `${HEAD}\r\n${BODY}`,
    `${HEAD.replace(/\r\n/g, '\n')}\n${BODY.replace(/\r\n/g, '\n')}`,
    `${HEAD}Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nDKIM-Signature: not a header here\r\n\r\nx\r\n--b--\r\n`,
    `From: Mallory <m@origin.test>\r\nFrom: Alice <alice@origin.test>\r\nSubject: two authors\r\n\r\n${BODY}`,
    `\r\nFrom: Alice <alice@origin.test>\r\n\r\n${BODY}`,
    // what authorFields keeps and leaves: trace fields, a Return-Path, folded and oddly written From fields, none
    `Return-Path: <bounce@other.test>\r\nReceived: from host.origin.test ([${GOOD_IP}]) by mx.test;\r\n Sat, 5 Dec 2026 10:00:00 +0000\r\n${HEAD}\r\n${BODY}`,
    `From: "Alice, the sender"\r\n <alice@origin.test>\r\nSubject: folded\r\n\r\n${BODY}`,
    `From\r\n : Alice <alice@origin.test>\r\nSubject: a fold between the name and the colon\r\n\r\n${BODY}`,
    `FROM :alice@origin.test\r\nfrom: other@else.test\r\n\r\n${BODY}`,
    `To: bob@example.com\r\nSubject: no author\r\n\r\n${BODY}`,
    `From: undisclosed:;\r\nSubject: an empty group\r\n\r\n${BODY}`
  ]
  let compared = 0
  for (const text of messages) {
    const whole = Buffer.from(text, 'latin1')
    const head = unsignedHeaderBlock(whole)
    assert.ok(head !== null && head.length < whole.length, text.slice(0, 40))
    for (const [ip, sender] of [[GOOD_IP, 'alice@origin.test'], [BAD_IP, 'alice@origin.test'], [GOOD_IP, '']]) {
      const opts = { ip, helo: 'host.origin.test', sender, mta: 'mx.test', resolver, strict: true, disableBimi: true }
      const a = await authenticate(whole, opts as never)
      const b = await authenticate(authorFields(head), opts as never)
      const pick = (r: typeof a): unknown => ({
        headers: r.headers,
        spf: r.spf === false ? false : r.spf.status,
        dkim: (r.dkim?.results ?? []).map((x) => x.status),
        dmarc: r.dmarc === false ? false : { status: r.dmarc.status, policy: r.dmarc.policy },
        arc: r.arc === false ? false : r.arc.status
      })
      assert.deepEqual(pick(b), pick(a), `${text.slice(0, 40)} from ${ip}, sender '${sender}'`)
      assert.equal(b.dmarcSkipReason, a.dmarcSkipReason)
      compared++
    }
  }
  assert.equal(compared, 3 * messages.length)
})

test('a signed message is still checked whole: pass as signed, fail once its body changed', { skip: missing }, async () => {
  const raw = Buffer.from(`${HEAD}\r\n${BODY}`, 'latin1')
  const sig = { signingDomain: 'origin.test', selector: 's1', privateKey: key.privateKey }
  const res = await dkimSign(raw, { ...sig, signatureData: [sig] })
  const good = Buffer.concat([Buffer.from(res.signatures), raw])
  const tampered = Buffer.from(good.toString('latin1').replace('the figures', 'new bank details'), 'latin1')
  const checker = createInboundChecker({ logger: quiet }, { hostname: 'mx.test', dmarcReject: true, dnsServers: [dns.server] })
  const ctx = { ip: BAD_IP, helo: 'host.origin.test', mailFrom: 'alice@origin.test' }
  const [a, b, c] = [await checker.check(good, ctx), await checker.check(tampered, ctx), await checker.check(raw, ctx)]
  assert.deepEqual([a.results.dkim, a.results.dmarc, a.action], ['pass', 'pass', 'accept'])
  assert.deepEqual([b.results.dkim, b.results.dmarc, b.action], ['fail', 'fail', 'reject'])
  assert.deepEqual([c.results.dkim, c.results.dmarc, c.action], ['none', 'fail', 'reject'], 'unsigned, from another server')
})

// SRS: our rewriting against an independent implementation (Debian's python3-srs, the Python port of the
// reference Mail::SRS), both ways and through a second forwarder (SRS1); tampering and age are refused; and
// ARC sealing of a forwarded message, verified by mailauth's ARC validation.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { authenticate } from 'mailauth'
import fc from 'fast-check'
import { createArcSealer, createDkimKey, createInboundChecker, createSrs, dkimName, dkimTxt, isSrs, SrsError, srsSecret } from '../../node/mailauth/index.ts'
import { PYTHON, PYTHON_PACKAGES, quiet, tableResolver, testStore } from './helpers.ts'

const SECRET = 'shared-with-pysrs-0123456789abcdef' // pysrs keys its HMAC with the secret's text
const DAY_MS = 86_400_000

/** pysrs: `forward SENDER ALIAS SECRET` or `reverse ADDRESS SECRET`, one per line of argv; prints results or ERR. */
async function pysrs (ops: Array<[string, ...string[]]>): Promise<string[]> {
  const script = `
import sys, json, SRS
out = []
for op in json.loads(sys.argv[1]):
    s = SRS.new(secret=op[-1], maxage=21, hashlength=4, separator='=', alwaysrewrite=True)
    try:
        out.append(s.forward(op[1], op[2]) if op[0] == 'forward' else s.reverse(op[1]))
    except Exception as e:
        out.append('ERR ' + str(e))
print(json.dumps(out))
`
  return await new Promise((resolve, reject) => {
    const c = spawn(PYTHON, ['-c', script, JSON.stringify(ops)], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    c.stdout.on('data', d => { out += d })
    c.stderr.on('data', d => { err += d })
    const timer = setTimeout(() => c.kill('SIGKILL'), 30_000)
    c.on('error', reject)
    c.on('close', code => { clearTimeout(timer); code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`${err.trim()} (apt-get install ${PYTHON_PACKAGES})`)) })
  })
}

test('SRS0 round trip, and agreement with python3-srs both ways', async () => {
  const srs = createSrs({ secret: Buffer.from(SECRET) })
  const senders = ['alice@origin.test', 'Bob.Smith+tag@Sub.Origin.test', 'a=b@origin.test', 'x-y@origin.test']
  const ours = senders.map(s => srs.forward(s, 'fwd.test'))
  for (const [i, a] of ours.entries()) {
    assert.match(a, /^SRS0=[A-Za-z0-9+/]{4}=[A-Z2-7]{2}=[^=@]+=.+@fwd\.test$/)
    assert.ok(isSrs(a))
    assert.equal(srs.reverse(a), senders[i])
  }
  // their reverse of our addresses, our reverse of theirs
  assert.deepEqual(await pysrs(ours.map(a => ['reverse', a, SECRET])), senders)
  const theirs = await pysrs(senders.map(s => ['forward', s, 'fwd.test', SECRET]))
  assert.deepEqual(theirs, ours, 'the same address from the same secret on the same day')
  assert.deepEqual(theirs.map(a => srs.reverse(a)), senders)
  assert.equal(srs.forward('', 'fwd.test'), '', 'the null sender stays null')
  assert.equal(srs.reverse('alice@fwd.test'), null, 'not SRS')
})

test('SRS1: a second forwarder keeps the first; each reverses its own step', async () => {
  const first = createSrs({ secret: Buffer.from(SECRET) })
  const second = createSrs({ secret: Buffer.from('another-grid-secret-0123456789') })
  const hop1 = first.forward('alice@origin.test', 'one.test')
  const hop2 = second.forward(hop1, 'two.test')
  assert.match(hop2, /^SRS1=[A-Za-z0-9+/]{4}=one\.test==[A-Za-z0-9+/]{4}=[A-Z2-7]{2}=origin\.test=alice@two\.test$/)
  assert.equal(second.reverse(hop2), hop1)
  assert.equal(first.reverse(second.reverse(hop2)!), 'alice@origin.test')
  // python3-srs as the second forwarder, and as the reverser of ours
  const [theirHop2, theirBack] = await pysrs([['forward', hop1, 'two.test', 'another-grid-secret-0123456789'], ['reverse', hop2, 'another-grid-secret-0123456789']])
  assert.equal(theirHop2, hop2)
  assert.equal(theirBack, hop1)
  // a third forwarder rewrites SRS1 again, pointing back at the first one still
  const third = createSrs({ secret: Buffer.from('third-grid-secret-0123456789') })
  const hop3 = third.forward(hop2, 'three.test')
  assert.match(hop3, /^SRS1=[^=]{4}=one\.test==/)
  assert.equal(third.reverse(hop3), hop1)
})

test('SRS: a forged hash, another grid\'s secret and an old address are refused', () => {
  let now = Date.UTC(2026, 11, 4)
  const srs = createSrs({ secret: Buffer.from(SECRET), now: () => now })
  const a = srs.forward('alice@origin.test', 'fwd.test')
  const forged = a.replace(/^SRS0=..../, 'SRS0=AAAA')
  assert.throws(() => srs.reverse(forged), SrsError)
  assert.throws(() => createSrs({ secret: Buffer.from('not-our-secret-0123456789') }).reverse(a), SrsError)
  assert.throws(() => srs.reverse(a.replace('alice', 'mallory')), SrsError, 'the hash covers the address')
  assert.equal(srs.reverse(a.toLowerCase()), 'alice@origin.test', 'a local part lower-cased on the way still reverses')
  now += 21 * DAY_MS
  assert.equal(srs.reverse(a), 'alice@origin.test', 'three weeks: still good')
  now += DAY_MS
  assert.throws(() => srs.reverse(a), /expired/)
  assert.throws(() => srs.reverse('SRS0=bad@fwd.test'), SrsError)
})

test('SRS: random senders round-trip (property)', () => {
  const srs = createSrs({ secret: srsSecret('cluster-key-of-the-grid') })
  const local = fc.stringMatching(/^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]{1,40}$/)
  const host = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){1,3}$/)
  fc.assert(fc.property(local, host, (l, h) => {
    const a = srs.forward(`${l}@${h}`, 'fwd.test')
    return srs.reverse(a) === `${l}@${h}`
  }), { numRuns: 500 })
  assert.deepEqual(srsSecret('k'), srsSecret('k'), 'every node derives the same secret')
  assert.notDeepEqual(srsSecret('k'), srsSecret('other'))
})

test('ARC: a forwarded message sealed with the alias domain\'s key validates at the next hop', async (t) => {
  const store = await testStore(t)
  const fwdKey = await createDkimKey('mg202612', Date.now())
  await store.addDomain('fwd.test', { dkim: fwdKey })
  const senderKey = await createDkimKey('s1', Date.now())
  const resolver = tableResolver({
    'origin.test': ['v=spf1 ip4:192.0.2.1 -all'],
    '_dmarc.origin.test': ['v=DMARC1; p=reject'],
    [dkimName('fwd.test', 'mg202612')]: [dkimTxt(fwdKey)],
    [dkimName('origin.test', 's1')]: [dkimTxt(senderKey)]
  })
  const { dkimSign } = await import('mailauth')
  const raw = Buffer.from('From: alice@origin.test\r\nTo: list@fwd.test\r\nSubject: hi\r\nDate: Fri, 04 Dec 2026 21:00:00 +0000\r\nMessage-ID: <arc-1@origin.test>\r\n\r\nhello\r\n')
  const sig = { signingDomain: 'origin.test', selector: 's1', privateKey: senderKey.privateKey }
  const signed = Buffer.concat([Buffer.from((await dkimSign(raw, { ...sig, signatureData: [sig] })).signatures), raw])
  // our MX checks the message as it arrives from the sender's server
  const checker = createInboundChecker({ logger: quiet, resolver }, { hostname: 'mx.fwd.test', dmarcReject: true, dnsServers: [] })
  const verdict = await checker.check(signed, { ip: '192.0.2.1', helo: 'mail.origin.test', mailFrom: 'alice@origin.test' })
  assert.deepEqual([verdict.results.spf, verdict.results.dkim, verdict.results.dmarc, verdict.action], ['pass', 'pass', 'pass', 'accept'])
  // forwarded: the seal goes on top; the next hop sees our server's address (SPF of origin.test fails there)
  const seal = await createArcSealer({ directory: store, logger: quiet }).seal(signed, { domain: 'fwd.test', ...verdict.arc })
  assert.match(seal, /^ARC-Seal: i=1; /m)
  assert.match(seal, /^ARC-Message-Signature: i=1; /m)
  assert.match(seal, /^ARC-Authentication-Results: i=1; mx\.fwd\.test;/m)
  const forwarded = Buffer.concat([Buffer.from(seal), signed])
  const next = await authenticate(forwarded, { ip: '198.51.100.7', helo: 'mx.fwd.test', sender: 'SRS0=xxxx=AA=origin.test=alice@fwd.test', mta: 'mx.next.test', resolver: resolver as never, disableBimi: true, strict: true })
  assert.equal(next.arc !== false && next.arc.status.result, 'pass')
  assert.equal(await createArcSealer({ directory: store, logger: quiet }).seal(signed, { domain: 'nokey.test', ...verdict.arc }), '', 'no key: no seal')
})

// DKIM signing with the domain's key from the directory, checked by independent verifiers (Debian's
// python3-dkim, with the key record handed to it), and by mailauth's own verifier after the body is changed.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { authenticate } from 'mailauth'
import { activateDkimKey, createDkimKey, createSigner, dkimName, dkimTxt, retireDkimKey, rotateDkimKey, selectorFor } from '../../node/mailauth/index.ts'
import { DKIMPY_VERIFY, pythonWith, quiet, tableResolver, testStore } from './helpers.ts'

const MESSAGE = Buffer.from([
  'From: Alice Example <alice@example.test>',
  'To: Bob <bob@elsewhere.test>',
  'Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=',
  'Date: Fri, 04 Dec 2026 21:00:00 +0000',
  'Message-ID: <sign-1@example.test>',
  'MIME-Version: 1.0',
  'Content-Type: text/plain; charset=utf-8',
  '',
  'Hello Bob,',
  '.a line with a leading dot',
  '',
  ''
].join('\r\n'))

test('selectors: mgYYYYMM, then numbered within the month', () => {
  const dec = Date.UTC(2026, 11, 4)
  assert.equal(selectorFor(dec, []), 'mg202612')
  assert.equal(selectorFor(dec, ['mg202612']), 'mg202612-2')
  assert.equal(selectorFor(dec, ['mg202612', 'mg202612-2']), 'mg202612-3')
})

test('sign: the From domain\'s active key signs; python3-dkim verifies with the published record', async (t) => {
  const store = await testStore(t)
  const key = await createDkimKey('mg202612', Date.now())
  await store.addDomain('example.test', { dkim: key })
  const signer = createSigner({ directory: store, logger: quiet })
  const sig = await signer.sign(MESSAGE, { from: 'alice@example.test' })
  assert.match(sig, /^DKIM-Signature: /)
  assert.match(sig, /\r\n$/)
  assert.doesNotMatch(sig.replace(/\r\n/g, ''), /\n/, 'CRLF line ends only')
  assert.match(sig, /d=example\.test;/)
  assert.match(sig, /s=mg202612;/)
  const signed = Buffer.concat([Buffer.from(sig), MESSAGE])
  const records = JSON.stringify({ [dkimName('example.test', 'mg202612')]: dkimTxt(key) })
  const good = await pythonWith(t, DKIMPY_VERIFY, signed, [records])
  assert.equal(good.stdout.trim(), 'pass', good.stderr)
  // the same verifier refuses the message once its body changed, and a key that is not the published one
  const altered = Buffer.from(signed.toString('latin1').replace('Hello Bob', 'Hello Eve'), 'latin1')
  assert.equal((await pythonWith(t, DKIMPY_VERIFY, altered, [records])).stdout.trim(), 'fail')
  const other = await createDkimKey('mg202612', Date.now())
  assert.equal((await pythonWith(t, DKIMPY_VERIFY, signed, [JSON.stringify({ [dkimName('example.test', 'mg202612')]: dkimTxt(other) })])).stdout.trim(), 'fail')
})

test('sign: envelope domain when From is not ours; nothing for foreign mail or a domain without a key', async (t) => {
  const store = await testStore(t)
  await store.addDomain('example.test', { dkim: await createDkimKey('mg202612', Date.now()) })
  await store.addDomain('nokey.test')
  const signer = createSigner({ directory: store, logger: quiet })
  const foreignFrom = Buffer.from(MESSAGE.toString('latin1').replace('alice@example.test', 'alice@foreign.test'), 'latin1')
  assert.match(await signer.sign(foreignFrom, { from: 'list-bounces@example.test' }), /d=example\.test;/)
  assert.equal(await signer.sign(foreignFrom, { from: 'x@foreign.test' }), '')
  assert.equal(await signer.sign(foreignFrom, { from: '' }), '')
  const nokey = Buffer.from(MESSAGE.toString('latin1').replace('alice@example.test', 'alice@nokey.test'), 'latin1')
  assert.equal(await signer.sign(nokey, { from: 'alice@nokey.test' }), '')
})

test('rotation: a pending key does not sign until activated; the old key stays published until retired', async (t) => {
  const store = await testStore(t)
  const now = Date.UTC(2026, 11, 4)
  await store.addDomain('example.test')
  const first = await rotateDkimKey(store, 'example.test', now)
  assert.equal(first.state, 'active', 'a domain without a key gets an active one')
  const second = await rotateDkimKey(store, 'example.test', now)
  assert.equal(second.selector, 'mg202612-2')
  assert.equal(second.state, 'pending')
  const signer = createSigner({ directory: store, logger: quiet })
  assert.match(await signer.sign(MESSAGE, { from: 'alice@example.test' }), /s=mg202612;/)
  await assert.rejects(retireDkimKey(store, 'example.test', first.selector), /signs/)
  await activateDkimKey(store, 'example.test', second.selector)
  const sig = await signer.sign(MESSAGE, { from: 'alice@example.test' })
  assert.match(sig, /s=mg202612-2;/)
  assert.deepEqual((await store.dkimKeys('example.test')).map(k => [k.selector, k.state]), [['mg202612', 'published'], ['mg202612-2', 'active']])
  // mailauth's verifier agrees, with both records published
  const resolver = tableResolver({ [dkimName('example.test', first.selector)]: [dkimTxt(first)], [dkimName('example.test', second.selector)]: [dkimTxt(second)] })
  const res = await authenticate(Buffer.concat([Buffer.from(sig), MESSAGE]), { ip: '192.0.2.1', helo: 'x', sender: 'alice@example.test', mta: 'mx.test', resolver: resolver as never, disableBimi: true, strict: true })
  assert.equal(res.dkim.results[0].status.result, 'pass')
  await retireDkimKey(store, 'example.test', first.selector)
  assert.deepEqual((await store.dkimKeys('example.test')).map(k => k.selector), ['mg202612-2'])
  // the directory refuses a second active key and duplicate selectors
  await assert.rejects(store.updateDkimKeys('example.test', keys => [...keys, { ...keys[0], selector: 'x' }]), /one DKIM key may be active/)
  await assert.rejects(store.updateDkimKeys('example.test', keys => [...keys, { ...keys[0], state: 'published' }]), /already exists/)
  // the key is part of the domain's replicated record
  const exported = (await store.exportDirectory()).find(r => r.key.endsWith('example.test'))
  assert.ok(Array.isArray(exported?.value.dkim))
})

test('replication: the keys travel with the domain record to another node, rotations too', async (t) => {
  const a = await testStore(t)
  const b = await testStore(t)
  await a.addDomain('example.test', { dkim: await createDkimKey('mg202612', Date.now()) })
  await b.mergeDirectory(await a.exportDirectory())
  assert.deepEqual(await b.dkimKeys('example.test'), await a.dkimKeys('example.test'))
  const next = await rotateDkimKey(a, 'example.test', Date.UTC(2026, 11, 4))
  await activateDkimKey(a, 'example.test', next.selector)
  await b.mergeDirectory(await a.exportDirectory())
  assert.deepEqual((await b.dkimKeys('example.test')).map(k => [k.selector, k.state]), [['mg202612', 'published'], [next.selector, 'active']])
  assert.equal(await b.directoryDigest(), await a.directoryDigest())
  // both nodes sign the same message with the same key
  const sa = await createSigner({ directory: a, logger: quiet, now: () => 0 }).sign(MESSAGE, { from: '' })
  const sb = await createSigner({ directory: b, logger: quiet, now: () => 0 }).sign(MESSAGE, { from: '' })
  assert.equal(sa, sb)
  assert.match(sa, new RegExp(`s=${next.selector};`))
})

// BURL (RFC 4468) on submission: the message comes from an IMAP URLAUTH URL (RFC 4467) the user made with GENURLAUTH,
// read through the node's IMAP URLAUTH machinery; the RFC 4468 section 7 flow end to end on one node, with raw IMAP
// and SMTP clients, and the refusals with the RFC's codes.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { RawClient } from '../helpers/client.ts'
import { startNode, TEST_LIMITS } from '../helpers/node.ts'
import { RawImap } from '../imap/helpers.ts'

const ALICE = 'alice@example.com'
const BOB = 'bob@example.com'
const DRAFT = Buffer.from('From: alice@example.com\r\nTo: bob@example.com\r\nSubject: the draft\r\nMessage-ID: <draft-1@example.com>\r\n\r\nHello Bob, sent by reference.\r\n')

async function submit (port: number, user: string): Promise<{ client: RawClient, ehlo: string }> {
  const c = await RawClient.connect(port, { tls: true })
  await c.read()
  const ehlo = await c.cmd('EHLO client.test')
  assert.match(await c.cmd(`AUTH PLAIN ${Buffer.from(`\0${user}\0pw`).toString('base64')}`), /^235 /)
  return { client: c, ehlo }
}

test('BURL: GENURLAUTH in IMAP, BURL ... LAST on submission delivers the draft; pieces without LAST are joined', async t => {
  const n = await startNode(t)
  await n.node.store.addDomain('example.com')
  await n.node.store.addUser({ address: ALICE, password: 'pw' })
  await n.node.store.addUser({ address: BOB, password: 'pw' })
  // the draft, saved by the client in Drafts (RFC 4468 section 7 step 1)
  const imap = await RawImap.connect(n.port('imaps'), { tls: true })
  t.after(() => { imap.close() })
  await imap.login(ALICE, 'pw')
  imap.client.write(`a APPEND Drafts {${DRAFT.length}+}\r\n`)
  imap.client.write(Buffer.concat([DRAFT, Buffer.from('\r\n')]))
  const appended = /\[APPENDUID (\d+) (\d+)\]/.exec(await imap.client.read((b) => /a (OK|NO|BAD)[^\r\n]*\r\n$/.test(b)))
  assert.ok(appended)
  const base = `imap://alice%40example.com@mx.test/Drafts;UIDVALIDITY=${appended[1]}/;UID=${appended[2]}`
  // step 2: the client asks for authorized URLs for the submission server
  const gen = await imap.cmd(`GENURLAUTH "${base};URLAUTH=submit+alice%40example.com" INTERNAL "${base}/;SECTION=HEADER;URLAUTH=submit+alice%40example.com" INTERNAL "${base}/;SECTION=TEXT;URLAUTH=submit+alice%40example.com" INTERNAL`)
  const [whole, header, body] = [...(/^\* GENURLAUTH (.*)\r$/m.exec(gen)?.[1] ?? '').matchAll(/"([^"]+)"/g)].map((m) => m[1]!)
  assert.ok(whole !== undefined && header !== undefined && body !== undefined, gen)
  // step 3: submission with BURL
  const { client, ehlo } = await submit(n.port('smtps'), ALICE)
  t.after(() => { client.close() })
  assert.match(ehlo, /^250[- ]BURL imap\r$/m)
  assert.match(await client.cmd('MAIL FROM:<alice@example.com>'), /^250 /)
  assert.match(await client.cmd('RCPT TO:<bob@example.com>'), /^250 /)
  assert.match(await client.cmd(`BURL ${whole} LAST`), /^250 /)
  // a second message from two pieces: the header, then the body, the last with LAST
  assert.match(await client.cmd('MAIL FROM:<alice@example.com>'), /^250 /)
  assert.match(await client.cmd('RCPT TO:<bob@example.com>'), /^250 /)
  assert.match(await client.cmd(`BURL ${header}`), /^250 2\.5\.0 /)
  assert.match(await client.cmd(`BURL ${body} LAST`), /^250 /)
  const inbox = (await n.node.store.getMailbox(BOB, 'INBOX'))!
  const got = await n.node.store.listMessages(BOB, inbox.id)
  assert.equal(got.length, 2)
  for (const r of got) {
    const bytes = await n.node.store.readMessage(r)
    // our trace headers first (Return-Path, Received), then the draft as saved
    assert.ok(bytes.subarray(bytes.length - DRAFT.length).equals(DRAFT), bytes.toString())
  }
})

test('BURL refusals: no URLAUTH, a tampered token, another access, another user, order, size, the MX port', async t => {
  const n = await startNode(t, { limits: { ...TEST_LIMITS, messageBytesMax: 4096 } })
  await n.node.store.addDomain('example.com')
  await n.node.store.addUser({ address: ALICE, password: 'pw' })
  await n.node.store.addUser({ address: BOB, password: 'pw' })
  const small = await n.node.store.append(ALICE, 'Drafts', { raw: DRAFT })
  const large = await n.node.store.append(ALICE, 'Drafts', { raw: Buffer.concat([DRAFT, Buffer.alloc(5000, 'x')]) })
  const imap = await RawImap.connect(n.port('imaps'), { tls: true })
  t.after(() => { imap.close() })
  await imap.login(ALICE, 'pw')
  const url = (uid: number, access: string): string => `imap://alice%40example.com@mx.test/Drafts;UIDVALIDITY=${small.uidValidity}/;UID=${uid};URLAUTH=${access}`
  const gen = await imap.cmd(`GENURLAUTH "${url(small.uid, 'submit+alice%40example.com')}" INTERNAL "${url(small.uid, 'user+alice%40example.com')}" INTERNAL "${url(small.uid, 'submit+bob%40example.com')}" INTERNAL "${url(large.uid, 'submit+alice%40example.com')}" INTERNAL`)
  const [good, userOnly, forBob, tooLarge] = [...(/^\* GENURLAUTH (.*)\r$/m.exec(gen)?.[1] ?? '').matchAll(/"([^"]+)"/g)].map((m) => m[1]!)
  const { client } = await submit(n.port('smtps'), ALICE)
  t.after(() => { client.close() })
  // RFC 4468 section 3: BURL needs RCPT first
  assert.match(await client.cmd(`BURL ${good} LAST`), /^503 /)
  assert.match(await client.cmd('MAIL FROM:<alice@example.com>'), /^250 /)
  assert.match(await client.cmd('RCPT TO:<bob@example.com>'), /^250 /)
  const tampered = good!.replace(/[0-9a-f]$/, (d) => d === '0' ? '1' : '0')
  for (const [u, code] of [
    [url(small.uid, 'submit+alice%40example.com'), /^554 5\.7\.0 /], // no mechanism and token: not authorized
    [`imap://alice%40example.com@mx.test/Drafts/;UID=${small.uid}`, /^554 5\.7\.0 /], // no URLAUTH at all
    [tampered, /^554 5\.7\.0 /],
    [userOnly!, /^554 5\.7\.0 /], // user+alice is for alice's IMAP sessions, not for the submission server
    [forBob!, /^554 5\.7\.0 /], // submit+bob: the submission server acting for bob, not for alice
    ['http://example.com/', /^554 5\.6\.6 /],
    [tooLarge!, /^552 5\.3\.4 /],
  ] as const) {
    assert.match(await client.cmd(`BURL ${u} LAST`), code, u)
  }
  assert.match(await client.cmd('BURL'), /^501 /)
  assert.match(await client.cmd(`BURL ${good} NOW`), /^501 /)
  // the transaction survived the refusals: the good URL still goes through
  assert.match(await client.cmd(`BURL ${good} LAST`), /^250 /)
  // RSET drops pieces waiting for LAST
  assert.match(await client.cmd('MAIL FROM:<alice@example.com>'), /^250 /)
  assert.match(await client.cmd('RCPT TO:<bob@example.com>'), /^250 /)
  assert.match(await client.cmd(`BURL ${good}`), /^250 2\.5\.0/)
  assert.match(await client.cmd('RSET'), /^250 /)
  assert.match(await client.cmd('MAIL FROM:<alice@example.com>'), /^250 /)
  assert.match(await client.cmd('RCPT TO:<bob@example.com>'), /^250 /)
  assert.match(await client.cmd(`BURL ${good} LAST`), /^250 /)
  const inbox = (await n.node.store.getMailbox(BOB, 'INBOX'))!
  for (const r of await n.node.store.listMessages(BOB, inbox.id)) {
    const bytes = await n.node.store.readMessage(r)
    assert.ok(bytes.subarray(bytes.length - DRAFT.length).equals(DRAFT))
    assert.equal(bytes.toString().split('Subject: the draft').length, 2, 'one copy of the draft, not the dropped piece with it')
  }
  assert.equal(inbox.messages, 2)
  // the MX port neither offers nor knows BURL; before AUTH on submission it is refused
  const mx = await RawClient.connect(n.port('smtp'))
  t.after(() => { mx.close() })
  await mx.read()
  assert.doesNotMatch(await mx.cmd('EHLO client.test'), /BURL/)
  assert.match(await mx.cmd('MAIL FROM:<x@example.org>'), /^250 /)
  assert.match(await mx.cmd('RCPT TO:<bob@example.com>'), /^250 /)
  assert.match(await mx.cmd(`BURL ${good} LAST`), /^500 /)
  const anon = await RawClient.connect(n.port('smtps'), { tls: true })
  t.after(() => { anon.close() })
  await anon.read()
  await anon.cmd('EHLO client.test')
  assert.match(await anon.cmd(`BURL ${good} LAST`), /^5\d\d /)
})

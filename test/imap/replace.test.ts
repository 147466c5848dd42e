// REPLACE and UID REPLACE (RFC 8508): the new message is appended, the replaced one expunged, APPENDUID in an
// untagged OK before the expunge. Raw protocol: neither imapflow nor imaplib sends REPLACE.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, RawImap, simpleMessage, tagged, USER } from './helpers.ts'

async function withLiteral (c: RawImap, tag: string, line: string, body: Buffer): Promise<string> {
  c.client.write(`${line} {${body.length}}\r\n`)
  const plus = await c.client.read((b) => /(^|\r\n)\+ [^\r\n]*\r\n$/.test(b) || tagged(tag)(b))
  if (!plus.startsWith('+')) return plus
  c.client.write(Buffer.concat([body, Buffer.from('\r\n')]))
  return await c.client.read(tagged(tag))
}

const draft = (n: number): Buffer => simpleMessage(`draft ${n}`, `version ${n}\r\n`)

test('REPLACE: the RFC 8508 examples (same mailbox, UID REPLACE into another, with QRESYNC)', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server()
  for (let i = 1; i <= 4; i++) await f.store.append(USER, 'Drafts', { raw: draft(i) })
  const c = await RawImap.connect(port)
  t.after(() => { c.close() })
  await c.login()
  assert.match(await c.cmd('CAPABILITY'), / REPLACE/)
  assert.match(await c.cmd('SELECT Drafts'), /\* 4 EXISTS/)
  // section 3.1's example: REPLACE 4 Drafts; the new message is in the selected mailbox, so it arrives as EXISTS
  const out = await withLiteral(c, 'A003', 'A003 REPLACE 4 Drafts (\\Seen \\Draft)', draft(5))
  assert.match(out, /^\* OK \[APPENDUID \d+ 5\] Replacement Message ready\r$/m)
  assert.match(out, /^\* 4 EXPUNGE\r$/m)
  assert.match(out, /^\* 4 EXISTS\r$/m)
  assert.ok(out.indexOf('APPENDUID') < out.indexOf('EXPUNGE'), out)
  assert.match(out, /A003 OK/)
  const box = await f.store.getMailbox(USER, 'Drafts')
  const recs = await f.store.listMessages(USER, box!.id)
  assert.deepEqual(recs.map((r) => r.uid), [1, 2, 3, 5])
  assert.deepEqual(recs[3]!.flags.sort(), ['\\Draft', '\\Seen'])
  assert.deepEqual(await f.store.readMessage(recs[3]!), draft(5))
  // UID REPLACE into another mailbox: the selected one only loses the message
  const other = await withLiteral(c, 'B003', 'B003 UID REPLACE 5 Archive', draft(6))
  assert.match(other, /^\* OK \[APPENDUID \d+ 1\] Replacement Message ready\r$/m)
  assert.match(other, /^\* 4 EXPUNGE\r$/m)
  assert.doesNotMatch(other, /EXISTS/)
  const archive = await f.store.getMailbox(USER, 'Archive')
  assert.equal(archive?.messages, 1)
  // with QRESYNC, the expunge is VANISHED (RFC 8508 section 3.3, RFC 7162)
  await c.cmd('UNSELECT')
  await c.cmd('ENABLE QRESYNC')
  await c.cmd('SELECT Drafts')
  const q = await withLiteral(c, 'C003', 'C003 UID REPLACE 3 Drafts', draft(7))
  assert.match(q, /^\* VANISHED 3\r$/m)
  assert.match(q, /C003 OK/)
})

test('REPLACE refusals: no such message, out-of-range number, read-only, missing mailbox, quota: nothing changes', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server()
  for (let i = 1; i <= 2; i++) await f.store.append(USER, 'Drafts', { raw: draft(i) })
  const c = await RawImap.connect(port)
  t.after(() => { c.close() })
  await c.login()
  await c.cmd('SELECT Drafts')
  const count = async (): Promise<number> => (await f.store.getMailbox(USER, 'Drafts'))!.messages
  // a UID that names no message: NO, and the new message is not appended (section 3.1)
  assert.match(await withLiteral(c, 'a', 'a UID REPLACE 99 Drafts', draft(9)), /a NO \[NONEXISTENT\]/)
  // a sequence number past EXISTS is BAD, before any literal is read into a message
  assert.match(await withLiteral(c, 'b', 'b REPLACE 3 Drafts', draft(9)), /b BAD/)
  assert.match(await withLiteral(c, 'c', 'c REPLACE 1:2 Drafts', draft(9)), /c BAD/)
  assert.match(await withLiteral(c, 'd', 'd REPLACE 1 Nowhere', draft(9)), /d NO \[TRYCREATE\]/)
  const used = (await f.store.quota(USER)).usedMessages
  await f.store.setQuota(USER, { bytes: (await f.store.quota(USER)).usedBytes + 10 })
  assert.match(await withLiteral(c, 'e', 'e REPLACE 1 Archive', Buffer.concat([draft(9), Buffer.alloc(1000, 'x')])), /e NO \[OVERQUOTA\]/)
  assert.equal((await f.store.quota(USER)).usedMessages, used)
  await f.store.setQuota(USER, { bytes: 0 })
  await c.cmd('EXAMINE Drafts')
  assert.match(await withLiteral(c, 'g', 'g REPLACE 1 Drafts', draft(9)), /g NO \[READ-ONLY\]/)
  assert.equal(await count(), 2)
  // not in the authenticated state
  await c.cmd('UNSELECT')
  assert.match(await withLiteral(c, 'h', 'h REPLACE 1 Drafts', draft(9)), /h BAD/)
  assert.equal(await count(), 2)
})

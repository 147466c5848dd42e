// MULTIAPPEND (RFC 3502): several messages in one APPEND, all or none, one APPENDUID with a UID set (RFC 4315
// section 3). Raw protocol: neither imapflow nor imaplib sends MULTIAPPEND.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, RawImap, simpleMessage, tagged, USER } from './helpers.ts'

/** True when the buffer ends with a continuation request or the tagged reply of `tag`. */
const plusOrTagged = (tag: string) => (buf: string): boolean => /(^|\r\n)\+ [^\r\n]*\r\n$/.test(buf) || tagged(tag)(buf)

/**
 * Sends a command made of segments, each but the last ending in a synchronising literal announcement, then that
 * literal's bytes: waits for each "+", and returns the whole exchange up to the tagged reply (or the first answer
 * that is not a "+").
 */
async function literals (c: RawImap, tag: string, segments: Array<string | Buffer>): Promise<string> {
  let seen = ''
  for (const [i, seg] of segments.entries()) {
    const last = i === segments.length - 1
    const announces = /\{\d+\}$/.test(seg.toString('latin1'))
    c.client.write(seg)
    if (last || announces) c.client.write('\r\n')
    if (announces) {
      const answer = await c.client.read(plusOrTagged(tag))
      seen += answer
      if (!answer.startsWith('+')) return seen
    }
  }
  return seen + await c.client.read(tagged(tag))
}

function lit (b: Buffer): string { return `{${b.length}}` }

test('MULTIAPPEND: the RFC 3502 example, one APPENDUID with both UIDs, flags and dates per message', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(() => { c.close() })
  await c.login()
  assert.match(await c.cmd('CAPABILITY'), /MULTIAPPEND/)
  await c.cmd('CREATE saved-messages')
  const one = simpleMessage('first')
  const two = simpleMessage('second', 'another body\r\n')
  // RFC 3502 section 6.3.11's example: two messages, the second with a date-time
  const out = await literals(c, 'A003', [
    `A003 APPEND saved-messages (\\Seen) ${lit(one)}`,
    Buffer.concat([one, Buffer.from(` (\\Seen) " 7-Feb-1994 22:43:04 -0800" ${lit(two)}`)]),
    two,
  ])
  const m = /A003 OK \[APPENDUID (\d+) (\d+):(\d+)\]/.exec(out)
  assert.ok(m, out)
  assert.equal(Number(m[3]), Number(m[2]) + 1)
  const box = await f.store.getMailbox(USER, 'saved-messages')
  assert.equal(box?.uidValidity, Number(m[1]))
  const recs = await f.store.listMessages(USER, box!.id)
  assert.deepEqual(recs.map((r) => r.uid), [Number(m[2]), Number(m[3])])
  assert.deepEqual(recs.map((r) => r.flags), [['\\Seen'], ['\\Seen']])
  assert.equal(recs[1]!.internalDate, Date.UTC(1994, 1, 8, 6, 43, 4))
  assert.deepEqual(await f.store.readMessage(recs[1]!), two)
  // a second session sees both messages arrive together
  const sel = await c.cmd('SELECT saved-messages')
  assert.match(sel, /\* 2 EXISTS/)
})

test('MULTIAPPEND is all or none: a quota that fits one of three messages, a bad date in the third, a missing mailbox', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(() => { c.close() })
  await c.login()
  await c.cmd('CREATE box')
  const msgs = [simpleMessage('a'), simpleMessage('b'), simpleMessage('c')]
  const all = (tag: string, mailbox: string, third = ''): Array<string | Buffer> => [
    `${tag} APPEND ${mailbox} ${lit(msgs[0]!)}`,
    Buffer.concat([msgs[0]!, Buffer.from(` ${lit(msgs[1]!)}`)]),
    Buffer.concat([msgs[1]!, Buffer.from(` ${third}${lit(msgs[2]!)}`)]),
    msgs[2]!,
  ]
  // RFC 3502: "If the server returns NO or BAD, none of the messages are appended"
  const used = (await f.store.quota(USER)).usedMessages
  await f.store.setQuota(USER, { messages: used + 2 })
  const quota = await literals(c, 'q1', all('q1', 'box'))
  assert.match(quota, /q1 NO \[OVERQUOTA\]/)
  assert.match(await c.cmd('STATUS box (MESSAGES UIDNEXT)'), /MESSAGES 0 UIDNEXT 1\)/)
  await f.store.setQuota(USER, { messages: 0 })
  const bad = await literals(c, 'q2', all('q2', 'box', '"31-Feb-2026 99:00:00 +0000" '))
  assert.match(bad, /q2 BAD/)
  assert.match(await c.cmd('STATUS box (MESSAGES)'), /MESSAGES 0\)/)
  const missing = await literals(c, 'q3', all('q3', 'nowhere'))
  assert.match(missing, /q3 NO \[TRYCREATE\]/)
  // and then the same command succeeds
  const ok = await literals(c, 'q4', all('q4', 'box'))
  assert.match(ok, /q4 OK \[APPENDUID \d+ 1:3\]/)
  assert.match(await c.cmd('STATUS box (MESSAGES)'), /MESSAGES 3\)/)
})

test('MULTIAPPEND hostile input: 10,000 messages are refused at the 65th literal, oversized literals before their bytes', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(() => { c.close() })
  await c.login()
  await c.cmd('CREATE flood')
  const msg = simpleMessage('flood')
  // synchronising literals: the server answers "+" 64 times, then BAD [LIMIT] in place of the 65th "+"; the client
  // sends nothing more of the command, so the session goes on
  const segments: Array<string | Buffer> = [`f1 APPEND flood ${lit(msg)}`]
  for (let i = 1; i < 10_000; i++) segments.push(Buffer.concat([msg, Buffer.from(` ${lit(msg)}`)]))
  segments.push(msg)
  const out = await literals(c, 'f1', segments)
  assert.equal((out.match(/^\+ /gm) ?? []).length, 64)
  assert.match(out, /f1 BAD \[LIMIT\] Too many literals/)
  assert.match(await c.cmd('STATUS flood (MESSAGES)'), /MESSAGES 0\)/)
  // a literal above APPENDLIMIT in the middle of a MULTIAPPEND: NO [TOOBIG] instead of "+", nothing appended
  const big = await literals(c, 'f2', [`f2 APPEND flood ${lit(msg)}`, Buffer.concat([msg, Buffer.from(' {999999999}')]), 'x'])
  assert.match(big, /f2 NO \[TOOBIG\]/)
  assert.match(await c.cmd('STATUS flood (MESSAGES)'), /MESSAGES 0\)/)
  // non-synchronising literals past the limit cannot be skipped: BAD and the connection closes
  const plus = [`f3 APPEND flood {${msg.length}+}\r\n`]
  for (let i = 0; i < 200; i++) plus.push(`${msg.toString()} {${msg.length}+}\r\n`)
  c.client.write(plus.join('') + msg.toString() + '\r\n')
  const bye = await c.client.read(tagged('f3'))
  assert.match(bye, /f3 BAD \[LIMIT\]/)
  assert.equal(await c.client.waitClosed(), true)
  const d = await RawImap.connect(port)
  t.after(() => { d.close() })
  await d.login()
  assert.match(await d.cmd('STATUS flood (MESSAGES)'), /MESSAGES 0\)/)
})

// OBJECTID (RFC 8474): MAILBOXID in CREATE, SELECT, STATUS and LIST-STATUS; EMAILID and THREADID in FETCH and SEARCH.
// imapflow reads MAILBOXID (create, open), EMAILID and THREADID (fetch, search); the rest is raw protocol.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, flow, RawImap, simpleMessage, USER } from './helpers.ts'
import { fetchResponses } from './wire.ts'
import type { FetchQueryObject } from 'imapflow'

// imapflow asks for EMAILID and THREADID with these (its typings predate them)
const IDS = { uid: true, emailId: true, threadId: true } as FetchQueryObject

const OBJECTID = /^[A-Za-z0-9_-]{1,255}$/

function reply (subject: string, root: string, parent: string): Buffer {
  return Buffer.from(`From: b@example.org\r\nSubject: Re: ${subject}\r\nMessage-ID: <${subject}-reply@example.org>\r\nIn-Reply-To: <${parent}>\r\nReferences: <${root}> <${parent}>\r\n\r\nreply\r\n`)
}

test('MAILBOXID with imapflow and raw: CREATE, SELECT, STATUS, LIST-STATUS; kept by RENAME, new after DELETE and CREATE', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server()
  const client = await flow(t, port)
  assert.ok(client.capabilities.has('OBJECTID'))
  // section 4.1: CREATE answers [MAILBOXID (id)]
  const created = await client.mailboxCreate('foo')
  assert.match(String(created.mailboxId), OBJECTID)
  const opened = await client.mailboxOpen('foo')
  assert.equal(opened.mailboxId, created.mailboxId)
  await client.mailboxClose()
  const c = await RawImap.connect(port)
  t.after(() => { c.close() })
  await c.login()
  // section 4.2: STATUS MAILBOXID; section 4.3: the id does not change on RENAME
  await c.cmd('RENAME foo bar')
  assert.match(await c.cmd('STATUS bar (MAILBOXID)'), new RegExp(`\\* STATUS bar \\(MAILBOXID \\(${created.mailboxId}\\)\\)`))
  const listed = await c.cmd('LIST "" "*" RETURN (STATUS (MAILBOXID MESSAGES))')
  assert.match(listed, new RegExp(`\\* STATUS bar \\(MAILBOXID \\(${created.mailboxId}\\) MESSAGES 0\\)`))
  // every mailbox has its own id
  const ids = [...listed.matchAll(/MAILBOXID \(([^)]+)\)/g)].map((m) => m[1])
  assert.equal(new Set(ids).size, ids.length)
  assert.ok(ids.length >= 7)
  // deleted and created again under the same name: a new id (section 4: never reused for another mailbox)
  await c.cmd('DELETE bar')
  const again = await c.cmd('CREATE bar')
  const id2 = /OK \[MAILBOXID \(([^)]+)\)\]/.exec(again)?.[1]
  assert.ok(id2 !== undefined && id2 !== created.mailboxId, again)
  assert.match(await c.cmd('SELECT bar'), new RegExp(`\\* OK \\[MAILBOXID \\(${id2}\\)\\]`))
  // another user's mailboxes have other ids, though the store numbers them alike
  const other = await RawImap.connect(port)
  t.after(() => { other.close() })
  await other.login('bob@example.com')
  const bobInbox = /MAILBOXID \(([^)]+)\)/.exec(await other.cmd('STATUS INBOX (MAILBOXID)'))?.[1]
  const aliceInbox = /MAILBOXID \(([^)]+)\)/.exec(await c.cmd('STATUS INBOX (MAILBOXID)'))?.[1]
  assert.notEqual(bobInbox, aliceInbox)
})

test('EMAILID and THREADID with imapflow: stable across COPY and MOVE, shared by a thread, searchable', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server()
  await f.store.append(USER, 'INBOX', { raw: simpleMessage('root') })
  await f.store.append(USER, 'INBOX', { raw: reply('root', 'root@example.org', 'root@example.org') })
  await f.store.append(USER, 'INBOX', { raw: simpleMessage('alone') })
  const client = await flow(t, port)
  await client.mailboxOpen('INBOX')
  const before = new Map<number, { emailId?: string, threadId?: string }>()
  for await (const m of client.fetch('1:*', IDS)) before.set(m.uid, { emailId: m.emailId, threadId: m.threadId })
  const [root, rep, alone] = [before.get(1)!, before.get(2)!, before.get(3)!]
  for (const m of before.values()) {
    assert.match(String(m.emailId), OBJECTID)
    assert.match(String(m.threadId), OBJECTID)
  }
  // section 5.1: different messages, different EMAILIDs; section 5.2: a reply is in its parent's thread
  assert.equal(new Set([root.emailId, rep.emailId, alone.emailId]).size, 3)
  assert.equal(root.threadId, rep.threadId)
  assert.notEqual(root.threadId, alone.threadId)
  // section 5.1: COPY and MOVE keep the EMAILID (and the THREADID)
  await client.messageCopy('1', 'Archive', { uid: true })
  await client.messageMove('2', 'Archive', { uid: true })
  await client.mailboxOpen('Archive')
  const after: Array<{ emailId?: string, threadId?: string }> = []
  for await (const m of client.fetch('1:*', IDS)) after.push({ emailId: m.emailId, threadId: m.threadId })
  assert.deepEqual(after.map((m) => m.emailId), [root.emailId, rep.emailId])
  assert.deepEqual(after.map((m) => m.threadId), [root.threadId, root.threadId])
  // section 6: SEARCH EMAILID and THREADID
  assert.deepEqual(await client.search({ emailId: rep.emailId }, { uid: true }), [2])
  assert.deepEqual(await client.search({ threadId: root.threadId }, { uid: true }), [1, 2])
  await client.mailboxOpen('INBOX')
  assert.deepEqual(await client.search({ threadId: root.threadId }, { uid: true }), [1])
  assert.deepEqual(await client.search({ emailId: alone.emailId }, { uid: true }), [3])
})

test('EMAILID and THREADID raw: the wire form (parenthesised ids), a malformed id is BAD', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server()
  await f.store.append(USER, 'INBOX', { raw: simpleMessage('one') })
  const c = await RawImap.connect(port)
  t.after(() => { c.close() })
  await c.login()
  await c.cmd('SELECT INBOX')
  const out = await c.cmd('FETCH 1 (EMAILID THREADID)')
  assert.match(out, /^\* 1 FETCH \(EMAILID \(M[A-Za-z0-9_-]+\) THREADID \(T[A-Za-z0-9_-]+\)\)\r$/m)
  const items = fetchResponses(out).get(1)!
  assert.equal((items.get('EMAILID') as string[]).length, 1)
  // RFC 8474 section 7: objectid = 1*255(ALPHA / DIGIT / "_" / "-")
  assert.match(await c.cmd('SEARCH EMAILID "a b"'), /BAD/)
  assert.match(await c.cmd(`SEARCH EMAILID ${'x'.repeat(256)}`), /BAD/)
  assert.match(await c.cmd('SEARCH EMAILID Mnothing'), /^\* SEARCH\r$/m)
})

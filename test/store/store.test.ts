// The store's contract, on a real LevelDB store in a temporary directory: directory records, mailboxes,
// message records, flags, expunge, copy and move, quotas, the change log, events, and persistence.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { createStore, isMailError } from '../../store/index.ts'
import type { MailEvent, Store } from '../../store/index.ts'
import { tempDir } from '../helpers/tmp.ts'

const msg = (subject: string, body = 'Hello there.\r\n'): Buffer =>
  Buffer.from(`From: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@example.org>\r\n\r\n${body}`)

async function open (dir: string): Promise<Store> {
  const s = createStore({}, { path: dir, scryptLogN: 10 })
  await s.start()
  return s
}

async function withUser (t: { after: (fn: () => Promise<void>) => void }, quota: { quotaBytes?: number, quotaMessages?: number } = {}): Promise<{ store: Store, dir: string }> {
  const dir = await tempDir(t)
  const store = await open(dir)
  t.after(async () => { await store.stop() })
  await store.addDomain('example.com')
  await store.addUser({ address: 'bob@example.com', password: 'secret', ...quota })
  return { store, dir }
}

const rejects = async (p: Promise<unknown>, kind: string): Promise<void> => {
  await assert.rejects(p, (err: unknown) => isMailError(err) && err.kind === kind)
}

test('directory: domains, users, passwords, aliases and catch-all', async (t) => {
  const { store } = await withUser(t)
  await rejects(store.addDomain('example.com'), 'exists')
  await rejects(store.addDomain('not a domain'), 'invalid')
  await rejects(store.addUser({ address: 'bob@Example.COM', password: 'x' }), 'exists')
  await rejects(store.addUser({ address: 'carol@unknown.test', password: 'x' }), 'notFound')
  await rejects(store.addUser({ address: 'no-at-sign', password: 'x' }), 'invalid')

  assert.equal((await store.verifyPassword('BOB@example.com', 'secret'))?.address, 'bob@example.com')
  assert.equal(await store.verifyPassword('bob@example.com', 'wrong'), null)
  assert.equal(await store.verifyPassword('nobody@example.com', 'secret'), null)
  await store.setPassword('bob@example.com', 'new one')
  assert.equal(await store.verifyPassword('bob@example.com', 'secret'), null)
  assert.ok(await store.verifyPassword('bob@example.com', 'new one'))
  await store.setStatus('bob@example.com', 'disabled')
  assert.equal(await store.verifyPassword('bob@example.com', 'new one'), null, 'a disabled account cannot log in')
  await store.setStatus('bob@example.com', 'active')

  await store.addAlias('sales@example.com', ['bob@example.com'])
  await store.addAlias('team@example.com', ['sales@example.com'])
  assert.deepEqual(await store.resolveRecipient('Team@example.com'), ['bob@example.com'])
  assert.deepEqual(await store.resolveRecipient('random@example.com'), [])
  assert.equal(await store.mayUseAddress('bob@example.com', 'sales@example.com'), true)
  await store.addAlias('@example.com', ['bob@example.com'])
  assert.deepEqual(await store.resolveRecipient('random@example.com'), ['bob@example.com'])
  assert.equal(await store.mayUseAddress('bob@example.com', 'random@example.com'), false, 'a catch-all is not a sender identity')
  await store.addAlias('loop1@example.com', ['loop2@example.com'])
  await store.addAlias('loop2@example.com', ['loop1@example.com'])
  assert.deepEqual(await store.resolveRecipient('loop1@example.com'), [], 'alias loops end')

  await rejects(store.deleteDomain('example.com'), 'denied')
  assert.deepEqual((await store.listMailboxes('bob@example.com')).map(m => [m.name, m.specialUse]),
    [['INBOX', null], ['Archive', '\\Archive'], ['Drafts', '\\Drafts'], ['Junk', '\\Junk'], ['Sent', '\\Sent'], ['Trash', '\\Trash']])
  await store.deleteUser('bob@example.com')
  assert.equal(await store.getUser('bob@example.com'), null)
  assert.deepEqual(await store.listMailboxes('bob@example.com'), [])
})

test('append assigns growing UIDs and MODSEQs, counts, and stores identical bodies once', async (t) => {
  const { store, dir } = await withUser(t)
  await store.addUser({ address: 'carol@example.com', password: 'x' })
  const a = await store.append('bob@example.com', 'INBOX', { raw: msg('one'), flags: ['\\Seen'] })
  const b = await store.append('bob@example.com', 'inbox', { raw: msg('two') })
  assert.equal(a.uid, 1)
  assert.equal(b.uid, 2)
  assert.ok(b.modseq > a.modseq)
  const inbox = await store.getMailbox('bob@example.com', 'INBOX')
  assert.ok(inbox !== null)
  assert.equal(inbox.messages, 2)
  assert.equal(inbox.unseen, 1)
  assert.equal(inbox.uidNext, 3)
  assert.equal(inbox.highestModseq, b.modseq)

  const segs = join(dir, 'blobs')
  const before = (await stat(join(segs, (await readdir(segs))[0]))).size
  const raw = msg('shared', 'x'.repeat(10_000))
  const res = await store.deliver(raw, [
    { user: 'bob@example.com', prefix: 'Received: for bob\r\n' },
    { user: 'carol@example.com', prefix: 'Received: for carol\r\n' }
  ])
  const after = (await stat(join(segs, (await readdir(segs))[0]))).size
  assert.ok(after - before < raw.length * 1.5, 'the body is stored once for both users')
  assert.notEqual(res[0].gid, res[1].gid)

  const rec = await store.getMessage('carol@example.com', res[1].mailbox, res[1].uid)
  assert.ok(rec !== null)
  const full = await store.readMessage(rec)
  assert.equal(full.toString(), 'Received: for carol\r\n' + raw.toString())
  assert.equal(rec.size, full.length)
  const parts: Buffer[] = []
  for await (const c of store.streamMessage(rec, { start: 10, end: 30 })) parts.push(c)
  assert.equal(Buffer.concat(parts).toString(), full.subarray(10, 30).toString())

  const meta = await store.getMeta(rec)
  const prefixLen = Buffer.byteLength(rec.prefix)
  assert.equal(meta.root.headerStart, 0)
  assert.equal(full.subarray(meta.root.bodyStart, meta.root.bodyEnd).toString(), 'x'.repeat(10_000))
  assert.ok(meta.root.bodyStart > prefixLen)
})

test('flags, expunge, copy, move and changesSince keep counts and modseqs right', async (t) => {
  const { store } = await withUser(t)
  const u = 'bob@example.com'
  const inbox = await store.getMailbox(u, 'INBOX')
  assert.ok(inbox !== null)
  for (let i = 0; i < 5; i++) await store.append(u, 'INBOX', { raw: msg(`m${i}`) })
  const base = (await store.getMailbox(u, 'INBOX'))?.highestModseq ?? 0

  const r1 = await store.storeFlags(u, inbox.id, [1, 2, 99], 'add', ['\\Seen', '$Important'])
  assert.deepEqual(r1.changed.map(c => c.uid), [1, 2])
  assert.ok(r1.modseq > base)
  const r2 = await store.storeFlags(u, inbox.id, [1], 'add', ['\\Seen'])
  assert.deepEqual(r2.changed, [])
  assert.deepEqual(r2.unchanged.map(c => c.uid), [1])
  const r3 = await store.storeFlags(u, inbox.id, [1, 3], 'set', ['\\Flagged'], { unchangedSince: base })
  assert.deepEqual(r3.failedUnchangedSince, [1], 'uid 1 changed after UNCHANGEDSINCE')
  assert.deepEqual(r3.changed.map(c => c.uid), [3])
  assert.equal((await store.getMailbox(u, 'INBOX'))?.unseen, 3)
  await rejects(store.storeFlags(u, inbox.id, [1], 'add', ['bad flag']), 'invalid')

  const copied = await store.copy(u, inbox.id, [2, 3], 'Archive')
  assert.deepEqual(copied.pairs, [[2, 1], [3, 2]])
  const moved = await store.move(u, inbox.id, [4, 5], 'Trash')
  assert.deepEqual(moved.expunged, [4, 5])
  assert.deepEqual(moved.pairs, [[4, 1], [5, 2]])
  const ex = await store.expunge(u, inbox.id, [1, 1000])
  assert.deepEqual(ex.uids, [1])

  const now = await store.getMailbox(u, 'INBOX')
  assert.equal(now?.messages, 2)
  assert.deepEqual((await store.listMessages(u, inbox.id)).map(m => m.uid), [2, 3])
  assert.deepEqual((await store.listMessages(u, inbox.id, { from: 3 })).map(m => m.uid), [3])
  const ch = await store.changesSince(u, inbox.id, base)
  assert.deepEqual(ch.expunged, [1, 4, 5])
  assert.deepEqual(ch.changed.map(m => m.uid), [2, 3])
  const q = await store.quota(u)
  assert.equal(q.usedMessages, 6)
  assert.equal(q.usedBytes, (await store.listMailboxes(u)).reduce((s, m) => s + m.size, 0))
})

test('mailboxes: create with parents, rename with children, INBOX rename, delete rules', async (t) => {
  const { store } = await withUser(t)
  const u = 'bob@example.com'
  await store.createMailbox(u, 'Projects/2026/Q4')
  assert.ok(await store.getMailbox(u, 'Projects/2026'))
  await rejects(store.createMailbox(u, 'Projects'), 'exists')
  await rejects(store.createMailbox(u, 'a//b'), 'invalid')
  await rejects(store.createMailbox(u, 'bad*name'), 'invalid')
  await store.setSubscribed(u, 'Projects/2026/Q4', true)
  await store.renameMailbox(u, 'Projects', 'Work')
  const names = (await store.listMailboxes(u)).map(m => m.name)
  assert.ok(names.includes('Work/2026/Q4') && !names.some(n => n.startsWith('Projects')))
  assert.ok((await store.listSubscriptions(u)).includes('Work/2026/Q4'), 'subscriptions follow a rename')
  await rejects(store.deleteMailbox(u, 'Work'), 'hasChildren')
  await rejects(store.deleteMailbox(u, 'INBOX'), 'denied')
  const old = await store.getMailbox(u, 'Work/2026/Q4')
  await store.deleteMailbox(u, 'Work/2026/Q4')
  const again = await store.createMailbox(u, 'Work/2026/Q4')
  assert.ok(old !== null && again.uidValidity > old.uidValidity, 'a re-created mailbox gets a new UIDVALIDITY')

  await store.append(u, 'INBOX', { raw: msg('keep me') })
  await store.renameMailbox(u, 'INBOX', 'Old Inbox')
  assert.equal((await store.getMailbox(u, 'INBOX'))?.messages, 0)
  assert.equal((await store.getMailbox(u, 'Old Inbox'))?.messages, 1)
})

test('quota: all-or-nothing delivery, and usage follows expunge', async (t) => {
  const { store } = await withUser(t, { quotaMessages: 2 })
  await store.addUser({ address: 'carol@example.com', password: 'x' })
  const u = 'bob@example.com'
  await store.append(u, 'INBOX', { raw: msg('1') })
  await store.append(u, 'INBOX', { raw: msg('2') })
  const carolBefore = (await store.quota('carol@example.com')).usedMessages
  await rejects(store.deliver(msg('3'), [{ user: 'carol@example.com', prefix: '' }, { user: u, prefix: '' }]), 'noQuota')
  assert.equal((await store.quota('carol@example.com')).usedMessages, carolBefore, 'nothing stored for anyone')
  const inbox = await store.getMailbox(u, 'INBOX')
  assert.ok(inbox !== null)
  await store.expunge(u, inbox.id, [1])
  await store.append(u, 'INBOX', { raw: msg('3') })
  assert.equal((await store.quota(u)).usedMessages, 2)
})

test('events arrive after commit, the log records every change, and all of it survives a restart', async (t) => {
  const dir = await tempDir(t)
  let store = await open(dir)
  await store.addDomain('example.com')
  await store.addUser({ address: 'bob@example.com', password: 'pw' })
  const u = 'bob@example.com'
  const events: MailEvent[] = []
  const off = store.subscribe(u, e => events.push(e))
  const a = await store.append(u, 'INBOX', { raw: msg('1') })
  await store.storeFlags(u, a.mailbox, [a.uid], 'add', ['\\Answered'])
  await store.expunge(u, a.mailbox, [a.uid])
  off()
  await store.append(u, 'INBOX', { raw: msg('2') })
  assert.deepEqual(events.map(e => e.type), ['append', 'flags', 'expunge'])
  const log = await store.readLog(u, 0, 1000)
  assert.deepEqual(log.slice(-4).map(e => e.op), ['append', 'flags', 'expunge', 'append'])
  assert.deepEqual(log.map(e => e.seq), log.map((_, i) => i + 1), 'log positions are dense and ordered')
  await store.stop()

  store = await open(dir)
  t.after(async () => { await store.stop() })
  const inbox = await store.getMailbox(u, 'INBOX')
  assert.equal(inbox?.messages, 1)
  assert.equal(inbox?.uidNext, 3, 'UIDs are never reused after a restart')
  const b = await store.append(u, 'INBOX', { raw: msg('3') })
  assert.equal(b.uid, 3)
  assert.ok(await store.verifyPassword(u, 'pw'))
  const recs = await store.listMessages(u, b.mailbox)
  assert.equal((await store.readMessage(recs[0])).toString(), msg('2').toString())
})

// Import over IMAP (issue 15, item 1) from a real Dovecot (private instance, IMAPS with the test CA's
// certificate): the engine on a node's store, checked with imapflow on both sides; a second run copies nothing;
// new mail on the source arrives on the next run.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { createTestCa } from '../helpers/ca.ts'
import { isDovecotSourceInstalled, startDovecotSource } from '../helpers/dovecot.ts'
import { startNode, TEST_LIMITS } from '../helpers/node.ts'
import { importImap, mapFolderName, parseSourceUrl } from '../../node/migrate/imap.ts'
import { addMore, assertSameMail, client, populate } from './imap-fixture.ts'

const skip = isDovecotSourceInstalled() ? false : 'Dovecot (dovecot-imapd, dovecot-pop3d) is not installed'

test('source URLs and folder names', () => {
  assert.deepEqual(parseSourceUrl('imaps://mail.example.com'), { host: 'mail.example.com', port: 993, tls: 'implicit' })
  assert.deepEqual(parseSourceUrl('imap://10.0.0.1:1143?tls=starttls'), { host: '10.0.0.1', port: 1143, tls: 'starttls' })
  assert.deepEqual(parseSourceUrl('imap://[::1]:143'), { host: '::1', port: 143, tls: 'none' })
  for (const bad of ['http://x', 'imaps://u:p@x', 'imaps://x/INBOX', 'not a url', 'imaps://']) assert.equal(parseSourceUrl(bad), null, bad)
  assert.deepEqual(mapFolderName('Work.Projects.2026', '.'), { name: 'Work/Projects/2026', changed: false })
  assert.deepEqual(mapFolderName('inbox', '.'), { name: 'INBOX', changed: false })
  assert.deepEqual(mapFolderName('INBOX.Receipts', '.'), { name: 'INBOX/Receipts', changed: false })
  assert.deepEqual(mapFolderName('a/b.c', '.'), { name: 'a_b/c', changed: true })
  assert.deepEqual(mapFolderName('Top/Sub', '/'), { name: 'Top/Sub', changed: false })
})

test('import from Dovecot over IMAPS: every folder, message, flag, keyword and date; a second run copies nothing', { skip, timeout: 600_000 }, async t => {
  const ca = await createTestCa()
  const dovecot = await startDovecotSource({ users: [{ user: 'alice', password: 'source-pw' }], ca })
  t.after(async () => { await dovecot.stop() })
  const n = await startNode(t, { limits: { ...TEST_LIMITS, messageBytesMax: 4 * 1024 * 1024 } })
  await n.node.store.addDomain('example.com')
  await n.node.store.addUser({ address: 'alice@example.com', password: 'pw' })

  const src = client(dovecot.imapPort, 'alice', 'source-pw')
  await src.connect()
  t.after(async () => { await src.logout().catch(() => {}) })
  const stats = await populate(src, { messages: 300, large: 3 })
  // one of the three large messages is over this node's 4 MiB cap: reported, not copied (so the comparison
  // below leaves it out by deleting it from the source afterwards)

  const logger = pino({ level: 'silent' })
  const source = { host: 'localhost', port: dovecot.imapsPort, tls: 'implicit' as const, user: 'alice', password: 'source-pw', ca: ca.cert }
  const first = await importImap({ mail: n.node.store, logger }, { source, target: 'alice@example.com', messageBytesMax: 4 * 1024 * 1024 })
  assert.equal(first.messages, stats.messages)
  const tooBig = first.errors.filter(e => /larger than this server's limit/.test(e.reason))
  assert.equal(first.failed, tooBig.length, JSON.stringify(first.errors))
  assert.equal(first.copied + tooBig.length, stats.messages)
  assert.equal(first.skipped, 0)

  // the messages refused for their size leave the source, then both sides must match exactly
  for (const e of tooBig) {
    await src.mailboxOpen(e.folder)
    await src.messageDelete(String(e.uid), { uid: true })
  }
  const dst = client(n.port('imaps'), 'alice@example.com', 'pw', { secure: true })
  await dst.connect()
  t.after(async () => { await dst.logout().catch(() => {}) })
  const seen = await assertSameMail(src, dst)
  assert.equal(seen.messages, stats.messages - tooBig.length)

  const second = await importImap({ mail: n.node.store, logger }, { source, target: 'alice@example.com', messageBytesMax: 4 * 1024 * 1024 })
  assert.equal(second.copied, 0)
  assert.equal(second.failed, 0)
  assert.equal(second.skipped, stats.messages - tooBig.length)

  await addMore(src, 10)
  const third = await importImap({ mail: n.node.store, logger }, { source, target: 'alice@example.com', messageBytesMax: 4 * 1024 * 1024 })
  assert.equal(third.copied, 10)
  assert.equal(third.failed, 0)
  await assertSameMail(src, dst)
})

test('a wrong source password or an unverifiable certificate fails the run with the reason', { skip, timeout: 120_000 }, async t => {
  const ca = await createTestCa()
  const dovecot = await startDovecotSource({ users: [{ user: 'bob', password: 'right' }], ca })
  t.after(async () => { await dovecot.stop() })
  const n = await startNode(t)
  await n.node.store.addDomain('example.com')
  await n.node.store.addUser({ address: 'bob@example.com', password: 'pw' })
  const logger = pino({ level: 'silent' })
  const base = { host: 'localhost', port: dovecot.imapsPort, tls: 'implicit' as const, user: 'bob' }
  await assert.rejects(importImap({ mail: n.node.store, logger }, { source: { ...base, password: 'wrong', ca: ca.cert }, target: 'bob@example.com', messageBytesMax: 1e6 }))
  // no CA given: the test CA's certificate is not trusted
  await assert.rejects(importImap({ mail: n.node.store, logger }, { source: { ...base, password: 'right' }, target: 'bob@example.com', messageBytesMax: 1e6 }), /certificate|self.signed|unable to verify/i)
  const ok = await importImap({ mail: n.node.store, logger }, { source: { ...base, password: 'right', insecure: true }, target: 'bob@example.com', messageBytesMax: 1e6 })
  assert.equal(ok.failed, 0)
  assert.ok(ok.notes.some(x => /not verified/.test(x)))
})

test('mailgrid import imap --csv: one job per line, a report per user; the API never shows the password', { skip, timeout: 300_000 }, async t => {
  const { Readable } = await import('node:stream')
  const { writeFile } = await import('node:fs/promises')
  const { tempDir } = await import('../helpers/tmp.ts')
  const { createAdminServer } = await import('../../appliance/admin.ts')
  const { importRoutes } = await import('../../appliance/import-routes.ts')
  const { main } = await import('../../appliance/commands.ts')
  const { connectRemote } = await import('../../appliance/client.ts')
  const ca = await createTestCa()
  const dovecot = await startDovecotSource({ users: [{ user: 'carol', password: 'carol-secret' }, { user: 'dave', password: 'dave-secret' }], ca })
  t.after(async () => { await dovecot.stop() })
  const n = await startNode(t)
  await n.node.store.addDomain('example.com')
  for (const u of ['carol', 'dave']) await n.node.store.addUser({ address: `${u}@example.com`, password: 'pw' })
  for (const [u, count] of [['carol', 12], ['dave', 7]] as const) {
    const c = client(dovecot.imapPort, u, `${u}-secret`)
    await c.connect()
    await populate(c, { messages: count, large: 0, seed: count })
    await c.logout()
  }
  const admin = createAdminServer({ directory: n.node.store, status: async () => await n.node.status(), queue: n.node.queue, logger: pino({ level: 'silent' }), routes: importRoutes(n.node.store) }, { host: '127.0.0.1', port: 0, token: 'tok' })
  await admin.start()
  t.after(async () => { await admin.stop() })
  const dir = await tempDir(t)
  await writeFile(`${dir}/carol.pw`, 'carol-secret\n')
  // the second cell: a file when one is there, else the password itself
  await writeFile(`${dir}/users.csv`, `# source user, password file or password, target\ncarol,${dir}/carol.pw,carol@example.com\ndave,dave-secret,dave@example.com\n`)
  let out = ''
  let err = ''
  const code = await main(['import', 'imap', '--from', `imaps://localhost:${dovecot.imapsPort}`, '--csv', `${dir}/users.csv`, '--insecure', '--url', admin.url, '--token', 'tok'], {
    stdout: { write: (s: string) => { out += s } }, stderr: { write: (s: string) => { err += s } }, stdin: Readable.from([]), env: {}
  })
  assert.equal(code, 0, out + err)
  assert.match(out, /carol@example\.com <- carol at localhost:\d+: done\n {2}folders 13, messages 13: copied 13 /)
  assert.match(out, /dave@example\.com <- dave at localhost:\d+: done\n {2}folders 13, messages 7: copied 7 /)
  assert.match(out, /note: the source certificate was not verified/)
  const jobs = JSON.stringify(await connectRemote({ url: admin.url, token: 'tok' }).request('GET', '/v1/imports/imap'))
  assert.doesNotMatch(jobs, /secret/)
  // a bad line is refused before anything starts
  await writeFile(`${dir}/bad.csv`, 'carol,only-two-cells\n')
  err = ''
  const bad = await main(['import', 'imap', '--from', `imaps://localhost:${dovecot.imapsPort}`, '--csv', `${dir}/bad.csv`, '--url', admin.url, '--token', 'tok'], {
    stdout: { write: () => {} }, stderr: { write: (s: string) => { err += s } }, stdin: Readable.from([]), env: {}
  })
  assert.equal(bad, 1)
  assert.match(err, /line 1: expected/)
})

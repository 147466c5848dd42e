// Imports respect quota (node/migrate/quota.ts): the user's bytes and messages and the domain's bytes. A message
// that does not fit is skipped whole and listed with the reason "over quota"; what fits is imported; nothing of a
// skipped message is written (a Maildir message whose UID would have been kept does not even raise UIDNEXT); a
// second run says what is there already and skips the rest again. The file imports through the CLI and the admin
// API, the IMAP import from a private Dovecot.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import pino from 'pino'
import { importImap } from '../../node/migrate/imap.ts'
import { createImportQuota } from '../../node/migrate/quota.ts'
import { createDomainUsage } from '../../node/domain-quota.ts'
import { createTestCa } from '../helpers/ca.ts'
import { isDovecotSourceInstalled, startDovecotSource } from '../helpers/dovecot.ts'
import { startNode } from '../helpers/node.ts'
import { tempDir } from '../helpers/tmp.ts'
import { cli, startAdminNode } from './helpers.ts'
import { client } from './imap-fixture.ts'

const USER = 'ann@example.com'

// every message exactly MESSAGE_BYTES long once CRLF'd, so a quota can be a whole number of them
const MESSAGE_BYTES = 400
function message (n: number): string {
  const head = `From: Bob <bob@example.org>\nTo: ${USER}\nSubject: quota ${n}\nMessage-ID: <q${n}@example.org>\n\n`
  const crlf = (s: string): number => Buffer.byteLength(s.replace(/\n/g, '\r\n'))
  const fill = MESSAGE_BYTES - crlf(head) - 2
  return head + 'x'.repeat(fill) + '\n'
}

function mbox (count: number): string {
  const out: string[] = []
  for (let i = 1; i <= count; i++) out.push(`From bob@example.org Thu Jan  2 03:04:0${i % 10} 2020\n${message(i)}\n`)
  return out.join('')
}

test('import mbox over the user\'s byte quota: what fits is imported, the rest skipped "over quota"; again: the same', { timeout: 120_000 }, async t => {
  const n = await startAdminNode(t)
  await n.node.store.addDomain('example.com')
  await n.node.store.addUser({ address: USER, password: 'pw' })
  await n.node.store.setQuota(USER, { bytes: 3 * MESSAGE_BYTES + 100 })
  const file = join(await tempDir(t), 'old.mbox')
  await writeFile(file, mbox(5))
  const r = await cli(n.url, ['import', 'mbox', file, '--to', USER, '--folder', 'Old', '--json'])
  assert.equal(r.code, 0, r.err)
  const report = JSON.parse(r.out) as { messages: number, skipped: Array<{ folder: string, item: string, reason: string }> }
  assert.equal(report.messages, 3)
  assert.deepEqual(report.skipped.map(s => s.item), ['message 4', 'message 5'])
  for (const s of report.skipped) assert.match(s.reason, /^over quota \(the user's limit of 1300 bytes/)
  const q = await n.node.store.quota(USER)
  assert.equal(q.usedBytes, 3 * MESSAGE_BYTES)
  assert.equal((await n.node.store.getMailbox(USER, 'Old'))?.messages, 3)

  const again = await cli(n.url, ['import', 'mbox', file, '--to', USER, '--folder', 'Old'])
  assert.equal(again.code, 0, again.err)
  assert.match(again.out, /imported 0 messages .*; 3 were there already/)
  assert.match(again.out, /skipped Old: message 4: over quota/)
  assert.match(again.out, /skipped Old: message 5: over quota/)
  assert.equal((await n.node.store.quota(USER)).usedBytes, 3 * MESSAGE_BYTES)
})

test('import maildir over the message quota: a skipped message writes nothing, not even its kept UID', { timeout: 120_000 }, async t => {
  const n = await startAdminNode(t)
  await n.node.store.addDomain('example.com')
  await n.node.store.addUser({ address: USER, password: 'pw' })
  await n.node.store.setQuota(USER, { messages: 2 })
  // a Dovecot-style Maildir: four messages in INBOX with UIDs 5-8 in dovecot-uidlist
  const root = join(await tempDir(t), 'Maildir')
  for (const d of ['cur', 'new', 'tmp']) await mkdir(join(root, d), { recursive: true })
  const uidlist = ['3 V1700000000 N9']
  for (let i = 1; i <= 4; i++) {
    const base = `170000000${i}.M${i}P1.host`
    await writeFile(join(root, 'cur', `${base}:2,S`), message(i))
    uidlist.push(`${i + 4} :${base}`)
  }
  await writeFile(join(root, 'dovecot-uidlist'), uidlist.join('\n') + '\n')
  const r = await cli(n.url, ['import', 'maildir', root, '--to', USER, '--json'])
  assert.equal(r.code, 0, r.err)
  const report = JSON.parse(r.out) as { messages: number, uidsKept: number, skipped: Array<{ item: string, reason: string }> }
  assert.equal(report.messages, 2)
  assert.equal(report.uidsKept, 2)
  assert.equal(report.skipped.length, 2)
  for (const s of report.skipped) assert.match(s.reason, /^over quota \(the user's limit of 2 messages\)/)
  const box = await n.node.store.getMailbox(USER, 'INBOX')
  assert.equal(box?.messages, 2)
  const uids = (await n.node.store.listMessages(USER, box!.id)).map(m => m.uid)
  assert.deepEqual(uids, [5, 6])
  assert.equal(box?.uidNext, 7, 'UIDNEXT not raised for the skipped messages')
})

test('import mbox over the domain\'s byte quota: skipped "over quota" naming the domain', { timeout: 120_000 }, async t => {
  const n = await startAdminNode(t)
  await n.node.store.addDomain('example.com')
  await n.node.store.addUser({ address: USER, password: 'pw' })
  await n.node.store.addUser({ address: 'bo@example.com', password: 'pw' })
  await n.node.store.deliver(Buffer.from(message(99).replace(/\n/g, '\r\n')), [{ user: 'bo@example.com', prefix: '' }]) // the other user's 400 bytes count too
  await n.node.store.setDomainQuota('example.com', { bytes: 3 * MESSAGE_BYTES + 100 })
  const file = join(await tempDir(t), 'old.mbox')
  await writeFile(file, mbox(4))
  const r = await cli(n.url, ['import', 'mbox', file, '--to', USER, '--folder', 'Old', '--json'])
  assert.equal(r.code, 0, r.err)
  const report = JSON.parse(r.out) as { messages: number, skipped: Array<{ item: string, reason: string }> }
  assert.equal(report.messages, 2)
  assert.deepEqual(report.skipped.map(s => s.item), ['message 3', 'message 4'])
  for (const s of report.skipped) assert.match(s.reason, /^over quota \(the domain example\.com's limit of 1300 bytes\)/)
})

test('import over IMAP into a user with a quota: the rest is reported over quota, not downloaded into the store', { skip: isDovecotSourceInstalled() ? false : 'Dovecot is not installed', timeout: 300_000 }, async t => {
  const dovecot = await startDovecotSource({ users: [{ user: 'alice', password: 'source-pw' }], ca: await createTestCa() })
  t.after(async () => { await dovecot.stop() })
  const n = await startNode(t)
  await n.node.store.addDomain('example.com')
  await n.node.store.addUser({ address: USER, password: 'pw' })
  const src = client(dovecot.imapPort, 'alice', 'source-pw')
  await src.connect()
  for (let i = 1; i <= 6; i++) await src.append('INBOX', Buffer.from(message(i).replace(/\n/g, '\r\n')), [], new Date(Date.UTC(2021, 0, i)))
  await src.logout()
  await n.node.store.setQuota(USER, { bytes: 4 * MESSAGE_BYTES })
  const store = n.node.store
  const quota = createImportQuota({ mail: store, directory: store, domainUsage: createDomainUsage({ directory: store, quota: async u => await store.quota(u) }) })
  const source = { host: '127.0.0.1', port: dovecot.imapPort, tls: 'none' as const, user: 'alice', password: 'source-pw' }
  const run = async (): ReturnType<typeof importImap> => await importImap({ mail: store, quota, logger: pino({ level: 'silent' }) }, { source, target: USER, messageBytesMax: 1024 * 1024 })
  const first = await run()
  assert.equal(first.messages, 6)
  assert.equal(first.copied, 4)
  assert.equal(first.overQuota, 2)
  assert.equal(first.failed, 0)
  assert.equal(first.perFolder.find(f => f.target === 'INBOX')?.overQuota, 2)
  assert.equal(first.errors.length, 2)
  for (const e of first.errors) assert.match(e.reason, /^over quota/)
  assert.equal((await store.quota(USER)).usedBytes, 4 * MESSAGE_BYTES)
  // again: what came is there already, the rest still does not fit
  const second = await run()
  assert.equal(second.copied, 0)
  assert.equal(second.skipped, 4)
  assert.equal(second.overQuota, 2)
})

// mailgrid import maildir: a Maildir written by a real Dovecot (mail appended over IMAP and delivered over LMTP,
// then Dovecot stopped) is imported; a client fetching our IMAP sees what it saw on Dovecot: folders, messages byte
// for byte, flags, keywords, internal dates, subscriptions, and the UIDs (kept: the folders are new here). A second
// run imports nothing. The same for LAYOUT=fs. mailgrid import mbox: mboxrd unescaping, Status/X-Status/X-Keywords.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { chmod, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ImapFlow } from 'imapflow'
import nodemailer from 'nodemailer'
import { isDovecotInstalled, startDovecot } from '../helpers/dovecot.ts'
import { tempDir } from '../helpers/tmp.ts'
import { cli, snapshot, startAdminNode } from './helpers.ts'
import type { SeenAccount } from './helpers.ts'

const USER = 'ann@example.com'
const PW = 'secret-pw'
const skip = isDovecotInstalled() ? false : 'Dovecot is not installed'

function message (n: number): string {
  return `From: Bob <bob@example.org>\r\nTo: ann@example.com\r\nSubject: message ${n}\r\nMessage-ID: <d${n}@example.org>\r\n\r\nHello ${n}.\r\nFrom the start of a line.\r\n`
}

async function fillDovecot (port: number, lmtpPort: number, fs: boolean): Promise<void> {
  const c = new ImapFlow({ host: '127.0.0.1', port, secure: false, auth: { user: USER, pass: PW }, logger: false })
  await c.connect()
  await c.mailboxCreate('Work/Sub')
  await c.mailboxCreate('Ünï')
  await c.mailboxSubscribe('Work/Sub')
  await c.mailboxUnsubscribe('Ünï').catch(() => {})
  const day = Date.UTC(2020, 0, 2, 3, 4, 5)
  await c.append('INBOX', message(1), ['\\Seen'], new Date(day))
  await c.append('INBOX', message(2), ['\\Flagged'], new Date(day + 1000))
  await c.append('INBOX', message(3), ['\\Answered', 'Kw1', '$Forwarded'], new Date(day + 2000))
  await c.append('Work/Sub', message(4), ['\\Draft', '\\Deleted', 'Project'], new Date(day - 86_400_000))
  await c.append('Ünï', message(5), ['\\Seen', 'Kw1'], new Date(day + 5000))
  // a UID gap in INBOX: 1, 3 remain
  const lock = await c.getMailboxLock('INBOX')
  try {
    await c.messageDelete('2', { uid: true })
  } finally {
    lock.release()
  }
  await c.logout()
  if (fs) return
  // delivered over LMTP: lands in new/, no flags
  const lmtp = nodemailer.createTransport({ host: '127.0.0.1', port: lmtpPort, lmtp: true, secure: false, ignoreTLS: true } as never)
  await lmtp.sendMail({ envelope: { from: 'bob@example.org', to: [USER] }, raw: message(6) })
  lmtp.close()
}

function assertImported (ours: SeenAccount, theirs: SeenAccount): void {
  for (const [name, d] of Object.entries(theirs.folders)) {
    const f = ours.folders[name]
    assert.ok(f !== undefined, `${name}: imported`)
    assert.deepEqual(f.messages.map(m => m.uid), d.messages.map(m => m.uid), `${name}: UIDs kept`)
    for (const [i, m] of d.messages.entries()) {
      const o = f.messages[i]
      assert.equal(o.source, m.source, `${name} ${m.uid}: bytes`)
      assert.deepEqual(o.flags, m.flags, `${name} ${m.uid}: flags and keywords`)
      assert.equal(o.date, m.date, `${name} ${m.uid}: internal date`)
    }
  }
  for (const s of theirs.subscribed) assert.ok(ours.subscribed.includes(s), `${s}: subscribed`)
}

for (const layout of ['maildir++', 'fs'] as const) {
  test(`import maildir (${layout}): what Dovecot wrote, as Dovecot served it; again: nothing`, { skip, timeout: 300_000 }, async t => {
    const dir = await tempDir(t)
    await chmod(dir, 0o755) // Dovecot's processes (nobody) must reach the Maildir
    const maildir = join(dir, 'Maildir')
    const dovecot = await startDovecot({ users: [{ user: USER, password: PW, mail: maildir }], layout })
    let theirs: SeenAccount
    try {
      await fillDovecot(dovecot.imapPort, dovecot.lmtpPort, layout === 'fs')
      theirs = await snapshot(dovecot.imapPort, USER, PW, { uidNext: false })
    } finally {
      await dovecot.stop()
    }
    assert.equal(theirs.folders.INBOX.messages.length, layout === 'fs' ? 2 : 3)
    assert.deepEqual(theirs.folders.INBOX.messages.slice(0, 2).map(m => m.uid), [1, 3])

    const n = await startAdminNode(t)
    await n.node.store.addDomain('example.com')
    await n.node.store.addUser({ address: USER, password: PW })
    const r = await cli(n.url, ['import', 'maildir', maildir, '--to', USER])
    assert.equal(r.code, 0, r.err)
    const count = Object.values(theirs.folders).reduce((k, f) => k + f.messages.length, 0)
    assert.match(r.out, new RegExp(`imported ${count} messages`))
    assertImported(await snapshot(n.port('imap'), USER, PW), theirs)

    const again = await cli(n.url, ['import', 'maildir', maildir, '--to', USER])
    assert.equal(again.code, 0, again.err)
    assert.match(again.out, new RegExp(`imported 0 messages .*; ${count} were there already`))
    assertImported(await snapshot(n.port('imap'), USER, PW), theirs)
  })
}

test('import mbox: mboxrd From_ unescaping, Status/X-Status/X-Keywords flags, From_ dates; again: nothing', { timeout: 120_000 }, async t => {
  const dir = await tempDir(t)
  const file = join(dir, 'old.mbox')
  await writeFile(file, [
    'From bob@example.org Thu Jan  2 03:04:05 2020',
    'From: Bob <bob@example.org>',
    'Subject: one',
    'Status: RO',
    'X-Status: AF',
    'X-Keywords: Kw1 Project',
    '',
    'Hello.',
    '>From the start of a line (escaped once).',
    '>>From escaped twice.',
    '',
    'From MAILER-DAEMON Fri Mar 13 14:15:16 2015',
    'From: Carol <carol@example.org>',
    'Subject: two',
    'Status: O',
    '',
    'Body two.',
    ''
  ].join('\n'))
  const n = await startAdminNode(t)
  await n.node.store.addDomain('example.com')
  await n.node.store.addUser({ address: USER, password: PW })
  const r = await cli(n.url, ['import', 'mbox', file, '--to', USER, '--folder', 'Old/Mail'])
  assert.equal(r.code, 0, r.err)
  assert.match(r.out, /imported 2 messages/)
  const seen = await snapshot(n.port('imap'), USER, PW)
  const got = seen.folders['Old/Mail'].messages
  assert.equal(got.length, 2)
  assert.equal(Buffer.from(got[0].source, 'base64').toString(), 'From: Bob <bob@example.org>\r\nSubject: one\r\n\r\nHello.\r\nFrom the start of a line (escaped once).\r\n>From escaped twice.\r\n')
  assert.deepEqual(got[0].flags, ['Kw1', 'Project', '\\Answered', '\\Flagged', '\\Seen'].sort())
  assert.equal(got[0].date, Date.UTC(2020, 0, 2, 3, 4, 5))
  assert.equal(Buffer.from(got[1].source, 'base64').toString(), 'From: Carol <carol@example.org>\r\nSubject: two\r\n\r\nBody two.\r\n')
  assert.deepEqual(got[1].flags, [])
  assert.equal(got[1].date, Date.UTC(2015, 2, 13, 14, 15, 16))
  const again = await cli(n.url, ['import', 'mbox', file, '--to', USER, '--folder', 'Old/Mail'])
  assert.match(again.out, /imported 0 messages .*; 2 were there already/)
})

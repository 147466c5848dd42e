// mailgrid export: the Maildir it writes is served as it is by a real Dovecot (Debian's, a private instance on a
// loopback port): a client fetching both servers sees the same folders, UIDVALIDITY, UIDs, messages byte for byte,
// flags, keywords, internal dates and subscriptions. A second export writes nothing new. The mbox export reads
// back (mbox.ts's reader) as the same messages and flags.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { isDovecotInstalled, NOBODY_ID, startDovecot } from '../helpers/dovecot.ts'
import { tempDir } from '../helpers/tmp.ts'
import { readMbox } from '../../node/migrate/mbox.ts'
import { cli, snapshot, startAdminNode } from './helpers.ts'

const USER = 'ann@example.com'
const PW = 'secret-pw'
const skip = isDovecotInstalled() ? false : 'Dovecot is not installed'

function message (n: number, extra = ''): Buffer {
  return Buffer.from(`From: Bob <bob@example.org>\r\nTo: ann@example.com\r\nSubject: message ${n}\r\nMessage-ID: <m${n}@example.org>\r\nDate: Thu, 02 Jan 2020 03:04:05 +0000\r\n\r\nHello ${n}.\r\nFrom the start of a line, for mbox.\r\n>From quoted already\r\n${extra}`)
}

test('export --maildir: Dovecot serves the export as our IMAP does; again: nothing new; --mbox reads back', { skip, timeout: 300_000 }, async t => {
  const n = await startAdminNode(t)
  const s = n.node.store
  await s.addDomain('example.com')
  await s.addUser({ address: USER, password: PW })
  await s.createMailbox(USER, 'Work/Sub')
  await s.createMailbox(USER, 'Ünïcödé')
  await s.setSubscribed(USER, 'Work/Sub', true)
  await s.setSubscribed(USER, 'Ünïcödé', true)
  const day = Date.UTC(2021, 4, 6, 7, 8, 9)
  await s.append(USER, 'INBOX', { raw: message(1), flags: ['\\Seen'], internalDate: day })
  await s.append(USER, 'INBOX', { raw: message(2), flags: ['\\Answered', '\\Flagged', 'Kw1', '$Forwarded'], internalDate: day + 1000 })
  await s.append(USER, 'INBOX', { raw: message(3), flags: ['$Forwarded', 'Kw1'], internalDate: day + 2000 })
  await s.append(USER, 'Work/Sub', { raw: message(4), flags: ['\\Draft', '\\Deleted', 'Project'], internalDate: day - 86_400_000 })
  // larger than one body read (4 MiB): the export reads it in chunks
  await s.append(USER, 'Work/Sub', { raw: Buffer.concat([message(5), Buffer.from(('y'.repeat(998) + '\r\n').repeat(5000))]), flags: ['\\Seen'], internalDate: day + 5000 })
  await s.append(USER, 'Ünïcödé', { raw: message(6), flags: ['\\Seen', 'Kw1'], internalDate: day + 6000 })
  // a UID gap: the export keeps our UIDs, so Dovecot shows 1 and 3
  const inbox = await s.getMailbox(USER, 'INBOX')
  await s.expunge(USER, inbox!.id, [2])

  const dir = await tempDir(t)
  const exported = join(dir, 'Maildir')
  const r = await cli(n.url, ['export', USER, '--maildir', exported])
  assert.equal(r.code, 0, r.err)
  assert.match(r.out, /exported 5 messages/)

  execFileSync('chown', ['-R', `${NOBODY_ID}:${NOBODY_ID}`, dir])
  const dovecot = await startDovecot({ users: [{ user: USER, password: PW, mail: exported }] })
  t.after(async () => { await dovecot.stop() })
  const ours = await snapshot(n.port('imap'), USER, PW)
  const theirs = await snapshot(dovecot.imapPort, USER, PW)
  assert.deepEqual(Object.keys(theirs.folders).sort(), Object.keys(ours.folders).sort())
  for (const [name, f] of Object.entries(ours.folders)) {
    const d = theirs.folders[name]
    assert.equal(d.uidValidity, f.uidValidity, `${name}: UIDVALIDITY`)
    assert.equal(d.uidNext, f.uidNext, `${name}: UIDNEXT`)
    assert.deepEqual(d.messages.map(m => m.uid), f.messages.map(m => m.uid), `${name}: UIDs`)
    for (const [i, m] of f.messages.entries()) {
      const o = d.messages[i]
      assert.equal(o.source, m.source, `${name} ${m.uid}: bytes`)
      assert.deepEqual(o.flags, m.flags, `${name} ${m.uid}: flags and keywords`)
      assert.equal(o.date, m.date, `${name} ${m.uid}: internal date`)
    }
  }
  assert.equal(ours.folders['Work/Sub'].messages.length, 2)
  assert.deepEqual(theirs.subscribed, ours.subscribed)
  assert.ok(theirs.subscribed.includes('Ünïcödé'))

  // again into the same directory: every message is there already
  const again = await cli(n.url, ['export', USER, '--maildir', exported])
  assert.equal(again.code, 0, again.err)
  assert.match(again.out, /exported 0 messages/)

  const mboxDir = join(dir, 'mbox')
  const m = await cli(n.url, ['export', USER, '--mbox', mboxDir])
  assert.equal(m.code, 0, m.err)
  assert.deepEqual((await readdir(mboxDir)).sort(), ['Archive.mbox', 'Drafts.mbox', 'INBOX.mbox', 'Junk.mbox', 'Sent.mbox', 'Trash.mbox', 'Work', 'Work.mbox', 'Ünïcödé.mbox'].sort())
  const back = []
  for await (const x of readMbox(join(mboxDir, 'Work', 'Sub.mbox'))) back.push(x)
  assert.equal(back.length, 2)
  for (const [i, x] of back.entries()) {
    assert.ok(!('tooBig' in x))
    const want = ours.folders['Work/Sub'].messages[i]
    assert.equal(x.raw.toString('base64'), want.source, 'mbox: the same bytes')
    assert.deepEqual([...x.flags].sort(), want.flags)
    assert.equal(x.internalDate, want.date)
  }
})

// restore --user on a live node: a user deleted since the backup comes back identical (its directory record and its
// log); a user whose mail went on after the backup keeps it, and gets each backed-up mailbox as Restored/NAME.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { tempDir } from '../helpers/tmp.ts'
import { cli, snapshot, startAdminNode } from '../migrate/helpers.ts'

test('restore --user: a deleted user comes back identical; a user who went on gets Restored/ folders', { timeout: 120_000 }, async t => {
  const n = await startAdminNode(t)
  const s = n.node.store
  await s.addDomain('example.com')
  for (const u of ['a@example.com', 'b@example.com']) {
    await s.addUser({ address: u, password: 'pw' })
    await s.createMailbox(u, 'Work')
    await s.append(u, 'INBOX', { raw: Buffer.from(`Subject: hello ${u}\r\n\r\nbody\r\n`), flags: ['\\Seen', 'Kw'], internalDate: Date.UTC(2022, 1, 1) })
    await s.append(u, 'Work', { raw: Buffer.from(`Subject: work ${u}\r\n\r\nbody\r\n`), flags: [], internalDate: Date.UTC(2022, 1, 2) })
  }
  const before = await snapshot(n.port('imap'), 'a@example.com', 'pw')
  const backup = join(await tempDir(t), 'backup')
  assert.equal((await cli(n.url, ['backup', '--to', backup])).code, 0)

  await s.deleteUser('a@example.com')
  const r = await cli(n.url, ['restore', '--from', backup, '--user', 'a@example.com'])
  assert.equal(r.code, 0, r.err)
  assert.deepEqual(await snapshot(n.port('imap'), 'a@example.com', 'pw'), before, 'the same account, UIDVALIDITY and UIDs included')

  await s.append('b@example.com', 'INBOX', { raw: Buffer.from('Subject: later\r\n\r\nbody\r\n'), flags: [] })
  const box = await s.getMailbox('b@example.com', 'INBOX')
  await s.expunge('b@example.com', box!.id, [1])
  const r2 = await cli(n.url, ['restore', '--from', backup, '--user', 'b@example.com'])
  assert.equal(r2.code, 0, r2.err)
  const b = await snapshot(n.port('imap'), 'b@example.com', 'pw')
  assert.deepEqual(b.folders.INBOX.messages.map(m => Buffer.from(m.source, 'base64').toString()), ['Subject: later\r\n\r\nbody\r\n'], 'the live mail is left as it is')
  assert.deepEqual(b.folders['Restored/INBOX'].messages.map(m => [Buffer.from(m.source, 'base64').toString(), m.flags]), [['Subject: hello b@example.com\r\n\r\nbody\r\n', ['Kw', '\\Seen']]])
  assert.equal(b.folders['Restored/Work'].messages.length, 1)
  // again: nothing more
  assert.equal((await cli(n.url, ['restore', '--from', backup, '--user', 'b@example.com'])).code, 0)
  assert.equal((await snapshot(n.port('imap'), 'b@example.com', 'pw')).folders['Restored/INBOX'].messages.length, 1)
})

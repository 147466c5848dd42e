// The scheduled backup (node/backup BackupScheduler) on a standalone node: a tick writes a backup that verifies,
// a second tick only what changed; a node off a grid is always the one that runs it.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { BackupScheduler, nodeBackupSource, readManifest, runBackup, verifyBackup } from '../../node/backup/index.ts'
import type { Manifest } from '../../node/backup/index.ts'
import { startNode } from '../helpers/node.ts'
import { tempDir } from '../helpers/tmp.ts'

test('scheduled backup: a tick backs up the node, the next one only what changed', async t => {
  const n = await startNode(t)
  const s = n.node.store
  await s.addDomain('example.com')
  await s.addUser({ address: 'a@example.com', password: 'pw' })
  await s.append('a@example.com', 'INBOX', { raw: Buffer.from('Subject: one\r\n\r\nbody one\r\n'), flags: ['\\Seen'] })
  const dir = await tempDir(t)
  const sched = new BackupScheduler({ store: s, userMail: n.node.userMail, grid: null, logger: pino({ level: 'silent' }) }, { dir, intervalMinutes: 60, node: 'mx.test' })
  t.after(async () => { await sched.stop() })
  assert.equal(sched.isRunner(), true)
  await sched.tick()
  const m1 = await readManifest(dir) as Manifest
  assert.equal(m1.runs.length, 1)
  assert.equal(m1.users['a@example.com'].position, await s.logPosition('a@example.com'))
  assert.equal((await verifyBackup(dir)).ok, true)
  await s.append('a@example.com', 'INBOX', { raw: Buffer.from('Subject: two\r\n\r\nbody two\r\n'), flags: [] })
  await sched.tick()
  const m2 = await readManifest(dir) as Manifest
  assert.equal(m2.runs[1].blobsWritten, 1)
  assert.equal(m2.runs[1].entriesWritten, 1)
  assert.equal(m2.users['a@example.com'].segments.length, 2)
  assert.equal((await verifyBackup(dir)).ok, true)
})

test('a user that cannot be read is reported; the others are backed up, and the next run takes it', async t => {
  const n = await startNode(t)
  const s = n.node.store
  await s.addDomain('example.com')
  for (const u of ['a@example.com', 'b@example.com']) {
    await s.addUser({ address: u, password: 'pw' })
    await s.append(u, 'INBOX', { raw: Buffer.from(`Subject: ${u}\r\n\r\nbody\r\n`), flags: [] })
  }
  const dir = await tempDir(t)
  const real = nodeBackupSource({ store: s, userMail: n.node.userMail, node: 'mx.test' })
  const failing = { ...real, position: async (u: string) => { if (u === 'b@example.com') throw new Error('primary unreachable'); return await real.position(u) } }
  const { run } = await runBackup(failing, dir)
  assert.deepEqual(run.failed, [{ user: 'b@example.com', error: 'primary unreachable' }])
  const m1 = await readManifest(dir) as Manifest
  assert.ok(m1.users['a@example.com'].position > 0)
  assert.equal(m1.users['b@example.com'], undefined)
  assert.equal((await verifyBackup(dir)).ok, true)
  const again = await runBackup(real, dir)
  assert.deepEqual(again.run.failed, [])
  assert.equal((await readManifest(dir) as Manifest).users['b@example.com'].position, await s.logPosition('b@example.com'))
})

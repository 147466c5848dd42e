// Encrypted backups (node/backup/crypto.ts): `backup --key-file` seals every file but the manifest with AES-256-GCM
// (random nonce, the path as additional data); no mail, address or password hash is readable in them; the
// manifest records the cipher and the key's id; verify checks the checksums without the key and opens every file
// with it; an incremental run and a restore need the same key (none, or another, is refused before anything is
// written); a sealed file altered (its checksum fixed up to match) does not open. The scheduled backup with
// backup.keyFile.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { createHash, randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { backupKey, seal, SEAL_MAGIC, unseal, readKeyFile } from '../../node/backup/crypto.ts'
import { BackupError } from '../../node/backup/format.ts'
import { BackupScheduler, readManifest, verifyBackup } from '../../node/backup/index.ts'
import type { Manifest } from '../../node/backup/index.ts'
import pino from 'pino'
import { startNode } from '../helpers/node.ts'
import { tempDir } from '../helpers/tmp.ts'
import { cli, snapshot, startAdminNode } from '../migrate/helpers.ts'

async function files (dir: string, under = ''): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(join(dir, under), { withFileTypes: true })) {
    const p = under === '' ? e.name : `${under}/${e.name}`
    if (e.isDirectory()) out.push(...await files(dir, p))
    else out.push(p)
  }
  return out
}

test('seal and unseal: the path is bound, a wrong key or an altered byte does not open, key files are 32 bytes', async t => {
  const k = backupKey(randomBytes(32))
  const data = Buffer.from('Subject: secret\r\n\r\nbody\r\n')
  const sealed = seal(k, 'blobs/ab/x', data)
  assert.ok(sealed.subarray(0, SEAL_MAGIC.length).equals(SEAL_MAGIC))
  assert.ok(!sealed.includes(Buffer.from('secret')))
  assert.deepEqual(unseal(k, 'blobs/ab/x', sealed), data)
  assert.notDeepEqual(seal(k, 'blobs/ab/x', data), sealed, 'a new nonce each time')
  assert.throws(() => unseal(k, 'blobs/ab/y', sealed), BackupError)
  assert.throws(() => unseal(backupKey(randomBytes(32)), 'blobs/ab/x', sealed), BackupError)
  const altered = Buffer.from(sealed)
  altered[20] ^= 1
  assert.throws(() => unseal(k, 'blobs/ab/x', altered), /does not open with this key/)
  assert.throws(() => unseal(k, 'blobs/ab/x', data), /not an encrypted backup file/)
  const dir = await tempDir(t)
  await writeFile(join(dir, 'short.key'), randomBytes(16))
  await assert.rejects(readKeyFile(join(dir, 'short.key')), /16 bytes, a key is exactly 32/)
  await writeFile(join(dir, 'good.key'), k.key)
  assert.equal((await readKeyFile(join(dir, 'good.key'))).id, k.id)
})

test('backup --key-file: sealed files, verify with and without the key, incremental and restore need the same key', { timeout: 180_000 }, async t => {
  const n = await startAdminNode(t)
  const s = n.node.store
  await s.addDomain('example.com')
  const marker = (u: string, i: number): string => `MARKER-${u.split('@')[0]}-${i}-plaintext`
  for (const u of ['a@example.com', 'b@example.com']) {
    await s.addUser({ address: u, password: 'pw' })
    for (let i = 0; i < 3; i++) await s.append(u, 'INBOX', { raw: Buffer.from(`Subject: ${marker(u, i)}\r\n\r\n${marker(u, i)} body\r\n`), flags: i === 0 ? ['\\Seen'] : [], internalDate: Date.UTC(2022, 1, 1 + i) })
  }
  const work = await tempDir(t)
  const keyFile = join(work, 'backup.key')
  const key = randomBytes(32)
  await writeFile(keyFile, key)
  const otherKey = join(work, 'other.key')
  await writeFile(otherKey, randomBytes(32))
  const dir = join(work, 'backup')
  const first = await cli(n.url, ['backup', '--to', dir, '--key-file', keyFile])
  assert.equal(first.code, 0, first.err)

  // the manifest says so; every other file is sealed, and nothing of the mail or the directory is readable
  const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { encryption?: { cipher: string, keyId: string }, files: Record<string, { sha256: string, plainSha256?: string }> }
  assert.deepEqual(manifest.encryption, { cipher: 'AES-256-GCM', keyId: backupKey(key).id })
  const all = (await files(dir)).filter(f => f !== 'manifest.json')
  assert.ok(all.length >= 8, `${all.length} files`)
  for (const f of all) {
    const data = await readFile(join(dir, f))
    assert.ok(data.subarray(0, SEAL_MAGIC.length).equals(SEAL_MAGIC), `${f} is sealed`)
    assert.equal(createHash('sha256').update(data).digest('hex'), manifest.files[f].sha256, `${f}: the checksum is of the sealed bytes`)
    for (const text of ['MARKER-', 'example.com', '$scrypt', 'Subject']) assert.ok(!data.includes(Buffer.from(text)), `${f} shows no ${text}`)
  }

  // verify: checksums without the key; contents with it; another key refused
  const v1 = await cli(n.url, ['backup', 'verify', dir])
  assert.equal(v1.code, 0, v1.out)
  assert.match(v1.out, /OK .*encrypted: checksums only/)
  const v2 = await cli(n.url, ['backup', 'verify', dir, '--key-file', keyFile])
  assert.equal(v2.code, 0, v2.out)
  assert.match(v2.out, /OK .*encrypted, contents checked with the key/)
  const v3 = await cli(n.url, ['backup', 'verify', dir, '--key-file', otherKey])
  assert.notEqual(v3.code, 0)
  assert.match(v3.out, /the key is not this backup's/)

  // incremental: without the key or with another, refused before anything is written; with it, only what is new
  await s.append('a@example.com', 'INBOX', { raw: Buffer.from(`Subject: ${marker('a@example.com', 9)}\r\n\r\nlater\r\n`), flags: [] })
  const none = await cli(n.url, ['backup', '--to', dir])
  assert.notEqual(none.code, 0)
  assert.match(none.err, /this backup is encrypted \(AES-256-GCM\); give its key/)
  const other = await cli(n.url, ['backup', '--to', dir, '--key-file', otherKey])
  assert.notEqual(other.code, 0)
  assert.match(other.err, /the key is not this backup's/)
  const second = await cli(n.url, ['backup', '--to', dir, '--key-file', keyFile, '--json'])
  assert.equal(second.code, 0, second.err)
  const run = JSON.parse(second.out) as { id: number, blobsWritten: number, usersChanged: number, filesWritten: number }
  assert.equal(run.id, 2, 'the refused runs wrote no run')
  assert.equal(run.blobsWritten, 1)
  assert.equal(run.usersChanged, 1)
  assert.equal(run.filesWritten, 2, 'one body and one log segment: the directory did not change')
  // a plain backup directory refuses a key
  const plainDir = join(work, 'plain')
  assert.equal((await cli(n.url, ['backup', '--to', plainDir])).code, 0)
  const keyed = await cli(n.url, ['backup', '--to', plainDir, '--key-file', keyFile])
  assert.notEqual(keyed.code, 0)
  assert.match(keyed.err, /this backup is not encrypted/)

  // restore needs the key, and then gives the account back identical
  const before = await snapshot(n.port('imap'), 'b@example.com', 'pw')
  await s.deleteUser('b@example.com')
  const refused = await cli(n.url, ['restore', '--from', dir, '--user', 'b@example.com'])
  assert.notEqual(refused.code, 0)
  assert.match(refused.err, /restore refused: .*encrypted .*give its key/)
  const restored = await cli(n.url, ['restore', '--from', dir, '--user', 'b@example.com', '--key-file', keyFile])
  assert.equal(restored.code, 0, restored.err)
  assert.deepEqual(await snapshot(n.port('imap'), 'b@example.com', 'pw'), before)

  // a sealed body altered, its checksum fixed up to match: checksums pass, but it does not open
  const blob = all.find(f => f.startsWith('blobs/'))!
  const data = await readFile(join(dir, blob))
  data[SEAL_MAGIC.length + 12 + 2] ^= 0x40
  await writeFile(join(dir, blob), data)
  const m = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { files: Record<string, { sha256: string }> }
  m.files[blob].sha256 = createHash('sha256').update(data).digest('hex')
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(m))
  assert.equal((await cli(n.url, ['backup', 'verify', dir])).code, 0, 'without the key only the checksums are checked')
  const tampered = await cli(n.url, ['backup', 'verify', dir, '--key-file', keyFile])
  assert.notEqual(tampered.code, 0)
  assert.ok(tampered.out.includes(`${blob}: does not open with this key`), tampered.out)
})

test('the scheduled backup with backup.keyFile: sealed, verifies with the key; a missing key file fails the run, not the node', async t => {
  const n = await startNode(t)
  const s = n.node.store
  await s.addDomain('example.com')
  await s.addUser({ address: 'a@example.com', password: 'pw' })
  await s.append('a@example.com', 'INBOX', { raw: Buffer.from('Subject: one\r\n\r\nbody one\r\n'), flags: ['\\Seen'] })
  const work = await tempDir(t)
  const keyFile = join(work, 'k')
  const key = randomBytes(32)
  await writeFile(keyFile, key)
  const dir = join(work, 'b')
  const sched = new BackupScheduler({ store: s, userMail: n.node.userMail, grid: null, logger: pino({ level: 'silent' }) }, { dir, intervalMinutes: 60, node: 'mx.test', keyFile })
  t.after(async () => { await sched.stop() })
  await sched.tick()
  const m = await readManifest(dir) as Manifest
  assert.equal(m.encryption?.keyId, backupKey(key).id)
  assert.equal((await verifyBackup(dir, { key: backupKey(key) })).ok, true)
  const gone = new BackupScheduler({ store: s, userMail: n.node.userMail, grid: null, logger: pino({ level: 'silent' }) }, { dir, intervalMinutes: 60, node: 'mx.test', keyFile: join(work, 'missing') })
  await gone.tick()
  assert.equal((await readManifest(dir) as Manifest).runs.length, 1, 'no run without its key')
})

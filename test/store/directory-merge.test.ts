// Directory replication at the store level: export, merge (last writer wins, tombstones), digests, and the
// deterministic mail state a merged user gets.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createStore } from '../../store/index.ts'
import type { DirectoryRecord, Store } from '../../store/index.ts'
import { tempDir } from '../helpers/tmp.ts'

async function pair (t: { after: (fn: () => Promise<void>) => void }): Promise<[Store, Store]> {
  const dir = await tempDir(t)
  let clock = 1_800_000_000_000
  const a = createStore({ now: () => clock++ }, { path: `${dir}/a`, scryptLogN: 4 })
  const b = createStore({ now: () => clock++ }, { path: `${dir}/b`, scryptLogN: 4 })
  await a.start()
  await b.start()
  t.after(async () => { await a.stop(); await b.stop() })
  return [a, b]
}

test('merge brings users, aliases and domains over, with the same mail state', async (t) => {
  const [a, b] = await pair(t)
  const seen: DirectoryRecord[] = []
  b.onDirectoryChange(r => seen.push(...r))
  await a.addDomain('example.com')
  await a.addUser({ address: 'bob@example.com', password: 'pw', quotaMessages: 7 })
  await a.addAlias('sales@example.com', ['bob@example.com'])
  assert.notEqual(await a.directoryDigest(), await b.directoryDigest())
  const applied = await b.mergeDirectory(await a.exportDirectory())
  assert.equal(applied.length, 3)
  assert.equal(seen.length, 3, 'merges are announced')
  assert.equal(await a.directoryDigest(), await b.directoryDigest())
  assert.ok(await b.verifyPassword('bob@example.com', 'pw'))
  assert.deepEqual(await b.resolveRecipient('sales@example.com'), ['bob@example.com'])
  assert.deepEqual(await b.listMailboxes('bob@example.com'), await a.listMailboxes('bob@example.com'))
  assert.deepEqual(await b.readLog('bob@example.com', 0, 100), await a.readLog('bob@example.com', 0, 100), 'identical first log positions')
  assert.deepEqual(await b.mergeDirectory(await a.exportDirectory()), [], 'merging again changes nothing')
})

test('last writer wins per record; a delete is a tombstone that also drops the mail', async (t) => {
  const [a, b] = await pair(t)
  await a.addDomain('example.com')
  await a.addUser({ address: 'bob@example.com', password: 'first' })
  await b.mergeDirectory(await a.exportDirectory())
  await b.setPassword('bob@example.com', 'second') // later version, on b
  await a.setQuota('bob@example.com', { messages: 3 }) // even later, on a: replaces b's record (password included)
  await b.mergeDirectory(await a.exportDirectory())
  await a.mergeDirectory(await b.exportDirectory())
  assert.equal(await a.directoryDigest(), await b.directoryDigest())
  assert.ok(await b.verifyPassword('bob@example.com', 'first'), 'the newest record wins as a whole')
  await b.append('bob@example.com', 'INBOX', { raw: Buffer.from('Subject: x\r\n\r\ny\r\n') })
  await a.deleteUser('bob@example.com')
  await b.mergeDirectory(await a.exportDirectory())
  assert.equal(await b.getUser('bob@example.com'), null)
  assert.deepEqual(await b.listMailboxes('bob@example.com'), [])
  assert.equal(await b.logPosition('bob@example.com'), 0)
})

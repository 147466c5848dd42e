// Console admin accounts and sessions over a real store (appliance/console/accounts.ts): the records, the
// signed session ids and what ends them (expiry, logout, a password or domain change, the account's removal,
// a forged or malformed id), and the entries replicating to another store as the grid's directory sync does.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AccountError, createAccounts, mayManage, REVOKED_MAX, SESSION_TTL_MS } from '../../appliance/console/accounts.ts'
import { createStore } from '../../store/index.ts'
import type { Store } from '../../store/index.ts'
import { tempDir } from '../helpers/tmp.ts'

async function store (t: { after: (fn: () => Promise<void>) => void }): Promise<Store> {
  const s = createStore({}, { path: await tempDir(t, 'mailgrid-accounts-'), sync: false, scryptLogN: 10 })
  await s.start()
  t.after(async () => { await s.stop() })
  return s
}

test('accounts: add, list, verify, refuse duplicates and bad names or domains', async t => {
  const a = createAccounts(await store(t), 10)
  assert.deepEqual((await a.add('Root', 'pw one')).domains, null)
  await a.add('dom', 'pw two', ['One.Test', 'one.test', 'two.test'])
  assert.deepEqual((await a.list()).map(x => [x.name, x.domains]), [['dom', ['one.test', 'two.test']], ['root', null]])
  await assert.rejects(a.add('root', 'x'), (e: unknown) => e instanceof AccountError && e.status === 409)
  for (const bad of ['', 'a.b', 'x y', 'z'.repeat(65)]) await assert.rejects(a.add(bad, 'x'), (e: unknown) => e instanceof AccountError && e.status === 400)
  await assert.rejects(a.add('d2', 'x', ['not a domain']), (e: unknown) => e instanceof AccountError && e.status === 400)
  await assert.rejects(a.add('d3', 'x', []), (e: unknown) => e instanceof AccountError && e.status === 400)
  assert.equal((await a.verify('ROOT', 'pw one'))?.name, 'root')
  assert.equal(await a.verify('root', 'pw two'), null)
  assert.equal(await a.verify('nobody', 'pw one'), null)
  assert.equal(await a.verify('root', 'x'.repeat(2000)), null)
})

test('sessions: valid until expiry; logout, a new password, new domains or removal end them; forgeries fail', async t => {
  const a = createAccounts(await store(t), 10)
  await a.add('root', 'pw')
  await a.add('dom', 'pw', ['one.test'])
  const now = Date.now()
  const s = await a.openSession('root', now)
  const p = await a.session(s.id, now + 1000)
  assert.equal(p?.kind, 'admin')
  assert.equal(p?.kind === 'admin' ? p.csrf : '', s.csrf)
  assert.equal(await a.session(s.id, now + SESSION_TTL_MS + 1), null)
  // every part of the id is under the MAC
  const [name, exp, nonce, mac] = s.id.split('.')
  assert.equal(await a.session(`dom.${exp}.${nonce}.${mac}`, now), null)
  assert.equal(await a.session(`${name}.${Number(exp) + 1000}.${nonce}.${mac}`, now), null)
  assert.equal(await a.session(`${name}.${exp}.${nonce.replace(/^./, c => c === 'A' ? 'B' : 'A')}.${mac}`, now), null)
  for (const junk of ['', 'root', 'root...', `${s.id}.x`, 'x'.repeat(1000)]) assert.equal(await a.session(junk, now), null)

  // logout ends this session only
  const other = await a.openSession('root', now)
  await a.closeSession(p!)
  assert.equal(await a.session(s.id, now), null)
  assert.notEqual(await a.session(other.id, now), null)
  // a new password ends them all
  await a.setPassword('root', 'pw2')
  assert.equal(await a.session(other.id, now), null)
  const d = await a.openSession('dom', now)
  await a.setDomains('dom', ['two.test'])
  assert.equal(await a.session(d.id, now), null)
  const d2 = await a.openSession('dom', now)
  const dp = await a.session(d2.id, now)
  assert.ok(dp !== null && !mayManage(dp, 'one.test') && mayManage(dp, 'TWO.test'))
  await a.remove('dom')
  assert.equal(await a.session(d2.id, now), null)
  await assert.rejects(a.remove('dom'), (e: unknown) => e instanceof AccountError && e.status === 404)
})

test('sessions: past REVOKED_MAX logouts the account\'s sessions all end rather than one being forgotten', async t => {
  const a = createAccounts(await store(t), 10)
  await a.add('root', 'pw')
  const now = Date.now()
  const keep = await a.openSession('root', now)
  for (let i = 0; i < REVOKED_MAX; i++) {
    const s = await a.openSession('root', now)
    await a.closeSession((await a.session(s.id, now))!)
  }
  assert.notEqual(await a.session(keep.id, now), null)
  const last = await a.openSession('root', now)
  await a.closeSession((await a.session(last.id, now))!)
  assert.equal(await a.session(keep.id, now), null)
})

test('the accounts and the secret replicate: a session made on one store is honoured by another that merged its directory', async t => {
  const one = await store(t)
  const two = await store(t)
  const a1 = createAccounts(one, 10)
  await a1.add('root', 'pw')
  const s = await a1.openSession('root', Date.now())
  const a2 = createAccounts(two, 10)
  await two.mergeDirectory(await one.exportDirectory())
  assert.equal(await one.directoryDigest(), await two.directoryDigest())
  assert.equal((await a2.session(s.id, Date.now()))?.kind, 'admin')
  assert.equal((await a2.verify('root', 'pw'))?.name, 'root')
  // a removal (a tombstone) replicates too
  await a1.remove('root')
  await two.mergeDirectory(await one.exportDirectory())
  assert.equal(await a2.session(s.id, Date.now()), null)
  assert.deepEqual(await a2.list(), [])
})

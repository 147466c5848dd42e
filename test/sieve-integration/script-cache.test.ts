// The active Sieve script kept in memory for delivery (ActiveScriptCache, node/managesieve/scripts.ts): the next
// delivery after a change runs the new script, whether the change came through the admin API's service on this
// node, as log entries applied from another node (log shipping, the grid's replication and catch-up), as a merge's
// write, or by dropping or deleting the user. Reads are counted at the store, so the tests also show that an
// unchanged script is not read again.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createStore } from '../../store/index.ts'
import type { Store } from '../../store/index.ts'
import { ActiveScriptCache, SieveScripts } from '../../node/managesieve/scripts.ts'
import { startNode } from '../helpers/node.ts'
import { RawClient } from '../helpers/client.ts'
import { tempDir } from '../helpers/tmp.ts'

const USER = 'amy@example.com'

async function newStore (t: { after: (fn: () => Promise<void>) => void }): Promise<Store> {
  const store = createStore({}, { path: await tempDir(t), scryptLogN: 4 })
  await store.start()
  t.after(async () => { await store.stop() })
  return store
}

/** SieveScripts over `store` with the cache, every attribute read counted; `hold` makes the next read wait. */
function cached (store: Store, init?: { usersMax?: number }): { scripts: SieveScripts, cache: ActiveScriptCache, reads: () => number, hold: () => () => void } {
  let reads = 0
  let gate: Promise<void> | null = null
  const cache = new ActiveScriptCache(store, init)
  const scripts = new SieveScripts({
    getAttr: async (u, k) => {
      reads++
      const v = await store.getAttr(u, k)
      if (gate !== null) await gate
      return v
    },
    listAttrs: store.listAttrs.bind(store),
    setAttrs: store.setAttrs.bind(store)
  }, cache)
  return {
    scripts,
    cache,
    reads: () => reads,
    hold: () => {
      let open = (): void => {}
      gate = new Promise<void>(resolve => { open = resolve })
      return () => { gate = null; open() }
    }
  }
}

/** Ships `from`'s log entries that `to` lacks, as the grid's replication does (Replication.applyLog). */
async function ship (from: Store, to: Store, user: string): Promise<void> {
  const have = await to.logPosition(user)
  const entries = await from.readLog(user, have + 1, 10_000)
  const [prev] = have > 0 ? await from.readLog(user, have, 1) : []
  await to.applyLog(user, entries, [], prev === undefined ? undefined : { seq: prev.seq, eid: prev.eid ?? null })
}

const fileinto = (box: string): string => `require "fileinto";\r\nfileinto "${box}";\r\n`

test('replicated and merged changes reach the cache; an unchanged script is read once', async (t) => {
  const a = await newStore(t) // the primary
  const b = await newStore(t) // a replica, delivering after a failover
  await a.addDomain('example.com')
  await a.addUser({ address: USER, password: 'pw' })
  await a.setAttrs(USER, [{ key: 'sieve/script/one', value: fileinto('One') }, { key: 'sieve/active', value: 'one' }])
  await ship(a, b, USER)
  const r = cached(b)
  assert.equal((await r.scripts.active(USER))?.name, 'one')
  const reads = r.reads()
  assert.equal((await r.scripts.active(USER))?.source, fileinto('One'))
  assert.equal(r.reads(), reads, 'the second delivery read nothing')

  // the primary activates another script: the replica applies the entries, its next delivery runs the new one
  await a.setAttrs(USER, [{ key: 'sieve/script/two', value: fileinto('Two') }, { key: 'sieve/active', value: 'two' }])
  await ship(a, b, USER)
  assert.deepEqual(await r.scripts.active(USER), { name: 'two', source: fileinto('Two') })
  // the active script's text replaced under the same name
  await a.setAttrs(USER, [{ key: 'sieve/script/two', value: fileinto('Three') }])
  await ship(a, b, USER)
  assert.equal((await r.scripts.active(USER))?.source, fileinto('Three'))

  // a merge after a partition writes the other side's winning changes with their time (setAttrs with `at`)
  await b.setAttrs(USER, [{ key: 'sieve/active', value: 'one' }], { at: Date.now() + 1000 })
  assert.equal((await r.scripts.active(USER))?.name, 'one')

  // other attributes (vacation memory, written at deliveries) leave the cached script alone
  const before = r.reads()
  await b.setAttrs(USER, [{ key: 'sieve/memory/vacation/x', value: '{"at":1,"until":2}' }])
  assert.equal((await r.scripts.active(USER))?.name, 'one')
  assert.equal(r.reads(), before)

  // the replica's copy dropped (the grid moved the user away): nothing cached for it
  assert.equal(await b.dropUserMail(USER), true)
  assert.equal(await r.scripts.active(USER), null)
  r.cache.stop()
})

test('a read that a change overtakes is not kept; deleting the user drops its script; the bound holds', async (t) => {
  const store = await newStore(t)
  await store.addDomain('example.com')
  await store.addUser({ address: USER, password: 'pw' })
  const scripts = new SieveScripts(store)
  await scripts.put(USER, 'one', fileinto('One'), { activate: true })
  const r = cached(store)
  const release = r.hold()
  const slow = r.scripts.active(USER) // reads 'one', then waits
  await new Promise(resolve => setTimeout(resolve, 20))
  await scripts.put(USER, 'two', fileinto('Two'), { activate: true })
  release()
  assert.equal((await slow)?.name, 'one', 'the read began before the change')
  assert.equal((await r.scripts.active(USER))?.name, 'two', 'the old answer was not kept')

  await store.deleteUser(USER)
  await store.addUser({ address: USER, password: 'pw' })
  assert.equal(await r.scripts.active(USER), null, 'a new user of the same address has no script')

  const small = cached(store, { usersMax: 3 })
  for (let i = 0; i < 5; i++) {
    await store.addUser({ address: `u${i}@example.com`, password: 'pw' })
    await small.scripts.active(`u${i}@example.com`)
  }
  assert.equal(small.cache.size, 3)
  const reads = small.reads()
  await small.scripts.active('u4@example.com')
  assert.equal(small.reads(), reads, 'the most recent kept')
  await small.scripts.active('u0@example.com')
  assert.ok(small.reads() > reads, 'the oldest dropped')
  r.cache.stop()
  small.cache.stop()
})

async function send (port: number, subject: string): Promise<void> {
  const c = await RawClient.connect(port)
  try {
    await c.read()
    for (const line of ['EHLO test', 'MAIL FROM:<sender@remote.test>', `RCPT TO:<${USER}>`, 'DATA']) assert.match(await c.cmd(line), /^(250|354)/)
    assert.match(await c.cmd(`From: <sender@remote.test>\r\nTo: <${USER}>\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@remote.test>\r\n\r\nhello\r\n.`), /^250/)
    await c.cmd('QUIT').catch(() => '')
  } finally {
    c.close()
  }
}

test('a running node: the delivery after a change through the admin API\'s service runs the new script', async (t) => {
  const { node, port } = await startNode(t)
  await node.store.addDomain('example.com')
  await node.store.addUser({ address: USER, password: 'pw' })
  const where = async (subject: string): Promise<string[]> => {
    const out: string[] = []
    for (const box of await node.store.listMailboxes(USER)) {
      for (const rec of await node.store.listMessages(USER, box.id)) {
        if ((await node.store.readMessage(rec)).toString().includes(`Subject: ${subject}\r\n`)) out.push(box.name)
      }
    }
    return out
  }
  await node.sieve.put(USER, 'a', 'require ["fileinto", "mailbox"];\r\nfileinto :create "A";\r\n', true)
  await send(port('smtp'), 'first')
  await send(port('smtp'), 'second')
  assert.deepEqual(await where('first'), ['A'])
  assert.deepEqual(await where('second'), ['A'])
  await node.sieve.put(USER, 'b', 'require ["fileinto", "mailbox"];\r\nfileinto :create "B";\r\n', true)
  await send(port('smtp'), 'third')
  assert.deepEqual(await where('third'), ['B'])
  await node.sieve.setActive(USER, '')
  await send(port('smtp'), 'fourth')
  assert.deepEqual(await where('fourth'), ['INBOX'])
})

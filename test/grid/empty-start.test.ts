// A node that starts a user empty while the user's mail exists on members it cannot reach (found by the
// history-checked chaos run, seed 595389629): both replicas of the user die, the third node becomes its primary with
// no copy, and derives the same first entries (same UIDVALIDITY) every node derives. Had it served that empty copy,
// the UIDs it gave to new mail would have named other messages than the ones readers saw under the same UIDVALIDITY
// before. Its sessions get a temporary failure instead until the older copy is back and merged; deliveries are taken
// meanwhile; afterwards every message is present once and no UID a reader saw names another message.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { Grid, replicatedMailStore } from '../../node/grid/index.ts'
import { createStore, isMailError } from '../../store/index.ts'
import type { MailStore, Store } from '../../store/index.ts'
import { MemoryNetwork } from '../helpers/memory-gossip.ts'
import type { MemoryGossip } from '../helpers/memory-gossip.ts'
import { tempDir } from '../helpers/tmp.ts'

const logger = pino({ level: process.env.MAILGRID_TEST_LOG ?? 'silent' })

interface Slot { id: string, gossip: MemoryGossip, store: Store | null, grid: Grid | null }

async function until (what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 25))
  }
}

async function grid (t: { after: (fn: () => Promise<void>) => void }, ids: string[], replicas: number): Promise<{ slots: Slot[], up: (s: Slot) => Promise<void>, down: (s: Slot) => Promise<void>, end: () => Promise<void> }> {
  const dir = await tempDir(t)
  const net = new MemoryNetwork()
  const slots: Slot[] = ids.map(id => ({ id, gossip: net.create(id), store: null, grid: null }))
  const up = async (s: Slot): Promise<void> => {
    s.store = createStore({}, { path: `${dir}/${s.id}`, scryptLogN: 4 })
    await s.store.start()
    s.grid = new Grid({ gossip: s.gossip, store: s.store, logger: logger.child({ node: s.id }) }, { replicas })
    await s.gossip.start()
    await s.grid.start()
  }
  // SIGKILL: gone without a word; its disk stays
  const down = async (s: Slot): Promise<void> => {
    s.gossip.kill()
    const { grid, store } = s
    s.grid = null
    s.store = null
    await grid?.stop()
    await store?.stop().catch(() => {})
  }
  for (const s of slots) await up(s)
  // every node stopped before the directory is removed (the hooks run in the order they were added)
  const end = async (): Promise<void> => { for (const s of slots) await down(s) }
  t.after(end)
  return { slots, up, down, end }
}

const raw = (i: number): Buffer => Buffer.from(`Subject: m${i}\r\nX-Id: ${i}\r\n\r\nbody ${i}\r\n`)

/** What readers saw: `${uidvalidity}:${uid}` → X-Id, and every time one UID named two messages. */
class Readers {
  readonly seen = new Map<string, string>()
  readonly contradictions: string[] = []

  /** Reads the INBOX through a node's replicated store, as an IMAP session on that node would. */
  async read (mail: MailStore, user: string): Promise<string[]> {
    const box = await mail.getMailbox(user, 'INBOX')
    if (box === null) return []
    const out: string[] = []
    for (const rec of await mail.listMessages(user, box.id)) {
      const id = /X-Id: (\d+)/.exec((await mail.readMessage(rec)).toString())?.[1] ?? '?'
      const key = `${box.uidValidity}:${rec.uid}`
      const before = this.seen.get(key)
      if (before !== undefined && before !== id) this.contradictions.push(`UID ${rec.uid} (UIDVALIDITY ${box.uidValidity}) was message ${before}, now ${id}`)
      this.seen.set(key, id)
      out.push(id)
    }
    return out
  }
}

const unavailable = (err: unknown): boolean => isMailError(err, 'unavailable')

test('a node that starts a user empty while its replicas are dead serves no UIDs until the older copy is merged', async (t) => {
  const { slots, up, down, end } = await grid(t, ['A', 'B', 'C'], 2)
  const [A, B, C] = slots
  const users = Array.from({ length: 12 }, (_, i) => `e${i}@example.com`)
  await (B.store as Store).addDomain('example.com')
  for (const u of users) await (B.store as Store).addUser({ address: u, password: 'pw' })
  await until('directory everywhere', async () => (await Promise.all(slots.map(async s => (await s.store?.listUsers())?.length))).every(n => n === users.length))
  // a user whose copies are on B and C, none on A
  const user = users.find(u => { const r = (A.grid as Grid).replicasOf(u); return r.includes('B') && r.includes('C') })
  assert.ok(user !== undefined, 'a user placed on B and C')

  const acked = new Set<string>()
  let n = 0
  for (let i = 0; i < 8; i++) { await (A.grid as Grid).deliver(raw(n), [{ user, prefix: '' }]); acked.add(String(n++)) }
  const readers = new Readers()
  const primary = (A.grid as Grid).primaryOf(user) as string
  const p = slots.find(s => s.id === primary) as Slot
  assert.equal((await readers.read(replicatedMailStore(p.grid as Grid, p.store as Store), user)).length, 8)

  // A restarts and holds no copy of the user
  await down(A)
  await up(A)
  await until('A holds no copy', async () => await (A.store as Store).logPosition(user) === 0)

  // both replicas die: A becomes the primary, with nothing to catch up from
  await down(B)
  await down(C)
  assert.equal((A.grid as Grid).primaryOf(user), 'A')
  // deliveries are taken (and durable): the merge keeps them
  for (let i = 0; i < 5; i++) { await (A.grid as Grid).deliver(raw(n), [{ user, prefix: '' }]); acked.add(String(n++)) }
  assert.ok(await (A.store as Store).logPosition(user) > 0)
  const onA = replicatedMailStore(A.grid as Grid, A.store as Store)
  // sessions see none of the UIDs A gave meanwhile (what a reader would have seen is recorded, so the old
  // behaviour shows as UIDs naming two messages)
  const served = await readers.read(onA, user).then(ids => ids, (err: unknown) => err)
  assert.deepEqual(readers.contradictions, [], 'no UID a reader saw names another message')
  assert.ok(unavailable(served), `reads on A answer a temporary failure while the older copy is away (got ${String(served)})`)
  const box = await (A.store as Store).getMailbox(user, 'INBOX')
  assert.ok(box !== null)
  await assert.rejects(onA.listMailboxes(user), unavailable)
  await assert.rejects(onA.getMessages(user, box.id, [1]), unavailable)
  await assert.rejects(onA.changesSince(user, box.id, 0), unavailable)
  await assert.rejects(onA.append(user, 'INBOX', { raw: raw(999) }), unavailable, 'APPEND answers a UID: refused too')
  // a restart does not forget it: A's copy is no longer empty, yet its UIDs are still not final
  await down(A)
  await up(A)
  // B and C, which it remembers, are silent: it leads nothing until the settle time has passed (catch-up.ts)
  await until('A takes mail after its restart', async () => await (A.grid as Grid).deliver(raw(n), [{ user, prefix: '' }]).then(() => true, (err: unknown) => { if (unavailable(err)) return false; throw err }))
  acked.add(String(n++))
  await assert.rejects(readers.read(replicatedMailStore(A.grid as Grid, A.store as Store), user), unavailable, 'still provisional after a restart')

  // B returns with the older copy: the merge happens without a session's help, and reads work again
  await up(B)
  await until('merged and readable', async () => {
    const pr = slots.find(s => s.id === (B.grid as Grid).primaryOf(user)) as Slot
    try {
      const ids = await readers.read(replicatedMailStore(pr.grid as Grid, pr.store as Store), user)
      return ids.length === acked.size
    } catch (err) {
      if (!unavailable(err)) throw err
      return false
    }
  }, 40_000)
  const pr = slots.find(s => s.id === (B.grid as Grid).primaryOf(user)) as Slot
  const ids = await readers.read(replicatedMailStore(pr.grid as Grid, pr.store as Store), user)
  assert.equal(new Set(ids).size, ids.length, 'no message twice')
  assert.deepEqual([...acked].filter(id => !ids.includes(id)), [], 'every acknowledged message present')
  // C returns too; once everything settled, the readers' view still holds
  await up(C)
  await until('replicas converged', async () => {
    for (const s of slots) s.grid?.scheduleRebalance()
    const reps = (A.grid as Grid).replicasOf(user).map(id => slots.find(s => s.id === id) as Slot)
    const snaps = await Promise.all(reps.map(async r => JSON.stringify((await (r.store as Store).listMessages(user, box.id)).map(({ loc, ...m }) => m))))
    return new Set(snaps).size === 1
  }, 40_000)
  for (const s of slots) {
    const mail = replicatedMailStore(s.grid as Grid, s.store as Store)
    if ((s.grid as Grid).isPrimary(user)) await readers.read(mail, user)
  }
  assert.deepEqual(readers.contradictions, [], 'no UID named two messages as readers saw them')
  await end()
})

test('a genuinely new user started empty by its primary is served at once', async (t) => {
  const { slots, end } = await grid(t, ['A', 'B', 'C'], 2)
  const [A] = slots
  await (A.store as Store).addDomain('example.com')
  // created on A: its primary elsewhere starts it empty (every member alive, nothing to wait for)
  const users = Array.from({ length: 6 }, (_, i) => `n${i}@example.com`)
  for (const u of users) await (A.store as Store).addUser({ address: u, password: 'pw' })
  await until('directory everywhere', async () => (await Promise.all(slots.map(async s => (await s.store?.listUsers())?.length))).every(n => n === users.length))
  const user = users.find(u => !(A.grid as Grid).replicasOf(u).includes('A'))
  assert.ok(user !== undefined)
  await (A.grid as Grid).deliver(raw(1), [{ user, prefix: '' }])
  const p = slots.find(s => s.id === (A.grid as Grid).primaryOf(user)) as Slot
  assert.equal((p.grid as Grid).provisional(user), false)
  assert.deepEqual(await new Readers().read(replicatedMailStore(p.grid as Grid, p.store as Store), user), ['1'])
  await end()
})

test('a grid of one (R=1) serves its users, also after a restart', async (t) => {
  const { slots, up, down, end } = await grid(t, ['A'], 1)
  const [A] = slots
  await (A.store as Store).addDomain('example.com')
  await (A.store as Store).addUser({ address: 'solo@example.com', password: 'pw' })
  await (A.grid as Grid).deliver(raw(1), [{ user: 'solo@example.com', prefix: '' }])
  assert.deepEqual(await new Readers().read(replicatedMailStore(A.grid as Grid, A.store as Store), 'solo@example.com'), ['1'])
  await down(A)
  await up(A)
  await (A.grid as Grid).deliver(raw(2), [{ user: 'solo@example.com', prefix: '' }])
  assert.deepEqual(await new Readers().read(replicatedMailStore(A.grid as Grid, A.store as Store), 'solo@example.com'), ['1', '2'])
  await end()
})

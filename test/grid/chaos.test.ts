// Randomized faults under load, in one process with a seed that replays: continuous deliveries and flag
// changes while nodes are killed, restarted, cut apart and healed at random. Judged by the whole history:
// every acknowledged delivery is present exactly once at the end and every acknowledged keyword is set.
// A timeout or error is "unknown", never counted as lost or as present.
// MAILGRID_CHAOS_MS (default 6000) bounds the run; MAILGRID_CHAOS_SEED replays one (`npm run test:chaos`
// runs a longer one).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { Grid, replicatedMailStore } from '../../node/grid/index.ts'
import { createStore } from '../../store/index.ts'
import type { Store } from '../../store/index.ts'
import { MemoryNetwork } from '../helpers/memory-gossip.ts'
import type { MemoryGossip } from '../helpers/memory-gossip.ts'
import { tempDir } from '../helpers/tmp.ts'
import { prng } from '../helpers/prng.ts'

const logger = pino({ level: process.env.MAILGRID_TEST_LOG ?? 'silent' })
const DURATION_MS = Number(process.env.MAILGRID_CHAOS_MS ?? 6000)
const OPS_MAX = 5000
const SEED = Number(process.env.MAILGRID_CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31))
const USERS = Array.from({ length: 10 }, (_, i) => `c${i}@example.com`)
const IDS = ['A', 'B', 'C']

interface Slot { id: string, gossip: MemoryGossip, store: Store | null, grid: Grid | null, gen: number }

async function until (what: string, fn: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

// Every run must hold. Runs of this test found, among others, the case where two nodes whose views differed for a
// moment each merged the other's copy of a user and then reset it, leaving no copy (fixed: a node refuses a reset
// while it leads or merges that user). MAILGRID_CHAOS_EXPLAIN=1 prints, on a failure, every log entry that mentions
// the lost message on every node, with the fault history; MAILGRID_TEST_LOG=info adds each node's grid log.
test(`random kills, restarts and partitions under load lose nothing acknowledged (seed ${SEED})`, {
  timeout: DURATION_MS + 120_000
}, async (t) => {
  const dir = await tempDir(t)
  const rnd = prng(SEED)
  const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)]
  const net = new MemoryNetwork()
  const slots: Slot[] = IDS.map(id => ({ id, gossip: net.create(id), store: null, grid: null, gen: 0 }))
  const up = async (s: Slot): Promise<void> => {
    s.store = createStore({}, { path: `${dir}/${s.id}`, scryptLogN: 4 })
    await s.store.start()
    s.gen++
    s.grid = new Grid({ gossip: s.gossip, store: s.store, logger: logger.child({ node: `${s.id}${s.gen}` }) }, { replicas: 2 })
    await s.gossip.start()
    await s.grid.start()
  }
  const down = async (s: Slot): Promise<void> => {
    s.gossip.kill()
    const { grid, store } = s
    s.grid = null
    s.store = null
    await grid?.stop()
    await store?.stop().catch(() => {})
  }
  for (const s of slots) await up(s)
  t.after(async () => { for (const s of slots) await down(s) })
  await (slots[0].store as Store).addDomain('example.com')
  for (const u of USERS) await (slots[0].store as Store).addUser({ address: u, password: 'pw' })
  await until('directory everywhere', async () => (await Promise.all(slots.map(async s => (await s.store?.listUsers())?.length))).every(n => n === USERS.length), 10_000)

  const acked = new Map<string, string>() // X-Id → user
  const keywords: Array<{ user: string, gid: string, kw: string }> = []
  const log: string[] = []
  const gids = new Map<string, string>()
  let next = 0
  let ops = 0
  const start = Date.now()
  const live = (): Slot[] => slots.filter(s => s.grid !== null)

  while (Date.now() - start < DURATION_MS && ops < OPS_MAX) {
    ops++
    const r = rnd()
    try {
      if (r < 0.55) {
        const via = pick(live())
        const user = pick(USERS)
        const id = String(next++)
        const [res] = await (via.grid as Grid).deliver(Buffer.from(`Subject: ${id}\r\nX-Id: ${id}\r\n\r\n${id}\r\n`), [{ user, prefix: '' }])
        acked.set(id, user)
        logger.info({ id, user, gid: res.gid, via: via.id }, 'chaos_acked')
        gids.set(id, res.gid)
        log.push(`d${id}>${user.slice(0, 3)}@${via.id}:${res.gid.slice(0, 6)}`)
      } else if (r < 0.85) {
        const via = pick(live())
        const user = pick(USERS)
        const store = replicatedMailStore(via.grid as Grid, via.store as Store)
        const box = await (via.store as Store).getMailbox(user, 'INBOX')
        if (box === null) continue
        const recs = await (via.store as Store).listMessages(user, box.id)
        if (recs.length === 0) continue
        const rec = pick(recs)
        const kw = `$k${ops}`
        const res = await store.storeFlags(user, box.id, [rec.uid], 'add', [kw])
        if (res.changed.length === 1) { keywords.push({ user, gid: rec.gid, kw }); log.push(`${kw}>${rec.gid.slice(0, 6)}@${via.id}`) }
      } else {
        const f = rnd()
        const dead = slots.filter(s => s.grid === null)
        if (f < 0.3 && live().length > 1) {
          const s = pick(live())
          log.push(`kill ${s.id}`)
          logger.info({ node: s.id }, 'chaos_kill')
          await down(s)
        } else if (f < 0.6 && dead.length > 0) {
          const s = pick(dead)
          log.push(`restart ${s.id}`)
          logger.info({ node: s.id }, 'chaos_restart')
          await up(s)
        } else if (f < 0.8) {
          const lone = pick(IDS)
          log.push(`partition ${lone}`)
          logger.info({ node: lone }, 'chaos_partition')
          net.partition([lone], IDS.filter(i => i !== lone))
        } else {
          log.push('heal')
          logger.info('chaos_heal')
          net.heal()
        }
      }
    } catch {
      // unknown outcome: neither acknowledged nor counted as lost
    }
  }

  // heal everything and let the grid converge
  net.heal()
  for (const s of slots) if (s.grid === null) await up(s)
  const byId = (id: string): Slot => slots.find(s => s.id === id) as Slot
  let lag = ''
  await until('replicas converged', async () => {
    for (const s of slots) s.grid?.scheduleRebalance()
    for (const u of USERS) {
      const reps = (slots[0].grid as Grid).replicasOf(u).map(byId)
      lag = `${u}: ${(await Promise.all(slots.map(async s => `${s.id}=${await s.store?.logPosition(u)}${reps.includes(s) ? '*' : ''}`))).join(' ')}`
      const snaps = await Promise.all(reps.map(async r => {
        const st = r.store as Store
        const boxes = await st.listMailboxes(u)
        return JSON.stringify({ boxes, msgs: await Promise.all(boxes.map(async b => (await st.listMessages(u, b.id)).map(({ loc, ...r }) => r))) })
      }))
      if (new Set(snaps).size !== 1) return false
      // and every other node has handed its copy over and dropped it (invariant 5 done)
      for (const s of slots) if (!reps.includes(s) && await (s.store as Store).logPosition(u) !== 0) return false
    }
    return true
  }, 60_000).catch(err => { throw new Error(`${String(err)}; last: ${lag}`) })

  t.diagnostic(`seed ${SEED}: ${ops} operations, ${acked.size} deliveries and ${keywords.length} keyword changes acknowledged, ${log.filter(l => /^(kill|restart|partition|heal)/.test(l)).length} faults`)
  const explain = async (gid: string): Promise<string> => {
    const out: string[] = []
    for (const s of slots) {
      for (const u of USERS) {
        for (const e of await (s.store as Store).readLog(u, 0, 1_000_000)) {
          if (JSON.stringify(e).includes(gid.slice(0, 24))) out.push(`${s.id}:${u.slice(0, 3)}:${e.seq}:${e.op}:${e.eid}`)
        }
      }
    }
    return out.join(' ') + '\nhistory: ' + log.join(' ')
  }
  for (const u of USERS) {
    const primary = byId((slots[0].grid as Grid).primaryOf(u) as string).store as Store
    const box = await primary.getMailbox(u, 'INBOX')
    assert.ok(box !== null)
    const recs = await primary.listMessages(u, box.id)
    const ids: string[] = []
    for (const rec of recs) ids.push(/X-Id: (\d+)/.exec((await primary.readMessage(rec)).toString())?.[1] ?? '?')
    if (new Set(ids).size !== ids.length && process.env.MAILGRID_CHAOS_EXPLAIN !== undefined) {
      const dup = ids.find((x, i) => ids.indexOf(x) !== i) as string
      for (const [i, rec] of recs.entries()) if (ids[i] === dup) console.log('DUP', dup, rec.uid, rec.gid, await explain(rec.gid))
    }
    assert.equal(new Set(ids).size, ids.length, `seed ${SEED}: ${u} has a message twice`)
    const missing = [...acked].filter(([, user]) => user === u).map(([id]) => id).filter(id => !ids.includes(id))
    if (missing.length > 0 && process.env.MAILGRID_CHAOS_EXPLAIN !== undefined) console.log(missing[0], gids.get(missing[0]), await explain(gids.get(missing[0]) as string))
    assert.deepEqual(missing, [], `seed ${SEED}: ${u} lost acknowledged messages`)
    const flagsByGid = new Map(recs.map(r => [r.gid, r.flags]))
    for (const k of keywords.filter(k => k.user === u)) {
      const flags = flagsByGid.get(k.gid)
      if (flags === undefined) continue // expunged: never in this test, but a merge may have dropped... see below
      if (!flags.includes(k.kw) && process.env.MAILGRID_CHAOS_EXPLAIN !== undefined) {
        const where: string[] = []
        for (const s of slots) for (const e of await (s.store as Store).readLog(u, 0, 1_000_000)) if (JSON.stringify(e).includes(`"${k.kw}"`)) where.push(`${s.id}:${e.seq}:${e.op}:${e.eid}:${JSON.stringify(e).slice(0, 200)}`)
        console.log('KW', k, flags, where.join(' | '), await explain(k.gid))
      }
      assert.ok(flags.includes(k.kw), `seed ${SEED}: ${u}: acknowledged keyword ${k.kw} missing`)
    }
  }
})

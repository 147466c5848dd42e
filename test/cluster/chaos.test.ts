// The randomized fault test with real processes and real clients: three node processes (R=2) take SMTP
// deliveries (the load generator, pipelined) and IMAP keyword changes (imapflow) through random live nodes while
// the test SIGKILLs nodes, restarts them on the same data dir, and cuts one node off from the others (the
// transport's test hook) at random. Every loop is bounded in count and time. Judged on the whole history: once
// everything is healed and restarted, every acknowledged message is present exactly once, read through a node
// over IMAP, and every acknowledged keyword is set on its message. A timeout or an error is "unknown": neither
// counted as acknowledged nor as lost.
//
// MAILGRID_CLUSTER_CHAOS_MS (default 20000) bounds the fault phase; MAILGRID_CLUSTER_CHAOS_SEED replays a fault
// sequence (process timing still varies). The in-process variant (test/grid/chaos.test.ts) runs many more
// faults per second; this one proves the same with SIGKILL, libp2p and the protocol front ends in the loop.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ImapFlow } from 'imapflow'
import { startGrid, until } from '../helpers/cluster.ts'
import type { ProcNode } from '../helpers/cluster.ts'
import { runSmtpLoad } from '../helpers/smtp-load.ts'
import { tempDir } from '../helpers/tmp.ts'
import { prng } from '../helpers/prng.ts'

const DURATION_MS = Number(process.env.MAILGRID_CLUSTER_CHAOS_MS ?? 20_000)
const STEPS_MAX = 400
const SEED = Number(process.env.MAILGRID_CLUSTER_CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31))
const USERS = Array.from({ length: 8 }, (_, i) => `k${i}@example.com`)
const IMAP_STEP_MS = 15_000 // one keyword change, connection included; past it the outcome is unknown

function client (port: number, user: string): ImapFlow {
  return new ImapFlow({
    host: '127.0.0.1', port, secure: false, tls: { rejectUnauthorized: false }, auth: { user, pass: 'pw' }, logger: false,
    connectionTimeout: 5000, greetingTimeout: 5000, socketTimeout: IMAP_STEP_MS
  })
}

async function withDeadline<T> (ms: number, work: Promise<T>, onTimeout: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([work, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { onTimeout(); reject(new Error('step timed out')) }, ms) })])
  } finally {
    clearTimeout(timer)
  }
}

/** Sets keyword `kw` on a random message of the user's INBOX through `port`; resolves to its X-Load-Id once the server said OK. */
async function addKeyword (port: number, user: string, kw: string, rnd: () => number): Promise<string> {
  const c = client(port, user)
  c.on('error', () => {})
  return await withDeadline(IMAP_STEP_MS, (async () => {
    await c.connect()
    try {
      const box = await c.mailboxOpen('INBOX')
      if (box.exists === 0) throw new Error('empty')
      const seq = 1 + Math.floor(rnd() * box.exists)
      const msg = await c.fetchOne(String(seq), { uid: true, headers: ['x-load-id'] })
      if (msg === false || msg === undefined || msg.headers === undefined) throw new Error('no message')
      const id = /X-Load-Id: (\d+)/i.exec(msg.headers.toString())?.[1]
      if (id === undefined) throw new Error('no id')
      // by UID: a merge may renumber, and then the STORE finds nothing and changes nothing (not acknowledged)
      const ok = await c.messageFlagsAdd(String(msg.uid), [kw], { uid: true })
      if (!ok) throw new Error('NO') // a side without a majority refuses mailbox changes
      // imapflow says true once the command completed; check the server's answer really set it on that UID
      const after = await c.fetchOne(String(msg.uid), { uid: true, flags: true, headers: ['x-load-id'] }, { uid: true })
      if (after === false || after === undefined || after.flags?.has(kw) !== true || /X-Load-Id: (\d+)/i.exec(after.headers?.toString() ?? '')?.[1] !== id) throw new Error('not set')
      return id
    } finally {
      await c.logout().catch(() => {})
    }
  })(), () => { c.close() })
}

/** Every message of every user: X-Load-Id → [user, flags], read over IMAP through `port`; ids seen twice are listed. */
async function readAll (port: number): Promise<{ found: Map<string, { user: string, flags: Set<string> }>, twice: string[] }> {
  const found = new Map<string, { user: string, flags: Set<string> }>()
  const twice: string[] = []
  for (const user of USERS) {
    const c = client(port, user)
    c.on('error', () => {})
    await c.connect()
    try {
      const box = await c.mailboxOpen('INBOX', { readOnly: true })
      if (box.exists === 0) continue
      for await (const m of c.fetch('1:*', { uid: true, flags: true, headers: ['x-load-id'] })) {
        const id = /X-Load-Id: (\d+)/i.exec(m.headers?.toString() ?? '')?.[1] ?? `?${user}:${m.uid}`
        if (found.has(id)) twice.push(id)
        found.set(id, { user, flags: m.flags ?? new Set() })
      }
    } finally {
      await c.logout().catch(() => {})
    }
  }
  return { found, twice }
}

test(`processes, SMTP and IMAP under random SIGKILLs, restarts and partitions: nothing acknowledged is lost (seed ${SEED})`, { timeout: DURATION_MS + 300_000 }, async (t) => {
  const dir = await tempDir(t)
  const rnd = prng(SEED)
  const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)]
  const grid = await startGrid(t, dir, 3, USERS)
  const cluster = grid.cluster
  const nodes = new Map<string, ProcNode>(grid.nodes.map(n => [n.name, n]))

  const live = (): ProcNode[] => [...nodes.values()].filter(n => n.alive)
  const acked = new Map<string, string>() // X-Load-Id → user
  const keywords: Array<{ id: string, kw: string }> = []
  const history: string[] = []
  let next = 0
  let steps = 0
  let unknownKw = 0
  const start = Date.now()
  while (Date.now() - start < DURATION_MS && steps < STEPS_MAX) {
    steps++
    const r = rnd()
    if (r < 0.55) {
      const via = pick(live())
      const count = 5 + Math.floor(rnd() * 10)
      const first = next
      next += count
      const res = await runSmtpLoad({
        port: via.ports.smtp, connections: 2, messages: count, sizeBytes: 800 + Math.floor(rnd() * 4000), firstId: first,
        recipient: i => USERS[(first + i * 7) % USERS.length], deadlineMs: 20_000, onAck: (id, rcpt) => acked.set(String(id), rcpt)
      })
      history.push(`smtp@${via.name}:${res.acked}/${count}`)
    } else if (r < 0.8) {
      const via = pick(live())
      const kw = `$k${steps}`
      let why = ''
      const id = await addKeyword(via.ports.imap, pick(USERS), kw, rnd).catch((err: unknown) => { why = String((err as { responseText?: string })?.responseText ?? (err as Error)?.message ?? err).slice(0, 40); return null })
      if (id !== null) keywords.push({ id, kw })
      else unknownKw++
      history.push(`kw@${via.name}:${id ?? `-(${why})`}`)
    } else {
      const f = rnd()
      const dead = [...nodes.values()].filter(n => !n.alive)
      if (f < 0.35 && live().length > 1) {
        const n = pick(live())
        history.push(`kill ${n.name}`)
        await cluster.kill(n)
      } else if (f < 0.7 && dead.length > 0) {
        const n = pick(dead)
        history.push(`restart ${n.name}`)
        nodes.set(n.name, await cluster.start(n.name, n.dir))
      } else if (f < 0.85 && live().length > 1) {
        const lone = pick(live())
        history.push(`partition ${lone.name}`)
        cluster.partition([lone], live().filter(n => n !== lone))
      } else {
        history.push('heal')
        cluster.heal()
      }
      await new Promise(resolve => setTimeout(resolve, 200 + Math.floor(rnd() * 1500)))
    }
  }

  // everything back: every node up, no cut, one grid, every user at R copies
  for (const n of [...nodes.values()].filter(n => !n.alive)) nodes.set(n.name, await cluster.start(n.name, n.dir))
  cluster.heal()
  await cluster.formed(3, 60_000)
  await until('no under-replicated users', async () => (await Promise.all(live().map(async n => (await n.status()).grid?.underReplicated))).every(u => u === 0), 120_000, 500)
  if (process.env.MAILGRID_CLUSTER_CHAOS_HISTORY !== undefined) t.diagnostic(`history: ${history.join(' ')}`)
  t.diagnostic(`seed ${SEED}: ${steps} steps, ${acked.size} deliveries and ${keywords.length} keyword changes acknowledged (${unknownKw} unknown or refused), faults: ${history.filter(h => /^(kill|restart|partition|heal)/.test(h)).length}`)

  // read through a node until it holds steady (merges after the last heal may still be running)
  const reader = pick(live())
  let last = { found: new Map<string, { user: string, flags: Set<string> }>(), twice: [] as string[] }
  let missing: string[] = []
  let readErr = ""
  await until('every acknowledged message readable', async () => {
    last = await readAll(reader.ports.imap).catch(err => { readErr = String(err); return last })
    missing = [...acked.keys()].filter(id => !last.found.has(id))
    return missing.length === 0 && last.twice.length === 0
  }, 60_000, 1000).catch(() => {})
  const where = (id: string): string => `${id} → ${acked.get(id) ?? '?'}`
  assert.deepEqual(missing.map(where), [], `seed ${SEED}: acknowledged messages missing (last read error: ${readErr}); history: ${history.join(' ')}`)
  assert.deepEqual(last.twice, [], `seed ${SEED}: messages present twice`)
  for (const [id, user] of acked) assert.equal(last.found.get(id)?.user, user, `message ${id} is in ${user}'s mailbox`)
  const lostKw = keywords.filter(k => last.found.get(k.id)?.flags.has(k.kw) !== true)
  assert.deepEqual(lostKw, [], `seed ${SEED}: acknowledged keywords missing; history: ${history.join(' ')}`)
})

// The randomized fault test with real processes and real clients: three node processes (R=2) take SMTP
// deliveries (the load generator, pipelined), IMAP APPENDs and keyword STOREs (imapflow) through random live
// nodes while the test SIGKILLs nodes, restarts them on the same data dir, and cuts one node off from the others
// (the transport's test hook) at random. Every loop is bounded in count and time.
//
// Judged on the whole history (test/helpers/history.ts): every acknowledged operation is recorded with its time
// (a delivery with its Message-ID, an APPEND with its APPENDUID, a STORE with its keyword), and so is every read
// of a mailbox (UIDVALIDITY, and each message's UID, MODSEQ and flags). The checker then requires: no
// acknowledged message missing or duplicated, no UID naming two messages within one UIDVALIDITY, MODSEQs only
// growing per message, every acknowledged keyword set; and the copies converge (under-replicated 0, no copy
// waiting for hand-off, the same mailbox read through every node) within CONVERGE_MS of the last heal. A timeout
// or a dropped connection is "unknown": neither acknowledged nor lost.
//
// MAILGRID_CLUSTER_CHAOS_MS (default 20000) bounds the fault phase (`npm run test:cluster-chaos` runs 10
// minutes); MAILGRID_CLUSTER_CHAOS_SEED replays a fault sequence (process timing still varies);
// MAILGRID_CLUSTER_CHAOS_HISTORY=FILE writes the whole history there as JSON lines. The in-process variant
// (test/grid/chaos.test.ts) runs many more faults per second; this one has SIGKILL, libp2p and the protocol
// front ends in the loop.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { ImapFlow } from 'imapflow'
import { startGrid, until } from '../helpers/cluster.ts'
import type { ProcNode } from '../helpers/cluster.ts'
import { runSmtpLoad } from '../helpers/smtp-load.ts'
import { tempDir } from '../helpers/tmp.ts'
import { prng } from '../helpers/prng.ts'
import { checkHistory, excerpt } from '../helpers/history.ts'
import type { Op, Seen } from '../helpers/history.ts'

const DURATION_MS = Number(process.env.MAILGRID_CLUSTER_CHAOS_MS ?? 20_000)
const STEPS_MAX = Math.max(400, Math.ceil(DURATION_MS / 50)) // a step takes far longer than 50 ms
const SEED = Number(process.env.MAILGRID_CLUSTER_CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31))
const USERS = Array.from({ length: 8 }, (_, i) => `k${i}@example.com`)
const IMAP_STEP_MS = 15_000 // one IMAP step, connection included; past it the outcome is unknown
// a partition heals by itself after this long: long enough for both sides to take writes, short enough that most
// of the run is outside split windows, where the UID and MODSEQ checks are strict
const PARTITION_MS_MIN = 1_000
const PARTITION_MS_MAX = 8_000
const CONVERGE_MS = 10_000 // from the last heal (every node up, one grid) to every copy equal
const CONVERGE_WATCH_MS = 120_000 // how long we keep looking past CONVERGE_MS, to report how late it was

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

const messageId = (headers: Buffer | undefined): string | null => /^Message-ID:\s*<([^>]+)>/im.exec(headers?.toString() ?? '')?.[1] ?? null

/** Opens and reads the whole INBOX (UIDVALIDITY; each message's UID, Message-ID, MODSEQ and flags) on an open client. */
async function readInbox (c: ImapFlow, readOnly = true): Promise<{ uidValidity: number, msgs: Seen[] }> {
  const box = await c.mailboxOpen('INBOX', { readOnly })
  const msgs: Seen[] = []
  if (box.exists > 0) {
    for await (const m of c.fetch('1:*', { uid: true, flags: true, headers: ['message-id'] })) {
      msgs.push({ uid: m.uid, id: messageId(m.headers) ?? `?uid-${m.uid}`, modseq: Number(m.modseq ?? 0n), flags: [...(m.flags ?? [])] })
    }
  }
  return { uidValidity: Number(box.uidValidity), msgs }
}

function rawMessage (id: string, user: string, bytes: number): Buffer {
  const head = `From: Chaos <chaos@example.org>\r\nTo: <${user}>\r\nSubject: appended ${id}\r\nMessage-ID: <${id}>\r\nDate: ${new Date(0).toUTCString()}\r\n\r\n`
  return Buffer.from(head + 'x'.repeat(Math.max(1, bytes - head.length - 2)) + '\r\n')
}

test('the history checker finds what it must', () => {
  // planted violations, one kind each: a checker that cannot fail proves nothing
  const read = (t0: number, via: string, msgs: Array<[number, string, number]>, final = false, flags: string[] = []): Op =>
    ({ kind: 'read', t0, t1: t0 + 10, via, user: 'u', uidValidity: 7, msgs: msgs.map(([uid, id, modseq]) => ({ uid, id, modseq, flags })), final })
  const sent: Op[] = ['a', 'b', 'c'].map((id, i) => ({ kind: 'deliver', t0: i, t1: i + 1, via: 'n1', id, user: 'u', outcome: 'ok' }))
  const clean = checkHistory([...sent, read(100, 'n1', [[1, 'a', 3], [2, 'b', 4]]), read(200, 'n2', [[1, 'a', 5], [2, 'b', 4], [3, 'c', 6]], true)], 300)
  assert.deepEqual(clean.violations, [])
  const bad = (ops: Op[], pattern: RegExp): void => {
    const r = checkHistory([...sent, ...ops], 1000)
    assert.ok(r.violations.some(v => pattern.test(v)), `expected ${pattern} in ${JSON.stringify(r.violations)}`)
  }
  bad([read(100, 'n1', [[1, 'a', 3], [2, 'b', 4]], true)], /acknowledged c missing/)
  bad([read(100, 'n1', [[1, 'a', 3], [2, 'b', 4], [3, 'c', 5], [4, 'c', 6]], true)], /c twice/)
  bad([read(100, 'n1', [[1, 'a', 3]]), read(200, 'n1', [[1, 'b', 3], [2, 'a', 4], [3, 'c', 5]], true)], /UID 1 of u .* named a and b/)
  bad([read(100, 'n1', [[1, 'a', 9]]), read(200, 'n1', [[1, 'a', 3], [2, 'b', 4], [3, 'c', 5]], true)], /MODSEQ of a went down/)
  bad([read(200, 'n1', [[1, 'a', 3], [2, 'b', 4], [3, 'c', 5], [4, 'z', 6]], true)], /z in u's INBOX was never sent/)
  bad([{ kind: 'store', t0: 50, t1: 60, via: 'n2', id: 'a', user: 'u', uid: 1, kw: '$k1', outcome: 'ok' }, read(200, 'n1', [[1, 'a', 3], [2, 'b', 4], [3, 'c', 5]], true)], /keyword \$k1 on a/)
  bad([{ kind: 'append', t0: 50, t1: 60, via: 'n2', id: 'c', user: 'u', outcome: 'ok', uidValidity: 7, uid: 2 }, read(200, 'n1', [[1, 'a', 3], [2, 'b', 4], [3, 'c', 5]], true)], /UID 2 of u .* named c and b/)
  // the same UID conflict inside a partition is a split-view conflict, not a violation
  const split = checkHistory([...sent, { kind: 'fault', t0: 90, t1: 90, what: 'partition n1' }, read(100, 'n1', [[1, 'a', 3]]), read(110, 'n2', [[1, 'b', 3]]),
    { kind: 'fault', t0: 150, t1: 150, what: 'heal' }, read(20_000, 'n1', [[3, 'a', 5], [4, 'b', 6], [5, 'c', 7]], true)], 21_000)
  assert.deepEqual(split.violations, [])
  assert.equal(split.splitConflicts.length, 1)
  // but after the heal the contested UID must name neither, and no MODSEQ may be below one seen in the split
  const cut: Op[] = [{ kind: 'fault', t0: 90, t1: 90, what: 'partition n1' }, { kind: 'fault', t0: 150, t1: 150, what: 'heal' }]
  bad([...cut, read(100, 'n1', [[1, 'a', 3]]), read(110, 'n2', [[1, 'b', 3]]), read(20_000, 'n1', [[1, 'a', 3], [4, 'b', 6], [5, 'c', 7]], true)], /still names a after the heal/)
  bad([...cut, read(100, 'n1', [[1, 'a', 9]]), read(20_000, 'n1', [[1, 'a', 3], [2, 'b', 6], [3, 'c', 7]], true)], /MODSEQ of a went down/)
  bad([read(100, 'n1', [[4, 'a', 3]]), read(200, 'n1', [[1, 'a', 3], [2, 'b', 4], [3, 'c', 5]], true)], /UID of a went down/)

  // A lone survivor (n2 and n3 killed) holds the only copy of what it takes; killed before anyone caught up, the
  // others number new mail from their own copies until it is back: a split of its own, judged like a partition
  const f = (t: number, what: string): Op => ({ kind: 'fault', t0: t, t1: t, what })
  const lone: Op[] = [f(50, 'kill n2'), f(60, 'kill n3'), read(100, 'n1', [[1, 'a', 3]]), f(120, 'restart n3'), f(130, 'kill n1'),
    f(140, 'restart n2'), read(200, 'n2', [[1, 'b', 3]]), f(300, 'restart n1')]
  const nodes = ['n1', 'n2', 'n3']
  const loneOk = checkHistory([...sent, ...lone, read(20_000, 'n1', [[3, 'a', 5], [4, 'b', 6], [5, 'c', 7]], true)], 21_000, nodes)
  assert.deepEqual(loneOk.violations, [])
  assert.equal(loneOk.splitConflicts.length, 1)
  const badWith = (ops: Op[], pattern: RegExp): void => {
    const r = checkHistory([...sent, ...ops], 21_000, nodes)
    assert.ok(r.violations.some(v => pattern.test(v)), `expected ${pattern} in ${JSON.stringify(r.violations)}`)
  }
  // after its return (plus the grace) the contested UID must name neither
  badWith([...lone, read(20_000, 'n1', [[1, 'b', 3], [4, 'a', 6], [5, 'c', 7]], true)], /still names b after the heal/)
  // without the node list only partitions open windows
  bad([...lone, read(20_000, 'n1', [[3, 'a', 5], [4, 'b', 6], [5, 'c', 7]], true)], /UID 1 of u .* named a and b/)
  // two of three alive is no split: both hold every acknowledged write
  badWith([f(50, 'kill n3'), read(100, 'n1', [[1, 'a', 3]]), read(200, 'n2', [[1, 'b', 3]]), read(20_000, 'n1', [[3, 'a', 5], [4, 'b', 6], [5, 'c', 7]], true)], /UID 1 of u .* named a and b/)
  // a survivor that outlives the grace after another node is back opens no window: a conflict with it is one
  badWith([f(50, 'kill n2'), f(60, 'kill n3'), read(100, 'n1', [[1, 'a', 3]]), f(120, 'restart n3'), read(10_200, 'n3', [[1, 'b', 3]]),
    f(10_300, 'kill n1'), read(20_000, 'n3', [[3, 'a', 5], [4, 'b', 6], [5, 'c', 7]], true)], /UID 1 of u .* named a and b/)
})

test(`processes, SMTP, APPEND and STORE under random SIGKILLs, restarts and partitions: the history checks out (seed ${SEED})`, { timeout: DURATION_MS + 400_000 }, async (t) => {
  const dir = await tempDir(t)
  const rnd = prng(SEED)
  const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)]
  const grid = await startGrid(t, dir, 3, USERS)
  const cluster = grid.cluster
  const nodes = new Map<string, ProcNode>(grid.nodes.map(n => [n.name, n]))
  const live = (): ProcNode[] => [...nodes.values()].filter(n => n.alive)

  const ops: Op[] = []
  const start = Date.now()
  const now = (): number => Date.now() - start
  const fault = (what: string): void => { const t0 = now(); ops.push({ kind: 'fault', t0, t1: t0, what }) }
  let next = 0
  let appended = 0
  let steps = 0
  const why = (err: unknown): string => String((err as { responseText?: string })?.responseText ?? (err as Error)?.message ?? err).slice(0, 60)

  /** One IMAP step as `user` through `via`: an APPEND or a keyword STORE, then a read of the whole INBOX. */
  const imapStep = async (via: ProcNode, user: string, kind: 'append' | 'store', stepNo: number): Promise<void> => {
    const c = client(via.ports.imap, user)
    c.on('error', () => {})
    let pending: Op | null = null // the write, until we know its outcome
    await withDeadline(IMAP_STEP_MS, (async () => {
      await c.connect()
      try {
        if (kind === 'append') {
          const id = `append-${appended++}@chaos.test`
          pending = { kind: 'append', t0: now(), t1: 0, via: via.name, id, user, outcome: 'unknown' }
          const res = await c.append('INBOX', rawMessage(id, user, 600 + Math.floor(rnd() * 3000)))
          if (res === undefined || res === false) throw new Error('APPEND not sent')
          Object.assign(pending, { outcome: 'ok', t1: now(), ...(res.uidValidity !== undefined ? { uidValidity: Number(res.uidValidity) } : {}), ...(res.uid !== undefined ? { uid: res.uid } : {}) })
          ops.push(pending)
          pending = null
        } else {
          const r0 = now()
          const before = await readInbox(c, false) // SELECT: the STORE follows
          ops.push({ kind: 'read', t0: r0, t1: now(), via: via.name, user, ...before })
          if (before.msgs.length === 0) return
          const m = before.msgs[Math.floor(rnd() * before.msgs.length)]
          const kw = `$k${stepNo}`
          pending = { kind: 'store', t0: now(), t1: 0, via: via.name, id: m.id, user, uid: m.uid, kw, outcome: 'unknown' }
          // by UID: a merge may renumber, and then the STORE finds nothing and changes nothing (not acknowledged)
          const ok = await c.messageFlagsAdd(String(m.uid), [kw], { uid: true })
          // false: a NO (a side without a majority refuses mailbox changes) or a failure imapflow swallowed
          Object.assign(pending, { outcome: ok ? 'ok' : 'unknown', t1: now() })
          ops.push(pending)
          pending = null
          if (!ok) return
        }
        const r0 = now()
        const after = await readInbox(c)
        ops.push({ kind: 'read', t0: r0, t1: now(), via: via.name, user, ...after })
        // a merge may have renumbered the message between our read and the STORE: then the STORE by UID found
        // nothing and changed nothing, and its OK acknowledged nothing (the final check needs no more)
        const store = ops.findLast(o => o.kind === 'store' && o.user === user && o.via === via.name)
        if (kind === 'store' && store?.kind === 'store' && store.outcome === 'ok' && after.msgs.find(x => x.uid === store.uid)?.id !== store.id) {
          store.outcome = 'unknown'
          store.why = 'renumbered before the STORE'
        }
      } finally {
        await c.logout().catch(() => {})
      }
    })(), () => { c.close() }).catch((err: unknown) => {
      // a timeout, a BYE or a dropped connection: the write may or may not have happened
      const p = pending as Op | null
      if (p !== null && (p.kind === 'append' || p.kind === 'store')) ops.push({ ...p, t1: now(), outcome: 'unknown', why: why(err) })
    })
  }

  let healAt: number | null = null // a partition lasts PARTITION_MS_MIN..MAX unless a random heal comes first
  while (now() < DURATION_MS && steps < STEPS_MAX) {
    steps++
    if (healAt !== null && now() >= healAt) {
      fault('heal')
      cluster.heal()
      healAt = null
    }
    const r = rnd()
    if (r < 0.45) {
      const via = pick(live())
      const count = 5 + Math.floor(rnd() * 10)
      const first = next
      next += count
      const t0 = now()
      const acked = new Map<number, number>()
      const res = await runSmtpLoad({
        port: via.ports.smtp, connections: 2, messages: count, sizeBytes: 800 + Math.floor(rnd() * 4000), firstId: first,
        recipient: i => USERS[(first + i * 7) % USERS.length], deadlineMs: 20_000, onAck: (id) => acked.set(id, now())
      })
      void res
      for (let id = first; id < first + count; id++) {
        const at = acked.get(id)
        ops.push({ kind: 'deliver', t0, t1: at ?? now(), via: via.name, id: `load-${id}@bench.test`, user: USERS[(first + id * 7) % USERS.length], outcome: at !== undefined ? 'ok' : 'unknown' })
      }
    } else if (r < 0.62) {
      await imapStep(pick(live()), pick(USERS), 'store', steps)
    } else if (r < 0.8) {
      await imapStep(pick(live()), pick(USERS), 'append', steps)
    } else {
      const f = rnd()
      const dead = [...nodes.values()].filter(n => !n.alive)
      if (f < 0.35 && live().length > 1) {
        const n = pick(live())
        fault(`kill ${n.name}`)
        await cluster.kill(n)
      } else if (f < 0.7 && dead.length > 0) {
        const n = pick(dead)
        fault(`restart ${n.name}`)
        nodes.set(n.name, await cluster.start(n.name, n.dir))
      } else if (f < 0.85 && live().length > 1) {
        const lone = pick(live())
        fault(`partition ${lone.name}`)
        cluster.partition([lone], live().filter(n => n !== lone))
        healAt = now() + PARTITION_MS_MIN + Math.floor(rnd() * (PARTITION_MS_MAX - PARTITION_MS_MIN))
      } else {
        fault('heal')
        cluster.heal()
        healAt = null
      }
      await new Promise(resolve => setTimeout(resolve, 200 + Math.floor(rnd() * 1500)))
    }
  }
  const faultPhaseMs = now()

  // everything back: every node up, no cut, one grid
  for (const n of [...nodes.values()].filter(n => !n.alive)) {
    fault(`restart ${n.name}`)
    nodes.set(n.name, await cluster.start(n.name, n.dir))
  }
  fault('heal')
  cluster.heal()
  await cluster.formed(3, 60_000)
  const healedAt = now()

  // convergence: no user under-replicated or waiting for hand-off on any node, and every node serves the same
  // INBOX (UID → Message-ID, MODSEQ, flags) for every user
  const finalReads = async (): Promise<Op[]> => {
    const out: Op[] = []
    for (const n of live()) {
      for (const user of USERS) {
        const c = client(n.ports.imap, user)
        c.on('error', () => {})
        await withDeadline(IMAP_STEP_MS, (async () => {
          await c.connect()
          try {
            const t0 = now()
            const box = await readInbox(c)
            out.push({ kind: 'read', t0, t1: now(), via: n.name, user, final: true, ...box })
          } finally {
            await c.logout().catch(() => {})
          }
        })(), () => { c.close() })
      }
    }
    return out
  }
  const view = (o: Op): string => o.kind === 'read' ? JSON.stringify([o.uidValidity, o.msgs.map(m => [m.uid, m.id, m.modseq, [...m.flags].sort()])]) : ''
  let finals: Op[] = []
  let lastWhy = ''
  const convergeMs = await until('every copy equal', async () => {
    const st = await Promise.all(live().map(async n => (await n.status()).grid))
    if (!st.every(g => g?.underReplicated === 0 && g.handoffPending === 0)) { lastWhy = `status ${JSON.stringify(st.map(g => [g?.underReplicated, g?.handoffPending]))}`; return false }
    finals = await finalReads().catch((err: unknown) => { lastWhy = `read: ${why(err)}`; return [] })
    if (finals.length !== USERS.length * live().length) return false
    for (const user of USERS) {
      const views = new Set(finals.filter(o => o.kind === 'read' && o.user === user).map(view))
      if (views.size !== 1) { lastWhy = `${user}: ${views.size} different views`; return false }
    }
    return true
  }, CONVERGE_MS + CONVERGE_WATCH_MS, 500).catch(() => -1)
  ops.push(...finals)

  const result = checkHistory(ops, now(), grid.nodes.map(n => n.name))
  const faults = ops.filter(o => o.kind === 'fault').map(o => o.kind === 'fault' ? o.what : '')
  t.diagnostic(`seed ${SEED}: ${steps} steps in ${faultPhaseMs} ms; deliveries ${result.stats.acked} acknowledged, appends ${result.stats.appendsAcked}, stores ${result.stats.storesAcked}, unknown ${result.stats.unknown}; ${result.stats.reads} reads (${result.stats.observations} message observations); faults ${faults.length} (kill ${faults.filter(f => f.startsWith('kill')).length}, restart ${faults.filter(f => f.startsWith('restart')).length}, partition ${faults.filter(f => f.startsWith('partition')).length}, heal ${faults.filter(f => f === 'heal').length}); converged ${convergeMs} ms after the last heal; ${result.stats.splitPct} % of the run in split windows, split-view conflicts ${result.splitConflicts.length}; violations ${result.violations.length}`)
  for (const c of result.splitConflicts.slice(0, 5)) t.diagnostic(`split-view: ${c}`)
  if (process.env.MAILGRID_CLUSTER_CHAOS_HISTORY !== undefined) await writeFile(process.env.MAILGRID_CLUSTER_CHAOS_HISTORY, ops.map(o => JSON.stringify(o)).join('\n') + '\n')

  const at = (v: string): number => Number(/\((?:[^,]+), (\d+)/.exec(v)?.[1] ?? /at (\d+) ms/.exec(v)?.[1] ?? healedAt)
  assert.deepEqual(result.violations.slice(0, 20), [], `seed ${SEED}: the history has violations; around the first:\n${excerpt(ops, at(result.violations[0] ?? ''))}\nfaults: ${faults.join(' ')}`)
  assert.ok(convergeMs >= 0 && convergeMs <= CONVERGE_MS, `seed ${SEED}: copies not converged ${CONVERGE_MS} ms after the last heal (${convergeMs < 0 ? `not within ${CONVERGE_MS + CONVERGE_WATCH_MS} ms` : `${convergeMs} ms`}; ${lastWhy})`)
})

// Nothing acknowledged is lost: a node process is killed with SIGKILL in the middle of a burst of concurrent
// SMTP deliveries, restarted, and every message that got 250 must be there, in a consistent store.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { createStore } from '../../store/index.ts'
import type { Store } from '../../store/index.ts'
import { runSmtpLoad } from '../helpers/smtp-load.ts'
import { tempDir } from '../helpers/tmp.ts'

const USERS = Array.from({ length: 20 }, (_, i) => `user${i}@example.com`)
const SETUP = JSON.stringify({ domain: 'example.com', users: USERS, password: 'pw' })

async function spawnNode (dir: string): Promise<{ child: ChildProcess, ports: Record<string, number> }> {
  const child = spawn(process.execPath, ['test/helpers/node-proc.ts', dir, SETUP], { stdio: ['ignore', 'pipe', 'inherit'] })
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  const ports = await new Promise<Record<string, number>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('node did not start in 30 s')), 30_000)
    lines.on('line', l => {
      if (l.startsWith('READY ')) { clearTimeout(timer); resolve(JSON.parse(l.slice(6))) }
    })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`node exited with ${code}`)) })
  })
  return { child, ports }
}

async function stopped (child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise(resolve => child.once('exit', resolve))
  child.kill(signal)
  await exited
}

/** Invariants of a store after recovery: counts and usage match the records, every body is readable. */
async function checkConsistent (store: Store, user: string): Promise<Set<string>> {
  const ids = new Set<string>()
  let usedBytes = 0
  let usedMessages = 0
  for (const box of await store.listMailboxes(user)) {
    const recs = await store.listMessages(user, box.id)
    assert.equal(box.messages, recs.length, `${user} ${box.name}: message count`)
    assert.equal(box.size, recs.reduce((s, r) => s + r.size, 0), `${user} ${box.name}: size`)
    assert.equal(box.unseen, recs.filter(r => !r.flags.includes('\\Seen')).length)
    for (const r of recs) {
      assert.ok(r.uid < box.uidNext, 'uid below uidNext')
      assert.ok(r.modseq <= box.highestModseq, 'modseq within highestModseq')
      const body = await store.readMessage(r)
      assert.equal(body.length, r.size)
      const m = /X-Load-Id: (\d+)/.exec(body.toString('latin1'))
      if (m !== null) ids.add(m[1])
    }
    usedBytes += box.size
    usedMessages += recs.length
  }
  const q = await store.quota(user)
  assert.equal(q.usedBytes, usedBytes)
  assert.equal(q.usedMessages, usedMessages)
  const log = await store.readLog(user, 0, 1_000_000)
  assert.deepEqual(log.map(e => e.seq), log.map((_, i) => i + 1), 'the log has no holes')
  return ids
}

test('SIGKILL during a burst of concurrent deliveries loses no acknowledged message', async (t) => {
  const dir = await tempDir(t)
  const acked = new Map<string, string>() // load id → recipient
  for (let round = 0; round < 2; round++) {
    const { child, ports } = await spawnNode(dir)
    t.after(() => stopped(child, 'SIGKILL'))
    const ac = new AbortController()
    const load = runSmtpLoad({
      port: ports.smtp,
      connections: 30,
      messages: 100_000,
      sizeBytes: 4000 + round * 20_000,
      recipient: i => USERS[i % USERS.length],
      deadlineMs: 20_000,
      firstId: round * 1_000_000,
      signal: ac.signal,
      onAck: (id, rcpt) => acked.set(String(id), rcpt)
    })
    // kill once a few hundred deliveries were acknowledged this round, while the others are mid-flight
    const target = acked.size + 300
    for (let i = 0; i < 400 && acked.size < target; i++) await new Promise(resolve => setTimeout(resolve, 25))
    await stopped(child, 'SIGKILL')
    const res = await load
    ac.abort()
    assert.ok(res.acked > 50, `round ${round}: some messages were acknowledged (${res.acked})`)
    t.diagnostic(`round ${round}: ${res.acked} acknowledged, ${res.unknown} in flight at the kill, ${res.failed} refused`)
  }

  // restart once more so recovery runs, stop it cleanly, then inspect the store directly
  const { child } = await spawnNode(dir)
  await stopped(child, 'SIGTERM')
  const store = createStore({}, { path: dir })
  await store.start()
  t.after(() => store.stop())
  const present = new Set<string>()
  for (const u of USERS) for (const id of await checkConsistent(store, u)) present.add(id)
  const missing = [...acked.keys()].filter(k => !present.has(k))
  assert.deepEqual(missing, [], `${missing.length} of ${acked.size} acknowledged messages missing`)
})

// SMTP_TIMINGS_DIR (node/smtp/timings.ts): a node with a worker writes, per process, where its messages' time went:
// the worker its sessions' stages and its round trips to the primary, the primary the requests it served; both the
// IPC batches' transit. The figures in test/bench/ANALYSIS.md ("every core, session 6") come from these files.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { RawClient } from '../helpers/client.ts'

interface Timings { pid: number, role: string, wallMs: number, cpuMs: number, stages: Record<string, { n: number, mean: number }>, timeline: number[] }

// read at import by node/smtp/timings.ts, and inherited by the worker processes: set before the node's modules load
const dir = await mkdtemp(join(tmpdir(), 'smtp-timings-'))
process.env.SMTP_TIMINGS_DIR = dir
const { startNode } = await import('../helpers/node.ts')
const { writeTimings } = await import('../../node/smtp/timings.ts')

async function send (port: number, marker: string): Promise<string> {
  const c = await RawClient.connect(port)
  try {
    assert.match(await c.read(), /^220 /)
    for (const cmd of ['EHLO client.test', 'MAIL FROM:<alice@example.org>', 'RCPT TO:<bob@example.com>', 'DATA']) {
      c.write(cmd + '\r\n')
      assert.match(await c.read(), /^(250|354)[ -]/)
    }
    c.write(`Subject: ${marker}\r\n\r\n${marker}\r\n.\r\n`)
    return await c.read()
  } finally {
    c.close()
  }
}

async function files (): Promise<Timings[]> {
  const names = (await readdir(dir)).filter(n => n.startsWith('timings-'))
  return await Promise.all(names.map(async n => JSON.parse(await readFile(join(dir, n), 'utf8')) as Timings))
}

test('with SMTP_TIMINGS_DIR, the worker and the primary write where the messages\' time went', async (t) => {
  t.after(async () => { await rm(dir, { recursive: true, force: true }) })
  const n = await startNode(t, { workers: 1 })
  await n.node.store.addDomain('example.com')
  await n.node.store.addUser({ address: 'bob@example.com', password: 'bobpass' })
  const [worker] = n.node.smtpWorkerPids
  assert.ok(worker !== undefined)
  const MESSAGES = 3
  for (let i = 0; i < MESSAGES; i++) assert.match(await send(n.port('smtp'), `timed-${i}`), /^250 /)
  // the worker writes at its exit (the node's stop), this process (the primary) at its own, or when asked
  await n.node.stop()
  writeTimings()
  let all: Timings[] = []
  for (let i = 0; i < 200 && all.length < 2; i++) {
    await new Promise(resolve => setTimeout(resolve, 50))
    all = await files()
  }
  const w = all.find(x => x.pid === worker)
  const p = all.find(x => x.pid === process.pid)
  assert.ok(w !== undefined, 'the worker wrote its timings')
  assert.ok(p !== undefined, 'the primary wrote its timings')
  assert.equal(w.role, 'worker')
  assert.equal(p.role, 'primary')
  // every message's stages in the worker, each delivery one round trip to the primary, which served each
  for (const s of ['data', 'store', 'store.deliver', 'rtt.delivery.deliver']) assert.equal(w.stages[s]?.n, MESSAGES, `worker stage ${s}`)
  assert.equal(w.stages.connect?.n, MESSAGES)
  assert.equal(p.stages['serve.delivery.deliver']?.n, MESSAGES)
  assert.ok((w.stages['ipc.transit']?.n ?? 0) > 0 && (p.stages['ipc.transit']?.n ?? 0) > 0, 'batches timed both ways')
  // a round trip includes the primary's work on it
  assert.ok(w.stages['rtt.delivery.deliver'].mean >= p.stages['serve.delivery.deliver'].mean)
  assert.ok(w.wallMs > 0 && w.timeline.length >= 2 && w.timeline.length % 2 === 0)
})

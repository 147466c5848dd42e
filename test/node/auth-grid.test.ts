// Authentication throttling: the local counts (AuthThrottle, with an injected clock) and the grid-wide layer
// (node/auth-grid.ts) over the in-memory network: a failure told to the others, a success that clears an
// account everywhere, malformed reports ignored, a node alone, and the bounds.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { AuthThrottle } from '../../node/limits.ts'
import { AUTH_REPORTS_PENDING_MAX, AUTH_REPORTS_PROTOCOL, createGridThrottle } from '../../node/auth-grid.ts'
import type { GridThrottle } from '../../node/auth-grid.ts'
import { MemoryNetwork } from '../helpers/memory-gossip.ts'
import { until } from '../helpers/cluster.ts'

const logger = pino({ level: 'silent' })

test('AuthThrottle: budgets per IP and per account within the window; expired keys are swept', () => {
  let now = 1_000_000
  const t = new AuthThrottle({ perIp: 5, perAccount: 3, windowMs: 10_000, now: () => now })
  for (let i = 0; i < 3; i++) t.fail('10.0.0.1', 'Alice@example.com')
  assert.equal(t.allowed('10.0.0.2', 'alice@example.com'), false, 'the account is locked from any address, whatever its case')
  assert.equal(t.allowed('10.0.0.1', 'bob@example.com'), true, 'the address still has budget')
  t.fail('10.0.0.1', 'bob@example.com')
  t.fail('10.0.0.1', 'carol@example.com')
  assert.equal(t.allowed('10.0.0.1', 'dave@example.com'), false, 'five failures lock the address')
  assert.equal(t.tracked, 4)
  now += 10_000
  assert.equal(t.allowed('10.0.0.1', 'alice@example.com'), true, 'both locks end with the window')
  t.fail('10.0.0.9', 'eve@example.com') // a failure a window after the last sweep sweeps
  assert.equal(t.tracked, 2, 'only the new failure\'s keys are left')
  t.succeed('10.0.0.9', 'eve@example.com')
  assert.equal(t.tracked, 1, 'a success clears the account, not the address')
})

test('grid throttle: a failure on one node counts on every other; a success clears the account everywhere; a node alone counts alone', async (t) => {
  const net = new MemoryNetwork()
  const nodes: Array<{ local: AuthThrottle, grid: GridThrottle }> = []
  for (const id of ['a', 'b', 'c']) {
    const gossip = net.create(id)
    const local = new AuthThrottle({ perIp: 100, perAccount: 3, windowMs: 60_000 })
    nodes.push({ local, grid: createGridThrottle({ gossip, logger, local }) })
    await gossip.start()
  }
  t.after(() => { for (const n of nodes) n.grid.stop() })
  const [a, b, c] = nodes
  a.grid.fail('10.0.0.1', 'alice@example.com')
  b.grid.fail('10.0.0.1', 'alice@example.com')
  await until('c has heard both', () => c.grid.stats.heard === 2, 2_000, 5)
  assert.equal(c.grid.allowed('10.0.0.1', 'alice@example.com'), true, 'two failures: not yet')
  c.grid.fail('10.0.0.1', 'alice@example.com')
  assert.equal(c.grid.allowed('10.0.0.2', 'alice@example.com'), false, 'the third failure locks at once where it happened')
  await until('every node has heard every failure', () => nodes.every(n => n.grid.stats.heard === 2), 2_000, 5)
  assert.deepEqual(nodes.map(n => n.grid.allowed('10.0.0.2', 'alice@example.com')), [false, false, false], 'and on the others once told')

  a.grid.succeed('10.0.0.3', 'alice@example.com')
  await until('the success reaches the others', () => b.grid.stats.heard === 3 && c.grid.stats.heard === 3, 2_000, 5)
  assert.deepEqual(nodes.map(n => n.grid.allowed('10.0.0.2', 'alice@example.com')), [true, true, true])

  // malformed reports from a peer are ignored, the good ones in the same message still count
  const res = await net.nodes.get('b')!.call('c', AUTH_REPORTS_PROTOCOL, {
    header: { reports: [null, 7, { f: 1, ip: 'x'.repeat(100), account: 'bob@example.com' }, { f: 1, ip: '10.0.0.4', account: '' }, { s: 2, account: 'z' }, { f: 1, ip: '10.0.0.4', account: 'bob@example.com' }] }
  })
  assert.equal(res.header.applied, 1)

  // alone, a node keeps counting and sends nothing
  net.nodes.get('b')!.kill()
  net.nodes.get('c')!.kill()
  const sent = a.grid.stats.sent
  for (let i = 0; i < 3; i++) a.grid.fail('10.0.0.5', 'carol@example.com')
  assert.equal(a.grid.allowed('10.0.0.6', 'carol@example.com'), false)
  await new Promise(resolve => setTimeout(resolve, 50))
  assert.equal(a.grid.stats.sent, sent, 'nothing is sent with no peer alive')
})

test('grid throttle: a flood is sent in bounded batches and the queue is capped', async (t) => {
  const net = new MemoryNetwork()
  const ga = net.create('a')
  const gb = net.create('b')
  const local = new AuthThrottle({ perIp: 1_000_000, perAccount: 1_000_000, windowMs: 60_000 })
  const grid = createGridThrottle({ gossip: ga, logger, local })
  // b answers slowly: batches pile up behind the in-flight bound
  let answered = 0
  gb.handle(AUTH_REPORTS_PROTOCOL, async () => {
    await new Promise(resolve => setTimeout(resolve, 200))
    answered++
    return { header: { applied: 0 } }
  })
  await ga.start()
  await gb.start()
  t.after(() => { grid.stop() })
  const flood = AUTH_REPORTS_PENDING_MAX * 2
  for (let i = 0; i < flood; i++) grid.fail(`10.1.${i >> 8 & 255}.${i & 255}`, `u${i}@example.com`)
  assert.ok(grid.stats.dropped > 0, `a flood past the queue drops the oldest reports (${grid.stats.dropped})`)
  assert.ok(grid.stats.sent <= 4 * 512, `at most four batches in flight (${grid.stats.sent} reports sent)`)
  await until('the queue drains', () => grid.stats.sent + grid.stats.dropped === flood, 10_000, 20)
  assert.ok(answered >= 1)
})

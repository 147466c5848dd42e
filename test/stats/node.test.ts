// node/stats on one node, with real clients: SMTP deliveries (nodemailer), refused recipients, IMAP logins
// (imapflow) and failures land in the user's, the domain's and the grid's series; the mailbox size sample; the
// admin API's JSON and CSV; and the retention that drops old day files (with the node's own clock moved on).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import nodemailer from 'nodemailer'
import { ImapFlow } from 'imapflow'
import pino from 'pino'
import { startNode } from '../helpers/node.ts'
import { tempDir } from '../helpers/tmp.ts'
import { createAdminServer } from '../../appliance/admin.ts'
import { observeRoutes } from '../../appliance/observe.ts'
import { bucketOf, createStats, parseScope, STATS_SERIES, STATS_STEP_MS } from '../../node/stats/index.ts'

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0)

test('SMTP, IMAP logins and refusals are counted per user, domain and grid; JSON and CSV over the admin API', async (t) => {
  const { node, port } = await startNode(t, { plaintextAuthOnLoopback: true })
  await node.store.addDomain('example.com')
  await node.store.addDomain('other.org')
  await node.store.addUser({ address: 'alice@example.com', password: 'pw' })
  await node.store.addUser({ address: 'bob@example.com', password: 'pw' })
  await node.store.addUser({ address: 'carol@other.org', password: 'pw' })

  const mx = nodemailer.createTransport({ host: '127.0.0.1', port: port('smtp'), secure: false, ignoreTLS: true })
  t.after(() => { mx.close() })
  const body = 'Hello\r\n'.repeat(100)
  for (let i = 0; i < 3; i++) await mx.sendMail({ from: 'x@remote.example', to: 'alice@example.com', subject: `a${i}`, text: body })
  await mx.sendMail({ from: 'x@remote.example', to: 'carol@other.org', subject: 'c', text: body })
  // an unknown user of a local domain: refused, counted for the domain
  await assert.rejects(mx.sendMail({ from: 'x@remote.example', to: 'nobody@example.com', subject: 'n', text: body }))

  const imap = async (user: string, password: string): Promise<boolean> => {
    const c = new ImapFlow({ host: '127.0.0.1', port: port('imap'), secure: false, auth: { user, pass: password }, logger: false, tls: { rejectUnauthorized: false }, doSTARTTLS: false })
    try {
      await c.connect()
      await c.logout()
      return true
    } catch {
      return false
    }
  }
  assert.equal(await imap('alice@example.com', 'pw'), true)
  assert.equal(await imap('alice@example.com', 'wrong'), false)
  assert.equal(await imap('bob@example.com', 'wrong'), false)

  const admin = createAdminServer({
    directory: node.store, status: async () => await node.status(), queue: node.queue, logger: pino({ level: 'silent' }),
    routes: observeRoutes({ stats: node.stats, alarms: node.alarms })
  }, { host: '127.0.0.1', port: 0, token: 'stats-token' })
  await admin.start()
  t.after(async () => { await admin.stop() })
  const get = async (path: string): Promise<Response> => await fetch(admin.url + path, { headers: { authorization: 'Bearer stats-token' } })
  const stats = async (scope: string): Promise<{ step: number, t: number[], series: Record<string, number[]>, nodes: { answered: string[], missing: string[] } }> => {
    const res = await get(`/v1/stats?scope=${encodeURIComponent(scope)}&from=${Date.now() - 3600_000}&to=${Date.now() + 1000}`)
    assert.equal(res.status, 200, await res.clone().text())
    return await res.json() as never
  }

  const alice = await stats('user:Alice@EXAMPLE.com')
  assert.equal(alice.step, STATS_STEP_MS)
  assert.equal(alice.t.length, alice.series.received.length)
  assert.ok(alice.t.every((x, i) => x % STATS_STEP_MS === 0 && (i === 0 || x - alice.t[i - 1] === STATS_STEP_MS)))
  for (const s of ['received', 'sent', 'bytesIn', 'bytesOut', 'failed', 'rejected', 'quarantined', 'logins', 'loginFailures', 'mailboxBytes']) assert.ok(Array.isArray(alice.series[s]), s)
  assert.equal(sum(alice.series.received), 3)
  assert.ok(sum(alice.series.bytesIn) > 3 * body.length)
  assert.equal(sum(alice.series.logins), 1)
  assert.equal(sum(alice.series.loginFailures), 1)
  assert.deepEqual(alice.nodes, { answered: ['self'], missing: [] })

  const domain = await stats('domain:example.com')
  assert.equal(sum(domain.series.received), 3)
  assert.equal(sum(domain.series.rejected), 1)
  assert.equal(sum(domain.series.loginFailures), 2)
  const other = await stats('domain:other.org')
  assert.equal(sum(other.series.received), 1)
  const grid = await stats('grid')
  assert.equal(sum(grid.series.received), 4)
  assert.equal(sum(grid.series.rejected), 1)
  assert.equal(sum(grid.series.logins), 1)

  // the mailbox sizes, sampled into the open bucket: alice's three messages
  await node.stats.flush()
  const sampled = await stats('user:alice@example.com')
  const q = await node.store.quota('alice@example.com')
  assert.ok(q.usedBytes > 0)
  assert.equal(Math.max(...sampled.series.mailboxBytes), q.usedBytes)
  assert.equal(sum(sampled.series.received), 3, 'the flushed bucket is read back from its day file')
  assert.equal(Math.max(...(await stats('domain:example.com')).series.mailboxBytes), q.usedBytes)

  // CSV: a header row, then a row per bucket with an ISO 8601 time
  const csv = await get(`/v1/stats.csv?scope=domain:example.com&from=${Date.now() - 3600_000}&to=${Date.now() + 1000}`)
  assert.equal(csv.status, 200)
  assert.match(csv.headers.get('content-type') ?? '', /^text\/csv/)
  const rows = (await csv.text()).trim().split('\r\n').map(l => l.split(','))
  assert.equal(rows[0][0], 'time')
  assert.ok(rows[0].includes('received') && rows[0].includes('mailboxBytes'))
  assert.equal(rows.length, domain.t.length + 1)
  const col = rows[0].indexOf('received')
  assert.equal(sum(rows.slice(1).map(r => Number(r[col]))), 3)
  for (const r of rows.slice(1)) assert.ok(!Number.isNaN(Date.parse(r[0])) && r[0].endsWith('Z') && r.length === rows[0].length)

  // bad queries: a clear 400
  for (const bad of ['scope=nope', 'scope=user:not-an-address', `from=0&to=${40 * 86_400_000}`, 'from=abc', 'from=10&to=5']) {
    const res = await get(`/v1/stats?${bad}`)
    assert.equal(res.status, 400, bad)
  }
})

test('retention: buckets older than retentionDays are not answered and their day files are deleted', async (t) => {
  const dir = await tempDir(t)
  let clock = Date.UTC(2026, 0, 10, 12, 0, 0)
  const stats = createStats({ logger: pino({ level: 'silent' }), now: () => clock }, { dir, retentionDays: 2 })
  await stats.start()
  t.after(async () => { await stats.stop() })
  stats.add('received', 'a@example.com', 5)
  await stats.flush()
  const first = bucketOf(clock)
  assert.deepEqual((await stats.local(parseScope('user:a@example.com'), first, first + STATS_STEP_MS)).map(p => p[1][STATS_SERIES.indexOf('received')]), [5])
  // a file left from long ago is deleted at the next bucket close
  await writeFile(join(dir, '2025-12-01.jsonl'), JSON.stringify({ t: Date.UTC(2025, 11, 1), r: { '': [1] } }) + '\n')
  clock += 3 * 86_400_000
  stats.add('received', 'a@example.com', 1)
  await stats.flush()
  assert.deepEqual(await readdir(dir), ['2026-01-13.jsonl'])
  const all = await stats.query(parseScope('user:a@example.com'), clock - 4 * 86_400_000, clock + 1)
  assert.equal(sum(all.series.received), 1, 'only the recent bucket is left')
})

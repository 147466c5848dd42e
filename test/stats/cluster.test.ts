// Statistics and alarms on a three-process grid (test/helpers/cluster.ts), each node serving the admin API:
// SMTP traffic (nodemailer) through each node is counted where it arrived and summed by whichever node answers
// /v1/stats, for the grid, the domain and a user; the CSV parses. A SIGKILLed node: its history goes missing
// from the sums (and is named missing), and one "node dead" alarm is raised grid-wide, mailed to alarms.mailTo
// (a local mailbox, read over IMAP); after its restart the alarm is cleared, with its start and end in the history,
// and a second mail says so.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import nodemailer from 'nodemailer'
import { ImapFlow } from 'imapflow'
import { ProcCluster, until } from '../helpers/cluster.ts'
import type { ProcNode } from '../helpers/cluster.ts'
import { tempDir } from '../helpers/tmp.ts'

const TOKEN = 'cluster-stats-token'
const USERS = ['u1@example.com', 'u2@example.com', 'u3@example.com', 'ops@example.com']
const ALARMS = { mailTo: 'ops@example.com', diskUsedPct: 100, underReplicatedMs: 3600_000, queueAgeMs: 3600_000, certDays: 1, authFailures: 1000, checkMs: 500 }
const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0)

interface StatsBody { step: number, t: number[], series: Record<string, number[]>, nodes: { answered: string[], missing: string[] } }
interface AlarmBody { id: string, kind: string, subject: string, message: string, node: string, start: number, end: number | null }

async function api<T> (node: ProcNode, path: string): Promise<T> {
  const res = await fetch(`http://127.0.0.1:${node.ports.admin}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } })
  assert.equal(res.status, 200, `${path}: ${await res.clone().text()}`)
  return (res.headers.get('content-type') ?? '').startsWith('application/json') ? await res.json() as T : await res.text() as T
}

const range = (): string => `from=${Date.now() - 3600_000}&to=${Date.now() + 60_000}`

async function send (node: ProcNode, to: string, n: number): Promise<void> {
  const mx = nodemailer.createTransport({ host: '127.0.0.1', port: node.ports.smtp, secure: false, ignoreTLS: true })
  try {
    for (let i = 0; i < n; i++) await mx.sendMail({ from: 'someone@remote.example', to, subject: `to ${to} via ${node.name} #${i}`, text: 'hello\r\n' })
  } finally {
    mx.close()
  }
}

async function subjects (node: ProcNode, user: string): Promise<string[]> {
  const c = new ImapFlow({ host: '127.0.0.1', port: node.ports.imap, secure: false, auth: { user, pass: 'pw' }, logger: false, doSTARTTLS: false })
  await c.connect()
  try {
    const lock = await c.getMailboxLock('INBOX')
    try {
      const out: string[] = []
      if ((c.mailbox as { exists: number }).exists === 0) return out
      for await (const m of c.fetch('1:*', { envelope: true })) out.push(m.envelope?.subject ?? '')
      return out
    } finally {
      lock.release()
    }
  } finally {
    await c.logout()
  }
}

test('three nodes: statistics summed grid-wide, a killed node missing, its death alarmed, mailed and cleared', async (t) => {
  const dir = await tempDir(t)
  const cluster = new ProcCluster({ clusterKey: randomBytes(16).toString('hex'), replicas: 2, setup: { domain: 'example.com', users: USERS, password: 'pw' } })
  t.after(async () => { await cluster.stopAll() })
  const env = { MAILGRID_TEST_ADMIN: TOKEN, MAILGRID_TEST_ALARMS: JSON.stringify(ALARMS) }
  const nodes: ProcNode[] = []
  for (let k = 1; k <= 3; k++) nodes.push(await cluster.start(`n${k}`, `${dir}/n${k}`, { setup: k === 1, env }))
  await cluster.formed(3)
  await until('the directory on every node', async () => (await Promise.all(nodes.map(async n => (await n.status()).users))).every(c => c === USERS.length), 30_000)
  const [n1, n2, n3] = nodes

  // traffic through every node: 2 + 3 + 4 copies, u1 gets 5 of them
  await send(n1, 'u1@example.com', 2)
  await send(n2, 'u2@example.com', 3)
  await send(n3, 'u1@example.com', 3)
  await send(n3, 'u3@example.com', 1)

  const grid = await api<StatsBody>(n2, `/v1/stats?scope=grid&${range()}`)
  assert.equal(grid.nodes.answered.length, 3, JSON.stringify(grid.nodes))
  assert.deepEqual(grid.nodes.missing, [])
  assert.equal(sum(grid.series.received), 9)
  assert.equal(grid.t.length, grid.series.received.length)
  const domain = await api<StatsBody>(n1, `/v1/stats?scope=domain:example.com&${range()}`)
  assert.equal(sum(domain.series.received), 9)
  assert.ok(sum(domain.series.bytesIn) > 9 * 7)
  const u1 = await api<StatsBody>(n3, `/v1/stats?scope=user:u1@example.com&${range()}`)
  assert.equal(sum(u1.series.received), 5)
  const csv = await api<string>(n1, `/v1/stats.csv?scope=user:u1@example.com&${range()}`)
  const rows = csv.trim().split('\r\n').map(l => l.split(','))
  assert.equal(rows[0][0], 'time')
  assert.equal(rows.length - 1, u1.t.length)
  assert.equal(sum(rows.slice(1).map(r => Number(r[rows[0].indexOf('received')]))), 5)

  // n3 dies: its counts are missing from the sums, and it is named missing
  const n3Id = n3.id
  await cluster.kill(n3)
  await until('n1 sees n3 dead', async () => (await n1.status()).grid?.members.find(m => m.id === n3Id)?.status === 'dead', 30_000)
  const without = await api<StatsBody>(n1, `/v1/stats?scope=grid&${range()}`)
  assert.equal(without.nodes.answered.length, 2)
  assert.equal(without.nodes.missing.length, 1)
  assert.ok(without.nodes.missing[0].endsWith(`(${n3Id.slice(-8)})`), without.nodes.missing[0])
  assert.equal(sum(without.series.received), 5)

  // one node-dead alarm, the same seen from both survivors
  const isDeath = (a: AlarmBody): boolean => a.kind === 'node-dead' && a.subject.endsWith(`(${n3Id.slice(-8)})`)
  let raised: AlarmBody | undefined
  await until('the node-dead alarm', async () => {
    const list = await api<{ active: AlarmBody[] }>(n2, '/v1/alarms')
    raised = list.active.find(isDeath)
    return raised !== undefined
  }, 30_000)
  assert.equal(raised!.end, null)
  assert.ok(raised!.start > 0)
  const fromN1 = await api<{ active: AlarmBody[], history: AlarmBody[] }>(n1, '/v1/alarms')
  assert.deepEqual(fromN1.active.filter(isDeath).map(a => a.id), [raised!.id], 'raised once, by one node')

  // back: the alarm ends, and stays in the history
  const back = await cluster.start('n3', `${dir}/n3`, { env })
  await cluster.formed(3)
  let cleared: AlarmBody | undefined
  await until('the alarm cleared', async () => {
    const list = await api<{ active: AlarmBody[], history: AlarmBody[] }>(back, '/v1/alarms')
    cleared = list.history.find(a => a.id === raised!.id)
    return list.active.every(a => !isDeath(a)) && cleared !== undefined
  }, 30_000)
  assert.equal(cleared!.start, raised!.start)
  assert.ok(cleared!.end !== null && cleared!.end >= cleared!.start)

  // both were mailed to alarms.mailTo, a mailbox of ours
  let mailed: string[] = []
  await until('the alarm mails', async () => {
    mailed = await subjects(n1, 'ops@example.com').catch(() => [])
    return mailed.length >= 2
  }, 30_000, 500)
  assert.ok(mailed.some(s => /ALARM: node-dead/.test(s) && s.includes(n3Id.slice(-8))), mailed.join(' | '))
  assert.ok(mailed.some(s => /cleared: node-dead/.test(s)), mailed.join(' | '))
  assert.equal(mailed.filter(s => /ALARM: node-dead/.test(s)).length, 1, 'one mail per alarm')
})

// /metrics on a two-process grid (test/helpers/cluster.ts, each node serving the admin API): scraped and parsed as
// Prometheus text (exposition format 0.0.4: every line a HELP, a TYPE or a well-formed sample; every sample of a
// declared family); the families issue 11 lists are present, and they move under load: SMTP deliveries
// (nodemailer) and a refused recipient, IMAP sessions (imapflow), a POP3 session (Python's poplib), mail queued for
// another domain (tried and deferred by its shard's primary); the grid's members, the re-mirrored bytes, the commit (fsync) and command latency histograms.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import nodemailer from 'nodemailer'
import { ImapFlow } from 'imapflow'
import { ProcCluster, until } from '../helpers/cluster.ts'
import type { ProcNode } from '../helpers/cluster.ts'
import { python } from '../helpers/client.ts'
import { tempDir } from '../helpers/tmp.ts'

const TOKEN = 'metrics-scrape-token'
const USERS = ['m1@example.com', 'm2@example.com', 'm3@example.com']

interface Scrape { types: Map<string, string>, samples: Map<string, number> }

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*'
const SAMPLE = new RegExp(`^(${NAME})(\\{(?:${NAME}="(?:[^"\\\\\\n]|\\\\[\\\\"n])*",?)*\\})? (-?(?:\\d+(?:\\.\\d+)?(?:e[+-]?\\d+)?|NaN|\\+Inf|-Inf))(?: -?\\d+)?$`)

/** Parses Prometheus text format 0.0.4 strictly: a line that is none of HELP, TYPE, sample or empty fails the test. */
function parse (text: string): Scrape {
  const types = new Map<string, string>()
  const samples = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '') continue
    const help = /^# HELP (\S+) .*$/.exec(line)
    if (help !== null) continue
    const type = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line)
    if (type !== null) { types.set(type[1], type[2]); continue }
    const m = SAMPLE.exec(line)
    assert.ok(m !== null, `not a Prometheus sample line: ${line}`)
    const family = [...types.keys()].find(f => m[1] === f || ((types.get(f) === 'histogram' || types.get(f) === 'summary') && /^_(bucket|sum|count)$/.test(m[1].slice(f.length)) && m[1].startsWith(f)))
    assert.ok(family !== undefined, `sample of an undeclared family: ${line}`)
    samples.set(m[1] + (m[2] ?? ''), Number(m[3]))
  }
  return { types, samples }
}

async function scrape (node: ProcNode): Promise<Scrape> {
  const res = await fetch(`http://127.0.0.1:${node.ports.admin}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/)
  return parse(await res.text())
}

/** Sum of a family's samples whose name and labels contain every given piece. */
function value (s: Scrape, name: string, ...pieces: string[]): number {
  const v = maybe(s, name, ...pieces)
  assert.ok(v !== null, `no sample ${name} ${pieces.join(' ')}`)
  return v
}

/** The same, or null when there is no such sample (a histogram label not observed yet). */
function maybe (s: Scrape, name: string, ...pieces: string[]): number | null {
  let total: number | null = null
  for (const [k, v] of s.samples) {
    if (k.split('{')[0] === name && pieces.every(p => k.includes(p))) total = (total ?? 0) + v
  }
  return total
}

test('/metrics on a grid node: Prometheus text, the families present and moving under load', async (t) => {
  const dir = await tempDir(t)
  const cluster = new ProcCluster({ clusterKey: randomBytes(16).toString('hex'), replicas: 2, setup: { domain: 'example.com', users: USERS, password: 'pw' } })
  t.after(async () => { await cluster.stopAll() })
  const env = { MAILGRID_TEST_ADMIN: TOKEN }
  const n1 = await cluster.start('n1', `${dir}/n1`, { setup: true, env })
  const n2 = await cluster.start('n2', `${dir}/n2`, { env })
  await cluster.formed(2)
  await until('the directory on n2', async () => (await n2.status()).users === USERS.length, 30_000)

  const before = await scrape(n1)
  const before2 = await scrape(n2)
  for (const [family, type] of [
    ['mailgrid_connections_total', 'counter'], ['mailgrid_commands_total', 'counter'], ['mailgrid_command_errors_total', 'counter'],
    ['mailgrid_deliveries_in_total', 'counter'], ['mailgrid_deliveries_out_total', 'counter'], ['mailgrid_received_bytes_total', 'counter'],
    ['mailgrid_sent_bytes_total', 'counter'], ['mailgrid_logins_total', 'counter'], ['mailgrid_queue_messages', 'gauge'],
    ['mailgrid_queue_oldest_age_seconds', 'gauge'], ['mailgrid_grid_members', 'gauge'], ['mailgrid_grid_under_replicated_users', 'gauge'],
    ['mailgrid_grid_remirrored_bytes_total', 'counter'], ['mailgrid_grid_member_last_seen_seconds', 'gauge'],
    ['mailgrid_command_duration_seconds', 'histogram'], ['mailgrid_store_commit_duration_seconds', 'histogram'],
    ['mailgrid_store_fsyncs_total', 'counter'], ['mailgrid_grid_replication_duration_seconds', 'histogram'], ['mailgrid_nodejs_eventloop_lag_seconds', 'gauge'], ['mailgrid_disk_free_bytes', 'gauge']
  ]) assert.equal(before.types.get(family), type, family)
  assert.equal(value(before, 'mailgrid_grid_members', 'status="alive"'), 2)

  // load through n1: SMTP in (and a refused recipient), submission to another domain, IMAP and POP3 sessions
  const mx = nodemailer.createTransport({ host: '127.0.0.1', port: n1.ports.smtp, secure: false, ignoreTLS: true })
  t.after(() => { mx.close() })
  for (let i = 0; i < 5; i++) await mx.sendMail({ from: 'x@remote.example', to: USERS[i % USERS.length], subject: `m${i}`, text: 'x'.repeat(2000) })
  // each user's mail also enters at n2: whichever node is a user's primary then receives one of its deliveries itself
  // and ships the body to the other (a body that entered at the replica stays there and is named, not shipped)
  const mx2 = nodemailer.createTransport({ host: '127.0.0.1', port: n2.ports.smtp, secure: false, ignoreTLS: true })
  t.after(() => { mx2.close() })
  for (const user of USERS) await mx2.sendMail({ from: 'x@remote.example', to: user, subject: 'via n2', text: 'y'.repeat(2000) })
  await assert.rejects(mx.sendMail({ from: 'x@remote.example', to: 'nobody@example.com', subject: 'n', text: 'n' }))
  const sub = nodemailer.createTransport({ host: '127.0.0.1', port: n1.ports.submission, secure: false, ignoreTLS: true, auth: { user: 'm1@example.com', pass: 'pw' } })
  t.after(() => { sub.close() })
  await sub.sendMail({ from: 'm1@example.com', to: 'someone@elsewhere.example', subject: 'out', text: 'out' })
  for (const user of USERS) {
    const c = new ImapFlow({ host: '127.0.0.1', port: n1.ports.imap, secure: false, auth: { user, pass: 'pw' }, logger: false, doSTARTTLS: false })
    await c.connect()
    const lock = await c.getMailboxLock('INBOX')
    for await (const m of c.fetch('1:*', { envelope: true })) assert.ok(m.uid > 0)
    lock.release()
    await c.logout()
  }
  const pop = await python(`
import poplib
p = poplib.POP3('127.0.0.1', ${n1.ports.pop3})
p.user('m1@example.com'); p.pass_('pw')
print(p.stat()[0])
p.quit()
`)
  assert.equal(pop.code, 0, pop.stderr)
  assert.ok(Number(pop.stdout.trim()) >= 1, pop.stdout)

  // the queued message is tried by its queue shard's primary, either node: counted there as deferred (no DNS here)
  const deferred = async (): Promise<number> => {
    let n = 0
    for (const node of [n1, n2]) n += value(await scrape(node), 'mailgrid_deliveries_out_total', 'result="deferred"')
    return n
  }
  await until('the queued message tried and counted', async () => await deferred() >= 1, 60_000, 500)
  const after = await scrape(n1)
  const moved = (name: string, ...pieces: string[]): void => {
    const was = maybe(before, name, ...pieces) ?? 0
    assert.ok(value(after, name, ...pieces) > was, `${name} ${pieces.join(' ')}: ${was} -> ${value(after, name, ...pieces)}`)
  }
  moved('mailgrid_connections_total', 'protocol="smtp"')
  moved('mailgrid_connections_total', 'protocol="imap"')
  moved('mailgrid_connections_total', 'protocol="pop3"')
  moved('mailgrid_commands_total', 'protocol="smtp"')
  moved('mailgrid_commands_total', 'protocol="imap"')
  moved('mailgrid_commands_total', 'protocol="pop3"')
  moved('mailgrid_command_errors_total', 'protocol="smtp"')
  moved('mailgrid_deliveries_in_total', 'protocol="smtp"')
  moved('mailgrid_received_bytes_total', 'protocol="smtp"')
  moved('mailgrid_logins_total', 'protocol="imap"')
  moved('mailgrid_logins_total', 'protocol="submission"')
  moved('mailgrid_command_duration_seconds_count', 'protocol="imap"')
  moved('mailgrid_command_duration_seconds_count', 'protocol="smtp"')
  moved('mailgrid_command_duration_seconds_count', 'protocol="pop3"')
  moved('mailgrid_store_commit_duration_seconds_count')
  moved('mailgrid_store_fsyncs_total')
  // replication is measured and counted by a user's primary, and which node that is depends on the nodes' random ids:
  // summed over both nodes
  const after2 = await scrape(n2)
  const movedOnGrid = (name: string, ...pieces: string[]): void => {
    const was = (maybe(before, name, ...pieces) ?? 0) + (maybe(before2, name, ...pieces) ?? 0)
    const now = (maybe(after, name, ...pieces) ?? 0) + (maybe(after2, name, ...pieces) ?? 0)
    assert.ok(now > was, `${name} ${pieces.join(' ')} on both nodes: ${was} -> ${now}`)
  }
  movedOnGrid('mailgrid_grid_replication_duration_seconds_count', 'to="replicas"')
  movedOnGrid('mailgrid_grid_remirrored_bytes_total')
  assert.ok(value(after, 'mailgrid_queue_messages', 'scope="grid"') >= 1)
  assert.ok(value(after, 'mailgrid_queue_oldest_age_seconds', 'scope="grid"') > 0)
  // histogram buckets are cumulative and end at _count
  const inf = value(after, 'mailgrid_store_commit_duration_seconds_bucket', 'le="+Inf"')
  assert.equal(inf, value(after, 'mailgrid_store_commit_duration_seconds_count'))
  assert.ok(value(after, 'mailgrid_store_commit_duration_seconds_bucket', 'le="0.0001"') <= inf)
  // the peer's last heartbeat is recent
  assert.ok(value(after, 'mailgrid_grid_member_last_seen_seconds', `(${n2.id.slice(-8)})`) < 30)
})

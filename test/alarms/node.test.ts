// node/alarms on one node: the data disk on a small tmpfs filled past 85 % and below its free-space floor raises
// disk-full and disk-low, emptied clears both (start, end, history, the log's alarm_raised / alarm_cleared lines);
// a burst of failed IMAP logins (imapflow) raises auth-failures; a certificate that expires within alarms.certDays
// raises cert-expiry; the history survives a restart; a queued message too old raises queue-age.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtemp, open, rm, unlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { ImapFlow } from 'imapflow'
import pino from 'pino'
import { createMailNode } from '../../node/index.ts'
import type { AlarmsConfig, MailNode, NodeInit } from '../../node/index.ts'
import { testCert, TEST_LIMITS, TEST_OUTBOUND } from '../helpers/node.ts'
import { until } from '../helpers/cluster.ts'
import { tempDir } from '../helpers/tmp.ts'

const MIB = 1024 * 1024
const ALARMS: AlarmsConfig = { mailTo: '', diskUsedPct: 85, underReplicatedMs: 600_000, queueAgeMs: 3600_000, certDays: 1, authFailures: 1000, checkMs: 200 }

async function node (t: { after: (fn: () => Promise<void>) => void }, dataDir: string, over: Partial<NodeInit>, lines?: string[]): Promise<MailNode> {
  const ep = { host: '127.0.0.1', port: 0 }
  const sink = new Writable({ write (chunk: Buffer, _enc, cb) { lines?.push(...chunk.toString().split('\n').filter(l => l !== '')); cb() } })
  const n = createMailNode({ logger: pino({ level: 'info' }, sink) }, {
    dataDir,
    hostname: 'mx.test',
    listen: { smtp: null, submission: null, smtps: null, pop3: null, pop3s: null, imap: ep, imaps: null },
    tls: await testCert(),
    plaintextAuthOnLoopback: true,
    sync: true,
    scryptLogN: 10,
    outbound: TEST_OUTBOUND,
    limits: TEST_LIMITS,
    alarms: ALARMS,
    ...over
  })
  await n.start()
  t.after(async () => { await n.stop() })
  return n
}

test('disk above 85 % and below the floor: disk-full and disk-low raised, then cleared, logged, kept in the history', {
  skip: process.getuid?.() !== 0 ? 'mounting a tmpfs needs root' : false
}, async (t) => {
  const small = await mkdtemp(join(tmpdir(), 'mailgrid-alarm-disk-'))
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${64 * MIB}`, 'tmpfs', small])
  t.after(async () => {
    try { execFileSync('umount', [small]) } catch { execFileSync('umount', ['-l', small]) }
    await rm(small, { recursive: true, force: true })
  })
  const lines: string[] = []
  const n = await node(t, join(small, 'data'), { minFreeBytes: 24 * MIB, diskCheckMs: 250 }, lines)
  assert.deepEqual(n.alarms.local().active, [])

  const ballast = join(small, 'ballast')
  const fh = await open(ballast, 'w')
  const chunk = Buffer.alloc(MIB, 1)
  for (let i = 0; i < 56; i++) await fh.write(chunk)
  await fh.close()
  await until('disk-full and disk-low', () => {
    const kinds = n.alarms.local().active.map(a => a.kind).sort()
    return kinds.join() === 'disk-full,disk-low'
  }, 20_000)
  const raised = n.alarms.local().active
  for (const a of raised) {
    assert.equal(a.end, null)
    assert.equal(a.subject, 'mx.test')
    assert.ok(lines.some(l => l.includes('"alarm_raised"') && l.includes(a.id)), `logged ${a.kind}`)
  }
  assert.match(raised.find(a => a.kind === 'disk-full')!.message, /% used \(threshold 85 %\)/)

  await unlink(ballast)
  await until('both cleared', () => n.alarms.local().active.length === 0, 20_000)
  const history = n.alarms.local().history
  for (const a of raised) {
    const h = history.find(x => x.id === a.id)
    assert.ok(h !== undefined && h.end !== null && h.end >= h.start && h.start === a.start, `${a.kind} in the history`)
    assert.ok(lines.some(l => l.includes('"alarm_cleared"') && l.includes(a.id)), `cleared ${a.kind} logged`)
  }
})

test('a burst of failed logins raises auth-failures; a certificate close to expiry raises cert-expiry; the history survives a restart', async (t) => {
  const dir = await tempDir(t)
  // the test certificate is valid for about a year: a 400-day horizon makes it "expiring"
  const n = await node(t, dir, { alarms: { ...ALARMS, authFailures: 5, certDays: 400 } })
  await n.store.addDomain('example.com')
  await n.store.addUser({ address: 'alice@example.com', password: 'pw' })
  await until('cert-expiry', () => n.alarms.local().active.some(a => a.kind === 'cert-expiry'), 10_000)
  assert.match(n.alarms.local().active.find(a => a.kind === 'cert-expiry')!.message, /expires on \d{4}-/)
  assert.ok(!n.alarms.local().active.some(a => a.kind === 'auth-failures'))

  const port = (await n.status()).services.find(s => s.name === 'imap')!.port
  for (let i = 0; i < 5; i++) {
    const c = new ImapFlow({ host: '127.0.0.1', port, secure: false, auth: { user: 'alice@example.com', pass: `wrong${i}` }, logger: false, doSTARTTLS: false })
    await assert.rejects(c.connect())
    c.close()
  }
  await until('auth-failures', () => n.alarms.local().active.some(a => a.kind === 'auth-failures'), 10_000)
  const burst = n.alarms.local().active.find(a => a.kind === 'auth-failures')!
  assert.match(burst.message, /^5 failed logins in the last 60 s/)
  const listed = await n.alarms.list()
  assert.deepEqual(listed.active.map(a => a.id).sort(), n.alarms.local().active.map(a => a.id).sort())

  await n.stop()
  const again = await node(t, dir, { alarms: { ...ALARMS, authFailures: 5, certDays: 1 } })
  // the certificate is not expiring under the new threshold: the persisted alarm is cleared, with its start kept
  await until('cert-expiry cleared after the restart', () => again.alarms.local().history.some(a => a.kind === 'cert-expiry' && a.end !== null), 10_000)
  assert.ok(again.alarms.local().active.some(a => a.id === burst.id) || again.alarms.local().history.some(a => a.id === burst.id))
})

test('a queued message older than alarms.queueAgeMinutes raises queue-age; deleting it clears the alarm', async (t) => {
  const dir = await tempDir(t)
  const ep = { host: '127.0.0.1', port: 0 }
  const n = await node(t, dir, { listen: { smtp: null, submission: ep, smtps: null, pop3: null, pop3s: null, imap: null, imaps: null }, alarms: { ...ALARMS, queueAgeMs: 300 } })
  await n.store.addDomain('example.com')
  await n.store.addUser({ address: 'alice@example.com', password: 'pw' })
  const port = (await n.status()).services.find(s => s.name === 'submission')!.port
  const { default: nodemailer } = await import('nodemailer')
  const sub = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true, auth: { user: 'alice@example.com', pass: 'pw' } })
  t.after(() => { sub.close() })
  // the test resolver answers nothing: the message stays queued, deferred
  await sub.sendMail({ from: 'alice@example.com', to: 'bob@elsewhere.example', subject: 'waits', text: 'waits' })
  await until('queue-age', () => n.alarms.local().active.some(a => a.kind === 'queue-age'), 15_000)
  assert.match(n.alarms.local().active.find(a => a.kind === 'queue-age')!.message, /outbound queue is \d+ min old/)
  const [item] = await n.queue.list()
  assert.ok(await n.queue.delete(item.id))
  await until('queue-age cleared', () => !n.alarms.local().active.some(a => a.kind === 'queue-age'), 15_000)
  assert.ok(n.alarms.local().history.some(a => a.kind === 'queue-age' && a.end !== null))
})

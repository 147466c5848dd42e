// FUTURERELEASE (RFC 4865) on submission: the EHLO keyword, the parameters' checks with the RFC's codes, and a
// held message (local and remote recipients alike) that waits in the replicated queue until its release time,
// across a node restart, then arrives.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { RawClient } from '../helpers/client.ts'
import { startNode } from '../helpers/node.ts'
import { tempDir } from '../helpers/tmp.ts'
import { FUTURE_RELEASE_INTERVAL_MAX_S, futureReleaseKeyword, parseDateTime, parseHold, rfc3339 } from '../../node/smtp/future-release.ts'

const NOW = Date.UTC(2026, 11, 5, 12, 0, 0)

test('HOLDFOR and HOLDUNTIL are checked as RFC 4865 says', () => {
  const max = FUTURE_RELEASE_INTERVAL_MAX_S
  assert.deepEqual(parseHold(false, NOW), { ok: true, releaseAt: null })
  assert.deepEqual(parseHold({ HOLDFOR: '60' }, NOW), { ok: true, releaseAt: NOW + 60_000 })
  assert.deepEqual(parseHold({ HOLDFOR: '0' }, NOW), { ok: true, releaseAt: null })
  assert.deepEqual(parseHold({ HOLDFOR: String(max) }, NOW), { ok: true, releaseAt: NOW + max * 1000 })
  assert.deepEqual(parseHold({ HOLDUNTIL: '2026-12-05T13:00:00Z' }, NOW), { ok: true, releaseAt: NOW + 3600_000 })
  assert.deepEqual(parseHold({ HOLDUNTIL: '2026-12-05T14:00:00.5+01:00' }, NOW), { ok: true, releaseAt: NOW + 3600_000 + 500 })
  assert.deepEqual(parseHold({ HOLDUNTIL: '2026-12-05T11:00:00Z' }, NOW), { ok: true, releaseAt: null }) // past: at once
  const code = (args: Record<string, unknown>): string => {
    const r = parseHold(args, NOW)
    return r.ok ? 'ok' : `${r.code} ${r.text.slice(0, 5)}`
  }
  assert.equal(code({ HOLDFOR: String(max + 1) }), '554 5.5.4')
  assert.equal(code({ HOLDFOR: '1234567890' }), '501 5.5.4') // more than 9 digits
  assert.equal(code({ HOLDFOR: '-5' }), '501 5.5.4')
  assert.equal(code({ HOLDFOR: true }), '501 5.5.4')
  assert.equal(code({ HOLDFOR: '10', HOLDUNTIL: '2026-12-05T13:00:00Z' }), '501 5.5.4')
  assert.equal(code({ HOLDUNTIL: '2026-12-05 13:00:00' }), '501 5.5.4')
  assert.equal(code({ HOLDUNTIL: '2026-13-05T13:00:00Z' }), '501 5.5.4')
  assert.equal(code({ HOLDUNTIL: '2099-01-01T00:00:00Z' }), '554 5.5.4')
  assert.equal(parseDateTime('2026-12-05t13:00:00z'), NOW + 3600_000)
  assert.equal(futureReleaseKeyword(NOW), `FUTURERELEASE ${max} ${rfc3339(NOW + max * 1000)}`)
  assert.match(futureReleaseKeyword(NOW), /^FUTURERELEASE \d+ \d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/)
})

async function submit (port: number, user: string, lines: string[]): Promise<{ client: RawClient, replies: string[] }> {
  const c = await RawClient.connect(port, { tls: true })
  const replies = [await c.read(), await c.cmd('EHLO client.test')]
  replies.push(await c.cmd(`AUTH PLAIN ${Buffer.from(`\0${user}\0pw`).toString('base64')}`))
  for (const l of lines) replies.push(await c.cmd(l))
  return { client: c, replies }
}

test('FUTURERELEASE: advertised on submission only; bad parameters refused with the RFC codes', async t => {
  const n = await startNode(t)
  await n.node.store.addDomain('example.com')
  await n.node.store.addUser({ address: 'alice@example.com', password: 'pw' })
  const { client, replies } = await submit(n.port('smtps'), 'alice@example.com', [])
  t.after(() => { client.close() })
  assert.match(replies[1], new RegExp(`250[- ]FUTURERELEASE ${FUTURE_RELEASE_INTERVAL_MAX_S} \\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}Z\\r\\n`))
  assert.match(replies[2], /^235 /)
  const cases: Array<[string, RegExp]> = [
    ['MAIL FROM:<alice@example.com> HOLDFOR=abc', /^501 5\.5\.4 /],
    [`MAIL FROM:<alice@example.com> HOLDFOR=${FUTURE_RELEASE_INTERVAL_MAX_S + 1}`, /^554 5\.5\.4 /],
    ['MAIL FROM:<alice@example.com> HOLDUNTIL=2099-01-01T00:00:00Z', /^554 5\.5\.4 /],
    ['MAIL FROM:<alice@example.com> HOLDUNTIL=tomorrow', /^501 5\.5\.4 /],
    ['MAIL FROM:<alice@example.com> HOLDFOR=5 HOLDUNTIL=2026-12-05T13:00:00Z', /^501 5\.5\.4 /]
  ]
  for (const [line, want] of cases) assert.match(await client.cmd(line), want, line)
  assert.match(await client.cmd('MAIL FROM:<alice@example.com> HOLDFOR=30'), /^250 /)
  assert.match(await client.cmd('RSET'), /^250 /)

  // the MX neither offers nor takes it
  const mx = await RawClient.connect(n.port('smtp'))
  t.after(() => { mx.close() })
  await mx.read()
  assert.doesNotMatch(await mx.cmd('EHLO client.test'), /FUTURERELEASE/)
  assert.match(await mx.cmd('MAIL FROM:<x@remote.test> HOLDFOR=30'), /^555 5\.5\.4 /)
  // submission without AUTH: authentication first
  const anon = await RawClient.connect(n.port('smtps'), { tls: true })
  t.after(() => { anon.close() })
  await anon.read()
  await anon.cmd('EHLO client.test')
  assert.match(await anon.cmd('MAIL FROM:<alice@example.com> HOLDFOR=30'), /^530 /)
})

test('a held message waits in the queue until its release, across a restart, then arrives', { timeout: 240_000 }, async t => {
  const dir = await tempDir(t)
  const HOLD_S = 8
  let n = await startNode({ after: () => {} }, { dataDir: dir })
  await n.node.store.addDomain('example.com')
  await n.node.store.addUser({ address: 'alice@example.com', password: 'pw' })
  await n.node.store.addUser({ address: 'bob@example.com', password: 'pw' })
  const { client, replies } = await submit(n.port('smtps'), 'alice@example.com', [
    `MAIL FROM:<alice@example.com> HOLDFOR=${HOLD_S}`, 'RCPT TO:<bob@example.com>', 'RCPT TO:<carol@remote.test>', 'DATA'
  ])
  const asked = Date.now()
  assert.match(replies.at(-1)!, /^354 /)
  assert.match(await client.cmd('From: alice@example.com\r\nTo: bob@example.com\r\nSubject: later\r\n\r\nsee you later\r\n.'), /^250 /)
  client.close()
  const bobInbox = async (): Promise<number> => {
    const box = await n.node.store.getMailbox('bob@example.com', 'INBOX')
    return box?.messages ?? 0
  }
  // queued with its release time, nothing delivered yet (the local recipient waits too)
  const items = await n.node.queue.list()
  assert.equal(items.length, 2) // one per destination domain: example.com (local) and remote.test
  for (const i of items) {
    assert.ok(i.releaseAt !== undefined && i.releaseAt >= asked + (HOLD_S - 1) * 1000, JSON.stringify(i))
    assert.ok(i.nextAttemptAt >= i.releaseAt)
  }
  const releaseAt = items[0].releaseAt!
  // retrying everything (after an outage, say) leaves scheduled mail waiting
  assert.equal(await n.node.queue.retry('all'), 0)
  assert.equal(await bobInbox(), 0)
  // a restart in the middle of the hold: the hold is in the queue's replicated records
  await n.node.stop()
  n = await startNode(t, { dataDir: dir })
  if (Date.now() < releaseAt) assert.equal(await bobInbox(), 0, 'not delivered before its release time')
  const deadline = Date.now() + 120_000
  while (await bobInbox() === 0 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 200))
  assert.equal(await bobInbox(), 1)
  const box = await n.node.store.getMailbox('bob@example.com', 'INBOX')
  const [rec] = await n.node.store.listMessages('bob@example.com', box!.id)
  assert.ok(rec.internalDate >= releaseAt, `delivered at ${new Date(rec.internalDate).toISOString()}, release ${new Date(releaseAt).toISOString()}`)
  const raw = (await n.node.store.readMessage(rec)).toString('latin1')
  assert.match(raw, /^Return-Path: <alice@example\.com>\r\n/)
  assert.doesNotMatch(raw, /X-Mailgrid-Envelope/)
  assert.match(raw, /see you later/)
  // the remote copy stays queued (this test node's resolver answers nothing), now past its release
  const left = await n.node.queue.list()
  assert.equal(left.length, 1)
  assert.equal(left[0].domain, 'remote.test')
})

test('a held message survives a SIGKILL of its node and is delivered after its release', { timeout: 240_000 }, async t => {
  const { spawn } = await import('node:child_process')
  const { createInterface } = await import('node:readline')
  const { ImapFlow } = await import('imapflow')
  const dir = await tempDir(t)
  const setup = JSON.stringify({ domain: 'example.com', users: ['alice@example.com', 'bob@example.com'], password: 'pw' })
  const children: Array<import('node:child_process').ChildProcess> = []
  t.after(() => { for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL') })
  const spawnNode = async (): Promise<{ child: import('node:child_process').ChildProcess, ports: Record<string, number> }> => {
    const child = spawn(process.execPath, ['test/helpers/node-proc.ts', dir, setup], { stdio: ['ignore', 'pipe', 'inherit'] })
    children.push(child)
    const lines = createInterface({ input: child.stdout! })
    const ports = await new Promise<Record<string, number>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('node did not start in 60 s')), 60_000)
      lines.on('line', l => { if (l.startsWith('READY ')) { clearTimeout(timer); resolve(JSON.parse(l.slice(6)) as Record<string, number>) } })
      child.once('exit', code => { clearTimeout(timer); reject(new Error(`node exited with ${code}`)) })
    })
    return { child, ports }
  }
  const HOLD_S = 6
  const first = await spawnNode()
  const asked = Date.now()
  const { client, replies } = await submit(first.ports.smtps, 'alice@example.com', [`MAIL FROM:<alice@example.com> HOLDFOR=${HOLD_S}`, 'RCPT TO:<bob@example.com>', 'DATA'])
  assert.match(replies.at(-1)!, /^354 /)
  assert.match(await client.cmd('From: alice@example.com\r\nTo: bob@example.com\r\nSubject: killed\r\n\r\nstill here\r\n.'), /^250 /)
  client.close()
  const exited = new Promise(resolve => first.child.once('exit', resolve))
  first.child.kill('SIGKILL')
  await exited

  const second = await spawnNode()
  const bob = new ImapFlow({ host: '127.0.0.1', port: second.ports.imap, secure: false, doSTARTTLS: false, auth: { user: 'bob@example.com', pass: 'pw' }, logger: false } as ConstructorParameters<typeof ImapFlow>[0])
  bob.on('error', () => {})
  await bob.connect()
  t.after(async () => { await bob.logout().catch(() => {}) })
  const deadline = Date.now() + 120_000
  let messages = 0
  while (Date.now() < deadline) {
    const st = await bob.status('INBOX', { messages: true })
    messages = st === false ? 0 : st.messages ?? 0
    if (messages > 0) break
    await new Promise(resolve => setTimeout(resolve, 250))
  }
  assert.equal(messages, 1)
  await bob.mailboxOpen('INBOX')
  const m = await bob.fetchOne('1', { internalDate: true, source: true })
  assert.ok(m !== false && m !== undefined)
  const date = m.internalDate instanceof Date ? m.internalDate.getTime() : Date.parse(String(m.internalDate))
  // IMAP dates are to the second: delivered no earlier than the second the hold ends
  assert.ok(date >= Math.floor((asked + HOLD_S * 1000) / 1000) * 1000, `delivered ${new Date(date).toISOString()}, asked ${new Date(asked).toISOString()}`)
  assert.match(m.source!.toString('latin1'), /still here/)
  second.child.kill('SIGTERM')
})

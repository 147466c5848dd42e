// Collection from accounts elsewhere (issue 15, item 5), against a private Dovecot: POP3 leaving mail on the
// server (UIDL), POP3 deleting it, IMAP (UIDVALIDITY + UID) into a chosen folder; managed with the CLI over the
// admin API. New mail is picked up, old mail never twice; errors show in `collect list`; the password never does.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Readable } from 'node:stream'
import pino from 'pino'
import { createTestCa } from '../helpers/ca.ts'
import { isDovecotSourceInstalled, startDovecotSource } from '../helpers/dovecot.ts'
import { startNode } from '../helpers/node.ts'
import { until } from '../helpers/cluster.ts'
import { createAdminServer } from '../../appliance/admin.ts'
import { collectRoutes } from '../../appliance/collect-routes.ts'
import { main } from '../../appliance/commands.ts'
import { client } from '../migrate/imap-fixture.ts'
import { Pop3Client } from '../../node/collect/index.ts'

const skip = isDovecotSourceInstalled() ? false : 'Dovecot (dovecot-imapd, dovecot-pop3d) is not installed'
const TOKEN = 'collect-test-token'

async function cli (url: string, args: string[]): Promise<{ code: number, out: string, err: string }> {
  let out = ''
  let err = ''
  const code = await main([...args, '--url', url, '--token', TOKEN], {
    stdout: { write: (s: string) => { out += s } },
    stderr: { write: (s: string) => { err += s } },
    stdin: Readable.from([]),
    env: {}
  })
  return { code, out, err }
}

const mail = (who: string, i: number): Buffer => Buffer.from(`From: someone@elsewhere.test\r\nTo: ${who}@elsewhere.test\r\nSubject: ${who} ${i}\r\nMessage-ID: <${who}.${i}@elsewhere.test>\r\n\r\nbody ${who} ${i} caf\u00e9\r\n.leading dot line\r\n`)

interface Account { id: string, username: string, state: { lastRunAt: number, lastError: string, lastCount: number, total: number } }

test('collection from Dovecot POP3 and IMAP: new mail arrives, old mail never twice', { skip, timeout: 300_000 }, async t => {
  const ca = await createTestCa()
  const dovecot = await startDovecotSource({ users: ['carol', 'dave', 'erin'].map(user => ({ user, password: `${user}-pw` })), ca })
  t.after(async () => { await dovecot.stop() })
  // the test's Dovecot listens on loopback, which collection refuses unless told (a test-only switch, no config key)
  const n = await startNode(t, { collectTickMs: 300, collect: { allowPrivate: false, allowLoopback: true } })
  await n.node.store.addDomain('example.com')
  await n.node.store.addUser({ address: 'target@example.com', password: 'pw' })
  await n.node.store.createMailbox('target@example.com', 'Collected')
  const admin = createAdminServer({ directory: n.node.store, status: async () => await n.node.status(), queue: n.node.queue, logger: pino({ level: 'silent' }), routes: collectRoutes(n.node.store, n.node.collectHosts) }, { host: '127.0.0.1', port: 0, token: TOKEN })
  await admin.start()
  t.after(async () => { await admin.stop() })

  const fill = async (user: string, from: number, count: number): Promise<void> => {
    const c = client(dovecot.imapPort, user, `${user}-pw`)
    await c.connect()
    for (let i = from; i < from + count; i++) await c.append('INBOX', mail(user, i), [], new Date())
    await c.logout()
  }
  for (const u of ['carol', 'dave', 'erin']) await fill(u, 0, 3)

  const add = async (args: string[]): Promise<string> => {
    const r = await cli(admin.url, ['collect', 'add', 'target@example.com', ...args, '--json'])
    assert.equal(r.code, 0, r.err)
    return (JSON.parse(r.out) as { id: string }).id
  }
  const carol = await add(['--protocol', 'pop3', '--host', '127.0.0.1', '--port', String(dovecot.pop3Port), '--tls', 'none', '--username', 'carol', '--password', 'carol-pw'])
  const erin = await add(['--protocol', 'pop3', '--host', '127.0.0.1', '--port', String(dovecot.pop3Port), '--tls', 'starttls', '--username', 'erin', '--password', 'erin-pw', '--delete', '--insecure'])
  const dave = await add(['--protocol', 'imap', '--host', 'localhost', '--port', String(dovecot.imapsPort), '--username', 'dave', '--password', 'dave-pw', '--folder', 'Collected', '--ca-file', await writeCa(t, ca.cert)])
  const list = async (): Promise<Account[]> => {
    const r = await cli(admin.url, ['collect', 'list', 'target@example.com', '--json'])
    assert.equal(r.code, 0, r.err)
    assert.doesNotMatch(r.out, /-pw/, 'no password in the listing')
    return JSON.parse(r.out) as Account[]
  }
  const runAll = async (): Promise<Account[]> => {
    const before = new Map((await list()).map(a => [a.id, a.state.lastRunAt]))
    for (const id of [carol, erin, dave]) assert.equal((await cli(admin.url, ['collect', 'run', 'target@example.com', id])).code, 0)
    let now: Account[] = []
    await until('every account ran', async () => {
      now = await list()
      return now.every(a => a.state.lastRunAt > (before.get(a.id) ?? 0))
    }, 60_000)
    return now
  }
  const count = async (box: string): Promise<number> => (await n.node.store.getMailbox('target@example.com', box))?.messages ?? 0

  // the accounts run once when added (they are due at once); then on demand
  await until('the first runs', async () => (await list()).every(a => a.state.lastRunAt > 0), 60_000)
  let accounts = await runAll()
  for (const a of accounts) assert.equal(a.state.lastError, '', `${a.username}: ${a.state.lastError}`)
  assert.equal(await count('INBOX'), 6) // carol's 3 and erin's 3
  assert.equal(await count('Collected'), 3) // dave's
  assert.deepEqual(accounts.map(a => a.state.total).sort(), [3, 3, 3])

  // byte for byte behind our Received line
  const box = await n.node.store.getMailbox('target@example.com', 'Collected')
  const recs = await n.node.store.listMessages('target@example.com', box!.id)
  const raw = await n.node.store.readMessage(recs[0])
  assert.match(raw.toString('latin1'), /^Received: from localhost \(IMAP account dave\)\r\n\tby mx\.test \(mailgrid collect\) for <target@example\.com>; /)
  assert.ok(raw.subarray(raw.length - mail('dave', 0).length).equals(mail('dave', 0)), 'the message as it was on the server')

  // new mail on every account: only that arrives
  for (const u of ['carol', 'dave', 'erin']) await fill(u, 3, 2)
  accounts = await runAll()
  for (const a of accounts) assert.equal(a.state.lastError, '', `${a.username}: ${a.state.lastError}`)
  assert.equal(await count('INBOX'), 10)
  assert.equal(await count('Collected'), 5)
  assert.deepEqual(accounts.map(a => a.state.lastCount).sort(), [2, 2, 2])
  // and a run with nothing new brings nothing
  accounts = await runAll()
  assert.deepEqual(accounts.map(a => a.state.lastCount), [0, 0, 0])
  assert.equal(await count('INBOX'), 10)

  // erin's account deletes on the server; carol's leaves mail there
  const left = async (user: string): Promise<number> => {
    const p = await Pop3Client.connect({ host: '127.0.0.1', port: dovecot.pop3Port, tls: 'none' })
    await p.login(user, `${user}-pw`)
    const l = await p.list()
    await p.quit()
    return l.length
  }
  assert.equal(await left('erin'), 0)
  assert.equal(await left('carol'), 5)

  // a wrong password: the run fails and says why
  const bad = await add(['--protocol', 'pop3', '--host', '127.0.0.1', '--port', String(dovecot.pop3Port), '--tls', 'none', '--username', 'carol', '--password', 'wrong'])
  await until('the bad account ran', async () => (await list()).find(a => a.id === bad)!.state.lastRunAt > 0, 60_000)
  assert.match((await list()).find(a => a.id === bad)!.state.lastError, /login failed/i)
  const del = await cli(admin.url, ['collect', 'del', 'target@example.com', bad])
  assert.equal(del.code, 0, del.err)
  assert.equal((await list()).length, 3)
})

async function writeCa (t: { after: (fn: () => Promise<void>) => void }, pem: string): Promise<string> {
  const { tempDir } = await import('../helpers/tmp.ts')
  const { writeFile } = await import('node:fs/promises')
  const dir = await tempDir(t)
  await writeFile(`${dir}/ca.pem`, pem)
  return `${dir}/ca.pem`
}

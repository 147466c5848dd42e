// The Nodes page's restart and forget (issue 11) on a three-process grid of `mailgrid start` nodes, through the
// admin API of another node (the CLI `mailgrid node restart|forget`, as a remote operator runs it):
// - node2 restarted from node1: it stops gracefully, exits with the restart code; this test plays its supervisor
//   (starts it again on the same data dir), and it comes back alive with the same peer id and its data;
// - forgetting an alive member is refused; node3 SIGKILLed, then forgotten from node2: every survivor drops it
//   from its member list and the list kept on disk, no user is left under-replicated; node3 started again on its
//   old data dir joins again as a new member (a higher incarnation), as documented.

import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ImapFlow } from 'imapflow'
import nodemailer from 'nodemailer'
import { EXIT_RESTART, supervised } from '../../appliance/start.ts'
import { STATE_POLL_MS } from '../../appliance/console/server.ts'
import { cli, kill, ROOT, startConsoleGrid, stopConsoleGrid, until } from './grid.ts'
import type { ConsoleNode } from './grid.ts'

const NODE = join(ROOT, 'node_modules', '.bin', 'node')
const CLI = join(ROOT, 'appliance', 'cli.ts')
const PW = 'nodes test password 1'
const USERS = ['ann@restart.test', 'bob@restart.test', 'cy@restart.test', 'di@restart.test']

let dir: string
let nodes: ConsoleNode[] = []

async function call (n: ConsoleNode, method: string, path: string, body?: unknown): Promise<{ status: number, json: any }> {
  const cert = await readFile(join(n.dir, 'tls', 'cert.pem'), 'utf8')
  const text = body === undefined ? undefined : JSON.stringify(body)
  return await new Promise((resolve, reject) => {
    const req = httpsRequest(n.url + path, {
      method,
      ca: cert,
      checkServerIdentity: () => undefined,
      headers: { authorization: `Bearer ${n.token}`, ...(text === undefined ? {} : { 'content-type': 'application/json' }) }
    }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        let json: unknown = null
        try { json = JSON.parse(Buffer.concat(chunks).toString('utf8')) } catch {}
        resolve({ status: res.statusCode ?? 0, json })
      })
    })
    req.on('error', reject)
    req.end(text)
  })
}

type Members = Array<{ id: string, name: string, status: string, meta?: Record<string, unknown> }>
async function members (n: ConsoleNode): Promise<Members> {
  const r = await call(n, 'GET', '/v1/status')
  return r.json?.grid?.members ?? []
}
const statusOf = async (n: ConsoleNode, name: string): Promise<string | undefined> => (await members(n).catch(() => [] as Members)).find(m => m.name === name)?.status

const portOf = async (n: ConsoleNode, name: string): Promise<number> =>
  ((await call(n, 'GET', '/v1/status')).json.services as Array<{ name: string, port: number }>).find(s => s.name === name)?.port ?? 0

/** Starts node `n` again on its data dir with its environment (what systemd does after exit code 75). */
async function respawn (n: ConsoleNode): Promise<void> {
  const child = spawn(NODE, [CLI, 'start', '--data', n.dir], { cwd: ROOT, env: n.env, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  let exited: number | null | undefined
  child.once('exit', code => { exited = code; n.alive = false })
  await until(`${n.name} ready again`, async () => {
    if (exited !== undefined) throw new Error(`${n.name} exited ${String(exited)}: ${stderr}`)
    const text = await readFile(join(n.dir, 'admin.json'), 'utf8').catch(() => null)
    const info = text === null ? null : JSON.parse(text)
    if (info?.pid !== child.pid) return false
    n.url = info.url
    n.fingerprint = info.fingerprint
    return true
  }, 60_000, 200)
  n.child = child
  n.alive = true
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailgrid-nodes-'))
  nodes = await startConsoleGrid(dir, 3)
  await until('three alive members on every node', async () => {
    for (const n of nodes) if ((await members(n).catch(() => [])).filter(m => m.status === 'alive').length !== 3) return false
    return true
  }, 60_000, 300)
  assert.equal((await call(nodes[0], 'POST', '/v1/domains', { name: 'restart.test' })).status < 300, true)
  for (const u of USERS) {
    const r = await call(nodes[0], 'POST', '/v1/users', { address: u, password: PW })
    assert.ok(r.status < 300, JSON.stringify(r.json))
  }
})

after(async () => {
  await stopConsoleGrid(nodes)
  await rm(dir, { recursive: true, force: true })
})

test('supervised: systemd\'s INVOCATION_ID or MAILGRID_SUPERVISED=1 (set by the service file)', () => {
  assert.equal(supervised({}), false)
  assert.equal(supervised({ INVOCATION_ID: 'abc' }), true)
  assert.equal(supervised({ MAILGRID_SUPERVISED: '1' }), true)
})

test('node2 restarted through node1\'s API: exits with the restart code, started again it is alive with its data', async () => {
  const n2 = nodes[1]
  const before = (await members(nodes[0])).find(m => m.name === 'node2')
  assert.ok(before !== undefined)
  // a message for each user, delivered through node1 before the restart
  const smtpPort = await portOf(nodes[0], 'smtp')
  const t = nodemailer.createTransport({ host: '127.0.0.1', port: smtpPort, secure: false, ignoreTLS: true })
  for (const u of USERS) await t.sendMail({ from: 'x@example.org', to: u, subject: `before restart ${u}`, text: 'hello\r\n' })
  t.close()
  await until('no user under-replicated before the restart', async () => (await members(nodes[0])).every(m => m.status === 'alive' && m.meta?.underReplicated === 0), 60_000, 500)

  // each node says whether a supervisor restarts it at its first console poll (STATE_POLL_MS after it started), and
  // the directory brings that to node1: on a fast machine the test gets here sooner
  await new Promise(resolve => setTimeout(resolve, 2 * STATE_POLL_MS + 1000))
  const exited = new Promise<number | null>(resolve => n2.child.once('exit', code => resolve(code)))
  const out = await cli(nodes[0], ['node', 'restart', 'node2'])
  assert.equal(out.code, 0, out.err)
  // the test's nodes run without a supervisor: the answer says the node will not come back by itself
  assert.match(out.out, /node2 stops gracefully .* will not come back by itself/)
  assert.equal(await exited, EXIT_RESTART)
  await until('node2 dead or left as node3 sees it', async () => (await statusOf(nodes[2], 'node2')) !== 'alive', 30_000, 300)

  // the supervisor's part: start it again on the same data dir
  await respawn(n2)
  await until('node2 alive again on node1 and node3', async () => await statusOf(nodes[0], 'node2') === 'alive' && await statusOf(nodes[2], 'node2') === 'alive', 60_000, 300)
  const after = (await members(nodes[0])).find(m => m.name === 'node2')
  assert.equal(after?.id, before.id, 'the same peer id')
  // its data: the directory from its own store, and every message readable over IMAP from node2
  const users = (await call(n2, 'GET', '/v1/users?domain=restart.test')).json.users as Array<{ address: string }>
  assert.deepEqual(users.map(u => u.address).sort(), [...USERS].sort())
  const imapPort = await portOf(n2, 'imap')
  for (const u of USERS) {
    const c = new ImapFlow({ host: '127.0.0.1', port: imapPort, secure: false, auth: { user: u, pass: PW }, logger: false, tls: { rejectUnauthorized: false } })
    await c.connect()
    const box = await c.mailboxOpen('INBOX')
    assert.equal(box.exists, 1, u)
    await c.logout()
  }
  // a restart asked once is done once: the restarted node does not restart again
  await new Promise(resolve => setTimeout(resolve, 5_000))
  assert.equal(n2.alive, true)
})

test('forget: refused for an alive member; a SIGKILLed node3 forgotten from node2 leaves every survivor, then comes back as a new member', async () => {
  const alive = await call(nodes[1], 'POST', `/console/api/nodes/${(await members(nodes[1])).find(m => m.name === 'node3')?.id ?? ''}/forget`, {})
  assert.equal(alive.status, 409)
  assert.match(alive.json.error, /only a dead member can be forgotten/)

  const id3 = (await members(nodes[0])).find(m => m.name === 'node3')?.id ?? ''
  await kill(nodes[2])
  await until('node3 dead on node1 and node2', async () => await statusOf(nodes[0], 'node3') === 'dead' && await statusOf(nodes[1], 'node3') === 'dead', 30_000, 300)
  const out = await cli(nodes[1], ['node', 'forget', 'node3'])
  assert.equal(out.code, 0, out.err)
  assert.match(out.out, /forgot node3/)
  await until('node3 gone from node1 and node2', async () => await statusOf(nodes[0], 'node3') === undefined && await statusOf(nodes[1], 'node3') === undefined, 15_000, 200)
  for (const n of nodes.slice(0, 2)) {
    await until(`node3 gone from ${n.name}'s members.json`, async () => !(await readFile(join(n.dir, 'grid', 'members.json'), 'utf8').catch(() => '')).includes(id3), 10_000, 200)
  }
  await until('no under-replicated user on the survivors', async () => {
    const ms = await members(nodes[0])
    return ms.length === 2 && ms.every(m => m.status === 'alive' && m.meta?.underReplicated === 0)
  }, 90_000, 500)

  // node3 started again on its old data dir: a higher incarnation, so it joins as a new member (and its copies
  // are caught up or merged by the grid's restart path); the forget entry naming it is removed
  await respawn(nodes[2])
  await until('node3 alive again on node1 and node2', async () => await statusOf(nodes[0], 'node3') === 'alive' && await statusOf(nodes[1], 'node3') === 'alive', 60_000, 300)
  assert.equal((await members(nodes[0])).find(m => m.name === 'node3')?.id, id3)
  await until('no under-replicated user with node3 back', async () => {
    const ms = await members(nodes[0])
    return ms.length === 3 && ms.every(m => m.status === 'alive' && m.meta?.underReplicated === 0)
  }, 90_000, 500)
  // it stays: the forget does not apply again to the member that came back (it removed node-forget/ID), not even
  // when it dies again: then it is an ordinary dead member, listed until gossip's hour
  await new Promise(resolve => setTimeout(resolve, 5_000))
  assert.equal(await statusOf(nodes[0], 'node3'), 'alive')
  await kill(nodes[2])
  await until('node3 dead again on node1', async () => await statusOf(nodes[0], 'node3') === 'dead', 30_000, 300)
  await new Promise(resolve => setTimeout(resolve, 6_000))
  assert.equal(await statusOf(nodes[0], 'node3'), 'dead')
  assert.equal(await statusOf(nodes[1], 'node3'), 'dead')
})

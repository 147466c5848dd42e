// The admin API and CLI of users' mail rules: scripts listed, read, stored (refused with the line of an error),
// activated and deleted; a vacation message and a forward address written as a generated, active script that
// deliveries then run (the reply and the redirect are queued), and cleared again.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Readable } from 'node:stream'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import pino from 'pino'
import { createAdminServer } from '../../appliance/admin.ts'
import { sieveRoutes } from '../../appliance/sieve-routes.ts'
import { main } from '../../appliance/commands.ts'
import { startNode } from '../helpers/node.ts'
import { RawClient } from '../helpers/client.ts'
import { tempDir } from '../helpers/tmp.ts'

const TOKEN = 'sieve-admin-test-token'
const USER = 'amy@example.com'

async function cli (args: string[]): Promise<{ out: string, err: string, code: number }> {
  const io = { out: '', err: '' }
  const code = await main(args, { stdout: { write: (s: string) => { io.out += s } }, stderr: { write: (s: string) => { io.err += s } }, stdin: Readable.from([]), env: {} })
  return { ...io, code }
}

async function send (port: number, from: string, subject: string): Promise<string> {
  const c = await RawClient.connect(port)
  try {
    await c.read()
    for (const line of ['EHLO test', `MAIL FROM:<${from}>`, `RCPT TO:<${USER}>`, 'DATA']) {
      const reply = await c.cmd(line)
      if (!/^(250|354)/.test(reply)) return reply
    }
    const reply = await c.cmd(`From: <${from}>\r\nTo: <${USER}>\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@remote.test>\r\n\r\nhello\r\n.`)
    await c.cmd('QUIT').catch(() => '')
    return reply
  } finally {
    c.close()
  }
}

test('admin API and CLI: scripts, vacation and forward', async (t) => {
  const dir = await tempDir(t)
  const { node, port } = await startNode(t)
  await node.store.addDomain('example.com')
  await node.store.addUser({ address: USER, password: 'pw' })
  const admin = createAdminServer({
    directory: node.store, status: async () => await node.status(), queue: node.queue, logger: pino({ level: 'silent' }),
    routes: sieveRoutes({ directory: node.store, sieve: node.sieve })
  }, { host: '127.0.0.1', port: 0, token: TOKEN })
  await admin.start()
  t.after(async () => { await admin.stop() })
  const api = async (method: string, path: string, body?: unknown): Promise<{ status: number, json: any }> => {
    const r = await fetch(admin.url + path, { method, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) })
    return { status: r.status, json: await r.json() }
  }
  const u = `/v1/users/${encodeURIComponent(USER)}`
  const remote = ['--url', admin.url, '--token', TOKEN]

  // scripts
  assert.deepEqual((await api('GET', `${u}/sieve`)).json, { scripts: [] })
  const bad = await api('PUT', `${u}/sieve/mine`, { source: 'keep;\r\nfileinto "x";\r\n' })
  assert.equal(bad.status, 400)
  assert.match(bad.json.error, /^line 2: /, 'fileinto without require, on line 2')
  assert.equal((await api('PUT', `${u}/sieve/mine`, { source: 'keep;\r\n', activate: true })).status, 200)
  assert.deepEqual((await api('GET', `${u}/sieve/mine`)).json, { name: 'mine', active: true, source: 'keep;\r\n' })
  assert.equal((await api('DELETE', `${u}/sieve/mine`)).status, 409, 'the active script stays')
  assert.equal((await api('GET', `${u}/sieve/none`)).status, 404)
  assert.equal((await api('GET', '/v1/users/nobody%40example.com/sieve')).status, 404)

  // the CLI over the same API
  const file = join(dir, 'other.sieve')
  await writeFile(file, 'require ["fileinto"];\r\nfileinto "Archive";\r\n')
  let r = await cli(['sieve', 'put', USER, 'other', '--file', file, ...remote])
  assert.equal(r.code, 0, r.err)
  r = await cli(['sieve', 'list', USER, ...remote])
  assert.equal(r.out, 'mine  (active)\nother\n')
  r = await cli(['sieve', 'get', USER, 'other', ...remote])
  assert.equal(r.out, 'require ["fileinto"];\r\nfileinto "Archive";\r\n')
  await writeFile(file, 'keep;\r\n\r\nfrobnicate;\r\n')
  r = await cli(['sieve', 'put', USER, 'broken', '--file', file, ...remote])
  assert.equal(r.code, 1)
  assert.match(r.err, /line 3: /)

  // vacation and forward: one generated script, active
  r = await cli(['sieve', 'vacation', USER, '--subject', 'Out of office', '--message', 'Back on "Monday".\nAmy', '--days', '3', ...remote])
  assert.equal(r.code, 0, r.err)
  const fwd = await api('PUT', `${u}/forward`, { address: 'amy@remote.test', keepCopy: true })
  assert.equal(fwd.status, 200)
  const rules = (await api('GET', `${u}/rules`)).json
  assert.deepEqual(rules.vacation, { subject: 'Out of office', message: 'Back on "Monday".\nAmy', days: 3 })
  assert.deepEqual(rules.forward, { address: 'amy@remote.test', keepCopy: true })
  assert.equal(rules.active, 'mailgrid')
  assert.match(rules.source, /vacation :days 3 :subject "Out of office" "Back on \\"Monday\\"\.\r\nAmy";/)
  r = await cli(['sieve', 'show', USER, ...remote])
  assert.match(r.out, /^vacation: "Out of office", every 3 days\nforward: amy@remote\.test \(keeping a copy\)\nactive script: mailgrid\n/)

  // a delivery runs it: kept (:copy), redirected and answered, both through the queue
  assert.match(await send(port('smtp'), 'carl@remote.test', 'hello amy'), /^250/)
  const box = await node.store.getMailbox(USER, 'INBOX')
  assert.ok(box !== null)
  assert.equal((await node.store.listMessages(USER, box.id)).length, 1)
  const queued = await node.queue.list()
  assert.deepEqual(queued.map(q => q.rcpts.map(x => x.address)).flat().sort(), ['amy@remote.test', 'carl@remote.test'])

  // cleared: the generated script goes, nothing is active
  assert.equal((await api('DELETE', `${u}/vacation`)).status, 200)
  assert.equal((await api('GET', `${u}/rules`)).json.vacation, null)
  r = await cli(['sieve', 'forward', USER, '--off', ...remote])
  assert.equal(r.code, 0, r.err)
  assert.deepEqual((await api('GET', `${u}/sieve`)).json, { scripts: [{ name: 'mine', active: false }, { name: 'other', active: false }] })
  r = await cli(['sieve', 'activate', USER, 'other', ...remote])
  assert.equal(r.code, 0, r.err)
  assert.deepEqual((await api('GET', `${u}/sieve`)).json.scripts.find((s: { name: string }) => s.name === 'other'), { name: 'other', active: true })
})

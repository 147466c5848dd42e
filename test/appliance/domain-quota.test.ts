// Per-domain quotas (issue 11, item 5): `mailgrid domain quota` over the admin API sets a domain's bytes and
// number of users; user creation beyond the count is refused; a message that would take the domain past its bytes
// is refused like a full mailbox (552 5.2.2 at DATA for one recipient, 452 4.2.2 at RCPT once the domain is full),
// while another domain's mail and a domain without quota are unaffected.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Readable } from 'node:stream'
import pino from 'pino'
import { main } from '../../appliance/commands.ts'
import { createAdminServer } from '../../appliance/admin.ts'
import { observeRoutes } from '../../appliance/observe.ts'
import { RawClient } from '../helpers/client.ts'
import { startNode } from '../helpers/node.ts'

const TOKEN = 'domain-quota-token'

async function cli (args: string[]): Promise<{ out: string, err: string, code: number }> {
  const io = { out: '', err: '' }
  const code = await main(args, {
    stdout: { write: (s: string) => { io.out += s } },
    stderr: { write: (s: string) => { io.err += s } },
    stdin: Readable.from([]),
    env: {}
  })
  return { ...io, code }
}

/** One message over SMTP; the reply to the first command that is refused, or the final 250. */
async function send (port: number, rcpt: string, bytes: number): Promise<string> {
  const c = await RawClient.connect(port)
  try {
    await c.read()
    for (const line of ['EHLO test', 'MAIL FROM:<sender@remote.example>', `RCPT TO:<${rcpt}>`, 'DATA']) {
      const reply = await c.cmd(line)
      if (!/^(250|354)/.test(reply)) return reply
    }
    const reply = await c.cmd(`Subject: q\r\n\r\n${'x'.repeat(bytes)}\r\n.`)
    await c.cmd('QUIT').catch(() => '')
    return reply
  } finally {
    c.close()
  }
}

test('domain quotas: set by the CLI, user creation refused beyond the count, delivery beyond the bytes', async (t) => {
  const { node, port } = await startNode(t)
  const admin = createAdminServer({
    directory: node.store, status: async () => await node.status(), queue: node.queue, logger: pino({ level: 'silent' }),
    routes: observeRoutes({ stats: node.stats, alarms: node.alarms, directory: node.store })
  }, { host: '127.0.0.1', port: 0, token: TOKEN })
  await admin.start()
  t.after(async () => { await admin.stop() })
  const remote = ['--url', admin.url, '--token', TOKEN]
  const post = async (path: string, body: unknown): Promise<Response> => await fetch(admin.url + path, {
    method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body)
  })

  assert.equal((await post('/v1/domains', { name: 'example.com' })).status, 201)
  assert.equal((await post('/v1/domains', { name: 'free.org' })).status, 201)
  assert.equal((await post('/v1/users', { address: 'a@example.com', password: 'pw' })).status, 201)

  // shown, then set
  let r = await cli(['domain', 'quota', 'example.com', ...remote])
  assert.equal(r.code, 0, r.err)
  assert.equal(r.out, 'example.com\tbytes unlimited\tusers 1 of unlimited\n')
  r = await cli(['domain', 'quota', 'example.com', '--bytes', '10K', '--users', '2', ...remote])
  assert.equal(r.code, 0, r.err)
  assert.equal(r.out, 'example.com\tbytes 10K\tusers 1 of 2\n')
  r = await cli(['domain', 'quota', 'example.com', '--json', ...remote])
  assert.deepEqual(JSON.parse(r.out).domain, { name: 'example.com', created: JSON.parse(r.out).domain.created, quotaBytes: 10240, quotaUsers: 2 })
  assert.equal((await cli(['domain', 'quota', 'example.com', '--bytes', 'lots', ...remote])).code, 2)
  assert.equal((await cli(['domain', 'quota', 'nope.example', '--users', '1', ...remote])).code !== 0, true)

  // users: the second fits, the third is refused (and another domain is not limited)
  assert.equal((await post('/v1/users', { address: 'b@example.com', password: 'pw' })).status, 201)
  const refused = await post('/v1/users', { address: 'c@example.com', password: 'pw' })
  assert.equal(refused.status, 507)
  assert.match((await refused.json() as { error: string }).error, /quota of 2 users/)
  assert.equal(await node.store.getUser('c@example.com'), null)
  for (const u of ['x@free.org', 'y@free.org', 'z@free.org']) assert.equal((await post('/v1/users', { address: u, password: 'pw' })).status, 201)

  // bytes: 6 KB fits in 10 KB; 6 KB more would not: refused at DATA like a full mailbox
  assert.match(await send(port('smtp'), 'a@example.com', 6000), /^250 /)
  assert.match(await send(port('smtp'), 'b@example.com', 6000), /^552 5\.2\.2 Domain quota exceeded/)
  assert.equal((await node.store.quota('b@example.com')).usedMessages, 0)
  assert.match(await send(port('smtp'), 'b@example.com', 1000), /^250 /)
  // lowered below what the domain holds: refused already at RCPT
  assert.equal((await cli(['domain', 'quota', 'example.com', '--bytes', '4K', ...remote])).code, 0)
  assert.match(await send(port('smtp'), 'b@example.com', 10), /^452 4\.2\.2 <b@example\.com>: Domain quota exceeded/)
  // another domain, without a quota, takes mail as before
  assert.match(await send(port('smtp'), 'x@free.org', 6000), /^250 /)
  // 0 = unlimited again
  assert.equal((await cli(['domain', 'quota', 'example.com', '--bytes', '0', '--users', '0', ...remote])).code, 0)
  assert.match(await send(port('smtp'), 'b@example.com', 6000), /^250 /)
  assert.equal((await post('/v1/users', { address: 'c@example.com', password: 'pw' })).status, 201)
})

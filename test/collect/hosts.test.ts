// Collection hosts (node/host-policy.ts): a user must not make the grid connect to loopback, link-local (cloud
// metadata), multicast, its own members or, unless collect.allowPrivate, its private LAN. Refused when the account
// is added (the admin API answers 400 with the reason) and again before every connection: a name that resolved to
// a public address when added and to 127.0.0.1 now (DNS rebinding, through a private dnsmasq) is refused at
// connect time, and nothing connects to the loopback listener it points at.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import pino from 'pino'
import { createAdminServer } from '../../appliance/admin.ts'
import { collectRoutes } from '../../appliance/collect-routes.ts'
import { classifyAddress, createHostPolicy, HostRefused } from '../../node/host-policy.ts'
import { isDnsmasqInstalled, startDns } from '../helpers/dns.ts'
import { startNode } from '../helpers/node.ts'
import { until } from '../helpers/cluster.ts'

const TOKEN = 'collect-hosts-token'

test('addresses are classified, IPv4 inside IPv6 included', () => {
  const table: Array<[string, string | null]> = [
    ['127.0.0.1', 'loopback'], ['127.8.9.10', 'loopback'], ['::1', 'loopback'], ['::ffff:127.0.0.1', 'loopback'], ['::ffff:7f00:1', 'loopback'],
    ['2002:7f00:1::', 'loopback'], ['0.0.0.0', 'unspecified'], ['::', 'unspecified'], ['169.254.169.254', 'linkLocal'],
    ['64:ff9b::a9fe:a9fe', 'linkLocal'], ['fe80::1%eth0', 'linkLocal'], ['224.0.0.1', 'multicast'], ['ff02::1', 'multicast'],
    ['255.255.255.255', 'reserved'], ['10.1.2.3', 'private'], ['172.16.0.1', 'private'], ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'], ['100.64.0.1', 'private'], ['fd12::1', 'private'], ['fec0::1', 'private'], ['172.32.0.1', 'public'],
    ['8.8.8.8', 'public'], ['::ffff:8.8.8.8', 'public'], ['2001:db8::1', 'public'], ['1::2:3.4.5.6', 'public'], ['mail.example', null], ['1.2.3', null]
  ]
  for (const [ip, kind] of table) assert.equal(classifyAddress(ip), kind, ip)
})

test('the policy: every address checked, grid members refused even on a private LAN, privileged ports', async () => {
  const members = ['192.168.7.2', '2001:db8::77']
  const strict = createHostPolicy({ ownAddresses: () => members }, { allowPrivate: false })
  const lan = createHostPolicy({ ownAddresses: () => members }, { allowPrivate: true })
  const refused = async (p: ReturnType<typeof createHostPolicy>, host: string, port: number, why: RegExp): Promise<void> => {
    await assert.rejects(p.check(host, port), (err: Error) => err instanceof HostRefused && why.test(err.message), `${host}:${port}`)
  }
  await refused(strict, '127.0.0.1', 995, /loopback/)
  await refused(strict, '[::1]', 995, /loopback/)
  await refused(strict, '169.254.169.254', 993, /link-local/)
  await refused(strict, '192.168.1.20', 993, /private address \(allowed only with collect\.allowPrivate\)/)
  assert.deepEqual(await lan.check('192.168.1.20', 993), ['192.168.1.20'])
  await refused(lan, '192.168.7.2', 993, /member of this grid/)
  await refused(lan, '::ffff:192.168.7.2', 993, /member of this grid/)
  await refused(strict, '2001:db8:0:0::77', 993, /member of this grid/)
  assert.deepEqual(await strict.check('203.0.113.5', 993), ['203.0.113.5'])
  // ports: POP3/IMAP's, or unprivileged
  for (const port of [110, 995, 143, 993, 1024, 10993]) assert.deepEqual(await strict.check('203.0.113.5', port), ['203.0.113.5'])
  for (const port of [22, 25, 80, 443, 587, 1023]) await refused(strict, '203.0.113.5', port, /port \d+ refused/)
  await refused(strict, 'bad_name..example', 993, /not a host name/)
  // RFC 6761: localhost names are loopback whatever a resolver says
  await refused(strict, 'localhost', 993, /localhost is loopback/)
  await refused(strict, 'db.localhost', 993, /db\.localhost is loopback/)
})

test('the admin API refuses a loopback, link-local or private collection host with a 400 and the reason', async t => {
  const n = await startNode(t, { collectTickMs: 300 }) // no collect option: the defaults
  await n.node.store.addDomain('example.com')
  await n.node.store.addUser({ address: 'u@example.com', password: 'pw' })
  const admin = createAdminServer({ directory: n.node.store, status: async () => await n.node.status(), queue: n.node.queue, logger: pino({ level: 'silent' }), routes: collectRoutes(n.node.store, n.node.collectHosts) }, { host: '127.0.0.1', port: 0, token: TOKEN })
  await admin.start()
  t.after(async () => { await admin.stop() })
  const add = async (host: string, port?: number): Promise<{ status: number, body: { error?: string } }> => {
    const res = await fetch(`${admin.url}/v1/users/u@example.com/collect`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ protocol: 'pop3', host, ...(port !== undefined ? { port } : {}), username: 'u', password: 'p' })
    })
    return { status: res.status, body: await res.json() as { error?: string } }
  }
  for (const [host, why] of [['127.0.0.1', /loopback/], ['localhost', /loopback/], ['169.254.169.254', /link-local/], ['10.0.0.5', /private address/], ['[::1]', /loopback/], ['0.0.0.0', /unspecified/]] as const) {
    const r = await add(host)
    assert.equal(r.status, 400, host)
    assert.match(String(r.body.error), why, host)
  }
  const port = await add('203.0.113.5', 25)
  assert.equal(port.status, 400)
  assert.match(String(port.body.error), /port 25 refused/)
  // nothing was stored
  assert.deepEqual(await n.node.store.listEntries('collect/'), [])
  // a public address on the standard port is taken (not connected to by the API)
  assert.equal((await add('203.0.113.5')).status, 201)
})

test('a name that resolves to loopback at connect time (DNS rebinding) is refused then, and nothing connects', { skip: isDnsmasqInstalled() ? false : 'dnsmasq is not installed', timeout: 300_000 }, async t => {
  // the place the rebound name points at: a loopback listener that counts connections
  let connections = 0
  const trap = createServer(s => { connections++; s.destroy() })
  await new Promise<void>(resolve => trap.listen(0, '127.0.0.1', resolve))
  t.after(() => { trap.close() })
  const trapPort = (trap.address() as AddressInfo).port
  // when added, the name has only a public (documentation-range) IPv6 address
  const dns = await startDns({ records: { address: [{ name: 'mail.rebind.test', address: '2001:db8::25' }] } })
  t.after(async () => { await dns.stop() })
  const n = await startNode(t, {
    collectTickMs: 300,
    outbound: { dnsServers: [dns.server], port: 25, relay: '', retryMinMs: 300_000, delayNoticeMs: 4 * 3600_000, bounceAfterMs: 5 * 24 * 3600_000 }
  })
  await n.node.store.addDomain('example.com')
  await n.node.store.addUser({ address: 'u@example.com', password: 'pw' })
  const admin = createAdminServer({ directory: n.node.store, status: async () => await n.node.status(), queue: n.node.queue, logger: pino({ level: 'silent' }), routes: collectRoutes(n.node.store, n.node.collectHosts) }, { host: '127.0.0.1', port: 0, token: TOKEN })
  await admin.start()
  t.after(async () => { await admin.stop() })
  const api = async (method: string, path: string, body?: unknown): Promise<any> => {
    const res = await fetch(`${admin.url}${path}`, { method, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) })
    assert.ok(res.status < 300, `${method} ${path}: ${res.status}`)
    return await res.json()
  }
  const added = await api('POST', '/v1/users/u@example.com/collect', { protocol: 'pop3', host: 'mail.rebind.test', port: trapPort, tls: 'none', username: 'u', password: 'p', intervalMinutes: 60 })
  const id = added.account.id as string
  const state = async (): Promise<{ lastRunAt: number, lastError: string }> =>
    ((await api('GET', '/v1/users/u@example.com/collect')).accounts as Array<{ id: string, state: { lastRunAt: number, lastError: string } }>).find(a => a.id === id)!.state
  // its first run (due at once) goes to the IPv6 address, which does not answer: whatever it says, it ends
  await until('the first run', async () => (await state()).lastRunAt > 0, 120_000)
  const first = await state()
  // now the name answers 127.0.0.1, where the trap listens
  await dns.setRecords({ address: [{ name: 'mail.rebind.test', address: '127.0.0.1' }] })
  await api('POST', `/v1/users/u@example.com/collect/${id}/run`)
  await until('the second run', async () => (await state()).lastRunAt > first.lastRunAt, 120_000)
  const second = await state()
  assert.match(second.lastError, /mail\.rebind\.test resolves to 127\.0\.0\.1, which is loopback/)
  assert.equal(connections, 0, 'nothing connected to the loopback listener')
})

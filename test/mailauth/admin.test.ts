// The admin API's DKIM and DNS endpoints against a real store, with the status of a node in a three-node grid:
// MX records for every live node, SRV records with this node's ports (target "." for a service that is off),
// 404 for an unknown domain, 400 for a bad server list, and no private key in any answer.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createAdminServer } from '../../appliance/admin.ts'
import type { NodeStatus } from '../../node/types.ts'
import { FakeQueue } from '../helpers/fake-queue.ts'
import { quiet, testStore } from './helpers.ts'

const TOKEN = 'test-token-0123456789'

type Member = NonNullable<NodeStatus['grid']>['members'][number]

function member (id: string, name: string, status: string): Member {
  return { id, name, status, state: 'alive', weight: 1, host: '127.0.0.1', addrs: [], services: {}, sessions: 0, cpuPct: 0, meta: {} }
}

const STATUS: NodeStatus = {
  hostname: 'mx1.example.com',
  startedAt: 1,
  uptimeMs: 2,
  services: [{ name: 'smtp', host: '0.0.0.0', port: 25 }, { name: 'submission', host: '0.0.0.0', port: 587 }, { name: 'imaps', host: '0.0.0.0', port: 993 }],
  connections: 0,
  users: 0,
  domains: 0,
  store: { commitGroups: 0, commitBatches: 0 },
  memory: { rssBytes: 1, heapUsedBytes: 1 },
  grid: {
    self: 'p1', ringVersion: 'r', replicas: 2, usersOwned: 0, usersReplicated: 0, underReplicated: 0, handoffPending: 0, remirroredBytes: 0,
    members: [member('p1', 'mx1.example.com', 'alive'), member('p2', 'mx2.example.com', 'alive'), member('p3', 'mx3.example.com', 'dead')]
  },
  queue: { local: { size: 0, oldestAgeMs: 0 }, grid: { size: 0, oldestAgeMs: 0 } }
}

test('admin API: DKIM keys and DNS records of a domain on a grid node', async (t) => {
  const store = await testStore(t)
  const admin = createAdminServer({ directory: store, status: async () => STATUS, queue: new FakeQueue([]), logger: quiet }, { host: '127.0.0.1', port: 0, token: TOKEN })
  await admin.start()
  t.after(async () => { await admin.stop() })
  const call = async (method: string, path: string, body?: unknown): Promise<{ status: number, json: any, text: string }> => {
    const res = await fetch(admin.url + path, { method, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }), signal: AbortSignal.timeout(30_000) })
    const text = await res.text()
    assert.doesNotMatch(text, /PRIVATE KEY|privateKey/, 'never a private key')
    return { status: res.status, json: JSON.parse(text), text }
  }

  assert.equal((await call('POST', '/v1/domains', { name: 'Example.COM' })).status, 201)
  const keys = (await call('GET', '/v1/domains/example.com/dkim')).json.keys
  assert.equal(keys.length, 1)
  assert.match(keys[0].selector, /^mg\d{6}$/)
  assert.equal(keys[0].state, 'active')
  assert.equal(keys[0].name, `${keys[0].selector as string}._domainkey.example.com`)
  assert.equal((await store.dkimKeys('example.com'))[0].privateKey.startsWith('-----BEGIN PRIVATE KEY-----'), true, 'the store keeps it')

  const { records } = (await call('GET', '/v1/dns/example.com')).json
  const of = (type: string, name: string): any[] => records.filter((r: any) => r.type === type && r.name === name)
  assert.deepEqual(of('MX', 'example.com').map((r: any) => r.value), ['10 mx1.example.com.', '10 mx2.example.com.'], 'every live node, not the dead one')
  assert.equal(of('SRV', '_submission._tcp.example.com')[0].value, '0 1 587 mx1.example.com.')
  assert.equal(of('SRV', '_imaps._tcp.example.com')[0].value, '0 1 993 mx1.example.com.')
  assert.equal(of('SRV', '_pop3s._tcp.example.com')[0].value, '0 0 0 .', 'RFC 6186 3.4: not offered')
  assert.equal(of('TXT', `${keys[0].selector as string}._domainkey.example.com`)[0].text, keys[0].txt)

  const rotated = await call('POST', '/v1/domains/example.com/dkim/rotate')
  assert.equal(rotated.status, 201)
  assert.equal(rotated.json.key.state, 'pending')
  assert.equal((await call('DELETE', `/v1/domains/example.com/dkim/${keys[0].selector as string}`)).status, 409, 'the active key stays')
  assert.equal((await call('POST', '/v1/domains/example.com/dkim/nosuch/activate')).status, 404)
  assert.equal((await call('GET', '/v1/domains/nosuch.com/dkim')).status, 404)
  assert.equal((await call('GET', '/v1/dns/nosuch.com')).status, 404)
  assert.equal((await call('GET', '/v1/dns/example.com/check?servers=not-an-ip')).status, 400)
  assert.equal((await call('GET', '/v1/dns/example.com/check?servers=127.0.0.1:99999')).status, 400)
})

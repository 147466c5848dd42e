// Who reads what: a domain administrator logged in to the console (appliance/console) reads the statistics of its
// domain and of that domain's users, and the domain's quota; the grid's statistics, another domain's, the alarms and
// setting a quota answer 403. The admin token reads everything.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { createAdminServer } from '../../appliance/admin.ts'
import { createConsole } from '../../appliance/console/server.ts'
import { observeRoutes } from '../../appliance/observe.ts'
import { startNode } from '../helpers/node.ts'

test('a domain administrator reads its domain\'s statistics and quota, nothing grid-wide', async (t) => {
  const { node } = await startNode(t)
  await node.store.addDomain('example.com')
  await node.store.addDomain('other.org')
  await node.store.addUser({ address: 'a@example.com', password: 'pw' })
  const logger = pino({ level: 'silent' })
  const web = createConsole({ directory: node.store, status: async () => await node.status(), logger, throttle: node.authThrottle, scryptLogN: 10 }, { secure: false })
  t.after(() => { web.stop() })
  await web.accounts.add('dom', 'a long password', ['example.com'])
  const admin = createAdminServer({
    directory: node.store, status: async () => await node.status(), queue: node.queue, logger, console: web.hooks,
    routes: [...web.routes, ...observeRoutes({ stats: node.stats, alarms: node.alarms, directory: node.store })]
  }, { host: '127.0.0.1', port: 0, token: 'scope-token' })
  await admin.start()
  t.after(async () => { await admin.stop() })

  const login = await fetch(admin.url + '/console/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'dom', password: 'a long password' }) })
  assert.equal(login.status, 200, await login.clone().text())
  const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0]
  const { csrf } = await login.json() as { csrf: string }
  const as = async (path: string, auth: Record<string, string>, method = 'GET', body?: unknown): Promise<number> => (await fetch(admin.url + path, {
    method, headers: { ...auth, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, ...(body !== undefined ? { body: JSON.stringify(body) } : {})
  })).status
  const dom = { cookie }
  const token = { authorization: 'Bearer scope-token' }

  assert.equal(await as('/v1/stats?scope=domain:example.com', dom), 200)
  assert.equal(await as('/v1/stats.csv?scope=user:a@example.com', dom), 200)
  assert.equal(await as('/v1/stats?scope=grid', dom), 403)
  assert.equal(await as('/v1/stats', dom), 403, 'the default scope is the grid')
  assert.equal(await as('/v1/stats?scope=domain:other.org', dom), 403)
  assert.equal(await as('/v1/stats?scope=user:x@other.org', dom), 403)
  assert.equal(await as('/v1/alarms', dom), 403)
  assert.equal(await as('/v1/domains/example.com/quota', dom), 200)
  assert.equal(await as('/v1/domains/other.org/quota', dom), 403)
  assert.equal(await as('/v1/domains/example.com/quota', { ...dom, 'x-csrf-token': csrf }, 'PUT', { bytes: 1 }), 403)

  for (const path of ['/v1/stats?scope=grid', '/v1/stats?scope=domain:other.org', '/v1/alarms', '/v1/domains/other.org/quota']) assert.equal(await as(path, token), 200, path)
  assert.equal(await as('/v1/domains/example.com/quota', token, 'PUT', { bytes: 1000 }), 200)
})

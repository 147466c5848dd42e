import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { createStore, MailError } from '../../store/index.ts'
import type { Store } from '../../store/index.ts'
import type { NodeStatus } from '../../node/types.ts'
import { ADMIN_BODY_BYTES_MAX, createAdminServer } from '../../appliance/admin.ts'
import type { AdminServer } from '../../appliance/admin.ts'
import { createLogger } from '../../appliance/logger.ts'
import { FakeQueue, queueItem } from '../helpers/fake-queue.ts'

const TOKEN = 'test-token-0123456789'

const STATUS: NodeStatus = {
  hostname: 'mx.example.com',
  startedAt: 1,
  uptimeMs: 2,
  services: [{ name: 'smtp', host: '127.0.0.1', port: 2525 }],
  connections: 0,
  users: 0,
  domains: 0,
  store: { commitGroups: 0, commitBatches: 0 },
  memory: { rssBytes: 1, heapUsedBytes: 1 },
  grid: null,
  queue: { local: { size: 1, oldestAgeMs: 60_000 }, grid: { size: 3, oldestAgeMs: 3_600_000 } }
}

interface Harness { store: Store, admin: AdminServer, logs: string[], failStatus: { on: boolean }, queue: FakeQueue }

const NOW = 1_800_000_000_000

async function withAdmin (fn: (h: Harness) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-admin-'))
  const store = createStore({}, { path: dir, sync: false, scryptLogN: 10 })
  await store.start()
  const logs: string[] = []
  const logger = createLogger({ level: 'debug', destination: new Writable({ write (chunk, _enc, cb) { logs.push(String(chunk)); cb() } }) })
  const failStatus = { on: false }
  const status = async (): Promise<NodeStatus> => {
    if (failStatus.on) throw new Error('secret internal detail')
    return STATUS
  }
  const queue = new FakeQueue([
    queueItem({ id: 'm1', queuedAt: NOW - 60_000, nextAttemptAt: NOW + 240_000, attempts: 1, lastError: '451 4.7.1 Greylisted' }),
    queueItem({ id: 'm2', queuedAt: NOW - 3_600_000, held: true })
  ], { now: () => NOW })
  const admin = createAdminServer({ directory: store, status, queue, logger }, { host: '127.0.0.1', port: 0, token: TOKEN })
  await admin.start()
  try {
    await fn({ store, admin, logs, failStatus, queue })
  } finally {
    await admin.stop()
    await admin.stop()
    await store.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

async function call (h: Harness, method: string, path: string, body?: unknown, token: string | null = TOKEN): Promise<{ status: number, json: any, headers: Headers }> {
  const res = await fetch(h.admin.url + path, {
    method,
    headers: { ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body)
  })
  return { status: res.status, json: await res.json(), headers: res.headers }
}

test('every request needs the bearer token', async () => {
  await withAdmin(async h => {
    for (const token of [null, '', 'wrong', TOKEN + 'x', TOKEN.slice(0, -1)]) {
      const r = await call(h, 'GET', '/v1/status', undefined, token)
      assert.equal(r.status, 401, `token ${String(token)}`)
      assert.deepEqual(r.json, { error: 'Missing or wrong admin token' })
      assert.equal(r.headers.get('www-authenticate'), 'Bearer')
    }
    assert.equal((await call(h, 'GET', '/nowhere', undefined, null)).status, 401, 'routes are not revealed without the token')
    const lower = await fetch(h.admin.url + '/v1/status', { headers: { authorization: `bearer ${TOKEN}` } })
    assert.equal(lower.status, 200, 'the scheme is case-insensitive (RFC 9110 11.1)')
    const ok = await call(h, 'GET', '/v1/status')
    assert.equal(ok.status, 200)
    assert.deepEqual(ok.json, { ...STATUS, admin: { url: h.admin.url, tls: null } }, 'the node\'s status, and where its admin API listens (plain HTTP here)')
    assert.ok(!h.logs.join('').includes(TOKEN), 'the token never reaches the log')
  })
})

test('domains: add, list, delete, and their errors', async () => {
  await withAdmin(async h => {
    const added = await call(h, 'POST', '/v1/domains', { name: 'Example.COM' })
    assert.equal(added.status, 201)
    assert.equal(added.json.domain.name, 'example.com')
    assert.deepEqual((await call(h, 'POST', '/v1/domains', { name: 'example.com' })).json, { error: 'Domain example.com already exists' })
    assert.equal((await call(h, 'POST', '/v1/domains', { name: 'example.com' })).status, 409)
    assert.equal((await call(h, 'POST', '/v1/domains', { name: 'bad domain' })).status, 400)
    assert.deepEqual(await call(h, 'POST', '/v1/domains', { nom: 'x' }).then(r => [r.status, r.json]), [400, { error: 'name: must be a string' }])
    const list = await call(h, 'GET', '/v1/domains')
    assert.deepEqual(list.json.domains.map((d: { name: string }) => d.name), ['example.com'])

    await call(h, 'POST', '/v1/users', { address: 'a@example.com', password: 'pw' })
    const busy = await call(h, 'DELETE', '/v1/domains/example.com')
    assert.deepEqual([busy.status, busy.json], [409, { error: 'Domain example.com still has users' }])
    await call(h, 'DELETE', '/v1/users/a@example.com')
    assert.deepEqual(await call(h, 'DELETE', '/v1/domains/example.com').then(r => [r.status, r.json]), [200, { deleted: 'example.com' }])
    assert.equal((await call(h, 'DELETE', '/v1/domains/example.com')).status, 404)
    assert.deepEqual((await call(h, 'GET', '/v1/domains')).json, { domains: [] })
  })
})

test('users: add with quota, get, list, passwd, quota, delete, and their errors', async () => {
  await withAdmin(async h => {
    await call(h, 'POST', '/v1/domains', { name: 'example.com' })
    await call(h, 'POST', '/v1/domains', { name: 'example.org' })
    const added = await call(h, 'POST', '/v1/users', { address: 'Alice@Example.com', password: 'one', quotaBytes: 1024 ** 3, quotaMessages: 500 })
    assert.equal(added.status, 201)
    assert.deepEqual({ ...added.json.user, created: 0 }, { address: 'alice@example.com', quotaBytes: 1024 ** 3, quotaMessages: 500, status: 'active', created: 0 })
    assert.equal(JSON.stringify(added.json).includes('one'), false, 'no password or hash in answers')
    await call(h, 'POST', '/v1/users', { address: 'bob@example.org', password: 'two' })

    const errors: Array<[unknown, number, string]> = [
      [{ address: 'alice@example.com', password: 'x' }, 409, 'User alice@example.com already exists'],
      [{ address: 'carol@unknown.example', password: 'x' }, 404, 'Unknown domain: unknown.example'],
      [{ address: 'not-an-address', password: 'x' }, 400, 'Invalid address: not-an-address'],
      [{ address: 'carol@example.com', password: '' }, 400, 'Empty password'],
      [{ address: 'carol@example.com' }, 400, 'password: must be a string'],
      [{ address: 'carol@example.com', password: 'x', quotaBytes: -1 }, 400, 'quotaBytes: must be a whole number'],
      [{ address: 'carol@example.com', password: 'x', quotaMessages: 1.5 }, 400, 'quotaMessages: must be a whole number']
    ]
    for (const [body, status, error] of errors) {
      assert.deepEqual(await call(h, 'POST', '/v1/users', body).then(r => [r.status, r.json]), [status, { error }], JSON.stringify(body))
    }

    assert.deepEqual((await call(h, 'GET', '/v1/users')).json.users.map((u: { address: string }) => u.address).sort(), ['alice@example.com', 'bob@example.org'])
    assert.deepEqual((await call(h, 'GET', '/v1/users?domain=example.org')).json.users.map((u: { address: string }) => u.address), ['bob@example.org'])
    assert.deepEqual(await call(h, 'GET', '/v1/users?domain=nowhere.example').then(r => [r.status, r.json]), [404, { error: 'No such domain: nowhere.example' }])
    assert.equal((await call(h, 'GET', '/v1/users?domain=bad%20domain')).status, 400)
    assert.equal((await call(h, 'GET', '/v1/users/ALICE%40example.com')).json.user.address, 'alice@example.com')
    assert.equal((await call(h, 'GET', '/v1/users/zed@example.com')).status, 404)

    assert.equal((await call(h, 'PUT', '/v1/users/alice@example.com/password', { password: 'new' })).status, 200)
    assert.equal(await h.store.verifyPassword('alice@example.com', 'one'), null)
    assert.notEqual(await h.store.verifyPassword('alice@example.com', 'new'), null)
    assert.equal((await call(h, 'PUT', '/v1/users/zed@example.com/password', { password: 'x' })).status, 404)

    const q = await call(h, 'PUT', '/v1/users/alice@example.com/quota', { bytes: 500 * 1024 ** 2 })
    assert.deepEqual([q.json.user.quotaBytes, q.json.user.quotaMessages], [500 * 1024 ** 2, 500])
    assert.equal((await call(h, 'PUT', '/v1/users/alice@example.com/quota', { messages: 0 })).json.user.quotaMessages, 0)
    assert.deepEqual(await call(h, 'PUT', '/v1/users/alice@example.com/quota', {}).then(r => [r.status, r.json]), [400, { error: 'bytes or messages: one is required' }])
    assert.equal((await call(h, 'PUT', '/v1/users/zed@example.com/quota', { bytes: 1 })).status, 404)

    assert.deepEqual(await call(h, 'DELETE', '/v1/users/alice@example.com').then(r => [r.status, r.json]), [200, { deleted: 'alice@example.com' }])
    assert.equal(await h.store.getUser('alice@example.com'), null)
    assert.equal((await call(h, 'DELETE', '/v1/users/alice@example.com')).status, 404)
  })
})

test('aliases: add (catch-all too), list, delete, and their errors', async () => {
  await withAdmin(async h => {
    await call(h, 'POST', '/v1/domains', { name: 'example.com' })
    await call(h, 'POST', '/v1/users', { address: 'a@example.com', password: 'pw' })
    const added = await call(h, 'POST', '/v1/aliases', { address: 'sales@example.com', targets: ['a@example.com'] })
    assert.equal(added.status, 201)
    assert.deepEqual(added.json.alias.targets, ['a@example.com'])
    assert.equal((await call(h, 'POST', '/v1/aliases', { address: '@example.com', targets: ['a@example.com'] })).status, 201)
    assert.deepEqual(await h.store.resolveRecipient('anyone@example.com'), ['a@example.com'])

    assert.equal((await call(h, 'POST', '/v1/aliases', { address: 'a@example.com', targets: ['a@example.com'] })).status, 409)
    assert.equal((await call(h, 'POST', '/v1/aliases', { address: 'x@unknown.example', targets: ['a@example.com'] })).status, 404)
    assert.deepEqual(await call(h, 'POST', '/v1/aliases', { address: 'x@example.com', targets: 'a@example.com' }).then(r => [r.status, r.json]),
      [400, { error: 'targets: must be an array of strings' }])
    assert.equal((await call(h, 'POST', '/v1/aliases', { address: 'x@example.com', targets: [] })).status, 400)

    assert.deepEqual((await call(h, 'GET', '/v1/aliases')).json.aliases.map((a: { address: string }) => a.address).sort(), ['@example.com', 'sales@example.com'])
    assert.equal((await call(h, 'GET', '/v1/aliases?domain=example.com')).json.aliases.length, 2)
    assert.equal((await call(h, 'DELETE', '/v1/aliases/@example.com')).status, 200)
    assert.equal((await call(h, 'DELETE', '/v1/aliases/sales%40example.com')).status, 200)
    assert.equal((await call(h, 'DELETE', '/v1/aliases/sales@example.com')).status, 404)
    assert.deepEqual((await call(h, 'GET', '/v1/aliases')).json, { aliases: [] })
  })
})

test('malformed requests get JSON errors with the right status', async () => {
  await withAdmin(async h => {
    assert.deepEqual(await call(h, 'POST', '/v1/domains', '{"name":').then(r => [r.status, r.json]), [400, { error: 'Request body is not valid JSON' }])
    assert.deepEqual(await call(h, 'POST', '/v1/domains', '["x"]').then(r => [r.status, r.json]), [400, { error: 'Request body must be a JSON object' }])
    assert.equal((await call(h, 'GET', '/v2/domains')).status, 404)
    assert.equal((await call(h, 'GET', '/v1/users/a%ZZ')).status, 400)
    const wrong = await call(h, 'PATCH', '/v1/domains')
    assert.deepEqual([wrong.status, wrong.headers.get('allow')], [405, 'GET, POST'])
    const big = await call(h, 'POST', '/v1/domains', JSON.stringify({ name: 'x'.repeat(ADMIN_BODY_BYTES_MAX) }))
    assert.deepEqual([big.status, big.json], [413, { error: `Request body larger than ${ADMIN_BODY_BYTES_MAX} bytes` }])

    // A body sent in chunks without a Content-Length is counted as it arrives. The server answers 413 and
    // closes; a client still writing may see that close as a reset before it reads the answer.
    const chunked = await new Promise<number | string>(resolve => {
      const url = new URL(h.admin.url)
      const req = httpRequest({ host: url.hostname, port: url.port, method: 'POST', path: '/v1/domains', headers: { authorization: `Bearer ${TOKEN}`, 'transfer-encoding': 'chunked' } }, res => {
        res.resume()
        resolve(res.statusCode ?? 0)
      })
      req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'))
      const piece = Buffer.alloc(64 * 1024, 0x61)
      let sent = 0
      const pump = (): void => {
        while (sent <= ADMIN_BODY_BYTES_MAX) {
          sent += piece.length
          if (!req.write(piece)) { req.once('drain', pump); return }
        }
        req.end()
      }
      pump()
    })
    assert.ok(chunked === 413 || chunked === 'ECONNRESET' || chunked === 'EPIPE', String(chunked))
    assert.equal((await call(h, 'GET', '/v1/domains')).status, 200, 'the server keeps serving')
  })
})

test('an internal error is a 500 with a log id, its detail only in the log', async () => {
  await withAdmin(async h => {
    h.failStatus.on = true
    const r = await call(h, 'GET', '/v1/status')
    assert.equal(r.status, 500)
    const m = /^Internal error \[([0-9a-f]{12})\]$/.exec(r.json.error)
    assert.ok(m !== null, r.json.error)
    const line = h.logs.find(l => l.includes('admin_internal_error'))
    assert.ok(line?.includes(m[1]) === true && line.includes('secret internal detail'))
  })
})

test('queue: list, show, retry one and all, hold, release, delete, and unknown ids', async () => {
  await withAdmin(async h => {
    const list = await call(h, 'GET', '/v1/queue')
    assert.equal(list.status, 200)
    assert.deepEqual(list.json.items.map((i: { id: string }) => i.id), ['m1', 'm2'])
    assert.deepEqual(list.json.items[0], h.queue.items[0], 'every field of the item')

    assert.deepEqual((await call(h, 'GET', '/v1/queue/m1')).json, { item: h.queue.items[0] })
    assert.deepEqual(await call(h, 'GET', '/v1/queue/nope').then(r => [r.status, r.json]), [404, { error: 'No such queued message: nope' }])

    assert.deepEqual(await call(h, 'POST', '/v1/queue/m1/retry').then(r => [r.status, r.json]), [200, { retried: 1 }])
    assert.equal(h.queue.items[0].nextAttemptAt, NOW, 'due now')
    assert.deepEqual(await call(h, 'POST', '/v1/queue/m2/retry').then(r => [r.status, r.json]), [200, { retried: 0 }], 'held: left as it is, but it exists')
    assert.equal((await call(h, 'POST', '/v1/queue/nope/retry')).status, 404)
    assert.equal((await call(h, 'POST', '/v1/queue/all/retry')).status, 404, '"all" is not an id')
    assert.deepEqual((await call(h, 'POST', '/v1/queue/retry')).json, { retried: 1 })

    assert.deepEqual((await call(h, 'POST', '/v1/queue/m1/hold')).json, { held: 'm1' })
    assert.equal(h.queue.items[0].held, true)
    assert.deepEqual((await call(h, 'POST', '/v1/queue/m2/release')).json, { released: 'm2' })
    assert.equal(h.queue.items[1].held, false)
    assert.equal((await call(h, 'POST', '/v1/queue/nope/hold')).status, 404)
    assert.equal((await call(h, 'POST', '/v1/queue/nope/release')).status, 404)

    assert.deepEqual(await call(h, 'DELETE', '/v1/queue/m%31').then(r => [r.status, r.json]), [200, { deleted: 'm1' }], 'ids are percent-decoded')
    assert.equal((await call(h, 'DELETE', '/v1/queue/m1')).status, 404)
    assert.deepEqual(h.queue.items.map(i => i.id), ['m2'])

    const wrong = await call(h, 'PUT', '/v1/queue/m2')
    assert.deepEqual([wrong.status, wrong.headers.get('allow')], [405, 'GET, DELETE'])
    assert.equal((await call(h, 'GET', '/v1/queue/m2/hold')).status, 405)
    assert.deepEqual(h.queue.calls.filter(c => c !== 'list' && !c.startsWith('show')),
      ['retry m1', 'retry m2', 'retry nope', 'retry all', 'hold m1', 'release m2', 'hold nope', 'release nope', 'delete m1', 'delete m1'])
  })
})

test('queue: a queue that cannot answer is a 503 (grid unavailable) or a 500 with a log id', async () => {
  await withAdmin(async h => {
    h.queue.list = async () => { throw new MailError('unavailable', 'Node n2 does not answer') }
    assert.deepEqual(await call(h, 'GET', '/v1/queue').then(r => [r.status, r.json]), [503, { error: 'Node n2 does not answer' }])
    h.queue.show = async () => { throw new Error('queue internals') }
    const r = await call(h, 'GET', '/v1/queue/m1')
    assert.equal(r.status, 500)
    assert.match(r.json.error, /^Internal error \[[0-9a-f]{12}\]$/)
  })
})

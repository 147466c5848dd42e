// The queue commands of the CLI (`mailgrid queue ...`, the queue line of `mailgrid status`) in-process, against
// a real admin API server whose queue is an in-memory OutboundQueue: argument handling, the requests made,
// and what is printed. The queue's behaviour itself is tested end to end in test/outbound/.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Readable } from 'node:stream'
import pino from 'pino'
import { createAdminServer } from '../../appliance/admin.ts'
import { main } from '../../appliance/commands.ts'
import { ensureToken, writeAdminInfo } from '../../appliance/runtime.ts'
import type { NodeStatus } from '../../node/types.ts'
import { FakeQueue, queueItem } from '../helpers/fake-queue.ts'
import { tempDir } from '../helpers/tmp.ts'

const NOW = Date.UTC(2026, 11, 4, 12, 0, 0)
const MIN = 60_000

const ITEMS = [
  queueItem({
    id: 'gid-1', from: 'alice@example.com', domain: 'example.org', size: 2048, queuedAt: NOW - 65 * MIN, attempts: 3, nextAttemptAt: NOW + 4 * MIN,
    rcpts: [{ address: 'bob@example.org', state: 'pending', response: '451 4.7.1 Greylisted' }, { address: 'carol@example.org', state: 'sent', response: '250 2.0.0 Ok' }],
    lastError: '451 4.7.1 Greylisted,\r\n\x1b[31mtry later'
  }),
  queueItem({ id: 'gid-2', from: '', domain: 'example.net', size: 500, queuedAt: NOW - 2 * 86_400_000, held: true, rcpts: [{ address: 'x@example.net', state: 'failed' }], delayNotified: true })
]

function baseStatus (grid: boolean): NodeStatus {
  return {
    hostname: 'mx.example.com', startedAt: 1, uptimeMs: 2, services: [], connections: 0, users: 0, domains: 0,
    store: { commitGroups: 0, commitBatches: 0 }, memory: { rssBytes: 1, heapUsedBytes: 1 },
    grid: grid ? { self: 'me', ringVersion: 'v1', replicas: 2, members: [], usersOwned: 0, usersReplicated: 0, underReplicated: 0, handoffPending: 0, remirroredBytes: 0 } : null,
    queue: { local: { size: 1, oldestAgeMs: 65 * MIN }, grid: { size: 2, oldestAgeMs: 2 * 86_400_000 } }
  }
}

async function withCli (t: { after: (fn: () => Promise<void>) => void }, opts: { grid?: boolean } = {}): Promise<{ run: (args: string[]) => Promise<{ out: string, err: string, code: number }>, queue: FakeQueue }> {
  const dir = await tempDir(t)
  const queue = new FakeQueue(ITEMS, { now: () => NOW, localShards: ['q0'] })
  const admin = createAdminServer({ directory: null as never, status: async () => baseStatus(opts.grid === true), queue, logger: pino({ level: 'silent' }) },
    { host: '127.0.0.1', port: 0, token: await ensureToken(dir) })
  await admin.start()
  t.after(async () => { await admin.stop() })
  await writeAdminInfo(dir, { url: admin.url, pid: process.pid })
  return {
    queue,
    async run (args) {
      const io = { out: '', err: '' }
      const code = await main([...args, '--data', dir], {
        stdout: { write: (s: string) => { io.out += s } },
        stderr: { write: (s: string) => { io.err += s } },
        stdin: Readable.from([]),
        env: {},
        now: () => NOW
      })
      return { ...io, code }
    }
  }
}

test('queue list: a table with recipients and their states, ages, next try, held, last error on one clean line; --json', async (t) => {
  const { run } = await withCli(t)
  const r = await run(['queue', 'list'])
  assert.equal(r.code, 0, r.err)
  assert.equal(r.out, [
    'ID     FROM               DOMAIN       RECIPIENTS                                           SIZE  AGE       ATTEMPTS  NEXT      HELD  LAST ERROR',
    'gid-1  alice@example.com  example.org  bob@example.org (pending), carol@example.org (sent)  2K    1h 5m     3         in 4m 0s  no    451 4.7.1 Greylisted, ?[31mtry later',
    'gid-2  <>                 example.net  x@example.net (failed)                               500B  2d 0h 0m  0         held      yes   -',
    '2 messages',
    ''
  ].join('\n'))
  const json = await run(['queue', 'list', '--json'])
  assert.deepEqual(JSON.parse(json.out), ITEMS)
})

test('queue show, retry, hold, release, delete: the requests made and what is printed; unknown ids exit 1', async (t) => {
  const { run, queue } = await withCli(t)
  const show = await run(['queue', 'show', 'gid-1'])
  assert.equal(show.code, 0, show.err)
  assert.equal(show.out, [
    'id            gid-1',
    'shard         q0',
    'from          alice@example.com',
    'domain        example.org',
    'size          2K (2048 bytes)',
    'queued        2026-12-04T10:55:00.000Z (1h 5m ago)',
    'attempts      3',
    'next attempt  in 4m 0s',
    'held          no',
    'delay notice  not sent',
    'last error    451 4.7.1 Greylisted, ?[31mtry later',
    'recipients    bob@example.org    pending  451 4.7.1 Greylisted',
    '              carol@example.org  sent     250 2.0.0 Ok',
    ''
  ].join('\n'))
  assert.deepEqual(JSON.parse((await run(['queue', 'show', 'gid-2', '--json'])).out), ITEMS[1])

  assert.deepEqual(await run(['queue', 'retry', 'gid-1']), { out: 'gid-1 due now\n', err: '', code: 0 })
  assert.equal(queue.items[0].nextAttemptAt, NOW)
  assert.equal((await run(['queue', 'retry', 'gid-2'])).out, 'gid-2 left as it is (a held message waits for queue release)\n')
  assert.deepEqual(await run(['queue', 'retry', '--all']), { out: '1 message due now\n', err: '', code: 0 })
  assert.deepEqual(await run(['queue', 'release', 'gid-2']), { out: 'released gid-2\n', err: '', code: 0 })
  assert.deepEqual(await run(['queue', 'hold', 'gid-1']), { out: 'held gid-1\n', err: '', code: 0 })
  assert.deepEqual(await run(['queue', 'delete', 'gid-1']), { out: 'deleted gid-1\n', err: '', code: 0 })
  assert.deepEqual(queue.items.map(i => [i.id, i.held]), [['gid-2', false]])
  assert.deepEqual(JSON.parse((await run(['queue', 'retry', '--all', '--json'])).out), { retried: 1 })

  for (const args of [['show', 'nope'], ['retry', 'nope'], ['hold', 'nope'], ['release', 'nope'], ['delete', 'gid-1']]) {
    const r = await run(['queue', ...args])
    assert.deepEqual([r.code, r.out], [1, ''], args.join(' '))
    assert.match(r.err, /^mailgrid: No such queued message: (nope|gid-1)\n$/)
  }
  assert.deepEqual(queue.calls.filter(c => !c.startsWith('show') && c !== 'list'),
    ['retry gid-1', 'retry gid-2', 'retry all', 'release gid-2', 'hold gid-1', 'delete gid-1', 'retry all', 'retry nope', 'hold nope', 'release nope', 'delete gid-1'])
})

test('queue: usage errors exit 2 and make no request', async (t) => {
  const { run, queue } = await withCli(t)
  for (const args of [['queue'], ['queue', 'flush'], ['queue', 'show'], ['queue', 'retry'], ['queue', 'retry', 'gid-1', '--all'],
    ['queue', 'delete'], ['queue', 'hold', 'a', 'b'], ['queue', 'list', 'x'], ['queue', 'hold', 'gid-1', '--all'], ['queue', 'list', '--password', 'p']]) {
    const r = await run(args)
    assert.equal(r.code, 2, args.join(' '))
    assert.match(r.err, /^mailgrid: .+\nUsage: mailgrid .*queue/, args.join(' '))
  }
  assert.deepEqual(queue.calls, [])
  assert.match((await run(['--help'])).out, /queue retry ID\|--all/)
})

test('status: the queue\'s size and oldest age, for this node and the grid', async (t) => {
  const standalone = await withCli(t)
  const a = await standalone.run(['status'])
  assert.equal(a.code, 0, a.err)
  assert.match(a.out, /\nqueue        1 message, oldest 1h 5m\n/)
  const grid = await withCli(t, { grid: true })
  const b = await grid.run(['status'])
  assert.match(b.out, /\nqueue        this node: 1 message, oldest 1h 5m; grid: 2 messages, oldest 2d 0h 0m\n/)
})

// The admin routes of import/export/backup (appliance/mail-routes.ts) with a large message (uploaded in chunks) and
// with hostile requests: each gets a clear 4xx, the node goes on.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { tempDir } from '../helpers/tmp.ts'
import { cli, startAdminNode, TOKEN } from './helpers.ts'

const USER = 'ann@example.com'

test('a 1.5 MB message is uploaded in chunks and stored byte for byte', async t => {
  const n = await startAdminNode(t)
  await n.node.store.addDomain('example.com')
  await n.node.store.addUser({ address: USER, password: 'pw' })
  const dir = await tempDir(t)
  for (const s of ['cur', 'new', 'tmp']) await mkdir(join(dir, 'md', s), { recursive: true })
  const raw = Buffer.concat([Buffer.from('Subject: big\r\n\r\n'), Buffer.from(('z'.repeat(998) + '\r\n').repeat(1500))])
  await writeFile(join(dir, 'md', 'cur', '1600000000.M1P1.host,S=1:2,S'), raw)
  const r = await cli(n.url, ['import', 'maildir', join(dir, 'md'), '--to', USER])
  assert.equal(r.code, 0, r.err)
  const box = await n.node.store.getMailbox(USER, 'INBOX')
  const [rec] = await n.node.store.listMessages(USER, box!.id)
  assert.ok((await n.node.store.readMessage(rec)).equals(raw))
  assert.deepEqual(rec.flags, ['\\Seen'])
})

test('hostile requests get a 4xx and change nothing', async t => {
  const n = await startAdminNode(t)
  await n.node.store.addDomain('example.com')
  await n.node.store.addUser({ address: USER, password: 'pw' })
  const call = async (method: string, path: string, body?: unknown): Promise<{ status: number, json: any }> => {
    const res = await fetch(n.url + path, { method, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) })
    return { status: res.status, json: await res.json() }
  }
  const u = encodeURIComponent(USER)
  const hash = createHash('sha256').update('hello').digest('hex')
  const cases: Array<[string, string, unknown, number]> = [
    ['POST', `/v1/mail/${u}/append`, { mailbox: 'INBOX', flags: [], internalDate: 0, gid: 'x', data: '!!not base64!!' }, 400],
    ['POST', `/v1/mail/${u}/append`, { mailbox: 'INBOX', flags: 'no', internalDate: 0, gid: 'x', data: '' }, 400],
    ['POST', `/v1/mail/${u}/append`, { mailbox: 'INBOX', flags: [], internalDate: -5, gid: 'x', data: '' }, 400],
    ['POST', `/v1/mail/${u}/append`, { mailbox: 'INBOX', flags: [], internalDate: 0, gid: 'x', upload: hash }, 404],
    ['POST', `/v1/mail/${u}/append`, { mailbox: 'Nope', flags: [], internalDate: 0, gid: 'x', data: 'aGk=' }, 404],
    ['POST', `/v1/mail/${u}/append`, { mailbox: 'INBOX', flags: ['bad flag('], internalDate: 0, gid: 'x', data: 'aGk=' }, 400],
    ['POST', `/v1/mail/nobody%40example.com/append`, { mailbox: 'INBOX', flags: [], internalDate: 0, gid: 'x', data: 'aGk=' }, 404],
    ['POST', `/v1/mail/not-an-address/mailboxes`, { name: 'X' }, 400],
    ['GET', `/v1/mail/${u}/messages`, undefined, 400],
    ['GET', `/v1/mail/${u}/log?from=1`, undefined, 400],
    ['GET', `/v1/mail/${u}/blobs/${hash}`, undefined, 503], // a body this node does not hold: 'temp'
    ['POST', `/v1/mail/${u}/log`, { entries: [{ seq: 'x' }] }, 400],
    ['POST', `/v1/mail/${u}/log`, { entries: [{ seq: 99, op: 'append', blob: 'zz' }] }, 400],
    ['POST', `/v1/mail/${u}/log`, { entries: [{ seq: 99, op: 'subscribe', name: 'X', subscribed: true }] }, 400], // a gap
    ['POST', `/v1/uploads/${hash}`, { offset: 5, data: 'aGk=' }, 409],
    ['POST', `/v1/uploads/${hash}`, { offset: 0, data: '%%%' }, 400],
    ['POST', `/v1/uploads/${hash}`, { offset: 64 * 1024 * 1024, data: 'aGk=' }, 413],
    ['POST', '/v1/directory/records', { records: [{ key: 'du\x00x@example.com' }] }, 400]
  ]
  for (const [method, path, body, status] of cases) {
    const r = await call(method, path, body)
    assert.equal(r.status, status, `${method} ${path} ${JSON.stringify(body)}: ${JSON.stringify(r.json)}`)
    assert.equal(typeof r.json.error, 'string')
  }
  // an upload whose bytes do not match its name is refused when used
  assert.equal((await call('POST', `/v1/uploads/${hash}`, { offset: 0, data: Buffer.from('not hello').toString('base64') })).status, 200)
  const used = await call('POST', `/v1/mail/${u}/append`, { mailbox: 'INBOX', flags: [], internalDate: 0, gid: 'x', upload: hash })
  assert.equal(used.status, 400)
  assert.match(used.json.error, /does not match its hash/)
  const box = await n.node.store.getMailbox(USER, 'INBOX')
  assert.equal(box?.messages, 0)
  assert.equal((await call('GET', `/v1/mail/${u}/log/position`)).json.seq, await n.node.store.logPosition(USER))
})

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { createLogger, namespaced, REDACTED } from '../../appliance/logger.ts'

function capture (): { lines: () => Array<Record<string, any>>, stream: Writable } {
  const chunks: string[] = []
  const stream = new Writable({ write (chunk, _enc, cb) { chunks.push(String(chunk)); cb() } })
  return { stream, lines: () => chunks.join('').trim().split('\n').map(l => JSON.parse(l)) }
}

test('credentials are censored at the top level and nested', () => {
  const c = capture()
  const log = createLogger({ level: 'info', destination: c.stream })
  log.info({ user: 'a@example.com', password: 'p1', pass: 'p2', token: 't1', authorization: 'Bearer t2' }, 'top')
  log.info({ cmd: { password: 'p3', pass: 'p4' }, req: { headers: { authorization: 'Bearer t3' } }, session: { auth: { token: 't4' } }, grid: { clusterKey: 'k1' } }, 'nested')
  const text = JSON.stringify(c.lines())
  for (const secret of ['p1', 'p2', 'p3', 'p4', 't1', 't2', 't3', 't4', 'k1']) assert.ok(!text.includes(`"${secret}"`) && !text.includes(`Bearer ${secret}`), secret)
  const [top, nested] = c.lines()
  assert.deepEqual([top.user, top.password, top.pass, top.token, top.authorization], ['a@example.com', REDACTED, REDACTED, REDACTED, REDACTED])
  assert.equal(nested.cmd.password, REDACTED)
  assert.equal(nested.req.headers.authorization, REDACTED)
  assert.equal(nested.session.auth.token, REDACTED)
  assert.equal(nested.grid.clusterKey, REDACTED)
})

test('namespaced children carry their namespace and respect the level', () => {
  const c = capture()
  const root = createLogger({ level: 'warn', destination: c.stream })
  const smtp = namespaced(root, 'smtp')
  smtp.info('dropped')
  smtp.warn({ session: 's1', event: 'auth_throttled' }, 'kept')
  const lines = c.lines()
  assert.equal(lines.length, 1)
  assert.deepEqual([lines[0].ns, lines[0].session, lines[0].event, lines[0].msg], ['smtp', 's1', 'auth_throttled', 'kept'])
})

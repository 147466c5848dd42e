// The inbound checker's edges, without a node: a resolver that never answers (a DNS server that swallows
// queries, and an injected one that hangs), a resolver that answers garbage, hostile headers, and mail from
// an authenticated session. Every case ends in bounded time with an accept and temperror results (fail open).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import { createInboundChecker } from '../../node/mailauth/index.ts'
import { quiet } from './helpers.ts'

const MSG = Buffer.from('From: alice@origin.test\r\nTo: bob@example.com\r\nSubject: hi\r\n\r\nhello\r\n')
const CTX = { ip: '192.0.2.1', helo: 'mail.origin.test', mailFrom: 'alice@origin.test' }

test('a DNS server that swallows every query: temperror within the check\'s bound, accepted', async (t) => {
  const sink = createSocket('udp4') // receives queries and never answers
  let queries = 0
  sink.on('message', () => { queries++ })
  await new Promise<void>(resolve => sink.bind(0, '127.0.0.1', () => resolve()))
  t.after(() => { sink.close() })
  const checker = createInboundChecker({ logger: quiet }, { hostname: 'mx.test', dmarcReject: true, dnsServers: [`127.0.0.1:${sink.address().port}`], timeoutMs: 500 })
  const started = Date.now()
  const r = await checker.check(MSG, CTX)
  const ms = Date.now() - started
  assert.ok(ms < 3000, `bounded: ${ms} ms`)
  assert.ok(queries > 0, 'the configured server was asked')
  assert.equal(r.action, 'accept')
  assert.match(r.headers, /^Authentication-Results: mx\.test; spf=temperror .*dmarc=temperror/)
  assert.match(r.headers, /\r\n$/)
})

test('an injected resolver that hangs, one that answers garbage, one that throws odd errors', async () => {
  const hang = createInboundChecker({ logger: quiet, resolver: async () => await new Promise(() => {}) }, { hostname: 'mx.test', dmarcReject: true, dnsServers: [], timeoutMs: 300 })
  assert.equal((await hang.check(MSG, CTX)).action, 'accept')
  const garbage = createInboundChecker({ logger: quiet, resolver: async () => ({ not: 'an array' }) }, { hostname: 'mx.test', dmarcReject: true, dnsServers: [], timeoutMs: 2000 })
  const g = await garbage.check(MSG, CTX)
  assert.equal(g.action, 'accept')
  assert.match(g.headers, /^Authentication-Results: mx\.test;/)
  const odd = createInboundChecker({ logger: quiet, resolver: async () => { throw Object.assign(new Error('server failure'), { code: 'ESERVFAIL' }) } }, { hostname: 'mx.test', dmarcReject: true, dnsServers: [], timeoutMs: 2000 })
  const o = await odd.check(MSG, CTX)
  assert.equal(o.action, 'accept')
  assert.equal(o.results.spf, 'temperror')
})

test('hostile input: no From, two From fields, a huge header, binary junk: an answer each, never a throw', async () => {
  const nx = async (): Promise<never> => { throw Object.assign(new Error('nx'), { code: 'ENOTFOUND' }) }
  const checker = createInboundChecker({ logger: quiet, resolver: nx }, { hostname: 'mx.test', dmarcReject: true, dnsServers: [], timeoutMs: 5000 })
  const inputs = [
    Buffer.from('Subject: no from\r\n\r\nbody\r\n'),
    Buffer.from('From: a@one.test\r\nFrom: b@two.test\r\n\r\nbody\r\n'),
    Buffer.concat([Buffer.from('From: a@one.test\r\nX-Big: '), Buffer.alloc(2 * 1024 * 1024, 'x'), Buffer.from('\r\n\r\nbody\r\n')]),
    Buffer.from([0, 255, 10, 13, 58, 0, 1, 2, 3]),
    Buffer.alloc(0)
  ]
  for (const m of inputs) {
    const r = await checker.check(m, { ...CTX, mailFrom: '' })
    assert.equal(r.action, 'accept')
    assert.match(r.headers, /^Authentication-Results: mx\.test;/)
  }
})

test('mail from an authenticated session is noted, not checked', async () => {
  const checker = createInboundChecker({ logger: quiet, resolver: async () => { throw new Error('must not be asked') } }, { hostname: 'mx.test', dmarcReject: true, dnsServers: [] })
  const r = await checker.check(MSG, { ...CTX, sender: 'alice@example.com' })
  assert.equal(r.headers, 'Authentication-Results: mx.test; auth=pass smtp.auth=alice@example.com\r\n')
  assert.equal(r.action, 'accept')
})

test('withoutOwnAuthResults: folded fields, comments, case; nothing to remove gives null; the body is never touched', async () => {
  const { withoutOwnAuthResults } = await import('../../node/mailauth/headers.ts')
  const m = Buffer.from('Authentication-Results: mx.test;\r\n spf=pass\r\nSubject: s\r\nauthentication-results:(c) Mx.Test; dkim=pass\r\nAuthentication-Results: other.test; dkim=pass\r\n\r\nAuthentication-Results: mx.test; body line\r\n')
  assert.equal(withoutOwnAuthResults(m, ['mx.test'])?.toString(), 'Subject: s\r\nAuthentication-Results: other.test; dkim=pass\r\n\r\nAuthentication-Results: mx.test; body line\r\n')
  assert.equal(withoutOwnAuthResults(m, ['nope.test']), null)
  assert.equal(withoutOwnAuthResults(Buffer.from('Subject: s\n\nbody\n'), ['mx.test']), null)
  assert.equal(withoutOwnAuthResults(Buffer.from('Authentication-Results: mx.test; x'), ['mx.test'])?.toString(), '', 'a message that is only the field')
})

test('an IPv4 client on an IPv6 socket is checked as IPv4', async () => {
  const resolver = async (name: string, rrtype: string): Promise<string[][]> => {
    if (rrtype === 'TXT' && name === 'origin.test') return [['v=spf1 ip4:192.0.2.1 -all']]
    throw Object.assign(new Error('nx'), { code: 'ENOTFOUND' })
  }
  const checker = createInboundChecker({ logger: quiet, resolver }, { hostname: 'mx.test', dmarcReject: true, dnsServers: [] })
  assert.equal((await checker.check(MSG, { ...CTX, ip: '::ffff:192.0.2.1' })).results.spf, 'pass')
  assert.equal((await checker.check(MSG, { ...CTX, ip: '::ffff:192.0.2.9' })).results.spf, 'fail')
})

test('an aborted check ends at once with the abort reason', async () => {
  const checker = createInboundChecker({ logger: quiet, resolver: async () => await new Promise(() => {}) }, { hostname: 'mx.test', dmarcReject: true, dnsServers: [], timeoutMs: 10_000 })
  const ac = new AbortController()
  const started = Date.now()
  setTimeout(() => ac.abort(new Error('session closed')), 50)
  await assert.rejects(checker.check(MSG, { ...CTX, signal: ac.signal }), /session closed/)
  assert.ok(Date.now() - started < 2000)
})

// The inbound checks' DNS answer cache (node/mailauth/dns-cache.ts) against real DNS servers: a private dnsmasq
// publishing a sender's SPF and DMARC records, a UDP socket that swallows queries (time-outs) and one that answers
// every query SERVFAIL. Queries are counted twice: by a counting wrapper around the real node:dns resolver, and at
// dnsmasq's query log. The clock is injected for expiry.

import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import type { Socket } from 'node:dgram'
import { Resolver } from 'node:dns/promises'
import { createDnsCache, createInboundChecker } from '../../node/mailauth/index.ts'
import { isDnsmasqInstalled, startDns } from '../helpers/dns.ts'
import type { DnsServer } from '../helpers/dns.ts'
import { quiet } from './helpers.ts'

const missing = isDnsmasqInstalled() ? false : 'dnsmasq is needed (apt-get install dnsmasq-base)'
const SENDER_IP = '192.0.2.1'

let dns: DnsServer

before(async () => {
  if (missing !== false) return
  dns = await startDns({
    records: {
      txt: [
        { name: 'origin.test', text: `v=spf1 include:_spf.origin.test -all` },
        { name: '_spf.origin.test', text: `v=spf1 ip4:${SENDER_IP} -all` },
        { name: '_dmarc.origin.test', text: 'v=DMARC1; p=reject' },
        { name: 'big.test', text: 'x'.repeat(900) },
        ...[1, 2, 3, 4, 5].map(i => ({ name: `n${i}.test`, text: `v=spf1 -all ${i}` }))
      ],
      address: [{ name: 'host.origin.test', address: '192.0.2.9' }]
    }
  })
})

after(async () => { await dns?.stop() })

/** A real node:dns resolver on `server` with every query counted (by name and type). */
function counting (server: string, gate?: Promise<void>): { resolve: (name: string, rrtype: string) => Promise<unknown>, asked: string[] } {
  const r = new Resolver({ timeout: 300, tries: 1 })
  r.setServers([server])
  const asked: string[] = []
  return {
    asked,
    resolve: async (name, rrtype) => {
      asked.push(`${rrtype} ${name}`)
      const answer = r.resolve(name, rrtype)
      if (gate !== undefined) await gate
      return await answer
    }
  }
}

/** How many queries dnsmasq logged for `name`. */
async function logged (name: string): Promise<number> {
  return (await dns.log()).split('\n').filter(l => new RegExp(`query\\[\\w+\\] ${name.replace(/\./g, '\\.')} from`).test(l)).length
}

const codeOf = async (p: Promise<unknown>): Promise<string> => await p.then(() => 'answer', (err: { code?: string }) => err.code ?? 'none')

/** A UDP DNS server that answers every query with `rcode` (2 = SERVFAIL), or never answers (null). */
async function udpServer (t: { after: (fn: () => void) => void }, rcode: number | null): Promise<{ server: string, queries: () => number }> {
  const s: Socket = createSocket('udp4')
  let n = 0
  s.on('message', (q, from) => {
    n++
    if (rcode === null || q.length < 12) return
    const a = Buffer.from(q) // the question echoed: same id and question section, QR set, RD/RA, the rcode
    a.writeUInt16BE(0x8180 | rcode, 2)
    a.writeUInt16BE(0, 6); a.writeUInt16BE(0, 8); a.writeUInt16BE(0, 10)
    s.send(a, from.port, from.address)
  })
  await new Promise<void>(resolve => s.bind(0, '127.0.0.1', () => resolve()))
  t.after(() => { s.close() })
  return { server: `127.0.0.1:${s.address().port}`, queries: () => n }
}

const MSG = Buffer.from('From: Alice <alice@origin.test>\r\nTo: bob@example.com\r\nSubject: hi\r\nMessage-ID: <1@origin.test>\r\n\r\nhello\r\n')
const CTX = { ip: SENDER_IP, helo: 'host.origin.test', mailFrom: 'alice@origin.test' }

test('a second message from the same sender makes no new DNS query; the results are the same', { skip: missing }, async () => {
  const real = counting(dns.server)
  const checker = createInboundChecker({ logger: quiet, resolver: real.resolve }, { hostname: 'mx.test', dmarcReject: true, dnsServers: [] })
  const first = await checker.check(MSG, CTX)
  assert.equal(first.results.spf, 'pass')
  assert.equal(first.results.dmarc, 'pass') // no DKIM signature; SPF passes for an aligned domain
  const asked = real.asked.length
  assert.ok(asked >= 3, `the first check asked: ${real.asked.join(', ')}`)
  const spfLogged = await logged('_spf.origin.test')
  const second = await checker.check(MSG, { ...CTX })
  assert.deepEqual(second.results, first.results)
  assert.equal(real.asked.length, asked, 'no new query through the resolver')
  assert.equal(await logged('_spf.origin.test'), spfLogged, 'none at the DNS server either')
  assert.ok(checker.dns.stats().hits >= asked)
})

test('NXDOMAIN and NODATA are kept (for the shorter lifetime); answers for the longer one', { skip: missing }, async () => {
  let t = 1_000_000
  const real = counting(dns.server)
  const cache = createDnsCache({ resolve: real.resolve, now: () => t }, { answerTtlMs: 60_000, negativeTtlMs: 15_000 })
  assert.equal(await codeOf(cache.resolve('nowhere.test', 'TXT')), 'ENOTFOUND')
  assert.equal(await codeOf(cache.resolve('host.origin.test', 'TXT')), 'ENODATA')
  assert.deepEqual(await cache.resolve('n1.test', 'TXT'), [['v=spf1 -all 1']])
  assert.equal(real.asked.length, 3)
  t += 14_000
  assert.equal(await codeOf(cache.resolve('NOWHERE.test', 'TXT')), 'ENOTFOUND', 'names compare without case')
  assert.equal(await codeOf(cache.resolve('host.origin.test', 'TXT')), 'ENODATA')
  assert.deepEqual(await cache.resolve('n1.test', 'TXT'), [['v=spf1 -all 1']])
  assert.equal(real.asked.length, 3, 'all three from memory')
  assert.equal(await logged('nowhere.test'), 1)
  t += 2_000 // 16 s: the negative answers expired, the positive one not
  assert.equal(await codeOf(cache.resolve('nowhere.test', 'TXT')), 'ENOTFOUND')
  assert.equal(await codeOf(cache.resolve('host.origin.test', 'TXT')), 'ENODATA')
  assert.deepEqual(await cache.resolve('n1.test', 'TXT'), [['v=spf1 -all 1']])
  assert.equal(real.asked.length, 5)
  t += 45_000 // 61 s
  assert.deepEqual(await cache.resolve('n1.test', 'TXT'), [['v=spf1 -all 1']])
  assert.equal(real.asked.length, 6, 'the answer expired')
  assert.equal(await logged('n1.test'), 2)
})

test('REFUSED, SERVFAIL and time-outs are never kept: the next query asks again', { skip: missing }, async (t) => {
  // dnsmasq refuses names outside its local domains
  const real = counting(dns.server)
  const cache = createDnsCache({ resolve: real.resolve })
  assert.equal(await codeOf(cache.resolve('elsewhere.example', 'TXT')), 'EREFUSED')
  assert.equal(await codeOf(cache.resolve('elsewhere.example', 'TXT')), 'EREFUSED')
  assert.equal(real.asked.length, 2)

  const servfail = await udpServer(t, 2)
  const sf = counting(servfail.server)
  const c2 = createDnsCache({ resolve: sf.resolve })
  assert.equal(await codeOf(c2.resolve('origin.test', 'TXT')), 'ESERVFAIL')
  assert.equal(await codeOf(c2.resolve('origin.test', 'TXT')), 'ESERVFAIL')
  assert.equal(servfail.queries(), 2, 'both reached the server')
  assert.equal(c2.stats().entries, 0)

  const sink = await udpServer(t, null)
  const to = counting(sink.server)
  const c3 = createDnsCache({ resolve: to.resolve })
  assert.equal(await codeOf(c3.resolve('origin.test', 'TXT')), 'ETIMEOUT')
  assert.equal(await codeOf(c3.resolve('origin.test', 'TXT')), 'ETIMEOUT')
  assert.equal(sink.queries(), 2, 'both reached the server')
  assert.equal(c3.stats().entries, 0)

  // a whole check against the silent server times out, fails open, and leaves nothing behind
  const checker = createInboundChecker({ logger: quiet }, { hostname: 'mx.test', dmarcReject: true, dnsServers: [sink.server], timeoutMs: 400 })
  const r = await checker.check(MSG, CTX)
  assert.equal(r.action, 'accept')
  assert.equal(r.results.spf, 'temperror')
  assert.equal(checker.dns.stats().entries, 0)
})

test('concurrent identical queries are one; a cancelled check does not poison the cache', { skip: missing }, async () => {
  let open = (): void => {}
  const gate = new Promise<void>(resolve => { open = resolve })
  const real = counting(dns.server, gate)
  const cache = createDnsCache({ resolve: real.resolve })
  const a = cache.session()
  const b = cache.session()
  const pa = a.resolve('n2.test', 'TXT')
  const pb = b.resolve('n2.test', 'TXT')
  const pc = cache.resolve('n2.test', 'TXT')
  a.end() // the check that asked first ended (aborted, timed out): its wait ends, the query goes on
  assert.equal(await codeOf(pa), 'ECANCELLED')
  assert.equal(await codeOf(a.resolve('n2.test', 'TXT')), 'ECANCELLED', 'an ended check asks nothing more')
  open()
  assert.deepEqual(await pb, [['v=spf1 -all 2']])
  assert.deepEqual(await pc, [['v=spf1 -all 2']])
  assert.equal(real.asked.length, 1, 'one query for three callers')
  assert.deepEqual(await cache.resolve('n2.test', 'TXT'), [['v=spf1 -all 2']])
  assert.equal(real.asked.length, 1, 'the answer was kept')
  assert.equal(await logged('n2.test'), 1)

  // an aborted check, then the next one from the same sender: correct results, the aborted one's answers kept
  let open2 = (): void => {}
  const gate2 = new Promise<void>(resolve => { open2 = resolve })
  const real2 = counting(dns.server, gate2)
  const checker = createInboundChecker({ logger: quiet, resolver: real2.resolve }, { hostname: 'mx.test', dmarcReject: true, dnsServers: [] })
  const ac = new AbortController()
  const aborted = checker.check(MSG, { ...CTX, signal: ac.signal })
  for (let i = 0; i < 1000 && real2.asked.length === 0; i++) await new Promise(resolve => setTimeout(resolve, 5))
  assert.ok(real2.asked.length > 0, 'the check is waiting for DNS')
  ac.abort(new Error('session closed'))
  await assert.rejects(aborted, /session closed/)
  const waitedFor = [...real2.asked]
  open2()
  const r = await checker.check(MSG, CTX)
  assert.equal(r.results.spf, 'pass')
  assert.equal(r.results.dmarc, 'pass')
  for (const q of waitedFor) assert.equal(real2.asked.filter(x => x === q).length, 1, `${q}: the aborted check's answer was kept, asked once`)
  await assert.rejects(checker.check(MSG, { ...CTX, signal: AbortSignal.abort(new Error('closed before')) }), /closed before/)
})

test('the bound holds: least recently used out first, by entries and by bytes', { skip: missing }, async () => {
  const real = counting(dns.server)
  const cache = createDnsCache({ resolve: real.resolve }, { entriesMax: 3, bytesMax: 4096 })
  for (const i of [1, 2, 3]) await cache.resolve(`n${i}.test`, 'TXT')
  await cache.resolve('n1.test', 'TXT') // n1 used last: n2 is now the oldest
  assert.equal(real.asked.length, 3)
  await cache.resolve('n4.test', 'TXT')
  await cache.resolve('n5.test', 'TXT')
  assert.equal(cache.stats().entries, 3)
  const before = real.asked.length
  await cache.resolve('n1.test', 'TXT')
  await cache.resolve('n5.test', 'TXT')
  assert.equal(real.asked.length, before, 'n1 and n5 kept')
  await cache.resolve('n2.test', 'TXT')
  assert.equal(real.asked.length, before + 1, 'n2 was dropped')
  assert.ok(cache.stats().entries <= 3)
  // an answer over a tenth of the byte bound is passed through, never kept
  assert.equal(((await cache.resolve('big.test', 'TXT')) as string[][])[0].join('').length, 900)
  await cache.resolve('big.test', 'TXT')
  assert.equal(real.asked.filter(q => q === 'TXT big.test').length, 2)
  assert.ok(cache.stats().bytes <= 4096)

  // a flood of distinct names from the network (every HELO different): the cache stays at its bound
  const flood = createDnsCache({ resolve: real.resolve }, { entriesMax: 50 })
  for (let i = 0; i < 200; i++) await codeOf(flood.resolve(`h${i}.nowhere.test`, 'TXT'))
  assert.equal(flood.stats().entries, 50)
})

test('a caller that edits its answer does not change what is kept', { skip: missing }, async () => {
  const cache = createDnsCache({ resolve: counting(dns.server).resolve })
  const a = await cache.resolve('n3.test', 'TXT') as string[][]
  a[0][0] = 'changed'
  a.push(['more'])
  assert.deepEqual(await cache.resolve('n3.test', 'TXT'), [['v=spf1 -all 3']])
})

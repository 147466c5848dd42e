// Outbound delivery against real parts: a private Postfix as the receiving MTA, a private dnsmasq serving the
// test domains, an HTTPS server with a throwaway CA for MTA-STS, smtp-server as a smarthost, and small
// node:net servers for the remotes that misbehave (silent, endless line, dropping the connection in DATA).
// Every remote and DNS server is on 127.0.0.0/8; every wait is bounded.

import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import type { Socket as UdpSocket } from 'node:dgram'
import { createServer as createHttpsServer } from 'node:https'
import type { Server as HttpsServer } from 'node:https'
import { createServer } from 'node:net'
import type { Server, Socket } from 'node:net'
import { Writable } from 'node:stream'
import { after, before, describe, test } from 'node:test'
import { pino } from 'pino'
import { SMTPServer } from 'smtp-server'
import { createDeliverer } from '../../node/outbound/deliver.ts'
import type { DelivererInit } from '../../node/outbound/deliver.ts'
import { createMxResolver } from '../../node/outbound/mx.ts'
import { mxMatches, parsePolicy, recordId } from '../../node/outbound/mta-sts.ts'
import type { Deliverer, Envelope, RcptOutcome } from '../../node/outbound/types.ts'
import { createTestCa } from '../helpers/ca.ts'
import type { TestCa } from '../helpers/ca.ts'
import { isDnsmasqInstalled, startDns } from '../helpers/dns.ts'
import type { DnsRecords, DnsServer } from '../helpers/dns.ts'
import { isPostfixInstalled, startPostfix } from '../helpers/postfix.ts'
import type { PostfixServer } from '../helpers/postfix.ts'

const skip = !isPostfixInstalled() || !isDnsmasqInstalled() ? 'needs Debian postfix and dnsmasq-base' : false

const PF = '127.0.0.2' // the receiving Postfix
const NOBODY = '127.0.0.3' // an MX address where nothing listens
const STS_HTTPS = '127.0.0.7' // mta-sts.* policy server
const ODD = '127.0.0.5' // the misbehaving remotes
const FAST: DelivererInit['timeouts'] = { connectMs: 1000, greetingMs: 700, setupMs: 2000, commandMs: 1000, transactionMs: 3000 }
const BOUNDED_MS = 6000 // what "bounded time" means for the misbehaving remotes and DNS servers below

function message (subject: string, extra = ''): Buffer {
  return Buffer.from(`From: <alice@origin.test>\r\nTo: <someone@remote.test>\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@origin.test>\r\n${extra}\r\nHello.\r\n`)
}

function envelope (...rcpts: string[]): Envelope {
  return { from: 'alice@origin.test', rcpts: rcpts.map(address => ({ address })) }
}

function byRcpt (outcomes: RcptOutcome[]): Record<string, RcptOutcome> {
  return Object.fromEntries(outcomes.map(o => [o.rcpt, o]))
}

/** A logger whose lines the test reads back. */
function captureLogger (): { logger: pino.Logger, lines: string[] } {
  const lines: string[] = []
  const stream = new Writable({ write (chunk: Buffer, _enc, cb) { lines.push(...chunk.toString().split('\n').filter(l => l !== '')); cb() } })
  return { logger: pino({ level: 'info' }, stream), lines }
}

async function listen (server: Server | HttpsServer, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, host, () => resolve()) })
  return (server.address() as { port: number }).port
}

async function closeServer (server: Server | HttpsServer, sockets: Set<Socket>): Promise<void> {
  for (const s of sockets) s.destroy()
  await new Promise<void>(resolve => server.close(() => resolve()))
}

describe('outbound delivery', { skip, timeout: 240_000 }, () => {
  let ca: TestCa
  let pf: PostfixServer
  let dns: DnsServer
  let https: HttpsServer
  let httpsPort = 0
  const deliverers: Deliverer[] = []
  const fetches: string[] = [] // Host headers of policy requests
  const policies: Record<string, string> = {
    'mta-sts.nomatch.test': 'version: STSv1\nmode: enforce\nmx: mx.allowed.test\nmax_age: 86400\n',
    'mta-sts.sts.test': 'version: STSv1\r\nmode: enforce\r\nmx: *.sts.test\r\nmax_age: 86400\r\n',
    'mta-sts.badcert.test': 'version: STSv1\nmode: enforce\nmx: mx.badcert.test\nmax_age: 86400\n',
    'mta-sts.testing.test': 'version: STSv1\nmode: testing\nmx: mx.allowed.test\nmax_age: 86400\n'
  }

  const records = (): DnsRecords => ({
    mx: [
      { name: 'remote.test', host: 'mx.remote.test', preference: 10 },
      // preference order: the best MX refuses connections, the next one is Postfix
      { name: 'fallback.test', host: 'down.fallback.test', preference: 5 },
      { name: 'fallback.test', host: 'mx.remote.test', preference: 20 },
      { name: 'nomatch.test', host: 'mx.remote.test', preference: 10 },
      { name: 'sts.test', host: 'mx.sts.test', preference: 10 },
      { name: 'badcert.test', host: 'mx.badcert.test', preference: 10 },
      { name: 'testing.test', host: 'mx.remote.test', preference: 10 },
      { name: 'order.test', host: 'c.order.test', preference: 30 },
      { name: 'order.test', host: 'a.order.test', preference: 10 },
      { name: 'order.test', host: 'b1.order.test', preference: 20 },
      { name: 'order.test', host: 'b2.order.test', preference: 20 },
      { name: 'partial.test', host: 'mx.remote.test', preference: 10 },
      { name: 'partial.test', host: 'mx2.remote.test', preference: 20 }
    ],
    address: [
      { name: 'mx.remote.test', address: PF },
      { name: 'mx2.remote.test', address: PF },
      { name: 'down.fallback.test', address: NOBODY },
      { name: 'plain.test', address: PF }, // no MX: the A record is the implicit MX
      { name: 'mx.sts.test', address: PF },
      { name: 'mx.badcert.test', address: PF },
      { name: 'a.order.test', address: '127.0.0.11' },
      { name: 'b1.order.test', address: '127.0.0.12' },
      { name: 'b2.order.test', address: '127.0.0.13' },
      { name: 'c.order.test', address: '127.0.0.14' },
      { name: 'c.order.test', address: '::1' },
      { name: 'self.test', address: '127.0.0.1' },
      { name: 'odd.test', address: ODD },
      ...Object.keys(policies).map(name => ({ name, address: STS_HTTPS }))
    ],
    txt: [
      { name: '_mta-sts.nomatch.test', text: 'v=STSv1; id=20261204' },
      { name: '_mta-sts.sts.test', text: 'v=STSv1; id=1' },
      { name: '_mta-sts.badcert.test', text: 'v=STSv1; id=1' },
      { name: '_mta-sts.testing.test', text: 'v=STSv1; id=1' }
    ],
    nullMx: ['nullmx.test']
  })

  before(async () => {
    ca = await createTestCa()
    // Postfix's certificate is valid for the names enforced delivery checks, except mx.badcert.test.
    pf = await startPostfix({
      host: PF,
      hostname: 'mx.remote.test',
      domains: ['remote.test', 'fallback.test', 'plain.test', 'nomatch.test', 'sts.test', 'badcert.test', 'testing.test', 'partial.test'],
      tls: await ca.issue(['mx.remote.test', 'mx.sts.test']),
      replies: {
        'later@remote.test': '450 4.2.0 try later',
        'nobody@remote.test': '550 5.1.1 no such user here',
        'later@partial.test': '450 4.2.0 come back'
      }
    })
    dns = await startDns({ records: records() })
    const names = Object.keys(policies)
    const leaf = await ca.issue(names)
    https = createHttpsServer({ key: leaf.key, cert: leaf.cert }, (req, res) => {
      fetches.push(String(req.headers.host))
      const body = policies[String(req.headers.host ?? '').replace(/:\d+$/, '')]
      if (req.url !== '/.well-known/mta-sts.txt' || body === undefined) { res.writeHead(404).end(); return }
      res.writeHead(200, { 'content-type': 'text/plain' }).end(body)
    })
    httpsPort = await listen(https, STS_HTTPS)
  })

  after(async () => {
    await closeDeliverers()
    await new Promise<void>(resolve => https?.close(() => resolve()))
    await dns?.stop()
    await pf?.stop()
  })

  /** Closes every deliverer made so far (each test is done with its own before it stops its servers). */
  const closeDeliverers = async (): Promise<void> => { for (const d of deliverers.splice(0)) await d.close() }

  const deliverer = (over: Partial<DelivererInit> = {}, logger = pino({ level: 'silent' })): Deliverer => {
    const d = createDeliverer({ logger }, {
      hostname: 'mailgrid.origin.test',
      port: pf.port,
      relay: '',
      dnsServers: [dns.server],
      dnsTimeoutMs: 300,
      dnsTries: 1,
      localAddresses: [],
      tls: { ca: ca.cert },
      mtaStsHttpsPort: httpsPort,
      timeouts: FAST,
      ...over
    })
    deliverers.push(d)
    return d
  }

  test('MX resolution: preference order, equal preferences shuffled by the injected randomness, IPv4 then IPv6', async () => {
    const resolve = async (seq: number[]): Promise<string[]> => {
      let i = 0
      const r = createMxResolver({ random: () => seq[i++ % seq.length] ?? 0 }, { dnsServers: [dns.server], port: 25, localAddresses: [] })
      const mx = await r.resolve('order.test')
      assert.ok(mx.ok)
      assert.equal(mx.implicit, false)
      assert.deepEqual(mx.hosts.find(h => h.name === 'c.order.test')?.addresses, ['127.0.0.14', '::1'])
      return mx.hosts.map(h => h.name)
    }
    // random() is drawn once per record in DNS order; dnsmasq answers in its own order, so try both ways.
    const orders = new Set([(await resolve([0.1, 0.2, 0.3, 0.4])).join(' '), (await resolve([0.9, 0.8, 0.7, 0.6])).join(' ')])
    for (const o of orders) assert.match(o, /^a\.order\.test b[12]\.order\.test b[12]\.order\.test c\.order\.test$/)
    assert.equal(orders.size, 2, 'the two random sequences give the two orders of the equal preferences')
  })

  test('MX resolution: implicit MX, null MX, NXDOMAIN, and ourselves as the MX', async () => {
    const r = createMxResolver({}, { dnsServers: [dns.server], port: 25, localAddresses: [] })
    const plain = await r.resolve('plain.test')
    assert.ok(plain.ok && plain.implicit)
    assert.deepEqual(plain.hosts, [{ name: 'plain.test', preference: 0, addresses: [PF] }])
    assert.deepEqual(await r.resolve('nullmx.test'), { ok: false, permanent: true, enhanced: '5.1.10', message: 'domain nullmx.test accepts no mail (null MX)' })
    const nx = await r.resolve('nowhere.test')
    assert.ok(!nx.ok && nx.permanent && nx.enhanced === '5.1.2')
    // 127.0.0.1 on port 25 while our own MX listens on 25: ourselves (all of 127.0.0.0/8 is this machine)
    const self = await createMxResolver({}, { dnsServers: [dns.server], port: 25, localAddresses: [], ownSmtpPort: 25 }).resolve('self.test')
    assert.ok(!self.ok && self.permanent && self.enhanced === '5.4.6', JSON.stringify(self))
    const outside = await r.resolve('example.com') // dnsmasq refuses names it does not serve: temporary
    assert.ok(!outside.ok && !outside.permanent && outside.enhanced === '4.4.3')
  })

  test('MTA-STS parsing: record, policy, MX patterns', () => {
    assert.equal(recordId(['v=STSv1; id=20160831085700Z;']), '20160831085700Z')
    assert.equal(recordId(['v=STSv1; id=a', 'v=STSv1; id=b']), null) // two records: no policy (RFC 8461 3.1)
    assert.equal(recordId(['v=spf1 -all']), null)
    assert.deepEqual(parsePolicy('version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 604800\n'),
      { mode: 'enforce', mx: ['mail.example.com', '*.example.net'], maxAgeS: 604800 })
    assert.equal(parsePolicy('version: STSv2\nmode: enforce\nmx: a\nmax_age: 1\n'), null)
    assert.equal(parsePolicy('version: STSv1\nmode: enforce\nmax_age: 1\n'), null) // enforce without mx
    assert.ok(mxMatches('*.example.net', 'mx1.example.net'))
    assert.ok(!mxMatches('*.example.net', 'a.b.example.net'))
    assert.ok(!mxMatches('*.example.net', 'example.net'))
    assert.ok(mxMatches('mail.example.com', 'MAIL.example.com.'))
  })

  test('delivers to the MX with STARTTLS; per-recipient outcomes for 250, 450 and 550; the log names every attempt', async () => {
    const { logger, lines } = captureLogger()
    const d = deliverer({}, logger)
    const before = (await pf.messages()).length
    const out = byRcpt(await d.send('remote.test', envelope('bob@remote.test', 'later@remote.test', 'nobody@remote.test'), message('mixed')))
    assert.equal(out['bob@remote.test']?.status, 'sent')
    assert.equal(out['bob@remote.test']?.code, 250)
    assert.equal(out['bob@remote.test']?.remote, `mx.remote.test[${PF}]:${pf.port}`)
    assert.equal(out['later@remote.test']?.status, 'deferred')
    assert.equal(out['later@remote.test']?.code, 450)
    assert.equal(out['later@remote.test']?.enhanced, '4.2.0')
    assert.equal(out['nobody@remote.test']?.status, 'failed')
    assert.equal(out['nobody@remote.test']?.code, 550)
    assert.equal(out['nobody@remote.test']?.enhanced, '5.1.1')
    assert.match(out['nobody@remote.test']?.response ?? '', /no such user here/)
    const got = await pf.waitForMessages(before + 1)
    const mine = got.filter(m => m.raw.includes('Subject: mixed'))
    assert.deepEqual(mine.map(m => m.rcpt), ['bob@remote.test'])
    const raw = mine[0]?.raw.toString() ?? ''
    assert.match(raw, /using TLSv1\.[23]/, 'Postfix notes TLS in its Received header')
    assert.match(raw, /with ESMTPS/)
    assert.match(raw, /Received: from mailgrid\.origin\.test/, 'EHLO carries our hostname')
    const events = lines.map(l => JSON.parse(l) as { msg: string, domain: string, code: number })
    assert.deepEqual(events.map(e => e.msg).sort(), ['outbound_deferred', 'outbound_failed', 'outbound_sent'])
    assert.ok(events.every(e => e.domain === 'remote.test'))
  })

  test('several messages to one destination reuse one connection (RSET between them)', async () => {
    const d = deliverer()
    const logBefore = (await pf.log()).length
    for (let i = 0; i < 4; i++) {
      const [o] = await d.send('remote.test', envelope(`reuse${i}@remote.test`), message(`reuse ${i}`))
      assert.equal(o?.status, 'sent', o?.response)
    }
    await d.close()
    // Postfix logs the session's command counts when it ends; wait for that line (bounded).
    let mine = ''
    for (const deadline = Date.now() + 5000; Date.now() < deadline && !/disconnect from/.test(mine);) {
      await new Promise(resolve => setTimeout(resolve, 50))
      mine = (await pf.log()).slice(logBefore)
    }
    assert.equal((mine.match(/smtpd\[\d+\]: connect from/g) ?? []).length, 1, `one connection for four messages:\n${mine}`)
    assert.match(mine, /disconnect from .* mail=4 rcpt=4 data=4 rset=3 quit=1/, 'RSET between the messages, QUIT at the end')
  })

  test('falls back to the next MX when the best one refuses connections; A record when there is no MX', async () => {
    const d = deliverer()
    const [fb] = await d.send('fallback.test', envelope('x@fallback.test'), message('fallback'))
    assert.equal(fb?.status, 'sent', fb?.response)
    assert.equal(fb?.remote, `mx.remote.test[${PF}]:${pf.port}`)
    const [plain] = await d.send('plain.test', envelope('y@plain.test'), message('implicit'))
    assert.equal(plain?.status, 'sent', plain?.response)
    assert.equal(plain?.remote, `plain.test[${PF}]:${pf.port}`)
  })

  test('a 450 at the first MX moves the recipient to the next MX, which answers for itself', async () => {
    const d = deliverer()
    const out = byRcpt(await d.send('partial.test', envelope('ok@partial.test', 'later@partial.test'), message('partial')))
    assert.equal(out['ok@partial.test']?.status, 'sent')
    // both MX hosts are the same Postfix here, so the second answers 450 too: still deferred, from mx2
    assert.equal(out['later@partial.test']?.status, 'deferred')
    assert.equal(out['later@partial.test']?.remote, `mx2.remote.test[${PF}]:${pf.port}`)
  })

  test('null MX and NXDOMAIN fail at once; a remote that is down defers', async () => {
    const d = deliverer()
    const t0 = Date.now()
    const [nullMx] = await d.send('nullmx.test', envelope('a@nullmx.test'), message('nullmx'))
    assert.deepEqual({ s: nullMx?.status, e: nullMx?.enhanced, c: nullMx?.code, r: nullMx?.remote }, { s: 'failed', e: '5.1.10', c: 0, r: '' })
    const [nx] = await d.send('nowhere.test', envelope('a@nowhere.test'), message('nx'))
    assert.equal(nx?.status, 'failed')
    assert.equal(nx?.enhanced, '5.1.2')
    assert.ok(Date.now() - t0 < 2000)
    await pf.down()
    try {
      const [down] = await d.send('remote.test', envelope('a@remote.test'), message('down'))
      assert.equal(down?.status, 'deferred')
      assert.equal(down?.code, 0)
      assert.match(down?.response ?? '', /ECONNREFUSED|refused/i)
    } finally {
      await pf.up()
    }
  })

  test('a DNS server that never answers, and one that answers garbage: deferred in bounded time', async () => {
    const servers: UdpSocket[] = []
    try {
      const silent = createSocket('udp4')
      silent.on('message', () => {}) // reads and stays silent
      const garbage = createSocket('udp4')
      garbage.on('message', (msg, rinfo) => {
        // the query's id, then bytes that are no DNS answer
        const reply = Buffer.concat([msg.subarray(0, 2), Buffer.from([0x81, 0x80, 0xff, 0xff, 0xff, 0xff, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef, 0x13, 0x37])])
        garbage.send(reply, rinfo.port, rinfo.address)
      })
      servers.push(silent, garbage)
      for (const s of servers) await new Promise<void>(resolve => s.bind(0, '127.0.0.1', () => resolve()))
      for (const s of servers) {
        const d = deliverer({ dnsServers: [`127.0.0.1:${s.address().port}`] })
        const t0 = Date.now()
        const [o] = await d.send('remote.test', envelope('a@remote.test'), message('dns'))
        const took = Date.now() - t0
        assert.equal(o?.status, 'deferred', o?.response)
        assert.equal(o?.enhanced, '4.4.3')
        assert.ok(took < BOUNDED_MS, `took ${took} ms`)
      }
    } finally {
      for (const s of servers) s.close()
    }
  })

  test('remotes that never greet, send an endless line, trickle a reply, or drop the connection in DATA: deferred in bounded time', async () => {
    const sockets = new Set<Socket>()
    let dataDrops = 0
    const silent = createServer(s => { sockets.add(s); s.on('error', () => {}) })
    const endless = createServer(s => {
      sockets.add(s)
      s.on('error', () => {})
      const chunk = Buffer.alloc(16 * 1024, 'x')
      let sent = 0
      const pump = (): void => {
        // an endless greeting without CRLF, up to 8 MiB (far past the client's reply limit)
        while (!s.destroyed && sent < 8 * 1024 * 1024) {
          sent += chunk.length
          if (!s.write(chunk)) { s.once('drain', pump); return }
        }
      }
      s.write('220 ')
      pump()
    })
    const trickle = createServer(s => {
      // greets, then answers EHLO one byte every 50 ms, never finishing the reply (at most 2000 bytes)
      sockets.add(s)
      s.on('error', () => {})
      s.write('220 trickle.test ESMTP\r\n')
      let sent = 0
      const timer = setInterval(() => {
        if (s.destroyed || sent >= 2000) { clearInterval(timer); return }
        s.write(sent === 0 ? '250-' : 'x')
        sent++
      }, 50)
      s.on('close', () => clearInterval(timer))
    })
    const dropper = createServer(s => {
      sockets.add(s)
      s.on('error', () => {})
      let buf = ''
      let inData = false
      s.write('220 drop.test ESMTP\r\n')
      s.on('data', (b: Buffer) => {
        if (inData) { dataDrops++; s.destroy(); return }
        buf += b.toString('latin1')
        for (let i = buf.indexOf('\r\n'); i >= 0; i = buf.indexOf('\r\n')) {
          const line = buf.slice(0, i).toUpperCase()
          buf = buf.slice(i + 2)
          if (line.startsWith('EHLO')) s.write('250-drop.test\r\n250 8BITMIME\r\n')
          else if (line.startsWith('DATA')) { inData = true; s.write('354 go ahead\r\n') } else if (line.startsWith('QUIT')) s.end('221 bye\r\n')
          else s.write('250 ok\r\n')
        }
      })
    })
    try {
      const expect = { silent: /greeting/i, endless: /exceeds maximum allowed size/i, trickle: /setting up the session took more than/, dropper: /closed|ECONNRESET|ECONNECTION/i }
      for (const [name, server] of [['silent', silent], ['endless', endless], ['trickle', trickle], ['dropper', dropper]] as const) {
        const port = await listen(server, ODD)
        const d = deliverer({ port }) // odd.test has no MX: its A record, 127.0.0.5, on this server's port
        const t0 = Date.now()
        const rss0 = process.memoryUsage().rss
        const [o] = await d.send('odd.test', envelope('a@odd.test'), message(name))
        const took = Date.now() - t0
        assert.equal(o?.status, 'deferred', `${name}: ${o?.response}`)
        assert.equal(o?.remote, `odd.test[${ODD}]:${port}`)
        assert.match(o?.response ?? '', expect[name])
        assert.ok(took < BOUNDED_MS, `${name} took ${took} ms`)
        assert.ok(process.memoryUsage().rss - rss0 < 64 * 1024 * 1024, `${name}: memory stays bounded`)
        await d.close()
        await closeServer(server, sockets)
      }
      assert.equal(dataDrops, 1, 'the dropping server saw the message data')
    } finally {
      for (const s of sockets) s.destroy()
      for (const server of [silent, endless, trickle, dropper]) if (server.listening) server.close()
    }
  })

  test('an aborted send stops at once and leaves nothing open', async () => {
    const sockets = new Set<Socket>()
    let closed = 0
    const silent = createServer(s => { sockets.add(s); s.on('error', () => {}); s.resume(); s.on('close', () => closed++) })
    const port = await listen(silent, ODD)
    try {
      const d = deliverer({ port, timeouts: { ...FAST, greetingMs: 30_000, setupMs: 30_000 } })
      const ac = new AbortController()
      const t0 = Date.now()
      setTimeout(() => ac.abort(), 100)
      await assert.rejects(d.send('odd.test', envelope('a@odd.test'), message('abort'), { signal: ac.signal }), { name: 'AbortError' })
      assert.ok(Date.now() - t0 < 1000)
      const deadline = Date.now() + 3000
      while (closed < 1 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
      assert.deepEqual([sockets.size, closed], [1, 1], 'the one connection was closed')
    } finally {
      await closeServer(silent, sockets)
    }
  })

  test('loops: an MX that is our own address and port, and a remote that greets with our own name, fail 5.4.6', async () => {
    // Postfix is on 127.0.0.2:port; told that port is our own MX's, the loopback address is ourselves.
    const d = deliverer({ ownSmtpPort: pf.port })
    const [own] = await d.send('remote.test', envelope('a@remote.test'), message('loop own'))
    assert.equal(own?.status, 'failed')
    assert.equal(own?.enhanced, '5.4.6')
    assert.equal(own?.response, 'mail for remote.test loops back to myself')
    const named = deliverer({ hostname: pf.hostname })
    const [greet] = await named.send('remote.test', envelope('a@remote.test'), message('loop name'))
    assert.equal(greet?.status, 'failed')
    assert.equal(greet?.enhanced, '5.4.6')
  })

  test('MTA-STS enforce: an MX outside the policy defers; a matching MX with a valid certificate is used; a bad certificate defers', async () => {
    const d = deliverer()
    const [nomatch] = await d.send('nomatch.test', envelope('a@nomatch.test'), message('sts nomatch'))
    assert.equal(nomatch?.status, 'deferred')
    assert.equal(nomatch?.enhanced, '4.7.5', nomatch?.response)
    assert.match(nomatch?.response ?? '', /MTA-STS/)
    const [ok] = await d.send('sts.test', envelope('a@sts.test'), message('sts ok'))
    assert.equal(ok?.status, 'sent', ok?.response)
    const [again] = await d.send('sts.test', envelope('b@sts.test'), message('sts again'))
    assert.equal(again?.status, 'sent', again?.response)
    assert.equal(fetches.filter(h => h === 'mta-sts.sts.test').length, 1, 'the policy is cached by its id')
    const [bad] = await d.send('badcert.test', envelope('a@badcert.test'), message('sts badcert'))
    assert.equal(bad?.status, 'deferred', bad?.response)
    assert.equal(bad?.enhanced, '4.7.5')
    // testing mode changes nothing: the MX outside its mx list is used, opportunistic TLS as always
    const [testing] = await d.send('testing.test', envelope('a@testing.test'), message('sts testing'))
    assert.equal(testing?.status, 'sent', testing?.response)
  })

  test('smarthost: STARTTLS before AUTH, URL-decoded credentials, per-recipient DSN parameters; no secret in the log', async () => {
    const leaf = await ca.issue(['relay.test'])
    const secret = 'p@ss:w/rd%'
    const seen: { authSecure: boolean[], users: string[], passes: string[], rcptArgs: Array<Record<string, unknown>>, mailArgs: Array<Record<string, unknown>>, data: string[] } =
      { authSecure: [], users: [], passes: [], rcptArgs: [], mailArgs: [], data: [] }
    const relay = new SMTPServer({
      key: leaf.key,
      cert: leaf.cert,
      authMethods: ['PLAIN', 'LOGIN'],
      size: 10 * 1024 * 1024,
      hideDSN: false,
      logger: false,
      onAuth (auth, session, cb) {
        seen.authSecure.push(session.secure)
        seen.users.push(auth.username ?? '')
        seen.passes.push(auth.password ?? '')
        if (auth.password !== secret) { cb(new Error('Invalid username or password')); return }
        cb(null, { user: auth.username })
      },
      onMailFrom (address, _session, cb) { seen.mailArgs.push(address.args as Record<string, unknown>); cb() },
      onRcptTo (address, _session, cb) { seen.rcptArgs.push(address.args as Record<string, unknown>); cb() },
      onData (stream, _session, cb) {
        const chunks: Buffer[] = []
        stream.on('data', (c: Buffer) => chunks.push(c))
        stream.on('end', () => { seen.data.push(Buffer.concat(chunks).toString()); cb() })
      }
    } as ConstructorParameters<typeof SMTPServer>[0])
    const port = await new Promise<number>((resolve, reject) => {
      relay.on('error', () => {})
      relay.server.once('error', reject)
      relay.listen(0, '127.0.0.8', () => resolve((relay.server.address() as { port: number }).port))
    })
    const { logger, lines } = captureLogger()
    try {
      // relay.test resolves through our DNS: add it
      await dns.setRecords({ ...records(), address: [...(records().address ?? []), { name: 'relay.test', address: '127.0.0.8' }] })
      const d = deliverer({ relay: `smtp://mailgrid%40origin.test:${encodeURIComponent(secret)}@relay.test:${port}` }, logger)
      const env: Envelope = {
        from: 'alice@origin.test',
        rcpts: [
          { address: 'one@far.example', notify: ['FAILURE', 'DELAY'], orcpt: 'rfc822;one+x@far.example' },
          { address: 'two@other.example', notify: ['NEVER'] }
        ],
        dsn: { ret: 'HDRS', envid: 'env-1' },
        eightBit: true
      }
      const out = await d.send('far.example', env, message('relayed'))
      assert.deepEqual(out.map(o => o.status), ['sent', 'sent'], JSON.stringify(out))
      assert.equal(out[0]?.remote, `relay.test[127.0.0.8]:${port}`)
      assert.deepEqual(seen.authSecure, [true], 'AUTH only after STARTTLS')
      assert.deepEqual(seen.users, ['mailgrid@origin.test'])
      assert.deepEqual(seen.passes, [secret])
      assert.equal(seen.mailArgs[0]?.RET, 'HDRS')
      assert.equal(seen.mailArgs[0]?.ENVID, 'env-1')
      assert.equal(seen.mailArgs[0]?.BODY, '8BITMIME')
      assert.equal(Number(seen.mailArgs[0]?.SIZE), message('relayed').length)
      assert.equal(seen.rcptArgs[0]?.NOTIFY, 'FAILURE,DELAY')
      assert.equal(seen.rcptArgs[0]?.ORCPT, 'rfc822;one+x@far.example') // sent xtext-encoded (one+2Bx), decoded by smtp-server
      assert.equal(seen.rcptArgs[1]?.NOTIFY, 'NEVER')
      assert.equal(seen.rcptArgs[1]?.ORCPT, undefined)
      assert.match(seen.data[0] ?? '', /Subject: relayed/)
      // wrong credentials: deferred (a configuration to fix), never failed
      const wrong = deliverer({ relay: `smtp://mailgrid%40origin.test:${encodeURIComponent('not-' + secret)}@relay.test:${port}` }, logger)
      const [refused] = await wrong.send('far.example', envelope('three@far.example'), message('wrong password'))
      assert.equal(refused?.status, 'deferred', refused?.response)
      assert.equal(refused?.enhanced, '4.7.0')
      assert.match(refused?.response ?? '', /535/)
      assert.equal(seen.data.length, 1)
      const all = lines.join('\n')
      assert.match(all, /outbound_sent/)
      assert.match(all, /outbound_deferred/)
      assert.ok(!all.includes(secret) && !all.includes(encodeURIComponent(secret)), 'the password never reaches the log')
    } finally {
      await closeDeliverers()
      await new Promise<void>(resolve => relay.close(() => resolve()))
      await dns.setRecords(records())
    }
  })
  test('smarthost over implicit TLS (smtps://)', async () => {
    const leaf = await ca.issue(['relay.test'])
    const users: string[] = []
    const relay = new SMTPServer({
      secure: true, key: leaf.key, cert: leaf.cert, logger: false, authMethods: ['PLAIN'],
      onAuth (auth, session, cb) { users.push(`${auth.username ?? ''}:${String(session.secure)}`); cb(null, { user: auth.username }) },
      onData (stream, _session, cb) { stream.resume(); stream.on('end', () => cb()) }
    } as ConstructorParameters<typeof SMTPServer>[0])
    const port = await listenSmtp(relay, '127.0.0.8')
    try {
      await dns.setRecords({ ...records(), address: [...(records().address ?? []), { name: 'relay.test', address: '127.0.0.8' }] })
      const d = deliverer({ relay: `smtps://u:v@relay.test:${port}` })
      const [o] = await d.send('far.example', envelope('x@far.example'), message('smtps'))
      assert.equal(o?.status, 'sent', o?.response)
      assert.deepEqual(users, ['u:true'])
    } finally {
      await closeDeliverers()
      await new Promise<void>(resolve => relay.close(() => resolve()))
      await dns.setRecords(records())
    }
  })

  test('SIZE, SMTPUTF8 and 8BITMIME follow what the remote offers', async () => {
    const mail: Array<Record<string, unknown>> = []
    const make = (hideSMTPUTF8: boolean): SMTPServer => new SMTPServer({
      size: 400, hideSMTPUTF8, authOptional: true, disabledCommands: ['STARTTLS', 'AUTH'], logger: false,
      onMailFrom (address, _session, cb) { mail.push(address.args as Record<string, unknown>); cb() },
      onData (stream, _session, cb) { stream.resume(); stream.on('end', () => cb()) }
    } as ConstructorParameters<typeof SMTPServer>[0])
    const utf8 = make(false)
    const ascii = make(true)
    const port = await listenSmtp(utf8, ODD)
    try {
      const d = deliverer({ port })
      const [big] = await d.send('odd.test', envelope('a@odd.test'), message('big', `X-Pad: ${'x'.repeat(500)}\r\n`))
      assert.deepEqual([big?.status, big?.enhanced], ['failed', '5.3.4'], big?.response)
      const [intl] = await d.send('odd.test', { from: 'alice@origin.test', rcpts: [{ address: 'jörg@odd.test' }], smtpUtf8: true, eightBit: true }, message('utf8'))
      assert.equal(intl?.status, 'sent', intl?.response)
      assert.equal(mail.at(-1)?.SMTPUTF8, true)
      assert.equal(mail.at(-1)?.BODY, '8BITMIME')
      const [unmarked] = await d.send('odd.test', envelope('jörg@odd.test'), message('unmarked'))
      assert.deepEqual([unmarked?.status, unmarked?.enhanced], ['failed', '5.6.7'])
      await d.close()
      await new Promise<void>(resolve => utf8.close(() => resolve()))
      await listenSmtp(ascii, ODD, port)
      const d2 = deliverer({ port })
      const [noUtf8] = await d2.send('odd.test', { from: 'alice@origin.test', rcpts: [{ address: 'jörg@odd.test' }], smtpUtf8: true }, message('no utf8'))
      assert.deepEqual([noUtf8?.status, noUtf8?.enhanced], ['failed', '5.6.7'], noUtf8?.response)
    } finally {
      await closeDeliverers()
      for (const srv of [utf8, ascii]) await new Promise<void>(resolve => srv.close(() => resolve()))
    }
  })

  test('an MX with only an IPv6 address', async () => {
    const got: string[] = []
    const sink = new SMTPServer({
      authOptional: true, disabledCommands: ['STARTTLS', 'AUTH'], logger: false,
      onData (stream, session, cb) { got.push(session.remoteAddress); stream.resume(); stream.on('end', () => cb()) }
    } as ConstructorParameters<typeof SMTPServer>[0])
    const port = await listenSmtp(sink, '::1')
    try {
      await dns.setRecords({ ...records(), address: [...(records().address ?? []), { name: 'v6.test', address: '::1' }] })
      const d = deliverer({ port })
      const [o] = await d.send('v6.test', envelope('a@v6.test'), message('ipv6'))
      assert.equal(o?.status, 'sent', o?.response)
      assert.equal(o?.remote, `v6.test[::1]:${port}`)
      assert.deepEqual(got, ['::1'])
    } finally {
      await closeDeliverers()
      await new Promise<void>(resolve => sink.close(() => resolve()))
      await dns.setRecords(records())
    }
  })

  test('per-destination session cap and rate limit; idle sessions are closed', async () => {
    let live = 0
    let peak = 0
    let connections = 0
    const sink = new SMTPServer({
      authOptional: true, disabledCommands: ['STARTTLS', 'AUTH'], logger: false,
      onConnect (_session, cb) { connections++; live++; peak = Math.max(peak, live); cb() },
      onClose () { live-- },
      onData (stream, _session, cb) { stream.resume(); stream.on('end', () => setTimeout(cb, 30)) }
    } as ConstructorParameters<typeof SMTPServer>[0])
    const port = await listenSmtp(sink, ODD)
    try {
      const d = deliverer({ port, sessionsPerDestination: 2, messagesPerSecond: 20, sessionIdleMs: 300 })
      const t0 = Date.now()
      const all = await Promise.all(Array.from({ length: 8 }, (_, i) => d.send('odd.test', envelope(`n${i}@odd.test`), message(`burst ${i}`))))
      const took = Date.now() - t0
      assert.deepEqual(all.map(o => o[0]?.status), Array(8).fill('sent'))
      assert.ok(peak <= 2, `at most 2 sessions at once, saw ${peak}`)
      assert.ok(connections <= 2, `sessions are reused, saw ${connections} connections`)
      assert.ok(took >= 7 * 50 - 10, `20 messages/s: 8 messages take at least 350 ms, took ${took}`)
      const deadline = Date.now() + 5000
      while (live > 0 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 50))
      assert.equal(live, 0, 'idle sessions closed after sessionIdleMs')
    } finally {
      await closeDeliverers()
      await new Promise<void>(resolve => sink.close(() => resolve()))
    }
  })

  test('a failed opportunistic TLS handshake is retried in plaintext on the same address', async () => {
    const sockets = new Set<Socket>()
    let connections = 0
    let delivered = ''
    const server = createServer(s => {
      sockets.add(s)
      connections++
      s.on('error', () => {})
      let buf = ''
      let data: string | null = null
      s.write('220 odd.test ESMTP\r\n')
      s.on('data', (b: Buffer) => {
        buf += b.toString('latin1')
        for (let i = buf.indexOf('\r\n'); i >= 0; i = buf.indexOf('\r\n')) {
          const line = buf.slice(0, i)
          buf = buf.slice(i + 2)
          if (data !== null) {
            if (line === '.') { delivered = data; data = null; s.write('250 2.0.0 queued\r\n') } else data += line + '\n'
            continue
          }
          const cmd = line.toUpperCase()
          if (cmd.startsWith('EHLO')) s.write('250-odd.test\r\n250 STARTTLS\r\n')
          else if (cmd.startsWith('STARTTLS')) { s.write('220 go ahead\r\n'); s.end('this is no TLS handshake\r\n') } else if (cmd.startsWith('DATA')) { data = ''; s.write('354 go\r\n') } else if (cmd.startsWith('QUIT')) s.end('221 bye\r\n')
          else s.write('250 ok\r\n')
        }
      })
    })
    const port = await listen(server, ODD)
    try {
      const d = deliverer({ port })
      const [o] = await d.send('odd.test', envelope('a@odd.test'), message('tls fallback'))
      assert.equal(o?.status, 'sent', o?.response)
      assert.equal(connections, 2)
      assert.match(delivered, /Subject: tls fallback/)
    } finally {
      await closeServer(server, sockets)
    }
  })
})

async function listenSmtp (server: SMTPServer, host: string, port = 0): Promise<number> {
  server.on('error', () => {})
  return await new Promise<number>((resolve, reject) => {
    server.server.once('error', reject)
    server.listen(port, host, () => resolve((server.server.address() as { port: number }).port))
  })
}

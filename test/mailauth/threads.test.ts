// The inbound checks on worker threads (node/mailauth/threads.ts) against the same checks in this thread
// (verify.ts), with a private dnsmasq publishing a sender's SPF, DKIM and DMARC records: the same results, header
// fields and cleaned copy for a signed, a tampered, an unsigned and a forged message; the thread's log lines written
// by this thread's logger; threads started only by the first check; a check aborted while its DNS query waits; a
// thread that dies and one that never answers (test modules in place of check-thread.ts) answered fail-open and
// replaced; close.

import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { Worker } from 'node:worker_threads'
import pino from 'pino'
import { dkimSign } from 'mailauth'
import type { DkimKey } from '../../store/index.ts'
import { createDkimKey, createInboundChecker, createThreadedInboundChecker, dkimName, dkimTxt, inboundThreadCount } from '../../node/mailauth/index.ts'
import type { CheckResult } from '../../node/mailauth/index.ts'
import { unsignedHeaderBlock } from '../../node/mailauth/verify.ts'
import type { ThreadReplies, ThreadRequests } from '../../node/mailauth/threads.ts'
import { isDnsmasqInstalled, startDns } from '../helpers/dns.ts'
import type { DnsServer } from '../helpers/dns.ts'
import { tempDir } from '../helpers/tmp.ts'
import { quiet } from './helpers.ts'

const missing = isDnsmasqInstalled() ? false : 'dnsmasq is needed (apt-get install dnsmasq-base)'
const GOOD_IP = '192.0.2.1'
const BAD_IP = '192.0.2.66'

let dns: DnsServer
let key: DkimKey

before(async () => {
  if (missing !== false) return
  key = await createDkimKey('s1', Date.now())
  dns = await startDns({
    records: {
      txt: [
        { name: 'origin.test', text: `v=spf1 ip4:${GOOD_IP} -all` },
        { name: '_dmarc.origin.test', text: 'v=DMARC1; p=reject' },
        { name: dkimName('origin.test', 's1'), text: dkimTxt(key) }
      ]
    }
  })
})

after(async () => { await dns?.stop() })

function message (extra = ''): Buffer {
  return Buffer.from(`${extra}From: Alice <alice@origin.test>\r\nTo: bob@example.com\r\nSubject: figures\r\nDate: Sat, 05 Dec 2026 09:00:00 +0000\r\nMessage-ID: <${Math.random().toString(36).slice(2)}@origin.test>\r\n\r\nHello Bob,\r\nthe figures are attached.\r\n`)
}

async function signed (raw: Buffer): Promise<Buffer> {
  const sig = { signingDomain: 'origin.test', selector: 's1', privateKey: key.privateKey }
  const res = await dkimSign(raw, { ...sig, signatureData: [sig] })
  assert.equal(res.errors.length, 0)
  return Buffer.concat([Buffer.from(res.signatures), raw])
}

const INIT = { hostname: 'mx.test', dmarcReject: true }
const CTX = { ip: GOOD_IP, helo: 'host.origin.test', mailFrom: 'alice@origin.test' }

/** A result as compared: the cleaned copy as text. */
const shape = (r: CheckResult): unknown => ({ ...r, cleaned: r.cleaned === undefined ? undefined : (assert.ok(Buffer.isBuffer(r.cleaned)), r.cleaned.toString('latin1')) })

test('the thread count: -1 is one per core but one, none on one core; capped', () => {
  assert.equal(inboundThreadCount(-1, 2), 1)
  assert.equal(inboundThreadCount(-1, 1), 0)
  assert.equal(inboundThreadCount(-1, 64), 8)
  assert.equal(inboundThreadCount(0, 8), 0)
  assert.equal(inboundThreadCount(3, 2), 3)
})

test('on a thread the checks give what they give in this thread: results, header fields, the cleaned copy, the log', { skip: missing }, async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const logger = pino({ level: 'debug' }, { write: (line: string) => { lines.push(JSON.parse(line) as Record<string, unknown>) } })
  const local = createInboundChecker({ logger: quiet }, { ...INIT, dnsServers: [dns.server] })
  const threaded = createThreadedInboundChecker({ logger }, { ...INIT, dnsServers: [dns.server] }, { threads: 2 })
  t.after(async () => { await threaded.close() })
  assert.equal(threaded.running, 0, 'no thread before the first check')

  const good = await signed(message())
  const tampered = Buffer.from(good.toString('latin1').replace('the figures', 'new bank details'), 'latin1')
  const forged = message('Authentication-Results: mx.test; spf=pass smtp.mailfrom=origin.test\r\n')
  const cases: Array<[string, Buffer, typeof CTX]> = [
    ['signed, from the permitted server', good, CTX],
    ['signed, from another server', good, { ...CTX, ip: BAD_IP }],
    ['tampered after signing', tampered, CTX],
    ['unsigned, from another server (DMARC p=reject fails)', message(), { ...CTX, ip: BAD_IP }],
    ['with a forged Authentication-Results of ours', forged, CTX],
    ['from a logged-in submitter', message(), { ...CTX, sender: 'alice@example.com' } as typeof CTX]
  ]
  for (const [name, raw, ctx] of cases) {
    const want = await local.check(raw, ctx)
    const got = await threaded.check(raw, ctx)
    assert.deepEqual(shape(got), shape(want), name)
  }
  const [a, b, c] = await Promise.all([threaded.check(good, CTX), threaded.check(tampered, CTX), threaded.check(message(), { ...CTX, ip: BAD_IP })])
  assert.deepEqual([a.results.dkim, b.results.dkim, c.results.dmarc, c.action], ['pass', 'fail', 'fail', 'reject'])
  assert.equal(threaded.running, 2, 'a second thread for checks in flight together')
  assert.equal(threaded.started, 2)
  // the lines the thread wrote came out of this thread's logger, with their fields
  assert.ok(lines.some(l => l.event === 'inbound_auth_forged' && l.ip === GOOD_IP && l.level === 40), JSON.stringify(lines))
  assert.ok(lines.some(l => l.event === 'inbound_auth' && l.dkim === 'pass' && l.level === 20))
})

test('a check aborted while its DNS query waits is rejected at once; the thread goes on', { skip: missing }, async (t) => {
  const sink = createSocket('udp4') // swallows every query
  await new Promise<void>(resolve => sink.bind(0, '127.0.0.1', () => resolve()))
  t.after(() => { sink.close() })
  const threaded = createThreadedInboundChecker({ logger: quiet }, { ...INIT, dnsServers: [`127.0.0.1:${sink.address().port}`], timeoutMs: 4000 }, { threads: 1 })
  t.after(async () => { await threaded.close() })
  const abort = new AbortController()
  const pending = threaded.check(message(), { ...CTX, signal: abort.signal })
  setTimeout(() => abort.abort(new Error('client went away')), 200)
  const t0 = Date.now()
  await assert.rejects(pending, /client went away/)
  assert.ok(Date.now() - t0 < 1500, 'rejected when aborted, not at the time-out')
  // the next check on the same thread ends by the check's own bound: temperror, accepted
  const next = await threaded.check(message(), CTX)
  assert.deepEqual([next.results.spf, next.action], ['temperror', 'accept'])
  assert.equal(threaded.started, 1)
})

test('a thread that dies or never answers: its checks accepted with temperror, the next check on a new thread', async (t) => {
  const dir = await tempDir(t)
  const dies = join(dir, 'dies.mjs')
  await writeFile(dies, "import { parentPort } from 'node:worker_threads'\nparentPort.on('message', () => { process.exit(3) })\n")
  const hangs = join(dir, 'hangs.mjs')
  await writeFile(hangs, "import { parentPort } from 'node:worker_threads'\nparentPort.on('message', () => { for (;;) {} })\n")
  const lines: Array<Record<string, unknown>> = []
  const logger = pino({ level: 'info' }, { write: (line: string) => { lines.push(JSON.parse(line) as Record<string, unknown>) } })

  const dying = createThreadedInboundChecker({ logger, threadUrl: pathToFileURL(dies) }, { ...INIT, dnsServers: [] }, { threads: 1 })
  t.after(async () => { await dying.close() })
  for (let i = 1; i <= 2; i++) {
    const r = await dying.check(message(), CTX)
    assert.deepEqual([r.results.spf, r.results.dkim, r.action], ['temperror', 'temperror', 'accept'])
    assert.match(r.headers, /^Authentication-Results: mx\.test; spf=temperror \(internal error\)/)
    assert.equal(dying.started, i)
  }
  assert.ok(lines.some(l => l.event === 'inbound_check_thread_ended' && String(l.why).startsWith('exit')), JSON.stringify(lines))

  // the check's bound (timeoutMs) plus the grace: a thread stuck in a loop is ended, not waited for
  const stuck = createThreadedInboundChecker({ logger, threadUrl: pathToFileURL(hangs) }, { ...INIT, dnsServers: [], timeoutMs: 100 }, { threads: 1 })
  t.after(async () => { await stuck.close() })
  const t0 = Date.now()
  const r = await stuck.check(message(), CTX)
  assert.equal(r.action, 'accept')
  assert.equal(r.results.dmarc, 'temperror')
  assert.ok(Date.now() - t0 >= 100)
  assert.ok(lines.some(l => l.event === 'inbound_check_thread_stuck'))
  assert.equal(stuck.running, 0, 'the stuck thread was ended')
})

test('close: checks in flight and after it are accepted with temperror; twice is safe', { skip: missing }, async () => {
  const sink = createSocket('udp4')
  await new Promise<void>(resolve => sink.bind(0, '127.0.0.1', () => resolve()))
  try {
    const threaded = createThreadedInboundChecker({ logger: quiet }, { ...INIT, dnsServers: [`127.0.0.1:${sink.address().port}`] }, { threads: 1 })
    const inFlight = threaded.check(message(), CTX)
    await new Promise(resolve => setTimeout(resolve, 300))
    await threaded.close()
    await threaded.close()
    assert.equal((await inFlight).results.spf, 'temperror')
    assert.equal((await threaded.check(message(), CTX)).results.spf, 'temperror')
    assert.equal(threaded.running, 0)
  } finally {
    sink.close()
  }
})

test('what crosses to a thread: a turn\'s checks in one message; an unsigned message\'s header block alone, a signed one whole, a submission nothing; our forged fields removed here', { skip: missing }, async (t) => {
  // a thread module in place of check-thread.ts that answers every request of a message in one message, saying what
  // it was given: the bytes, whether they were an unsigned header block, and how many requests came with them
  const dir = await tempDir(t)
  const echo = join(dir, 'echo.mjs')
  await writeFile(echo, `import { parentPort } from 'node:worker_threads'
parentPort.on('message', (requests) => {
  parentPort.postMessage(requests.filter(r => r.cancel === undefined).map(r => ({ id: r.id, result: {
    headers: 'X-Seen: ' + Buffer.from(r.message.buffer, r.message.byteOffset, r.message.byteLength).toString('base64') + ' ' + r.unsigned + ' ' + requests.length + '\\r\\n',
    action: 'accept', results: { spf: 'none', dkim: 'none', dmarc: 'none', arc: 'none' }, arc: { authResults: '', cv: 'none' } } })))
})
`)
  const threaded = createThreadedInboundChecker({ logger: quiet, threadUrl: pathToFileURL(echo) }, { ...INIT, dnsServers: [] }, { threads: 1 })
  t.after(async () => { await threaded.close() })
  const plain = message()
  const good = await signed(message())
  const forged = message('Authentication-Results: mx.test; dmarc=pass header.from=origin.test\r\n')
  const seen = (r: CheckResult): [Buffer, string, number] => {
    const [b64, unsigned, n] = (/^X-Seen: (\S*) (\S+) (\d+)\r\n$/.exec(r.headers) ?? assert.fail(r.headers)).slice(1)
    return [Buffer.from(b64, 'base64'), unsigned, Number(n)]
  }
  const [a, b, c, d] = await Promise.all([
    threaded.check(plain, CTX),
    threaded.check(good, CTX),
    threaded.check(plain, { ...CTX, sender: 'alice@example.com' }),
    threaded.check(forged, CTX)
  ])
  const header = unsignedHeaderBlock(plain)
  assert.ok(header !== null && header.length < plain.length)
  assert.deepEqual(seen(a), [header, 'true', 4], 'the header block of the unsigned message, through its empty line; four requests in one message')
  assert.deepEqual(seen(b), [good, 'false', 4], 'the signed message whole')
  assert.deepEqual(seen(c), [Buffer.alloc(0), 'false', 4], 'nothing of a submission')
  // the forged field is removed by this thread: the thread sees the cleaned block, the result carries the cleaned copy
  const cleaned = d.cleaned ?? assert.fail('no cleaned copy')
  assert.equal(cleaned.toString('latin1'), forged.toString('latin1').replace(/^Authentication-Results:[^\n]*\n/, ''))
  assert.deepEqual(seen(d)[0], unsignedHeaderBlock(forged), 'the unsigned block as received: its fields are the checks\' input as before')
  assert.equal(a.cleaned, undefined)
  // checks in later turns go in later messages
  const e = await threaded.check(plain, CTX)
  assert.equal(seen(e)[2], 1)
})

test('check-thread.ts answers the checks it finished in one turn in one message', { skip: missing }, async (t) => {
  const worker = new Worker(new URL('../../node/mailauth/check-thread.ts', import.meta.url), { workerData: { init: { ...INIT, dnsServers: [dns.server] }, level: 'silent' } })
  t.after(async () => { await worker.terminate() })
  const messages: ThreadReplies[] = []
  let want = 0
  let got = 0
  let done: () => void = () => {}
  worker.on('message', (replies: ThreadReplies) => {
    messages.push(replies)
    got += replies.filter(r => r.id !== undefined).length
    if (got === want) done()
  })
  const ask = async (requests: ThreadRequests): Promise<void> => {
    want += requests.length
    const all = new Promise<void>(resolve => { done = resolve })
    worker.postMessage(requests)
    await all
  }
  const request = (id: number, raw: Buffer, unsigned: boolean): ThreadRequests[number] => ({ id, message: new Uint8Array(raw), unsigned, ctx: CTX })
  const plain = message()
  const header = unsignedHeaderBlock(plain) ?? assert.fail('no header block')
  await ask([request(1, header, true)]) // the sender's records into the thread's DNS cache
  messages.length = 0
  await ask(Array.from({ length: 20 }, (_, i) => request(2 + i, header, true)))
  const answers = messages.flat().filter(r => r.id !== undefined)
  assert.deepEqual(answers.map(r => r.id).sort((x, y) => (x ?? 0) - (y ?? 0)), Array.from({ length: 20 }, (_, i) => 2 + i))
  assert.ok(answers.every(r => r.result?.results.spf === 'pass' && r.result.results.dmarc === 'pass'), JSON.stringify(answers[0]))
  assert.ok(messages.length <= 2, `20 checks answered from the DNS cache in ${messages.length} messages`)
  // the block alone gives what the whole message gives in this thread
  const local = createInboundChecker({ logger: quiet }, { ...INIT, dnsServers: [dns.server] })
  assert.deepEqual(answers[0].result, await local.check(plain, CTX))
})

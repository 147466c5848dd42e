// Sieve at delivery, end to end on one node with real parts: mail arrives over SMTP (nodemailer), the user's active
// script runs before it is stored, and what leaves goes through the outbound queue to a private Postfix found by a
// private dnsmasq. Vacation answers a sender once per period and never a list; redirect leaves with SRS; fileinto,
// flags, discard, reject (SMTP and bounce) and editheader act on what is stored; hostile scripts are refused or
// bounded and the message is still delivered.

import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import nodemailer from 'nodemailer'
import type { Store } from '../../store/index.ts'
import { SieveScripts } from '../../node/managesieve/index.ts'
import { startNode } from '../helpers/node.ts'
import type { TestNode } from '../helpers/node.ts'
import { isPostfixInstalled, startPostfix } from '../helpers/postfix.ts'
import type { PostfixServer } from '../helpers/postfix.ts'
import { isDnsmasqInstalled, startDns } from '../helpers/dns.ts'
import type { DnsServer } from '../helpers/dns.ts'

const WAIT_MS = 30_000
const missing = !isPostfixInstalled() || !isDnsmasqInstalled() ? 'postfix and dnsmasq are needed (apt-get install postfix dnsmasq-base)' : false

let postfix: PostfixServer
let dns: DnsServer
let s: TestNode
let store: Store
let scripts: SieveScripts

before(async () => {
  if (missing !== false) return
  postfix = await startPostfix({ domains: ['remote.test'], host: '127.0.0.2' })
  dns = await startDns({ records: { mx: [{ name: 'remote.test', host: 'mx.remote.test', preference: 10 }], address: [{ name: 'mx.remote.test', address: '127.0.0.2' }] } })
})

after(async () => {
  await postfix?.stop()
  await dns?.stop()
})

async function setup (t: { after: (fn: () => Promise<void>) => void }): Promise<void> {
  s = await startNode(t, { outbound: { dnsServers: [dns.server], port: postfix.port, relay: '', retryMinMs: 300, delayNoticeMs: 3600_000, bounceAfterMs: 3600_000 } })
  store = s.node.store
  scripts = new SieveScripts(store)
  await store.addDomain('example.com')
}

async function user (name: string, script: string | null): Promise<string> {
  const address = `${name}@example.com`
  await store.addUser({ address, password: 'pw' })
  if (script !== null) await scripts.put(address, 'main', script, { activate: true })
  return address
}

async function send (opts: { from: string, to: string[], subject: string, headers?: string, body?: string }): Promise<void> {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: s.port('smtp'), secure: false, ignoreTLS: true })
  try {
    await transport.sendMail({
      envelope: { from: opts.from, to: opts.to },
      raw: `From: <${opts.from}>\r\nTo: ${opts.to.map(a => `<${a}>`).join(', ')}\r\nSubject: ${opts.subject}\r\nMessage-ID: <${opts.subject.replace(/\W/g, '')}@remote.test>\r\n${opts.headers ?? ''}\r\n${opts.body ?? 'hello\r\n'}`
    })
  } finally {
    transport.close()
  }
}

/** Messages of a mailbox as text, with their flags. */
async function box (address: string, name = 'INBOX'): Promise<Array<{ text: string, flags: string[] }>> {
  const b = await store.getMailbox(address, name)
  if (b === null) return []
  const out = []
  for (const r of await store.listMessages(address, b.id)) out.push({ text: (await store.readMessage(r)).toString('utf8'), flags: r.flags })
  return out
}

async function received (match: (raw: string) => boolean, count = 1): Promise<string[]> {
  const deadline = Date.now() + WAIT_MS
  for (;;) {
    const got = (await postfix.messages()).map(m => m.raw.toString('utf8')).filter(match)
    if (got.length >= count || Date.now() > deadline) return got
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

async function queueEmpty (): Promise<void> {
  const deadline = Date.now() + WAIT_MS
  while ((await s.node.queue.list()).length > 0) {
    if (Date.now() > deadline) assert.fail('the queue did not empty')
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

test('vacation answers the first message of a sender, not the second within the period, never a list or a robot', { skip: missing }, async (t) => {
  await setup(t)
  const bob = await user('bob', 'require ["vacation"];\r\nvacation :days 7 :subject "Away until Monday" "I am away; back on Monday.";\r\n')
  await send({ from: 'carol@remote.test', to: [bob], subject: 'first from carol' })
  await send({ from: 'carol@remote.test', to: [bob], subject: 'second from carol' })
  await send({ from: 'news@remote.test', to: [bob], subject: 'list post', headers: 'List-Id: <news.remote.test>\r\n' })
  await send({ from: 'bulk@remote.test', to: [bob], subject: 'bulk post', headers: 'Precedence: bulk\r\n' })
  await send({ from: 'robot@remote.test', to: [bob], subject: 'auto post', headers: 'Auto-Submitted: auto-generated\r\n' })
  await send({ from: '', to: [bob], subject: 'a bounce' })
  await send({ from: 'dave@remote.test', to: [bob], subject: 'from dave' })
  const [toDave] = await received(m => /Delivered-To: dave@remote\.test/.test(m))
  assert.ok(toDave !== undefined, 'dave got his answer')
  await queueEmpty() // every reply the deliveries above queued has left
  const replies = await received(() => true, 0).then(all => all.filter(m => /Subject: Away until Monday/.test(m)))
  const to = replies.map(m => /Delivered-To: (\S+)/.exec(m)?.[1]).sort()
  assert.deepEqual(to, ['carol@remote.test', 'dave@remote.test'], 'one answer to carol, one to dave, none to the list, the bulk sender, the robot or the bounce')
  const carol = replies.find(m => m.includes('Delivered-To: carol@remote.test')) as string
  assert.match(carol, /^Auto-Submitted: auto-replied/m)
  assert.match(carol, /^In-Reply-To: <firstfromcarol@remote\.test>/m)
  assert.match(carol, /^References: <firstfromcarol@remote\.test>/m)
  assert.match(carol, /^Return-Path: <>/m, 'sent with the null sender (RFC 3834 3.3)')
  assert.match(carol, /I am away; back on Monday\./)
  assert.equal((await box(bob)).length, 7, 'every message was kept')
  // the memory is the user's replicated data, bounded and expiring
  const memory = await store.listAttrs(bob, 'sieve/memory/')
  assert.equal(memory.length, 2)
})

test('redirect leaves through the queue with SRS and a loop mark; :copy keeps a copy; a loop is stopped', { skip: missing }, async (t) => {
  await setup(t)
  const fwd = await user('fwd', 'redirect "ext@remote.test";\r\n')
  const both = await user('both', 'require ["copy"];\r\nredirect :copy "ext2@remote.test";\r\n')
  await send({ from: 'sender@elsewhere.test', to: [fwd], subject: 'to forward' })
  await send({ from: 'sender@elsewhere.test', to: [both], subject: 'to copy' })
  const [m] = await received(x => x.includes('Subject: to forward'))
  assert.ok(m !== undefined, 'the redirect arrived')
  assert.match(m, /^Return-Path: <SRS0=[^=]+=[A-Z2-7]{2}=elsewhere\.test=sender@example\.com>/m, 'the envelope sender rewritten by SRS')
  assert.match(m, /^Delivered-To: ext@remote\.test/m)
  assert.match(m, /^X-Mailgrid-Redirected: fwd@example\.com/m)
  assert.equal((await box(fwd)).length, 0, 'no copy without :copy')
  const [c] = await received(x => x.includes('Subject: to copy'))
  assert.ok(c !== undefined)
  assert.equal((await box(both)).length, 1, ':copy keeps one')

  // two local users redirecting to each other: the message goes round a bounded number of times, then is kept
  const a = await user('ping', 'redirect "pong@example.com";\r\n')
  const b = await user('pong', 'redirect "ping@example.com";\r\n')
  await send({ from: 'sender@elsewhere.test', to: [a], subject: 'round and round' })
  const kept = [...await box(a), ...await box(b)]
  assert.equal(kept.length, 1, 'kept once where the loop was seen')
  assert.ok((kept[0].text.match(/^X-Mailgrid-Redirected:/gm) ?? []).length >= 2, 'it went round (each user\'s script ran) before the loop was seen')
})

test('fileinto with :create and flags, discard, editheader, reject in the SMTP reply and as a bounce', { skip: missing }, async (t) => {
  await setup(t)
  const u = await user('files', [
    'require ["fileinto", "mailbox", "imap4flags", "editheader", "reject"];',
    'if header :contains "subject" "report" { fileinto :create :flags "\\\\Flagged" "Reports/Daily"; stop; }',
    'if header :contains "subject" "spam" { discard; stop; }',
    'if header :contains "subject" "edit" { addheader "X-Edited" "yes"; deleteheader "X-Remove"; keep; stop; }',
    'if header :contains "subject" "refuse" { reject "We do not take these"; stop; }',
    ''
  ].join('\r\n'))
  const other = await user('other', null)
  await send({ from: 'x@remote.test', to: [u], subject: 'the daily report' })
  const reports = await box(u, 'Reports/Daily')
  assert.equal(reports.length, 1, 'filed into a mailbox :create made')
  assert.deepEqual(reports[0].flags, ['\\Flagged'])
  await send({ from: 'x@remote.test', to: [u], subject: 'spam spam' })
  await send({ from: 'x@remote.test', to: [u], subject: 'please edit', headers: 'X-Remove: me\r\n' })
  const inbox = await box(u)
  assert.equal(inbox.length, 1, 'the discarded message is not stored')
  assert.match(inbox[0].text, /^X-Edited: yes/m)
  assert.doesNotMatch(inbox[0].text, /X-Remove/)
  // one recipient: the reject is the SMTP reply
  await assert.rejects(send({ from: 'x@remote.test', to: [u], subject: 'refuse this' }), (err: Error) => /550[ -]5\.7\.1.*We do not take these/.test(err.message))
  // two recipients: the other gets it, the sender gets a bounce
  await send({ from: 'y@remote.test', to: [u, other], subject: 'refuse that' })
  assert.equal((await box(other)).length, 1)
  const [bounce] = await received(x => x.includes('Delivered-To: y@remote.test') && x.includes('We do not take these'))
  assert.ok(bounce !== undefined, 'the sender got a bounce')
  assert.match(bounce, /^Content-Type: multipart\/report; report-type=delivery-status/m)
  assert.equal((await box(u)).length, 1, 'nothing more stored for the script\'s user')
})

test('hostile scripts are refused or bounded, and the delivery still succeeds', { skip: missing }, async (t) => {
  await setup(t)
  const u = await user('hostile', null)
  const refusedOrStored = async (name: string, source: string): Promise<'refused' | 'stored'> => {
    try {
      await scripts.put(u, name, source)
      return 'stored'
    } catch {
      return 'refused'
    }
  }
  const deep = 'if true { '.repeat(200) + 'keep;' + ' }'.repeat(200)
  assert.equal(await refusedOrStored('deep', deep), 'refused', 'deep nesting')
  assert.equal(await refusedOrStored('huge', 'keep;\r\n' + '# filler\r\n'.repeat(110_000)), 'refused', 'a 1 MB script')
  const redirects = Array.from({ length: 10_000 }, (_, i) => `redirect "r${i}@remote.test";`).join('\r\n')
  assert.equal(await refusedOrStored('redirects', redirects), 'refused', '10,000 redirects')

  // stored anyway (as a script from an older version would be, straight in the user's attributes): each runs
  // bounded, and the message is delivered
  const hostile: Array<[string, string]> = [
    ['deep', deep],
    ['loopa', 'require ["include"];\r\ninclude :personal "loopb";\r\nkeep;\r\n'],
    ['loopb', 'require ["include"];\r\ninclude :personal "loopa";\r\n'],
    ['regex', 'require ["regex"];\r\nif header :regex "subject" "^(a+)+$" { discard; }\r\nif header :regex "subject" "^(a|a)*(a|aa)*b$" { discard; }\r\n'],
    ['redirects', Array.from({ length: 10_000 }, (_, i) => `redirect "r${i}@remote.test";`).join('\r\n')]
  ]
  for (const [name, source] of hostile) await store.setAttrs(u, [{ key: `sieve/script/${name}`, value: source.slice(0, 250_000) }])
  let n = 0
  for (const name of ['deep', 'loopa', 'regex', 'redirects']) {
    await store.setAttrs(u, [{ key: 'sieve/active', value: name }])
    await send({ from: 'x@remote.test', to: [u], subject: name === 'regex' ? 'a'.repeat(900) + '!' : `hostile ${name}` })
    n++
    const stored = await box(u)
    if (name !== 'redirects') assert.equal(stored.length, n, `the message under the "${name}" script was kept`)
    else n = stored.length
  }
  await queueEmpty()
  const redirected = (await postfix.messages()).filter(m => /Delivered-To: r\d+@remote\.test/.test(m.raw.toString('latin1'))).length
  assert.ok(redirected <= 4, `at most MAXREDIRECTS (4) redirects left, not ${redirected}`)
})

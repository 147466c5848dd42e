// The order of the untagged updates a session gets when other sessions change its mailbox while it runs a command;
// both cases were found by the stress tester (test/stress/imap-stress.ts):
// - an EXPUNGE may name a message only the EXISTS of the same flush announces (a copy that arrived with \Deleted and
//   was expunged at once): the EXISTS goes first, so every EXPUNGE number is within what the client knows (RFC 3501
//   section 7.4.1, 7.3.1);
// - another session's flag change that committed while this session's STORE ran is older than what the STORE
//   reports; reported after it, it would take the client's copy back in time (its MODSEQ goes backwards, RFC 7162
//   section 3.1). It is not reported; after .SILENT the message is reported with its flags as they are now.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, RawImap, simpleMessage, USER, sessionPair } from './helpers.ts'
import { parseResponses } from './wire.ts'
import type { Store } from '../../store/index.ts'
import { createAuthenticator } from '../../node/auth.ts'
import { AuthThrottle } from '../../node/limits.ts'
import { createImapServer } from '../../node/imap/index.ts'

test('an EXPUNGE never names a message beyond what the client was told exists', async (t) => {
  const f = await fixture(t)
  for (let i = 1; i <= 3; i++) await f.store.append(USER, 'INBOX', { raw: simpleMessage(`m${i}`) })
  const { port } = await f.server()
  const [a, b] = await sessionPair(t, port)
  assert.match(await a.cmd('SELECT INBOX'), /\* 3 EXISTS/)
  await b.cmd('SELECT INBOX')
  // b marks message 3 \Deleted and copies it into INBOX: the copy (4) arrives with \Deleted; a has not been told of it
  assert.match(await b.cmd('STORE 3 +FLAGS.SILENT (\\Deleted)'), /OK/)
  assert.match(await b.cmd('COPY 3 INBOX'), /OK \[COPYUID/)
  // a's EXPUNGE removes 3 and the copy it has not heard of yet
  const reply = await a.cmd('EXPUNGE', 'x1')
  let exists = 3
  let expunged = 0
  for (const r of parseResponses(reply)) {
    if (r.tag !== '*' || !/^\d+$/.test(String(r.items[0]))) continue
    const n = Number(r.items[0])
    if (r.items[1] === 'EXISTS') {
      assert.ok(n >= exists, `EXISTS ${n} below ${exists}`)
      exists = n
    }
    if (r.items[1] === 'EXPUNGE') {
      assert.ok(n >= 1 && n <= exists, `EXPUNGE ${n} with ${exists} messages known in ${JSON.stringify(reply)}`)
      exists--
      expunged++
    }
  }
  assert.equal(expunged, 2, reply)
  assert.equal(exists, 2)
  assert.match(await a.cmd('FETCH 1:* UID', 'x2'), /\* 2 FETCH \(UID 2\)\r\nx2 OK/)
})

test('a FETCH of another session\'s flag change never comes before the EXISTS that announces the message', async (t) => {
  const f = await fixture(t)
  await f.store.append(USER, 'INBOX', { raw: simpleMessage('m1') })
  const { port } = await f.server()
  const [a, b] = await sessionPair(t, port)
  assert.match(await a.cmd('SELECT INBOX'), /\* 1 EXISTS/)
  await b.cmd('SELECT INBOX')
  // b appends a message and flags it: a holds both changes until its next command
  assert.match(await b.cmd(`APPEND INBOX {${simpleMessage('m2').length}+}\r\n${simpleMessage('m2').toString()}`), /OK \[APPENDUID/)
  assert.match(await b.cmd('STORE 2 +FLAGS.SILENT ($seen-by-b)'), /OK/)
  const reply = await a.cmd('FETCH 1 (FLAGS)', 'f1')
  const exists = reply.indexOf('* 2 EXISTS')
  const fetch2 = reply.indexOf('* 2 FETCH')
  assert.ok(exists >= 0 && fetch2 > exists, reply)
})

test('a VANISHED never names a UID the client was not told of (QRESYNC)', async (t) => {
  const f = await fixture(t)
  for (let i = 1; i <= 2; i++) await f.store.append(USER, 'INBOX', { raw: simpleMessage(`m${i}`) })
  const { port } = await f.server()
  const [a, b] = await sessionPair(t, port)
  await a.cmd('ENABLE QRESYNC')
  await a.cmd('SELECT INBOX')
  await b.cmd('SELECT INBOX')
  await b.cmd('STORE 2 +FLAGS.SILENT (\\Deleted)')
  await b.cmd('COPY 2 INBOX')
  const reply = await a.cmd('EXPUNGE', 'v1')
  // the copy (UID 3) is announced by EXISTS before the VANISHED that names it
  assert.match(reply, /^\* VANISHED 2\r\n\* 2 EXISTS\r\n(\* 2 RECENT\r\n)?\* VANISHED 3\r\nv1 OK/)
})

/** The store, with one more change by "another session" run inside this session's next STORE of `trigger`. */
function racingStore (store: Store, trigger: string, other: string[]): Store {
  return new Proxy(store, {
    get (target, key, receiver) {
      const value = Reflect.get(target, key, receiver)
      if (key !== 'storeFlags' || typeof value !== 'function') return typeof value === 'function' ? value.bind(target) : value
      return async (user: string, mailbox: string, uids: number[], op: 'add' | 'remove' | 'set', flags: string[], opts?: object) => {
        if (flags.includes(trigger)) await target.storeFlags(user, mailbox, uids, 'add', other)
        return await target.storeFlags(user, mailbox, uids, op, flags, opts)
      }
    }
  })
}

for (const silent of [false, true]) {
  test(`a change older than this session's STORE${silent ? '.SILENT' : ''} is not reported after it`, async (t) => {
    const f = await fixture(t)
    await f.store.append(USER, 'INBOX', { raw: simpleMessage('m1') })
    const { port } = await f.server({}, racingStore(f.store, '$mine', ['$other']))
    const a = await RawImap.connect(port)
    t.after(() => { a.close() })
    await a.login()
    await a.cmd('ENABLE CONDSTORE')
    await a.cmd('SELECT INBOX')
    const reply = await a.cmd(`STORE 1 +FLAGS${silent ? '.SILENT' : ''} ($mine)`, 's1')
    const after = reply + await a.cmd('NOOP', 's2')
    const fetches = parseResponses(after).filter(r => r.tag === '*' && r.items[1] === 'FETCH').map(r => {
      const items = r.items[2] as unknown[]
      const flags = items[items.indexOf('FLAGS') + 1] as string[] | undefined
      const modseq = Number((items[items.indexOf('MODSEQ') + 1] as string[])[0])
      return { flags, modseq }
    })
    assert.ok(fetches.length >= 1, after)
    let last = 0
    for (const f of fetches) {
      assert.ok(f.modseq >= last, `MODSEQ ${f.modseq} after ${last}: ${after}`)
      last = f.modseq
      if (f.flags !== undefined) assert.ok(f.flags.includes('$mine') && f.flags.includes('$other'), `FLAGS (${f.flags.join(' ')}) in ${after}`)
    }
    if (silent) assert.ok(fetches.some(f => f.flags !== undefined), `the message is reported with its flags now: ${after}`)
    assert.match(await a.cmd('FETCH 1 (FLAGS)', 's3'), /\* 1 FETCH \(FLAGS \(\$other \$mine( \\Recent)?\) MODSEQ/)
  })
}

test('on a grid, a session whose user moved to another node ends with BYE [UNAVAILABLE] at its next command', async (t) => {
  const f = await fixture(t)
  let here = true
  const auth = createAuthenticator({ directory: f.store, throttle: new AuthThrottle({ perIp: 1000, perAccount: 1000 }) })
  const server = createImapServer({ store: f.store, auth, logger: f.logger, tls: f.tls, servesUser: () => here }, { endpoint: { host: '127.0.0.1', port: 0 }, allowInsecureAuthOnLoopback: true })
  const { port } = await server.listen()
  t.after(async () => { await server.close() })
  const a = await RawImap.connect(port)
  t.after(() => { a.close() })
  await a.login()
  assert.match(await a.cmd('SELECT INBOX', 'm1'), /^m1 OK/m)
  here = false // the ring moved the user's primary elsewhere
  assert.match(await a.client.cmd('m2 NOOP', (b) => b.includes('* BYE')), /^\* BYE \[UNAVAILABLE\]/m)
  assert.equal(await a.client.waitClosed(), true)
})

test('a message that arrives while SELECT reads its listing reaches the view (found by the stress tester)', async (t) => {
  const f = await fixture(t)
  for (let i = 1; i <= 2; i++) await f.store.append(USER, 'INBOX', { raw: simpleMessage(`m${i}`) })
  // the listing is read, then (before SELECT answers) a third message commits: the listing cannot hold it, and the
  // session is not selected yet when its event arrives
  let arrive: (() => Promise<void>) | null = null
  const store = new Proxy(f.store, {
    get (target, key, receiver) {
      const value = Reflect.get(target, key, receiver)
      if (key !== 'listFlags' && key !== 'listMessages') return typeof value === 'function' ? value.bind(target) : value
      return async (...args: unknown[]) => {
        const listing = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args)
        if (arrive !== null) { const a = arrive; arrive = null; await a() }
        return listing
      }
    },
  }) as Store
  const { port } = await f.server({}, store)
  const c = await RawImap.connect(port)
  t.after(() => { c.close() })
  await c.login()
  arrive = async () => { await f.store.append(USER, 'INBOX', { raw: simpleMessage('m3') }) }
  // SELECT answers from its listing (2); the third is announced after, by the SELECT's own flush or the NOOP
  const told = await c.cmd('SELECT INBOX') + await c.cmd('NOOP')
  const exists = [...told.matchAll(/\* (\d+) EXISTS/g)].map(m => Number(m[1]))
  assert.deepEqual([exists[0], exists.at(-1)], [2, 3], told)
  const uids = (await c.cmd('UID FETCH 1:* (UID)')).match(/UID \d+/g)
  assert.equal(uids?.length, 3)
})

test('after STORE .SILENT, a message whose older flags the same command reported is reported again (RFC 3501 6.4.6)', async (t) => {
  // Found by the stress tester: b's change waits in a's view; a's STORE .SILENT first reports it (the flush before
  // the command), then changes the message and said nothing more. The last FETCH a read lacked its own flag: for a
  // client that FETCH may as well describe the state after its STORE ("the intent is that the status of the flags
  // is determinate without a race condition").
  const f = await fixture(t)
  for (let i = 1; i <= 2; i++) await f.store.append(USER, 'INBOX', { raw: simpleMessage(`m${i}`) })
  const { port } = await f.server()
  const [a, b] = await sessionPair(t, port)
  await a.cmd('SELECT INBOX')
  await b.cmd('SELECT INBOX')
  assert.match(await b.cmd('STORE 1:2 +FLAGS.SILENT (\\Flagged)'), /OK/)
  const reply = await a.cmd('STORE 1 +FLAGS.SILENT ($mine)', 's1')
  const last = new Map<number, string[]>()
  for (const r of parseResponses(reply)) {
    if (r.tag !== '*' || r.items[1] !== 'FETCH') continue
    const items = r.items[2] as unknown[]
    const at = items.indexOf('FLAGS')
    if (at >= 0) last.set(Number(r.items[0]), (items[at + 1] as string[]).filter(x => x !== '\\Recent'))
  }
  // message 1: b's change was reported in this command, so its state after the STORE follows it
  assert.deepEqual(last.get(1)?.sort(), ['$mine', '\\Flagged'], reply)
  // message 2 (not stored) keeps b's change, reported once
  assert.deepEqual(last.get(2), ['\\Flagged'], reply)
  assert.match(reply, /s1 OK/)
  // nothing older is pending: the next command reports nothing for message 1
  assert.doesNotMatch(await a.cmd('NOOP', 's2'), /\* 1 FETCH/)
})

// \Recent (RFC 3501 sections 2.3.2, 6.3.1, 6.3.2, 6.3.10, 6.4.4, 7.3.2; RFC 9051 dropped it) and keywords new to a
// mailbox (RFC 3501 section 7.2.6), with a second "observer" session wherever the rule is about other sessions.
// Issue 12, findings 1 and 2.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { python } from '../helpers/client.ts'
import { fixture, PASSWORD, RawImap, simpleMessage, USER } from './helpers.ts'
import { fetchResponses, parseResponses } from './wire.ts'

type TestContext = Parameters<typeof fixture>[0]

async function sessions (t: TestContext, n: number): Promise<{ f: Awaited<ReturnType<typeof fixture>>, port: number, c: RawImap[] }> {
  const f = await fixture(t)
  const { port } = await f.server()
  const c: RawImap[] = []
  for (let i = 0; i < n; i++) {
    const s = await RawImap.connect(port)
    t.after(async () => { s.close() })
    await s.login()
    c.push(s)
  }
  return { f, port, c }
}

/** The `* n RECENT` numbers of a reply, in order. */
function recentCounts (reply: string): number[] {
  return [...reply.matchAll(/^\* (\d+) RECENT\r$/gm)].map((m) => Number(m[1]))
}

/** UID → FLAGS of a FETCH reply. */
function flagsByUid (reply: string): Map<number, string[]> {
  const out = new Map<number, string[]>()
  for (const items of fetchResponses(reply).values()) out.set(Number(items.get('UID')), items.get('FLAGS') as string[])
  return out
}

test('\\Recent with imaplib: the first session to select a mailbox has its new messages as recent, a second one not', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server()
  // RFC 3501 section 2.3.2: "This session is the first session to have been notified about this message"; section
  // 6.3.1: SELECT answers RECENT; section 6.4.4: RECENT, NEW (RECENT UNSEEN) and OLD (NOT RECENT).
  const script = `
import imaplib, json, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
a = imaplib.IMAP4('127.0.0.1', port); a.login(user, password)
a.create('Fresh')
for subject in ('one', 'two', 'three'):
    a.append('Fresh', '(\\\\Seen)' if subject == 'one' else None, None, ('Subject: %s\\r\\n\\r\\nbody\\r\\n' % subject).encode())
out = {}
out['status'] = a.status('Fresh', '(MESSAGES RECENT)')[1][0].decode()
a.select('Fresh')
out['a_recent'] = [x.decode() for x in a.response('RECENT')[1]]
out['a_flags'] = [d.decode() for d in a.fetch('1:*', '(UID FLAGS)')[1]]
out['a_recent_search'] = a.search(None, 'RECENT')[1][0].decode()
out['a_new'] = a.search(None, 'NEW')[1][0].decode()
out['a_old'] = a.search(None, 'OLD')[1][0].decode()
b = imaplib.IMAP4('127.0.0.1', port); b.login(user, password)
b.select('Fresh')
out['b_recent'] = [x.decode() for x in b.response('RECENT')[1]]
out['b_flags'] = [d.decode() for d in b.fetch('1:*', '(FLAGS)')[1]]
out['b_recent_search'] = b.search(None, 'RECENT')[1][0].decode()
out['b_old'] = b.search(None, 'OLD')[1][0].decode()
b.logout(); a.logout()
print(json.dumps(out))
`
  const result = await python(script, [String(port), USER, PASSWORD])
  assert.equal(result.code, 0, result.stderr)
  const out = JSON.parse(result.stdout) as Record<string, unknown>
  assert.equal(out.status, 'Fresh (MESSAGES 3 RECENT 3)', 'STATUS RECENT: what the next session to select it will have as recent')
  assert.deepEqual(out.a_recent, ['3'])
  assert.deepEqual(out.a_flags, ['1 (UID 1 FLAGS (\\Seen \\Recent))', '2 (UID 2 FLAGS (\\Recent))', '3 (UID 3 FLAGS (\\Recent))'])
  assert.equal(out.a_recent_search, '1 2 3')
  assert.equal(out.a_new, '2 3', 'NEW is RECENT UNSEEN')
  assert.equal(out.a_old, '')
  assert.deepEqual(out.b_recent, ['0'], 'the first session took them: nobody else sees them as recent')
  assert.deepEqual(out.b_flags, ['1 (FLAGS (\\Seen))', '2 (FLAGS ())', '3 (FLAGS ())'])
  assert.equal(out.b_recent_search, '')
  assert.equal(out.b_old, '1 2 3')
})

test('arrivals are recent in exactly one session: the first to have the mailbox selected read-write, then the next', async (t) => {
  const { f, c: [a, b, x] } = await sessions(t, 3)
  await a!.cmd('SELECT INBOX')
  await b!.cmd('SELECT INBOX')
  // A delivery while both have INBOX selected: both hear EXISTS, only the first to have selected it gets it recent.
  await f.store.deliver(simpleMessage('d1'), [{ user: USER, prefix: '' }])
  const heardA = await a!.cmd('NOOP')
  const heardB = await b!.cmd('NOOP')
  assert.match(heardA, /\* 1 EXISTS\r\n\* 1 RECENT\r\n/, 'RFC 3501 section 7.3.2: RECENT goes with the new EXISTS')
  assert.match(heardB, /\* 1 EXISTS\r\n\* 0 RECENT\r\n/)
  assert.deepEqual(flagsByUid(await a!.cmd('FETCH 1 (UID FLAGS)')).get(1), ['\\Recent'])
  assert.deepEqual(flagsByUid(await b!.cmd('FETCH 1 (UID FLAGS)')).get(1), [])

  // COPY into a mailbox selected elsewhere (here by A, from X's session in another mailbox): the copies are recent
  // for A alone, the one that has it selected first.
  await f.store.append(USER, 'Archive', { raw: simpleMessage('arch') })
  await x!.cmd('SELECT Archive')
  assert.match(await x!.cmd('COPY 1 INBOX', 'x1'), /^x1 OK \[COPYUID \d+ 1 2\]/m)
  assert.match(await a!.cmd('NOOP'), /\* 2 EXISTS\r\n\* 2 RECENT\r\n/)
  assert.match(await b!.cmd('NOOP'), /\* 2 EXISTS\r\n\* 0 RECENT\r\n/)

  // An APPEND from X into INBOX: A's again, whoever appended it.
  assert.match(await x!.cmd(`APPEND INBOX {${simpleMessage('app').length}+}\r\n${simpleMessage('app').toString()}`, 'x2'), /^x2 OK/m)
  assert.match(await a!.cmd('NOOP'), /\* 3 EXISTS\r\n\* 3 RECENT\r\n/)
  assert.deepEqual([...flagsByUid(await a!.cmd('FETCH 1:* (UID FLAGS)')).values()].map((f) => f.includes('\\Recent')), [true, true, true])

  // A leaves INBOX: B is now the first session there and takes what arrives.
  await a!.cmd('UNSELECT')
  await f.store.deliver(simpleMessage('d2'), [{ user: USER, prefix: '' }])
  assert.match(await b!.cmd('NOOP'), /\* 4 EXISTS\r\n\* 1 RECENT\r\n/)
  assert.deepEqual(flagsByUid(await b!.cmd('UID FETCH 4 (FLAGS)')).get(4), ['\\Recent'])
  // A comes back: what it had is gone for good (recent belongs to the session that was told), nothing new for it.
  assert.deepEqual(recentCounts(await a!.cmd('SELECT INBOX')), [0])

  // Nobody has INBOX selected when the next one arrives: the next session to select it gets it (and STATUS counts it).
  await b!.cmd('CLOSE')
  await a!.cmd('UNSELECT')
  await f.store.deliver(simpleMessage('d3'), [{ user: USER, prefix: '' }])
  assert.match(await x!.cmd('STATUS INBOX (RECENT)', 's1'), /\* STATUS INBOX \(RECENT 1\)\r\n/)
  const selected = await b!.cmd('SELECT INBOX')
  assert.deepEqual(recentCounts(selected), [1])
  assert.deepEqual([...flagsByUid(await b!.cmd('UID FETCH 1:* (FLAGS)')).entries()].filter(([, f]) => f.includes('\\Recent')).map(([uid]) => uid), [5])
  assert.match(await b!.cmd('STATUS INBOX (RECENT)', 's2'), /\(RECENT 1\)/, 'STATUS of the selected mailbox: this session\'s recent messages')
  assert.match(await x!.cmd('STATUS INBOX (RECENT)', 's3'), /\(RECENT 0\)/)

  // An expunged recent message leaves the count.
  await b!.cmd('UID STORE 5 +FLAGS.SILENT (\\Deleted)')
  assert.match(await b!.cmd('EXPUNGE', 'e1'), /\* 5 EXPUNGE\r\ne1 OK/)
  await f.store.deliver(simpleMessage('d4'), [{ user: USER, prefix: '' }])
  assert.match(await b!.cmd('NOOP'), /\* 5 EXISTS\r\n\* 1 RECENT\r\n/)
})

test('EXAMINE sees unclaimed messages as recent and leaves them so (RFC 3501 section 6.3.2); IMAP4rev2 has no \\Recent', async (t) => {
  const { f, c: [reader, writer, rev2] } = await sessions(t, 3)
  await f.store.createMailbox(USER, 'Box')
  await reader!.cmd('SELECT Sent') // a record of the user's arrivals exists from here on: messages below are new
  await f.store.append(USER, 'Box', { raw: simpleMessage('b1') })
  await f.store.append(USER, 'Box', { raw: simpleMessage('b2') })
  const examined = await reader!.cmd('EXAMINE Box')
  assert.deepEqual(recentCounts(examined), [2])
  assert.deepEqual([...flagsByUid(await reader!.cmd('FETCH 1:* (UID FLAGS)')).values()], [['\\Recent'], ['\\Recent']])
  // RFC 9051: an IMAP4rev2 session gets no RECENT, no \Recent, and takes nothing from IMAP4rev1 sessions.
  assert.match(await rev2!.cmd('ENABLE IMAP4rev2', 'v0'), /ENABLED IMAP4rev2/)
  const selected2 = await rev2!.cmd('SELECT Box')
  assert.doesNotMatch(selected2, /RECENT/)
  assert.deepEqual([...flagsByUid(await rev2!.cmd('FETCH 1:* (UID FLAGS)')).values()], [[], []])
  await f.store.append(USER, 'Box', { raw: simpleMessage('b3') })
  assert.doesNotMatch(await rev2!.cmd('NOOP'), /RECENT/)
  // "EXAMINE MUST NOT cause messages to lose the \Recent flag": the first read-write SELECT still has all three.
  assert.deepEqual(recentCounts(await writer!.cmd('SELECT Box')), [3])
  assert.deepEqual(recentCounts(await reader!.cmd('EXAMINE Box')), [0], 'claimed by the SELECT now')
  assert.match(await writer!.cmd('SEARCH RECENT', 'r1'), /\* SEARCH 1 2 3\r\n/)
})

test('a keyword new to the mailbox: FLAGS and PERMANENTFLAGS before any FETCH that carries it, in every session (RFC 3501 section 7.2.6)', async (t) => {
  const { f, c: [a, b, c] } = await sessions(t, 3)
  for (let i = 1; i <= 2; i++) await f.store.append(USER, 'INBOX', { raw: simpleMessage(`k${i}`) })
  await a!.cmd('SELECT INBOX')
  await b!.cmd('SELECT INBOX')
  await c!.cmd('EXAMINE INBOX')

  // The session that stores it: FLAGS, then PERMANENTFLAGS, then the FETCH.
  const stored = parseResponses(await a!.cmd('STORE 1 +FLAGS ($Project)', 'k1'))
  const order = stored.map((r) => r.items[0] === 'FLAGS' ? 'FLAGS' : r.items[1] === 'FETCH' ? 'FETCH' : String(r.items[1]).startsWith('[PERMANENTFLAGS') ? 'PERMANENTFLAGS' : r.tag)
  assert.deepEqual(order, ['FLAGS', 'PERMANENTFLAGS', 'FETCH', 'k1'])
  assert.ok((stored[0]!.items[1] as string[]).includes('$Project'))
  assert.match(String(stored[1]!.items[1]), /^\[PERMANENTFLAGS \([^)]*\$Project[^)]*\\\*\)\]$/, 'new keywords may still be created')

  // An observer with the mailbox selected: told before the unsolicited FETCH.
  const heard = await b!.cmd('NOOP', 'k2')
  assert.match(heard, /^\* FLAGS \([^)]*\$Project[^)]*\)\r\n\* OK \[PERMANENTFLAGS \([^)]*\$Project[^)]*\\\*\)\][^\r]*\r\n\* 1 FETCH \(FLAGS \(\$Project\)/)
  // A read-only observer: PERMANENTFLAGS is empty (nothing may be changed).
  assert.match(await c!.cmd('NOOP', 'k3'), /^\* FLAGS \([^)]*\$Project[^)]*\)\r\n\* OK \[PERMANENTFLAGS \(\)\][^\r]*\r\n\* 1 FETCH /)
  // Once told, not again.
  assert.doesNotMatch(await a!.cmd('STORE 2 +FLAGS ($Project)', 'k4'), /\* FLAGS/)
  assert.doesNotMatch(await b!.cmd('NOOP', 'k5'), /\* FLAGS/)

  // APPEND from elsewhere with a keyword nobody knows: the EXISTS session learns of it before a FETCH shows it.
  await f.store.append(USER, 'INBOX', { raw: simpleMessage('k3'), flags: ['$Fresh'] })
  assert.match(await b!.cmd('NOOP', 'k6'), /\* 3 EXISTS\r\n/)
  const fetched = await b!.cmd('FETCH 3 (FLAGS)', 'k7')
  assert.match(fetched, /^\* FLAGS \([^)]*\$Fresh[^)]*\)\r\n\* OK \[PERMANENTFLAGS [^\r]*\r\n\* 3 FETCH \(FLAGS \(\$Fresh\)\)\r\nk7 OK/)
  // A new SELECT lists every keyword in use from the start.
  assert.match(await b!.cmd('SELECT INBOX', 'k8'), /\* FLAGS \(\\Answered \\Flagged \\Deleted \\Seen \\Draft (\$Project \$Fresh|\$Fresh \$Project)\)\r\n/)
})

test('a message that arrives while SELECT writes its responses is announced after them, not missed', async (t) => {
  const f = await fixture(t)
  await f.store.append(USER, 'INBOX', { raw: simpleMessage('before') })
  // The store as the server sees it: the LIST that an IMAP4rev2 SELECT sends (RFC 9051 section 6.3.2) reads the
  // mailbox list, and a delivery lands just then.
  let armed = false
  const store = new Proxy(f.store, {
    get (target, key, receiver) {
      const value = Reflect.get(target, key, receiver)
      if (key !== 'listMailboxes' || typeof value !== 'function') return typeof value === 'function' ? value.bind(target) : value
      return async (user: string) => {
        const mailboxes = await target.listMailboxes(user)
        if (armed) {
          armed = false
          await target.deliver(simpleMessage('during'), [{ user: USER, prefix: '' }])
        }
        return mailboxes
      }
    },
  })
  const { port } = await f.server({}, store)
  const c = await RawImap.connect(port)
  t.after(async () => { c.close() })
  await c.login()
  await c.cmd('ENABLE IMAP4rev2')
  armed = true
  const selected = await c.cmd('SELECT INBOX', 's1')
  assert.match(selected, /\* 1 EXISTS\r\n[\s\S]*\* LIST [^\r]*\r\n\* 2 EXISTS\r\ns1 OK/, selected)
  assert.match(await c.cmd('UID FETCH 2 (UID)', 'f1'), /\* 2 FETCH \(UID 2\)\r\nf1 OK/)
})

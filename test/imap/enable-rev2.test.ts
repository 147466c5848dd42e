// ENABLE (RFC 5161), what changes after ENABLE IMAP4rev2 (RFC 9051: no RECENT, ESEARCH for SEARCH, LIST in
// the SELECT response, \NonExistent, STATUS SIZE and DELETED), and CONDSTORE/QRESYNC resynchronisation
// over a raw socket (RFC 7162: SELECT ... (QRESYNC (uidvalidity modseq known-uids)) with VANISHED (EARLIER)).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, RawImap, simpleMessage, USER } from './helpers.ts'

test('ENABLE: only in the authenticated state, answers what it newly enabled, ignores the unknown', async (t) => {
  const f = await fixture(t)
  await f.store.append(USER, 'INBOX', { raw: simpleMessage('one') })
  await f.store.createMailbox(USER, 'Entwürfe')
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  assert.match(await c.cmd('ENABLE CONDSTORE', 'e0'), /^e0 BAD/m, 'not before login')
  await c.login()
  assert.match(await c.cmd('ENABLE X-UNKNOWN', 'e1'), /^\* ENABLED\r\ne1 OK/m, 'unknown extensions are ignored')
  assert.match(await c.cmd('LIST "" Entw*', 'e2'), / Entw&APw-rfe\r\n/, 'modified UTF-7 before UTF8=ACCEPT')
  assert.match(await c.cmd('ENABLE utf8=accept qresync', 'e3'), /^\* ENABLED UTF8=ACCEPT QRESYNC\r\ne3 OK/m)
  assert.match(await c.cmd('ENABLE QRESYNC CONDSTORE', 'e4'), /^\* ENABLED\r\ne4 OK/m, 'QRESYNC implies CONDSTORE; nothing new')
  assert.ok((await c.cmd('LIST "" Entw*', 'e5')).includes(`"${Buffer.from('Entwürfe').toString('latin1')}"`), 'UTF-8 names after UTF8=ACCEPT')
  await c.cmd('SELECT INBOX')
  assert.match(await c.cmd('FETCH 1 FLAGS', 'e6'), /\* 1 FETCH \(FLAGS \(\\Recent\) MODSEQ \(\d+\)\)/, 'CONDSTORE is on: FLAGS carry MODSEQ')
  assert.match(await c.cmd('ENABLE IMAP4rev2', 'e7'), /^e7 BAD/m, 'not in the selected state')
})

test('after ENABLE IMAP4rev2: no RECENT, a LIST in SELECT, ESEARCH for SEARCH, \\NonExistent, STATUS SIZE and DELETED', async (t) => {
  const f = await fixture(t)
  await f.store.append(USER, 'INBOX', { raw: simpleMessage('one') })
  await f.store.append(USER, 'INBOX', { raw: simpleMessage('two'), flags: ['\\Deleted'] })
  await f.store.createMailbox(USER, 'A/B')
  // A subscription outlives its mailbox (RFC 3501 section 6.3.6).
  await f.store.createMailbox(USER, 'Gone')
  await f.store.setSubscribed(USER, 'Gone', true)
  await f.store.deleteMailbox(USER, 'Gone')
  const { port } = await f.server()
  const rev1 = await RawImap.connect(port)
  const rev2 = await RawImap.connect(port)
  t.after(() => { rev1.close(); rev2.close() })
  await rev1.login()
  await rev2.login()
  assert.match(rev2.greeting, /IMAP4rev1 IMAP4rev2/)
  assert.match(await rev2.cmd('ENABLE IMAP4rev2', 'v0'), /^\* ENABLED IMAP4rev2\r\n/m)

  const old = await rev1.cmd('SELECT INBOX')
  assert.match(old, /\* 2 RECENT\r\n/, 'the first IMAP4rev1 session to select the mailbox has its messages as recent')
  assert.match(old, /\[UNSEEN 1\]/)
  assert.doesNotMatch(old, /\* LIST/)
  const selected = await rev2.cmd('SELECT INBOX', 'v1')
  assert.doesNotMatch(selected, /RECENT|UNSEEN/)
  assert.match(selected, /\* 2 EXISTS\r\n/)
  assert.match(selected, /\* LIST \(\\HasNoChildren\) "\/" INBOX\r\n/, 'RFC 9051 section 6.3.2: LIST is required')
  assert.match(selected, /\[UIDVALIDITY \d+\]/)
  assert.match(selected, /\[UIDNEXT 3\]/)
  assert.match(selected, /\[PERMANENTFLAGS \(/)
  assert.match(await rev2.cmd('SELECT Sent', 'v2'), /\* OK \[CLOSED\][^\r\n]*\r\n[\s\S]*\* LIST \(\\Sent \\HasNoChildren\) "\/" Sent\r\n/)
  await rev2.cmd('SELECT INBOX')

  assert.match(await rev1.cmd('SEARCH DELETED', 's1'), /\* SEARCH 2\r\n/)
  assert.match(await rev2.cmd('SEARCH DELETED', 's2'), /\* ESEARCH \(TAG "s2"\) ALL 2\r\n/, 'RFC 9051: ESEARCH without RETURN')
  assert.match(await rev2.cmd('UID SEARCH ALL', 's3'), /\* ESEARCH \(TAG "s3"\) UID ALL 1:2\r\n/)
  assert.match(await rev2.cmd('SEARCH KEYWORD none', 's4'), /\* ESEARCH \(TAG "s4"\)\r\n/)

  // The store creates parents with their children, so a parent is a real mailbox (no \Noselect prefix).
  assert.match(await rev2.cmd('LIST "" %', 'l3'), /\* LIST \(\\HasChildren\) "\/" A\r\n/)
  // A subscribed name that does not exist, and \Subscribed only when asked for.
  const subscribed = await rev2.cmd('LIST (SUBSCRIBED) "" *', 'l4')
  assert.match(subscribed, /\* LIST \(\\NonExistent \\HasNoChildren \\Subscribed\) "\/" Gone\r\n/)
  assert.doesNotMatch(await rev2.cmd('LIST "" Gone', 'l5'), /\* LIST/, 'a missing name is not listed without SUBSCRIBED')
  assert.doesNotMatch(await rev2.cmd('LIST "" INBOX', 'l6'), /\\Subscribed/)
  await rev2.cmd('SUBSCRIBE INBOX')
  assert.match(await rev2.cmd('LIST "" INBOX RETURN (SUBSCRIBED)', 'l7'), /\* LIST \(\\HasNoChildren \\Subscribed\) "\/" INBOX/)

  const box = (await f.store.getMailbox(USER, 'INBOX'))!
  assert.match(await rev2.cmd('STATUS INBOX (MESSAGES SIZE DELETED UNSEEN)', 'st'), new RegExp(`\\* STATUS INBOX \\(MESSAGES 2 SIZE ${box.size} DELETED 1 UNSEEN 2\\)`))
  assert.match(await rev2.cmd('LIST "" INBOX RETURN (STATUS (DELETED SIZE))', 'ls'), new RegExp(`\\* STATUS INBOX \\(DELETED 1 SIZE ${box.size}\\)`))
})

test('CONDSTORE and QRESYNC on a raw socket: resync after changes, VANISHED (EARLIER), MODIFIED', async (t) => {
  const f = await fixture(t)
  for (let i = 1; i <= 6; i++) await f.store.append(USER, 'INBOX', { raw: simpleMessage(`q${i}`) })
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  await c.login()
  assert.match(await c.cmd('SELECT INBOX (QRESYNC (1 1))', 'q0'), /^q0 BAD/m, 'QRESYNC must be enabled first')
  const first = await c.cmd('SELECT INBOX (CONDSTORE)', 'q1')
  const uidValidity = Number(/UIDVALIDITY (\d+)/.exec(first)![1])
  const modseq = Number(/HIGHESTMODSEQ (\d+)/.exec(first)![1])
  assert.match(await c.cmd('FETCH 1 (FLAGS)', 'q2'), /MODSEQ \(\d+\)/, 'CONDSTORE turned on by SELECT (CONDSTORE)')
  await c.cmd('LOGOUT')

  // Changes made while the client is away: flags on 2 and 5, expunges of 3 and 6, a new message 7.
  const box = (await f.store.getMailbox(USER, 'INBOX'))!
  await f.store.storeFlags(USER, box.id, [2], 'add', ['\\Seen'])
  await f.store.storeFlags(USER, box.id, [5], 'add', ['$Done'])
  await f.store.expunge(USER, box.id, [3, 6])
  await f.store.append(USER, 'INBOX', { raw: simpleMessage('q7') })

  const d = await RawImap.connect(port)
  t.after(() => d.close())
  await d.login()
  await d.cmd('ENABLE QRESYNC')
  const resync = await d.cmd(`SELECT INBOX (QRESYNC (${uidValidity} ${modseq} 1:5 (1:3 1:3)))`, 'r1')
  assert.match(resync, /\* VANISHED \(EARLIER\) 3\r\n/, 'only expunged UIDs within known-uids')
  assert.match(resync, /\* 2 FETCH \(UID 2 FLAGS \(\\Seen\) MODSEQ \(\d+\)\)\r\n/)
  assert.match(resync, /\* 4 FETCH \(UID 5 FLAGS \(\$Done\) MODSEQ \(\d+\)\)\r\n/)
  assert.match(resync, /\* 5 FETCH \(UID 7 FLAGS \(\\Recent\) MODSEQ \(\d+\)\)\r\n/, 'new messages are changes too (and recent here)')
  assert.doesNotMatch(resync, /UID 1 /)
  assert.ok(resync.indexOf('VANISHED') < resync.indexOf('FETCH'), 'VANISHED before the FETCHes')
  const highest = Number(/HIGHESTMODSEQ (\d+)/.exec(resync)![1])
  assert.ok(highest > modseq)

  // Without known-uids every expunged UID above the modseq is reported; a wrong UIDVALIDITY gets no resync.
  assert.match(await d.cmd(`EXAMINE INBOX (QRESYNC (${uidValidity} ${modseq}))`, 'r2'), /\* VANISHED \(EARLIER\) 3,6\r\n/)
  const stale = await d.cmd(`SELECT INBOX (QRESYNC (${uidValidity + 1} ${modseq}))`, 'r3')
  assert.doesNotMatch(stale, /VANISHED|FETCH/)
  assert.match(await d.cmd(`SELECT INBOX (QRESYNC (${uidValidity} ${modseq} 1:5 (1:3)))`, 'r4'), /^r4 BAD/m, 'seq-match-data is two sets')

  // UID FETCH with CHANGEDSINCE and VANISHED (RFC 7162 section 3.2.6).
  await d.cmd('SELECT INBOX')
  const fetched = await d.cmd(`UID FETCH 1:* (FLAGS) (CHANGEDSINCE ${modseq} VANISHED)`, 'r5')
  assert.match(fetched, /\* VANISHED \(EARLIER\) 3,6\r\n/)
  assert.equal(fetched.match(/\* \d+ FETCH/g)?.length, 3)
  assert.match(await d.cmd(`FETCH 1:* (FLAGS) (CHANGEDSINCE ${modseq} VANISHED)`, 'r6'), /^r6 BAD/m, 'VANISHED needs UID FETCH')

  // Another session expunges: this QRESYNC session hears VANISHED, not EXPUNGE.
  await f.store.expunge(USER, box.id, [1])
  const noop = await d.cmd('NOOP', 'r7')
  assert.match(noop, /\* VANISHED 1\r\n/)
  assert.doesNotMatch(noop, /EXPUNGE/)

  // STORE UNCHANGEDSINCE: a message changed since fails with [MODIFIED].
  const now = Number(/\* \d+ FETCH \(UID 2 MODSEQ \((\d+)\)\)/.exec(await d.cmd('UID FETCH 2 (MODSEQ)', 'r8'))![1])
  await f.store.storeFlags(USER, box.id, [2], 'add', ['$Other'])
  const conflict = await d.cmd(`UID STORE 2,4 (UNCHANGEDSINCE ${now}) +FLAGS (\\Flagged)`, 'r9')
  assert.match(conflict, /^r9 OK \[MODIFIED 2\]/m)
  assert.match(conflict, /\* \d+ FETCH \(FLAGS \(\\Flagged\) UID 4 MODSEQ \(\d+\)\)/)
})

test('a parent that exists only as a prefix is \\Noselect to RFC 3501 LIST, \\NonExistent to rev2 and LIST-EXTENDED', async (t) => {
  const f = await fixture(t)
  // The store creates parents with their children; a store that holds a child alone (as a replica could,
  // mid-merge) is simulated by adding one to listMailboxes.
  const inbox = (await f.store.getMailbox(USER, 'INBOX'))!
  const orphaned = new Proxy(f.store, {
    get (target, key, receiver) {
      if (key === 'listMailboxes') return async (user: string) => [...await target.listMailboxes(user), { ...inbox, id: 'orphan', name: 'Ghost/Child', specialUse: null }]
      const value = Reflect.get(target, key, receiver)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
  const { port } = await f.server({}, orphaned)
  const c = await RawImap.connect(port)
  t.after(async () => { c.close() })
  await c.login()
  assert.match(await c.cmd('LIST "" %', 'p1'), /\* LIST \(\\Noselect \\HasChildren\) "\/" Ghost\r\n/)
  assert.match(await c.cmd('LIST "" Ghost/%', 'p2'), /\* LIST \(\\HasNoChildren\) "\/" Ghost\/Child\r\n/)
  assert.match(await c.cmd('LIST () "" %', 'p3'), /\* LIST \(\\NonExistent \\HasChildren\) "\/" Ghost\r\n/)
  await c.cmd('ENABLE IMAP4rev2')
  assert.match(await c.cmd('LIST "" %', 'p4'), /\* LIST \(\\NonExistent \\HasChildren\) "\/" Ghost\r\n/)
})

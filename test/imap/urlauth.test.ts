// URLAUTH (RFC 4467): GENURLAUTH, URLFETCH, RESETKEY, the access identifiers (anonymous, authuser, user+, submit+),
// and authorized URLs in CATENATE (RFC 4469 section 5). Raw protocol: neither imapflow nor imaplib has these.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, OTHER, RawImap, USER } from './helpers.ts'

const PART = Buffer.from([
  'From: joe@example.com', 'Subject: plans', 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="x"', '',
  '--x', 'Content-Type: text/plain', '', 'first part', '--x', 'Content-Type: text/plain', '', 'Si vis pacem, para bellum.', '', '--x--', '',
].join('\r\n'))

/** The data of each `* URLFETCH url data` response, in order (null for NIL). */
function fetched (reply: string): Array<string | null> {
  const out: Array<string | null> = []
  const re = /^\* URLFETCH "[^"]*" (?:NIL|\{(\d+)\}\r\n)/gm
  let m
  while ((m = re.exec(reply)) !== null) {
    if (m[1] === undefined) { out.push(null); continue }
    const start = m.index + m[0].length
    out.push(reply.slice(start, start + Number(m[1])))
  }
  return out
}

function generated (reply: string): string[] {
  const line = /^\* GENURLAUTH (.*)\r$/m.exec(reply)?.[1] ?? ''
  return [...line.matchAll(/"([^"]*)"/g)].map((m) => m[1]!)
}

async function session (t: { after: (fn: () => void) => void }, port: number, user = USER): Promise<RawImap> {
  const c = await RawImap.connect(port)
  t.after(() => { c.close() })
  await c.login(user)
  return c
}

test('URLAUTH: the RFC 4467 section 9 exchange; access identifiers decide who may fetch; a tampered token is NIL', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server()
  const msg = await f.store.append(USER, 'INBOX', { raw: PART })
  const alice = await session(t, port)
  const bob = await session(t, port, OTHER)
  assert.match(await alice.cmd('CAPABILITY'), / URLAUTH/)
  const base = `imap://${encodeURIComponent(USER)}@example.com/INBOX;UIDVALIDITY=${msg.uidValidity}/;uid=${msg.uid}/;section=2`
  const gen = await alice.cmd(`GENURLAUTH "${base};urlauth=submit+fred" INTERNAL "${base};urlauth=authuser" INTERNAL "${base};urlauth=user+${encodeURIComponent(OTHER)}" INTERNAL "${base};urlauth=anonymous" INTERNAL`)
  assert.match(gen, /OK GENURLAUTH completed/)
  const [submit, authuser, userBob, anonymous] = generated(gen)
  assert.match(submit!, new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')};urlauth=submit\\+fred:internal:[0-9a-f]{64}$`))
  // the key is per-user data in the store's attribute space (one per mailbox)
  assert.equal((await f.store.listAttrs(USER, 'imap/urlauth/')).length, 1)
  const part = 'Si vis pacem, para bellum.\r\n'
  // authuser: any logged-in user; anonymous: anyone; user+bob: bob alone; submit+: the submission server only
  assert.deepEqual(fetched(await alice.cmd(`URLFETCH "${authuser}" "${anonymous}" "${userBob}" "${submit}"`)), [part, part, null, null])
  assert.deepEqual(fetched(await bob.cmd(`URLFETCH "${authuser}" "${userBob}" "${submit}"`)), [part, part, null])
  // a token that does not match, a rump without token, a URL of nothing, garbage: NIL each, the command succeeds
  const tampered = authuser!.replace(/[0-9a-f]$/, (d) => d === '0' ? '1' : '0')
  const nothing = `${base.replace(`uid=${msg.uid}`, 'uid=99')};urlauth=anonymous:internal:${authuser!.slice(-64)}`
  const reply = await bob.cmd(`URLFETCH "${tampered}" "${base};urlauth=anonymous" "${nothing}" "not a url"`)
  assert.deepEqual(fetched(reply), [null, null, null, null])
  assert.match(reply, /OK URLFETCH completed/)
})

test('GENURLAUTH refusals, EXPIRE, RESETKEY of one mailbox and of all', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server()
  const msg = await f.store.append(USER, 'INBOX', { raw: PART })
  const other = await f.store.append(USER, 'Archive', { raw: PART })
  const theirs = await f.store.append(OTHER, 'INBOX', { raw: PART })
  const alice = await session(t, port)
  const url = (box: string, uid: number, rest = ''): string => `imap://${encodeURIComponent(USER)}@example.com/${box}/;UID=${uid}${rest}`
  // another user's mailbox, no ;URLAUTH=, a relative URL, an unknown mechanism, a past EXPIRE, a wrong UIDVALIDITY
  for (const [bad, mech] of [
    [`imap://${encodeURIComponent(OTHER)}@example.com/INBOX/;UID=${theirs.uid};URLAUTH=anonymous`, 'INTERNAL'],
    [url('INBOX', msg.uid), 'INTERNAL'],
    [`/INBOX/;UID=${msg.uid};URLAUTH=anonymous`, 'INTERNAL'],
    [url('INBOX', msg.uid, ';URLAUTH=anonymous'), 'XSECRET'],
    [url('INBOX', msg.uid, ';EXPIRE=2001-01-01T00:00:00Z;URLAUTH=anonymous'), 'INTERNAL'],
    [url(`INBOX;UIDVALIDITY=${msg.uidValidity + 1}`, msg.uid, ';URLAUTH=anonymous'), 'INTERNAL'],
    [url('Nowhere', 1, ';URLAUTH=anonymous'), 'INTERNAL'],
  ] as const) {
    assert.match(await alice.cmd(`GENURLAUTH "${bad}" ${mech}`), /NO \[BADURL "/, bad)
  }
  assert.match(await alice.cmd('GENURLAUTH "x"'), /BAD/)
  const future = new Date(Date.now() + 3600_000).toISOString().replace(/\.\d+Z$/, 'Z')
  const [inbox, expiring, archive] = generated(await alice.cmd(`GENURLAUTH "${url('INBOX', msg.uid, ';URLAUTH=authuser')}" INTERNAL "${url('INBOX', msg.uid, `;EXPIRE=${future};URLAUTH=authuser`)}" INTERNAL "${url('Archive', other.uid, ';URLAUTH=authuser')}" INTERNAL`))
  assert.deepEqual(fetched(await alice.cmd(`URLFETCH "${inbox}" "${expiring}" "${archive}"`)).map((d) => d?.length), [PART.length, PART.length, PART.length])
  // section 6.2: RESETKEY mailbox invalidates that mailbox's URLs only
  assert.match(await alice.cmd('RESETKEY INBOX INTERNAL'), /OK/)
  assert.deepEqual(fetched(await alice.cmd(`URLFETCH "${inbox}" "${expiring}" "${archive}"`)).map((d) => d?.length ?? null), [null, null, PART.length])
  // a new URL for the same message has another token and works
  const [again] = generated(await alice.cmd(`GENURLAUTH "${url('INBOX', msg.uid, ';URLAUTH=authuser')}" INTERNAL`))
  assert.notEqual(again, inbox)
  assert.equal(fetched(await alice.cmd(`URLFETCH "${again}"`))[0]?.length, PART.length)
  // RESETKEY without arguments: every mailbox
  assert.match(await alice.cmd('RESETKEY'), /OK/)
  assert.deepEqual(fetched(await alice.cmd(`URLFETCH "${again}" "${archive}"`)), [null, null])
  // more URLs than one command may carry (URLAUTH_URLS_MAX): BAD, nothing done
  assert.match(await alice.cmd(`GENURLAUTH ${Array.from({ length: 100 }, () => `"${url('INBOX', msg.uid, ';URLAUTH=anonymous')}" INTERNAL`).join(' ')}`), /BAD/)
  assert.match(await alice.cmd(`URLFETCH ${Array.from({ length: 100 }, () => `"${archive}"`).join(' ')}`), /BAD/)
  assert.match(await alice.cmd(`URLFETCH "${'x'.repeat(9000)}"`), /^\* URLFETCH \{9000\}\r\nx{9000} NIL\r$/m)
  assert.match(await alice.cmd('RESETKEY Nowhere'), /NO \[NONEXISTENT\]/)
  assert.match(await alice.cmd('RESETKEY INBOX XSECRET'), /NO/)
})

test('URLAUTH in CATENATE: another user\'s message by an authuser URL is readable, by a user+owner URL it is BADURL', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server()
  const theirs = await f.store.append(OTHER, 'INBOX', { raw: PART })
  const bob = await session(t, port, OTHER)
  const alice = await session(t, port)
  const base = `imap://${encodeURIComponent(OTHER)}@example.com/INBOX/;UID=${theirs.uid}/;SECTION=2`
  const [forAnyone, forBob] = generated(await bob.cmd(`GENURLAUTH "${base};URLAUTH=authuser" INTERNAL "${base};URLAUTH=user+${encodeURIComponent(OTHER)}" INTERNAL`))
  const ok = await alice.cmd(`APPEND Drafts CATENATE (URL "${forAnyone}")`)
  assert.match(ok, /OK \[APPENDUID \d+ 1\]/)
  const box = (await f.store.getMailbox(USER, 'Drafts'))!
  assert.equal((await f.store.readMessage((await f.store.getMessage(USER, box.id, 1))!)).toString(), 'Si vis pacem, para bellum.\r\n')
  assert.match(await alice.cmd(`APPEND Drafts CATENATE (URL "${forBob}")`), /NO \[BADURL/)
  // without an authorization, bob's message is not alice's to read
  assert.match(await alice.cmd(`APPEND Drafts CATENATE (URL "${base}")`), /NO \[BADURL/)
})

// Forwarded sessions, in one process: three grid nodes on an in-memory network, each with real IMAP and POP3
// servers. Clients log in on a node that is not their user's primary and see one server: the same login answer
// and capabilities, messages byte-identical, flags and appends landing on the primary and its replica, IDLE told
// of a delivery made through the third node, COMPRESS through the pipe, POP3 RETR/DELE/QUIT. A primary killed
// mid-session closes the client's connection; a primary that cannot be reached gets a temporary failure and
// leaves the session unauthenticated.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { constants as zlib, createDeflateRaw, createInflateRaw } from 'node:zlib'
import { connect } from 'node:net'
import { ImapFlow } from 'imapflow'
import { RpcError } from '../../gossip/types.ts'
import { createRing } from '../../gossip/ring.ts'
import { PROTOCOLS, SESSION_HEADER_BYTES_MAX } from '../../node/grid/index.ts'
import type { Duplex } from 'node:stream'
import type { Store } from '../../store/index.ts'
import { python, RawClient } from '../helpers/client.ts'
import { startGridNode, until } from '../helpers/grid-node.ts'
import type { GridTestNode } from '../helpers/grid-node.ts'
import { MemoryNetwork } from '../helpers/memory-gossip.ts'
import { tempDir } from '../helpers/tmp.ts'

const USERS = Array.from({ length: 12 }, (_, i) => `user${i}@example.com`)
const PASSWORD = 'pw pw'
type After = { after: (fn: () => Promise<void>) => void }

interface Grid3 {
  net: MemoryNetwork
  dir: string
  nodes: GridTestNode[]
  user: string
  primary: GridTestNode
  edge: GridTestNode
  third: GridTestNode
  /** The primary's replica (R=2). */
  replica: GridTestNode
}

async function grid3 (t: After, opts: Parameters<typeof startGridNode>[3] = {}): Promise<Grid3> {
  const dir = await tempDir(t)
  const net = new MemoryNetwork()
  const nodes: GridTestNode[] = []
  t.after(async () => { for (const n of nodes) await n.stop().catch(() => {}) })
  for (const id of ['A', 'B', 'C']) nodes.push(await startGridNode(net, dir, id, opts))
  await nodes[0].store.addDomain('example.com')
  for (const u of USERS) await nodes[0].store.addUser({ address: u, password: PASSWORD })
  await until('the directory on every node', async () =>
    (await Promise.all(nodes.map(async n => (await n.store.listUsers()).length))).every(c => c === USERS.length))
  const user = USERS[0]
  const byId = (id: string | null): GridTestNode => nodes.find(n => n.id === id) as GridTestNode
  const primary = byId(nodes[0].grid.primaryOf(user))
  const [edge, third] = nodes.filter(n => n !== primary)
  const replica = byId(primary.grid.replicasOf(user).find(id => id !== primary.id) ?? null)
  return { net, dir, nodes, user, primary, edge, third, replica }
}

const message = (n: number, extra = ''): Buffer =>
  Buffer.from(`From: a@example.org\r\nTo: user0@example.com\r\nSubject: message ${n}\r\nMessage-ID: <m${n}@example.org>\r\n\r\nbody ${n}\r\n${extra}.leading dot\r\n`)

const tagged = (tag: string) => (buf: string): boolean => new RegExp(`(^|\\r\\n)${tag} [^\\r\\n]*\\r\\n$`).test(buf)
const popLine = (buf: string): boolean => buf.endsWith('\r\n')

async function inbox (store: Store, user: string): Promise<Array<{ uid: number, flags: string[], raw: Buffer }>> {
  const box = await store.getMailbox(user, 'INBOX')
  assert.ok(box !== null)
  const out = []
  for (const r of await store.listMessages(user, box.id)) out.push({ uid: r.uid, flags: r.flags, raw: await store.readMessage(r) })
  return out
}

async function imapLogin (port: number, user: string, tag = 'a1'): Promise<{ client: RawClient, greeting: string, answer: string }> {
  const client = await RawClient.connect(port)
  const greeting = await client.read(popLine)
  const answer = await client.cmd(`${tag} LOGIN ${user} "${PASSWORD}"`, tagged(tag))
  return { client, greeting, answer }
}

test('IMAP through a node that is not the primary: same answers, byte-identical, flags and appends on both replicas, IDLE', async (t) => {
  const g = await grid3(t)
  const first = message(1)
  await g.third.grid.deliver(first, [{ user: g.user, prefix: '' }])

  // the login answer and the capabilities after it are those of a login on the primary itself
  const direct = await imapLogin(g.primary.imapPort, g.user)
  const forwarded = await imapLogin(g.edge.imapPort, g.user)
  assert.equal(forwarded.greeting, direct.greeting)
  assert.match(forwarded.answer, /^a1 OK \[CAPABILITY [^\]]*COMPRESS=DEFLATE[^\]]*\] /)
  assert.equal(forwarded.answer, direct.answer)
  assert.equal(await forwarded.client.cmd('a2 CAPABILITY', tagged('a2')), await direct.client.cmd('a2 CAPABILITY', tagged('a2')))
  assert.equal(g.edge.forwarder.open.forwarded, 1)
  assert.equal(g.primary.forwarder.open.adopted, 1)
  // a synchronizing literal: the continuation comes from the primary, through the pipe
  forwarded.client.write('a3 APPEND INBOX {10}\r\n')
  assert.match(await forwarded.client.read(popLine), /^\+ /)
  assert.match(await forwarded.client.cmd('Subject: x', tagged('a3')), /^a3 OK \[APPENDUID \d+ 2\]/m)
  await forwarded.client.cmd('a4 LOGOUT', tagged('a4'))
  assert.ok(await forwarded.client.waitClosed(), 'LOGOUT on the primary closes the client connection at the edge')
  direct.client.close()

  const client = new ImapFlow({ host: '127.0.0.1', port: g.edge.imapPort, secure: false, tls: { rejectUnauthorized: false }, auth: { user: g.user, pass: PASSWORD }, logger: false })
  client.on('error', () => {})
  await client.connect()
  t.after(async () => { await client.logout().catch(() => client.close()) })
  assert.equal(client.secureConnection, true, 'STARTTLS at the edge, then the forward')
  // imapflow turns COMPRESS=DEFLATE on after login when offered: every command below is compressed end to end
  assert.ok((client as unknown as { _deflate?: unknown })._deflate, 'imapflow negotiated COMPRESS through the forward')
  await client.mailboxOpen('INBOX')
  const got = await client.fetchOne('1', { source: true, uid: true })
  if (got === undefined || got === false || got.source === undefined) throw new Error('FETCH returned nothing')
  assert.ok(got.source.equals(first), 'FETCH through the forward is byte-identical')

  assert.equal(await client.messageFlagsAdd({ uid: String(got.uid) }, ['\\Flagged'], { uid: true }), true)
  for (const n of [g.primary, g.replica]) {
    const [m] = await inbox(n.store, g.user)
    assert.ok(m.flags.includes('\\Flagged'), `flag on ${n.id} when STORE is acknowledged`)
  }
  const appended = message(2)
  const res = await client.append('INBOX', appended, ['\\Seen'])
  assert.ok(res !== false)
  for (const n of [g.primary, g.replica]) {
    const msgs = await inbox(n.store, g.user)
    const m = msgs.find(x => x.uid === res.uid)
    assert.ok(m !== undefined && m.raw.equals(appended) && m.flags.includes('\\Seen'), `appended message on ${n.id}`)
  }

  // IDLE is told of a delivery made through the third node: the continuation comes from the primary once it
  // idles, and the EXISTS arrives with no further command from the client
  const idler = (await imapLogin(g.edge.imapPort, g.user, 'i1')).client
  assert.match(await idler.cmd('i2 SELECT INBOX', tagged('i2')), /^\* 3 EXISTS/m)
  assert.match(await idler.cmd('i3 IDLE', popLine), /^\+ idling\r\n$/)
  await g.third.grid.deliver(message(3), [{ user: g.user, prefix: '' }])
  assert.match(await idler.read(buf => buf.includes('EXISTS\r\n')), /^\* 4 EXISTS\r\n/m)
  assert.match(await idler.cmd('DONE', tagged('i3')), /^i3 OK /m)
  idler.close()
  const third = await client.fetchOne('4', { source: true })
  assert.ok(third !== undefined && third !== false && third.source !== undefined && third.source.equals(message(3)))
  await client.logout()
  await until('the forwarded streams closed', () => g.edge.forwarder.open.forwarded === 0 && g.primary.forwarder.open.adopted === 0)
})

test('COMPRESS=DEFLATE and pipelining through the forward: the primary compresses, the edge passes bytes', async (t) => {
  const g = await grid3(t)
  await g.third.grid.deliver(message(1), [{ user: g.user, prefix: '' }])
  const socket = connect(g.edge.imapPort, '127.0.0.1')
  t.after(() => { socket.destroy() })
  let plain = ''
  let mode: 'plain' | 'deflate' = 'plain'
  const inflate = createInflateRaw()
  const deflate = createDeflateRaw()
  deflate.on('data', (c: Buffer) => socket.write(c))
  inflate.on('data', (c: Buffer) => { plain += c.toString('latin1') })
  socket.on('data', (c: Buffer) => {
    if (mode === 'deflate') inflate.write(c)
    else plain += c.toString('latin1')
  })
  const read = async (done: (s: string) => boolean): Promise<string> => {
    await until('an IMAP answer', () => done(plain), 10_000)
    const out = plain
    plain = ''
    return out
  }
  await read(popLine)
  // the login and the SELECT after it in one write: the SELECT reaches the primary unharmed
  socket.write(`a1 LOGIN ${g.user} "${PASSWORD}"\r\na2 SELECT INBOX\r\n`)
  const both = await read(tagged('a2'))
  assert.match(both, /^a1 OK \[CAPABILITY /m)
  assert.match(both, /^\* 1 EXISTS\r\n/m)
  socket.write('a3 COMPRESS DEFLATE\r\n')
  assert.match(await read(tagged('a3')), /^a3 OK /)
  mode = 'deflate'
  const send = (line: string): void => {
    deflate.write(line)
    deflate.flush(zlib.Z_SYNC_FLUSH)
  }
  send('a4 FETCH 1 (BODY.PEEK[])\r\n')
  const fetched = await read(tagged('a4'))
  assert.ok(fetched.includes(message(1).toString('latin1')), 'FETCH answered compressed, through the edge')
  send('a5 COMPRESS DEFLATE\r\n')
  assert.match(await read(tagged('a5')), /^a5 NO \[COMPRESSIONACTIVE\]/m)
  send('a6 LOGOUT\r\n')
  assert.match(await read(tagged('a6')), /^\* BYE/m)
})

const IMAPLIB = String.raw`
import imaplib, json, sys
port, user, password, message_hex = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
message = bytes.fromhex(message_hex)
out = {}
m = imaplib.IMAP4('127.0.0.1', port)
out['login'] = m.login(user, password)[0]
out['select'] = m.select('INBOX')[1][0].decode()
typ, data = m.fetch('1', '(BODY.PEEK[])')
out['fetch_equal'] = data[0][1] == message
out['store'] = m.store('1', '+FLAGS', '(\\Answered $Label1)')[1][0].decode()
typ, data = m.append('INBOX', None, imaplib.Time2Internaldate(1767225600), message)
out['append'] = [typ, data[0].decode()]
out['logout'] = m.logout()[0]
print(json.dumps(out))
`

const POPLIB = String.raw`
import poplib, json, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
out = {}
c = poplib.POP3('127.0.0.1', port, timeout=30)
out['welcome'] = c.getwelcome().decode()
c.user(user)
out['pass'] = c.pass_(password).decode()
out['stat'] = list(c.stat())
resp, lines, octets = c.retr(1)
out['retr'] = (b'\r\n'.join(lines) + b'\r\n').hex()
out['uidl'] = [x.decode() for x in c.uidl()[1]]
out['dele'] = c.dele(1).decode()
out['quit'] = c.quit().decode()
print(json.dumps(out))
`

test('imaplib and poplib through the edge: FETCH, STORE, APPEND with a literal; RETR, DELE, QUIT expunge on the replicas', async (t) => {
  const g = await grid3(t)
  const first = message(1, '..\r\n')
  await g.third.grid.deliver(first, [{ user: g.user, prefix: '' }])
  const imap = await python(IMAPLIB, [String(g.edge.imapPort), g.user, PASSWORD, first.toString('hex')])
  assert.equal(imap.code, 0, imap.stderr)
  const r = JSON.parse(imap.stdout)
  assert.equal(r.login, 'OK')
  assert.equal(r.select, '1')
  assert.equal(r.fetch_equal, true)
  assert.match(r.store, /FLAGS \(.*\\Answered.*\)/)
  assert.equal(r.append[0], 'OK')
  for (const n of [g.primary, g.replica]) {
    const msgs = await inbox(n.store, g.user)
    assert.equal(msgs.length, 2, `two messages on ${n.id}`)
    assert.ok(msgs[0].flags.includes('\\Answered') && msgs[0].flags.includes('$Label1'), `flags on ${n.id}`)
    assert.ok(msgs[1].raw.equals(first))
  }

  const pop = await python(POPLIB, [String(g.edge.pop3Port), g.user, PASSWORD])
  assert.equal(pop.code, 0, pop.stderr)
  const p = JSON.parse(pop.stdout)
  assert.match(p.pass, /^\+OK Logged in, 2 messages/)
  assert.equal(p.stat[0], 2)
  assert.equal(Buffer.from(p.retr, 'hex').toString('latin1'), first.toString('latin1'))
  assert.equal(p.uidl.length, 2)
  assert.match(p.dele, /^\+OK/)
  assert.match(p.quit, /^\+OK Bye, 1 messages deleted/)
  for (const n of [g.primary, g.replica]) {
    const msgs = await inbox(n.store, g.user)
    assert.equal(msgs.length, 1, `DELE+QUIT expunged on ${n.id}`)
  }
})

test('a primary killed mid-session closes the client; the next login reaches the new primary', async (t) => {
  const g = await grid3(t)
  await g.third.grid.deliver(message(1), [{ user: g.user, prefix: '' }])
  const imap = await imapLogin(g.edge.imapPort, g.user)
  assert.match(imap.answer, /^a1 OK /)
  assert.match(await imap.client.cmd('a2 SELECT INBOX', tagged('a2')), /^a2 OK /m)
  const pop = await RawClient.connect(g.edge.pop3Port)
  await pop.read(popLine)
  await pop.cmd(`USER ${g.user}`, popLine)
  assert.match(await pop.cmd(`PASS ${PASSWORD}`, popLine), /^\+OK Logged in, 1 messages/)

  g.primary.gossip.kill()
  assert.ok(await imap.client.waitClosed(), 'IMAP client connection closed')
  assert.ok(await pop.waitClosed(), 'POP3 client connection closed')

  // the user moved to a survivor that holds the replica: a new login is served and sees the message
  const again = await imapLogin(g.edge.imapPort, g.user, 'b1')
  assert.match(again.answer, /^b1 OK /)
  assert.match(await again.client.cmd('b2 SELECT INBOX', tagged('b2')), /^\* 1 EXISTS/m)
  again.client.close()
})

test('a primary that cannot take the session: NO [UNAVAILABLE] and -ERR [SYS/TEMP], still unauthenticated', async (t) => {
  const g = await grid3(t)
  // the network fails under the membership's feet: the ring still names the primary, the stream cannot open
  const open = g.edge.gossip.openStream.bind(g.edge.gossip)
  g.edge.gossip.openStream = async () => { throw new RpcError('unreachable', 'cut') }
  const imap = await imapLogin(g.edge.imapPort, g.user)
  assert.match(imap.answer, /^a1 NO \[UNAVAILABLE\] /)
  assert.match(await imap.client.cmd('a2 SELECT INBOX', tagged('a2')), /^a2 BAD /m, 'still not authenticated')
  const pop = await RawClient.connect(g.edge.pop3Port)
  await pop.read(popLine)
  await pop.cmd(`USER ${g.user}`, popLine)
  assert.match(await pop.cmd(`PASS ${PASSWORD}`, popLine), /^-ERR \[SYS\/TEMP\] /)
  assert.match(await pop.cmd('STAT', popLine), /^-ERR /, 'still in the authorization state')

  // the primary refuses (here: it is shutting its forwarder down): the same temporary failure
  g.edge.gossip.openStream = open
  g.primary.forwarder.stop()
  assert.match(await imap.client.cmd(`a3 LOGIN ${g.user} "${PASSWORD}"`, tagged('a3')), /^a3 NO \[UNAVAILABLE\] /)
  await pop.cmd(`USER ${g.user}`, popLine)
  assert.match(await pop.cmd(`PASS ${PASSWORD}`, popLine), /^-ERR \[SYS\/TEMP\] /)
  imap.client.close()
  pop.close()
})

/** Everything the stream says until the other side finishes or drops it. */
async function drain (stream: Duplex): Promise<string> {
  let out = ''
  stream.on('data', (c: Buffer) => { out += c.toString('latin1') })
  stream.on('error', () => {})
  await new Promise<void>(resolve => {
    if (stream.closed || stream.readableEnded) resolve()
    stream.once('close', () => resolve())
    stream.once('end', () => resolve())
  })
  return out
}

test('the primary side of the session stream: bad, oversized and missing headers close it; a user it does not lead is refused', async (t) => {
  const g = await grid3(t, { forwarder: { headerTimeoutMs: 300 } })
  const open = async (): Promise<Duplex> => await g.edge.gossip.openStream(g.primary.id, PROTOCOLS.session)
  const header = (user: string): string => JSON.stringify({ v: 1, protocol: 'imap', user, ip: '192.0.2.1', secure: true, tag: 'a1' }) + '\n'

  let s = await open()
  s.write('not json\n')
  assert.equal(await drain(s), '', 'garbage: closed without an answer')

  s = await open()
  s.write('{"v":1,"user":"' + 'x'.repeat(SESSION_HEADER_BYTES_MAX) + '"')
  assert.equal(await drain(s), '', 'oversized: closed without waiting for the end of the line')

  s = await open()
  const started = Date.now()
  assert.equal(await drain(s), '', 'silent: closed at the header timeout')
  assert.ok(Date.now() - started >= 250)

  s = await open()
  s.write(JSON.stringify({ v: 1, protocol: 'imap', user: g.user, ip: '192.0.2.1', secure: true, tag: 'a+1' }) + '\n')
  assert.equal(await drain(s), '', 'a tag IMAP forbids: closed')

  // a user whose primary is another node: an error line, then the end
  const other = USERS.find(u => g.primary.grid.primaryOf(u) !== g.primary.id) as string
  s = await open()
  s.write(header(other))
  const refused = JSON.parse((await drain(s)).trim()) as { error?: { kind?: string } }
  assert.equal(refused.error?.kind, 'unavailable')

  // and the right user is adopted: the answer line, then the primary's tagged OK for the login
  s = await open()
  s.write(header(g.user))
  let got = ''
  s.on('error', () => {})
  s.on('data', (c: Buffer) => { got += c.toString('latin1') })
  await until('the adopted session answers the login', () => /\r\n$/.test(got))
  assert.match(got, /^\{"ok":true\}\na1 OK \[CAPABILITY IMAP4rev1 /)
  assert.equal(g.primary.forwarder.open.adopted, 1)
  s.destroy()
  await until('the adopted session ends with its stream', () => g.primary.forwarder.open.adopted === 0)
})

test('a node that joins and takes the user over closes the forwarded session; the next login goes to it', async (t) => {
  const g = await grid3(t)
  // a user the new node D will own (placement is deterministic: the same ids give the same ring)
  const withD = createRing(['A', 'B', 'C', 'D'].map(id => ({ id, weight: 1 })))
  const user = USERS.find(u => withD.primary(u) === 'D')
  assert.ok(user !== undefined, 'some user moves to D')
  const primary = g.nodes.find(n => n.grid.isPrimary(user)) as GridTestNode
  const edge = g.nodes.find(n => n !== primary) as GridTestNode
  await g.third.grid.deliver(message(1), [{ user, prefix: '' }])
  const imap = await imapLogin(edge.imapPort, user)
  assert.match(imap.answer, /^a1 OK /)
  assert.match(await imap.client.cmd('a2 SELECT INBOX', tagged('a2')), /^\* 1 EXISTS/m)

  const d = await startGridNode(g.net, g.dir, 'D')
  g.nodes.push(d)
  assert.ok(d.grid.isPrimary(user))
  assert.ok(await imap.client.waitClosed(), 'the old primary let go of the session')
  await until('the directory on D', async () => (await d.store.listUsers()).length === USERS.length)
  const again = await imapLogin(edge.imapPort, user, 'b1')
  assert.match(again.answer, /^b1 OK /)
  assert.match(await again.client.cmd('b2 SELECT INBOX', tagged('b2')), /^\* 1 EXISTS/m, 'D caught up before serving')
  assert.equal(d.forwarder.open.adopted, 1)
  again.client.close()
})

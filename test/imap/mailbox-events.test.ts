// What a session sees when another session deletes or renames the mailbox it has selected: Dovecot's
// answer to a delete is `* BYE Selected mailbox was deleted, have to disconnect.` (RFC 2180 section 3.3);
// a rename keeps the mailbox selected under its new name, because mailbox ids are stable. Also the autologout timer
// (RFC 3501 section 5.4) against IDLE (RFC 2177), whose keepalives keep a session alive.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, RawImap, simpleMessage, USER, sessionPair } from './helpers.ts'

test('another session deleting the selected mailbox ends the session with BYE, idle or not', async (t) => {
  const f = await fixture(t)
  await f.store.createMailbox(USER, 'Work')
  await f.store.append(USER, 'Work', { raw: simpleMessage('w1') })
  await f.store.createMailbox(USER, 'Play')
  const { port } = await f.server()
  const waiting = await RawImap.connect(port)
  const idling = await RawImap.connect(port)
  const other = await RawImap.connect(port)
  t.after(() => { waiting.close(); idling.close(); other.close() })
  for (const c of [waiting, idling, other]) await c.login()
  assert.match(await waiting.cmd('SELECT Work'), /OK \[READ-WRITE\]/)
  assert.match(await idling.cmd('SELECT Play'), /OK \[READ-WRITE\]/)
  idling.client.write('i1 IDLE\r\n')
  assert.match(await idling.client.read((b) => b.includes('+ ')), /^\+ /)

  assert.match(await other.cmd('DELETE Work'), /^t\d+ OK/m)
  assert.match(await waiting.client.read((b) => b.includes('* BYE')), /\* BYE Selected mailbox was deleted, have to disconnect\.\r\n/)
  assert.equal(await waiting.client.waitClosed(), true)

  assert.match(await other.cmd('DELETE Play'), /^t\d+ OK/m)
  assert.match(await idling.client.read((b) => b.includes('* BYE')), /\* BYE Selected mailbox was deleted/)
  assert.equal(await idling.client.waitClosed(), true)
  assert.match(await other.cmd('NOOP'), /OK/, 'the deleting session goes on')
})

test('deleting the selected mailbox in the same session closes it; a failed DELETE keeps it', async (t) => {
  const f = await fixture(t)
  await f.store.createMailbox(USER, 'Work')
  await f.store.createMailbox(USER, 'Parent')
  await f.store.createMailbox(USER, 'Parent/Child')
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  await c.login()
  await c.cmd('SELECT Parent')
  assert.match(await c.cmd('DELETE Parent', 'd1'), /^d1 NO \[HASCHILDREN\]/m)
  assert.match(await c.cmd('NOOP', 'd2'), /^d2 OK/m)
  assert.match(await c.cmd('FETCH 1:* FLAGS', 'd3'), /^d3 OK/m, 'still selected')
  await c.cmd('SELECT Work')
  assert.match(await c.cmd('DELETE Work', 'd4'), /^d4 OK/m)
  assert.doesNotMatch(await c.cmd('NOOP', 'd5'), /BYE/)
  assert.match(await c.cmd('FETCH 1 FLAGS', 'd6'), /^d6 BAD FETCH not allowed now/m, 'back in the authenticated state')
})

test('a rename of the selected mailbox, by this session or another, keeps it selected', async (t) => {
  const f = await fixture(t)
  await f.store.createMailbox(USER, 'Work')
  await f.store.append(USER, 'Work', { raw: simpleMessage('w1') })
  const { port } = await f.server()
  const [a, b] = await sessionPair(t, port)
  await a.cmd('SELECT Work')
  assert.match(await b.cmd('RENAME Work Projects', 'r1'), /^r1 OK/m)
  assert.match(await a.cmd('NOOP', 'r2'), /^r2 OK/m)
  await f.store.append(USER, 'Projects', { raw: simpleMessage('w2') })
  assert.match(await a.cmd('NOOP', 'r3'), /\* 2 EXISTS\r\n\* 2 RECENT\r\nr3 OK/, 'new mail under the new name reaches the session (recent in it)')
  assert.match(await a.cmd('RENAME Projects Archive2', 'r4'), /^r4 OK/m)
  assert.match(await a.cmd('UID FETCH 1:* (UID)', 'r5'), /\* 1 FETCH \(UID 1\)\r\n\* 2 FETCH \(UID 2\)\r\nr5 OK/)
  // The session knows the new name: deleting it by that name closes the selection instead of ending it.
  assert.match(await a.cmd('DELETE Archive2', 'r6'), /^r6 OK/m)
  assert.match(await a.cmd('NOOP', 'r7'), /^r7 OK/m)
  assert.equal(a.client.closed, false)
})

test('the autologout timer ends a silent session; IDLE keeps one alive past it', async (t) => {
  const f = await fixture(t)
  const IDLE_TIMEOUT_MS = 300
  const { port } = await f.server({ limits: { idleTimeoutMs: IDLE_TIMEOUT_MS } })
  const silent = await RawImap.connect(port)
  const idling = await RawImap.connect(port)
  t.after(() => { silent.close(); idling.close() })
  await silent.login()
  await idling.login()
  await idling.cmd('SELECT INBOX')
  idling.client.write('i1 IDLE\r\n')
  assert.match(await idling.client.read((b) => b.includes('+ ')), /^\+ /)
  const started = Date.now()
  assert.match(await silent.client.read((b) => b.includes('* BYE')), /\* BYE Autologout/)
  assert.equal(await silent.client.waitClosed(), true)
  // Nine keepalives, three timeouts of silence otherwise: the idling session is kept alive and still answers.
  const kept = await idling.client.read((b) => (b.match(/\* OK Still here/g)?.length ?? 0) >= 9)
  assert.ok(Date.now() - started >= 2 * IDLE_TIMEOUT_MS)
  assert.doesNotMatch(kept, /BYE/)
  assert.match(await idling.client.cmd('DONE', (b) => /i1 OK[^\r\n]*\r\n$/.test(b)), /i1 OK IDLE completed/)
  assert.equal(idling.client.closed, false)
})

test('the autologout timer: the pre-login bound until LOGIN, the longer one after; commands keep a session alive', async (t) => {
  const f = await fixture(t)
  const PRE_AUTH_MS = 300
  const IDLE_MS = 1500
  const { port } = await f.server({ limits: { preAuthTimeoutMs: PRE_AUTH_MS, idleTimeoutMs: IDLE_MS } })
  const anonymous = await RawImap.connect(port)
  const busy = await RawImap.connect(port)
  t.after(() => { anonymous.close(); busy.close() })
  const started = Date.now()
  await busy.login()
  // commands every 100 ms for three times the pre-login bound: each one is activity, and after LOGIN the bound is 1.5 s
  for (let i = 0; i < 9; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.match(await busy.cmd('NOOP', `n${i}`), new RegExp(`n${i} OK`))
  }
  assert.ok(Date.now() - started >= 3 * PRE_AUTH_MS)
  // the session that never logged in was closed by the shorter bound meanwhile
  assert.equal(await anonymous.client.waitClosed(), true)
  // silent for twice the pre-login bound after its last command: still open under the longer one
  await new Promise((resolve) => setTimeout(resolve, 2 * PRE_AUTH_MS))
  assert.equal(busy.client.closed, false)
  assert.match(await busy.cmd('NOOP', 'last'), /last OK/)
  // and then silent past the longer bound: logged out
  assert.match(await busy.client.read((b) => b.includes('* BYE')), /\* BYE Autologout/)
  assert.equal(await busy.client.waitClosed(), true)
})

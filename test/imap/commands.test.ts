// The RFC 3501 commands and extensions not covered elsewhere, over a raw socket: RENAME INBOX (messages move,
// INBOX stays), SUBSCRIBE/UNSUBSCRIBE/LSUB, CHECK, CLOSE (silent expunge) against UNSELECT (none), EXAMINE
// refusing changes, STORE forms with .SILENT, UID EXPUNGE, APPEND with flags and date (and UTF8 after
// UTF8=ACCEPT), ID, CREATE with USE (RFC 6154), LIST-STATUS, COPY to a missing mailbox; and POP3 beside IMAP
// on the same maildrop.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createPop3Server } from '../../node/pop3/index.ts'
import { ConnectionLimiter } from '../../node/limits.ts'
import { createAuthenticator } from '../../node/auth.ts'
import { AuthThrottle } from '../../node/limits.ts'
import { RawClient } from '../helpers/client.ts'
import { fixture, PASSWORD, RawImap, simpleMessage, USER } from './helpers.ts'

async function session (t: Parameters<typeof fixture>[0]): Promise<{ f: Awaited<ReturnType<typeof fixture>>, c: RawImap, port: number }> {
  const f = await fixture(t)
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(async () => { c.close() })
  await c.login()
  return { f, c, port }
}

test('RENAME INBOX moves its messages to the new name and leaves an empty INBOX (RFC 3501 section 6.3.5)', async (t) => {
  const { f, c, port } = await session(t)
  for (let i = 1; i <= 2; i++) await f.store.append(USER, 'INBOX', { raw: simpleMessage(`in${i}`) })
  const watcher = await RawImap.connect(port)
  t.after(async () => { watcher.close() })
  await watcher.login()
  await watcher.cmd('SELECT INBOX')
  assert.match(await c.cmd('RENAME INBOX "Old Inbox"', 'r1'), /^r1 OK/m)
  assert.match(await c.cmd('STATUS "Old Inbox" (MESSAGES)', 'r2'), /MESSAGES 2\)/)
  assert.match(await c.cmd('STATUS INBOX (MESSAGES)', 'r3'), /MESSAGES 0\)/)
  // The session that has INBOX selected keeps it and is told its messages left.
  assert.match(await watcher.cmd('NOOP', 'w1'), /\* 1 EXPUNGE\r\n\* 1 EXPUNGE\r\n|\* 2 EXPUNGE\r\n\* 1 EXPUNGE\r\n/)
  assert.match(await c.cmd('RENAME Sent INBOX', 'r4'), /^r4 NO/m, 'nothing may be renamed to INBOX')
})

test('SUBSCRIBE, UNSUBSCRIBE and LSUB', async (t) => {
  const { c } = await session(t)
  await c.cmd('CREATE Lists/Dev')
  assert.match(await c.cmd('SUBSCRIBE Lists/Dev', 's1'), /^s1 OK/m)
  assert.match(await c.cmd('SUBSCRIBE INBOX', 's2'), /^s2 OK/m)
  assert.match(await c.cmd('LSUB "" *', 's3'), /\* LSUB \(\) "\/" INBOX\r\n[\s\S]*\* LSUB \(\) "\/" Lists\/Dev\r\n/)
  assert.match(await c.cmd('LSUB "" Lists*', 's3b'), /^\* LSUB \(\) "\/" Lists\/Dev\r\ns3b OK/)
  // RFC 3501 section 6.3.9: `%` lists an unsubscribed parent of a subscribed name as \Noselect.
  assert.match(await c.cmd('LSUB "" %', 's4'), /\* LSUB \(\\Noselect\) "\/" Lists\r\n/)
  assert.match(await c.cmd('LIST (SUBSCRIBED) "" *', 's5'), /\* LIST \(\\HasNoChildren \\Subscribed\) "\/" Lists\/Dev\r\n/)
  assert.match(await c.cmd('UNSUBSCRIBE Lists/Dev', 's6'), /^s6 OK/m)
  assert.doesNotMatch(await c.cmd('LSUB "" *', 's7'), /Lists/)
  assert.match(await c.cmd('LSUB "" INBOX', 's8'), /\* LSUB \(\) "\/" INBOX\r\n/)
})

test('CHECK, CLOSE expunges silently, UNSELECT does not; EXAMINE refuses changes', async (t) => {
  const { f, c } = await session(t)
  for (let i = 1; i <= 3; i++) await f.store.append(USER, 'INBOX', { raw: simpleMessage(`c${i}`), flags: i === 2 ? ['\\Deleted'] : [] })
  await c.cmd('EXAMINE INBOX')
  assert.match(await c.cmd('STORE 1 +FLAGS (\\Seen)', 'x1'), /^x1 NO \[READ-ONLY\]/m)
  assert.match(await c.cmd('EXPUNGE', 'x2'), /^x2 NO \[READ-ONLY\]/m)
  assert.match(await c.cmd('CLOSE', 'x3'), /^x3 OK/m, 'CLOSE on a read-only mailbox expunges nothing and succeeds')
  assert.equal((await f.store.getMailbox(USER, 'INBOX'))!.messages, 3)
  await c.cmd('SELECT INBOX')
  assert.match(await c.cmd('CHECK', 'x4'), /^x4 OK/m)
  assert.match(await c.cmd('UNSELECT', 'x5'), /^x5 OK/m)
  assert.equal((await f.store.getMailbox(USER, 'INBOX'))!.messages, 3, 'UNSELECT expunges nothing')
  await c.cmd('SELECT INBOX')
  const closed = await c.cmd('CLOSE', 'x6')
  assert.doesNotMatch(closed, /EXPUNGE/, 'CLOSE expunges silently')
  assert.match(closed, /^x6 OK/m)
  assert.equal((await f.store.getMailbox(USER, 'INBOX'))!.messages, 2)
  assert.match(await c.cmd('FETCH 1 FLAGS', 'x7'), /^x7 BAD/m, 'back in the authenticated state')
})

test('STORE forms, UID EXPUNGE of a subset, APPEND with flags, date and UTF8', async (t) => {
  const { f, c } = await session(t)
  for (let i = 1; i <= 4; i++) await f.store.append(USER, 'INBOX', { raw: simpleMessage(`s${i}`) })
  await c.cmd('SELECT INBOX')
  assert.match(await c.cmd('STORE 1:2 FLAGS (\\Seen $A)', 'f1'), /\* 1 FETCH \(FLAGS \(\\Seen \$A \\Recent\)\)\r\n\* 2 FETCH \(FLAGS \(\\Seen \$A \\Recent\)\)\r\nf1 OK/, 'appended before the SELECT: recent in it')
  assert.match(await c.cmd('STORE 1 -FLAGS ($A)', 'f2'), /\* 1 FETCH \(FLAGS \(\\Seen \\Recent\)\)\r\n/)
  assert.match(await c.cmd('STORE 2 +FLAGS.SILENT (\\Answered)', 'f3'), /^f3 OK/m)
  assert.doesNotMatch(await c.cmd('STORE 2 -FLAGS.SILENT ($A)', 'f4'), /FETCH/)
  assert.match(await c.cmd('UID STORE 3 +FLAGS (\\seen)', 'f5'), /\* 3 FETCH \(FLAGS \(\\Seen \\Recent\) UID 3\)\r\n/, 'system flags normalised; UID STORE returns UID')
  assert.match(await c.cmd('STORE 1 +FLAGS (\\Recent)', 'f6'), /^f6 BAD/m, '\\Recent cannot be stored')
  await c.cmd('STORE 1:4 +FLAGS.SILENT (\\Deleted)')
  // UID EXPUNGE (RFC 4315) removes only the named \Deleted messages; EXPUNGE responses from the top down.
  assert.match(await c.cmd('UID EXPUNGE 2:3', 'f7'), /\* 3 EXPUNGE\r\n\* 2 EXPUNGE\r\nf7 OK/)
  assert.match(await c.cmd('UID FETCH 1:* (UID)', 'f8'), /\* 1 FETCH \(UID 1\)\r\n\* 2 FETCH \(UID 4\)\r\n/)

  const raw = 'Subject: appended\r\n\r\nbody\r\n'
  const appended = await c.cmd(`APPEND Drafts (\\Draft $Mine) "14-Jul-2025 09:30:00 +0200" {${raw.length}+}\r\n${raw}`, 'a1')
  assert.match(appended, /^a1 OK \[APPENDUID \d+ 1\]/m)
  await c.cmd('EXAMINE Drafts')
  assert.match(await c.cmd('FETCH 1 (FLAGS INTERNALDATE)', 'a2'), /FLAGS \(\\Draft \$Mine \\Recent\) INTERNALDATE "14-Jul-2025 07:30:00 \+0000"/)
  assert.match(await c.cmd(`APPEND Drafts UTF8 (~{${raw.length}}\r\n${raw})`, 'a3'), /^a3 BAD/m, 'UTF8 needs UTF8=ACCEPT')
  await c.cmd('UNSELECT')
  await c.cmd('ENABLE UTF8=ACCEPT')
  c.client.write(`a4 APPEND Drafts UTF8 (~{${raw.length}}\r\n`)
  assert.match(await c.client.read((b) => b.endsWith('\r\n')), /^\+ /)
  assert.match(await c.client.cmd(`${raw})`, (b) => /a4 (OK|NO|BAD)[^\r\n]*\r\n$/.test(b)), /^a4 OK \[APPENDUID \d+ 2\]/m)
  // (the literal is "x\r\n"; a stray CRLF after the command would draw a BAD that races the tagged reply)
  assert.match(await c.cmd('APPEND Nowhere {3+}\r\nx\r\n', 'a5'), /^a5 NO \[TRYCREATE\]/m)
})

test('ID, CREATE with USE, LIST-STATUS, COPY to a missing mailbox', async (t) => {
  const { f, c } = await session(t)
  await f.store.append(USER, 'INBOX', { raw: simpleMessage('one') })
  assert.match(await c.cmd('ID ("name" "test-client" "version" "1")', 'i1'), /\* ID \("name" "mailgrid" "vendor" "mailgrid"\)\r\ni1 OK/)
  assert.match(await c.cmd('ID NIL', 'i2'), /^i2 OK/m)
  assert.match(await c.cmd('CREATE Receipts (USE (\\Archive))', 'i3'), /^i3 OK/m)
  assert.match(await c.cmd('LIST "" Receipts', 'i4'), /\* LIST \(\\Archive \\HasNoChildren\) "\/" Receipts\r\n/)
  assert.match(await c.cmd('CREATE Odd (USE (\\Important))', 'i5'), /^i5 NO \[USEATTR\]/m)
  assert.match(await c.cmd('LIST (SPECIAL-USE) "" *', 'i6'), /\\Archive \\HasNoChildren\) "\/" Receipts/)
  const status = await c.cmd('LIST "" INBOX RETURN (STATUS (MESSAGES UIDNEXT UNSEEN))', 'i7')
  assert.match(status, /\* LIST \(\\HasNoChildren\) "\/" INBOX\r\n\* STATUS INBOX \(MESSAGES 1 UIDNEXT 2 UNSEEN 1\)\r\n/)
  await c.cmd('SELECT INBOX')
  assert.match(await c.cmd('COPY 1 Nowhere', 'i8'), /^i8 NO \[TRYCREATE\]/m)
  assert.match(await c.cmd('MOVE 1 Nowhere', 'i9'), /^i9 NO \[TRYCREATE\]/m)
})

test('POP3 beside IMAP: a POP3 deletion reaches the IMAP session as EXPUNGE, IMAP mail reaches POP3', async (t) => {
  const { f, c } = await session(t)
  for (let i = 1; i <= 3; i++) await f.store.append(USER, 'INBOX', { raw: simpleMessage(`p${i}`) })
  const auth = createAuthenticator({ directory: f.store, throttle: new AuthThrottle({ perIp: 10_000, perAccount: 10_000 }) })
  const pop3 = createPop3Server({ store: f.store, auth, logger: f.logger, limiter: new ConnectionLimiter() },
    { host: '127.0.0.1', port: 0, allowPlaintextAuth: true, idleTimeoutMs: 60_000 })
  const { port: popPort } = await pop3.listen()
  t.after(async () => { await pop3.close() })
  await c.cmd('SELECT INBOX')
  const pop = await RawClient.connect(popPort)
  t.after(async () => { pop.close() })
  const line = (b: string): boolean => b.endsWith('\r\n')
  assert.match(await pop.read(line), /^\+OK/)
  assert.match(await pop.cmd(`USER ${USER}`, line), /^\+OK/)
  assert.match(await pop.cmd(`PASS ${PASSWORD}`, line), /^\+OK/)
  assert.match(await pop.cmd('STAT', line), /^\+OK 3 /)
  assert.match(await pop.cmd('DELE 2', line), /^\+OK/)
  assert.match(await c.cmd('NOOP', 'n1'), /^n1 OK/m)
  assert.equal((await f.store.getMailbox(USER, 'INBOX'))!.messages, 3, 'POP3 deletes only at QUIT (RFC 1939 UPDATE state)')
  assert.match(await pop.cmd('QUIT', line), /^\+OK/)
  // Once the store has the expunge, the IMAP session hears it at its next NOOP.
  for (let i = 0; i < 50 && (await f.store.getMailbox(USER, 'INBOX'))!.messages !== 2; i++) await new Promise((resolve) => setImmediate(resolve))
  assert.equal((await f.store.getMailbox(USER, 'INBOX'))!.messages, 2)
  assert.match(await c.cmd('NOOP', 'n2'), /\* 2 EXPUNGE\r\nn2 OK/)
  await c.cmd(`APPEND INBOX {${simpleMessage('imap').length}+}\r\n${simpleMessage('imap').toString()}`)
  const again = await RawClient.connect(popPort)
  t.after(async () => { again.close() })
  await again.read(line)
  await again.cmd(`USER ${USER}`, line)
  await again.cmd(`PASS ${PASSWORD}`, line)
  assert.match(await again.cmd('STAT', line), /^\+OK 3 /, 'the IMAP APPEND is in the POP3 maildrop')
})

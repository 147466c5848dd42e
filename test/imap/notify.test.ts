// NOTIFY (RFC 5465), raw protocol (no client library here speaks it): the command's rules (section 3 and 5), the
// selected mailbox's changes pushed between commands with MessageNew's fetch attributes (5.1, 5.2), STATUS for other
// mailboxes (5.2-5.4, the STATUS option of section 3), LIST for MailboxName and SubscriptionChange (5.5, 5.6),
// NOTIFY NONE.
import { test } from 'node:test'
import type { TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, RawImap, simpleMessage, USER, sessionPair } from './helpers.ts'

const appendLine = (box: string, subject: string): string => {
  const raw = simpleMessage(subject).toString()
  return `APPEND ${box} {${Buffer.byteLength(raw)}+}\r\n${raw}`
}

async function sessions (t: TestContext): Promise<{ a: RawImap, b: RawImap }> {
  const f = await fixture(t)
  await f.store.append(USER, 'INBOX', { raw: simpleMessage('one') })
  await f.store.createMailbox(USER, 'Work')
  await f.store.createMailbox(USER, 'Work/Sub')
  await f.store.createMailbox(USER, 'Other')
  const { port } = await f.server()
  const [a, b] = await sessionPair(t, port)
  return { a, b }
}

/** Reads untagged lines until `done` holds (a notification arrives with no command running). */
async function pushed (c: RawImap, done: (buf: string) => boolean): Promise<string> {
  return await c.client.read(done, 10_000)
}

test('NOTIFY is advertised; its rules: MessageNew with MessageExpunge, FlagChange needs both, SELECTED takes message events', async (t) => {
  const { a } = await sessions(t)
  assert.match(await a.cmd('CAPABILITY'), /\bNOTIFY\b/)
  assert.match(await a.cmd('NOTIFY SET (SELECTED (MessageNew))', 'r1'), /^r1 BAD/m)
  assert.match(await a.cmd('NOTIFY SET (PERSONAL (FlagChange))', 'r2'), /^r2 BAD/m)
  assert.match(await a.cmd('NOTIFY SET (SELECTED (MailboxName))', 'r3'), /^r3 BAD/m)
  assert.match(await a.cmd('NOTIFY SET (PERSONAL (MessageNew (UID) MessageExpunge))', 'r4'), /^r4 BAD/m, 'fetch attributes are for SELECTED')
  assert.match(await a.cmd('NOTIFY SET (PERSONAL (ServerMetadataChange))', 'r5'), /^r5 NO \[BADEVENT \(MessageNew MessageExpunge FlagChange AnnotationChange MailboxName SubscriptionChange\)\]/m)
  assert.match(await a.cmd('NOTIFY SET (SELECTED (MessageNew MessageExpunge)) (SELECTED-DELAYED (MessageNew MessageExpunge))', 'r6'), /^r6 BAD/m)
  assert.match(await a.cmd('NOTIFY SET (INBOXES (MessageNew MessageExpunge)) (SUBTREE Work (MessageNew MessageExpunge FlagChange)) (MAILBOXES (Other INBOX) NONE)', 'r7'), /^r7 OK/m)
  assert.match(await a.cmd('NOTIFY NONE', 'r8'), /^r8 OK/m)
})

test('SELECTED: new mail is pushed between commands with MessageNew\'s fetch attributes; expunges too', async (t) => {
  const { a, b } = await sessions(t)
  await a.cmd('SELECT INBOX')
  assert.match(await a.cmd('NOTIFY SET (SELECTED (MessageNew (UID FLAGS) MessageExpunge FlagChange))', 'n1'), /^n1 OK/m)
  await b.cmd(appendLine('INBOX', 'two'))
  const got = await pushed(a, (buf) => /\* 2 FETCH \([^\r]*\)\r\n/.test(buf))
  assert.match(got, /\* 2 EXISTS\r\n(\* \d+ RECENT\r\n)?\* 2 FETCH \((?=[^\r]*UID 2)(?=[^\r]*FLAGS \()[^\r]*\)\r\n/, got)
  await b.cmd('SELECT INBOX')
  await b.cmd('STORE 1 +FLAGS.SILENT (\\Flagged)')
  assert.match(await pushed(a, (buf) => buf.includes('FETCH')), /\* 1 FETCH \(FLAGS \(\\Flagged[^\r]*\)/)
  await b.cmd('STORE 1 +FLAGS.SILENT (\\Deleted)')
  await b.cmd('EXPUNGE')
  assert.match(await pushed(a, (buf) => buf.includes('EXPUNGE')), /\* 1 EXPUNGE\r\n/)
})

test('SELECTED-DELAYED: expunges wait for a command that allows them', async (t) => {
  const { a, b } = await sessions(t)
  await a.cmd('SELECT INBOX')
  await a.cmd('NOTIFY SET (SELECTED-DELAYED (MessageNew MessageExpunge))')
  await b.cmd('SELECT INBOX')
  await b.cmd(appendLine('INBOX', 'two'))
  assert.match(await pushed(a, (buf) => buf.includes('EXISTS')), /\* 2 EXISTS/)
  await b.cmd('STORE 1 +FLAGS.SILENT (\\Deleted)')
  await b.cmd('EXPUNGE')
  await new Promise((resolve) => setTimeout(resolve, 300))
  assert.doesNotMatch(await a.cmd('FETCH 1 (UID)', 'd1'), /EXPUNGE/, 'not pushed, and not during FETCH')
  assert.match(await a.cmd('NOOP', 'd2'), /\* 1 EXPUNGE\r\nd2 OK/)
})

test('other mailboxes: STATUS for new mail, expunges and flag changes; the STATUS option answers at once', async (t) => {
  const { a, b } = await sessions(t)
  await a.cmd('SELECT INBOX')
  const set = await a.cmd('NOTIFY SET STATUS (SELECTED (MessageNew MessageExpunge)) (SUBTREE Work (MessageNew MessageExpunge FlagChange))', 's1')
  assert.match(set, /\* STATUS Work \(MESSAGES 0 UIDNEXT 1 UIDVALIDITY \d+ UNSEEN 0\)\r\n/)
  assert.match(set, /\* STATUS Work\/Sub \(/)
  assert.doesNotMatch(set, /STATUS (INBOX|Other)/, 'not the selected mailbox, nor one no filter names')
  await b.cmd(appendLine('Work/Sub', 'sub'))
  assert.match(await pushed(a, (buf) => buf.includes('STATUS')), /\* STATUS Work\/Sub \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+ UNSEEN 1\)\r\n/)
  await b.cmd(appendLine('Other', 'other'))
  await b.cmd('SELECT Work/Sub')
  await b.cmd('STORE 1 +FLAGS.SILENT (\\Seen)')
  const flagged = await pushed(a, (buf) => buf.includes('STATUS'))
  assert.match(flagged, /\* STATUS Work\/Sub \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+ UNSEEN 0\)\r\n/)
  assert.doesNotMatch(flagged, /Other/)
  // while a command runs, the STATUS comes before its tagged reply
  await b.cmd(appendLine('Work', 'w'))
  await new Promise((resolve) => setTimeout(resolve, 50))
  const noop = await a.cmd('NOOP', 's2')
  const all = noop.includes('STATUS Work ') ? noop : noop + await pushed(a, (buf) => buf.includes('STATUS Work '))
  assert.match(all, /\* STATUS Work \(MESSAGES 1 /)
  // NOTIFY NONE: nothing more
  await a.cmd('NOTIFY NONE')
  await b.cmd(appendLine('Work', 'w2'))
  assert.doesNotMatch(await a.cmd('NOOP', 's3'), /STATUS/)
})

test('while IDLE runs, STATUS for another mailbox comes at once', async (t) => {
  const { a, b } = await sessions(t)
  await a.cmd('SELECT INBOX')
  await a.cmd('NOTIFY SET (SELECTED (MessageNew MessageExpunge)) (MAILBOXES Other (MessageNew MessageExpunge))')
  a.client.write('i1 IDLE\r\n')
  assert.match(await a.client.read((buf) => buf.includes('+ ')), /^\+ /)
  await b.cmd(appendLine('Other', 'o'))
  assert.match(await pushed(a, (buf) => buf.includes('STATUS')), /\* STATUS Other \(MESSAGES 1 /)
  await b.cmd(appendLine('INBOX', 'i'))
  assert.match(await pushed(a, (buf) => buf.includes('EXISTS')), /\* 2 EXISTS/)
  a.client.write('DONE\r\n')
  assert.match(await a.client.read((buf) => /i1 OK/.test(buf)), /i1 OK/)
})

test('MailboxName and SubscriptionChange: LIST for created, renamed (OLDNAME), deleted (\\NonExistent), (un)subscribed', async (t) => {
  const { a, b } = await sessions(t)
  assert.match(await a.cmd('NOTIFY SET (PERSONAL (MailboxName SubscriptionChange))', 'm1'), /^m1 OK/m)
  await b.cmd('CREATE Fresh')
  assert.match(await pushed(a, (buf) => buf.includes('LIST')), /\* LIST \(\) "\/" Fresh\r\n/)
  await b.cmd('RENAME Fresh Renamed')
  assert.match(await pushed(a, (buf) => buf.includes('LIST')), /\* LIST \(\) "\/" Renamed \("OLDNAME" \(Fresh\)\)\r\n/)
  await b.cmd('SUBSCRIBE Renamed')
  assert.match(await pushed(a, (buf) => buf.includes('LIST')), /\* LIST \(\\Subscribed\) "\/" Renamed\r\n/)
  await b.cmd('DELETE Renamed')
  assert.match(await pushed(a, (buf) => buf.includes('LIST')), /\* LIST \(\\NonExistent\) "\/" Renamed\r\n/)
})

test('a pushed MessageNew FETCH still being read finishes before the next command starts (before OK [CLOSED])', async (t) => {
  const f = await fixture(t)
  await f.store.append(USER, 'INBOX', { raw: simpleMessage('one') })
  await f.store.createMailbox(USER, 'Other')
  // the store, with message reads slowed down once armed: the push's FETCH is still reading when SELECT arrives
  let slow = false
  const store = new Proxy(f.store, {
    get (target, key, receiver) {
      const value = Reflect.get(target, key, receiver)
      if (typeof value !== 'function') return value
      const fn = value.bind(target) as (...a: unknown[]) => unknown
      if (!['getMessages', 'listMessages', 'getMessage', 'readMessage', 'streamMessage', 'getMeta'].includes(String(key))) return fn
      return async (...a: unknown[]) => {
        if (slow) await new Promise((resolve) => setTimeout(resolve, 300))
        return await fn(...a)
      }
    }
  })
  const { port } = await f.server({}, store)
  const [a, b] = await sessionPair(t, port)
  await a.cmd('ENABLE QRESYNC')
  await a.cmd('SELECT INBOX')
  await a.cmd('NOTIFY SET (SELECTED (MessageNew (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)]) MessageExpunge))')
  slow = true
  await b.cmd(appendLine('INBOX', 'two'))
  await pushed(a, (buf) => buf.includes('EXISTS'))
  const reply = await a.cmd('SELECT Other', 'x1')
  slow = false
  const fetch = reply.indexOf('* 2 FETCH')
  const closed = reply.indexOf('[CLOSED]')
  assert.ok(fetch >= 0 && closed > fetch, reply)
})

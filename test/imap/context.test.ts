// CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 section 4), raw protocol (no client library speaks them): a SEARCH or
// SORT with RETURN (UPDATE) keeps its result up to date with unsolicited ESEARCH ADDTO / REMOVEFROM responses
// carrying the command's tag, as messages arrive or change flags (this session's changes and others'), until
// CANCELUPDATE; context-position 0 for SEARCH, the position in the sorted result for SORT.
import { test } from 'node:test'
import type { TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, RawImap, simpleMessage, USER, sessionPair } from './helpers.ts'
import { CONTEXTS_MAX } from '../../node/imap/search-context.ts'

const appendLine = (box: string, subject: string, flags = ''): string => {
  const raw = simpleMessage(subject).toString()
  return `APPEND ${box} (${flags}) {${Buffer.byteLength(raw)}+}\r\n${raw}`
}

async function twoSessions (t: TestContext, subjects: string[]): Promise<{ a: RawImap, b: RawImap }> {
  const f = await fixture(t)
  for (const s of subjects) await f.store.append(USER, 'INBOX', { raw: simpleMessage(s) })
  const { port } = await f.server()
  const [a, b] = await sessionPair(t, port)
  await a.cmd('SELECT INBOX')
  await b.cmd('SELECT INBOX')
  return { a, b }
}

test('CONTEXT=SEARCH and CONTEXT=SORT are advertised', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  assert.match(await c.cmd('CAPABILITY'), /CONTEXT=SEARCH CONTEXT=SORT/)
})

test('SEARCH RETURN (ALL UPDATE): ADDTO for new matches, REMOVEFROM when a message stops matching', async (t) => {
  const { a, b } = await twoSessions(t, ['one', 'two', 'three'])
  await a.cmd('STORE 2 +FLAGS.SILENT (\\Seen)')
  assert.match(await a.cmd('SEARCH RETURN (ALL UPDATE) UNSEEN', 'A284'), /\* ESEARCH \(TAG "A284"\) ALL 1,3\r\nA284 OK/)
  // another session's APPEND: the new message matches
  assert.match(await b.cmd(appendLine('INBOX', 'four')), /OK \[APPENDUID/)
  const noop = await a.cmd('NOOP')
  assert.match(noop, /\* 4 EXISTS\r\n(\* \d+ RECENT\r\n)?\* ESEARCH \(TAG "A284"\) ADDTO \(0 4\)\r\n/, 'ADDTO after the EXISTS that announces it')
  // this session's own STORE: message 3 no longer matches
  assert.match(await a.cmd('STORE 3 +FLAGS (\\Seen)'), /\* ESEARCH \(TAG "A284"\) REMOVEFROM \(0 3\)\r\n/)
  // another session's flag change, and a message that did not match before
  await b.cmd('STORE 2 -FLAGS.SILENT (\\Seen)')
  assert.match(await a.cmd('NOOP'), /\* ESEARCH \(TAG "A284"\) ADDTO \(0 2\)\r\n/)
  // a change that leaves the result as it is says nothing
  await b.cmd('STORE 1 +FLAGS.SILENT (\\Flagged)')
  assert.doesNotMatch(await a.cmd('NOOP'), /ESEARCH/)
})

test('UID SEARCH RETURN (UPDATE) reports UIDs; an expunged result message leaves with its EXPUNGE alone', async (t) => {
  const { a, b } = await twoSessions(t, ['one', 'two', 'three'])
  assert.match(await a.cmd('UID SEARCH RETURN (UPDATE) ALL', 'U1'), /\* ESEARCH \(TAG "U1"\) UID ALL 1:3\r\nU1 OK/)
  await b.cmd('STORE 2 +FLAGS.SILENT (\\Deleted)')
  await b.cmd('EXPUNGE')
  await b.cmd(appendLine('INBOX', 'four'))
  const noop = await a.cmd('NOOP')
  assert.match(noop, /\* 2 EXPUNGE\r\n/)
  assert.doesNotMatch(noop, /REMOVEFROM/)
  assert.match(noop, /\* ESEARCH \(TAG "U1"\) UID ADDTO \(0 4\)\r\n/)
})

test('SORT RETURN (ALL UPDATE): each ADDTO and REMOVEFROM names its position in the sorted result', async (t) => {
  const { a, b } = await twoSessions(t, ['delta', 'bravo', 'foxtrot'])
  assert.match(await a.cmd('SORT RETURN (ALL UPDATE) (SUBJECT) UTF-8 UNDELETED', 'S1'), /\* ESEARCH \(TAG "S1"\) ALL 2,1,3\r\nS1 OK/)
  // charlie goes between bravo and delta: position 2; alpha first: position 1
  await b.cmd(appendLine('INBOX', 'charlie'))
  await b.cmd(appendLine('INBOX', 'alpha'))
  const noop = await a.cmd('NOOP')
  assert.match(noop, /\* ESEARCH \(TAG "S1"\) ADDTO \(1 5\)\r\n\* ESEARCH \(TAG "S1"\) ADDTO \(3 4\)\r\n/, noop)
  // result now alpha(5) bravo(2) charlie(4) delta(1) foxtrot(3): deleting delta removes position 4
  assert.match(await a.cmd('STORE 1 +FLAGS (\\Deleted)'), /\* ESEARCH \(TAG "S1"\) REMOVEFROM \(4 1\)\r\n/)
  // and the context agrees with a fresh SORT
  assert.match(await a.cmd('SORT (SUBJECT) UTF-8 UNDELETED'), /\* SORT 5 2 4 3\r\n/)
})

test('CANCELUPDATE ends a context; an unknown tag is BAD; past the limit a context is refused with NOUPDATE', async (t) => {
  const { a, b } = await twoSessions(t, ['one'])
  await a.cmd('SEARCH RETURN (UPDATE) ALL', 'C1')
  await a.cmd('UID SORT RETURN (UPDATE) (ARRIVAL) UTF-8 ALL', 'C2')
  assert.match(await a.cmd('CANCELUPDATE "C1"', 'x1'), /^x1 OK/m)
  assert.match(await a.cmd('CANCELUPDATE "C1"', 'x2'), /^x2 BAD/m)
  await b.cmd(appendLine('INBOX', 'two'))
  const noop = await a.cmd('NOOP')
  assert.doesNotMatch(noop, /TAG "C1"/)
  assert.match(noop, /\* ESEARCH \(TAG "C2"\) UID ADDTO \(2 2\)\r\n/)
  for (let i = 2; i <= CONTEXTS_MAX; i++) assert.match(await a.cmd('SEARCH RETURN (UPDATE) ALL', `K${i}`), new RegExp(`^K${i} OK SEARCH`, 'm'))
  assert.match(await a.cmd('SEARCH RETURN (COUNT UPDATE) ALL', 'K99'), /\* ESEARCH \(TAG "K99"\) COUNT 2\r\nK99 OK \[NOUPDATE "K99"\]/)
  // a new SELECT drops every context
  await a.cmd('SELECT INBOX')
  await b.cmd(appendLine('INBOX', 'three'))
  assert.doesNotMatch(await a.cmd('NOOP'), /ESEARCH/)
  assert.match(await a.cmd('CANCELUPDATE "C2"', 'x3'), /^x3 BAD/m)
})

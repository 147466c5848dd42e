// METADATA (RFC 5464), raw protocol (imapflow and imaplib have no METADATA commands): SETMETADATA and GETMETADATA
// on the server ("") and on a mailbox, /private and /shared kept apart, NIL removes, entry names case-insensitive,
// DEPTH 0/1/infinity, MAXSIZE with [METADATA LONGENTRIES n], [METADATA MAXSIZE n] and [METADATA TOOMANY], bad names
// BAD; entries follow a renamed mailbox; values are kept in the store's replicated per-user attributes.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, RawImap, USER } from './helpers.ts'
import { METADATA_ENTRIES_MAX, METADATA_VALUE_BYTES_MAX } from '../../node/imap/commands/metadata.ts'

test('METADATA: set, get, remove; server and mailbox entries; /private and /shared apart', async (t) => {
  const f = await fixture(t)
  await f.store.createMailbox(USER, 'Work')
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  await c.login()
  assert.match(await c.cmd('CAPABILITY'), /\bMETADATA\b/)
  // RFC 5464 section 4.3 examples
  assert.match(await c.cmd('SETMETADATA "" (/shared/comment "Shared comment")', 'a'), /^a OK/m)
  assert.match(await c.cmd('SETMETADATA Work (/private/comment "My own comment" /shared/comment {13+}\r\nTeam comment.)', 'b'), /^b OK/m)
  assert.match(await c.cmd('GETMETADATA "" /shared/comment', 'c'), /\* METADATA "" \(\/shared\/comment "Shared comment"\)\r\nc OK/)
  assert.match(await c.cmd('GETMETADATA Work (/PRIVATE/Comment /shared/comment)', 'd'), /\* METADATA Work \(\/private\/comment "My own comment" \/shared\/comment "Team comment\."\)\r\nd OK/)
  // an entry asked for by name that has no value is NIL
  assert.match(await c.cmd('GETMETADATA Work (/private/missing)', 'e'), /\* METADATA Work \(\/private\/missing NIL\)\r\ne OK/)
  // NIL removes
  assert.match(await c.cmd('SETMETADATA Work (/private/comment NIL)', 'f'), /^f OK/m)
  assert.match(await c.cmd('GETMETADATA Work /private/comment', 'g'), /\/private\/comment NIL/)
  // the entries follow a rename (they belong to the mailbox, not its name)
  await c.cmd('RENAME Work Play')
  assert.match(await c.cmd('GETMETADATA Play /shared/comment', 'h'), /\* METADATA Play \(\/shared\/comment "Team comment\."\)/)
  assert.match(await c.cmd('GETMETADATA Missing /shared/comment', 'i'), /^i NO \[NONEXISTENT\]/m)
  // what the store holds: the user's attributes (replicated like any change of the user's mail on a grid)
  const attrs = await f.store.listAttrs(USER, 'imap/meta/')
  assert.equal(attrs.length, 2)
})

test('GETMETADATA DEPTH and MAXSIZE; the limits', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  await c.login()
  await c.cmd('SETMETADATA "" (/private/a "1" /private/a/b "2" /private/a/b/c "3" /private/a/d "a long value here")')
  assert.match(await c.cmd('GETMETADATA (DEPTH 0) "" /private/a', 'd0'), /\* METADATA "" \(\/private\/a "1"\)\r\nd0 OK/)
  const one = await c.cmd('GETMETADATA (DEPTH 1) "" /private/a', 'd1')
  assert.match(one, /\/private\/a "1"/)
  assert.match(one, /\/private\/a\/b "2"/)
  assert.match(one, /\/private\/a\/d "a long value here"/)
  assert.doesNotMatch(one, /\/private\/a\/b\/c/)
  assert.match(await c.cmd('GETMETADATA (DEPTH infinity) "" /private/a', 'd2'), /\/private\/a\/b\/c "3"/)
  const limited = await c.cmd('GETMETADATA (MAXSIZE 5 DEPTH 1) "" /private/a', 'm')
  assert.doesNotMatch(limited, /a long value/)
  assert.match(limited, /^m OK \[METADATA LONGENTRIES 17\]/m)
  // bad entry names are BAD; a value over the limit NO [METADATA MAXSIZE n]
  for (const bad of ['/other/x', '/private', '/private/', '/private//x', '/private/a*', 'private/x']) {
    assert.match(await c.cmd(`SETMETADATA "" (${JSON.stringify(bad)} "v")`, 'x'), /^x BAD/m, bad)
  }
  const big = 'v'.repeat(METADATA_VALUE_BYTES_MAX + 1)
  assert.match(await c.cmd(`SETMETADATA "" (/private/big {${big.length}+}\r\n${big})`, 'y'), new RegExp(`^y NO \\[METADATA MAXSIZE ${METADATA_VALUE_BYTES_MAX}\\]`, 'm'))
  // TOOMANY past the per-user count
  const entries = Array.from({ length: 100 }, (_, i) => `/private/n${i} "v"`).join(' ')
  let reply = ''
  for (let k = 0; k * 100 <= METADATA_ENTRIES_MAX && !/NO \[METADATA TOOMANY\]/.test(reply); k++) {
    reply = await c.cmd(`SETMETADATA "" (${entries.replace(/\/n(\d+)/g, `/n${k}-$1`)})`, `z${k}`)
  }
  assert.match(reply, /NO \[METADATA TOOMANY\]/)
})

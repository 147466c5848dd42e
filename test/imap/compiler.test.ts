// The IMAP response compiler: string forms, escaping, NIL, nesting, literals and stream parts.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { atom, compileData, compileStatus, compileContinuation, list, nstr, num, str } from '../../node/imap/protocol/compiler.ts'
import type { Part, StreamLiteral } from '../../node/imap/protocol/compiler.ts'
import { formatOrderedSet, formatSequenceSet, inRanges, parseSequenceSet, resolveSequenceSet } from '../../node/imap/protocol/sequence.ts'

const text = (parts: Part[]): string => parts.map((p) => Buffer.isBuffer(p) ? p.toString('latin1') : `<stream ${p.size}>`).join('')

test('strings are quoted, escaped, or sent as literals when they must be', () => {
  const options = { utf8: false }
  assert.equal(text(compileData('*', [str('plain')], options)), '* "plain"\r\n')
  assert.equal(text(compileData('*', [str('a"b\\c')], options)), '* "a\\"b\\\\c"\r\n')
  assert.equal(text(compileData('*', [str('two\r\nlines')], options)), '* {10}\r\ntwo\r\nlines\r\n')
  assert.equal(text(compileData('*', [str('Grüße')], options)), '* {7}\r\nGr\xc3\xbc\xc3\x9fe\r\n')
  assert.equal(Buffer.concat(compileData('*', [str('Grüße')], { utf8: true }) as Buffer[]).toString('utf8'), '* "Grüße"\r\n')
  assert.equal(text(compileData('*', [nstr(null), nstr('x')], options)), '* NIL "x"\r\n')
})

test('nested lists and numbers', () => {
  const parts = compileData('*', [num(3), atom('FETCH'), list([atom('FLAGS'), list([atom('\\Seen')]), atom('UID'), num(7)])], { utf8: false })
  assert.equal(text(parts), '* 3 FETCH (FLAGS (\\Seen) UID 7)\r\n')
})

test('stream literals stay separate parts after their announcement', () => {
  const body: StreamLiteral = { type: 'stream', size: 5, binary: false, open: async function * () { yield Buffer.from('hello') } }
  const parts = compileData('*', [num(1), atom('FETCH'), list([atom('BODY[]'), body])], { utf8: false })
  assert.equal(parts.length, 3)
  assert.equal(text(parts), '* 1 FETCH (BODY[] {5}\r\n<stream 5>)\r\n')
})

test('status text cannot break the line or fake a response code', () => {
  assert.equal(compileStatus('a', 'NO', 'bad\r\nb OK forged').toString(), 'a NO bad b OK forged\r\n')
  assert.equal(compileStatus('a', 'OK', '[ALERT] fake').toString(), 'a OK  [ALERT] fake\r\n')
  assert.equal(compileStatus('a', 'OK', 'done', { name: 'UIDNEXT', args: [num(4)] }).toString(), 'a OK [UIDNEXT 4] done\r\n')
  assert.equal(compileContinuation('Ready').toString(), '+ Ready\r\n')
})

test('sequence sets parse, resolve * and format', () => {
  assert.equal(parseSequenceSet('1:x'), null)
  assert.equal(parseSequenceSet('0'), null)
  assert.equal(parseSequenceSet('4294967296'), null)
  const ranges = resolveSequenceSet(parseSequenceSet('7:*,1,2:3')!, 5)
  assert.deepEqual(ranges, [{ start: 1, end: 3 }, { start: 5, end: 7 }])
  assert.ok(inRanges(ranges, 6))
  assert.ok(!inRanges(resolveSequenceSet(parseSequenceSet('1,3')!, 9), 2))
  assert.equal(formatSequenceSet([5, 1, 2, 3, 9]), '1:3,5,9')
  assert.equal(formatOrderedSet([4, 5, 2]), '4:5,2')
})

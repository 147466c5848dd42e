// Every failure `npm run fuzz` found, as a test that failed before its fix. Each names the target, the input
// class and the seed/index that found it (FUZZ_SEED=... FUZZ_INDEX=... FUZZ_TARGETS=... npm run fuzz replays it).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { ImapParser } from '../../node/imap/protocol/parser.ts'
import { CONTINUATION_LINE_BYTES_MAX, LINE_BYTES_MAX } from '../../node/imap/protocol/constants.ts'
import type { ParserEvent, Token } from '../../node/imap/protocol/types.ts'
import { ProgramReader, SEARCH_KEY_DEPTH_MAX } from '../../node/imap/search-program.ts'
import { ArgumentError } from '../../node/imap/errors.ts'
import { listMatcher } from '../../node/imap/mailboxes.ts'
import { InputSource } from './engine.ts'
import { imapParser, runImapParser } from './targets/imap-parser.ts'
import { imapSession, lastSessionOutput } from './targets/imap-session.ts'

function events (parser: ImapParser, chunks: Buffer[], onCommand?: (p: ImapParser) => void): ParserEvent[] {
  const out: ParserEvent[] = []
  for (const chunk of chunks) {
    parser.push(chunk)
    for (let e = parser.next(); e.type !== 'need'; e = parser.next()) {
      out.push(e)
      if (e.type === 'command') onCommand?.(parser)
    }
  }
  return out
}

function split (data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = []
  for (let off = 0; off < data.length; off += size) out.push(data.subarray(off, off + size))
  return out
}

// imap-parser, FUZZ_SEED=1 FUZZ_INDEX=1238: an AUTHENTICATE response line over the limit, chunked. The fatal
// BAD took its "tag" from the raw line's first chunk: part of the client's SASL credentials echoed back as a
// tag, and a different answer than for the same bytes in one piece.
test('imap-parser: an overlong AUTHENTICATE response gets an untagged BAD, however it is chunked', () => {
  const credentials = Buffer.from('AGFsaWNlQGV4YW1wbGUuY29tAHNlY3JldA' + ' '.repeat(CONTINUATION_LINE_BYTES_MAX + 10))
  for (const size of [credentials.length, 27, 1000]) {
    const parser = new ImapParser()
    const out = events(parser, [Buffer.from('a AUTHENTICATE PLAIN\r\n'), ...split(credentials, size)], p => p.expectLine())
    const error = out.find(e => e.type === 'error')
    assert.ok(error !== undefined && error.type === 'error', `chunks of ${size}`)
    assert.equal(error.tag, null, `chunks of ${size}: no tag from the credentials`)
    assert.equal(error.fatal, true)
  }
})

// imap-parser (same run, chunked mode): the tag of an overlong command line came from its first chunk only, so
// `a1 ...` pushed as `a` and `1 ...` was answered `a BAD [TOOBIG]`.
test('imap-parser: the tag of an overlong command line is the whole tag, however the line is chunked', () => {
  const line = Buffer.concat([Buffer.from('a1 NOOP '), Buffer.alloc(LINE_BYTES_MAX + 10, 0x78)])
  for (const size of [line.length, 1, 2, 5000]) {
    const out = events(new ImapParser(), split(line, size))
    const error = out.find(e => e.type === 'error')
    assert.ok(error !== undefined && error.type === 'error', `chunks of ${size}`)
    assert.equal(error.tag, 'a1', `chunks of ${size}`)
    assert.equal(error.code, 'TOOBIG')
  }
  assert.doesNotThrow(() => runImapParser({ data: line, knob: 4 }))
  assert.doesNotThrow(() => runImapParser({ data: Buffer.concat([Buffer.from('a AUTHENTICATE PLAIN\r\n'), Buffer.alloc(CONTINUATION_LINE_BYTES_MAX + 5, 0x41)]), knob: 0 }))
})

// imap-session: SEARCH with a long chain of NOT (or of left-nested OR): prefix operators nest without
// parentheses, so the parser's nesting limit did not bound them, and parsing then evaluating 10,000 levels
// overflowed the stack: "NO Internal error" and V8's "Exception in PromiseRejectCallback" on stderr. Found by
// probing the class by hand, then by the grammar's chain generator; fixed with SEARCH_KEY_DEPTH_MAX (BAD [LIMIT]).
test('imap-session: SEARCH with 10,000 NOTs or left-nested ORs is BAD [LIMIT], not an internal error', async (t) => {
  await imapSession.setup!()
  t.after(async () => { await imapSession.teardown!() })
  const inputs = [
    'a SEARCH ' + 'NOT '.repeat(9990) + 'ALL',
    'a SEARCH ' + 'OR '.repeat(4990) + 'ALL '.repeat(4991),
    'a SEARCH ' + 'NOT ('.repeat(30) + 'NOT '.repeat(SEARCH_KEY_DEPTH_MAX) + 'ALL' + ')'.repeat(30)
  ]
  for (const command of inputs) {
    const data = Buffer.from(`s SELECT INBOX\r\n${command}\r\n`)
    await assert.doesNotReject(Promise.resolve(imapSession.run({ data, knob: 1 })), command.slice(0, 30))
    assert.match(lastSessionOutput(), /\r\na BAD \[LIMIT\] /, command.slice(0, 30))
  }
  // just under the limit still runs
  await assert.doesNotReject(Promise.resolve(imapSession.run({ data: Buffer.from(`s SELECT INBOX\r\na SEARCH ${'NOT '.repeat(SEARCH_KEY_DEPTH_MAX - 1)}ALL\r\n`), knob: 1 })))
  assert.match(lastSessionOutput(), /\r\na OK /)
})

test('imap search program: nesting past SEARCH_KEY_DEPTH_MAX is refused with LIMIT, at the limit accepted', () => {
  const atoms = (s: string): Token[] => s.split(' ').map(value => ({ type: 'atom', value }))
  assert.throws(() => new ProgramReader(atoms('NOT '.repeat(SEARCH_KEY_DEPTH_MAX + 1) + 'ALL')).program(), (err: unknown) => err instanceof ArgumentError && err.code === 'LIMIT')
  assert.doesNotThrow(() => new ProgramReader(atoms('NOT '.repeat(SEARCH_KEY_DEPTH_MAX) + 'ALL')).program())
  assert.doesNotThrow(() => new ProgramReader(atoms('OR '.repeat(SEARCH_KEY_DEPTH_MAX) + 'SEEN '.repeat(SEARCH_KEY_DEPTH_MAX) + 'SEEN')).program())
})

// imap-session, FUZZ_SEED=1604 FUZZ_INDEX=4754 (the short pass): LIST (SUBSCRIBED) with a 56 KB reference of
// mutated bytes: the pattern compiled to a RegExp that V8 refused ("Invalid regular expression", NO Internal
// error). Looking at the matcher showed worse: `*a*a*a...b` compiled to `.*a.*a.*a...b`, which backtracks
// exponentially against a long name (four stars against 200 a's took 2 s; ten would never end), freezing the
// node for every user. listMatcher now matches with a table, no RegExp.
test('imap LIST: a huge or star-laden pattern neither fails nor backtracks', async (t) => {
  const started = process.cpuUsage()
  const matcher = listMatcher('', '*a'.repeat(40) + 'b')
  assert.equal(matcher.test('a'.repeat(1024)), false)
  assert.equal(listMatcher('', '%a'.repeat(40) + '*').test('a'.repeat(1024)), true)
  const used = process.cpuUsage(started)
  assert.ok(used.user + used.system < 1_000_000, `${(used.user + used.system) / 1000} ms of CPU`)

  await imapSession.setup!()
  t.after(async () => { await imapSession.teardown!() })
  const input = new InputSource(imapSession, 1604).input(4754)
  await assert.doesNotReject(Promise.resolve(imapSession.run(input)))
  const data = Buffer.from(`a CREATE ${'a'.repeat(200)}\r\nb LIST "" "${'*a'.repeat(12)}b"\r\nc LIST "" "${'\\'.repeat(3)}(${'='.repeat(50_000)}"\r\n`)
  await assert.doesNotReject(Promise.resolve(imapSession.run({ data, knob: 1 })))
  assert.match(lastSessionOutput(), /\r\nb OK /)
})

test('imap LIST: the table matcher agrees with the RegExp it replaced, on small patterns', () => {
  // the old compilation, fine on inputs this small
  const regex = (reference: string, pattern: string): RegExp => {
    let full = reference + pattern
    if (full.slice(0, 5).toUpperCase() === 'INBOX' && (full.length === 5 || full[5] === '/')) full = 'INBOX' + full.slice(5)
    let source = ''
    for (const char of full) {
      if (char === '*') source += '.*'
      else if (char === '%') source += '[^/]*'
      else source += char.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
    }
    return new RegExp('^' + source + '$', 'su')
  }
  const text = (chars: string[], max: number): fc.Arbitrary<string> => fc.array(fc.constantFrom(...chars), { maxLength: max }).map(cs => cs.join(''))
  fc.assert(fc.property(
    text(['a', 'b', '/', 'I', 'n'], 3), text(['a', 'b', '/', '*', '%', '.', 'é', 'I', 'N', 'B', 'O', 'X', 'inbox'], 8), text(['a', 'b', '/', '.', 'é', 'INBOX', 'Inbox'], 8),
    (reference, pattern, name) => listMatcher(reference, pattern).test(name) === regex(reference, pattern).test(name)
  ), { numRuns: 20_000 })
})

// imap-parser, FUZZ_SEED=20261204 FUZZ_INDEX=56558 (the long pass): an atom of 63 KB of `[`. At every `[` the
// tokenizer converted the whole atom so far to a string to see whether it named a section (BODY[, BINARY[):
// quadratic, half a second of CPU per line before login. Only prefixes as long as the longest such name are
// looked at now.
test('imap-parser: an atom of 64 KiB of [ costs milliseconds, not half a second', () => {
  const line = Buffer.concat([Buffer.from('a SELECT x'), Buffer.alloc(LINE_BYTES_MAX - 20, 0x5b), Buffer.from('\r\n')])
  const started = process.cpuUsage()
  const out = events(new ImapParser(), [line])
  const used = process.cpuUsage(started)
  assert.equal(out.length, 1)
  assert.ok(used.user + used.system < 200_000, `${(used.user + used.system) / 1000} ms of CPU`)
  const replay = new InputSource(imapParser, 20261204).input(56558)
  const again = process.cpuUsage()
  runImapParser(replay)
  const cost = process.cpuUsage(again)
  assert.ok(cost.user + cost.system < 300_000, `${(cost.user + cost.system) / 1000} ms of CPU`)
})

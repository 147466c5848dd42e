// Every failure `npm run fuzz` found, as a test that failed before its fix. Each names the target, the input
// class and the seed/index that found it (FUZZ_SEED=... FUZZ_INDEX=... FUZZ_TARGETS=... npm run fuzz replays it).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ImapParser } from '../../node/imap/protocol/parser.ts'
import { CONTINUATION_LINE_BYTES_MAX, LINE_BYTES_MAX } from '../../node/imap/protocol/constants.ts'
import type { ParserEvent } from '../../node/imap/protocol/types.ts'
import { runImapParser } from './targets/imap-parser.ts'

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

// The IMAP command parser: table-driven cases, byte-by-byte and random chunking, a hostile corpus
// and a fast-check fuzz run that checks no crash and bounded buffering.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { ImapParser } from '../../node/imap/protocol/parser.ts'
import { LINE_BYTES_MAX, NESTING_DEPTH_MAX, LITERAL_BYTES_MAX } from '../../node/imap/protocol/constants.ts'
import type { ParserEvent, Token } from '../../node/imap/protocol/types.ts'

/** Feeds the input in the given chunks, answering continuations, and collects the events. */
function run (input: Buffer | string, chunkSizes?: (i: number) => number, parser = new ImapParser()): ParserEvent[] {
  const bytes = typeof input === 'string' ? Buffer.from(input, 'latin1') : input
  const events: ParserEvent[] = []
  let offset = 0
  let i = 0
  const drain = (): void => {
    for (let guard = 0; guard < 10_000; guard++) {
      const event = parser.next()
      if (event.type === 'need') return
      events.push(event)
    }
    throw new Error('parser did not settle')
  }
  while (offset < bytes.length) {
    const size = Math.max(1, chunkSizes === undefined ? bytes.length : chunkSizes(i++))
    parser.push(bytes.subarray(offset, offset + size))
    offset += size
    drain()
  }
  drain()
  return events
}

/** A compact view of tokens for table assertions. */
function show (tokens: Token[]): unknown[] {
  return tokens.map((t) => {
    switch (t.type) {
      case 'atom': return t.section === undefined ? t.value : { atom: t.value, section: show(t.section), partial: t.partial }
      case 'string': return { q: t.value }
      case 'literal': return { lit: Buffer.concat(t.chunks).toString('latin1'), binary: t.binary }
      case 'list': return show(t.items)
    }
  })
}

function commands (events: ParserEvent[]): Array<{ tag: string, name: string, args: unknown[] }> {
  return events.filter((e) => e.type === 'command').map((e) => ({ tag: e.command.tag, name: e.command.name, args: show(e.command.args) }))
}

const TABLE: Array<[string, string, { tag: string, name: string, args: unknown[] }]> = [
  ['bare command', 'a1 NOOP\r\n', { tag: 'a1', name: 'NOOP', args: [] }],
  ['lower-case name', 'a1 noop\r\n', { tag: 'a1', name: 'NOOP', args: [] }],
  ['bare LF accepted', 'a1 CAPABILITY\n', { tag: 'a1', name: 'CAPABILITY', args: [] }],
  ['atoms and quoted', 'a2 LOGIN user "p a\\"s\\\\s"\r\n', { tag: 'a2', name: 'LOGIN', args: ['user', { q: 'p a"s\\s' }] }],
  ['UTF-8 quoted', 'a SELECT "Entw\xc3\xbcrfe"\r\n', { tag: 'a', name: 'SELECT', args: [{ q: 'Entwürfe' }] }],
  ['list and flags', 'a3 STORE 1:* +FLAGS.SILENT (\\Seen $Forwarded)\r\n', { tag: 'a3', name: 'STORE', args: ['1:*', '+FLAGS.SILENT', ['\\Seen', '$Forwarded']] }],
  ['nested lists', 'a SEARCH OR (FROM a SUBJECT b) (NOT SEEN)\r\n', { tag: 'a', name: 'SEARCH', args: ['OR', ['FROM', 'a', 'SUBJECT', 'b'], ['NOT', 'SEEN']] }],
  ['empty list', 'a STATUS INBOX ()\r\n', { tag: 'a', name: 'STATUS', args: ['INBOX', []] }],
  ['section with header list and partial', 'a FETCH 1 (BODY.PEEK[1.2.HEADER.FIELDS (From To)]<0.100> UID)\r\n',
    { tag: 'a', name: 'FETCH', args: ['1', [{ atom: 'BODY.PEEK', section: ['1.2.HEADER.FIELDS', ['From', 'To']], partial: { offset: 0, length: 100 } }, 'UID']] }],
  ['empty section', 'a FETCH 1 BODY[]\r\n', { tag: 'a', name: 'FETCH', args: ['1', { atom: 'BODY', section: [], partial: undefined }] }],
  ['bracket in plain atom', 'a SELECT foo[bar]\r\n', { tag: 'a', name: 'SELECT', args: ['foo[bar]'] }],
  ['LIST wildcards', 'a LIST "" %/*\r\n', { tag: 'a', name: 'LIST', args: [{ q: '' }, '%/*'] }],
  ['synchronising literal', 'a LOGIN {4}\r\nuser {4}\r\npass\r\n', { tag: 'a', name: 'LOGIN', args: [{ lit: 'user', binary: false }, { lit: 'pass', binary: false }] }],
  ['non-synchronising literal', 'a APPEND INBOX (\\Seen) {5+}\r\nhello\r\n', { tag: 'a', name: 'APPEND', args: ['INBOX', ['\\Seen'], { lit: 'hello', binary: false }] }],
  ['literal8', 'a APPEND INBOX ~{3}\r\na\x00b\r\n', { tag: 'a', name: 'APPEND', args: ['INBOX', { lit: 'a\x00b', binary: true }] }],
  ['zero-length literal', 'a LOGIN {0}\r\n {0}\r\n\r\n', { tag: 'a', name: 'LOGIN', args: [{ lit: '', binary: false }, { lit: '', binary: false }] }],
  ['literal inside list', 'a FETCH 1 (BODY[HEADER.FIELDS ({7}\r\nSubject)])\r\n', { tag: 'a', name: 'FETCH', args: ['1', [{ atom: 'BODY', section: ['HEADER.FIELDS', [{ lit: 'Subject', binary: false }]], partial: undefined }]] }],
  ['UID command', 'a UID FETCH 1:*,$ FLAGS\r\n', { tag: 'a', name: 'UID', args: ['FETCH', '1:*,$', 'FLAGS'] }],
  ['extra spaces tolerated', 'a LOGIN  u  p\r\n', { tag: 'a', name: 'LOGIN', args: ['u', 'p'] }],
]

for (const [name, input, expected] of TABLE) {
  test(`parses: ${name}`, () => {
    const events = run(input)
    assert.deepEqual(commands(events), [expected])
    const oneByOne = run(input, () => 1)
    assert.deepEqual(commands(oneByOne), [expected], 'byte by byte')
  })
}

test('a synchronising literal asks for continuation once, before its bytes', () => {
  const parser = new ImapParser()
  parser.push(Buffer.from('a LOGIN {4}\r\n'))
  assert.deepEqual(parser.next(), { type: 'continue', tag: 'a', size: 4 })
  assert.deepEqual(parser.next(), { type: 'need' })
  parser.push(Buffer.from('us'))
  assert.deepEqual(parser.next(), { type: 'need' })
  parser.push(Buffer.from('er pass\r\n'))
  const event = parser.next()
  assert.equal(event.type, 'command')
})

test('a non-synchronising literal asks for nothing', () => {
  const events = run('a APPEND INBOX {2+}\r\nhi\r\n')
  assert.deepEqual(events.map((e) => e.type), ['command'])
})

const BAD: Array<[string, string, string | null, boolean]> = [
  ['empty line', '\r\n', null, false],
  ['tag only', 'abc\r\n', 'abc', false],
  ['invalid tag', '+x NOOP\r\n', null, false],
  ['bad command name', 'a NO-OP\r\n', 'a', false],
  ['unterminated quote', 'a LOGIN "abc\r\n', 'a', false],
  ['bad escape', 'a LOGIN "a\\b" x\r\n', 'a', false],
  ['unbalanced paren', 'a FETCH 1 (FLAGS\r\n', 'a', false],
  ['stray close paren', 'a FETCH 1 FLAGS)\r\n', 'a', false],
  ['literal mid-line', 'a LOGIN {3} x\r\n', 'a', false],
  ['NUL in line', 'a LOGIN u\x00 p\r\n', 'a', false],
  ['8-bit atom', 'a SELECT \xff\r\n', 'a', false],
  ['bad partial', 'a FETCH 1 BODY[]<1.0>\r\n', 'a', false],
  ['junk after section', 'a FETCH 1 BODY[]x\r\n', 'a', false],
  ['missing space', 'a FETCH 1 (FLAGS)(UID)\r\n', 'a', false],
  ['huge sync literal', 'a APPEND INBOX {99999999999}\r\n', 'a', false],
  ['huge non-sync literal', 'a APPEND INBOX {99999999999+}\r\n', 'a', true],
]

for (const [name, input, tag, fatal] of BAD) {
  test(`rejects: ${name}`, () => {
    const events = run(input)
    assert.equal(events.length, 1, JSON.stringify(events))
    const event = events[0]!
    assert.equal(event.type, 'error')
    if (event.type !== 'error') return
    assert.equal(event.tag, tag)
    assert.equal(event.fatal, fatal)
  })
}

test('the parser resynchronises after a BAD: the next command parses', () => {
  const events = run('a FETCH (\r\nb NOOP\r\n')
  assert.deepEqual(events.map((e) => e.type), ['error', 'command'])
})

test('a refused synchronising literal leaves the stream usable', () => {
  const events = run(`a APPEND INBOX {${LITERAL_BYTES_MAX + 1}}\r\nb NOOP\r\n`)
  assert.equal(events[0]?.type, 'error')
  assert.equal(events[0]?.type === 'error' && events[0].code, 'TOOBIG')
  assert.equal(events[1]?.type, 'command')
})

test('the literal limit can be lowered before login', () => {
  const parser = new ImapParser({ literalBytesMax: 1024 })
  const events = run('a LOGIN {2048}\r\n', undefined, parser)
  assert.equal(events[0]?.type, 'error')
})

test('LITERAL- refuses non-synchronising literals above 4096 octets and closes', () => {
  const parser = new ImapParser({ literalPlus: false })
  const ok = run('a APPEND INBOX {4096+}\r\n' + 'x'.repeat(4096) + '\r\n', undefined, parser)
  assert.equal(ok[0]?.type, 'command')
  const events = run('a APPEND INBOX {4097+}\r\n', undefined, new ImapParser({ literalPlus: false }))
  assert.equal(events[0]?.type === 'error' && events[0].fatal, true)
})

test('hostile: 10,000 opening parentheses cost a BAD, not a stack', () => {
  const events = run('a SEARCH ' + '('.repeat(10_000) + '\r\nb NOOP\r\n')
  assert.equal(events[0]?.type, 'error')
  assert.equal(events[1]?.type, 'command')
  assert.ok(NESTING_DEPTH_MAX < 100)
})

test('hostile: an overlong line is cut off without being stored', () => {
  const parser = new ImapParser()
  let error: ParserEvent | undefined
  const chunk = Buffer.alloc(4096, 0x61)
  for (let i = 0; i < 100 && error === undefined; i++) {
    parser.push(chunk)
    const event = parser.next()
    if (event.type !== 'need') error = event
    assert.ok(parser.bufferedBytes <= LINE_BYTES_MAX + 4096)
  }
  assert.equal(error?.type === 'error' && error.fatal, true)
  parser.push(Buffer.from('a NOOP\r\n'))
  assert.deepEqual(parser.next(), { type: 'need' }, 'nothing is parsed after a fatal error')
})

test('hostile: an unterminated literal holds only what arrived', () => {
  const parser = new ImapParser()
  parser.push(Buffer.from('a APPEND INBOX {1000000+}\r\n'))
  assert.deepEqual(parser.next(), { type: 'need' })
  parser.push(Buffer.alloc(1000, 0x41))
  assert.deepEqual(parser.next(), { type: 'need' })
  assert.ok(parser.bufferedBytes <= 1_000_000)
})

test('line mode reads IDLE DONE and then commands again', () => {
  const parser = new ImapParser()
  parser.expectLine()
  parser.push(Buffer.from('DONE\r\na NOOP\r\n'))
  assert.deepEqual(parser.next(), { type: 'line', line: 'DONE' })
  assert.equal(parser.next().type, 'command')
})

test('random chunking yields the same commands as one chunk', () => {
  const script = TABLE.map(([, input]) => input).join('')
  const whole = commands(run(script))
  fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 50 }), (sizes) => {
    const chunked = commands(run(script, (i) => sizes[i % sizes.length]!))
    assert.deepEqual(chunked, whole)
  }), { numRuns: 200 })
})

test('fuzz: arbitrary bytes never throw and buffering stays bounded', () => {
  const alphabet = fc.constantFrom(...'a1 (){}[]<>"\\~+*:,.%\r\n\x00\xffBODYLOGIN'.split('').map((c) => c.charCodeAt(0)))
  const bytes = fc.oneof(fc.uint8Array({ maxLength: 400 }), fc.array(alphabet, { maxLength: 400 }).map((a) => Uint8Array.from(a)))
  fc.assert(fc.property(bytes, fc.integer({ min: 1, max: 64 }), (input, chunk) => {
    const parser = new ImapParser({ literalBytesMax: 4096 })
    for (let offset = 0; offset < input.length; offset += chunk) {
      parser.push(input.subarray(offset, offset + chunk))
      for (let guard = 0; guard < 1000; guard++) {
        const event = parser.next()
        if (event.type === 'need') break
      }
      assert.ok(parser.bufferedBytes <= LINE_BYTES_MAX + 4096 + input.length)
    }
  }), { numRuns: 3000 })
})

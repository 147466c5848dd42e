// The POP3 codec alone: line reading with limits, command parsing, byte-stuffing and TOP, fed whole, byte by
// byte and in random chunks; property tests check that un-stuffing what we send gives back the message.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { DotStuffer, LineReader, TopFilter, parseCommand, parseNumber, multiline } from '../../node/pop3/codec.ts'

function stuffAll (chunks: Buffer[]): Buffer {
  const s = new DotStuffer()
  return Buffer.concat([...chunks.map(c => s.push(c)), s.end()])
}

function splitAt (buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map(c => c % (buf.length + 1)))].sort((a, b) => a - b)
  const out: Buffer[] = []
  let prev = 0
  for (const p of points) {
    out.push(buf.subarray(prev, p))
    prev = p
  }
  out.push(buf.subarray(prev))
  return out
}

/** What a client does (RFC 1939 section 3): split at CRLF, stop at ".", strip one leading dot. */
function unstuff (wire: Buffer): Buffer {
  const text = wire.toString('latin1')
  assert.ok(text.endsWith('\r\n.\r\n') || text === '.\r\n', 'terminated by CRLF.CRLF')
  const body = text.slice(0, text.length - 3)
  const lines = body === '' ? [] : body.slice(0, -2).split('\r\n')
  return Buffer.from(lines.map(l => l.startsWith('.') ? l.slice(1) : l).map(l => l + '\r\n').join(''), 'latin1')
}

test('LineReader: lines with CRLF or bare LF, split anywhere', () => {
  const input = Buffer.from('USER a\r\nPASS b c\nSTAT\r\n')
  for (const size of [1, 2, 3, 7, input.length]) {
    const r = new LineReader(1024)
    const got: string[] = []
    for (let i = 0; i < input.length; i += size) {
      r.push(input.subarray(i, i + size))
      for (let line = r.take(255); line !== null; line = r.take(255)) {
        assert.equal(line.type, 'line')
        if (line.type === 'line') got.push(line.line.toString())
      }
    }
    assert.deepEqual(got, ['USER a', 'PASS b c', 'STAT'])
  }
})

test('LineReader: 255 octets with CRLF pass, 256 are overlong and the rest of the line is dropped', () => {
  const r = new LineReader(1024)
  r.push(Buffer.from('A'.repeat(253) + '\r\n'))
  assert.deepEqual(r.take(255), { type: 'line', line: Buffer.from('A'.repeat(253)) })
  r.push(Buffer.from('B'.repeat(254) + '\r\nNOOP\r\n'))
  assert.deepEqual(r.take(255), { type: 'overlong' })
  assert.deepEqual(r.take(255), { type: 'line', line: Buffer.from('NOOP') })
  // Overlong detected before the line ends; its tail arrives later and is discarded
  r.push(Buffer.from('C'.repeat(300)))
  assert.deepEqual(r.take(255), { type: 'overlong' })
  r.push(Buffer.from('C'.repeat(100)))
  assert.equal(r.take(255), null)
  r.push(Buffer.from('CC\r\nQUIT\r\n'))
  assert.deepEqual(r.take(255), { type: 'line', line: Buffer.from('QUIT') })
  assert.equal(r.take(255), null)
})

test('LineReader: endless bytes without a line feed become a flood', () => {
  const r = new LineReader(1000)
  r.push(Buffer.alloc(300, 0x41))
  assert.deepEqual(r.take(255), { type: 'overlong' })
  let result = null
  for (let i = 0; i < 10 && result === null; i++) {
    r.push(Buffer.alloc(300, 0x41))
    result = r.take(255)
  }
  assert.deepEqual(result, { type: 'flood' })
  assert.equal(r.buffered, 0)
})

test('LineReader: a larger limit for the next line only (SASL response)', () => {
  const r = new LineReader(1024)
  const long = 'x'.repeat(1000)
  r.push(Buffer.from(`AUTH PLAIN\r\n${long}\r\n${long}\r\n`))
  assert.equal((r.take(255) as { line: Buffer }).line.toString(), 'AUTH PLAIN')
  assert.equal((r.take(4096) as { line: Buffer }).line.toString(), long)
  assert.deepEqual(r.take(255), { type: 'overlong' })
})

test('LineReader: clear drops pipelined input (STLS injection)', () => {
  const r = new LineReader(1024)
  r.push(Buffer.from('STLS\r\nUSER evil\r\n'))
  assert.equal(r.take(255)?.type, 'line')
  r.clear()
  assert.equal(r.take(255), null)
})

test('parseCommand: table', () => {
  const rows: Array<[string, { keyword: string, args: string[], rest: string } | null]> = [
    ['STAT', { keyword: 'STAT', args: [], rest: '' }],
    ['stat', { keyword: 'STAT', args: [], rest: '' }],
    ['LIST 1', { keyword: 'LIST', args: ['1'], rest: '1' }],
    ['TOP 1 10', { keyword: 'TOP', args: ['1', '10'], rest: '1 10' }],
    ['PASS  pass word ', { keyword: 'PASS', args: ['pass', 'word'], rest: ' pass word ' }],
    ['STAT ', { keyword: 'STAT', args: [], rest: '' }],
    ['', null],
    ['ST', null],
    ['STATS', null],
    ['12 4', null],
    [' STAT', null],
    ['STAT\x00', null],
    ['USER a\rb', null],
    ['GET / HTTP/1.1', { keyword: 'GET', args: ['/', 'HTTP/1.1'], rest: '/ HTTP/1.1' }]
  ]
  for (const [line, want] of rows) assert.deepEqual(parseCommand(Buffer.from(line)), want, JSON.stringify(line))
  assert.equal(parseCommand(Buffer.from([0xff, 0xfe, 0x00, 0x01])), null)
})

test('parseNumber: digits only, bounded', () => {
  assert.equal(parseNumber('1'), 1)
  assert.equal(parseNumber('007'), 7)
  for (const bad of [undefined, '', '-1', '+1', '1.5', '0x10', '1e3', '9999999999', ' 1']) assert.equal(parseNumber(bad), null, String(bad))
})

test('multiline: stuffs and terminates', () => {
  assert.equal(multiline('+OK\r\n', ['A', '.B']), '+OK\r\nA\r\n..B\r\n.\r\n')
  assert.equal(multiline('+OK\r\n', []), '+OK\r\n.\r\n')
})

test('DotStuffer: table', () => {
  const rows: Array<[string, string]> = [
    ['', '.\r\n'],
    ['a\r\n', 'a\r\n.\r\n'],
    ['.\r\n', '..\r\n.\r\n'],
    ['a\r\n.b\r\n..c\r\n', 'a\r\n..b\r\n...c\r\n.\r\n'],
    ['no final crlf', 'no final crlf\r\n.\r\n'],
    ['x\r\n.', 'x\r\n..\r\n.\r\n'],
    ['bare\nlf\n.dot\n', 'bare\r\nlf\r\n..dot\r\n.\r\n'],
    ['mid.dot\r\n', 'mid.dot\r\n.\r\n'],
    ['ends in cr\r', 'ends in cr\r\n.\r\n'],
    ['\n\n', '\r\n\r\n.\r\n']
  ]
  for (const [input, want] of rows) {
    const buf = Buffer.from(input, 'latin1')
    assert.equal(stuffAll([buf]).toString('latin1'), want, JSON.stringify(input))
    // byte by byte: every boundary (".", CR|LF) falls between chunks at least once
    assert.equal(stuffAll([...buf].map(b => Buffer.from([b]))).toString('latin1'), want, 'bytewise ' + JSON.stringify(input))
  }
})

test('DotStuffer: returns the chunk itself when nothing changes', () => {
  const s = new DotStuffer()
  const chunk = Buffer.from('plain line\r\nanother\r\n')
  assert.equal(s.push(chunk), chunk)
})

test('DotStuffer: property — for CRLF messages, the client un-stuffs exactly the message', () => {
  const line = fc.stringMatching(/^[.a-z \r]{0,12}$/).map(s => s.replace(/\r/g, ''))
  const message = fc.array(line, { maxLength: 20 }).map(ls => Buffer.from(ls.map(l => l + '\r\n').join('')))
  fc.assert(fc.property(message, fc.array(fc.nat(), { maxLength: 6 }), (msg, cuts) => {
    const wire = stuffAll(splitAt(msg, cuts))
    assert.deepEqual(unstuff(wire), msg)
    // the terminator appears exactly once, at the end
    assert.equal(wire.indexOf('\r\n.\r\n') === -1 ? wire.toString() === '.\r\n' : wire.indexOf('\r\n.\r\n') === wire.length - 5, true)
  }), { numRuns: 500 })
})

test('DotStuffer: property — any bytes, any chunking, give the same output as one chunk', () => {
  const bytes = fc.uint8Array({ maxLength: 60 }).map(a => Buffer.from(a.map(b => [0x0a, 0x0d, 0x2e, 0x41][b % 4])))
  fc.assert(fc.property(bytes, fc.array(fc.nat(), { maxLength: 8 }), (msg, cuts) => {
    assert.deepEqual(stuffAll(splitAt(msg, cuts)), stuffAll([msg]))
  }), { numRuns: 1000 })
})

function topAll (msg: Buffer, lines: number, cuts: number[]): string {
  const t = new TopFilter(lines)
  const out: Buffer[] = []
  for (const c of splitAt(msg, cuts)) {
    out.push(t.push(c))
    if (t.done) break
  }
  return Buffer.concat(out).toString('latin1')
}

test('TopFilter: header, blank line, n body lines', () => {
  const msg = Buffer.from('A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n\r\nl4\r\n')
  const rows: Array<[number, string]> = [
    [0, 'A: 1\r\nB: 2\r\n\r\n'],
    [1, 'A: 1\r\nB: 2\r\n\r\nl1\r\n'],
    [3, 'A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n\r\n'],
    [4, msg.toString()],
    [99, msg.toString()]
  ]
  for (const [n, want] of rows) {
    assert.equal(topAll(msg, n, []), want, `TOP ${n}`)
    for (let cut = 0; cut <= msg.length; cut++) assert.equal(topAll(msg, n, [cut]), want, `TOP ${n} cut ${cut}`)
    assert.equal(topAll(msg, n, [...msg.keys()]), want, `TOP ${n} bytewise`)
  }
  // No blank line at all: the whole message is header
  assert.equal(topAll(Buffer.from('A: 1\r\nB: 2'), 0, []), 'A: 1\r\nB: 2')
  // Bare LF messages and a body without a final line end
  assert.equal(topAll(Buffer.from('A: 1\n\nx\ny'), 1, [3]), 'A: 1\n\nx\n')
  assert.equal(topAll(Buffer.from('A: 1\r\n\r\nx'), 5, []), 'A: 1\r\n\r\nx')
  // CR of the blank line at the end of one chunk, its LF in the next
  assert.equal(topAll(Buffer.from('A: 1\r\n\r\nbody\r\n'), 0, [7]), 'A: 1\r\n\r\n')
})

test('LineReader: property — any chunking yields the same lines and overlong marks', () => {
  const line = fc.oneof(fc.stringMatching(/^[A-Z ]{0,20}$/), fc.stringMatching(/^[a-z]{250,300}$/))
  const input = fc.tuple(fc.array(fc.tuple(line, fc.boolean()), { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 10 }))
  const read = (chunks: Buffer[]): string[] => {
    const r = new LineReader(1 << 20)
    const out: string[] = []
    for (const c of chunks) {
      r.push(c)
      for (let x = r.take(255); x !== null; x = r.take(255)) out.push(x.type === 'line' ? x.line.toString() : `<${x.type}>`)
    }
    return out
  }
  fc.assert(fc.property(input, ([lines, cuts]) => {
    const buf = Buffer.from(lines.map(([l, crlf]) => l + (crlf ? '\r\n' : '\n')).join(''))
    const want = lines.map(([l, crlf]) => l.length + (crlf ? 2 : 1) > 255 ? '<overlong>' : l)
    assert.deepEqual(read(splitAt(buf, cuts)), want)
  }), { numRuns: 500 })
})

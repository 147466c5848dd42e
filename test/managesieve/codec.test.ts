// The ManageSieve command parser fed whole, byte by byte and in random chunks: the same commands and refusals come
// out; bounds hold (an over-long literal is skipped and refused, the stream stays in sync; a line past every bound
// is fatal).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { CommandParser, sieveString, answer } from '../../node/managesieve/codec.ts'
import type { Parsed } from '../../node/managesieve/codec.ts'
import { LITERAL_BYTES_MAX } from '../../node/managesieve/constants.ts'

const big = 'x'.repeat(LITERAL_BYTES_MAX + 10)
const INPUT = Buffer.from([
  'CAPABILITY\r\n',
  'AUTHENTICATE "PLAIN" "AGFAYgBj"\r\n',
  'PUTSCRIPT "a \\"q\\" \\\\" {7+}\r\nkeep;\r\n\r\n',
  'PUTSCRIPT "b" {6}\r\nkeep;\n\r\n',
  'HAVESPACE "x" 12345\r\n',
  `PUTSCRIPT "big" {${big.length}+}\r\n${big}\r\n`,
  'NOOP\r\n',
  'bad"line\r\n',
  '\r\n',
  'RENAMESCRIPT "a" "b"\n',
  'LOGOUT\r\n'
].join(''))

function drain (p: CommandParser): Parsed[] {
  const out: Parsed[] = []
  for (let r = p.take(); r !== null; r = p.take()) out.push(r)
  return out
}

function parseIn (chunks: Buffer[]): unknown[] {
  const p = new CommandParser()
  const out: Parsed[] = []
  for (const c of chunks) { p.push(c); out.push(...drain(p)) }
  return out.map(x => x.kind === 'command' ? { ...x, args: x.args.map(a => a.type === 'string' ? { type: 'string', value: a.value.toString('latin1') } : a) } : x)
}

test('commands parse the same whole, byte by byte and in random chunks', () => {
  const whole = parseIn([INPUT])
  assert.deepEqual(whole.map(x => (x as { name?: string, kind: string }).name ?? (x as { kind: string }).kind), [
    'CAPABILITY', 'AUTHENTICATE', 'PUTSCRIPT', 'PUTSCRIPT', 'HAVESPACE', 'error', 'NOOP', 'error', 'error', 'RENAMESCRIPT', 'LOGOUT'
  ])
  assert.deepEqual((whole[2] as { args: unknown[] }).args, [{ type: 'string', value: 'a "q" \\' }, { type: 'string', value: 'keep;\r\n' }])
  assert.deepEqual((whole[3] as { args: unknown[] }).args, [{ type: 'string', value: 'b' }, { type: 'string', value: 'keep;\n' }])
  assert.deepEqual((whole[4] as { args: unknown[] }).args, [{ type: 'string', value: 'x' }, { type: 'number', value: 12345 }])
  assert.deepEqual(whole[5], { kind: 'error', code: 'QUOTA/MAXSIZE', message: `Literal larger than ${LITERAL_BYTES_MAX} bytes` })
  const bytes: Buffer[] = []
  for (let i = 0; i < INPUT.length; i++) bytes.push(INPUT.subarray(i, i + 1))
  assert.deepEqual(parseIn(bytes), whole)
  fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: INPUT.length }), { maxLength: 40 }), cuts => {
    const points = [...new Set(cuts)].sort((a, b) => a - b)
    const chunks: Buffer[] = []
    let at = 0
    for (const p of points) { chunks.push(INPUT.subarray(at, p)); at = p }
    chunks.push(INPUT.subarray(at))
    assert.deepEqual(parseIn(chunks), whole)
  }), { numRuns: 200 })
})

test('bounds: an endless line and a literal past the discard bound are fatal; a SASL response alone on its line', () => {
  const p = new CommandParser()
  p.push(Buffer.from('NOOP ' + 'a'.repeat(20_000)))
  assert.equal(p.take()?.kind, 'fatal')
  const q = new CommandParser()
  q.push(Buffer.from('PUTSCRIPT "x" {999999999+}\r\n'))
  assert.equal(q.take()?.kind, 'fatal')
  const r = new CommandParser()
  r.bareString = true
  r.push(Buffer.from('"AGFAYgBj"\r\n'))
  const got = r.take()
  assert.ok(got?.kind === 'command' && got.name === '' && got.args.length === 1)
})

test('answers: quoted when possible, a literal otherwise', () => {
  assert.equal(sieveString('a "b" \\'), '"a \\"b\\" \\\\"')
  assert.equal(sieveString('two\r\nlines'), '{10}\r\ntwo\r\nlines')
  assert.equal(answer('NO', 'gone', 'NONEXISTENT'), 'NO (NONEXISTENT) "gone"\r\n')
})

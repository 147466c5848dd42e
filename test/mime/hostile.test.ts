// Hostile input: deep nesting, part floods, unclosed and duplicate boundaries, huge header lines, near-miss
// boundary lines, garbage bytes. analyzeMessage must not throw, must respect its limits, and must stay
// linear: each input of a few MB gets a time bound that a quadratic rescan would miss by orders of magnitude.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import {
  analyzeMessage, decodedText, decodeHeaderValue, ENVELOPE_ADDRESSES_MAX, FIELD_VALUE_BYTES_MAX, findPart, headerFields,
  MIME_DEPTH_MAX, MIME_PARTS_MAX, PARAMS_MAX, textParts
} from '../../store/mime/index.ts'
import type { MessageMeta, MimePart } from '../../store/mime/index.ts'
import { msg, validate } from './helpers.ts'

/**
 * CPU time, not wall time (a loaded machine stretches the one, hardly the other); generous: a quadratic pass over
 * these inputs would take minutes.
 */
const HOSTILE_MS_MAX = 2000
const cpuMs = (): number => { const u = process.cpuUsage(); return (u.user + u.system) / 1000 }

function timed (raw: Buffer): { meta: MessageMeta, ms: number } {
  const t0 = cpuMs()
  const meta = analyzeMessage(raw)
  const ms = cpuMs() - t0
  validate(meta, raw)
  return { meta, ms }
}

function depthOf (p: MimePart): number {
  let d = 0
  for (const c of p.parts ?? []) d = Math.max(d, 1 + depthOf(c))
  if (p.message !== undefined) d = Math.max(d, 1 + depthOf(p.message.root))
  return d
}

function countParts (p: MimePart): number {
  let n = 1
  for (const c of p.parts ?? []) n += countParts(c)
  if (p.message !== undefined) n += countParts(p.message.root)
  return n
}

/** Exercises the read side the way IMAP and SEARCH will. */
function useAll (meta: MessageMeta, raw: Buffer): void {
  for (const p of textParts(meta)) decodedText(raw, p)
  headerFields(raw, meta.root.headerStart, meta.root.headerEnd)
  findPart(meta, [1, 1, 1])
  if (meta.envelope.subject !== null) decodeHeaderValue(meta.envelope.subject)
}

const HOSTILE: [string, () => Buffer, (meta: MessageMeta, raw: Buffer) => void][] = [
  ['10,000 nested multiparts, distinct boundaries', () => {
    let s = ''
    for (let i = 0; i < 10_000; i++) s += `Content-Type: multipart/mixed; boundary=b${i}\r\n\r\n--b${i}\r\n`
    return Buffer.from(s + '\r\nleaf\r\n')
  }, (meta) => assert.equal(depthOf(meta.root), MIME_DEPTH_MAX)],
  ['10,000 nested multiparts, one boundary', () => {
    return Buffer.from('Content-Type: multipart/mixed; boundary=same\r\n\r\n--same\r\n'.repeat(10_000) + '\r\nleaf\r\n')
  }, (meta) => assert.equal(depthOf(meta.root), MIME_DEPTH_MAX)],
  ['10,000 nested message/rfc822', () => {
    return Buffer.from('Subject: x\r\nContent-Type: message/rfc822\r\n\r\n'.repeat(10_000) + 'body\r\n')
  }, (meta) => {
    assert.equal(depthOf(meta.root), MIME_DEPTH_MAX)
    assert.ok(meta.root.lines > 0)
  }],
  ['100,000 parts in one multipart', () => {
    return Buffer.from('Content-Type: multipart/mixed; boundary=p\r\n\r\n' + '--p\r\n\r\nx\r\n'.repeat(100_000) + '--p--\r\n')
  }, (meta) => {
    assert.equal(countParts(meta.root), MIME_PARTS_MAX)
    // The rest of the message stays in the multipart's body, after its last recognised part.
    assert.equal(meta.root.parts?.length, MIME_PARTS_MAX - 1)
  }],
  ['boundaries never closed, 1,000 levels of alternative', () => {
    let s = ''
    for (let i = 0; i < 1000; i++) s += `Content-Type: multipart/alternative; boundary="u${i}"\n\n--u${i}\n`
    return Buffer.from(s + 'Content-Type: text/plain\n\ntext\n')
  }, () => {}],
  ['duplicate boundary lines everywhere', () => {
    return Buffer.from('Content-Type: multipart/mixed; boundary=d\r\n\r\n' + '--d\r\n--d\r\n--d--\r\n--d\r\n'.repeat(50_000))
  }, (meta) => assert.ok(countParts(meta.root) >= 2)],
  ['5 MB subject on one line', () => {
    return Buffer.from('Subject: ' + 'x'.repeat(5 * 1024 * 1024) + '\r\n\r\nbody')
  }, (meta) => assert.equal(meta.envelope.subject?.length, FIELD_VALUE_BYTES_MAX - 1)],
  ['5 MB folded To header', () => {
    return Buffer.from('To: ' + 'a@b,\r\n '.repeat(700_000) + 'z@y\r\n\r\nbody')
  }, (meta) => assert.equal(meta.envelope.to?.length, ENVELOPE_ADDRESSES_MAX)],
  ['1,000,000 header lines without a colon', () => Buffer.from('junk line\r\n'.repeat(1_000_000) + 'Subject: last\r\n\r\nb'), (meta) => {
    assert.equal(meta.envelope.subject, 'last')
  }],
  ['a header of blanks then one character', () => Buffer.from('Subject:' + ' '.repeat(60_000) + 'x' + ' '.repeat(60_000) + '\r\n\r\n'), (meta) => {
    assert.equal(meta.envelope.subject, 'x')
  }],
  ['100,000 nested comments in From', () => Buffer.from('From: ' + '('.repeat(30_000) + 'a@b' + ')'.repeat(30_000) + ' c@d\r\n\r\n'), () => {}],
  ['Content-Type with 100,000 parameters', () => Buffer.from('Content-Type: text/plain' + '; a=b'.repeat(10_000) + '\r\n\r\nx'), (meta) => {
    assert.equal(meta.root.params.length, PARAMS_MAX)
  }],
  ['RFC 2231 section flood', () => {
    let s = 'Content-Type: text/plain'
    for (let i = 0; i < 5000; i++) s += `; n*${i % 150}*=x%41`
    return Buffer.from(s + '\r\n\r\nx')
  }, () => {}],
  ['near-miss boundary lines', () => {
    const b = 'B'.repeat(70)
    return Buffer.from(`Content-Type: multipart/mixed; boundary="${b}"\r\n\r\n--${b}\r\n\r\n` + `--${b.slice(0, 69)}C\r\n`.repeat(40_000) + `--${b}--\r\n`)
  }, (meta) => assert.equal(meta.root.parts?.length, 1)],
  ['LF-dash spam inside 32 open multiparts', () => {
    let s = ''
    for (let i = 0; i < 32; i++) s += `Content-Type: multipart/mixed; boundary=level${i}\n\n--level${i}\n`
    return Buffer.from(s + '\n' + '--\n--level\n-'.repeat(200_000))
  }, () => {}],
  ['boundary longer than allowed', () => Buffer.from(`Content-Type: multipart/mixed; boundary=${'x'.repeat(200)}\r\n\r\n--${'x'.repeat(200)}\r\n\r\na`), (meta) => {
    assert.equal(meta.root.parts, undefined)
  }],
  ['bare CR line ends only', () => Buffer.from('Subject: cr\rContent-Type: multipart/mixed; boundary=c\r\r--c\r\rx\r--c--\r'), () => {}],
  ['invalid UTF-8 and NULs in header and body', () => Buffer.concat([Buffer.from('Subject:'), Buffer.from([0xff, 0xfe, 0x00, 0xc3, 0x0d, 0x0a, 0x0d, 0x0a, 0x80, 0x00, 0xff])]), (meta) => {
    assert.equal(meta.envelope.subject, '\u00ff\u00fe\u0000\u00c3')
  }],
  ['encoded-word spam in the subject', () => Buffer.from('Subject: ' + '=?utf-8?q?a?= =?x?'.repeat(3000) + '\r\n\r\n'), (meta) => {
    const t0 = cpuMs()
    decodeHeaderValue(meta.envelope.subject ?? '')
    assert.ok(cpuMs() - t0 < HOSTILE_MS_MAX)
  }],
  ['10 MB base64 text part decoded for SEARCH', () => Buffer.from('Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n' +
    ('QUJD'.repeat(19) + '\r\n').repeat(130_000)), (meta, raw) => {
    const t0 = cpuMs()
    assert.equal(decodedText(raw, meta.root).length, 57 * 130_000)
    assert.ok(cpuMs() - t0 < HOSTILE_MS_MAX)
  }]
]

for (const [name, make, check] of HOSTILE) {
  test(`hostile: ${name}`, () => {
    const raw = make()
    const { meta, ms } = timed(raw)
    assert.ok(ms < HOSTILE_MS_MAX, `${ms.toFixed(0)} ms for ${raw.length} bytes`)
    check(meta, raw)
    useAll(meta, raw)
  })
}

const SEEDS = [
  msg(['From: a@b', 'Content-Type: multipart/mixed; boundary=XX', '', 'pre', '--XX', 'Content-Type: text/plain; charset=utf-8', '',
    'hello', '--XX', 'Content-Type: message/rfc822', '', 'Subject: in', 'Content-Type: multipart/alternative; boundary=YY', '',
    '--YY', '', 'a', '--YY', 'Content-Type: text/html', 'Content-Transfer-Encoding: quoted-printable', '', '<b>=E9</b>', '--YY--',
    '--XX', "Content-Type: application/pdf; name*0*=utf-8''%E2%82%AC; name*1=x", 'Content-Transfer-Encoding: base64', '', 'AAAA', '--XX--', 'epi']),
  msg(['Subject: =?UTF-8?B?w6k=?=', 'To: G: a@b, c@d;', 'Content-Type: multipart/digest; boundary=d', '', '--d', '', 'Subject: x', '', 'y', '--d--'], '\n')
]

/** Random edits that keep MIME-looking material around: byte flips, boundary lines, cuts, duplicates. */
const mutation = fc.oneof(
  fc.record({ op: fc.constant('byte' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), text: fc.constantFrom('\r\n--XX\r\n', '\n--XX--\n', '\r\n\r\n', '\n--YY\n', ':', '\r', 'Content-Type: multipart/mixed; boundary=XX\r\n') }),
  fc.record({ op: fc.constant('cut' as const), at: fc.nat(), length: fc.nat({ max: 40 }) }),
  fc.record({ op: fc.constant('dup' as const), at: fc.nat(), length: fc.nat({ max: 200 }) })
)

type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never

function mutate (base: Buffer, edits: Mutation[]): Buffer {
  let b = base
  for (const e of edits) {
    const at = b.length === 0 ? 0 : e.at % (b.length + 1)
    if (e.op === 'byte') { if (b.length > 0) { b = Buffer.from(b); b[at % b.length] = e.value } }
    else if (e.op === 'insert') b = Buffer.concat([b.subarray(0, at), Buffer.from(e.text), b.subarray(at)])
    else if (e.op === 'cut') b = Buffer.concat([b.subarray(0, at), b.subarray(at + e.length)])
    else b = Buffer.concat([b.subarray(0, at + e.length), b.subarray(at)])
  }
  return b
}

/** Per input of at most a few KB: far above the microseconds it takes, far below what a hang would. */
const FUZZ_INPUT_MS_MAX = 250

test('fuzz: random bytes never throw and stay bounded', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 4096, size: 'large' }), (bytes) => {
    const raw = Buffer.from(bytes)
    const { meta, ms } = timed(raw)
    assert.ok(ms < FUZZ_INPUT_MS_MAX)
    useAll(meta, raw)
  }), { numRuns: 1000 })
})

test('fuzz: mutated messages never throw and stay bounded', () => {
  fc.assert(fc.property(fc.constantFrom(...SEEDS), fc.array(mutation, { minLength: 1, maxLength: 12 }), (seed, edits) => {
    const raw = mutate(seed, edits)
    const { meta, ms } = timed(raw)
    assert.ok(ms < FUZZ_INPUT_MS_MAX)
    useAll(meta, raw)
  }), { numRuns: 3000 })
})

test('fuzz: header-ish text of random lines never throws', () => {
  const line = fc.oneof(
    fc.constantFrom('Content-Type: multipart/mixed; boundary=q', '--q', '--q--', '', ' folded', 'Content-Type: message/rfc822',
      'From: "a" <b@c>, g: d@e;', 'Content-Transfer-Encoding: base64', 'Content-Disposition: attachment; filename*0*=x; filename*1=y'),
    fc.string({ maxLength: 20 })
  )
  fc.assert(fc.property(fc.array(line, { maxLength: 60 }), fc.constantFrom('\r\n', '\n'), (rows, eol) => {
    const raw = msg(rows, eol)
    const { meta, ms } = timed(raw)
    assert.ok(ms < FUZZ_INPUT_MS_MAX)
    useAll(meta, raw)
  }), { numRuns: 2000 })
})

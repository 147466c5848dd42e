// Property: a random MIME tree, rendered to a message (CRLF or LF, with or without preamble, epilogue and
// final line breaks), is recovered by analyzeMessage with the exact offsets the renderer recorded.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { analyzeMessage } from '../../store/mime/index.ts'
import type { MimePart } from '../../store/mime/index.ts'
import { validate } from './helpers.ts'

type Tree =
  | { kind: 'leaf', type: string, withHeader: boolean, body: string[], trailingEol: boolean }
  | { kind: 'multi', subtype: string, preamble: string | null, epilogue: string | null, children: Tree[] }
  | { kind: 'message', inner: Tree }

/** What the parser must find, offsets relative to the part's first byte. */
interface Expected {
  headerStart: number
  headerEnd: number
  bodyStart: number
  bodyEnd: number
  type: string
  children?: Expected[]
  inner?: Expected
}

// Body lines: no `=` or `_`, so no line can carry a boundary (`=_bN`); `-` is in, so `--x` lines occur.
const bodyLine = fc.string({ unit: fc.constantFrom('a', 'b', ' ', '-', '.', 'é', ':'), maxLength: 12 })
const leaf = fc.record({
  kind: fc.constant('leaf' as const),
  type: fc.constantFrom('text/plain', 'text/html', 'application/octet-stream', 'image/png'),
  withHeader: fc.boolean(),
  body: fc.array(bodyLine, { maxLength: 4 }),
  trailingEol: fc.boolean()
})

const { tree } = fc.letrec<{ tree: Tree, multi: Tree, message: Tree }>(tie => ({
  tree: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, tie('multi'), tie('message')),
  multi: fc.record({
    kind: fc.constant('multi' as const),
    subtype: fc.constantFrom('mixed', 'alternative', 'related'),
    preamble: fc.option(bodyLine, { nil: null }),
    epilogue: fc.option(bodyLine, { nil: null }),
    children: fc.array(tie('tree'), { minLength: 1, maxLength: 4 })
  }),
  message: fc.record({ kind: fc.constant('message' as const), inner: tie('tree') })
}))

function shift (e: Expected, by: number): Expected {
  return {
    headerStart: e.headerStart + by,
    headerEnd: e.headerEnd + by,
    bodyStart: e.bodyStart + by,
    bodyEnd: e.bodyEnd + by,
    type: e.type,
    ...(e.children !== undefined ? { children: e.children.map(c => shift(c, by)) } : {}),
    ...(e.inner !== undefined ? { inner: shift(e.inner, by) } : {})
  }
}

/** Renders a part (its header lines first) and records the expected structure. */
function render (t: Tree, eol: string, extraHeaders: string[], counter: { n: number }): { text: string, exp: Expected } {
  const headerBlock = (lines: string[]): string => lines.map(l => l + eol).join('') + eol
  if (t.kind === 'leaf') {
    const lines = [...extraHeaders, ...(t.withHeader ? [`Content-Type: ${t.type}`] : [])]
    const head = headerBlock(lines)
    const bodyText = t.body.join(eol) + (t.trailingEol && t.body.length > 0 ? eol : '')
    const type = t.withHeader ? t.type : 'text/plain'
    return { text: head + bodyText, exp: { headerStart: 0, headerEnd: len(head), bodyStart: len(head), bodyEnd: len(head + bodyText), type } }
  }
  if (t.kind === 'message') {
    const head = headerBlock([...extraHeaders, 'Content-Type: message/rfc822'])
    const inner = render(t.inner, eol, [`Subject: inner ${counter.n++}`], counter)
    return {
      text: head + inner.text,
      exp: { headerStart: 0, headerEnd: len(head), bodyStart: len(head), bodyEnd: len(head + inner.text), type: 'message/rfc822', inner: shift(inner.exp, len(head)) }
    }
  }
  const boundary = `=_b${counter.n++}`
  const head = headerBlock([...extraHeaders, `Content-Type: multipart/${t.subtype}; boundary="${boundary}"`])
  let text = head
  if (t.preamble !== null) text += t.preamble + eol
  const children: Expected[] = []
  t.children.forEach((child, i) => {
    text += (i === 0 ? '' : eol) + `--${boundary}` + eol
    const r = render(child, eol, [], counter)
    children.push(shift(r.exp, len(text)))
    text += r.text
  })
  text += eol + `--${boundary}--`
  if (t.epilogue !== null) text += eol + t.epilogue
  return { text, exp: { headerStart: 0, headerEnd: len(head), bodyStart: len(head), bodyEnd: len(text), type: `multipart/${t.subtype}`, children } }
}

function len (s: string): number {
  return Buffer.byteLength(s)
}

function actual (p: MimePart): Expected {
  return {
    headerStart: p.headerStart,
    headerEnd: p.headerEnd,
    bodyStart: p.bodyStart,
    bodyEnd: p.bodyEnd,
    type: `${p.type}/${p.subtype}`,
    ...(p.parts !== undefined ? { children: p.parts.map(actual) } : {}),
    ...(p.message !== undefined ? { inner: actual(p.message.root) } : {})
  }
}

test('random part trees are recovered with their offsets', () => {
  fc.assert(fc.property(tree, fc.constantFrom('\r\n', '\n'), (t, eol) => {
    const { text, exp } = render(t, eol, ['From: a@example.com', 'Subject: property'], { n: 0 })
    const raw = Buffer.from(text, 'utf8')
    const meta = analyzeMessage(raw)
    validate(meta, raw)
    assert.deepEqual(actual(meta.root), exp)
    assert.equal(meta.envelope.subject, 'property')
  }), { numRuns: 1000 })
})

test('every leaf reports its size and its lines', () => {
  fc.assert(fc.property(leaf, fc.constantFrom('\r\n', '\n'), (t, eol) => {
    const { text } = render(t, eol, [], { n: 0 })
    const raw = Buffer.from(text, 'utf8')
    const { root } = analyzeMessage(raw)
    const bodyText = t.body.join(eol) + (t.trailingEol && t.body.length > 0 ? eol : '')
    assert.equal(root.size, len(bodyText))
    if (root.type === 'text') {
      const feeds = bodyText.split('\n').length - 1
      assert.equal(root.lines, feeds + (bodyText.length > 0 && !bodyText.endsWith('\n') ? 1 : 0))
    }
  }), { numRuns: 200 })
})

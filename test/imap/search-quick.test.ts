// quickEvaluate (node/imap/search-program.ts) decides SEARCH criteria without reading anything when it can; where it
// answers, the answer must be evaluate's. Random programs over random records, some with their folded header block
// known (the memo SEARCH keeps), some not; fast-check shrinks a disagreement to the smallest program and record.

import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { evaluate, quickEvaluate } from '../../node/imap/search-program.ts'
import type { Content, Node } from '../../node/imap/search-program.ts'
import { SelectedMailbox } from '../../node/imap/mailbox-view.ts'
import type { MessageRecord } from '../../store/index.ts'
import { analyzeMessage } from '../../store/mime/index.ts'

const WORDS = ['alpha', 'beta', 'gamma', 'bob@example.com', 'ann', 'x']
const FLAGS = ['\\Seen', '\\Flagged', '\\Deleted', 'Work']
const DAY = 86_400_000

const leaf: fc.Arbitrary<Node> = fc.oneof(
  fc.constant({ op: 'all' } as Node),
  fc.record({ op: fc.constant('flag' as const), flag: fc.constantFrom(...FLAGS), present: fc.boolean() }),
  fc.record({ op: fc.constant('size' as const), larger: fc.boolean(), size: fc.integer({ min: 0, max: 400 }) }),
  fc.record({ op: fc.constant('modseq' as const), modseq: fc.integer({ min: 0, max: 20 }) }),
  fc.record({ op: fc.constant('internal' as const), cmp: fc.constantFrom('before' as const, 'on' as const, 'since' as const), day: fc.integer({ min: 0, max: 6 }).map(d => d * DAY) }),
  fc.constant({ op: 'recent' } as Node),
  fc.record({ op: fc.constant('set' as const), set: fc.array(fc.record({ start: fc.integer({ min: 1, max: 12 }), end: fc.integer({ min: 1, max: 12 }) }), { minLength: 1, maxLength: 3 }), uid: fc.boolean() }),
  fc.record({ op: fc.constant('header' as const), field: fc.constantFrom('subject', 'from'), value: fc.constantFrom('', ...WORDS), addresses: fc.boolean() })
    .map(n => n.addresses ? { ...n, pieces: n.value.split(/[^a-z0-9]+/).filter(p => p !== '') } : n),
  fc.record({ op: fc.constant('sent' as const), cmp: fc.constantFrom('before' as const, 'on' as const, 'since' as const), day: fc.integer({ min: 0, max: 6 }).map(d => d * DAY) })
)

const program: fc.Arbitrary<Node> = fc.letrec<{ node: Node }>(tie => ({
  node: fc.oneof({ depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.record({ op: fc.constant('not' as const), node: tie('node') }),
    fc.record({ op: fc.constant('or' as const), left: tie('node'), right: tie('node') }),
    fc.record({ op: fc.constant('and' as const), nodes: fc.array(tie('node'), { minLength: 1, maxLength: 3 }) }))
})).node

const message = fc.record({
  uid: fc.integer({ min: 1, max: 12 }),
  flags: fc.subarray(FLAGS),
  modseq: fc.integer({ min: 1, max: 20 }),
  day: fc.integer({ min: 0, max: 6 }),
  subject: fc.constantFrom(...WORDS, 'Alpha and Beta', '=?utf-8?q?Gamma_=C3=A9?='),
  subject2: fc.option(fc.constantFrom('beta', '=?utf-8?b?QUxQSEE=?='), { nil: undefined }),
  from: fc.constantFrom('ann <bob@example.com>', 'x@y.test', 'Gamma <g@example.com>'),
  known: fc.boolean(),
  // searched by SUBJECT before: the Subject values memo (filled by evaluate's first read of the block) is there
  searched: fc.boolean()
})

let fresh = 0

test('quickEvaluate answers as evaluate does wherever it answers', async () => {
  await fc.assert(fc.asyncProperty(program, fc.array(message, { minLength: 1, maxLength: 6 }), async (prog, messages) => {
    const uids = [...new Set(messages.map(m => m.uid))].sort((a, b) => a - b)
    const view = new SelectedMailbox({ id: 'm', name: 'INBOX', readOnly: false, uidValidity: 1, uids, highestModseq: 20, recent: uids.filter(u => u % 3 === 0) })
    const saved = new Set(uids.filter(u => u % 2 === 0))
    // one program object for every message, as SEARCH uses it (what it caches on its nodes stays right)
    const shared = structuredClone(prog)
    for (const m of messages) {
      const header = Buffer.from(`Subject: ${m.subject}\r\nFrom: ${m.from}\r\n${m.subject2 === undefined ? '' : `Subject: ${m.subject2}\r\n`}Date: ${new Date(m.day * DAY + 3_600_000).toUTCString()}\r\n\r\n`)
      const raw = Buffer.concat([header, Buffer.from('body text\r\n')])
      // the memos are node-wide, keyed by body and prefix: a blob name per distinct header block, a prefix per memo state
      const record: MessageRecord = { uid: m.uid, gid: `g${m.uid}`, flags: m.flags, modseq: m.modseq, internalDate: m.day * DAY + 1000, size: raw.length, blob: `b${header.toString('hex')}`, prefix: m.searched ? 'searched' : `fresh${fresh++}` }
      // as mayContain folds it: null where encoded words make the raw bytes unsound to decide from
      const plain = header.includes('=?') ? null : header.toString('latin1').replace(/[\r\n]/g, '').toLowerCase()
      const content = (): Content => ({
        ...(m.known ? { plainHeader: plain } : {}),
        meta: async () => analyzeMessage(raw),
        header: async () => header,
        raw: async () => raw
      })
      if (m.searched) await evaluate({ op: 'header', field: 'subject', value: 'never in any header' }, record, view, saved, { meta: async () => analyzeMessage(raw), header: async () => header, raw: async () => raw })
      const quick = quickEvaluate(structuredClone(prog), record, view, saved, content())
      // the same record searched again (its subjects are then found by the record itself), by the shared program
      assert.equal(quickEvaluate(shared, record, view, saved, content()), quick, `again: program ${JSON.stringify(prog)} on ${JSON.stringify(m)}`)
      if (quick === undefined) continue
      const full = await evaluate(structuredClone(prog), record, view, saved, content())
      assert.equal(quick, full, `program ${JSON.stringify(prog)} on ${JSON.stringify(m)}`)
    }
  }), { numRuns: 2000 })
})

test('quickEvaluate leaves to evaluate what needs a read', () => {
  const view = new SelectedMailbox({ id: 'm', name: 'INBOX', readOnly: false, uidValidity: 1, uids: [1], highestModseq: 1 })
  const record: MessageRecord = { uid: 1, gid: 'g', flags: [], modseq: 1, internalDate: 0, size: 10, blob: 'never-seen', prefix: '' }
  const content: Content = { meta: async () => { throw new Error('not read') }, header: async () => null, raw: async () => null }
  assert.equal(quickEvaluate({ op: 'header', field: 'subject', value: 'alpha' }, record, view, new Set(), content), undefined, 'no folded block known')
  assert.equal(quickEvaluate({ op: 'sent', cmp: 'on', day: 0 }, record, view, new Set(), content), undefined)
  assert.equal(quickEvaluate({ op: 'and', nodes: [{ op: 'all' }, { op: 'body', value: 'x', headers: false }] }, record, view, new Set(), content), undefined)
  assert.equal(quickEvaluate({ op: 'and', nodes: [{ op: 'flag', flag: '\\Seen', present: true }, { op: 'body', value: 'x', headers: false }] }, record, view, new Set(), content), false, 'a refused conjunct decides')
  assert.equal(quickEvaluate({ op: 'header', field: 'subject', value: 'alpha' }, record, view, new Set(), { ...content, plainHeader: 'subject: beta' }), false, 'a known block refuses')
})

test('SUBJECT from kept subjects: a later search answers as the first did; no match spans two Subject fields', async () => {
  const view = new SelectedMailbox({ id: 'm', name: 'INBOX', readOnly: false, uidValidity: 1, uids: [1, 2, 3], highestModseq: 1 })
  const headers = ['Subject: Alpha\r\nSubject: Beta\r\n\r\n', 'Subject: gamma\r\n\r\n', 'From: x@y.test\r\n\r\n']
  const messages = headers.map((h, i) => {
    const header = Buffer.from(h)
    const raw = Buffer.concat([header, Buffer.from('body\r\n')])
    const record: MessageRecord = { uid: i + 1, gid: `t${i}`, flags: [], modseq: 1, internalDate: 0, size: raw.length, blob: `kept-${header.toString('hex')}`, prefix: 'p' }
    const content = (): Content => ({ meta: async () => analyzeMessage(raw), header: async () => header, raw: async () => raw })
    return { record, content }
  })
  const subject = (value: string): Node => ({ op: 'header', field: 'subject', value })
  // a first search reads each header once (the memos), then decides each message from its kept subjects
  for (const { record, content } of messages) await evaluate(subject('never in any header'), record, view, new Set(), content())
  const first = subject('alpha')
  assert.deepEqual(messages.map(({ record, content }) => quickEvaluate(first, record, view, new Set(), content())), [true, false, false])
  // later searches (new program objects), nothing read: the subjects are found by the record
  const unread = async (): Promise<never> => { throw new Error('quickEvaluate reads nothing') }
  const none: Content = { meta: unread, header: unread, raw: unread }
  const later = (value: string): Array<boolean | undefined> => {
    const node = subject(value)
    return messages.map(({ record }) => quickEvaluate(node, record, view, new Set(), none))
  }
  assert.deepEqual(later('beta'), [true, false, false], 'the second Subject field too')
  assert.deepEqual(later('gamma'), [false, true, false])
  assert.deepEqual(later('alphabeta'), [false, false, false], 'not across two Subject fields')
  assert.deepEqual(later('a'), [true, true, false], 'a block without Subject matches nothing')
})

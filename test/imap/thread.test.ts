// THREAD (RFC 5256 section 3): the two example responses of the RFC's section 4 rebuilt from messages whose
// references and subjects give them, hand-made threads for each rule of REFERENCES (replies by References and by
// In-Reply-To, missing parents and dummies, duplicate Message-IDs, loops, truncated References, subject merging,
// sibling dates), a 20,000-deep reply chain, and THREAD / UID THREAD over a raw socket.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, RawImap, USER } from './helpers.ts'
import { formatThreads, threadOrderedSubject, threadReferences } from '../../node/imap/thread.ts'
import type { SortKeys } from '../../node/imap/sort-keys.ts'
import { baseSubject } from '../../node/imap/base-subject.ts'

interface Spec { id?: string | null, refs?: string[], subject?: string, date?: number }

/** Keys of messages 1..n in sequence order, with dates 1, 2, 3... unless given. */
function keysOf (specs: Spec[]): SortKeys[] {
  return specs.map((s, i) => {
    const subject = baseSubject(s.subject ?? '')
    return {
      arrival: 0, size: 0, date: s.date ?? i + 1, subject: subject.subject, reply: subject.reply,
      from: '', to: '', cc: '', displayFrom: '', displayTo: '',
      messageId: s.id === undefined ? `m${i + 1}@x` : s.id, references: s.refs ?? [],
    }
  })
}

const seqs = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1)
const references = (specs: Spec[]): string => formatThreads(threadReferences(keysOf(specs)), seqs(specs.length))
const ordered = (specs: Spec[]): string => formatThreads(threadOrderedSubject(keysOf(specs)), seqs(specs.length))

// RFC 5256 section 4, the example responses of THREAD ORDEREDSUBJECT and THREAD REFERENCES (messages 166 to 208).
const RFC_ORDEREDSUBJECT = '(166)(167)(168)(169)(172)(170)(171)(173)(174 (175)(176)(178)(181)(180))(179)(177 (183)(182)(188)(184)(185)(186)' +
  '(187)(189))(190)(191)(192)(193)(194 195)(196 (197)(198))(199)(200 202)(201)(203)(204)(205)(206 207)(208)'
const RFC_REFERENCES = '(166)(167)(168)(169)(172)((170)(179))(171)(173)((174)(175)(176)(178)(181)(180))((177)(183)(182)(188 (184)(189))' +
  '(185 186)(187))(190)(191)(192)(193)((194)(195 196))(197 198)(199)(200 202)(201)(203)(204)(205 206 207)(208)'

interface Tree { n: number | null, children: Tree[] }

/** A thread-list text read back into trees (the grammar of RFC 5256 section 5). */
function parseThreads (text: string): Tree[] {
  let pos = 0
  const members = (): Tree => {
    // inside "(": numbers, each the parent of what follows, then nested lists
    const top: Tree = { n: null, children: [] }
    let at = top
    for (;;) {
      if (text[pos] === ' ') pos++
      if (text[pos] === ')') { pos++; break }
      if (text[pos] === '(') {
        pos++
        at.children.push(members())
        continue
      }
      const m = /^\d+/.exec(text.slice(pos))!
      pos += m[0].length
      const node: Tree = { n: Number(m[0]), children: [] }
      if (at === top && top.n === null && top.children.length === 0) { top.n = node.n; continue }
      at.children.push(node)
      at = node
    }
    return top
  }
  const out: Tree[] = []
  while (pos < text.length) {
    assert.equal(text[pos++], '(')
    out.push(members())
  }
  return out
}

test('REFERENCES rebuilds the RFC 5256 example from messages whose References name each parent (dummies for the empty lists)', () => {
  const trees = parseThreads(RFC_REFERENCES)
  const specs = new Map<number, Spec>()
  let date = 0
  let dummies = 0
  const walk = (tree: Tree, path: string[], thread: number): void => {
    let id: string
    if (tree.n === null) id = `dummy${++dummies}@x`
    else {
      id = `m${tree.n}@x`
      specs.set(tree.n, { id, refs: path, subject: `message ${tree.n} of thread ${thread}`, date: ++date })
    }
    for (const child of tree.children) walk(child, [...path, id], thread)
  }
  trees.forEach((tree, i) => walk(tree, [], i))
  const list = seqs(43).map((i) => specs.get(165 + i)!)
  assert.equal(list.length, 43)
  assert.equal(formatThreads(threadReferences(keysOf(list)), seqs(43).map((i) => 165 + i)), RFC_REFERENCES)
})

test('ORDEREDSUBJECT rebuilds the RFC 5256 example: one thread per base subject, the first message the parent of the rest', () => {
  const trees = parseThreads(RFC_ORDEREDSUBJECT)
  const specs = new Map<number, Spec>()
  trees.forEach((tree, t) => {
    // threads by the date of their first message; the others follow it in the order listed; replies too
    specs.set(tree.n!, { subject: `topic ${t}`, date: t * 100 })
    const rest = tree.children.length === 1 && tree.children[0]!.children.length > 0
      ? [tree.children[0]!.n!, ...tree.children[0]!.children.map((c) => c.n!)]
      : tree.children.map((c) => c.n!)
    rest.forEach((n, k) => specs.set(n, { subject: `Re: topic ${t}`, date: t * 100 + k + 1 }))
  })
  const list = seqs(43).map((i) => specs.get(165 + i)!)
  assert.equal(formatThreads(threadOrderedSubject(keysOf(list)), seqs(43).map((i) => 165 + i)), RFC_ORDEREDSUBJECT)
})

test('REFERENCES, rule by rule on hand-made threads', () => {
  const cases: Array<[string, Spec[], string]> = [
    ['no references: one thread each, by date', [{ date: 3 }, { date: 1 }, { date: 2 }], '(2)(3)(1)'],
    ['a reply by References', [{}, { refs: ['m1@x'] }], '(1 2)'],
    ['a reply by In-Reply-To (the keys carry it as the only reference)', [{}, { refs: ['m1@x'] }, { refs: ['m2@x'] }], '(1 2 3)'],
    ['two replies: siblings by date, not by sequence number', [{}, { refs: ['m1@x'], date: 9 }, { refs: ['m1@x'], date: 5 }], '(1 (3)(2))'],
    ['a reply before its parent in the mailbox', [{ refs: ['m2@x'], date: 5 }, { date: 1 }], '(2 1)'],
    ['a missing parent with one child: the dummy goes, the child is promoted', [{ refs: ['gone@x'] }], '(1)'],
    ['a missing parent with two children stays as a dummy at the root', [{ refs: ['gone@x'] }, { refs: ['gone@x'] }], '((1)(2))'],
    ['a missing grandparent below a message: promoted', [{}, { refs: ['m1@x', 'gone@x'] }, { refs: ['m1@x', 'gone@x'] }], '(1 (2)(3))'],
    ['missing ancestors chained by one References', [{ refs: ['a@x', 'b@x', 'c@x'] }, { refs: ['a@x', 'z@x'] }], '((1)(2))'],
    ['a duplicate Message-ID: replies attach to the first message', [{ id: 'same@x' }, { id: 'same@x' }, { refs: ['same@x'] }], '(1 3)(2)'],
    ['no Message-ID: nobody can reference it', [{ id: null }, { id: null, refs: ['m1@x'] }], '(1)(2)'],
    ['a loop: A references B, B references A', [{ id: 'a@x', refs: ['b@x'] }, { id: 'b@x', refs: ['a@x'] }], '(2 1)'],
    ['a message referencing itself', [{ refs: ['m1@x'] }], '(1)'],
    ['a loop inside one References field', [{ refs: ['p@x', 'q@x', 'p@x'] }, { id: 'p@x' }], '(2 1)'],
    // message 1 names c under a, b; message 2 (b) says its parent is x: the link a → b made from 1's references breaks
    ['a truncated References corrected by the message itself', [{ id: 'c@x', refs: ['a@x', 'b@x'] }, { id: 'b@x', refs: ['x@x'] }], '(2 1)'],
    ['an existing parent is kept when a later References disagrees', [{}, {}, { refs: ['m1@x', 'm2@x'] }, { refs: ['m3@x', 'm2@x'] }], '(1 2 (3)(4))'],
    // step 5: threads gathered by base subject
    ['same base subject, neither a reply: a dummy over both', [{ subject: 'hello' }, { subject: 'HELLO' }], '((1)(2))'],
    ['a reply joins the thread of the original', [{ subject: 'hello' }, { subject: 'Re: hello' }, { subject: 'other' }], '(1 2)(3)'],
    ['the original arrives after the reply', [{ subject: 'Re: hello', date: 1 }, { subject: 'hello', date: 2 }], '(2 1)'],
    ['a forward by its trailer', [{ subject: 'hello' }, { subject: 'hello (fwd)' }], '(1 2)'],
    ['a dummy thread absorbs a thread of its subject', [{ refs: ['gone@x'], subject: 'x' }, { refs: ['gone@x'], subject: 'Re: x' }, { subject: 'x' }], '((1)(2)(3))'],
    ['two dummies of one subject merge their children', [{ refs: ['g1@x'], subject: 'x' }, { refs: ['g1@x'], subject: 'x' }, { refs: ['g2@x'], subject: 'x' }, { refs: ['g2@x'], subject: 'x' }], '((1)(2)(3)(4))'],
    ['empty subjects are not gathered', [{ subject: '' }, { subject: 'Re:' }], '(1)(2)'],
    ['a reply already in another thread is not moved by its subject', [{ subject: 'a' }, { subject: 'b' }, { subject: 'Re: a', refs: ['m2@x'] }], '(1)(2 3)'],
  ]
  for (const [what, specs, expected] of cases) assert.equal(references(specs), expected, what)
})

test('ORDEREDSUBJECT on hand-made messages', () => {
  assert.equal(ordered([{ subject: 'b', date: 1 }, { subject: 'Re: a', date: 3 }, { subject: 'a', date: 2 }, { subject: 'Fwd: a', date: 4 }]), '(1)(3 (2)(4))')
  assert.equal(ordered([{ subject: 'x', date: 2 }, { subject: 're: X', date: 1 }]), '(2 1)')
  assert.equal(ordered([]), '')
})

test('a 20,000-message reply chain threads and prints without recursion', () => {
  const specs: Spec[] = Array.from({ length: 20_000 }, (_, i) => ({ refs: i === 0 ? [] : [`m${i}@x`] }))
  const text = references(specs)
  assert.equal(text, `(${seqs(20_000).join(' ')})`)
  // every second message also gets a leaf reply: nesting 10,000 deep
  const branching: Spec[] = []
  for (let i = 0; i < 5000; i++) {
    branching.push({ id: `c${i}@x`, refs: i === 0 ? [] : [`c${i - 1}@x`], date: 2 * i })
    branching.push({ id: `l${i}@x`, refs: [`c${i}@x`], date: 2 * i + 1 })
  }
  const nested = references(branching)
  assert.ok(nested.startsWith('(1 (2)(3 (4)(5 (6)'))
  assert.equal(nested.split('(').length, nested.split(')').length)
})

function message (lines: string[]): Buffer {
  return Buffer.from([...lines, '', 'x'].join('\r\n'))
}

test('THREAD and UID THREAD over the wire, with search criteria; the capability names the algorithms', async (t) => {
  const f = await fixture(t)
  const gone = await f.store.append(USER, 'INBOX', { raw: message(['Subject: gone']) })
  const raws = [
    ['Subject: plans', 'Message-ID: <p@x>', 'Date: Mon, 02 Feb 2026 10:00:00 +0000'],
    ['Subject: Re: plans', 'Message-ID: <r1@x>', 'In-Reply-To: <p@x>', 'Date: Mon, 02 Feb 2026 12:00:00 +0000'],
    ['Subject: lunch', 'Message-ID: <l@x>', 'Date: Sun, 01 Feb 2026 10:00:00 +0000'],
    ['Subject: Re: plans', 'Message-ID: <r2@x>', 'References: <p@x> <r1@x>', 'Date: Mon, 02 Feb 2026 11:00:00 +0000'],
    ['Subject: Re: lost', 'Message-ID: <o@x>', 'References: <missing@x>', 'Date: Tue, 03 Feb 2026 10:00:00 +0000'],
  ]
  for (const lines of raws) await f.store.append(USER, 'INBOX', { raw: message(lines), flags: lines[0] === 'Subject: lunch' ? ['\\Seen'] : [] })
  const inbox = (await f.store.getMailbox(USER, 'INBOX'))!
  await f.store.expunge(USER, inbox.id, [gone.uid])
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  await c.login()
  const caps = await c.cmd('CAPABILITY')
  assert.match(caps, / THREAD=ORDEREDSUBJECT THREAD=REFERENCES /)
  await c.cmd('SELECT INBOX')
  assert.match(await c.cmd('THREAD REFERENCES UTF-8 ALL', 'a'), /^\* THREAD \(3\)\(1 2 4\)\(5\)\r\na OK/m)
  assert.match(await c.cmd('UID THREAD REFERENCES UTF-8 ALL', 'b'), /^\* THREAD \(4\)\(2 3 5\)\(6\)\r\nb OK/m)
  assert.match(await c.cmd('THREAD ORDEREDSUBJECT UTF-8 ALL', 'c'), /^\* THREAD \(3\)\(1 \(4\)\(2\)\)\(5\)\r\nc OK/m)
  assert.match(await c.cmd('THREAD REFERENCES US-ASCII UNSEEN', 'd'), /^\* THREAD \(1 2 4\)\(5\)\r\nd OK/m)
  assert.match(await c.cmd('UID THREAD REFERENCES UTF-8 SUBJECT plans NOT UID 3', 'e'), /^\* THREAD \(2 5\)\r\ne OK/m)
  assert.match(await c.cmd('THREAD REFERENCES UTF-8 SUBJECT nothing-like-this', 'f'), /^\* THREAD\r\nf OK/m)
})

// PARTIAL (RFC 9394) over a raw socket and with Python's imaplib: the FETCH / UID FETCH modifier `(PARTIAL range)`
// (positions among the messages the sequence set names, in sequence number order, negative ones from the end,
// counted after CHANGEDSINCE; VANISHED (EARLIER) not paged), the capability, the hostile ranges that are BAD, and
// SEARCH/SORT RETURN (PARTIAL) answering `PARTIAL (range set)` / `PARTIAL (range NIL)` next to the other return data.
import { test } from 'node:test'
import type { TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, PASSWORD, RawImap, simpleMessage, USER } from './helpers.ts'
import type { Fixture } from './helpers.ts'
import { python } from '../helpers/client.ts'
import { prng } from '../helpers/prng.ts'
import { parseResponses } from './wire.ts'
import type { Item } from './wire.ts'

/**
 * A mailbox of `count` + 2 appended messages of which UIDs 1 and 4 are expunged: sequence numbers 1..count, UIDs
 * 2, 3, 5, 6, ... (so UIDs and sequence numbers differ).
 */
async function mailbox (t: TestContext, count = 10, init: Parameters<Fixture['server']>[0] = {}): Promise<{ f: Fixture, port: number, uids: number[] }> {
  const f = await fixture(t)
  for (let i = 1; i <= count + 2; i++) await f.store.append(USER, 'INBOX', { raw: simpleMessage(`message ${i}`), internalDate: Date.UTC(2026, 1, 1) + i * 60_000 })
  const inbox = (await f.store.getMailbox(USER, 'INBOX'))!
  await f.store.expunge(USER, inbox.id, [1, 4])
  const uids = Array.from({ length: count + 2 }, (_, i) => i + 1).filter((u) => u !== 1 && u !== 4)
  const { port } = await f.server(init)
  return { f, port, uids }
}

async function session (t: TestContext, port: number, enable?: string): Promise<{ c: RawImap, select: string }> {
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  await c.login()
  if (enable !== undefined) assert.match(await c.cmd(`ENABLE ${enable}`), /OK/)
  const select = await c.cmd('SELECT INBOX')
  assert.match(select, /OK \[READ-WRITE\]/)
  return { c, select }
}

/** The `* n FETCH` responses of a reply in the order they came: sequence number and the item map. */
function fetches (reply: string): Array<{ seq: number, items: Map<string, Item> }> {
  const out: Array<{ seq: number, items: Map<string, Item> }> = []
  for (const r of parseResponses(reply)) {
    if (r.tag !== '*' || r.items[1] !== 'FETCH') continue
    const list = r.items[2] as Item[]
    const items = new Map<string, Item>()
    for (let i = 0; i < list.length; i += 2) items.set(list[i] as string, list[i + 1]!)
    out.push({ seq: Number(r.items[0]), items })
  }
  return out
}

/** FLAGS of a FETCH without \\Recent (an IMAP4rev1 session sees it on new mail). */
const flags = (items: Map<string, Item>): Item[] => (items.get('FLAGS') as Item[]).filter((f) => f !== '\\Recent')
const seqs = (reply: string): number[] => fetches(reply).map((f) => f.seq)
const uidsOf = (reply: string): number[] => fetches(reply).map((f) => Number(f.items.get('UID')))

function ok (reply: string): string {
  assert.match(reply, /^\S+ OK /m, reply)
  return reply
}

/** The items of the `* ESEARCH` response of a reply after its tag correlator, as a name → value map. */
function esearch (reply: string): Map<string, unknown> {
  const line = parseResponses(reply).find((r) => r.tag === '*' && r.items[0] === 'ESEARCH')
  assert.ok(line !== undefined, reply)
  const out = new Map<string, unknown>()
  let i = 2
  if (line.items[i] === 'UID') { out.set('UID', true); i++ }
  for (; i < line.items.length; i += 2) out.set(line.items[i] as string, line.items[i + 1])
  return out
}

/** HIGHESTMODSEQ of a SELECT reply (CONDSTORE or QRESYNC enabled). */
function highestModseq (select: string): number {
  const m = /\[HIGHESTMODSEQ (\d+)\]/.exec(select)
  assert.ok(m !== null, select)
  return Number(m[1])
}

/** The RFC's reading of a range, written apart from the server's: 1-based positions, -1 the last, either order. */
function model<T> (list: T[], a: number, b: number): T[] {
  const lo = Math.min(Math.abs(a), Math.abs(b))
  const hi = Math.max(Math.abs(a), Math.abs(b))
  return list.filter((_, i) => {
    const position = a > 0 ? i + 1 : list.length - i
    return position >= lo && position <= hi
  })
}

test('PARTIAL is advertised (RFC 9394), before and after login', async (t) => {
  const { port } = await mailbox(t, 1)
  const c = await RawImap.connect(port)
  t.after(() => c.close())
  assert.match(c.greeting, / PARTIAL[ \]]/)
  assert.match(await c.cmd('CAPABILITY'), /^\* CAPABILITY .* PARTIAL[ \r]/m)
  assert.match(await c.login(), / PARTIAL[ \]]/)
  assert.match(await c.cmd('CAPABILITY'), /^\* CAPABILITY .* PARTIAL[ \r]/m)
})

test('FETCH (PARTIAL n:m) and (PARTIAL -n:-m): positions among the messages the set names, answered in sequence order', async (t) => {
  const { port, uids } = await mailbox(t)
  const { c } = await session(t, port)
  // the first three of 1:*
  let r = ok(await c.cmd('FETCH 1:* (UID) (PARTIAL 1:3)'))
  assert.deepEqual(seqs(r), [1, 2, 3])
  assert.deepEqual(uidsOf(r), uids.slice(0, 3))
  // the last three: still ascending on the wire; UID FETCH adds UID
  r = ok(await c.cmd('UID FETCH 1:* (FLAGS) (PARTIAL -1:-3)'))
  assert.deepEqual(seqs(r), [8, 9, 10])
  assert.deepEqual(uidsOf(r), uids.slice(7))
  assert.deepEqual(flags(fetches(r)[0]!.items), [])
  // "a range 500:400 is the same as 400:500"
  assert.deepEqual(seqs(await c.cmd('FETCH 1:* (UID) (PARTIAL 3:1)')), [1, 2, 3])
  assert.deepEqual(seqs(await c.cmd('UID FETCH 1:* (UID) (PARTIAL -3:-1)')), [8, 9, 10])
  assert.deepEqual(seqs(await c.cmd('FETCH 1:* (UID) (PARTIAL 4:6)')), [4, 5, 6])
  assert.deepEqual(seqs(await c.cmd('FETCH 1:* (UID) (PARTIAL -4:-6)')), [5, 6, 7])
  // positions count the messages the set names, not the mailbox: UIDs 3,5,7,8,9 (UID 4 is gone and not counted)
  r = ok(await c.cmd('UID FETCH 3:5,7:9 (UID) (PARTIAL 2:3)'))
  assert.deepEqual(uidsOf(r), [5, 7])
  assert.deepEqual(uidsOf(await c.cmd('UID FETCH 3:5,7:9 (UID) (PARTIAL -1:-2)')), [8, 9])
  assert.deepEqual(uidsOf(await c.cmd('UID FETCH 3:5 (UID) (PARTIAL 2:2)')), [5])
  // a set given out of order and overlapping is the messages it names, in sequence order
  assert.deepEqual(seqs(await c.cmd('FETCH 8,2,4:6,5 (UID) (PARTIAL -1:-2)')), [6, 8])
  assert.deepEqual(seqs(await c.cmd('FETCH 8,2,4:6,5 (UID) (PARTIAL 1:2)')), [2, 4])
  // the order of the modifier's words does not matter, nor case
  assert.deepEqual(seqs(await c.cmd('FETCH 1:* (UID) (partial 2:2)')), [2])
})

test('a PARTIAL range beyond the messages the set names answers what is in it: part of the range, or nothing (OK)', async (t) => {
  const { port } = await mailbox(t)
  const { c } = await session(t, port)
  const cases: Array<[string, number[]]> = [
    ['1:* (PARTIAL 9:20)', [9, 10]],
    ['1:* (PARTIAL 11:20)', []],
    ['1:* (PARTIAL -8:-20)', [1, 2, 3]],
    ['1:* (PARTIAL -11:-20)', []],
    ['1:* (PARTIAL 1:4294967295)', [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]],
    ['1:* (PARTIAL -4294967295:-1)', [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]],
    ['1:* (PARTIAL 4294967295:4294967295)', []],
    ['2:3 (PARTIAL 3:5)', []],
    ['2:3 (PARTIAL -2:-5)', [2]],
  ]
  for (const [args, expected] of cases) {
    const [set, modifier] = args.split(' (')
    const reply = ok(await c.cmd(`FETCH ${set!} (UID) (${modifier!}`))
    assert.deepEqual(seqs(reply), expected, args)
  }
  // UID FETCH of UIDs that do not exist names no message: every page is empty
  assert.deepEqual(seqs(ok(await c.cmd('UID FETCH 100:200 (UID) (PARTIAL 1:10)'))), [])
  assert.deepEqual(seqs(ok(await c.cmd('UID FETCH 100:200 (UID) (PARTIAL -1:-10)'))), [])
  // `$` (RFC 5182) is the set the saved result names
  ok(await c.cmd('SEARCH RETURN (SAVE) 3:7'))
  assert.deepEqual(seqs(ok(await c.cmd('FETCH $ (UID) (PARTIAL -1:-2)'))), [6, 7])
})

test('FETCH (PARTIAL) touches only the page: a body fetch sets \\Seen on those messages alone', async (t) => {
  const { port } = await mailbox(t)
  const { c } = await session(t, port)
  const r = ok(await c.cmd('FETCH 1:* (BODY[HEADER.FIELDS (SUBJECT)]) (PARTIAL -2:-3)'))
  assert.deepEqual(seqs(r), [8, 9])
  for (const f of fetches(r)) assert.deepEqual(flags(f.items), ['\\Seen'])
  assert.match(await c.cmd('SEARCH SEEN'), /^\* SEARCH 8 9\r\n/m)
})

test('FETCH (CHANGEDSINCE m PARTIAL range): the range counts the messages changed since m, with MODSEQ', async (t) => {
  const { port, uids } = await mailbox(t)
  const { c, select } = await session(t, port, 'CONDSTORE')
  const since = highestModseq(select)
  ok(await c.cmd('STORE 2,4,5,7,9 +FLAGS.SILENT (\\Flagged)'))
  let r = ok(await c.cmd('FETCH 1:* (FLAGS) (CHANGEDSINCE ' + since + ' PARTIAL 1:2)'))
  assert.deepEqual(seqs(r), [2, 4])
  for (const f of fetches(r)) {
    assert.deepEqual(flags(f.items), ['\\Flagged'])
    assert.ok(Number((f.items.get('MODSEQ') as string[])[0]) > since)
  }
  r = ok(await c.cmd(`UID FETCH 1:* (FLAGS) (PARTIAL -1:-2 CHANGEDSINCE ${since})`))
  assert.deepEqual(seqs(r), [7, 9])
  assert.deepEqual(uidsOf(r), [uids[6], uids[8]])
  assert.deepEqual(seqs(ok(await c.cmd(`FETCH 1:* (FLAGS) (CHANGEDSINCE ${since} PARTIAL 3:10)`))), [5, 7, 9])
  assert.deepEqual(seqs(ok(await c.cmd(`FETCH 1:* (FLAGS) (CHANGEDSINCE ${since} PARTIAL 6:10)`))), [])
  // within a set: 1:5 has 2, 4 and 5 changed
  assert.deepEqual(seqs(ok(await c.cmd(`FETCH 1:5 (FLAGS) (CHANGEDSINCE ${since} PARTIAL -1:-1)`))), [5])
  assert.deepEqual(seqs(ok(await c.cmd(`FETCH 1:5 (FLAGS) (CHANGEDSINCE ${since} PARTIAL -3:-9)`))), [2])
  assert.deepEqual(seqs(ok(await c.cmd(`FETCH 1:5 (FLAGS) (CHANGEDSINCE ${since} PARTIAL -4:-9)`))), [])
  // nothing changed since now: every page is empty
  const now = Math.max(...fetches(await c.cmd('FETCH 1:* (MODSEQ)')).map((f) => Number((f.items.get('MODSEQ') as string[])[0])))
  assert.deepEqual(seqs(ok(await c.cmd(`FETCH 1:* (FLAGS) (CHANGEDSINCE ${now} PARTIAL 1:100)`))), [])
})

test('UID FETCH (CHANGEDSINCE m VANISHED PARTIAL range): VANISHED (EARLIER) names every expunged UID, first; the FETCHes are paged', async (t) => {
  const { port } = await mailbox(t)
  const { c, select } = await session(t, port, 'QRESYNC')
  const since = highestModseq(select)
  // UIDs 3 and 6 (sequence 2 and 4) go; then messages 5, 6, 7 of what is left change
  ok(await c.cmd('UID STORE 3,6 +FLAGS.SILENT (\\Deleted)'))
  assert.match(await c.cmd('UID EXPUNGE 3,6'), /\* VANISHED 3,6\r\n/)
  ok(await c.cmd('STORE 5:7 +FLAGS.SILENT (\\Answered)'))
  const r = ok(await c.cmd(`UID FETCH 1:* (FLAGS) (CHANGEDSINCE ${since} VANISHED PARTIAL -1:-2)`))
  const lines = parseResponses(r).filter((x) => x.tag === '*')
  assert.deepEqual(lines[0]!.items, ['VANISHED', ['EARLIER'], '3,6'], r)
  assert.deepEqual(seqs(r), [6, 7])
  assert.equal(lines.length, 3, r)
  // VANISHED needs CHANGEDSINCE whatever PARTIAL says (RFC 7162 section 3.2.6)
  assert.match(await c.cmd('UID FETCH 1:* (FLAGS) (VANISHED PARTIAL 1:2)', 'v'), /^v BAD /m)
})

test('hostile PARTIAL ranges are BAD with the reason, never a crash; the session goes on', async (t) => {
  const { port } = await mailbox(t, 10, { limits: { badCommandsMax: 1000 } })
  const { c } = await session(t, port)
  const bad: Array<[string, RegExp]> = [
    ['FETCH 1:* (UID) (PARTIAL 0:5)', /0 is not one/],
    ['FETCH 1:* (UID) (PARTIAL 5:0)', /0 is not one/],
    ['FETCH 1:* (UID) (PARTIAL -0:-5)', /0 is not one/],
    ['FETCH 1:* (UID) (PARTIAL 1:-5)', /both ends must be positive or both negative/],
    ['FETCH 1:* (UID) (PARTIAL -1:5)', /both ends must be positive or both negative/],
    ['FETCH 1:* (UID) (PARTIAL 1:4294967296)', /above 4294967295/],
    ['FETCH 1:* (UID) (PARTIAL -99999999999999999999999:-1)', /above 4294967295/],
    ['FETCH 1:* (UID) (PARTIAL 01:5)', /leading zero/],
    ['FETCH 1:* (UID) (PARTIAL 1:*)', /expected n:m or -n:-m/],
    ['FETCH 1:* (UID) (PARTIAL *:1)', /expected n:m or -n:-m/],
    ['FETCH 1:* (UID) (PARTIAL 5)', /expected n:m or -n:-m/],
    ['FETCH 1:* (UID) (PARTIAL 1:2:3)', /expected n:m or -n:-m/],
    ['FETCH 1:* (UID) (PARTIAL --1:-2)', /expected n:m or -n:-m/],
    ['FETCH 1:* (UID) (PARTIAL 1,3)', /expected n:m or -n:-m/],
    ['FETCH 1:* (UID) (PARTIAL "1:2")', /must be an atom/],
    ['FETCH 1:* (UID) (PARTIAL (1:2))', /must be an atom/],
    ['FETCH 1:* (UID) (PARTIAL)', /needs a range/],
    ['FETCH 1:* (UID) (PARTIAL 1:2 PARTIAL 3:4)', /given twice/],
    ['FETCH 1:* (UID) ()', /Empty fetch modifier list/],
    ['FETCH 1:* (UID) (PARTIALS 1:2)', /Unknown fetch modifier/],
    [`FETCH 1:* (UID) (PARTIAL ${'9'.repeat(5000)}:1)`, /above 4294967295/],
    ['SEARCH RETURN (PARTIAL 1:2 PARTIAL 3:4) ALL', /given twice/],
    ['SEARCH RETURN (PARTIAL -1:2) ALL', /both ends/],
    ['SEARCH RETURN (PARTIAL 1:2 ALL) ALL', /mutually exclusive/],
    ['UID SEARCH RETURN (PARTIAL 0:0) ALL', /0 is not one/],
    ['SORT RETURN (PARTIAL 1:2 PARTIAL 1:2) (DATE) UTF-8 ALL', /given twice/],
    ['SORT RETURN (PARTIAL 4294967296:1) (DATE) UTF-8 ALL', /above 4294967295/],
  ]
  for (const [command, reason] of bad) {
    const reply = await c.cmd(command, 'b')
    assert.match(reply, /^b BAD /m, command)
    assert.match(reply.split('\r\n').find((l) => l.startsWith('b BAD'))!, reason, command)
    assert.doesNotMatch(reply, /^\* \d+ FETCH/m, command)
  }
  // the text echoes at most a bounded part of what was sent
  const long = await c.cmd(`FETCH 1:* (UID) (PARTIAL ${'9'.repeat(5000)}:1)`, 'b')
  assert.ok(long.length < 300, long)
  assert.match(await c.cmd('NOOP', 'n'), /^n OK/m)
  assert.deepEqual(seqs(ok(await c.cmd('FETCH 1:* (UID) (PARTIAL 1:1)'))), [1])
})

test('FETCH (PARTIAL) pages agree with the RFC model over random sets, ranges and CHANGEDSINCE, across record batches', async (t) => {
  // 1,100 messages: more than two of the 500-record batches FETCH reads a page with CHANGEDSINCE in
  const { port } = await mailbox(t, 1100)
  const { c, select } = await session(t, port, 'CONDSTORE')
  const since = highestModseq(select)
  const random = prng(9394)
  const pick = (n: number): number => 1 + Math.floor(random() * n)
  // changed: every 7th message and a run near the end
  const sevenths = Array.from({ length: 157 }, (_, i) => 7 * (i + 1)).join(',')
  ok(await c.cmd(`STORE ${sevenths},1050:1090 +FLAGS.SILENT (\\Seen)`))
  for (let round = 0; round < 40; round++) {
    const a = pick(1100)
    const b = pick(1100)
    const set = round % 4 === 0 ? '1:*' : `${a}:${b},${pick(1100)}`
    const changed = round % 2 === 0 ? ` CHANGEDSINCE ${since}` : ''
    // what FETCH answers without PARTIAL: the list the range is read in
    const whole = seqs(ok(await c.cmd(`FETCH ${set} (UID)${changed === '' ? '' : ` (${changed.trim()})`}`)))
    const size = pick(round % 3 === 0 ? 600 : 40)
    const low = pick(round % 5 === 0 ? whole.length + 20 : Math.max(1, whole.length))
    const sign = round % 3 === 1 ? 1 : -1
    const [x, y] = random() < 0.5 ? [low, low + size - 1] : [low + size - 1, low]
    const range = `${sign * x}:${sign * y}`
    const got = seqs(ok(await c.cmd(`FETCH ${set} (UID) (PARTIAL ${range}${changed})`)))
    assert.deepEqual(got, model(whole, sign * x, sign * y), `FETCH ${set} (PARTIAL ${range}${changed}) of ${whole.length}`)
  }
})

test('SEARCH RETURN (PARTIAL) and SORT RETURN (PARTIAL): PARTIAL (range set) or (range NIL), with MIN, MAX, COUNT, MODSEQ', async (t) => {
  const { port, uids } = await mailbox(t)
  const { c, select } = await session(t, port, 'CONDSTORE')
  const since = highestModseq(select)
  // the exact ESEARCH line of RFC 9394's form
  assert.match(await c.cmd('UID SEARCH RETURN (PARTIAL -1:-3) ALL', 'E1'), /^\* ESEARCH \(TAG "E1"\) UID PARTIAL \(-1:-3 10:12\)\r\nE1 OK/m)
  assert.match(await c.cmd('SEARCH RETURN (PARTIAL 1:5) UNSEEN', 'E2'), /^\* ESEARCH \(TAG "E2"\) PARTIAL \(1:5 1:5\)\r\nE2 OK/m)
  // nothing in the range: NIL
  assert.match(await c.cmd('SEARCH RETURN (PARTIAL 11:20) ALL', 'E3'), /^\* ESEARCH \(TAG "E3"\) PARTIAL \(11:20 NIL\)\r\nE3 OK/m)
  // nothing matched: NIL, and COUNT 0 alongside (no MIN or MAX)
  let r = esearch(await c.cmd('SEARCH RETURN (MIN MAX COUNT PARTIAL 1:10) FLAGGED'))
  assert.deepEqual([...r.keys()], ['COUNT', 'PARTIAL'])
  assert.equal(r.get('COUNT'), '0')
  assert.deepEqual(r.get('PARTIAL'), ['1:10', null])
  // with MIN, MAX and COUNT: those are of the whole result, PARTIAL of its page
  r = esearch(await c.cmd('SEARCH RETURN (MIN MAX COUNT PARTIAL -2:-1) 2:9'))
  assert.equal(r.get('MIN'), '2')
  assert.equal(r.get('MAX'), '9')
  assert.equal(r.get('COUNT'), '8')
  assert.deepEqual(r.get('PARTIAL'), ['-1:-2', '8:9'])
  // a sparse page is a sequence set
  ok(await c.cmd('STORE 2,4,5,9 +FLAGS.SILENT (\\Flagged)'))
  r = esearch(await c.cmd('UID SEARCH RETURN (PARTIAL 2:4 COUNT) FLAGGED'))
  assert.equal(r.get('UID'), true)
  assert.deepEqual(r.get('PARTIAL'), ['2:4', `${uids[3]}:${uids[4]},${uids[8]}`])
  // MODSEQ: the highest of the messages returned (RFC 7162 section 3.1.5, RFC 4731 section 3.2): those of the page,
  // not of every match (message 9 changes again, so it has the highest)
  ok(await c.cmd('STORE 9 +FLAGS.SILENT (\\Answered)'))
  const modseqOf = async (seq: number): Promise<string> => (fetches(await c.cmd(`FETCH ${seq} (MODSEQ)`))[0]!.items.get('MODSEQ') as string[])[0]!
  const m2 = await modseqOf(2)
  const m9 = await modseqOf(9)
  assert.ok(Number(m9) > Number(m2) && Number(m2) > since)
  r = esearch(await c.cmd(`SEARCH RETURN (PARTIAL 1:1) MODSEQ ${since + 1}`))
  assert.deepEqual(r.get('PARTIAL'), ['1:1', '2'])
  assert.equal(r.get('MODSEQ'), m2)
  r = esearch(await c.cmd(`SEARCH RETURN (PARTIAL 1:1 COUNT) MODSEQ ${since + 1}`))
  assert.equal(r.get('MODSEQ'), m9, 'with COUNT every match is returned')
  r = esearch(await c.cmd(`SORT RETURN (PARTIAL 1:1) (ARRIVAL) UTF-8 MODSEQ ${since + 1}`))
  assert.deepEqual(r.get('PARTIAL'), ['1:1', '2'])
  assert.equal(r.get('MODSEQ'), m2)
  r = esearch(await c.cmd(`SORT RETURN (PARTIAL -1:-1 MIN) (ARRIVAL) UTF-8 MODSEQ ${since + 1}`))
  assert.deepEqual(r.get('PARTIAL'), ['-1:-1', '9'])
  assert.equal(r.get('MODSEQ'), m9)
  // a page beyond the result returns nothing, so no MODSEQ
  r = esearch(await c.cmd(`SORT RETURN (PARTIAL 50:60) (ARRIVAL) UTF-8 MODSEQ ${since + 1}`))
  assert.deepEqual([...r.keys()], ['PARTIAL'])
  r = esearch(await c.cmd(`SEARCH RETURN (PARTIAL 50:60) MODSEQ ${since + 1}`))
  assert.deepEqual([...r.keys()], ['PARTIAL'])
  // SORT: the page of the sorted result (ARRIVAL is sequence order here; REVERSE turns it)
  r = esearch(await c.cmd('SORT RETURN (PARTIAL 1:3 COUNT) (REVERSE ARRIVAL) UTF-8 ALL'))
  assert.deepEqual(r.get('PARTIAL'), ['1:3', '10,9,8'])
  assert.equal(r.get('COUNT'), '10')
  r = esearch(await c.cmd('UID SORT RETURN (PARTIAL -1:-2) (ARRIVAL) UTF-8 FLAGGED'))
  assert.deepEqual(r.get('PARTIAL'), ['-1:-2', `${uids[4]},${uids[8]}`])
  r = esearch(await c.cmd('SORT RETURN (PARTIAL 5:9) (ARRIVAL) UTF-8 FLAGGED'))
  assert.deepEqual(r.get('PARTIAL'), ['5:9', null])
})

const IMAPLIB = `
import imaplib, json, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
c = imaplib.IMAP4('127.0.0.1', port)
c.login(user, password)
out = {'caps': ' '.join(c.capabilities)}
c.select('INBOX')
typ, data = c.uid('FETCH', '1:*', '(FLAGS)', '(PARTIAL -1:-3)')
out['uid_fetch'] = [d.decode() for d in data]
typ, data = c.fetch('1:*', '(UID) (PARTIAL 2:3)')
out['fetch'] = [d.decode() for d in data]
try:
    c.fetch('1:*', '(UID) (PARTIAL 0:3)')
    out['bad'] = 'no error'
except imaplib.IMAP4.error as e:
    out['bad'] = str(e)
typ, data = c._simple_command('UID', 'SEARCH', 'RETURN', '(PARTIAL 1:2)', 'ALL')
out['esearch'] = [d.decode() for d in c.untagged_responses.pop('ESEARCH', [])]
c.logout()
print(json.dumps(out))
`

test('imaplib: PARTIAL in the capabilities, UID FETCH and FETCH with the modifier, the BAD, UID SEARCH RETURN (PARTIAL)', async (t) => {
  const { port } = await mailbox(t)
  const result = await python(IMAPLIB, [String(port), USER, PASSWORD])
  assert.equal(result.code, 0, result.stderr)
  const out = JSON.parse(result.stdout) as { caps: string, uid_fetch: string[], fetch: string[], bad: string, esearch: string[] }
  assert.ok(out.caps.split(' ').includes('PARTIAL'), out.caps)
  // the first session to select the mailbox has its messages as \\Recent (RFC 3501 section 2.3.2)
  assert.deepEqual(out.uid_fetch, ['8 (UID 10 FLAGS (\\Recent))', '9 (UID 11 FLAGS (\\Recent))', '10 (UID 12 FLAGS (\\Recent))'])
  assert.deepEqual(out.fetch, ['2 (UID 3)', '3 (UID 5)'])
  assert.match(out.bad, /Invalid PARTIAL range 0:3/)
  assert.match(out.esearch[0]!, /^\(TAG "\w+"\) UID PARTIAL \(1:2 2:3\)$/)
})

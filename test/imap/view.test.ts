// Units below the dispatcher: the selected-mailbox view's update rules (RFC 3501 7.4.1, RFC 7162 VANISHED)
// and modified UTF-7 mailbox names (RFC 3501 5.1.3).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { SelectedMailbox } from '../../node/imap/mailbox-view.ts'
import { compileData } from '../../node/imap/protocol/compiler.ts'
import type { Value } from '../../node/imap/protocol/compiler.ts'
import { decodeMutf7, encodeMutf7 } from '../../node/imap/protocol/mutf7.ts'
import { parseSequenceSet } from '../../node/imap/protocol/sequence.ts'

const view = (): SelectedMailbox => new SelectedMailbox({ id: 'm', name: 'INBOX', readOnly: false, uidValidity: 1, uids: [10, 20, 30, 40], highestModseq: 5 })
const wire = (responses: Value[][]): string[] => responses.map((r) => Buffer.concat(compileData('*', r, { utf8: false }) as Buffer[]).toString().trim())

test('expunges are held while FETCH/STORE/SEARCH answer, and numbered from the top when sent', () => {
  const v = view()
  v.push({ type: 'expunge', mailbox: 'm', uids: [20, 40], modseq: 6 })
  v.push({ type: 'append', mailbox: 'm', uids: [50], modseq: 7 })
  v.push({ type: 'flags', mailbox: 'm', changes: [{ uid: 30, flags: ['\\Seen'], modseq: 8 }], modseq: 8 })
  assert.deepEqual(wire(v.flush({ allowExpunge: false, condstore: false, qresync: false })), [
    '* 3 FETCH (FLAGS (\\Seen) UID 30)',
    '* 5 EXISTS',
  ])
  assert.deepEqual(v.uids, [10, 20, 30, 40, 50], 'sequence numbers unchanged while the expunge is held')
  assert.deepEqual(wire(v.flush({ allowExpunge: true, condstore: false, qresync: false })), ['* 4 EXPUNGE', '* 2 EXPUNGE'])
  assert.deepEqual(v.uids, [10, 30, 50])
})

test('QRESYNC turns expunges into VANISHED and flags carry MODSEQ; own changes are not echoed', () => {
  const v = view()
  v.noteOwnChange(9)
  v.push({ type: 'flags', mailbox: 'm', changes: [{ uid: 10, flags: ['\\Flagged'], modseq: 9 }, { uid: 30, flags: [], modseq: 10 }], modseq: 10 })
  v.push({ type: 'expunge', mailbox: 'm', uids: [10, 20, 99], modseq: 11 })
  assert.deepEqual(wire(v.flush({ allowExpunge: true, condstore: true, qresync: true })), [
    '* 3 FETCH (FLAGS () UID 30 MODSEQ (10))',
    '* VANISHED 10,20',
  ])
})

test('sequence sets resolve against the view; UID sets skip absent UIDs', () => {
  const v = view()
  assert.deepEqual(v.resolve(parseSequenceSet('2:*')!, false), [20, 30, 40])
  assert.deepEqual(v.resolve(parseSequenceSet('15:35,99')!, true), [20, 30])
  assert.deepEqual(v.resolve(parseSequenceSet('*')!, true), [40])
  assert.throws(() => v.resolve(parseSequenceSet('5')!, false), /Invalid message sequence number/)
})

test('modified UTF-7 round-trips and rejects malformed names', () => {
  assert.equal(encodeMutf7('Entwürfe'), 'Entw&APw-rfe')
  assert.equal(encodeMutf7('A&B'), 'A&-B')
  assert.equal(encodeMutf7('日本語'), '&ZeVnLIqe-')
  assert.equal(decodeMutf7('&ZeVnLIqe-'), '日本語')
  assert.equal(decodeMutf7('&Jjo-!'), '☺!')
  assert.equal(decodeMutf7('bad&AAA'), null)
  assert.equal(decodeMutf7('Grüße'), null)
  fc.assert(fc.property(fc.string({ unit: 'grapheme', maxLength: 30 }), (name) => {
    assert.equal(decodeMutf7(encodeMutf7(name)), name)
  }), { numRuns: 500 })
})

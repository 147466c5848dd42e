// The file formats of import/export, table-driven: modified UTF-7 names, Maildir++ folder names, info flags and
// keywords, dovecot-uidlist, subscriptions; mbox reading of hostile or odd input.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { decodeMutf7, encodeMutf7, maildirFolderName, parseInfo, parseKeywords, parseSubscriptions, parseUidlist, toCrlf } from '../../node/migrate/maildir.ts'
import { asctime, fromLineDate, readMbox } from '../../node/migrate/mbox.ts'
import { tempDir } from '../helpers/tmp.ts'

test('modified UTF-7 (RFC 3501 5.1.3) and Maildir++ names', () => {
  for (const [plain, coded] of [['Ünï', '&ANw-n&AO8-'], ['A&B', 'A&-B'], ['日本語', '&ZeVnLIqe-'], ['plain', 'plain']]) {
    assert.equal(encodeMutf7(plain), coded)
    assert.equal(decodeMutf7(coded), plain)
  }
  assert.equal(maildirFolderName('INBOX'), '')
  assert.equal(maildirFolderName('Work/Sub'), '.Work.Sub')
  assert.equal(maildirFolderName('a.b/c'), '.a\\2eb.c')
})

test('info flags, keywords, uidlist, subscriptions', () => {
  const kw = parseKeywords('0 Kw1\n1 $Forwarded\nbad line\n30 TooFar\n')
  assert.deepEqual(kw, ['Kw1', '$Forwarded'])
  assert.deepEqual(parseInfo('123.M1P2.host,S=10,W=12:2,FRSab', kw).sort(), ['$Forwarded', 'Kw1', '\\Answered', '\\Flagged', '\\Seen'].sort())
  assert.deepEqual(parseInfo('123.M1P2.host', kw), [])
  assert.deepEqual(parseInfo('x:2,z', kw), [], 'an unknown keyword letter is dropped')
  const u = parseUidlist('3 V1796431297 N4 G2972ae07bf5d136b9541000083ecc375\n1 :a.host,S=1\n3 W22 :b.host,S=2:2,S\nnot a line\n')
  assert.equal(u.uidValidity, 1796431297)
  assert.equal(u.uidNext, 4)
  assert.deepEqual([...u.uids], [['a.host,S=1', 1], ['b.host,S=2', 3]])
  assert.deepEqual(parseSubscriptions('V\t2\n\nWork\tSub\n&ANw-n&AO8-\n'), ['Work/Sub', 'Ünï'])
  assert.deepEqual(parseSubscriptions('INBOX\nWork/Sub\n'), ['INBOX', 'Work/Sub'])
  assert.equal(toCrlf(Buffer.from('a\nb\r\nc\n')).toString(), 'a\r\nb\r\nc\r\n')
})

test('mbox: From_ dates, a file that is not an mbox, an empty file, CRLF and no final newline', async t => {
  const ms = Date.UTC(2020, 0, 2, 3, 4, 5)
  assert.equal(asctime(ms), 'Thu Jan  2 03:04:05 2020')
  assert.equal(fromLineDate(`From someone ${asctime(ms)}`), ms)
  assert.equal(fromLineDate('From someone yesterday'), null)
  const dir = await tempDir(t)
  const bad = join(dir, 'bad')
  await writeFile(bad, 'Subject: no From_ line\n\nbody\n')
  await assert.rejects(async () => { for await (const _ of readMbox(bad)) { /* drain */ } }, /not an mbox/)
  const empty = join(dir, 'empty')
  await writeFile(empty, '')
  const got = []
  for await (const m of readMbox(empty)) got.push(m)
  assert.equal(got.length, 0)
  // no final newline, CRLF inside
  const odd = join(dir, 'odd')
  await writeFile(odd, 'From a Thu Jan  2 03:04:05 2020\r\nSubject: x\r\n\r\nbody')
  const one = []
  for await (const m of readMbox(odd)) one.push(m)
  assert.equal(one.length, 1)
  assert.ok(!('tooBig' in one[0]))
  assert.equal((one[0] as { raw: Buffer }).raw.toString(), 'Subject: x\r\n\r\nbody\r\n')
})

// SAVEDATE (RFC 8514): FETCH SAVEDATE, SEARCH SAVEDBEFORE/SAVEDON/SAVEDSINCE/SAVEDATESUPPORTED. The save date is
// when the message entered the mailbox (APPEND, delivery, COPY, MOVE), not its internal date; a record written
// before the store kept it answers its internal date. A store with its own clock makes the days distinct.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { createStore } from '../../store/index.ts'
import type { LogEntry } from '../../store/index.ts'
import { tempDir } from '../helpers/tmp.ts'
import { fixture, PASSWORD, RawImap, simpleMessage, USER } from './helpers.ts'
import { fetchResponses } from './wire.ts'

const DAY = 86_400_000
const T0 = Date.UTC(2026, 2, 10, 12, 0, 0) // 10-Mar-2026

test('SAVEDATE: FETCH and SEARCH SAVED* follow the save date (APPEND, COPY, MOVE), not the internal date', async (t) => {
  const f = await fixture(t)
  let clock = T0
  const dir = await tempDir(t, 'mailgrid-savedate-')
  const store = createStore({ now: () => clock }, { path: join(dir, 'store'), scryptLogN: 10, sync: false })
  await store.start()
  t.after(async () => { await store.stop() })
  await store.addDomain('example.com')
  await store.addUser({ address: USER, password: PASSWORD })
  const { port } = await f.server({}, store)
  const c = await RawImap.connect(port)
  t.after(() => { c.close() })
  await c.login()
  assert.match(await c.cmd('CAPABILITY'), / SAVEDATE/)
  // APPEND with an internal date in 1994, saved on 10-Mar-2026
  const msg = simpleMessage('saved')
  c.client.write(`a1 APPEND INBOX " 7-Feb-1994 22:43:04 -0800" {${msg.length}+}\r\n`)
  c.client.write(Buffer.concat([msg, Buffer.from('\r\n')]))
  assert.match(await c.client.read((b) => /a1 (OK|NO|BAD)[^\r\n]*\r\n$/.test(b)), /a1 OK/)
  clock = T0 + 2 * DAY // 12-Mar-2026: the COPY
  await c.cmd('SELECT INBOX')
  await c.cmd('COPY 1 Archive')
  // the copy was saved when copied
  await c.cmd('SELECT Archive')
  assert.match(await c.cmd('FETCH 1:* SAVEDATE'), /^\* 1 FETCH \(SAVEDATE "12-Mar-2026 12:00:00 \+0000"\)\r$/m)
  clock = T0 + 5 * DAY // 15-Mar-2026: the MOVE
  await c.cmd('MOVE 1 Junk')
  // section 4.3: FETCH SAVEDATE is a date-time
  await c.cmd('SELECT INBOX')
  const inbox = fetchResponses(await c.cmd('FETCH 1 (SAVEDATE INTERNALDATE)')).get(1)!
  assert.equal(inbox.get('SAVEDATE'), '10-Mar-2026 12:00:00 +0000')
  assert.equal(inbox.get('INTERNALDATE'), '08-Feb-1994 06:43:04 +0000')
  // section 4.4: SAVEDBEFORE/SAVEDON/SAVEDSINCE compare the day; SAVEDATESUPPORTED matches in a mailbox that has them
  assert.match(await c.cmd('SEARCH SAVEDON 10-Mar-2026'), /^\* SEARCH 1\r$/m)
  assert.match(await c.cmd('SEARCH SAVEDBEFORE 10-Mar-2026'), /^\* SEARCH\r$/m)
  assert.match(await c.cmd('SEARCH SAVEDSINCE 11-Mar-2026'), /^\* SEARCH\r$/m)
  assert.match(await c.cmd('SEARCH SAVEDSINCE 1-Mar-2026 SAVEDATESUPPORTED'), /^\* SEARCH 1\r$/m)
  assert.match(await c.cmd('SEARCH ON 8-Feb-1994'), /^\* SEARCH 1\r$/m)
  assert.match(await c.cmd('SEARCH SAVEDON 8-Feb-1994'), /^\* SEARCH\r$/m)
  // the moved message was saved in Junk when moved
  await c.cmd('SELECT Junk')
  assert.match(await c.cmd('UID FETCH 1:* SAVEDATE'), /SAVEDATE "15-Mar-2026 12:00:00 \+0000"/)
  assert.match(await c.cmd('SEARCH SAVEDON 15-Mar-2026'), /^\* SEARCH 1\r$/m)
  assert.match(await c.cmd('SEARCH SAVEDON 32-Mar-2026'), /BAD/)
})

test('SAVEDATE of a record from before the field existed (a log entry without it, as an older node ships): the internal date', async (t) => {
  const f = await fixture(t)
  const box = (await f.store.getMailbox(USER, 'INBOX'))!
  const raw = simpleMessage('old')
  const first = await f.store.append(USER, 'INBOX', { raw, internalDate: Date.UTC(2020, 0, 2, 3, 4, 5) })
  const at = await f.store.logPosition(USER)
  const [entry] = await f.store.readLog(USER, at, 1)
  assert.equal(entry?.op, 'append')
  const old = { ...entry, seq: at + 1, uid: first.uid + 1, gid: 'old-entry', modseq: first.modseq + 1, eid: 'old-entry' } as LogEntry & { saved?: number }
  delete old.saved
  await f.store.applyLog(USER, [old])
  const rec = await f.store.getMessage(USER, box.id, first.uid + 1)
  assert.equal(rec?.saved, undefined)
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(() => { c.close() })
  await c.login()
  await c.cmd('SELECT INBOX')
  assert.match(await c.cmd(`UID FETCH ${first.uid + 1} SAVEDATE`), /SAVEDATE "02-Jan-2020 03:04:05 \+0000"/)
  assert.match(await c.cmd('UID SEARCH SAVEDON 2-Jan-2020'), new RegExp(`^\\* SEARCH ${first.uid + 1}\\r$`, 'm'))
})

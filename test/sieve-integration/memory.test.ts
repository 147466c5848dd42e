// Vacation memory is the user's data, and bounded: one answer per sender and period (a second within the period
// is not answered, one after it is), and the memory keeps at most its bound of entries, dropping expired ones first,
// then the oldest. The filter runs on a real store; what it sends is taken by a sink standing for the outbound queue
// (the queue itself is tested in test/outbound and test/sieve-integration/delivery.test.ts).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { createStore } from '../../store/index.ts'
import { createSieveFilter, MEMORY_PREFIX } from '../../node/rules/index.ts'
import { SieveScripts } from '../../node/managesieve/index.ts'
import { createSrs } from '../../node/mailauth/index.ts'
import type { Envelope } from '../../node/outbound/types.ts'
import { tempDir } from '../helpers/tmp.ts'

const USER = 'v@example.com'
const DAY_MS = 86_400_000

test('vacation memory: once per sender and period, then again; bounded, expired entries first', async (t) => {
  const dir = await tempDir(t)
  let clock = Date.UTC(2026, 0, 5, 12)
  const store = createStore({ now: () => clock }, { path: dir, scryptLogN: 4 })
  await store.start()
  t.after(async () => { await store.stop() })
  await store.addDomain('example.com')
  await store.addUser({ address: USER, password: 'pw' })
  await new SieveScripts(store).put(USER, 'away', 'require ["vacation"];\r\nvacation :days 2 "Away.";\r\n', { activate: true })
  const sent: Array<{ to: string, envelope: Envelope }> = []
  const filter = createSieveFilter({
    store, mail: store, directory: store, srs: createSrs({ secret: Buffer.alloc(32, 7), now: () => clock }), logger: pino({ level: 'silent' }), now: () => clock,
    outbound: { enqueue: async (raw, envelope) => { sent.push({ to: envelope.rcpts[0].address, envelope }); return ['q'] } }
  }, { hostname: 'mx.test', memoryEntriesMax: 5 })
  const deliver = async (from: string): Promise<void> => {
    const raw = Buffer.from(`From: <${from}>\r\nTo: <${USER}>\r\nSubject: hi\r\nMessage-ID: <${clock}.${from}>\r\n\r\nhello\r\n`)
    const copies = await filter(raw, { user: USER, prefix: `Return-Path: <${from}>\r\n`, envelope: { from, to: USER } }, { internalDate: clock })
    assert.equal(copies?.length, 1, 'kept')
  }

  await deliver('a@remote.test')
  await deliver('a@remote.test')
  assert.deepEqual(sent.map(s => s.to), ['a@remote.test'], 'one answer within the period')
  assert.equal(sent[0].envelope.from, '', 'the null sender')
  clock += 2 * DAY_MS + 1000
  await deliver('a@remote.test')
  assert.deepEqual(sent.map(s => s.to), ['a@remote.test', 'a@remote.test'], 'answered again after the period')

  // eight more senders, one a minute: the memory keeps 5 entries, the oldest went first
  for (let i = 0; i < 8; i++) {
    clock += 60_000
    await deliver(`s${i}@remote.test`)
  }
  assert.equal(sent.length, 10)
  const held = await store.listAttrs(USER, MEMORY_PREFIX)
  assert.equal(held.length, 5, 'bounded')
  // the five most recent senders are remembered: a message from each is not answered; the first ones are again
  const before = sent.length
  for (let i = 3; i < 8; i++) await deliver(`s${i}@remote.test`)
  assert.equal(sent.length, before, 'the remembered senders are not answered')
  await deliver('s0@remote.test')
  assert.equal(sent.length, before + 1, 'a forgotten sender is answered again')

  // past every period, expired entries are dropped when the next one is written
  clock += 3 * DAY_MS
  await deliver('late@remote.test')
  const after = await store.listAttrs(USER, MEMORY_PREFIX)
  assert.equal(after.length, 1, 'only the new entry is left')
})

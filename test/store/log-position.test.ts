// logPosition while writes of the user are under way (the grid asks it in every replicate and catch-up): it answers
// the position durable at that moment, never one behind a write that has resolved (replicate would wait for too
// little and an acknowledged entry could miss a replica), and the entry at that position is in the log. Deliveries
// to one user run concurrently with fsync on, so the user's lock is held nearly all the time; the answers are
// checked against what resolved before each question and after it. A user deleted afterwards is at 0 again.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createStore } from '../../store/index.ts'
import { tempDir } from '../helpers/tmp.ts'

const U = 'bob@example.com'
const DELIVERIES = 300

test('logPosition under concurrent writes: never behind a resolved write, never past the log', async (t) => {
  const dir = await tempDir(t)
  const store = createStore({}, { path: dir, scryptLogN: 4 })
  await store.start()
  t.after(async () => { await store.stop() })
  await store.addDomain('example.com')
  await store.addUser({ address: U, password: 'secret' })
  await store.ensureUserMail(U)
  const base = await store.logPosition(U)
  assert.ok(base > 0, 'the user\'s first entries (its mailboxes)')

  let resolved = 0
  let started = 0
  const deliveries: Array<Promise<unknown>> = []
  const answers: Array<{ pos: number, resolvedBefore: number, startedAfter: number }> = []
  let done = false
  const asking = (async () => {
    for (let i = 0; !done && i < 100_000; i++) {
      const resolvedBefore = resolved
      const pos = await store.logPosition(U)
      answers.push({ pos, resolvedBefore, startedAfter: started })
      await new Promise((resolve) => setImmediate(resolve))
    }
  })()
  for (let i = 0; i < DELIVERIES; i++) {
    started++
    deliveries.push(store.deliver(Buffer.from(`Subject: m${i}\r\n\r\nbody ${i}\r\n`), [{ user: U, prefix: '' }]).then(() => { resolved++ }))
    if (i % 10 === 9) await new Promise((resolve) => setImmediate(resolve))
  }
  await Promise.all(deliveries)
  done = true
  await asking

  assert.ok(answers.length >= 20, `${answers.length} answers`)
  let whileBusy = 0
  for (const a of answers) {
    // each delivery is one log entry: every delivery that resolved before the question is in the answer
    assert.ok(a.pos >= base + a.resolvedBefore, `answered ${a.pos} after ${a.resolvedBefore} deliveries had resolved (base ${base})`)
    assert.ok(a.pos <= base + a.startedAfter, `answered ${a.pos} with only ${a.startedAfter} deliveries started`)
    if (a.resolvedBefore < DELIVERIES) whileBusy++
  }
  assert.ok(whileBusy >= 10, 'questions asked while deliveries were under way')
  // the answered positions are in the log
  for (const a of answers.filter((_, i) => i % 7 === 0)) {
    if (a.pos === 0) continue
    const [entry] = await store.readLog(U, a.pos, 1)
    assert.equal(entry?.seq, a.pos)
  }
  assert.equal(await store.logPosition(U), base + DELIVERIES)
})

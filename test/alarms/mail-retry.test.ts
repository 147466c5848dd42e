// An alarm mail that cannot be handed over (the mailbox between owners, as when the alarm is a node's death) is
// tried again, in order, until it goes: node/alarms with a mail function that fails its first calls.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import pino from 'pino'
import { createAlarms } from '../../node/alarms/index.ts'
import { until } from '../helpers/cluster.ts'
import { tempDir } from '../helpers/tmp.ts'

test('a failed alarm mail is tried again and arrives, the mails keep their order', async (t) => {
  const dir = await tempDir(t)
  let failures = 0
  const calls: string[] = []
  const sent: string[] = []
  let failFirst = 2
  const alarms = createAlarms({
    logger: pino({ level: 'silent' }),
    sources: { authFailures: () => failures },
    mail: async (raw) => {
      const subject = /^Subject: (.*)$/m.exec(raw.toString())?.[1] ?? ''
      calls.push(subject)
      if (failFirst > 0) { failFirst--; throw new Error('no primary for the mailbox yet') }
      sent.push(subject)
    }
  }, { mailTo: 'ops@example.com', diskUsedPct: 100, underReplicatedMs: 3600_000, queueAgeMs: 3600_000, certDays: 1, authFailures: 3, checkMs: 100_000, authWindowMs: 400, path: join(dir, 'alarms.json'), hostname: 'mx.test' })
  await alarms.start()
  t.after(async () => { await alarms.stop() })

  failures = 10
  await alarms.check()
  assert.equal(alarms.local().active.length, 1)
  await until('the first call', async () => calls.length >= 1, 5_000, 20)
  assert.deepEqual(sent, [], 'not sent while the mail function fails')
  // the burst ends while the first mail still waits: its "cleared" mail queues behind it
  await new Promise(resolve => setTimeout(resolve, 500))
  await alarms.check()
  assert.equal(alarms.local().active.length, 0)
  assert.equal(alarms.local().history.length, 1)
  await until('both mails, after two failures', async () => sent.length === 2, 15_000, 50)
  assert.equal(calls.length, 4, calls.join(' | '))
  assert.match(sent[0], /ALARM: auth-failures/)
  assert.match(sent[1], /cleared: auth-failures/)
})

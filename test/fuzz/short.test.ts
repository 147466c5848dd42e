// The short fuzzing pass `npm test` (and CI) runs: every target of `npm run fuzz` for 10^4 inputs, except the
// two that drive whole sessions, which cost far more per input: imap-session (a Session over a LevelDB store)
// 5,000 and smtp (a TCP session each against two real listeners) 1,000. About a minute and a half on an idle
// two-core machine. The seed is fixed so that CI checks the same inputs every time; FUZZ_SEED picks another.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { runTarget } from './engine.ts'
import { TARGETS } from './targets/index.ts'
import { formatReport } from './report.ts'

const SHORT_RUNS = 10_000
const SHORT_RUNS_SLOW: Record<string, number> = { 'imap-session': 5000, smtp: 1000 }
const SEED = Number(process.env.FUZZ_SEED ?? 16_04)

for (const target of TARGETS) {
  test(`fuzz ${target.name}: ${SHORT_RUNS_SLOW[target.name] ?? SHORT_RUNS} inputs, no crash, hang or leak (seed ${SEED})`, async () => {
    const report = await runTarget(target, { runs: SHORT_RUNS_SLOW[target.name] ?? SHORT_RUNS, seed: SEED })
    assert.equal(report.failures.length, 0, formatReport(report))
  })
}

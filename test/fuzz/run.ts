// `npm run fuzz`: runs each target for FUZZ_RUNS inputs (default 10^6) under one seed and reports, per target,
// inputs run, failures (exceptions that escaped, hangs over HANG_MS, heap growth over HEAP_GROWTH_BYTES_MAX),
// peak heap and RSS, and duration. Exit status 1 when anything failed.
//   FUZZ_RUNS=10000 FUZZ_TARGETS=imap-parser,mime FUZZ_SEED=1234 npm run fuzz
//   FUZZ_INDEX=5678 replays one input of the printed seed; FUZZ_TIME_MS bounds each target's wall time.

import { TARGETS } from './targets/index.ts'
import { interrupt, runTarget, wasInterrupted } from './engine.ts'
import { formatReport } from './report.ts'

const DEFAULT_RUNS = 1_000_000

function envInt (name: string): number | undefined {
  const v = process.env[name]
  if (v === undefined || v === '') return undefined
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(v)}`)
  return n
}

async function main (): Promise<void> {
  const runs = envInt('FUZZ_RUNS') ?? DEFAULT_RUNS
  const seed = envInt('FUZZ_SEED') ?? Math.floor(Math.random() * 0x7fffffff)
  const index = envInt('FUZZ_INDEX')
  const timeBudgetMs = envInt('FUZZ_TIME_MS')
  const wanted = (process.env.FUZZ_TARGETS ?? '').split(',').map(s => s.trim()).filter(s => s !== '')
  const unknown = wanted.filter(w => !TARGETS.some(t => t.name === w))
  if (unknown.length > 0) throw new Error(`unknown FUZZ_TARGETS ${unknown.join(', ')}; known: ${TARGETS.map(t => t.name).join(', ')}`)
  const targets = wanted.length === 0 ? TARGETS : TARGETS.filter(t => wanted.includes(t.name))
  console.log(`fuzz: seed ${seed} (FUZZ_SEED=${seed} replays), ${runs} inputs per target, targets ${targets.map(t => t.name).join(', ')}`)
  let failed = 0
  // a stopped run still reports what it did
  process.once('SIGINT', interrupt)
  process.once('SIGTERM', interrupt)
  for (const target of targets) {
    if (wasInterrupted()) break
    const report = await runTarget(target, { runs, seed, ...(index === undefined ? {} : { index }), ...(timeBudgetMs === undefined ? {} : { timeBudgetMs }), log: (l) => console.log(l) })
    console.log(formatReport(report))
    console.log(`FUZZ_REPORT ${JSON.stringify({ ...report, failures: report.failures.map(f => ({ kind: f.kind, signature: f.signature, count: f.count, index: f.index })) })}`)
    failed += report.failures.length
  }
  process.exitCode = failed === 0 ? 0 : 1
}

await main()

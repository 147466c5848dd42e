// The human-readable report of one target's run: figures, then each distinct failure with its replay line.

import type { TargetReport } from './engine.ts'

const mib = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`

export function formatReport (r: TargetReport): string {
  const lines = [
    `${r.target}: ${r.inputs} inputs in ${(r.durationMs / 1000).toFixed(1)} s${r.stoppedByTime ? ' (stopped early: FUZZ_TIME_MS or a signal)' : ''}, ` +
    `${r.failures.length === 0 ? 'no failures' : `${r.failures.length} distinct failures`}, slowest input ${r.slowestMs.toFixed(1)} ms CPU, ` +
    `heap after GC ${mib(r.heapBaselineBytes)} → peak ${mib(r.heapPeakBytes)}, RSS peak ${mib(r.rssPeakBytes)}`
  ]
  for (const f of r.failures) {
    lines.push(`  [${f.kind}] x${f.count} first at FUZZ_SEED=${r.seed} FUZZ_INDEX=${f.index}: ${f.signature}`)
    if (f.input !== null) lines.push(`    input (knob ${f.input.knob}, ${f.input.data.length} bytes): ${f.input.data.subarray(0, 2048).toString('base64')}`)
    lines.push(`    ${f.message.split('\n').slice(0, 6).join('\n    ')}`)
  }
  return lines.join('\n')
}

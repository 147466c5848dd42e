// BENCHMARKS.md from the figures: one table with both systems and the ratio mailgrid/peer, the targets of
// issues 6 and 10 checked against the figures, the machine and every parameter. A figure that could not be taken is
// "n/a (reason)", never a blank or a zero.

import { existsSync, readFileSync } from 'node:fs'
import type { Machine } from './machine.ts'

export type Figure = number | { na: string }

export interface Row {
  group: string
  label: string
  unit: string
  better: 'higher' | 'lower'
  mailgrid: Figure
  peer: Figure
}

export interface Target { what: string, goal: string, reached: string, met: boolean | null }

export interface Report {
  machine: Machine
  params: Record<string, string | number | boolean>
  peer: string // versions, or why it is absent
  rows: Row[]
  targets: Target[]
  notes: string[]
  durationSeconds: number
  lossFree: boolean
  analysisFile: string // hand-written analysis appended verbatim when present
}

export function fmt (f: Figure): string {
  if (typeof f !== 'number') return `n/a (${f.na})`
  if (!Number.isFinite(f)) return 'n/a'
  const a = Math.abs(f)
  return a >= 100 ? Math.round(f).toLocaleString('en-US') : a >= 10 ? f.toFixed(1) : f.toFixed(2)
}

export function ratio (r: Row): string {
  if (typeof r.mailgrid !== 'number' || typeof r.peer !== 'number' || r.peer === 0) return '–'
  return `${(r.mailgrid / r.peer).toFixed(2)}×`
}

export function renderMarkdown (rep: Report): string {
  const out: string[] = []
  out.push('# Benchmarks: mailgrid beside Postfix + Dovecot', '')
  out.push('Written by `npm run bench` (`test/bench/run.ts`); raw figures in `bench-results.json`. Both systems ran on',
    'the same machine in the same invocation, driven by the same load generator and the same raw IMAP/POP3 clients,',
    'one measurement of mailgrid then the same one of the peer. Ratio = mailgrid / peer; the arrow says which way is better.',
    'In the Outbound rows the peer is Postfix alone, relaying the same messages to the same private receiving Postfix.', '')
  out.push(`- **Date** ${rep.machine.date}; **commit** ${rep.machine.commit}; run took ${Math.round(rep.durationSeconds)} s.`)
  out.push(`- **Machine** ${rep.machine.cores} cores (${rep.machine.cpuModel}), ${rep.machine.ramGiB} GiB RAM, disk ${rep.machine.disk}, ` +
    `fsync of a 4 KiB write ${rep.machine.fsyncMs.toFixed(2)} ms; Linux ${rep.machine.kernel}; Node ${rep.machine.node}; ` +
    `load average at start ${rep.machine.loadAvg1m.toFixed(2)} (the machine is shared: figures are noisy).`)
  out.push(`- **Peer** ${rep.peer}`)
  const warm = Number(rep.params.BENCH_INGEST_WARMUP ?? 0)
  if (warm > 0) out.push(`- **Ingest measured warm:** every system took ${warm.toLocaleString('en-US')} messages over SMTP before its first measured ingest (not counted), as a server that runs all day is.`)
  out.push(`- **No acknowledged message lost:** ${rep.lossFree ? 'yes (checked per user over IMAP, and in mailgrid\'s store after it stopped)' : '**NO — see notes**'}`, '')
  out.push('| group | measurement | unit | | mailgrid | Postfix + Dovecot | mailgrid / peer |', '|---|---|---|---|---|---|---|')
  for (const r of rep.rows) {
    out.push(`| ${r.group} | ${r.label} | ${r.unit} | ${r.better === 'higher' ? '↑' : '↓'} | ${fmt(r.mailgrid)} | ${fmt(r.peer)} | ${ratio(r)} |`)
  }
  out.push('', '## Targets (issues 6 and 10, this 2-core machine)', '', '| target | goal | reached | met |', '|---|---|---|---|')
  for (const t of rep.targets) out.push(`| ${t.what} | ${t.goal} | ${t.reached} | ${t.met === null ? 'n/a' : t.met ? 'yes' : '**no**'} |`)
  out.push('', '## Parameters', '')
  for (const [k, v] of Object.entries(rep.params)) out.push(`- \`${k}\` = ${String(v)}`)
  if (rep.notes.length > 0) {
    out.push('', '## Notes from this run', '')
    for (const n of rep.notes) out.push(`- ${n}`)
  }
  if (existsSync(rep.analysisFile)) out.push('', readFileSync(rep.analysisFile, 'utf8').trim())
  return out.join('\n') + '\n'
}

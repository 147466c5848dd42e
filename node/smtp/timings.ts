// Where an SMTP message's time goes, for investigations (test/bench/ANALYSIS.md, issue 13 item 3): with
// SMTP_TIMINGS_DIR set, each process of a node (the primary and every SMTP worker) times the stages of the SMTP path
// (RCPT, DATA's transfer, the inbound checks, the delivery; in a worker each IPC round trip, in the primary each
// request it serves; the IPC batches' sizes, their wait for the flush and their transit between the processes), how
// busy its event loop and its threads were, how long its threads waited for a CPU (/proc's schedstat: time runnable
// but not running), and every 2 ms its main thread's CPU time (to see whether the primary and a worker run at the
// same time or take turns). Written as JSON to <dir>/timings-<pid>.json when the process exits (writeTimings: at
// once). Unset (always, in production), `stage` returns at once and nothing else runs.
//
// The window starts at the process's first SMTP connection or delivery, so start-up is not counted, and ends at its
// last timed stage, so the idle tail is not either.

import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import type { EventLoopUtilization } from 'node:perf_hooks'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

const DIR = process.env.SMTP_TIMINGS_DIR
export const timing = DIR !== undefined && DIR !== ''

const SAMPLES_MAX = 20_000 // per stage, for its percentiles
const TIMELINE_INTERVAL_MS = 2
const TIMELINE_MAX = 200_000 // numbers (two per sample): 100,000 samples, over 200 s
const SCHED_INTERVAL_MS = 100
const IDLE_AFTER_MS = 500 // no stage for this long: the run is over, the timeline stops
/** Stages that open the window. */
const OPENERS = new Set(['connect', 'rcpt', 'serve.delivery.deliver'])

interface Stage { n: number, total: number, max: number, samples: number[] }
const stages = new Map<string, Stage>()
let open = false
let elu0: EventLoopUtilization | null = null
let eluLast: EventLoopUtilization | null = null
let t0 = 0
let tLast = 0
let sched0: [number, number] = [0, 0]
let schedLast: [number, number] = [0, 0]
let loop: ReturnType<typeof monitorEventLoopDelay> | null = null
const timeline: number[] = []
const timers: NodeJS.Timeout[] = []

/** Milliseconds this process's threads ran and waited to run, summed over its threads (/proc/self/task). */
function sched (): [number, number] {
  let run = 0
  let wait = 0
  try {
    for (const t of readdirSync('/proc/self/task')) {
      const f = readFileSync(`/proc/self/task/${t}/schedstat`, 'utf8').split(' ')
      run += Number(f[0])
      wait += Number(f[1])
    }
  } catch { /* not Linux, or a thread ended while read */ }
  return [run / 1e6, wait / 1e6]
}

function start (): void {
  open = true
  stages.clear()
  timeline.length = 0
  t0 = tLast = performance.now()
  elu0 = eluLast = performance.eventLoopUtilization()
  sched0 = schedLast = sched()
  loop?.disable()
  loop = monitorEventLoopDelay({ resolution: 1 })
  loop.enable()
  for (const t of timers.splice(0)) clearInterval(t)
  timers.push(setInterval(() => { if (performance.now() - tLast < SCHED_INTERVAL_MS * 1.5) schedLast = sched() }, SCHED_INTERVAL_MS))
  timers.push(setInterval(() => {
    if (performance.now() - tLast > IDLE_AFTER_MS || timeline.length >= TIMELINE_MAX) return
    try {
      const cpu = Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6
      timeline.push(performance.timeOrigin + performance.now(), cpu)
    } catch { /* not Linux */ }
  }, TIMELINE_INTERVAL_MS))
  for (const t of timers) t.unref()
}

/** Counts `ms` (or a size) for stage `name`. */
export function stage (name: string, ms: number): void {
  if (!timing) return
  if (!open) {
    if (!OPENERS.has(name)) return
    start()
  }
  tLast = performance.now()
  eluLast = performance.eventLoopUtilization(elu0 ?? undefined)
  let s = stages.get(name)
  if (s === undefined) stages.set(name, s = { n: 0, total: 0, max: 0, samples: [] })
  s.n++
  s.total += ms
  if (ms > s.max) s.max = ms
  if (s.samples.length < SAMPLES_MAX) s.samples.push(ms)
}

/** A wall-clock time comparable across this node's processes (the IPC batches carry it: their transit). */
export function stamp (): number {
  return performance.timeOrigin + performance.now()
}

/** Writes this process's file now (it is written again at exit). */
export function writeTimings (): void {
  if (!timing || !open) return
  const wallMs = tLast - t0
  const pick = (a: number[], q: number): number => a[Math.min(a.length - 1, Math.floor(a.length * q))] ?? 0
  const out = {
    pid: process.pid,
    role: process.argv[1]?.endsWith('worker.ts') === true ? 'worker' : 'primary',
    wallMs,
    eventLoopUtilization: eluLast?.utilization ?? 0,
    cpuMs: schedLast[0] - sched0[0],
    runQueueWaitMs: schedLast[1] - sched0[1],
    loopDelayMs: loop === null ? null : { p50: loop.percentile(50) / 1e6, p99: loop.percentile(99) / 1e6, max: loop.max / 1e6 },
    stages: Object.fromEntries([...stages].map(([k, s]) => {
      const a = s.samples.sort((x, y) => x - y)
      return [k, { n: s.n, mean: s.total / s.n, p50: pick(a, 0.5), p90: pick(a, 0.9), max: s.max }]
    })),
    /** [wall-clock ms, main thread's CPU ms so far] pairs */
    timeline
  }
  try { writeFileSync(join(DIR as string, `timings-${process.pid}.json`), JSON.stringify(out)) } catch { /* the directory is gone */ }
}

if (timing) process.on('exit', writeTimings)

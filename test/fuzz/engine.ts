// The fuzzing engine: runs one target for a number of inputs under a seed, each input either generated from
// the target's grammar (fast-check) or a byte mutation of its seed corpus (or of a generated input), and
// records what must never happen: an exception escaping where the code must answer with a protocol error, an
// input that takes longer than HANG_MS, and heap (after a forced GC) growing past HEAP_GROWTH_BYTES_MAX.
// Input i of a run is a pure function of (seed, target, i), so a printed seed and index replay a crash.

import { performance } from 'node:perf_hooks'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import fc from 'fast-check'
import { mutate } from './mutate.ts'
import type { Rng } from './mutate.ts'

/** What a target is fed: bytes, and a 32-bit knob that picks chunking, limits and modes. */
export interface FuzzInput {
  data: Buffer
  knob: number
}

export interface FuzzTarget {
  name: string
  /** Valid (or nearly valid) inputs from the target's grammar. */
  grammar: fc.Arbitrary<Buffer>
  /** The seed corpus mutations start from. */
  corpus: Buffer[]
  /** Tokens the mutator splices in (protocol keywords, literal markers, boundaries). */
  dictionary?: string[]
  /** Largest input the mutator builds (bytes). */
  inputBytesMax?: number
  /** Inputs run at once (socket targets overlap their waits). */
  concurrency?: number
  setup?: () => Promise<void>
  teardown?: () => Promise<void>
  /** Throws (or rejects) on a defect; expected refusals are the target's business to swallow. */
  run: (input: FuzzInput) => void | Promise<void>
}

/**
 * An input that takes more CPU time than this is a hang (issue 16, item 4). CPU time rather than wall time,
 * because the fuzzer runs at nice 19 on a shared machine, where wall time says more about the neighbours.
 */
export const HANG_MS = 1000
/**
 * An async input (a session) that has not ended after this much wall time is a hang too: it waits on
 * something that never comes. Generous, for the same reason.
 */
export const ASYNC_WAIT_MS = 5000
/** Heap after GC may exceed the level measured after warm-up by this much before it counts as a leak. */
export const HEAP_GROWTH_BYTES_MAX = 64 * 1024 * 1024
/** Heap is measured after GC this often (milliseconds of run time), and at the end. */
export const HEAP_CHECK_INTERVAL_MS = 5000
/** How often a long run says how far it got. */
const PROGRESS_INTERVAL_MS = 60_000
/** Inputs generated from the grammar per fast-check sample call. */
const GRAMMAR_BATCH = 128
/** Distinct failures kept per target (each with its first input); later hits only count. */
const FAILURES_KEPT_MAX = 20

export interface Failure {
  kind: 'exception' | 'hang' | 'memory'
  signature: string
  message: string
  count: number
  index: number
  input: FuzzInput | null
}

export interface TargetReport {
  target: string
  seed: number
  inputs: number
  durationMs: number
  failures: Failure[]
  /** CPU milliseconds of the costliest input. */
  slowestMs: number
  heapBaselineBytes: number
  heapPeakBytes: number
  heapFinalBytes: number
  rssPeakBytes: number
  stoppedByTime: boolean
}

export interface RunOptions {
  runs: number
  seed: number
  /** Wall-clock budget for this target; the run stops early (and says so) when spent. */
  timeBudgetMs?: number
  /** Replays one input only. */
  index?: number
  log?: (line: string) => void
}

let gcFn: (() => void) | null = null
/** A forced full GC, without needing --expose-gc on the command line (node --test cannot pass it). */
export function gc (): void {
  if (gcFn === null) {
    setFlagsFromString('--expose-gc')
    gcFn = runInNewContext('gc') as () => void
  }
  gcFn()
}

/** A 32-bit hash mix (murmur3's finaliser) for deriving per-input seeds. */
function mix (...xs: number[]): number {
  let h = 0x9e3779b9
  for (const x of xs) {
    h = Math.imul(h ^ (x >>> 0), 0x85ebca6b)
    h ^= h >>> 13
    h = Math.imul(h, 0xc2b2ae35)
    h ^= h >>> 16
  }
  return h >>> 0
}

function nameHash (name: string): number {
  let h = 2166136261
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619)
  return h >>> 0
}

/** mulberry32, as test/helpers/prng.ts, with integer helpers. */
export function rng (seed: number): Rng {
  let a = seed >>> 0
  const next = (): number => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return { next, int: (n: number) => Math.floor(next() * n) }
}

/** Builds input `index` of a run: the same (seed, target, index) gives the same input. */
export class InputSource {
  readonly #target: FuzzTarget
  readonly #seed: number
  #batch = -1
  #values: Buffer[] = []

  constructor (target: FuzzTarget, seed: number) {
    this.#target = target
    this.#seed = mix(seed, nameHash(target.name))
  }

  #grammar (index: number): Buffer {
    const batch = Math.floor(index / GRAMMAR_BATCH)
    if (batch !== this.#batch) {
      this.#values = fc.sample(this.#target.grammar, { seed: mix(this.#seed, batch) | 0, numRuns: GRAMMAR_BATCH })
      this.#batch = batch
    }
    return this.#values[index % GRAMMAR_BATCH]!
  }

  input (index: number): FuzzInput {
    const r = rng(mix(this.#seed, index, 0x5eed))
    const knob = Math.floor(r.next() * 0x100000000)
    const corpus = this.#target.corpus
    const roll = r.next()
    const opts = { dictionary: this.#target.dictionary ?? [], maxBytes: this.#target.inputBytesMax ?? 256 * 1024, corpus }
    let data: Buffer
    if (roll < 0.4 || corpus.length === 0) {
      data = this.#grammar(index)
    } else if (roll < 0.8) {
      data = mutate(corpus[r.int(corpus.length)]!, r, opts)
    } else {
      data = mutate(this.#grammar(index), r, opts)
    }
    return { data, knob }
  }
}

function signatureOf (err: unknown): { signature: string, message: string } {
  if (!(err instanceof Error)) return { signature: `non-error ${String(err).slice(0, 80)}`, message: String(err) }
  const frame = (err.stack ?? '').split('\n').slice(1).find(l => !/node:internal|\/test\/fuzz\/(engine|run)\.ts|\(index \d+\)|<anonymous>/.test(l)) ?? ''
  const where = frame.replace(/^\s*at\s+/, '').replace(/:\d+\)?$/, '').replace(/.*\/work\/main\//, '')
  return { signature: `${err.name}: ${err.message.replace(/\d+/g, 'N').slice(0, 120)} @ ${where}`, message: err.stack ?? err.message }
}

/** Runs `p` but gives up waiting after `ms`: resolves to 'hang' then (the input's own cleanup still runs). */
async function within (p: Promise<void>, ms: number): Promise<'ok' | 'hang'> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<'hang'>((resolve) => { timer = setTimeout(() => resolve('hang'), ms) })
  try {
    return await Promise.race([p.then(() => 'ok' as const), timeout])
  } finally {
    clearTimeout(timer)
  }
}

let interrupted = false
/** Ends the running target at its next input (its report still comes) and skips the rest: SIGINT, SIGTERM. */
export function interrupt (): void {
  interrupted = true
}
export function wasInterrupted (): boolean {
  return interrupted
}

export async function runTarget (target: FuzzTarget, options: RunOptions): Promise<TargetReport> {
  const log = options.log ?? (() => {})
  const source = new InputSource(target, options.seed)
  const failures = new Map<string, Failure>()
  const record = (kind: Failure['kind'], err: unknown, index: number, input: FuzzInput | null): void => {
    const { signature, message } = signatureOf(err)
    const key = `${kind} ${signature}`
    const seen = failures.get(key)
    if (seen !== undefined) { seen.count++; return }
    if (failures.size >= FAILURES_KEPT_MAX) return
    failures.set(key, { kind, signature, message, count: 1, index, input })
    log(`  ${target.name}: ${kind} at input ${index}: ${signature}`)
  }

  // Process-wide safety net: an error thrown from a timer or an event handler of the code under test.
  const stray = (err: unknown): void => { record('exception', err, -1, null) }
  process.on('uncaughtException', stray)
  process.on('unhandledRejection', stray)

  await target.setup?.()
  const started = performance.now()
  const deadline = options.timeBudgetMs === undefined ? Infinity : started + options.timeBudgetMs
  gc()
  let heapBaseline = process.memoryUsage().heapUsed
  let heapPeak = heapBaseline
  let rssPeak = process.memoryUsage().rss
  let lastHeapCheck = started
  let lastProgress = started
  let lastYield = started
  let warmedUp = false
  let slowest = 0
  let done = 0
  let stoppedByTime = false
  const first = options.index ?? 0
  const end = options.index === undefined ? options.runs : options.index + 1
  let nextIndex = first

  const checkHeap = (): void => {
    gc()
    const { heapUsed, rss } = process.memoryUsage()
    rssPeak = Math.max(rssPeak, rss)
    if (!warmedUp) {
      // the first interval fills caches and JIT code: the baseline is taken after it
      heapBaseline = heapUsed
      warmedUp = true
    }
    heapPeak = Math.max(heapPeak, heapUsed)
    if (heapUsed - heapBaseline > HEAP_GROWTH_BYTES_MAX) {
      record('memory', new Error(`heap after GC grew by ${Math.round((heapUsed - heapBaseline) / 1048576)} MiB over ${done} inputs`), done, null)
      heapBaseline = heapUsed // report each further 64 MiB once more, not every check
    }
  }

  const one = async (index: number): Promise<void> => {
    const input = source.input(index)
    const t0 = performance.now()
    const cpu0 = process.cpuUsage()
    let outcome: 'ok' | 'hang' = 'ok'
    try {
      const result = target.run(input)
      if (result instanceof Promise) {
        outcome = await within(result.catch((err: unknown) => { record('exception', err, index, input) }), ASYNC_WAIT_MS)
      }
    } catch (err) {
      record('exception', err, index, input)
    }
    const wall = performance.now() - t0
    const cpuUsed = process.cpuUsage(cpu0)
    const cpuMs = (cpuUsed.user + cpuUsed.system) / 1000
    slowest = Math.max(slowest, cpuMs)
    if (outcome === 'hang') record('hang', new Error(`no end within ${ASYNC_WAIT_MS} ms`), index, input)
    else if (cpuMs > HANG_MS) record('hang', new Error(`input took more than ${HANG_MS} ms of CPU`), index, input)
    if (wall > 50) rssPeak = Math.max(rssPeak, process.memoryUsage().rss)
    done++
  }

  const worker = async (): Promise<void> => {
    while (nextIndex < end) {
      const now = performance.now()
      if (now > deadline || interrupted) { stoppedByTime = true; return }
      if (now - lastHeapCheck > HEAP_CHECK_INTERVAL_MS) {
        lastHeapCheck = now
        checkHeap()
      }
      if (now - lastYield > 100) {
        // a synchronous target never returns to the event loop by itself: signals and timers need a turn
        lastYield = now
        await new Promise(resolve => setImmediate(resolve))
      }
      if (now - lastProgress > PROGRESS_INTERVAL_MS) {
        lastProgress = now
        log(`  ${target.name}: ${done} inputs, ${Math.round((now - started) / 1000)} s, heap ${Math.round(heapPeak / 1048576)} MiB peak, ${failures.size} failures`)
      }
      await one(nextIndex++)
    }
  }
  await Promise.all(Array.from({ length: target.concurrency ?? 1 }, () => worker()))
  const durationMs = performance.now() - started
  checkHeap()
  await target.teardown?.()
  process.off('uncaughtException', stray)
  process.off('unhandledRejection', stray)
  return {
    target: target.name,
    seed: options.seed,
    inputs: done,
    durationMs,
    failures: [...failures.values()],
    slowestMs: slowest,
    heapBaselineBytes: heapBaseline,
    heapPeakBytes: heapPeak,
    heapFinalBytes: process.memoryUsage().heapUsed,
    rssPeakBytes: rssPeak,
    stoppedByTime
  }
}

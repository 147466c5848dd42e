// RPC microbenchmark: two gossip hosts in this process on loopback, N calls with a body, C in flight; CPU per call
// (both ends together: one process) over the peer's channel and over a stream per call (`bulk`), alternated.
// Parameters: BENCH_RPC_CALLS (default 3000), BENCH_RPC_BODY (10240), BENCH_RPC_INFLIGHT (4), BENCH_RPC_ROUNDS (3),
// BENCH_RPC_ONLY (channel or stream: one carrier only), BENCH_RPC_DIRECT=0 (the channel stays on libp2p: no direct
// channel, gossip/direct.ts; the line says which carrier the calls took).

import { startHost, formed, waitFor } from '../gossip/helpers.ts'

const CALLS = Number(process.env.BENCH_RPC_CALLS ?? 3000)
const BODY = Number(process.env.BENCH_RPC_BODY ?? 10240)
const INFLIGHT = Number(process.env.BENCH_RPC_INFLIGHT ?? 4)
const ROUNDS = Number(process.env.BENCH_RPC_ROUNDS ?? 3)
const MODES = process.env.BENCH_RPC_ONLY === 'channel' ? [false] : process.env.BENCH_RPC_ONLY === 'stream' ? [true] : [false, true]

const cleanups: Array<() => Promise<void>> = []
const t = { after: (fn: () => Promise<void>) => { cleanups.push(fn) } }
const FAST = { heartbeatMs: 250, suspectAfterMs: 750, deadAfterMs: 1500 }
const DIRECT = process.env.BENCH_RPC_DIRECT !== '0'
const a = await startHost(t, { ...FAST, direct: DIRECT })
const b = await startHost(t, { ...FAST, bootstrap: [a.addr], direct: DIRECT })
await waitFor(() => formed([a.gossip, b.gossip]), 10_000, 'the pair to form')
a.gossip.handle('/bench/echo/1.0.0', async req => ({ header: { n: req.body?.byteLength ?? 0 } }))
const body = Buffer.alloc(BODY, 7)

async function run (bulk: boolean): Promise<{ cpuMs: number, wallMs: number }> {
  let next = 0
  const c0 = process.cpuUsage()
  const w0 = performance.now()
  await Promise.all(Array.from({ length: INFLIGHT }, async () => {
    while (next < CALLS) {
      next++
      await b.gossip.call(a.gossip.self, '/bench/echo/1.0.0', { header: { user: 'someone@example.com', entries: [] }, body }, { bulk })
    }
  }))
  const c = process.cpuUsage(c0)
  return { cpuMs: (c.user + c.system) / 1000, wallMs: performance.now() - w0 }
}

await run(false) // warm up both paths
await run(true)
for (let r = 1; r <= ROUNDS; r++) {
  for (const bulk of MODES) {
    const before = b.gossip.rpcStats?.() ?? null
    const { cpuMs, wallMs } = await run(bulk)
    const after = b.gossip.rpcStats?.() ?? null
    const carrier = bulk ? 'stream per call' : before !== null && after !== null && after.direct - before.direct === CALLS ? 'direct channel ' : 'channel        '
    console.log(`round ${r} ${carrier}: ${(cpuMs / CALLS * 1000).toFixed(0)} µs CPU per call, ${(CALLS / wallMs * 1000).toFixed(0)} calls/s (${CALLS} calls, ${BODY} B body, ${INFLIGHT} in flight)`)
  }
}
for (const fn of cleanups.reverse()) await fn()

// Where a STORE's time goes: one node in this process (test/helpers/node.ts, fsync on), one raw IMAP client issuing
// N sequential UID STORE +FLAGS.SILENT / -FLAGS.SILENT on a 400-message INBOX; prints the client's latency
// percentiles and the store's group-commit durations (its onCommit observer) over the same commands.
// node test/bench/store-latency.ts [N=1000] [CLIENTS=1]
import { performance } from 'node:perf_hooks'
import { startNode } from '../helpers/node.ts'
import { imapLogin } from './imap-raw.ts'

const N = Number(process.argv[2] ?? 1000)
const CLIENTS = Number(process.argv[3] ?? 1)
const after: Array<() => Promise<void>> = []
const n = await startNode({ after: (fn) => { after.push(fn) } }, { plaintextAuthOnLoopback: true })
const store = n.node.store
await store.addDomain('lat.test')
const users = Array.from({ length: CLIENTS }, (_, i) => `u${i}@lat.test`)
for (const u of users) {
  await store.addUser({ address: u, password: 'pw' })
  for (let i = 0; i < 400; i++) await store.deliver(Buffer.from(`Subject: m ${i}\r\nMessage-ID: <${i}@lat.test>\r\n\r\nbody ${i}\r\n`), [{ user: u, prefix: '' }])
}
const pct = (a: number[], p: number): number => a[Math.min(a.length - 1, Math.floor(a.length * p / 100))]!
const lat: number[] = []
const t0 = performance.now()
await Promise.all(users.map(async (u) => {
  const c = await imapLogin(n.port('imap'), u, 'pw')
  await c.ok('SELECT INBOX')
  for (let i = 0; i < N; i++) {
    const s = performance.now()
    await c.ok(`UID STORE ${1 + (i * 7) % 400} ${i % 2 === 0 ? '+' : '-'}FLAGS.SILENT (\\Flagged)`)
    lat.push(performance.now() - s)
  }
  c.close()
}))
const secs = (performance.now() - t0) / 1000
lat.sort((a, b) => a - b)
console.log(`${CLIENTS} clients x ${N} STOREs: ${(CLIENTS * N / secs).toFixed(0)} STORE/s; latency ms p50 ${pct(lat, 50).toFixed(2)} p90 ${pct(lat, 90).toFixed(2)} p99 ${pct(lat, 99).toFixed(2)} mean ${(lat.reduce((a, b) => a + b, 0) / lat.length).toFixed(2)}`)
for (const fn of after.reverse()) await fn()

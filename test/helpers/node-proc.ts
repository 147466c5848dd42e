// A mail node in a process of its own, for tests and benchmarks that kill it (SIGKILL) or measure it apart
// from the load generator. Usage: node test/helpers/node-proc.ts DATA_DIR [SETUP_JSON]
// SETUP_JSON: {"domain": "example.com", "users": ["u1@example.com", ...], "password": "pw"} is applied once.
// Prints one line `READY {"smtp": port, ...}` when listening; SIGTERM stops it cleanly.
// MAILGRID_TEST_GRID (JSON, optional): a GridConfig to join a grid; READY then also carries `id` and `addrs`.
// MAILGRID_TEST_OUTBOUND (JSON, optional): an OutboundInit.
// MAILGRID_TEST_STORE (JSON, optional): {"minFreeBytes": N, "diskCheckMs": N}, the free-space floor and its check.
// MAILGRID_TEST_ALARMS (JSON, optional): an AlarmsConfig (node/types.ts). MAILGRID_TEST_STATS (JSON): {"retentionDays": N}.
// MAILGRID_TEST_ADMIN (a token, optional): also serve the admin API on loopback with that token, with /metrics and the
// statistics and alarms routes (appliance/observe.ts) and the mail routes (appliance/mail-routes.ts); READY then carries its port as `admin`.

import type { Level } from 'pino'
import { createLogger } from '../../appliance/logger.ts'
import { createMailNode } from '../../node/index.ts'
import { isMailError } from '../../store/index.ts'
import { createAdminServer } from '../../appliance/admin.ts'
import type { AdminServer } from '../../appliance/admin.ts'
import { mailRoutes } from '../../appliance/mail-routes.ts'
import { importRoutes } from '../../appliance/import-routes.ts'
import { collectRoutes } from '../../appliance/collect-routes.ts'
import { sieveRoutes } from '../../appliance/sieve-routes.ts'
import { createNodeMetrics } from '../../appliance/metrics.ts'
import { observeRoutes } from '../../appliance/observe.ts'
import { testCert, TEST_LIMITS, TEST_OUTBOUND } from './node.ts'

const [dataDir, setupJson] = process.argv.slice(2)
const ep = { host: '127.0.0.1', port: 0 }
// MAILGRID_TEST_LOG: a log level (default silent); lines go to stdout through the appliance's logger (buffered, as `npm start` writes them)
const logger = createLogger({ level: (process.env.MAILGRID_TEST_LOG ?? 'silent') as Level | 'silent' })
const adminToken = process.env.MAILGRID_TEST_ADMIN
const metrics = adminToken !== undefined ? createNodeMetrics() : undefined
const node = createMailNode({ logger, ...(metrics !== undefined ? { metrics: metrics.node } : {}) }, {
  dataDir,
  hostname: 'mx.test',
  listen: { smtp: ep, submission: ep, smtps: ep, pop3: ep, pop3s: ep, imap: ep, imaps: ep, managesieve: ep },
  tls: await testCert(),
  plaintextAuthOnLoopback: true,
  sync: process.env.MAILGRID_SYNC !== '0',
  ...(process.env.MAILGRID_TEST_STORE !== undefined ? JSON.parse(process.env.MAILGRID_TEST_STORE) as { minFreeBytes?: number, diskCheckMs?: number } : {}),
  scryptLogN: 10,
  // MAILGRID_TEST_LIMITS (JSON, optional): limits over the test defaults (a low per-IP cap, an auth budget)
  limits: { ...TEST_LIMITS, messageBytesMax: 50 * 1024 * 1024, ...(process.env.MAILGRID_TEST_LIMITS !== undefined ? JSON.parse(process.env.MAILGRID_TEST_LIMITS) : {}) },
  ...(process.env.MAILGRID_TEST_GRID !== undefined ? { grid: JSON.parse(process.env.MAILGRID_TEST_GRID) } : {}),
  // MAILGRID_TEST_OUTBOUND (JSON, optional): an OutboundInit (the tests' own resolver and receiving MTA)
  outbound: process.env.MAILGRID_TEST_OUTBOUND !== undefined ? JSON.parse(process.env.MAILGRID_TEST_OUTBOUND) : TEST_OUTBOUND,
  // MAILGRID_TEST_BACKUP (JSON, optional): the scheduled backup, {"dir": DIR, "intervalMinutes": N} (a fraction in tests)
  ...(process.env.MAILGRID_TEST_BACKUP !== undefined ? { backup: JSON.parse(process.env.MAILGRID_TEST_BACKUP) } : {}),
  ...(process.env.MAILGRID_TEST_ALARMS !== undefined ? { alarms: JSON.parse(process.env.MAILGRID_TEST_ALARMS) } : {}),
  ...(process.env.MAILGRID_TEST_STATS !== undefined ? { stats: JSON.parse(process.env.MAILGRID_TEST_STATS) } : {})
})
await node.start()
if (setupJson !== undefined) {
  const setup = JSON.parse(setupJson) as { domain: string, users: string[], password: string }
  try {
    await node.store.addDomain(setup.domain)
  } catch (err) {
    if (!isMailError(err, 'exists')) throw err
  }
  for (const u of setup.users) {
    if (await node.store.getUser(u) === null) await node.store.addUser({ address: u, password: setup.password })
  }
}
const status = await node.status()
const ports: Record<string, unknown> = Object.fromEntries(status.services.map(s => [s.name, s.port]))
let admin: AdminServer | null = null
if (adminToken !== undefined && metrics !== undefined) {
  metrics.setStatus(async () => await node.status())
  admin = createAdminServer({
    directory: node.store, status: async () => await node.status(), queue: node.queue, logger, metrics,
    routes: [...observeRoutes({ stats: node.stats, alarms: node.alarms, directory: node.store }), ...mailRoutes({ store: node.store, userMail: node.userMail, dataDir }), ...importRoutes(node.store), ...collectRoutes(node.store, node.collectHosts), ...sieveRoutes({ directory: node.store, sieve: node.sieve })]
  }, { host: '127.0.0.1', port: 0, token: adminToken })
  await admin.start()
  ports.admin = Number(new URL(admin.url).port)
}
if (status.grid !== null) {
  const self = status.grid.members.find(m => m.id === status.grid?.self)
  ports.id = status.grid.self
  ports.addrs = self?.addrs ?? []
}
process.stdout.write(`READY ${JSON.stringify(ports)}\n`)
// a line `status` on stdin is answered with `STATUS {json}`: how tests watch the grid form and heal; `user ADDRESS
// PASSWORD` adds a user (`USER ok` or `USER error ...`); `positions A,B,...` answers `POSITIONS {"A": n, ...}`, each
// user's log position in this node's store (0: it holds no copy)
const { createInterface } = await import('node:readline')
createInterface({ input: process.stdin }).on('line', line => {
  const block = /^block ?(.*)$/.exec(line.trim())
  if (block !== null) {
    node.block(block[1] === '' ? [] : block[1].split(','))
    process.stdout.write('BLOCKED\n')
  }
  const user = /^user (\S+) (\S+)$/.exec(line.trim())
  if (user !== null) {
    node.store.addUser({ address: user[1], password: user[2] }).then(() => process.stdout.write('USER ok\n'), err => process.stdout.write(`USER error ${String(err)}\n`))
  }
  const positions = /^positions (\S+)$/.exec(line.trim())
  if (positions !== null) {
    const users = positions[1].split(',')
    Promise.all(users.map(async u => [u, await node.store.logPosition(u)])).then(
      p => process.stdout.write(`POSITIONS ${JSON.stringify(Object.fromEntries(p))}\n`),
      err => process.stdout.write(`POSITIONS {"error": ${JSON.stringify(String(err))}}\n`))
  }
  if (line.trim() === 'status') {
    node.status().then(s => process.stdout.write(`STATUS ${JSON.stringify(s)}\n`), err => process.stdout.write(`STATUS {"error": ${JSON.stringify(String(err))}}\n`))
  }
})
const stop = (): void => { (admin?.stop() ?? Promise.resolve()).then(async () => { await node.stop() }).then(() => process.exit(0), () => process.exit(1)) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)

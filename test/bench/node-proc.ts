// One mailgrid node in a process of its own for the benchmark, so that its CPU and RSS are measured apart from
// the load generator. Usage: node test/bench/node-proc.ts DATA_DIR
// Users are created beforehand through the store (see mailgrid.ts). Connection limits are raised to what the
// benchmark opens (5,000 IDLE sessions from 127.0.0.1); everything else is the node's production default,
// fsync included (MAILGRID_SYNC=0 turns it off, for comparison only). Prints `READY {ports}`; SIGTERM stops it.
// BENCH_NODE_CHECKS_DNS=host:port adds the inbound sender checks (SPF, DKIM, DMARC, ARC, on threads as shipped:
// `inbound.threads: -1`) with that resolver: a layer of `npm run bench:ladder`.

import pino from 'pino'
import { createMailNode } from '../../node/index.ts'
import { testCert } from '../helpers/node.ts'

const BENCH_CONNECTIONS_MAX = 20_000 // above the 5,000 IDLE sessions plus the load generator's 50 connections

const [dataDir] = process.argv.slice(2)
const ep = { host: '127.0.0.1', port: 0 }
const checksDns = process.env.BENCH_NODE_CHECKS_DNS
const checks = checksDns === undefined || checksDns === ''
  ? {}
  : {
      inbound: { dmarcReject: true, threads: -1 },
      outbound: { dnsServers: [checksDns], port: 25, relay: '', retryMinMs: 300_000, delayNoticeMs: 4 * 3600_000, bounceAfterMs: 5 * 24 * 3600_000 }
    }
const node = createMailNode({ logger: pino({ level: process.env.MAILGRID_TEST_LOG ?? 'silent' }) }, {
  dataDir,
  hostname: 'mx.bench.test',
  listen: { smtp: ep, submission: null, smtps: null, pop3: ep, pop3s: null, imap: ep, imaps: null },
  tls: await testCert(),
  plaintextAuthOnLoopback: true,
  ...checks,
  sync: process.env.MAILGRID_SYNC !== '0',
  scryptLogN: 10,
  limits: {
    messageBytesMax: 50 * 1024 * 1024,
    recipientsMax: 100,
    connectionsPerIpMax: BENCH_CONNECTIONS_MAX,
    connectionsMax: BENCH_CONNECTIONS_MAX,
    authFailuresPerIpMax: 1000,
    authFailuresPerAccountMax: 1000,
    authWindowMs: 60_000,
    idleTimeoutMs: 300_000,
    pop3IdleTimeoutMs: 600_000
  }
})
await node.start()
const ports = Object.fromEntries((await node.status()).services.map(s => [s.name, s.port]))
process.stdout.write(`READY ${JSON.stringify(ports)}\n`)
const stop = (): void => { node.stop().then(() => process.exit(0), () => process.exit(1)) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)

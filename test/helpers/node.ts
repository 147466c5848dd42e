// Start a real mail node in-process on ephemeral loopback ports, with a throwaway data dir and certificate.

import { generate } from 'selfsigned'
import pino from 'pino'
import { createMailNode } from '../../node/index.ts'
import type { MailNode, NodeInit, NodeLimits, ServiceName } from '../../node/index.ts'
import { tempDir } from './tmp.ts'

let cert: Promise<{ key: string, cert: string }> | null = null
export function testCert (): Promise<{ key: string, cert: string }> {
  cert ??= generate([{ name: 'commonName', value: 'localhost' }], { keyType: 'ec', algorithm: 'sha256' })
    .then(p => ({ key: p.private, cert: p.cert }))
  return cert
}

export const TEST_LIMITS: NodeLimits = {
  messageBytesMax: 10 * 1024 * 1024,
  recipientsMax: 100,
  connectionsPerIpMax: 200,
  connectionsMax: 1000,
  authFailuresPerIpMax: 1000,
  authFailuresPerAccountMax: 1000,
  authWindowMs: 60_000,
  idleTimeoutMs: 60_000,
  pop3IdleTimeoutMs: 600_000
}

// A test node sends no mail anywhere unless its test points it at its own receiver: the resolver is the discard
// port on loopback (every lookup fails at once, so queued mail waits as deferred), never the system's.
export const TEST_OUTBOUND = {
  dnsServers: ['127.0.0.1:9'], port: 25, relay: '', retryMinMs: 300_000, delayNoticeMs: 4 * 3600_000, bounceAfterMs: 5 * 24 * 3600_000
}

export interface TestNode {
  node: MailNode
  dir: string
  port: (name: ServiceName) => number
}

export async function startNode (t: { after: (fn: () => Promise<void>) => void }, overrides: Partial<NodeInit> & { limits?: Partial<NodeLimits> } = {}, components: { logger?: pino.Logger } = {}): Promise<TestNode> {
  const dir = overrides.dataDir ?? await tempDir(t)
  const ep = { host: '127.0.0.1', port: 0 }
  const init: NodeInit = {
    dataDir: dir,
    hostname: 'mx.test',
    listen: { smtp: ep, submission: ep, smtps: ep, pop3: ep, pop3s: ep, imap: ep, imaps: ep },
    tls: await testCert(),
    plaintextAuthOnLoopback: false,
    sync: true,
    scryptLogN: 10,
    outbound: TEST_OUTBOUND,
    // MAILGRID_TEST_WORKERS=N runs the SMTP sessions in N worker processes (node/smtp/workers.ts), -1 = per core
    ...(process.env.MAILGRID_TEST_WORKERS !== undefined ? { workers: Number(process.env.MAILGRID_TEST_WORKERS) } : {}),
    ...overrides,
    limits: { ...TEST_LIMITS, ...overrides.limits }
  }
  const logger = components.logger ?? pino({ level: process.env.MAILGRID_TEST_LOG ?? 'silent' })
  const node = createMailNode({ logger }, init)
  await node.start()
  t.after(async () => { await node.stop() })
  const status = await node.status()
  return {
    node,
    dir,
    port (name) {
      const s = status.services.find(x => x.name === name)
      if (s === undefined) throw new Error(`service ${name} is not running`)
      return s.port
    }
  }
}

// A grid node in one test process, with real IMAP and POP3 servers on ephemeral loopback ports: a LevelDB
// store, the grid on an in-memory network (memory-gossip.ts), the replicated store under the servers and the
// session forwarder wired as node/index.ts wires it. Several of them make a grid whose sessions are forwarded.

import { join } from 'node:path'
import pino from 'pino'
import { createAuthenticator } from '../../node/auth.ts'
import { createSessionForwarder, Grid, replicatedMailStore } from '../../node/grid/index.ts'
import type { SessionForwarder, SessionForwarderInit } from '../../node/grid/index.ts'
import { createImapServer } from '../../node/imap/index.ts'
import type { ImapServer } from '../../node/imap/index.ts'
import { AuthThrottle, ConnectionLimiter } from '../../node/limits.ts'
import { createPop3Server } from '../../node/pop3/index.ts'
import type { Pop3Server } from '../../node/pop3/index.ts'
import { createStore } from '../../store/index.ts'
import type { Store } from '../../store/index.ts'
import type { MemoryGossip, MemoryNetwork } from './memory-gossip.ts'
import { testCert } from './node.ts'

export interface GridTestNode {
  id: string
  store: Store
  gossip: MemoryGossip
  grid: Grid
  forwarder: SessionForwarder
  imap: ImapServer
  pop3: Pop3Server
  imapPort: number
  pop3Port: number
  stop: () => Promise<void>
}

export async function startGridNode (net: MemoryNetwork, dir: string, id: string, opts: { replicas?: number, forwarder?: SessionForwarderInit } = {}): Promise<GridTestNode> {
  const logger = pino({ level: process.env.MAILGRID_TEST_LOG ?? 'silent' }).child({ node: id })
  const store = createStore({}, { path: join(dir, id), scryptLogN: 4 })
  await store.start()
  const gossip = net.create(id)
  const grid = new Grid({ gossip, store, logger }, { replicas: opts.replicas ?? 2 })
  const mail = replicatedMailStore(grid, store)
  const forwarder = createSessionForwarder({ grid, gossip, logger }, opts.forwarder)
  const auth = createAuthenticator({ directory: store, throttle: new AuthThrottle({ perIp: 10_000, perAccount: 10_000 }) })
  const limiter = new ConnectionLimiter()
  const tls = await testCert()
  const imap = createImapServer({ store: mail, auth, limiter, logger, tls, router: forwarder.route }, {
    endpoint: { host: '127.0.0.1', port: 0 },
    hostname: 'mx.test',
    allowInsecureAuthOnLoopback: true
  })
  const pop3 = createPop3Server({ store: mail, auth, limiter, logger, router: forwarder.route }, {
    host: '127.0.0.1', port: 0, tls, allowPlaintextOnLoopback: true, idleTimeoutMs: 600_000
  })
  forwarder.serve('imap', (socket, h) => { imap.adopt(socket, { ...h, tag: h.tag ?? '*' }) })
  forwarder.serve('pop3', (socket, h) => { pop3.adopt(socket, h) })
  await gossip.start()
  await grid.start()
  const imapPort = (await imap.listen()).port
  const pop3Port = (await pop3.listen()).port
  let stopped = false
  return {
    id, store, gossip, grid, forwarder, imap, pop3, imapPort, pop3Port,
    async stop () {
      if (stopped) return
      stopped = true
      await Promise.allSettled([imap.close(), pop3.close()])
      forwarder.stop()
      await grid.stop()
      await gossip.stop()
      await store.stop()
    }
  }
}

/** Polls until `fn` holds; fails with `what` after `timeoutMs`. */
export async function until (what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 25))
  }
}

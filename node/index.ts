// node/: the mail daemon. createMailNode wires the store, the shared guards (connection limits, auth
// throttling, the DATA memory budget) and the protocol services of one node from a resolved NodeInit.

import { networkInterfaces } from 'node:os'
import { join } from 'node:path'
import { createGossip } from '../gossip/index.ts'
import type { Gossip } from '../gossip/index.ts'
import { createStore, DiskWatch, domainOf, normalizeAddress } from '../store/index.ts'
import { createStats } from './stats/index.ts'
import { createAlarms } from './alarms/index.ts'
import { createDomainUsage } from './domain-quota.ts'
import type { StatsSink } from './stats/index.ts'
import type { MailStore, Store } from '../store/index.ts'
import { createSessionForwarder, deliverFiltered, Grid, replicatedMailStore } from './grid/index.ts'
import { createSieveFilter } from './rules/index.ts'
import type { SessionForwarder } from './grid/index.ts'
import { UserMail } from './migrate/user-mail.ts'
import { BackupScheduler } from './backup/index.ts'
import { ImapImportJobs } from './migrate/imap-jobs.ts'
import { createImportQuota } from './migrate/quota.ts'
import { Collector } from './collect/index.ts'
import { createHostPolicy } from './host-policy.ts'
import { createAuthenticator } from './auth.ts'
import type { Authenticator } from './auth.ts'
import { createGridThrottle } from './auth-grid.ts'
import type { GridThrottle } from './auth-grid.ts'
import { AuthThrottle, ConnectionLimiter } from './limits.ts'
import type { Throttle } from './limits.ts'
import { createImapServer } from './imap/index.ts'
import { createPop3Server } from './pop3/index.ts'
import { createManageSieveServer, SieveService } from './managesieve/index.ts'
import { createSmtpService, MemoryBudget } from './smtp/server.ts'
import { IdleMemory } from './idle-memory.ts'
import type { SmtpService } from './smtp/server.ts'
import { SmtpWorkers, workerCount } from './smtp/workers.ts'
import type { WorkerInit } from './smtp/worker.ts'
import { burlFetcher } from './smtp/burl.ts'
import { createDeliverer, Queue, SHARD_KEYS } from './outbound/index.ts'
import { createArcSealer, createSigner, createSrs, srsSecret } from './mailauth/index.ts'
import type { OutboundInit } from './types.ts'
import type { Deliverer } from './outbound/types.ts'
import { createRspamdFilter } from './filters/index.ts'
import { createInboundChecker, createThreadedInboundChecker, inboundThreadCount } from './mailauth/index.ts'
import type { SmtpMode } from './smtp/server.ts'
import type { AlarmsConfig, Endpoint, MailNode, NodeComponents, NodeInit, NodeMetrics, NodeStatus, ServiceName, ServiceStatus } from './types.ts'

export type * from './types.ts'

// A SIGKILLed node is declared dead this long after its last heartbeat, so its users are served again by the
// survivors within the 5 s the design asks for (issue 4): suspect after 3 missed heartbeats (2.25 s), dead at
// 3 s; no less, so a node busy for a moment is not thrown out.
const GRID_HEARTBEAT_MS = 750
const GRID_DEAD_AFTER_MS = 3000

// How often the open session count goes into the heartbeat's load sample (placement and status read it; a
// few seconds stale is fine for both).
const SESSIONS_PUBLISH_INTERVAL_MS = 5000

// issue 10: direct delivery on port 25 with the system's resolvers, first retry after 5 minutes, a delay notice
// after 4 hours, a bounce after 5 days (the appliance's configuration sets these; tests and embedders may not)
// issue 11: the alarms' thresholds when the configuration gives none
const ALARMS_DEFAULTS: AlarmsConfig = {
  mailTo: '', diskUsedPct: 85, underReplicatedMs: 10 * 60_000, queueAgeMs: 3600_000, certDays: 14, authFailures: 100
}

const OUTBOUND_DEFAULTS: OutboundInit = {
  dnsServers: [], port: 25, relay: '', retryMinMs: 300_000, delayNoticeMs: 4 * 3600_000, bounceAfterMs: 5 * 24 * 3600_000
}

interface Service {
  listen (): Promise<Endpoint>
  close (): Promise<void>
}

/**
 * Logins and failed logins per protocol (AUTH is offered on the submission ports only, hence that label), and per
 * user in the statistics (a failure only for a user that exists: made-up names count in the grid total alone).
 */
function counted (auth: Authenticator, metrics: NodeMetrics | undefined, stats: StatsSink, exists: (address: string) => boolean): Authenticator {
  return {
    async authenticate (username, password, ctx) {
      const r = await auth.authenticate(username, password, ctx)
      metrics?.inc(r.ok ? 'logins' : 'loginFailures', ctx.protocol === 'smtp' ? 'submission' : ctx.protocol)
      if (r.ok) stats.add('logins', r.user)
      else stats.add('loginFailures', exists(username) ? username : null)
      return r
    }
  }
}

/**
 * Outbound recipients by outcome, and the bytes of every message that reached at least one of them; in the
 * statistics per sender (a user of ours, else its domain when it is ours, else the grid total alone).
 */
function countedDeliverer (deliverer: Deliverer, metrics: NodeMetrics | undefined, stats: StatsSink, senderOf: (from: string) => string | null): Deliverer {
  return {
    async send (domain, envelope, message, opts) {
      const outcomes = await deliverer.send(domain, envelope, message, opts)
      const sender = senderOf(envelope.from)
      let sent = false
      for (const o of outcomes) {
        metrics?.inc('deliveriesOut', o.status)
        stats.add(o.status, sender)
        sent ||= o.status === 'sent'
      }
      if (sent) {
        metrics?.inc('bytesOut', 'smtp', message.length)
        stats.add('bytesOut', sender, message.length)
      }
      return outcomes
    },
    close: async () => { await deliverer.close() }
  }
}

export function createMailNode (components: NodeComponents, init: NodeInit): MailNode {
  const now = components.now ?? Date.now
  const logger = components.logger
  const store: Store = createStore({ now, ...(components.metrics !== undefined ? { onCommit: (s: number) => { components.metrics?.observe('commitSeconds', 'store', s) } } : {}) }, { path: init.dataDir, sync: init.sync, scryptLogN: init.scryptLogN })
  const limiter = new ConnectionLimiter({ perIp: init.limits.connectionsPerIpMax, total: init.limits.connectionsMax })
  const localThrottle = new AuthThrottle({
    perIp: init.limits.authFailuresPerIpMax, perAccount: init.limits.authFailuresPerAccountMax, windowMs: init.limits.authWindowMs, now
  })
  // every failure this node sees, its own and those the grid tells it of, for the alarms' burst check
  let authFailures = 0
  const throttle: Throttle = {
    allowed: (ip, account) => localThrottle.allowed(ip, account),
    fail: (ip, account) => { authFailures++; localThrottle.fail(ip, account) },
    succeed: (ip, account) => { localThrottle.succeed(ip, account) }
  }
  const budget = new MemoryBudget()
  // an idle node gives back the young generation V8 grew under load (node/idle-memory.ts)
  const idleMemory = new IdleMemory({ logger: logger.child({ ns: 'memory' }) })
  // free space of the data disk: below the floor the node says so in its log and status, and tells the grid
  const disk = new DiskWatch({ logger: logger.child({ ns: 'store' }), now }, {
    path: init.dataDir, minFreeBytes: init.minFreeBytes ?? -1, checkMs: init.diskCheckMs, statePath: join(init.dataDir, 'disk-low.json')
  })
  // On a grid, protocol code sees the replicated store: writes need the lease and reach every replica first
  let gossip: Gossip | null = null
  let grid: Grid | null = null
  let forwarder: SessionForwarder | null = null
  let gridThrottle: GridThrottle | null = null
  let mail: MailStore = store
  if (init.grid !== undefined) {
    const g = init.grid
    gossip = createGossip({ logger: logger.child({ ns: 'gossip' }), now }, {
      clusterKey: g.clusterKey,
      dataDir: join(init.dataDir, 'grid'),
      listen: g.listen,
      bootstrap: g.bootstrap,
      mdns: g.mdns,
      ...(g.weight > 0 ? { weight: g.weight } : {}),
      deadAfterMs: g.deadAfterMs ?? GRID_DEAD_AFTER_MS,
      heartbeatMs: g.heartbeatMs ?? GRID_HEARTBEAT_MS,
      name: init.hostname,
      host: g.advertiseHost,
      state: 'alive',
      ...(g.direct !== undefined ? { direct: g.direct } : {})
    })
    const m = components.metrics
    grid = new Grid({ gossip, store, logger, ...(m !== undefined ? { onReplicated: (s: number) => { m.observe('replicationSeconds', 'replicas', s) } } : {}) }, { replicas: g.replicas, keys: SHARD_KEYS })
    mail = replicatedMailStore(grid, store)
    // sessions run on their user's primary: a login elsewhere is forwarded there (node/grid/forward.ts)
    forwarder = createSessionForwarder({ grid, gossip, logger })
    // authentication failures count grid-wide: each one is told to every member (node/auth-grid.ts)
    gridThrottle = createGridThrottle({ gossip, logger, local: throttle })
  }
  const metrics = components.metrics
  // statistics: each user's mailbox size is sampled by its primary only, so the grid's sums count it once
  const stats = createStats({
    logger,
    now,
    ...(gossip !== null ? { gossip } : {}),
    mailboxes: async () => {
      const out: Array<[string, number]> = []
      for (const u of await store.listUsers()) {
        if (grid !== null && !grid.isPrimary(u.address)) continue
        const q = await store.quota(u.address).catch(() => null)
        if (q !== null) out.push([u.address, q.usedBytes])
      }
      return out
    }
  }, { dir: join(init.dataDir, 'stats'), retentionDays: init.stats?.retentionDays })
  const exists = (address: string): boolean => store.userCreatedAt(address) !== undefined
  // a sender of ours, else its domain (a forwarding alias's SRS address); a bounce (null sender): the grid total
  const senderOf = (from: string): string | null => {
    const a = from === '' ? null : normalizeAddress(from)
    if (a === null) return null
    return exists(a) ? a : '@' + domainOf(a)
  }
  const auth = counted(createAuthenticator({ directory: store, throttle: gridThrottle ?? throttle }), metrics, stats, exists)
  const router = forwarder === null ? {} : { router: forwarder.route }
  // mail for other domains: queued on the shards' replicas, delivered by each shard's primary (node/outbound)
  const out = init.outbound ?? OUTBOUND_DEFAULTS
  const deliverer = countedDeliverer(createDeliverer({ logger: logger.child({ ns: 'outbound' }), now }, {
    hostname: init.hostname,
    port: out.port,
    relay: out.relay,
    dnsServers: out.dnsServers,
    ...(init.listen.smtp !== null ? { ownSmtpPort: init.listen.smtp.port } : {})
  }), metrics, stats, senderOf)
  // DKIM for mail leaving from our domains; SRS and an ARC seal for mail our aliases forward outside. The SRS secret
  // is the grid's (every node must undo every node's rewriting); a standalone node derives it from its TLS key.
  const signer = createSigner({ directory: store, logger: logger.child({ ns: 'mailauth' }), now })
  const sealer = createArcSealer({ directory: store, logger: logger.child({ ns: 'mailauth' }), now })
  const srs = createSrs({ secret: srsSecret(init.grid?.clusterKey ?? Buffer.from(String(init.tls.key))), now })
  // users' Sieve scripts, run at delivery on the user's primary before the message is stored (node/rules): on a grid
  // from the grid's local deliveries, on a standalone node around the store's deliver
  const rules = createSieveFilter({
    store, directory: store, srs, logger: logger.child({ ns: 'sieve' }), now,
    // looked up when called: on a standalone node `mail` becomes the filtered store below, so a redirect to another
    // local user runs that user's script too, as on a grid
    mail: {
      setAttrs: async (...a) => { await mail.setAttrs(...a) },
      createMailbox: async (...a) => await mail.createMailbox(...a),
      deliver: async (...a) => await mail.deliver(...a)
    },
    outbound: { enqueue: async (raw, envelope, opts) => await queue.enqueue(raw, envelope, opts) }
  }, { hostname: init.hostname })
  if (grid !== null) {
    grid.setDeliveryFilter(rules)
  } else {
    const plain = store
    const deliver: MailStore['deliver'] = async (raw, targets, opts) => await deliverFiltered(async (r, t, o) => await plain.deliver(r, t, o), rules, raw, targets, { ...opts, internalDate: opts?.internalDate ?? now() })
    mail = new Proxy(plain, { get: (t, p) => p === 'deliver' ? deliver : Reflect.get(t, p, t) as unknown })
  }
  const queue = new Queue({ store, mail, directory: store, deliverer, grid, gossip, signer, srs, logger, now }, {
    hostname: init.hostname, retryMinMs: out.retryMinMs, delayNoticeMs: out.delayNoticeMs, bounceAfterMs: out.bounceAfterMs
  })
  // import, export, backup and restore reach a user's mail at its primary (node/migrate/user-mail.ts)
  // domains' byte quotas: the sum of their users' usage, read where each user's mail is, cached
  const domainUsage = createDomainUsage({ directory: store, quota: async u => await mail.quota(u), now })
  // imports count against the user's and the domain's quota like deliveries (node/migrate/quota.ts)
  const importQuota = createImportQuota({ mail, directory: store, domainUsage })
  const userMail = new UserMail({ store, mail, grid, gossip, quota: importQuota, logger: logger.child({ ns: 'migrate' }) })
  userMail.handle()
  // users' Sieve scripts for the admin API, at the user's primary (node/managesieve/service.ts)
  const sieveService = new SieveService({ mail, grid, gossip, logger: logger.child({ ns: 'sieve' }) })
  sieveService.handle()
  // IMAP imports and mail collection (issue 15): jobs and accounts in the replicated directory, run by the user's primary
  const primaryHere = (user: string): boolean => grid === null || grid.isPrimary(user)
  const imports = new ImapImportJobs({ directory: store, onDirectoryChange: l => store.onDirectoryChange(l), mail, quota: importQuota, isPrimary: primaryHere, self: () => grid?.self ?? init.hostname, logger, now }, {
    messageBytesMax: init.limits.messageBytesMax
  })
  // collection connects where a user says: never to this node, a grid member, loopback or link-local (node/host-policy.ts)
  const collectHosts = createHostPolicy({
    ownAddresses: () => [
      ...Object.values(networkInterfaces()).flatMap(l => (l ?? []).map(i => i.address)),
      ...(gossip?.members() ?? []).flatMap(m => [m.host, ...m.addrs.map(a => /^\/ip[46]\/([^/]+)\//.exec(a)?.[1] ?? '')])
    ]
  }, { allowPrivate: init.collect?.allowPrivate ?? false, allowLoopback: init.collect?.allowLoopback ?? false, dnsServers: out.dnsServers })
  const collector = new Collector({ directory: store, onDirectoryChange: l => store.onDirectoryChange(l), mail, isPrimary: primaryHere, hosts: collectHosts, logger, now }, {
    hostname: init.hostname, messageBytesMax: init.limits.messageBytesMax, ...(init.collectTickMs !== undefined ? { tickMs: init.collectTickMs } : {})
  })
  const backups = new BackupScheduler({ store, userMail, grid, logger: logger.child({ ns: 'backup' }), now }, {
    dir: init.backup?.dir ?? '', intervalMinutes: init.backup?.intervalMinutes ?? 0, node: init.hostname, ...(init.backup?.keyFile !== undefined ? { keyFile: init.backup.keyFile } : {})
  })
  const alarmsInit = init.alarms ?? ALARMS_DEFAULTS
  const alarms = createAlarms({
    logger,
    now,
    ...(gossip !== null ? { gossip } : {}),
    sources: {
      disk: () => disk.state,
      ...(grid !== null ? { underReplicated: async () => await grid!.underReplicated() } : {}),
      queueOldestMs: async () => (await queue.stats()).local.oldestAgeMs,
      cert: init.tls.cert,
      authFailures: () => authFailures
    },
    // an alarm mail: into the mailbox when the address is ours, through the queue otherwise (null sender, unsigned)
    mail: async (raw, to) => {
      const a = normalizeAddress(to)
      if (a === null) throw new Error(`alarms.mailTo is not an address: ${to}`)
      if (await store.isLocalDomain(domainOf(a))) {
        const users = await store.resolveRecipient(a)
        if (users.length === 0) throw new Error(`no such local user or alias: ${a}`)
        await mail.deliver(raw, users.map(u => ({ user: u, prefix: 'Return-Path: <>\r\n' })))
      } else {
        await queue.enqueue(raw, { from: '', rcpts: [{ address: a }] }, { unsigned: true })
      }
    }
  }, { ...alarmsInit, authWindowMs: init.limits.authWindowMs, path: join(init.dataDir, 'alarms.json'), hostname: init.hostname })
  const sessionCounts: Array<() => number> = []
  let publishTimer: NodeJS.Timeout | null = null
  const services = new Map<ServiceName | 'managesieve', Service>()
  const bound: ServiceStatus[] = []
  let startedAt = 0
  let state: 'new' | 'starting' | 'running' | 'stopped' = 'new'

  const rspamd = init.filters?.rspamd
  const filter = rspamd === undefined || rspamd.url === '' ? undefined : createRspamdFilter({ logger: logger.child({ ns: 'rspamd' }) }, rspamd)

  // SPF, DKIM, DMARC and ARC on the MX whenever the configuration has an [inbound] part (the appliance's always
  // has; a bare test node has none, and no DNS to ask)
  // (node/mailauth/threads.ts: on threads beside this one unless configured 0 or the machine has one core)
  const checkThreads = init.inbound === undefined ? 0 : inboundThreadCount(init.inbound.threads ?? 0)
  const inbound = init.inbound === undefined
    ? undefined
    : checkThreads > 0
      ? createThreadedInboundChecker({ logger: logger.child({ ns: 'mailauth' }) }, { hostname: init.hostname, dmarcReject: init.inbound.dmarcReject, dnsServers: out.dnsServers }, { threads: checkThreads })
      : createInboundChecker({ logger: logger.child({ ns: 'mailauth' }) }, { hostname: init.hostname, dmarcReject: init.inbound.dmarcReject, dnsServers: out.dnsServers })

  // SMTP worker processes (node/smtp/workers.ts): the SMTP sessions on other cores, everything else asked of this process
  const workersWanted = workerCount(init.workers ?? 0)
  const workerServices: WorkerInit['services'] = []
  const smtpServices = new Map<'smtp' | 'submission' | 'smtps', SmtpService>()
  const burl = burlFetcher(mail, now, forwarder !== null ? { route: forwarder.route } : undefined)
  let workers: SmtpWorkers | null = null
  const smtp = (name: 'smtp' | 'submission' | 'smtps', mode: SmtpMode): void => {
    const endpoint = init.listen[name]
    if (endpoint === null) return
    const smtpInit = {
      mode, endpoint, hostname: init.hostname, tls: init.tls, messageBytesMax: init.limits.messageBytesMax,
      recipientsMax: init.limits.recipientsMax, idleTimeoutMs: init.limits.idleTimeoutMs, plaintextAuthOnLoopback: init.plaintextAuthOnLoopback
    }
    const service = createSmtpService(
      { directory: store, delivery: mail, auth, limiter, budget, logger: logger.child({ ns: 'smtp' }), now, outbound: queue, srs, sealer, metrics, stats, domainUsage, ...(mode === 'mx' && filter !== undefined ? { filter } : {}), ...(mode === 'mx' && inbound !== undefined ? { inbound } : {}), ...(mode !== 'mx' ? { burl } : {}) },
      smtpInit
    )
    services.set(name, service)
    smtpServices.set(name, service)
    workerServices.push({
      name,
      init: smtpInit,
      has: { outbound: true, sealer: true, domainUsage: true, burl: mode !== 'mx', metrics: metrics !== undefined, stats: true, srs: true, inbound: mode === 'mx' && inbound !== undefined, filter: mode === 'mx' && filter !== undefined }
    })
  }
  smtp('smtp', 'mx')
  smtp('submission', 'submission')
  smtp('smtps', 'smtps')

  for (const [name, implicitTls] of [['pop3', false], ['pop3s', true]] as const) {
    const endpoint = init.listen[name]
    if (endpoint === null) continue
    const pop3 = createPop3Server({ store: mail, auth, limiter, logger: logger.child({ ns: 'pop3' }), metrics, ...router }, {
      host: endpoint.host,
      port: endpoint.port,
      tls: init.tls,
      implicitTls,
      allowPlaintextOnLoopback: init.plaintextAuthOnLoopback,
      idleTimeoutMs: init.limits.pop3IdleTimeoutMs
    })
    if (sessionCounts.length === 0) forwarder?.serve('pop3', (socket, h) => { pop3.adopt(socket, h) })
    sessionCounts.push(() => pop3.sessions)
    services.set(name, {
      async listen () { return { host: endpoint.host, port: (await pop3.listen()).port } },
      close: async () => { await pop3.close() }
    })
  }

  let imapAdopts = false
  for (const [name, implicitTls] of [['imap', false], ['imaps', true]] as const) {
    const endpoint = init.listen[name]
    if (endpoint === null) continue
    const imap = createImapServer({ store: mail, auth, limiter, logger, tls: init.tls, now, metrics, ...router, ...(grid !== null ? { servesUser: (user: string) => grid?.isPrimary(user) ?? true } : {}) }, {
      endpoint,
      implicitTls,
      hostname: init.hostname,
      allowInsecureAuthOnLoopback: init.plaintextAuthOnLoopback,
      limits: { appendBytesMax: init.limits.messageBytesMax }
    })
    if (!imapAdopts) forwarder?.serve('imap', (socket, h) => { imap.adopt(socket, { ...h, tag: h.tag ?? '*' }) })
    imapAdopts = true
    sessionCounts.push(() => imap.sessions)
    services.set(name, imap)
  }

  // ManageSieve (RFC 5804): users' Sieve scripts, kept as user attributes in the replicated store (node/managesieve)
  const sieveEndpoint = init.listen.managesieve ?? null
  if (sieveEndpoint !== null) {
    const managesieve = createManageSieveServer({ store: mail, auth, limiter, logger: logger.child({ ns: 'managesieve' }), ...(metrics !== undefined ? { metrics } : {}), ...router }, {
      host: sieveEndpoint.host, port: sieveEndpoint.port, tls: init.tls, allowPlaintextOnLoopback: init.plaintextAuthOnLoopback
    })
    forwarder?.serve('managesieve', (socket, h) => { managesieve.adopt(socket, h) })
    sessionCounts.push(() => managesieve.sessions)
    services.set('managesieve', {
      async listen () { return { host: sieveEndpoint.host, port: (await managesieve.listen()).port } },
      close: async () => { await managesieve.close() }
    })
  }

  const node: MailNode = {
    store,
    userMail,
    sieve: sieveService,
    queue,
    authThrottle: gridThrottle ?? throttle,
    stats,
    alarms,
    collectHosts,
    get smtpWorkerPids () { return workers?.pids ?? [] },
    async start () {
      if (state !== 'new') return
      state = 'starting'
      await store.start()
      try {
        await gossip?.start()
        await grid?.start()
        if (grid !== null) {
          const g = grid
          disk.onChange(s => { g.setDiskLow(s.low ? { since: s.since, floorBytes: s.floorBytes } : null) })
        }
        await disk.start()
        for (const [name, svc] of services) {
          const a = await svc.listen()
          bound.push({ name, host: a.host, port: a.port })
        }
        gossip?.update({ services: Object.fromEntries(bound.map(b => [b.name, b.port])) })
        if (workersWanted > 0 && smtpServices.size > 0) {
          workers = new SmtpWorkers({
            directory: store, delivery: mail, auth, limiter, outbound: queue, sealer, domainUsage, stats, burl: { fetch: burl }, ...(metrics !== undefined ? { metrics } : {})
          }, {
            count: workersWanted,
            workerInit: {
              logLevel: logger.level,
              srsSecret: srsSecret(init.grid?.clusterKey ?? Buffer.from(String(init.tls.key))),
              services: workerServices,
              ...(inbound !== undefined && init.inbound !== undefined ? { inbound: { hostname: init.hostname, dmarcReject: init.inbound.dmarcReject, dnsServers: out.dnsServers } } : {}),
              ...(filter !== undefined && rspamd !== undefined ? { rspamd } : {})
            },
            listeners: [...smtpServices].flatMap(([name, svc]) => { const l = svc.listener(); return l === null ? [] : [{ name, server: l }] })
          }, logger)
          await workers.start()
        }
        await queue.start()
        imports.start()
        collector.start()
        backups.start()
        await stats.start()
        await alarms.start()
        if (gossip !== null) {
          const g = gossip
          let published = -1
          publishTimer = setInterval(() => {
            const sessions = sessionCounts.reduce((n, count) => n + count(), 0)
            if (sessions !== published) g.update({ sessions })
            published = sessions
          }, SESSIONS_PUBLISH_INTERVAL_MS)
          publishTimer.unref()
        }
      } catch (err) {
        await node.stop()
        throw err
      }
      idleMemory.start()
      startedAt = now()
      state = 'running'
      logger.info({ hostname: init.hostname, services: bound }, 'node_started')
    },
    async stop () {
      if (state === 'stopped') return
      state = 'stopped'
      idleMemory.stop()
      if (publishTimer !== null) clearInterval(publishTimer)
      await alarms.stop()
      disk.stop()
      // workers first: their sessions' deliveries still need this process's store
      await workers?.stop()
      await Promise.allSettled([...services.values()].map(s => s.close()))
      await inbound?.close?.()
      await stats.stop()
      forwarder?.stop()
      gridThrottle?.stop()
      await backups.stop()
      await imports.stop()
      await collector.stop()
      await queue.stop()
      await grid?.stop()
      await gossip?.stop()
      await store.stop()
      logger.info('node_stopped')
    },
    setGridState (s: 'alive' | 'draining' | 'leaving') {
      grid?.setState(s)
    },
    async forgetMember (id: string) {
      return await (gossip?.forget?.(id) ?? Promise.resolve(false))
    },
    block (peers: string[]) {
      gossip?.block(peers)
    },
    async status (): Promise<NodeStatus> {
      const mem = process.memoryUsage()
      return {
        hostname: init.hostname,
        startedAt,
        uptimeMs: startedAt === 0 ? 0 : now() - startedAt,
        services: [...bound],
        connections: limiter.count,
        users: (await store.listUsers()).length,
        domains: (await store.listDomains()).length,
        store: store.stats(),
        memory: { rssBytes: mem.rss, heapUsedBytes: mem.heapUsed },
        disk: disk.state,
        grid: grid === null ? null : await (async (g: Grid) => { await g.underReplicated(); return g.status() })(grid),
        queue: await queue.stats()
      }
    }
  }
  return node
}

// `mailgrid start`: resolve the config, get the TLS certificate, run the mail node, the admin API (HTTPS off
// loopback, with /metrics) and the client autoconfig listeners in the foreground with JSON logs on stdout,
// advertise the admin API (URL and certificate fingerprint) in DATA/admin.json, and stop everything
// cleanly on SIGINT or SIGTERM: drain (hand the users this node is primary of over, bounded), announce
// `leaving`, then stop (a second signal while stopping exits at once).

import { mkdir } from 'node:fs/promises'
import { hostname as systemHostname } from 'node:os'
import { resolve } from 'node:path'
import type { MailNode } from '../node/types.ts'
import { clusterTag } from '../gossip/index.ts'
import { createAdminServer } from './admin.ts'
import type { AdminServer } from './admin.ts'
import type { AutoconfigServer } from './autoconfig.ts'
import { adminUsesTls, ConfigError, loadConfig, toNodeInit, WEB_NAMES } from './config.ts'
import { announceLeaving, drain } from './drain.ts'
import type { DrainTarget, GridState } from './drain.ts'
import { createLanWatch } from './lanwatch.ts'
import type { LanWatch } from './lanwatch.ts'
import { createLogger, namespaced } from './logger.ts'
import { missingNodeFlags } from './node-flags.ts'
import { ensureClusterKey, ensureToken, processAlive, readAdminInfo, removeAdminInfo, writeAdminInfo } from './runtime.ts'
import { loadTls, TlsError } from './tls.ts'

export interface StartOptions {
  configFile?: string
  dataDir?: string
  env: Record<string, string | undefined>
  stderr: { write (s: string): unknown }
  /** Resolves when the node should stop; SIGINT/SIGTERM when absent. Tests pass their own. */
  stopSignal?: Promise<unknown>
  /** The drain's bound (ms); DRAIN_TIMEOUT_MS when absent. */
  drainTimeoutMs?: number
}

/** A node that can publish its grid state (the method node/ is asked for in issue 5's report). */
type StateNode = MailNode & { setGridState?: (state: GridState) => void }

const EXIT_INTERRUPTED = 130 // 128 + SIGINT, the shell's convention for a second interrupt
/**
 * The exit code of a restart asked at the console (EX_TEMPFAIL): after the same graceful stop as SIGTERM, the node
 * exits with it, and its supervisor starts it again (mailgrid.service: RestartForceExitStatus=75).
 */
export const EXIT_RESTART = 75

/** Whether a supervisor starts this process again when it exits: systemd sets INVOCATION_ID, the service file MAILGRID_SUPERVISED=1. */
export function supervised (env: Record<string, string | undefined>): boolean {
  return env.MAILGRID_SUPERVISED === '1' || (env.INVOCATION_ID ?? '') !== ''
}

function waitForSignal (onSecond: () => void): Promise<string> {
  return new Promise(resolve => {
    let seen = false
    const handler = (sig: string): void => {
      if (seen) { onSecond(); return }
      seen = true
      resolve(sig)
    }
    process.on('SIGINT', handler)
    process.on('SIGTERM', handler)
  })
}

/** Runs the node until a stop signal; resolves to the process exit code. */
export async function startNode (options: StartOptions): Promise<number> {
  const fail = (message: string): number => { options.stderr.write(`mailgrid: ${message}\n`); return 1 }

  let loaded
  try {
    loaded = await loadConfig({ file: options.configFile, env: options.env, flags: { dataDir: options.dataDir } })
  } catch (err) {
    if (err instanceof ConfigError) return fail(err.problems.join('\nmailgrid: '))
    throw err
  }
  const { config, warnings } = loaded
  const logger = createLogger({ level: config.log.level })
  const log = namespaced(logger, 'appliance')
  for (const w of warnings) log.warn({ event: 'config_warning' }, w)
  const missing = missingNodeFlags()
  if (missing.length > 0) {
    log.warn({ event: 'runtime_flags', missing }, `started without the V8 flags mailgrid ships with (${missing.join(' ')}): garbage collection costs more under load; \`npm start\`, the systemd unit and \`mailgrid\` pass them (appliance/node-flags.ts)`)
  }

  const dataDir = resolve(config.dataDir)
  await mkdir(dataDir, { recursive: true })
  const running = await readAdminInfo(dataDir)
  if (running !== null && running.pid !== process.pid && processAlive(running.pid)) {
    return fail(`a node already runs on data dir ${dataDir} (pid ${running.pid}, admin ${running.url})`)
  }

  const hostname = config.hostname === '' ? systemHostname() : config.hostname
  let tls
  try {
    tls = await loadTls({ dataDir, hostname, certFile: config.tls.cert, keyFile: config.tls.key }, namespaced(logger, 'tls'))
  } catch (err) {
    if (err instanceof TlsError) return fail(err.message)
    throw err
  }
  const clusterKey = config.grid.enabled && config.grid.clusterKey === '' ? await ensureClusterKey(dataDir) : undefined
  const init = toNodeInit({ ...config, dataDir }, tls, hostname, { clusterKey })

  // Loaded here, not at the top: the management commands never need the daemon's code.
  const { createMailNode } = await import('../node/index.ts')
  const { createNodeMetrics } = await import('./metrics.ts')
  const { createAutoconfigServer } = await import('./autoconfig.ts')
  const { observeRoutes } = await import('./observe.ts')
  const { mailRoutes } = await import('./mail-routes.ts')
  const { importRoutes } = await import('./import-routes.ts')
  const { collectRoutes } = await import('./collect-routes.ts')
  const { sieveRoutes } = await import('./sieve-routes.ts')
  const metrics = createNodeMetrics()
  const node: StateNode = createMailNode({ logger, metrics: metrics.node }, init)
  metrics.setStatus(async () => await node.status())
  const adminTls = adminUsesTls(config.admin) ? tls : undefined
  let admin: AdminServer | null = null
  let lanWatch: LanWatch | null = null
  const web: AutoconfigServer[] = []
  const shutdown = async (): Promise<void> => {
    await lanWatch?.stop()
    await removeAdminInfo(dataDir).catch(() => {})
    await Promise.allSettled(web.map(async w => { await w.stop() }))
    await admin?.stop()
    webConsole.stop()
    await node.stop()
  }

  let askRestart: () => void = () => {}
  const restartAsked = new Promise<string>(resolve => { askRestart = () => { resolve('restart') } })
  const { createConsole } = await import('./console/server.ts')
  const webConsole = createConsole({
    directory: node.store,
    status: async () => await node.status(),
    logger: namespaced(logger, 'console'),
    throttle: node.authThrottle,
    setGridState: state => { node.setGridState(state) },
    restart: () => { askRestart() },
    supervised: supervised(options.env),
    forgetMember: async id => await node.forgetMember(id),
    replicationLag: () => metrics.replicationLag(),
    ...(init.grid !== undefined ? { joinKey: init.grid.clusterKey } : {})
  }, { secure: adminTls !== undefined })
  try {
    await node.start()
    admin = createAdminServer(
      { directory: node.store, status: async () => await node.status(), queue: node.queue, logger: namespaced(logger, 'admin'), metrics, console: webConsole.hooks, routes: [...webConsole.routes, ...observeRoutes({ stats: node.stats, alarms: node.alarms, directory: node.store }), ...mailRoutes({ store: node.store, userMail: node.userMail, dataDir }), ...importRoutes(node.store), ...collectRoutes(node.store, node.collectHosts), ...sieveRoutes({ directory: node.store, sieve: node.sieve })] },
      { host: config.admin.host, port: config.admin.port, token: await ensureToken(dataDir), metricsToken: config.metrics.token, ...(adminTls === undefined ? {} : { tls: adminTls }) }
    )
    await admin.start()
    // the services listen for good now: the autoconfig documents name their ports
    const services = (await node.status()).services
    for (const name of WEB_NAMES) {
      const c = config.listen[name]
      if (!c.enabled) continue
      const w = createAutoconfigServer(
        { directory: node.store, services: () => services, logger: namespaced(logger, 'autoconfig') },
        { endpoint: { host: c.host === '' ? config.listen.host : c.host, port: c.port }, hostname, ...(name === 'https' ? { tls } : {}) }
      )
      web.push(w)
      await w.start()
    }
    await writeAdminInfo(dataDir, { url: admin.url, pid: process.pid, ...(adminTls === undefined ? {} : { fingerprint: adminTls.fingerprint }) })
    if (init.grid?.mdns === true) {
      lanWatch = createLanWatch({ logger: namespaced(logger, 'appliance:lan') }, { ownTag: clusterTag(init.grid.clusterKey) })
      await lanWatch.start()
    }
  } catch (err) {
    await shutdown().catch(() => {})
    const e = err as NodeJS.ErrnoException & { address?: string, port?: number }
    if (e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL') {
      return fail(`cannot listen on ${e.address ?? '?'}:${e.port ?? '?'} (${e.code})`)
    }
    if (e.code === 'LEVEL_DATABASE_NOT_OPEN' || e.code === 'LEVEL_LOCKED') return fail(`cannot open the store in ${dataDir}: ${e.message}`)
    log.error({ event: 'start_failed', err }, 'start failed')
    return fail(`start failed: ${e.message}`)
  }
  log.info({ event: 'ready', dataDir, admin: admin.url, autoconfig: web.map(w => w.url), tlsSelfSigned: tls.selfSigned, tlsFingerprint: tls.fingerprint }, 'mailgrid is running')

  const why = options.stopSignal ?? waitForSignal(() => {
    log.warn({ event: 'forced_exit' }, 'second signal while stopping: exiting now')
    process.exit(EXIT_INTERRUPTED)
  })
  const reason = await Promise.race([why, restartAsked])
  log.info({ event: 'stopping', reason: String(reason) }, 'stopping')
  const target: DrainTarget = {
    status: async () => await node.status(),
    ...(typeof node.setGridState === 'function' ? { setGridState: (s: GridState) => { node.setGridState?.(s) } } : {})
  }
  await drain(target, { logger: log, timeoutMs: options.drainTimeoutMs })
  if (init.grid !== undefined) announceLeaving(target, log)
  await shutdown()
  log.info({ event: 'stopped' }, 'stopped')
  return reason === 'restart' ? EXIT_RESTART : 0
}

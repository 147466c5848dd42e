// The operator's configuration: embedded defaults, then an optional TOML file, then MAILGRID_* environment
// variables, then command-line flags, validated once. Every bad value is reported with its path (and the
// variable it came from); unknown keys are warned about, never silently used. The result becomes the node's
// NodeInit, so nothing below the appliance knows where a setting came from.

import { readFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { hostname as systemHostname, networkInterfaces } from 'node:os'
import type { NetworkInterfaceInfo } from 'node:os'
import { resolve } from 'node:path'
import { parse, TomlError } from 'smol-toml'
import type { Level } from 'pino'
import { normalizeAddress, normalizeDomain } from '../store/index.ts'
import type { Endpoint, GridConfig, NodeInit, ServiceName, TlsMaterial } from '../node/types.ts'
import { LOG_LEVELS } from './logger.ts'
import { WORKERS_MAX } from '../node/smtp/workers.ts'
import { CHECK_THREADS_MAX } from '../node/mailauth/threads.ts'

// ---- defaults (issue 2, item 7: unprivileged ports, loopback only, so `npm start` is safe anywhere) --------

export const DATA_DIR_DEFAULT = './data'
export const LISTEN_HOST_DEFAULT = '127.0.0.1'
export const PORTS_DEFAULT: Readonly<Record<ServiceName, number>> = {
  smtp: 2525,
  submission: 2587,
  smtps: 2465,
  pop3: 2110,
  pop3s: 2995,
  imap: 2143,
  imaps: 2993
}
export const ADMIN_PORT_DEFAULT = 8080
// ManageSieve (RFC 5804, node/managesieve): 2419 on `npm start`; the production config gives it 4190, its IANA port
export const MANAGESIEVE_PORT_DEFAULT = 2419
// The public web listeners for client autoconfig (issue 11, item 6): unprivileged like the mail ports on `npm
// start`; the production docs put them on 80 and 443, where Thunderbird, Outlook and Apple devices look.
export const HTTP_PORT_DEFAULT = 2080
export const HTTPS_PORT_DEFAULT = 2443
export type WebName = 'http' | 'https'
export const WEB_NAMES: readonly WebName[] = ['http', 'https']
/** admin.tls: "auto" = TLS unless admin.host is a loopback address; "on" = always; "off" = plain HTTP (loopback only). */
export type AdminTlsMode = 'auto' | 'on' | 'off'
export const ADMIN_TLS_MODES: readonly AdminTlsMode[] = ['auto', 'on', 'off']
export const METRICS_TOKEN_CHARS_MIN = 16 // as for a cluster key: a shorter secret is guessable
export const METRICS_TOKEN_CHARS_MAX = 256
export const SERVICE_NAMES: readonly ServiceName[] = ['smtp', 'submission', 'smtps', 'pop3', 'pop3s', 'imap', 'imaps']

export const MESSAGE_BYTES_MAX = 25 * 1024 * 1024 // 25 MiB: what the large mailbox providers accept, so mail between them fits
export const MESSAGE_BYTES_LIMIT_MAX = 48 * 1024 * 1024 // the highest configurable message size: a message crosses the grid whole in one RPC body (at most 64 MiB, gossip/constants.ts), after up to 16 MiB of others (LOG_BATCH_BYTES_MAX, node/grid/wire.ts); a larger one wedged its user's replication
export const RECIPIENTS_MAX = 100 // RFC 5321 4.5.3.1.8: the minimum number of recipients a server must buffer
export const CONNECTIONS_PER_IP_MAX = 50 // Postfix's smtpd_client_connection_count_limit default
export const CONNECTIONS_MAX = 5000 // all protocols together on one node
export const AUTH_FAILURES_PER_IP_MAX = 10 // within AUTH_WINDOW_SECONDS
export const AUTH_FAILURES_PER_ACCOUNT_MAX = 10 // within AUTH_WINDOW_SECONDS
export const AUTH_WINDOW_SECONDS = 5 * 60 // fail2ban's default findtime
export const SMTP_IDLE_SECONDS = 5 * 60 // RFC 5321 4.5.3.2.7: server timeout of at least 5 minutes
export const POP3_IDLE_SECONDS = 10 * 60 // RFC 1939 3: an autologout timer of at least 10 minutes
const SECONDS_LIMIT_MAX = 24 * 60 * 60 // no configurable timeout or window above one day
const COUNT_LIMIT_MAX = 1_000_000

// The grid (issue 4). 7946 is the port Serf and memberlist gossip on, so firewall rules written for such
// grids fit; the default listen address follows listen.host, so `npm start` stays on loopback.
export const GRID_PORT_DEFAULT = 7946
export const REPLICAS_DEFAULT = 2 // DESIGN.md: R = 2 unless configured
export const REPLICAS_MAX = 5 // issue 4, item 2: R is 1 to 5
export const CLUSTER_KEY_CHARS_MIN = 16 // a configured shared secret shorter than this is guessable
export const CLUSTER_KEY_CHARS_MAX = 1024
export const WEIGHT_MAX = 1000 // gossip's capacityWeight gives ~1 for a 4-core, 8 GiB PC; 1000 of those is plenty
export const MULTIADDRS_MAX = 64 // entries in grid.listen or grid.bootstrap
export const MULTIADDR_CHARS_MAX = 512 // a multiaddr with a /p2p/ peer id is ~100 characters
export const OUTBOUND_PORT_DEFAULT = 25 // RFC 5321 4.5.4: SMTP between MTAs
export const RETRY_MIN_SECONDS_DEFAULT = 300 // issue 10: the first retry after 5 minutes, doubling to an hour
export const DELAY_NOTICE_SECONDS_DEFAULT = 4 * 3600 // Postfix's delay_warning_time when it is turned on
export const BOUNCE_AFTER_SECONDS_DEFAULT = 5 * 24 * 3600 // Postfix's maximal_queue_lifetime
export const DNS_SERVERS_MAX = 8
export const URL_CHARS_MAX = 2048
export const QUEUE_LIFETIME_SECONDS_MAX = 30 * 24 * 3600 // a month: longer than any MTA keeps mail
// Free space the data disk keeps (issue 16, item 3): -1 = the smaller of 1 GiB and 5 % of the data filesystem (store/disk.ts)
export const MIN_FREE_BYTES_DEFAULT = -1
export const MIN_FREE_BYTES_MAX = 2 ** 50 // 1 PiB: above any data disk
// Statistics (issue 11): 5-minute buckets kept 30 days by default (the seeds' figure); a year at most (a file per day)
export const STATS_RETENTION_DAYS_MAX = 366

// ---- the typed configuration ---------------------------------------------------------------------------

export interface ServiceConfig {
  enabled: boolean
  host: string // '' = listen.host
  port: number
}

export interface Config {
  dataDir: string
  hostname: string // '' = the machine's host name
  plaintextAuthOnLoopback: boolean
  workers: number // SMTP worker processes (node/smtp/workers.ts): -1 = one per core but one, 0 = none
  listen: { host: string } & Record<ServiceName, ServiceConfig> & Record<WebName, ServiceConfig> & { managesieve: ServiceConfig }
  admin: Endpoint & { tls: AdminTlsMode }
  metrics: { token: string } // '' = /metrics takes the admin token only
  tls: { cert: string, key: string } // '' and '' = a self-signed certificate kept in DATA/tls
  limits: {
    messageBytesMax: number
    recipientsMax: number
    connectionsPerIpMax: number
    connectionsMax: number
    authFailuresPerIpMax: number
    authFailuresPerAccountMax: number
    authWindowSeconds: number
    smtpIdleSeconds: number
    pop3IdleSeconds: number
  }
  store: {
    sync: boolean
    minFreeBytes: number // below this the node takes no new users or copies and raises an alarm; -1 = the default rule, 0 = off
  }
  log: { level: Level }
  grid: {
    enabled: boolean
    clusterKey: string // '' = DATA/cluster.key, generated at first start
    listen: string[] // [] = /ip4/<listen.host>/tcp/7946
    bootstrap: string[]
    mdns: boolean
    replicas: number
    weight: number // 0 = derived from cores, RAM and free disk
    advertiseHost: string // '' = listen.host, or the first non-internal IPv4 when listen.host is a wildcard
    direct: boolean // RPC between nodes on direct connections keyed over libp2p (gossip/direct.ts)
  }
  outbound: {
    dnsServers: string[] // host[:port] of the resolvers for MX lookups; [] = the system's
    port: number // the SMTP port used on every MX (25; tests point it at their own receiver)
    relay: string // '' = deliver to each domain's MX; 'smtp://user:pass@host:587' = through a smarthost
    retryMinSeconds: number
    delayNoticeSeconds: number
    bounceAfterSeconds: number
  }
  inbound: {
    dmarcReject: boolean // refuse a DMARC failure under p=reject with 550 5.7.1 (else file it into Junk)
    threads: number // threads for SPF/DKIM/DMARC/ARC (node/mailauth/threads.ts): -1 = one per core but one, 0 = main thread
  }
  filters: {
    rspamd: { url: string, failOpen: boolean } // '' = no rspamd
  }
  stats: { retentionDays: number }
  backup: { dir: string, intervalMinutes: number, keyFile: string } // '' or 0: no scheduled backup; keyFile '': not encrypted
  collect: { allowPrivate: boolean } // collection from hosts at private addresses (node/host-policy.ts)
  alarms: {
    mailTo: string // '' = alarms are not mailed
    diskUsedPct: number
    underReplicatedMinutes: number
    queueAgeMinutes: number
    certDays: number
    authFailures: number // failed logins grid-wide within limits.authWindowSeconds
    checkSeconds: number
  }
}

type Value = string | number | boolean | readonly string[]
type Kind =
  | { type: 'int', min: number, max: number }
  | { type: 'number', min: number, max: number }
  | { type: 'multiaddrs' } // a TOML array of strings; comma-separated in the environment
  | { type: 'secret' } // '' or a shared secret of CLUSTER_KEY_CHARS_MIN or more characters
  | { type: 'bool' }
  | { type: 'host', empty: boolean } // an address or name to bind; empty allowed when it inherits
  | { type: 'hostname' } // '' or a DNS name
  | { type: 'path', empty: boolean }
  | { type: 'level' }
  | { type: 'servers' } // a list of 'host' or 'host:port' ('[v6]:port'); comma-separated in the environment
  | { type: 'url', schemes: string[] } // '' or a URL with one of these schemes
  | { type: 'choice', values: readonly string[] } // one of these words
  | { type: 'token' } // '' or a bearer token of METRICS_TOKEN_CHARS_MIN or more URL-safe characters
  | { type: 'address' } // '' or a mail address

interface OptionSpec {
  path: string
  kind: Kind
  default: Value
}

const PORT: Kind = { type: 'int', min: 0, max: 65535 }
const count = (min = 1): Kind => ({ type: 'int', min, max: COUNT_LIMIT_MAX })
const seconds: Kind = { type: 'int', min: 1, max: SECONDS_LIMIT_MAX }

/** Every option, in the order of the sample file. The Config type above mirrors these paths. */
export const OPTIONS: readonly OptionSpec[] = [
  { path: 'dataDir', kind: { type: 'path', empty: false }, default: DATA_DIR_DEFAULT },
  { path: 'hostname', kind: { type: 'hostname' }, default: '' },
  { path: 'plaintextAuthOnLoopback', kind: { type: 'bool' }, default: true },
  { path: 'workers', kind: { type: 'int', min: -1, max: WORKERS_MAX }, default: 0 },
  { path: 'listen.host', kind: { type: 'host', empty: false }, default: LISTEN_HOST_DEFAULT },
  ...SERVICE_NAMES.flatMap((s): OptionSpec[] => [
    { path: `listen.${s}.enabled`, kind: { type: 'bool' }, default: true },
    { path: `listen.${s}.host`, kind: { type: 'host', empty: true }, default: '' },
    { path: `listen.${s}.port`, kind: PORT, default: PORTS_DEFAULT[s] }
  ]),
  ...WEB_NAMES.flatMap((s): OptionSpec[] => [
    { path: `listen.${s}.enabled`, kind: { type: 'bool' }, default: true },
    { path: `listen.${s}.host`, kind: { type: 'host', empty: true }, default: '' },
    { path: `listen.${s}.port`, kind: PORT, default: s === 'http' ? HTTP_PORT_DEFAULT : HTTPS_PORT_DEFAULT }
  ]),
  { path: 'listen.managesieve.enabled', kind: { type: 'bool' }, default: true },
  { path: 'listen.managesieve.host', kind: { type: 'host', empty: true }, default: '' },
  { path: 'listen.managesieve.port', kind: PORT, default: MANAGESIEVE_PORT_DEFAULT },
  { path: 'admin.host', kind: { type: 'host', empty: false }, default: LISTEN_HOST_DEFAULT },
  { path: 'admin.port', kind: PORT, default: ADMIN_PORT_DEFAULT },
  { path: 'admin.tls', kind: { type: 'choice', values: ADMIN_TLS_MODES }, default: 'auto' },
  { path: 'metrics.token', kind: { type: 'token' }, default: '' },
  { path: 'tls.cert', kind: { type: 'path', empty: true }, default: '' },
  { path: 'tls.key', kind: { type: 'path', empty: true }, default: '' },
  { path: 'limits.messageBytesMax', kind: { type: 'int', min: 1024, max: MESSAGE_BYTES_LIMIT_MAX }, default: MESSAGE_BYTES_MAX },
  { path: 'limits.recipientsMax', kind: count(), default: RECIPIENTS_MAX },
  { path: 'limits.connectionsPerIpMax', kind: count(), default: CONNECTIONS_PER_IP_MAX },
  { path: 'limits.connectionsMax', kind: count(), default: CONNECTIONS_MAX },
  { path: 'limits.authFailuresPerIpMax', kind: count(), default: AUTH_FAILURES_PER_IP_MAX },
  { path: 'limits.authFailuresPerAccountMax', kind: count(), default: AUTH_FAILURES_PER_ACCOUNT_MAX },
  { path: 'limits.authWindowSeconds', kind: seconds, default: AUTH_WINDOW_SECONDS },
  { path: 'limits.smtpIdleSeconds', kind: seconds, default: SMTP_IDLE_SECONDS },
  { path: 'limits.pop3IdleSeconds', kind: seconds, default: POP3_IDLE_SECONDS },
  { path: 'store.sync', kind: { type: 'bool' }, default: true },
  { path: 'store.minFreeBytes', kind: { type: 'int', min: -1, max: MIN_FREE_BYTES_MAX }, default: MIN_FREE_BYTES_DEFAULT },
  { path: 'log.level', kind: { type: 'level' }, default: 'info' },
  { path: 'grid.enabled', kind: { type: 'bool' }, default: true },
  { path: 'grid.clusterKey', kind: { type: 'secret' }, default: '' },
  { path: 'grid.listen', kind: { type: 'multiaddrs' }, default: [] },
  { path: 'grid.bootstrap', kind: { type: 'multiaddrs' }, default: [] },
  { path: 'grid.mdns', kind: { type: 'bool' }, default: false },
  { path: 'grid.replicas', kind: { type: 'int', min: 1, max: REPLICAS_MAX }, default: REPLICAS_DEFAULT },
  { path: 'grid.weight', kind: { type: 'number', min: 0, max: WEIGHT_MAX }, default: 0 },
  { path: 'grid.advertiseHost', kind: { type: 'host', empty: true }, default: '' },
  { path: 'grid.direct', kind: { type: 'bool' }, default: true },
  { path: 'outbound.dnsServers', kind: { type: 'servers' }, default: [] },
  { path: 'outbound.port', kind: { type: 'int', min: 1, max: 65535 }, default: OUTBOUND_PORT_DEFAULT },
  { path: 'outbound.relay', kind: { type: 'url', schemes: ['smtp:', 'smtps:'] }, default: '' },
  { path: 'outbound.retryMinSeconds', kind: seconds, default: RETRY_MIN_SECONDS_DEFAULT },
  { path: 'outbound.delayNoticeSeconds', kind: { type: 'int', min: 1, max: QUEUE_LIFETIME_SECONDS_MAX }, default: DELAY_NOTICE_SECONDS_DEFAULT },
  { path: 'outbound.bounceAfterSeconds', kind: { type: 'int', min: 1, max: QUEUE_LIFETIME_SECONDS_MAX }, default: BOUNCE_AFTER_SECONDS_DEFAULT },
  { path: 'inbound.dmarcReject', kind: { type: 'bool' }, default: true },
  { path: 'inbound.threads', kind: { type: 'int', min: -1, max: CHECK_THREADS_MAX }, default: -1 },
  { path: 'filters.rspamd.url', kind: { type: 'url', schemes: ['http:', 'https:'] }, default: '' },
  { path: 'filters.rspamd.failOpen', kind: { type: 'bool' }, default: true },
  { path: 'stats.retentionDays', kind: { type: 'int', min: 1, max: STATS_RETENTION_DAYS_MAX }, default: 30 },
  { path: 'backup.dir', kind: { type: 'path', empty: true }, default: '' },
  { path: 'backup.intervalMinutes', kind: { type: 'int', min: 0, max: 7 * 24 * 60 }, default: 0 },
  { path: 'backup.keyFile', kind: { type: 'path', empty: true }, default: '' },
  { path: 'collect.allowPrivate', kind: { type: 'bool' }, default: false },
  { path: 'alarms.mailTo', kind: { type: 'address' }, default: '' },
  { path: 'alarms.diskUsedPct', kind: { type: 'int', min: 1, max: 100 }, default: 85 },
  { path: 'alarms.underReplicatedMinutes', kind: { type: 'int', min: 1, max: 7 * 24 * 60 }, default: 10 },
  { path: 'alarms.queueAgeMinutes', kind: { type: 'int', min: 1, max: 30 * 24 * 60 }, default: 60 },
  { path: 'alarms.certDays', kind: { type: 'int', min: 1, max: 365 }, default: 14 },
  { path: 'alarms.authFailures', kind: count(), default: 100 },
  { path: 'alarms.checkSeconds', kind: { type: 'int', min: 1, max: 3600 }, default: 10 }
]

/**
 * The environment variable of an option: MAILGRID_ + the key path, camelCase split into words, dots as '_',
 * upper-cased; the per-service tables drop their `listen.` prefix. So `dataDir` → MAILGRID_DATA_DIR,
 * `listen.smtp.port` → MAILGRID_SMTP_PORT, `listen.host` → MAILGRID_LISTEN_HOST,
 * `limits.messageBytesMax` → MAILGRID_LIMITS_MESSAGE_BYTES_MAX.
 */
export function envName (path: string): string {
  let parts = path.split('.')
  if (parts.length === 3 && parts[0] === 'listen') parts = parts.slice(1)
  return 'MAILGRID_' + parts.map(p => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_')
}

/** Variables the program reads that are not options. */
const ENV_NOT_OPTIONS = new Set(['MAILGRID_CONFIG', 'MAILGRID_URL', 'MAILGRID_TOKEN', 'MAILGRID_FINGERPRINT', 'MAILGRID_PROFILE', 'MAILGRID_PROFILES'])

export class ConfigError extends Error {
  readonly problems: string[]
  constructor (problems: string[]) {
    super(problems.length === 1 ? problems[0] : `${problems.length} configuration errors:\n  ${problems.join('\n  ')}`)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

export interface ConfigSources {
  /** TOML text of the config file, if any. */
  toml?: string
  /** The file's name, for messages. */
  file?: string
  env?: Record<string, string | undefined>
  /** Command-line flags, the last word. */
  flags?: { dataDir?: string }
}

export interface ResolvedConfig {
  config: Config
  warnings: string[]
}

function isTable (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date)
}

const OPTION_BY_PATH = new Map(OPTIONS.map(o => [o.path, o]))
const SECTIONS = new Set(OPTIONS.flatMap(o => o.path.split('.').slice(0, -1).map((_, i, a) => a.slice(0, i + 1).join('.'))))

/** Flattens the TOML tables into path → value, warning about keys no option has. */
function flatten (table: Record<string, unknown>, prefix: string, out: Map<string, unknown>, warnings: string[], problems: string[]): void {
  for (const [key, value] of Object.entries(table)) {
    const path = prefix === '' ? key : `${prefix}.${key}`
    if (OPTION_BY_PATH.has(path)) {
      out.set(path, value)
    } else if (SECTIONS.has(path)) {
      if (isTable(value)) flatten(value, path, out, warnings, problems)
      else problems.push(`${path}: must be a table`)
    } else {
      warnings.push(`${path}: unknown key, ignored`)
    }
  }
}

/**
 * Environment strings become numbers, booleans and lists where the option wants one; anything else stays a
 * string. A list is comma-separated (multiaddrs contain no commas); an empty value is the empty list.
 */
function fromEnv (kind: Kind, text: string): unknown {
  if (kind.type === 'int' && /^-?\d+$/.test(text.trim())) return Number(text.trim())
  if (kind.type === 'number' && /^-?\d+(\.\d+)?$/.test(text.trim())) return Number(text.trim())
  if (kind.type === 'multiaddrs' || kind.type === 'servers') return text.split(',').map(s => s.trim()).filter(s => s !== '')
  if (kind.type === 'bool') {
    const t = text.trim().toLowerCase()
    if (t === 'true' || t === '1' || t === 'yes') return true
    if (t === 'false' || t === '0' || t === 'no') return false
  }
  return text
}

function show (v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : isTable(v) ? 'a table' : Array.isArray(v) ? 'an array' : String(v)
}

/** Loose on purpose: libp2p parses the rest at start and names the part it does not know. */
function multiaddrProblem (v: unknown): string | null {
  if (typeof v !== 'string') return 'must be a list of strings'
  if (!v.startsWith('/') || /\s/.test(v) || v.length > MULTIADDR_CHARS_MAX) return `must be multiaddrs such as "/ip4/192.0.2.1/tcp/${GRID_PORT_DEFAULT}"`
  return null
}

/** The reason a value is wrong for its option and the part at fault, or null when it is right. */
function problem (kind: Kind, v: unknown): { why: string, got: unknown } | null {
  if (kind.type === 'multiaddrs' && Array.isArray(v)) {
    if (v.length > MULTIADDRS_MAX) return { why: `must have at most ${MULTIADDRS_MAX} entries`, got: v.length }
    for (const entry of v) {
      const why = multiaddrProblem(entry)
      if (why !== null) return { why, got: entry }
    }
    return null
  }
  if (kind.type === 'servers' && Array.isArray(v)) {
    if (v.length > DNS_SERVERS_MAX) return { why: `must have at most ${DNS_SERVERS_MAX} entries`, got: v.length }
    for (const entry of v) {
      if (serverProblem(entry)) return { why: 'must be a list of "address" or "address:port" (IPv6 as "[address]:port")', got: entry }
    }
    return null
  }
  const why = check(kind, v)
  return why === null ? null : { why, got: v }
}

/** True when a resolver entry is not an IP address with an optional port (node:dns takes these forms). */
function serverProblem (v: unknown): boolean {
  if (typeof v !== 'string') return true
  const m = /^\[([0-9a-fA-F:.]+)\](?::(\d{1,5}))?$/.exec(v) ?? /^([0-9.]+)(?::(\d{1,5}))?$/.exec(v)
  const host = m?.[1] ?? v
  const port = m?.[2]
  if (isIP(host) === 0) return true
  return port !== undefined && (Number(port) < 1 || Number(port) > 65535)
}

/** The reason a value is wrong for its option, or null when it is right. */
function check (kind: Kind, v: unknown): string | null {
  switch (kind.type) {
    case 'number':
      return typeof v === 'number' && Number.isFinite(v) && v >= kind.min && v <= kind.max ? null : `must be a number ${kind.min}-${kind.max}`
    case 'multiaddrs':
      return 'must be a list of strings'
    case 'secret':
      if (typeof v !== 'string') return 'must be a string'
      return v === '' || (v.length >= CLUSTER_KEY_CHARS_MIN && v.length <= CLUSTER_KEY_CHARS_MAX)
        ? null
        : `must be empty (a key is generated) or ${CLUSTER_KEY_CHARS_MIN}-${CLUSTER_KEY_CHARS_MAX} characters`
    case 'int':
      return Number.isSafeInteger(v) && (v as number) >= kind.min && (v as number) <= kind.max
        ? null
        : `must be an integer ${kind.min}-${kind.max}`
    case 'bool':
      return typeof v === 'boolean' ? null : 'must be true or false'
    case 'host':
      if (typeof v !== 'string') return 'must be a string'
      if (v === '' && kind.empty) return null
      return isIP(v) !== 0 || normalizeDomain(v) !== null ? null : 'must be an IP address or a host name'
    case 'hostname':
      if (typeof v !== 'string') return 'must be a string'
      return v === '' || normalizeDomain(v) !== null ? null : 'must be a DNS host name'
    case 'path':
      if (typeof v !== 'string') return 'must be a string'
      if (v.includes('\0')) return 'must not contain NUL'
      return v !== '' || kind.empty ? null : 'must not be empty'
    case 'level':
      return typeof v === 'string' && (LOG_LEVELS as readonly string[]).includes(v) ? null : `must be one of ${LOG_LEVELS.join(', ')}`
    case 'servers':
      return 'must be a list of strings'
    case 'url': {
      if (typeof v !== 'string') return 'must be a string'
      if (v === '') return null
      let u: URL
      try {
        u = new URL(v)
      } catch {
        return `must be empty or a URL such as "${kind.schemes[0]}//host:port"`
      }
      if (v.length > URL_CHARS_MAX || !kind.schemes.includes(u.protocol) || u.hostname === '') return `must be empty or a ${kind.schemes.map(x => x.replace(':', '')).join(' or ')} URL with a host`
      return null
    }
    case 'choice':
      return typeof v === 'string' && kind.values.includes(v) ? null : `must be one of ${kind.values.map(x => JSON.stringify(x)).join(', ')}`
    case 'address':
      if (typeof v !== 'string') return 'must be a string'
      return v === '' || normalizeAddress(v) !== null ? null : 'must be empty or a mail address'
    case 'token':
      if (typeof v !== 'string') return 'must be a string'
      return v === '' || new RegExp(`^[A-Za-z0-9._~+/=-]{${METRICS_TOKEN_CHARS_MIN},${METRICS_TOKEN_CHARS_MAX}}$`).test(v)
        ? null
        : `must be empty or ${METRICS_TOKEN_CHARS_MIN}-${METRICS_TOKEN_CHARS_MAX} characters of A-Z a-z 0-9 . _ ~ + / = -`
  }
}

function setPath (root: Record<string, any>, path: string, value: unknown): void {
  const parts = path.split('.')
  let t = root
  for (const p of parts.slice(0, -1)) t = (t[p] ??= {})
  t[parts[parts.length - 1]] = value
}

function build (values: Map<string, unknown>): Config {
  const root: Record<string, any> = {}
  for (const o of OPTIONS) {
    const v = values.get(o.path) ?? o.default
    setPath(root, o.path, Array.isArray(v) ? [...v] : v) // each Config owns its lists
  }
  return root as Config
}

export const DEFAULT_CONFIG: Config = build(new Map())

const WILDCARDS = new Set(['0.0.0.0', '::'])

/** 127.0.0.0/8, ::1 (and its IPv4-mapped forms) or the name localhost: an address only this machine reaches. */
export function isLoopbackHost (host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '')
  if (h === 'localhost' || h === '::1') return true
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h
  return isIP(v4) === 4 && v4.startsWith('127.')
}

/** Whether the admin listener speaks TLS: always but on loopback with admin.tls "auto", as configured otherwise. */
export function adminUsesTls (admin: Config['admin']): boolean {
  return admin.tls === 'on' || (admin.tls === 'auto' && !isLoopbackHost(admin.host))
}

/** The multiaddr for host:port, or null for a host name (libp2p's TCP transport listens on addresses only). */
function tcpMultiaddr (host: string, port: number): string | null {
  const ip = host === 'localhost' ? '127.0.0.1' : host
  const v = isIP(ip)
  return v === 0 ? null : `/ip${v}/${ip}/tcp/${port}`
}

/** grid.listen as configured, or derived from listen.host: the grid listens where the mail services do. */
export function gridListen (config: Config): string[] {
  if (config.grid.listen.length > 0) return [...config.grid.listen]
  const derived = tcpMultiaddr(config.listen.host, GRID_PORT_DEFAULT)
  return derived === null ? [] : [derived]
}

/** host and port of an /ip4|ip6/HOST/tcp/PORT multiaddr, for the port clash check; null for any other form. */
function tcpEndpoint (addr: string): { host: string, port: number } | null {
  const m = /^\/ip[46]\/([^/]+)\/tcp\/(\d+)(\/|$)/.exec(addr)
  return m === null ? null : { host: m[1], port: Number(m[2]) }
}

/** The first non-internal IPv4 address of this machine, or null (a machine on no network). */
export function firstExternalIpv4 (interfaces: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces()): string | null {
  for (const list of Object.values(interfaces)) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address
  }
  return null
}

/** grid.advertiseHost, or the address other nodes and clients reach this one on. */
export function advertiseHost (config: Config, interfaces?: NodeJS.Dict<NetworkInterfaceInfo[]>): string {
  if (config.grid.advertiseHost !== '') return config.grid.advertiseHost
  if (!WILDCARDS.has(config.listen.host)) return config.listen.host
  return firstExternalIpv4(interfaces) ?? LISTEN_HOST_DEFAULT
}

/** Two listeners on one port collide when their hosts are equal or one of them is a wildcard. */
function portClashes (config: Config): string[] {
  const problems: string[] = []
  const seen: Array<{ path: string, host: string, port: number }> = []
  const listeners = [
    ...SERVICE_NAMES.filter(s => config.listen[s].enabled).map(s => ({
      path: `listen.${s}`, host: config.listen[s].host === '' ? config.listen.host : config.listen[s].host, port: config.listen[s].port
    })),
    ...WEB_NAMES.filter(s => config.listen[s].enabled).map(s => ({
      path: `listen.${s}`, host: config.listen[s].host === '' ? config.listen.host : config.listen[s].host, port: config.listen[s].port
    })),
    ...(config.listen.managesieve.enabled ? [{ path: 'listen.managesieve', host: config.listen.managesieve.host === '' ? config.listen.host : config.listen.managesieve.host, port: config.listen.managesieve.port }] : []),
    { path: 'admin', host: config.admin.host, port: config.admin.port },
    ...(config.grid.enabled ? gridListen(config) : []).flatMap(a => {
      const e = tcpEndpoint(a)
      return e === null ? [] : [{ path: 'grid.listen', ...e }]
    })
  ]
  for (const l of listeners) {
    if (l.port === 0) continue
    const other = seen.find(s => s.port === l.port && (s.host === l.host || WILDCARDS.has(s.host) || WILDCARDS.has(l.host)))
    if (other !== undefined) problems.push(`${l.path}.port: ${l.port} is already used by ${other.path}`)
    seen.push(l)
  }
  return problems
}

/** Merges and validates the sources; throws ConfigError listing every problem. */
export function resolveConfig (sources: ConfigSources = {}): ResolvedConfig {
  const warnings: string[] = []
  const problems: string[] = []
  const values = new Map<string, unknown>()
  const origin = new Map<string, string>()
  const where = sources.file ?? 'config'

  if (sources.toml !== undefined) {
    try {
      flatten(parse(sources.toml), '', values, warnings, problems)
    } catch (err) {
      if (!(err instanceof TomlError)) throw err
      throw new ConfigError([`${where}: line ${err.line}, column ${err.column}: ${err.message.split('\n')[0]}`])
    }
  }

  const env = sources.env ?? {}
  for (const o of OPTIONS) {
    const name = envName(o.path)
    const text = env[name]
    if (text === undefined) continue
    values.set(o.path, fromEnv(o.kind, text))
    origin.set(o.path, name)
  }
  const known = new Set(OPTIONS.map(o => envName(o.path)))
  for (const name of Object.keys(env)) {
    if (name.startsWith('MAILGRID_') && !known.has(name) && !ENV_NOT_OPTIONS.has(name)) warnings.push(`${name}: unknown environment variable, ignored`)
  }

  if (sources.flags?.dataDir !== undefined) {
    values.set('dataDir', sources.flags.dataDir)
    origin.set('dataDir', '--data')
  }

  for (const o of OPTIONS) {
    if (!values.has(o.path)) continue
    const p = problem(o.kind, values.get(o.path))
    if (p === null) continue
    const from = origin.get(o.path)
    // A secret is never echoed back, not even a wrong one.
    const got = o.kind.type === 'secret' && typeof p.got === 'string' ? `${p.got.length} characters` : show(p.got)
    problems.push(`${o.path}${from === undefined ? '' : ` (from ${from})`}: ${p.why} (got ${got})`)
  }
  if (problems.length > 0) throw new ConfigError(problems)

  const config = build(values)
  if ((config.tls.cert === '') !== (config.tls.key === '')) {
    problems.push(config.tls.cert === '' ? 'tls.cert: must be set together with tls.key' : 'tls.key: must be set together with tls.cert')
  }
  if (config.admin.tls === 'off' && !isLoopbackHost(config.admin.host)) {
    problems.push(`admin.tls: "off" (plain HTTP) is allowed only when admin.host is a loopback address (got admin.host ${JSON.stringify(config.admin.host)}): the token would cross the network in clear`)
  }
  if (config.grid.enabled && config.grid.listen.length === 0 && gridListen(config).length === 0) {
    problems.push(`grid.listen: must be set when listen.host is a host name (${JSON.stringify(config.listen.host)})`)
  }
  problems.push(...portClashes(config))
  if (problems.length > 0) throw new ConfigError(problems)
  return { config, warnings }
}

export interface LoadConfigOptions {
  /** --config FILE; else env.MAILGRID_CONFIG; else no file. */
  file?: string
  env?: Record<string, string | undefined>
  flags?: { dataDir?: string }
}

/** Reads the config file (if one is named) and resolves it with the environment and flags. */
export async function loadConfig (options: LoadConfigOptions = {}): Promise<ResolvedConfig> {
  const env = options.env ?? process.env
  const file = options.file ?? (env.MAILGRID_CONFIG === '' ? undefined : env.MAILGRID_CONFIG)
  let toml: string | undefined
  if (file !== undefined) {
    try {
      toml = await readFile(file, 'utf8')
    } catch (err) {
      throw new ConfigError([`${file}: cannot read the config file (${(err as NodeJS.ErrnoException).code ?? String(err)})`])
    }
  }
  return resolveConfig({ toml, file, env, flags: options.flags })
}

export interface MachineFacts {
  /** The key from DATA/cluster.key, used when grid.clusterKey is empty. */
  clusterKey?: string
  /** os.networkInterfaces(), replaced in tests. */
  interfaces?: NodeJS.Dict<NetworkInterfaceInfo[]>
}

/** The machine-independent config turned into what the node runs with. */
export function toNodeInit (config: Config, tls: TlsMaterial, machineHostname: string = systemHostname(), machine: MachineFacts = {}): NodeInit {
  const listen = {} as NodeInit['listen']
  for (const s of SERVICE_NAMES) {
    const c = config.listen[s]
    listen[s] = c.enabled ? { host: c.host === '' ? config.listen.host : c.host, port: c.port } : null
  }
  const ms = config.listen.managesieve
  listen.managesieve = ms.enabled ? { host: ms.host === '' ? config.listen.host : ms.host, port: ms.port } : null
  const l = config.limits
  return {
    dataDir: resolve(config.dataDir),
    hostname: config.hostname === '' ? machineHostname : config.hostname,
    listen,
    tls,
    plaintextAuthOnLoopback: config.plaintextAuthOnLoopback,
    workers: config.workers,
    limits: {
      messageBytesMax: l.messageBytesMax,
      recipientsMax: l.recipientsMax,
      connectionsPerIpMax: l.connectionsPerIpMax,
      connectionsMax: l.connectionsMax,
      authFailuresPerIpMax: l.authFailuresPerIpMax,
      authFailuresPerAccountMax: l.authFailuresPerAccountMax,
      authWindowMs: l.authWindowSeconds * 1000,
      idleTimeoutMs: l.smtpIdleSeconds * 1000,
      pop3IdleTimeoutMs: l.pop3IdleSeconds * 1000
    },
    sync: config.store.sync,
    minFreeBytes: config.store.minFreeBytes,
    outbound: {
      dnsServers: [...config.outbound.dnsServers],
      port: config.outbound.port,
      relay: config.outbound.relay,
      retryMinMs: config.outbound.retryMinSeconds * 1000,
      delayNoticeMs: config.outbound.delayNoticeSeconds * 1000,
      bounceAfterMs: config.outbound.bounceAfterSeconds * 1000
    },
    inbound: { dmarcReject: config.inbound.dmarcReject, threads: config.inbound.threads },
    filters: { rspamd: { ...config.filters.rspamd } },
    stats: { retentionDays: config.stats.retentionDays },
    ...(config.backup.dir !== '' && config.backup.intervalMinutes > 0 ? { backup: { dir: config.backup.dir, intervalMinutes: config.backup.intervalMinutes, ...(config.backup.keyFile !== '' ? { keyFile: config.backup.keyFile } : {}) } } : {}),
    collect: { allowPrivate: config.collect.allowPrivate },
    alarms: {
      mailTo: config.alarms.mailTo,
      diskUsedPct: config.alarms.diskUsedPct,
      underReplicatedMs: config.alarms.underReplicatedMinutes * 60_000,
      queueAgeMs: config.alarms.queueAgeMinutes * 60_000,
      certDays: config.alarms.certDays,
      authFailures: config.alarms.authFailures,
      checkMs: config.alarms.checkSeconds * 1000
    },
    ...(config.grid.enabled ? { grid: toGridConfig(config, machine) } : {})
  }
}

function toGridConfig (config: Config, machine: MachineFacts): GridConfig {
  const g = config.grid
  const clusterKey = g.clusterKey !== '' ? g.clusterKey : machine.clusterKey ?? ''
  if (clusterKey === '') throw new Error('the grid needs a cluster key: grid.clusterKey or DATA/cluster.key')
  return {
    clusterKey,
    listen: gridListen(config),
    bootstrap: [...g.bootstrap],
    mdns: g.mdns,
    replicas: g.replicas,
    weight: g.weight,
    advertiseHost: advertiseHost(config, machine.interfaces),
    direct: g.direct
  }
}

// The face of node/: what the appliance (config, CLI, admin API) needs to run a mail node. The node knows
// nothing of how it was configured or installed; it gets a fully resolved NodeInit.

import type { Logger } from 'pino'
import type { Store } from '../store/index.ts'

export interface Endpoint {
  host: string // '127.0.0.1' by default; '0.0.0.0' or '::' to listen on the network
  port: number // 0 = ephemeral (tests)
}

export type ServiceName = 'smtp' | 'submission' | 'smtps' | 'pop3' | 'pop3s' | 'imap' | 'imaps'

export interface TlsMaterial {
  key: string | Buffer
  cert: string | Buffer
}

export interface NodeLimits {
  messageBytesMax: number // SMTP SIZE and APPEND limit
  recipientsMax: number // per SMTP transaction
  connectionsPerIpMax: number
  connectionsMax: number
  authFailuresPerIpMax: number
  authFailuresPerAccountMax: number
  authWindowMs: number
  idleTimeoutMs: number // SMTP (RFC 5321 4.5.3.2.7: 5 minutes); IMAP has its own 30-minute autologout floor
  pop3IdleTimeoutMs: number // RFC 1939 3: at least 10 minutes
}

export interface GridConfig {
  /** The grid's shared secret: nodes with another key cannot connect. */
  clusterKey: string
  /** libp2p listen multiaddrs, e.g. '/ip4/0.0.0.0/tcp/7946'. */
  listen: string[]
  /** Multiaddrs of nodes to dial at start (a static bootstrap list). */
  bootstrap: string[]
  /** Find nodes with the same key on the LAN by multicast DNS. */
  mdns: boolean
  /** R: copies of each user's mail (1 to 5). */
  replicas: number
  /** Capacity share; 0 = derived from cores, RAM and free disk. */
  weight: number
  /** The address other nodes and clients reach this node's mail services on. */
  advertiseHost: string
  /** RPC between nodes moves to direct connections keyed over libp2p (gossip/direct.ts); default true. */
  direct?: boolean
  /** Failure detector: a member silent this long is dead (ms). */
  deadAfterMs?: number
  heartbeatMs?: number
}

/** Mail for other domains (node/outbound). */
export interface OutboundInit {
  /** Resolvers ('host' or 'host:port') for MX, A and AAAA lookups; [] = the system's. */
  dnsServers: string[]
  /** The SMTP port used on every MX: 25, except in tests. */
  port: number
  /** '' = deliver to each domain's MX; 'smtp://user:pass@host:587' or 'smtps://...' = through this smarthost. */
  relay: string
  retryMinMs: number // first retry; doubles each time up to RETRY_MAX_MS
  delayNoticeMs: number // the sender is told of the delay after this long
  bounceAfterMs: number // undelivered after this long: bounced
}

export interface InboundInit {
  /** DMARC failure under p=reject: refused (true) or filed into Junk. */
  dmarcReject: boolean
  /** Threads the checks run on (node/mailauth/threads.ts): -1 = one per core but one (none on one core), 0 = in the
   *  node's main thread; absent: 0. */
  threads?: number
}

export interface FiltersInit {
  /** rspamd's HTTP URL ('' = none); failOpen: accept when it cannot be reached. */
  rspamd: { url: string, failOpen: boolean }
}

export interface NodeInit {
  dataDir: string
  hostname: string // the name in greetings and Received headers
  listen: Record<ServiceName, Endpoint | null> & { managesieve?: Endpoint | null } // null = service off (ManageSieve: also absent)
  tls: TlsMaterial
  /** Let clients authenticate without TLS when they connect from a loopback address (development, tests). */
  plaintextAuthOnLoopback: boolean
  limits: NodeLimits
  /** fsync every commit; only benchmarks that say so turn it off. */
  sync: boolean
  /**
   * Free space the data disk must keep (store.minFreeBytes): below it the node takes no new users or copies and
   * raises an alarm. Negative or absent: the smaller of 1 GiB and 5 % of the data filesystem; 0: off.
   */
  minFreeBytes?: number
  /** How often free space is checked (ms); default store/disk.ts DISK_CHECK_MS. */
  diskCheckMs?: number
  scryptLogN?: number
  /** Join a grid; absent = a standalone node with no peers. */
  grid?: GridConfig
  /** Absent: the defaults (direct delivery on port 25, system resolvers, 5 min / 4 h / 5 days). */
  outbound?: OutboundInit
  inbound?: InboundInit
  filters?: FiltersInit
  /** Statistics (node/stats): 5-minute buckets kept this many days in DATA/stats; absent: 30. */
  stats?: { retentionDays: number }
  /**
   * Scheduled backup (node/backup): into `dir` every `intervalMinutes` (0: off), by one node of the grid at a time;
   * sealed with the 32-byte key in `keyFile` when given (node/backup/crypto.ts).
   */
  backup?: { dir: string, intervalMinutes: number, keyFile?: string }
  /** How often mail collection (node/collect) looks for due accounts (ms); COLLECT_TICK_MS when absent (tests: shorter). */
  collectTickMs?: number
  /**
   * Hosts mail collection may connect to (node/host-policy.ts): private ranges only with allowPrivate (the appliance's
   * collect.allowPrivate); allowLoopback is for tests (their Dovecot listens on loopback) and no config key sets it.
   * Absent: neither.
   */
  collect?: { allowPrivate: boolean, allowLoopback?: boolean }
  /** Alarms (node/alarms): thresholds and where to mail them; absent: the defaults, no mail. */
  alarms?: AlarmsConfig
  /** SMTP worker processes (node/smtp/workers.ts): -1 = one per core but one, 0 or absent = none (SMTP in this process). */
  workers?: number
}

/** The alarms' thresholds (the appliance's alarms.* keys). */
export interface AlarmsConfig {
  mailTo: string // '' = no mail
  diskUsedPct: number // default 85
  underReplicatedMs: number // default 10 minutes
  queueAgeMs: number // default 1 hour
  certDays: number // default 14
  authFailures: number // failed logins grid-wide within limits.authWindowMs; default 100
  checkMs?: number // default node/alarms ALARM_CHECK_MS
}

/**
 * The counters a node reports (the appliance turns them into Prometheus metrics; node/ knows nothing of
 * prom-client). `label` is the protocol (smtp, submission, imap, pop3) or, for outbound deliveries, the outcome
 * (sent, failed, deferred). Called on hot paths: an implementation only increments a counter.
 */
export type NodeCounter =
  | 'connections' // accepted connections
  | 'commands' // protocol commands read
  | 'errors' // commands answered with a failure (SMTP 4xx/5xx, IMAP NO/BAD, POP3 -ERR)
  | 'logins' // successful authentications
  | 'loginFailures' // refused or throttled authentications
  | 'deliveriesIn' // message copies stored for local users, by the SMTP listener that took them
  | 'bytesIn' // message bytes those listeners took
  | 'deliveriesOut' // outbound recipients, by outcome
  | 'bytesOut' // message bytes delivered to other domains

/** Durations the node reports, labelled by protocol. */
export type NodeHistogram =
  | 'commandSeconds' // from a command read to its reply written (SMTP, IMAP, POP3; IDLE, AUTHENTICATE and AUTH, which wait for the client, left out)
  | 'commitSeconds' // a group commit made durable: blob fsync and synced LevelDB write (label: 'store')
  | 'replicationSeconds' // a write made durable on every other alive replica, from the primary's log (label: 'replicas')

export interface NodeMetrics {
  inc (name: NodeCounter, label: string, value?: number): void
  observe (name: NodeHistogram, label: string, seconds: number): void
}

export interface NodeComponents {
  logger: Logger
  now?: () => number
  /** Where the node counts what it does; absent: nothing is counted. */
  metrics?: NodeMetrics
}

export interface ServiceStatus {
  name: ServiceName | 'managesieve'
  host: string
  port: number
}

export interface NodeStatus {
  hostname: string
  startedAt: number
  uptimeMs: number
  services: ServiceStatus[]
  connections: number
  users: number
  domains: number
  /** combinedBatches / combinedWrites: deliveries built into one batch with others of their user (store/mail.ts writeCombined). */
  store: { commitGroups: number, commitBatches: number, combinedBatches?: number, combinedWrites?: number }
  memory: { rssBytes: number, heapUsedBytes: number }
  /** The data disk: free and total bytes at the last check, the floor (0: off), and whether it is below it since when. */
  disk?: import('../store/index.ts').DiskState
  grid: import('./grid/index.ts').GridStatus | null
  /** Messages waiting for delivery to other domains: this node's shards and the whole grid's. */
  queue: { local: import('./outbound/types.ts').QueueStats, grid: import('./outbound/types.ts').QueueStats }
}

export interface MailNode {
  readonly store: Store
  /** One user's mail at its primary, for import, export, backup and restore (node/migrate/user-mail.ts). */
  readonly userMail: import('./migrate/user-mail.ts').UserMail
  /** Users' Sieve scripts, run at each user's primary (node/managesieve/service.ts). */
  readonly sieve: import('./managesieve/service.ts').SieveService
  /** The outbound queue, grid-wide (node/outbound). */
  readonly queue: import('./outbound/types.ts').OutboundQueue
  /** The node's login failure counts (grid-wide on a grid: node/auth-grid.ts), for other logins to share (the console's). */
  readonly authThrottle: import('./limits.ts').Throttle
  /** Statistics per user, domain and grid (node/stats). */
  readonly stats: import('./stats/index.ts').Stats
  /** Process ids of the SMTP worker processes running now (node/smtp/workers.ts); empty when SMTP runs in this process. */
  readonly smtpWorkerPids: number[]
  /** Alarms, this node's and gathered grid-wide (node/alarms). */
  readonly alarms: import('./alarms/index.ts').Alarms
  /** Which hosts mail collection may connect to (node/host-policy.ts), for the admin API to check an account when added. */
  readonly collectHosts: import('./host-policy.ts').HostPolicy
  start (): Promise<void>
  /** Stops every listener and session, then the store; safe to call twice. */
  stop (): Promise<void>
  status (): Promise<NodeStatus>
  /** Draining: this node's users move to the others (it stays a catch-up source); alive: back in the ring. */
  setGridState (state: 'alive' | 'draining' | 'leaving'): void
  /** Drops a dead member from this node's view for good (gossip forget); false when it is not dead here or off a grid. */
  forgetMember (id: string): Promise<boolean>
  /** Test hook (partition tests): refuse every connection to and from these peers; [] heals. No-op off a grid. */
  block (peers: string[]): void
}

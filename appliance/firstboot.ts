// `mailgrid firstboot`: turns a freshly booted appliance into a node. The answers (host name, mail domain,
// admin password, create a new grid or join one) come from the console wizard (wizard.ts) or, unattended,
// from a seed file (`--seed FILE`, a TOML with the same answers). It then writes the config (the image's
// production config with the host name filled in), the cluster key (DATA/cluster.key, owner-only), the node's
// libp2p identity and TLS certificate, and — for a new grid — the mail domain with its admin account and the
// postmaster and abuse aliases (RFC 5321 4.5.1, RFC 2142); a joining node gets the directory from the grid.
// It ends by printing the node's address, the admin console URL and, for a new grid, the cluster key as
// text and QR code. A second run refuses (DATA/firstboot.json says it ran) unless --force.

import { mkdir, readFile, rm } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { parse, TomlError } from 'smol-toml'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { loadOrCreatePeerKey, writeFileDurable } from '../gossip/index.ts'
import { isMailError, normalizeDomain } from '../store/index.ts'
import { createDkimKey, selectorFor } from '../node/mailauth/index.ts'
import { adminUsesTls, advertiseHost, CLUSTER_KEY_CHARS_MAX, CLUSTER_KEY_CHARS_MIN, ConfigError, resolveConfig } from './config.ts'
import type { Config } from './config.ts'
import { CLUSTER_KEY_FILE, newSecret, processAlive, readAdminInfo, TOKEN_FILE } from './runtime.ts'
import { loadTls } from './tls.ts'
import { authorizedKeysText, checkSshKey, SSH_KEYS_NAME } from './ssh.ts'

export const CONFIG_FILE_DEFAULT = '/etc/mailgrid/mailgrid.toml'
export const TEMPLATE_FILE = new URL('./system/mailgrid.toml', import.meta.url).pathname
export const MARKER_FILE = 'firstboot.json'
export const SEED_BYTES_MAX = 64 * 1024 // a seed is a handful of lines; anything bigger is not one
export const PASSWORD_CHARS_MIN = 10 // NIST SP 800-63B 5.1.1.2 asks for at least 8; an admin gets a little more
export const PASSWORD_CHARS_MAX = 1024
export const TOKEN_CHARS_MIN = 32 // as hard to guess as the generated one (32 random bytes, base64url: 43)
export const TOKEN_CHARS_MAX = 256
const ADMIN_LOCAL_PART = 'admin'
const ROLE_ALIASES = ['postmaster', 'abuse'] // RFC 5321 4.5.1 requires postmaster; RFC 2142 names abuse

export type GridMode = 'create' | 'join'

export interface Answers {
  hostname: string
  mode: GridMode
  /** create: optional (generated when absent); join: the grid's key. */
  clusterKey?: string
  /** create only: the mail domain and the admin account's password. */
  domain?: string
  adminPassword?: string
  /** The admin API token to use instead of a generated one (an unattended installer that must call the API). */
  adminToken?: string
  /** An SSH public key for root on the appliance (ssh.ts): written beside the config; sshd runs only with one. */
  sshKey?: string
}

export class FirstbootError extends Error {}

// ---- validation, shared by the wizard and the seed ---------------------------------------------------------

export function checkHostname (v: string): string | null {
  return normalizeDomain(v) !== null && v.includes('.') ? null : 'a host name such as mx1.example.com'
}
export function checkDomain (v: string): string | null {
  return normalizeDomain(v) !== null && v.includes('.') ? null : 'a mail domain such as example.com'
}
export function checkPassword (v: string): string | null {
  return v.length >= PASSWORD_CHARS_MIN && v.length <= PASSWORD_CHARS_MAX ? null : `${PASSWORD_CHARS_MIN} to ${PASSWORD_CHARS_MAX} characters`
}
export function checkClusterKey (v: string): string | null {
  return v.length >= CLUSTER_KEY_CHARS_MIN && v.length <= CLUSTER_KEY_CHARS_MAX && !/\s/.test(v)
    ? null
    : `${CLUSTER_KEY_CHARS_MIN} to ${CLUSTER_KEY_CHARS_MAX} characters without spaces (the key another node printed)`
}
function checkToken (v: string): string | null {
  return new RegExp(`^[A-Za-z0-9_-]{${TOKEN_CHARS_MIN},${TOKEN_CHARS_MAX}}$`).test(v) ? null : `${TOKEN_CHARS_MIN} to ${TOKEN_CHARS_MAX} characters of A-Z a-z 0-9 _ -`
}

const SEED_KEYS: Record<string, (v: string) => string | null> = {
  hostname: checkHostname,
  grid: v => v === 'create' || v === 'join' ? null : '"create" or "join"',
  clusterKey: checkClusterKey,
  domain: checkDomain,
  adminPassword: checkPassword,
  adminToken: checkToken,
  sshKey: checkSshKey
}

/** A seed's answers; every problem is reported at once, with its key (a secret's value never is). */
export function parseSeed (text: string, file = 'seed'): Answers {
  let table: Record<string, unknown>
  try {
    table = parse(text)
  } catch (err) {
    if (err instanceof TomlError) throw new FirstbootError(`${file}: line ${err.line}, column ${err.column}: ${err.message.split('\n')[0]}`)
    throw err
  }
  const problems: string[] = []
  const v: Record<string, string> = {}
  for (const [key, value] of Object.entries(table)) {
    const check = SEED_KEYS[key]
    if (check === undefined) { problems.push(`${key}: unknown key (known: ${Object.keys(SEED_KEYS).join(', ')})`); continue }
    if (typeof value !== 'string') { problems.push(`${key}: must be a string`); continue }
    const why = check(value)
    if (why !== null) problems.push(`${key}: must be ${why}`)
    else v[key] = value
  }
  const mode = v.grid as GridMode | undefined
  for (const k of ['hostname', 'grid']) if (table[k] === undefined) problems.push(`${k}: missing`)
  if (mode === 'create') for (const k of ['domain', 'adminPassword']) if (table[k] === undefined) problems.push(`${k}: missing (a new grid needs it)`)
  if (mode === 'join' && table.clusterKey === undefined) problems.push('clusterKey: missing (joining needs the grid\'s key)')
  if (mode === 'join') for (const k of ['domain', 'adminPassword']) if (table[k] !== undefined) problems.push(`${k}: only for grid = "create" (a joining node gets the grid's directory)`)
  if (problems.length > 0) throw new FirstbootError(`${file}: ${problems.join(`\n${file}: `)}`)
  const answers: Answers = { hostname: v.hostname, mode: mode as GridMode, clusterKey: v.clusterKey, domain: v.domain, adminPassword: v.adminPassword, adminToken: v.adminToken }
  if (v.sshKey !== undefined) answers.sshKey = v.sshKey
  return answers
}

// ---- doing it ----------------------------------------------------------------------------------------------

export interface FirstbootPaths {
  /** The config to write; its current content (or the production template) is the base. */
  configFile: string
  /** --data: wins over the config's dataDir. */
  dataDir?: string
}

export interface FirstbootResult {
  dataDir: string
  configFile: string
  peerId: string
  clusterKey: string
  generatedKey: boolean
  address: string
  adminUrl: string
  tlsFingerprint: string
  adminAccount: string | null
  /** The web console's first admin account (same password as the admin mailbox), when this run made a grid. */
  consoleAdmin: string | null
}

async function readText (path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
}


/** The config text with its top-level `hostname` set (comments and everything else kept as they are). */
export function withHostname (toml: string, hostname: string): string {
  const line = `hostname = ${JSON.stringify(hostname)}`
  const top = toml.search(/^\s*\[/m) // top-level keys come before the first table
  const head = top === -1 ? toml : toml.slice(0, top)
  const rest = top === -1 ? '' : toml.slice(top)
  return /^hostname\s*=.*$/m.test(head) ? head.replace(/^hostname\s*=.*$/m, line) + rest : `${line}\n${head}${rest}`
}

/** What must hold before anything is written; returns the resolved config and data dir. */
export async function preflight (paths: FirstbootPaths, force: boolean): Promise<{ base: string, config: Config, dataDir: string }> {
  const base = await readText(paths.configFile) ?? await readFile(TEMPLATE_FILE, 'utf8')
  let config: Config
  try {
    config = resolveConfig({ toml: base, file: paths.configFile, flags: { dataDir: paths.dataDir } }).config
  } catch (err) {
    if (err instanceof ConfigError) throw new FirstbootError(err.problems.join('\n'))
    throw err
  }
  const dataDir = resolve(config.dataDir)
  const done = await readText(join(dataDir, MARKER_FILE))
  if (done !== null && !force) {
    throw new FirstbootError(`first boot already ran on ${dataDir} (${join(dataDir, MARKER_FILE)}); use --force to run it again`)
  }
  const running = await readAdminInfo(dataDir)
  if (running !== null && processAlive(running.pid)) throw new FirstbootError(`a node runs on ${dataDir} (pid ${running.pid}): stop it first`)
  return { base, config, dataDir }
}

export async function firstboot (paths: FirstbootPaths, answers: Answers, force: boolean): Promise<FirstbootResult> {
  const { base, dataDir } = await preflight(paths, force)
  const toml = withHostname(base, answers.hostname)
  const { config } = resolveConfig({ toml, file: paths.configFile, flags: { dataDir: paths.dataDir } })

  await mkdir(dataDir, { recursive: true, mode: 0o750 })
  const generatedKey = answers.clusterKey === undefined
  const clusterKey = answers.clusterKey ?? newSecret(32)
  await writeFileDurable(join(dataDir, CLUSTER_KEY_FILE), clusterKey + '\n', 0o600)
  if (answers.adminToken !== undefined) await writeFileDurable(join(dataDir, TOKEN_FILE), answers.adminToken + '\n', 0o600)
  else if (await readText(join(dataDir, TOKEN_FILE)) === null) await writeFileDurable(join(dataDir, TOKEN_FILE), newSecret(32) + '\n', 0o600)

  // The same places `mailgrid start` looks: the node's grid identity in DATA/grid, the certificate in DATA/tls.
  const peerId = peerIdFromPrivateKey(loadOrCreatePeerKey(join(dataDir, 'grid'))).toString()
  const tls = await loadTls({ dataDir, hostname: answers.hostname })

  let adminAccount: string | null = null
  if (answers.mode === 'create' && answers.domain !== undefined && answers.adminPassword !== undefined) {
    adminAccount = await createDomain(dataDir, config.store.sync, answers.domain, answers.adminPassword)
  }
  // Root's SSH key on the appliance, beside the config (saved on the data disk with it); sshd starts only with it.
  // A run without one (--force again) leaves none: "SSH stays off" must hold.
  const sshKeys = join(dirname(paths.configFile), SSH_KEYS_NAME)
  if (answers.sshKey !== undefined) await writeFileDurable(sshKeys, authorizedKeysText([answers.sshKey]), 0o644)
  else await rm(sshKeys, { force: true })
  // The config last: a run that failed above left the image's config as it was.
  await writeFileDurable(paths.configFile, toml, 0o644)

  const address = advertiseHost(config)
  const adminHost = config.admin.host === '0.0.0.0' || config.admin.host === '::' ? address : config.admin.host
  const result: FirstbootResult = {
    dataDir,
    configFile: paths.configFile,
    peerId,
    clusterKey,
    generatedKey,
    address,
    // HTTPS with the node's certificate (the fingerprint below) wherever the admin API is not on loopback
    adminUrl: `${adminUsesTls(config.admin) ? 'https' : 'http'}://${adminHost.includes(':') ? `[${adminHost}]` : adminHost}:${config.admin.port}`,
    tlsFingerprint: tls.fingerprint,
    adminAccount,
    consoleAdmin: adminAccount === null ? null : CONSOLE_ADMIN
  }
  const marker = { at: new Date().toISOString(), hostname: answers.hostname, mode: answers.mode, domain: answers.domain ?? null, peerId }
  await writeFileDurable(join(dataDir, MARKER_FILE), JSON.stringify(marker, null, 2) + '\n', 0o644)
  return result
}

/** The name of the console account first boot makes. */
export const CONSOLE_ADMIN = 'admin'

/** The domain, admin@domain with the password, and the role aliases to it; what exists already is kept. */
async function createDomain (dataDir: string, sync: boolean, domain: string, password: string): Promise<string> {
  const { createStore } = await import('../store/index.ts')
  const store = createStore({}, { path: dataDir, sync })
  await store.start()
  const admin = `${ADMIN_LOCAL_PART}@${normalizeDomain(domain) ?? domain}`
  const tolerate = async (fn: () => Promise<unknown>): Promise<boolean> => {
    try { await fn(); return true } catch (err) { if (isMailError(err, 'exists')) return false; throw err }
  }
  try {
    // with its first DKIM key, as `mailgrid domain add` makes it: mail leaving from it is signed from the start
    const now = Date.now()
    await tolerate(async () => await store.addDomain(domain, { dkim: await createDkimKey(selectorFor(now, []), now) }))
    if (!await tolerate(async () => await store.addUser({ address: admin, password }))) await store.setPassword(admin, password)
    for (const role of ROLE_ALIASES) await tolerate(async () => await store.addAlias(`${role}@${domain}`, [admin]))
    // the web console's first account, a full admin with the same password (appliance/console/accounts.ts)
    const { AccountError, createAccounts } = await import('./console/accounts.ts')
    const accounts = createAccounts(store)
    try {
      await accounts.add(CONSOLE_ADMIN, password)
    } catch (err) {
      if (!(err instanceof AccountError && err.status === 409)) throw err
      await accounts.setPassword(CONSOLE_ADMIN, password)
    }
  } finally {
    await store.stop()
  }
  return admin
}

// The files in the data dir through which the CLI finds a running node: `admin.token` (the bearer token,
// created once, readable by the owner only) and `admin.json` (`{ url, pid }`, written once the admin API
// listens and removed at a clean stop, so a CLI command knows where to knock); and `cluster.key`, the grid's
// shared secret when the config names none.

import { randomBytes } from 'node:crypto'
import { mkdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileDurable } from '../gossip/index.ts'

export const TOKEN_FILE = 'admin.token'
export const INFO_FILE = 'admin.json'
export const TOKEN_BYTES = 32 // 256 bits: not guessable, whatever the number of tries
export const CLUSTER_KEY_FILE = 'cluster.key'
export const CLUSTER_KEY_BYTES = 32 // 256 bits, as the token; the grid derives its pnet key from it by HKDF

export interface AdminInfo {
  url: string // http://127.0.0.1:8080 on loopback, https://HOST:PORT where the admin API speaks TLS
  pid: number
  /** SHA-256 fingerprint of the certificate an https URL presents; the local CLI pins it. */
  fingerprint?: string
}


/**
 * `bytes` random bytes as base64url, never beginning with '-': an operator passes a token or key on a command line
 * (`--token VALUE`), where a value beginning with a dash reads as an option and is refused as ambiguous. Drawn again
 * when it would (1 in 64), so the choice is uniform over the values that do not.
 */
export function newSecret (bytes: number): string {
  for (;;) {
    const secret = randomBytes(bytes).toString('base64url')
    if (!secret.startsWith('-')) return secret
  }
}

/** A secret kept in a file of the data dir (owner-only), created with `bytes` random bytes at first call. */
async function ensureSecret (dataDir: string, file: string, bytes: number): Promise<string> {
  const path = join(dataDir, file)
  try {
    const secret = (await readFile(path, 'utf8')).trim()
    if (secret !== '') return secret
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  await mkdir(dataDir, { recursive: true })
  const secret = newSecret(bytes)
  await writeFileDurable(path, secret + '\n', 0o600)
  return secret
}

/** The admin token of this data dir, created at first call. */
export async function ensureToken (dataDir: string): Promise<string> {
  return await ensureSecret(dataDir, TOKEN_FILE, TOKEN_BYTES)
}

/**
 * The grid's cluster key kept in this data dir, created at first call. Every node of a grid needs the same
 * one: copy DATA/cluster.key to the others, or set grid.clusterKey on all of them.
 */
export async function ensureClusterKey (dataDir: string): Promise<string> {
  return await ensureSecret(dataDir, CLUSTER_KEY_FILE, CLUSTER_KEY_BYTES)
}

/** The token, or null when the data dir has none (no node ever started there). */
export async function readToken (dataDir: string): Promise<string | null> {
  try {
    const token = (await readFile(join(dataDir, TOKEN_FILE), 'utf8')).trim()
    return token === '' ? null : token
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
}

export async function writeAdminInfo (dataDir: string, info: AdminInfo): Promise<void> {
  await writeFileDurable(join(dataDir, INFO_FILE), JSON.stringify(info) + '\n', 0o644)
}

/** The running node's admin address, or null when the file is missing or not ours. */
export async function readAdminInfo (dataDir: string): Promise<AdminInfo | null> {
  let text: string
  try {
    text = await readFile(join(dataDir, INFO_FILE), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
  try {
    const v = JSON.parse(text) as Partial<AdminInfo>
    if (typeof v.url !== 'string' || !Number.isSafeInteger(v.pid)) return null
    return { url: v.url, pid: v.pid as number, ...(typeof v.fingerprint === 'string' ? { fingerprint: v.fingerprint } : {}) }
  } catch {
    return null
  }
}

/** Removes admin.json if it is still the one this process wrote. */
export async function removeAdminInfo (dataDir: string, pid: number = process.pid): Promise<void> {
  const info = await readAdminInfo(dataDir)
  if (info !== null && info.pid !== pid) return
  await rm(join(dataDir, INFO_FILE), { force: true })
}

/** Whether a process with this id exists (EPERM means it does, owned by someone else). */
export function processAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

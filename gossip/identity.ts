// Who this node is, across restarts, and which grid it belongs to. The private key lives in
// `<dataDir>/peer.key` (mode 0600) so the peer id survives a restart; the incarnation number beside it grows
// at every start so peers can tell a restarted node from a stale rumour. The cluster key is turned into the
// pnet pre-shared key and the membership topic name by one-way derivations, so neither reveals the key.

import { createHash, generateKeyPairSync } from 'node:crypto'
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs'
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { privateKeyFromProtobuf, privateKeyFromRaw, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { writeFileDurable } from './durable.ts'
import { decodeHeartbeat, encodeHeartbeat } from './heartbeat.ts'
import type { MemberInfo } from './types.ts'

const KNOWN_MEMBERS_MAX = 1024 // members kept across a restart

export const PEER_KEY_FILE = 'peer.key'
export const INCARNATION_FILE = 'incarnation'
export const MEMBERS_FILE = 'members.json'

/**
 * The node's libp2p private key: read from dataDir, or generated (Ed25519) and saved on the first start.
 * Synchronous, because the peer id is the node's name from construction on (`Gossip.self`).
 */
export function loadOrCreatePeerKey (dataDir: string): PrivateKey {
  mkdirSync(dataDir, { recursive: true })
  const path = join(dataDir, PEER_KEY_FILE)
  let bytes: Uint8Array | undefined
  try {
    bytes = readFileSync(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  if (bytes !== undefined) return privateKeyFromProtobuf(bytes)
  // libp2p's raw Ed25519 private key is the 32-byte seed followed by the 32-byte public key.
  const jwk = generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' })
  const key = privateKeyFromRaw(Buffer.concat([Buffer.from(jwk.d ?? '', 'base64url'), Buffer.from(jwk.x ?? '', 'base64url')]))
  const tmp = `${path}.tmp-${process.pid}`
  const fd = openSync(tmp, 'w', 0o600)
  try {
    writeSync(fd, privateKeyToProtobuf(key))
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  renameSync(tmp, path)
  return key
}

/** Reads the last incarnation, adds one, stores it durably and returns it (1 on the first start). */
export async function nextIncarnation (dataDir: string): Promise<number> {
  await mkdir(dataDir, { recursive: true })
  const path = join(dataDir, INCARNATION_FILE)
  let last = 0
  try {
    const text = (await readFile(path, 'utf8')).trim()
    const n = Number(text)
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${path}: not an incarnation number: ${JSON.stringify(text.slice(0, 40))}`)
    last = n
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const next = last + 1
  await writeFileDurable(path, `${next}\n`, 0o600)
  return next
}

/** A short digest naming the grid in topic names without revealing its key. */
export function clusterTag (clusterKey: string): string {
  return createHash('sha256').update('mailgrid/cluster-tag\0').update(clusterKey).digest('hex').slice(0, 16)
}

/** The gossipsub topic heartbeats travel on. */
export function membersTopic (clusterKey: string): string {
  return `mailgrid/${clusterTag(clusterKey)}/members/1`
}

/** A member as remembered across restarts: what it last said about itself, and when it was last heard. */
export interface KnownMember { info: MemberInfo, lastSeen: number }

/** The members this node knew when it last saved them; a damaged or missing file is an empty list. */
export async function loadKnownMembers (dataDir: string): Promise<KnownMember[]> {
  let raw: unknown
  try {
    raw = JSON.parse(await readFile(join(dataDir, MEMBERS_FILE), 'utf8'))
  } catch {
    return []
  }
  if (typeof raw !== 'object' || raw === null || !Array.isArray((raw as { members?: unknown }).members)) return []
  const out: KnownMember[] = []
  for (const m of (raw as { members: unknown[] }).members.slice(0, KNOWN_MEMBERS_MAX)) {
    try {
      const { info, lastSeen } = m as { info: { id?: unknown }, lastSeen: unknown }
      if (typeof lastSeen !== 'number' || !Number.isFinite(lastSeen) || typeof info?.id !== 'string') continue
      // the same checks as a heartbeat from the network: the file is not trusted more than a peer
      const hb = decodeHeartbeat(encodeHeartbeat({ seq: 0, info: info as MemberInfo }), info.id)
      out.push({ info: hb.info, lastSeen })
    } catch {
      // one bad entry costs that entry only
    }
  }
  return out
}

/** Saves the members this node knows (durably: temp file, fsync, rename). */
export async function saveKnownMembers (dataDir: string, members: KnownMember[]): Promise<void> {
  await writeFileDurable(join(dataDir, MEMBERS_FILE), JSON.stringify({ members: members.slice(0, KNOWN_MEMBERS_MAX) }) + '\n', 0o600)
}

// Optional encryption at rest of a backup (`mailgrid backup --key-file F`, config backup.keyFile): every file but
// the manifest is sealed with AES-256-GCM under a 32-byte key, each with a random 96-bit nonce (NIST SP 800-38D
// 8.2.2: random nonces are safe far beyond the number of files a backup holds) and the file's path inside the
// backup as additional data, so a file moved to another name does not open. On disk:
//
//   "MGBE1" (5 bytes) | nonce (12 bytes) | ciphertext | tag (16 bytes)
//
// The manifest stays readable (it names users, sizes and checksums, no mail, no password hash): `backup verify`
// checks every file's SHA-256, which is of the sealed bytes, without the key; with the key it also opens each file
// (the tag authenticates it) and checks that a body's plaintext is what its name says. The manifest records the
// algorithm and a key id (a hash of the key, not the key), so a run or a restore with another key is refused
// before anything is written or read.

import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { BackupError } from './format.ts'

export const BACKUP_CIPHER = 'AES-256-GCM'
export const BACKUP_KEY_BYTES = 32
export const SEAL_MAGIC = Buffer.from('MGBE1')
export const SEAL_NONCE_BYTES = 12
export const SEAL_TAG_BYTES = 16
export const SEAL_OVERHEAD_BYTES = SEAL_MAGIC.length + SEAL_NONCE_BYTES + SEAL_TAG_BYTES

/** What the manifest says of an encrypted backup. */
export interface ManifestEncryption {
  cipher: typeof BACKUP_CIPHER
  /** SHA-256 of a label and the key, 16 hex digits: tells a wrong key at once, reveals nothing of it. */
  keyId: string
}

export interface BackupKey {
  readonly key: Buffer
  readonly id: string
}

export function backupKey (key: Buffer): BackupKey {
  if (key.length !== BACKUP_KEY_BYTES) throw new BackupError(`a backup key is ${BACKUP_KEY_BYTES} bytes, not ${key.length}`)
  return { key, id: createHash('sha256').update('mailgrid backup key id\x00').update(key).digest('hex').slice(0, 16) }
}

/** Reads a key file: exactly 32 bytes (`head -c 32 /dev/urandom > backup.key`). */
export async function readKeyFile (path: string): Promise<BackupKey> {
  let data: Buffer
  try {
    data = await readFile(path)
  } catch (err) {
    throw new BackupError(`key file ${path}: ${(err as Error).message}`)
  }
  if (data.length !== BACKUP_KEY_BYTES) throw new BackupError(`key file ${path}: ${data.length} bytes, a key is exactly ${BACKUP_KEY_BYTES} (head -c 32 /dev/urandom > FILE)`)
  return backupKey(data)
}

/** A streaming seal of one file: the header first, then each chunk, then the tag. */
export interface Sealer {
  readonly head: Buffer
  update (chunk: Buffer | string): Buffer
  final (): Buffer
}

export function sealer (k: BackupKey, path: string): Sealer {
  const nonce = randomBytes(SEAL_NONCE_BYTES)
  const c = createCipheriv('aes-256-gcm', k.key, nonce)
  c.setAAD(Buffer.from(path))
  return {
    head: Buffer.concat([SEAL_MAGIC, nonce]),
    update: chunk => c.update(typeof chunk === 'string' ? Buffer.from(chunk) : chunk),
    final: () => Buffer.concat([c.final(), c.getAuthTag()])
  }
}

export function seal (k: BackupKey, path: string, data: Buffer | string): Buffer {
  const s = sealer(k, path)
  return Buffer.concat([s.head, s.update(data), s.final()])
}

/** The plaintext of a sealed file; BackupError when it is not one, or the key or the path is not its. */
export function unseal (k: BackupKey, path: string, data: Buffer): Buffer {
  if (data.length < SEAL_OVERHEAD_BYTES || !data.subarray(0, SEAL_MAGIC.length).equals(SEAL_MAGIC)) throw new BackupError(`${path}: not an encrypted backup file`)
  const nonce = data.subarray(SEAL_MAGIC.length, SEAL_MAGIC.length + SEAL_NONCE_BYTES)
  const d = createDecipheriv('aes-256-gcm', k.key, nonce)
  d.setAAD(Buffer.from(path))
  d.setAuthTag(data.subarray(data.length - SEAL_TAG_BYTES))
  try {
    return Buffer.concat([d.update(data.subarray(SEAL_MAGIC.length + SEAL_NONCE_BYTES, data.length - SEAL_TAG_BYTES)), d.final()])
  } catch {
    throw new BackupError(`${path}: does not open with this key (a wrong key, or the file was altered)`)
  }
}

/** Refuses a key that does not fit the backup's manifest (or a key for a plain backup, or none for an encrypted one). */
export function checkKey (encryption: ManifestEncryption | undefined, k: BackupKey | undefined, what: string): void {
  if (encryption === undefined && k !== undefined) throw new BackupError(`${what}: this backup is not encrypted; run without a key, or start a new backup directory`)
  if (encryption !== undefined && k === undefined) throw new BackupError(`${what}: this backup is encrypted (${encryption.cipher}); give its key (--key-file)`)
  if (encryption !== undefined && k !== undefined && encryption.keyId !== k.id) throw new BackupError(`${what}: the key is not this backup's (key id ${k.id}, the backup's ${encryption.keyId})`)
}

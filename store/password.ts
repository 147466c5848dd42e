// Password hashing with scrypt, a memory-hard KDF built into Node (RFC 7914). Stored as a PHC-style string
// `$scrypt$ln=15,r=8,p=1$<salt>$<hash>` so parameters can be raised later without breaking old hashes.

import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto'
import type { ScryptOptions } from 'node:crypto'

// N = 2^15, r = 8: 32 MiB and tens of milliseconds per hash on this class of machine; the cost an attacker
// pays per guess. (OWASP's password storage sheet lists N=2^17 as a minimum for interactive logins without
// caching; mail clients re-authenticate often, so we pair 2^15 with per-IP and per-account throttling.)
export const SCRYPT_LOG_N = 15
export const SCRYPT_R = 8
export const SCRYPT_P = 1
const KEY_BYTES = 32
const SALT_BYTES = 16
const MAXMEM_BYTES = 128 * 1024 * 1024

function derive (password: string, salt: Buffer, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password.normalize('NFC'), salt, KEY_BYTES, { ...opts, maxmem: MAXMEM_BYTES }, (err, key) => {
      if (err !== null) reject(err)
      else resolve(key)
    })
  })
}

export async function hashPassword (password: string, logN = SCRYPT_LOG_N): Promise<string> {
  const salt = randomBytes(SALT_BYTES)
  const key = await derive(password, salt, { N: 2 ** logN, r: SCRYPT_R, p: SCRYPT_P })
  return `$scrypt$ln=${logN},r=${SCRYPT_R},p=${SCRYPT_P}$${salt.toString('base64')}$${key.toString('base64')}`
}

const PHC = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/

export async function verifyPassword (password: string, stored: string): Promise<boolean> {
  const m = PHC.exec(stored)
  if (m === null) return false
  const [, ln, r, p, salt, hash] = m
  const expected = Buffer.from(hash, 'base64')
  const key = await derive(password, Buffer.from(salt, 'base64'), { N: 2 ** Number(ln), r: Number(r), p: Number(p) })
  return key.length === expected.length && timingSafeEqual(key, expected)
}

/** A hash of a password nobody knows: verifying against it costs the same as for a real user. */
let dummy: Promise<string> | null = null
export function dummyHash (logN = SCRYPT_LOG_N): Promise<string> {
  dummy ??= hashPassword(randomBytes(16).toString('hex'), logN)
  return dummy
}

// Random ids for the store's records and log entries, from a pool. Each randomBytes call is a trip into OpenSSL's
// generator and a new buffer: 2-3 ids per delivered message made it 2.3 % of the node's busy time under SMTP ingest.
// The pool holds the same generator's output, drawn RANDOM_POOL_BYTES at a time; each byte is handed out once.

import { randomFillSync } from 'node:crypto'

/** Bytes drawn from the generator at a time: 341 ids of 12 bytes. */
export const RANDOM_POOL_BYTES = 4096

export interface RandomPool {
  /** `bytes` random bytes (at most RANDOM_POOL_BYTES) as lower-case hex. */
  hex: (bytes: number) => string
}

export function createRandomPool (fill: (buf: Buffer) => Buffer = randomFillSync): RandomPool {
  const pool = Buffer.allocUnsafe(RANDOM_POOL_BYTES)
  let at = RANDOM_POOL_BYTES
  return {
    hex (bytes) {
      if (!Number.isInteger(bytes) || bytes < 1 || bytes > RANDOM_POOL_BYTES) throw new RangeError(`random ids of 1..${RANDOM_POOL_BYTES} bytes, not ${bytes}`)
      if (at + bytes > RANDOM_POOL_BYTES) {
        fill(pool)
        at = 0
      }
      const s = pool.toString('hex', at, at + bytes)
      at += bytes
      return s
    }
  }
}

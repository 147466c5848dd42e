// What grid nodes say to each other: versioned protocol ids, and the packing of log entries with the
// message bodies they refer to into one RPC message (a JSON header and one binary body).

import { isMailError, MailError } from '../../store/index.ts'
import type { MailErrorKind } from '../../store/index.ts'
import type { RpcMessage } from '../../gossip/types.ts'

export const PROTOCOLS = {
  position: '/mailgrid/position/1.0.0', // { users } → { positions: { [user]: number } }
  logBatch: '/mailgrid/log-batch/1.0.0', // { items: [{ user, entries, lens, prev, bytes }] } + bodies → { results: [{ position, diverged? } | { error }] }
  deliverBatch: '/mailgrid/deliver-batch/1.0.0', // { items: [{ targets, internalDate, bytes }] } + raws → { results: [{ results } | { error }] }
  pull: '/mailgrid/pull/1.0.0', // { user, from, have?, limit } → { entries, lens } + bodies (entries after `have` and their bodies, within LOG_BATCH_BYTES_MAX)
  quota: '/mailgrid/quota/1.0.0', // { user } → { quota } | { error }
  directory: '/mailgrid/directory/1.0.0', // { records } → { applied }
  directoryDigest: '/mailgrid/directory-digest/1.0.0', // { digest } → { same } | { records }
  session: '/mailgrid/session/1.0.0', // stream: a forwarded IMAP or POP3 session
  eids: '/mailgrid/eids/1.0.0', // { user, from, to } → { eids: (string|null)[] } (merge: find the common prefix)
  summary: '/mailgrid/summary/1.0.0', // { user, from, to?, addedFrom? } → { summary, addedTotal, endEid } (merge: what the other side did; `added` in pages)
  blobs: '/mailgrid/blobs/1.0.0', // { hashes } → { lens } + bodies (of the first hashes, at least one: the caller asks again for the rest)
  reset: '/mailgrid/reset/1.0.0', // { user } → { position: 0 } (drop a diverged copy, after a merge took what it had)
  handoff: '/mailgrid/handoff/1.0.0', // { user, position, eid } → { drop } (a node that is no longer a replica asks the primary)
  mergeInto: '/mailgrid/merge-into/1.0.0' // { user, position } → { merged } (a primary catching up asks a replica further ahead to merge its copy in, then reset it)
} as const

export const LOG_BATCH_ENTRIES_MAX = 512 // entries per replication message
// JSON of the entries one user's shipment (or pull answer) carries, and of all the users' entries one batched RPC
// carries: both well inside the RPC header limit (gossip/constants.ts), whatever the entries' trace headers weigh
export const LOG_SHIPMENT_HEADER_BYTES_MAX = 2 * 1024 * 1024
export const LOG_BATCH_HEADER_BYTES_MAX = 8 * 1024 * 1024

/** Bytes an entry takes in a header (its JSON), to cut batches before the RPC header limit. */
export function entryBytes (e: unknown): number {
  return Buffer.byteLength(JSON.stringify(e)) + 1
}
// Bodies per shipment, pull answer or blob answer (one large body may exceed it alone): a quarter of the RPC body
// limit (gossip/constants.ts), so a large message after a batch still fits one answer
export const LOG_BATCH_BYTES_MAX = 16 * 1024 * 1024

/** Concatenates bodies into one buffer; `lens` splits it again. */
export function packBodies (bodies: Buffer[]): { lens: number[], body: Buffer } {
  return { lens: bodies.map(b => b.length), body: Buffer.concat(bodies) }
}

export function unpackBodies (lens: unknown, body: Uint8Array | undefined): Buffer[] {
  if (!Array.isArray(lens)) return []
  const buf = body === undefined ? Buffer.alloc(0) : Buffer.from(body.buffer, body.byteOffset, body.byteLength)
  const out: Buffer[] = []
  let off = 0
  for (const n of lens) {
    if (!Number.isSafeInteger(n) || n < 0 || off + n > buf.length) throw new MailError('invalid', 'body lengths do not match the payload')
    out.push(buf.subarray(off, off + n))
    off += n
  }
  return out
}

const KINDS = new Set<MailErrorKind>(['temp', 'unavailable', 'notFound', 'exists', 'noQuota', 'tooBig', 'limit', 'invalid', 'denied', 'authFailed', 'expungeIssued', 'nonExistent', 'hasChildren'])

/** A mail error travels as data, so the caller can rethrow the same kind; anything else becomes 'temp'. */
export function errorReply (err: unknown): RpcMessage {
  if (isMailError(err)) return { header: { error: { kind: err.kind, message: err.message } } }
  return { header: { error: { kind: 'temp', message: 'Internal error on the owning node' } } }
}

export function throwIfError (res: RpcMessage): void {
  const e = res.header.error as { kind?: string, message?: string } | undefined
  if (e === undefined) return
  const kind = KINDS.has(e.kind as MailErrorKind) ? e.kind as MailErrorKind : 'temp'
  throw new MailError(kind, String(e.message ?? 'Error on the owning node'))
}

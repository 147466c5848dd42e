// Multi-line responses of the TRANSACTION state: listings written in batches, and a message (RETR) or its top
// (TOP) streamed chunk by chunk through the byte-stuffer, waiting for the socket to drain between chunks, so a
// message is never held whole in memory.

import { createHash, randomBytes } from 'node:crypto'
import { DotStuffer, TopFilter, err, ok } from '../codec.ts'
import { failure, reply } from '../context.ts'
import type { SessionContext } from '../context.ts'
import type { MaildropEntry, StateOf } from '../session.ts'

/** Listing lines per write: bounds the string built for a maildrop of any size. */
const LISTING_LINES_PER_WRITE = 1000

/**
 * RETR of a message up to this size reads it whole (one file read, alongside the check that it still exists)
 * and answers with one socket write; larger ones are streamed chunk by chunk. Most mail is far smaller.
 */
export const INLINE_MESSAGE_BYTES_MAX = 128 * 1024

/**
 * A client that retrieves message after message (RETR n right after RETR n-1, as clients that download a whole
 * maildrop do, often pipelined) gets the next bodies read while the current one is written, half a window at a
 * time (reads started together are merged into one). Bounds what a session holds: READ_AHEAD_MESSAGES ×
 * INLINE_MESSAGE_BYTES_MAX = 2 MiB; 16 messages of 10 KB took one read instead of 4 in profiles.
 */
export const READ_AHEAD_MESSAGES = 16

interface ReadAhead {
  last: number // the message number of the previous RETR
  bodies: Map<number, Promise<Buffer>>
}
const readAheads = new WeakMap<object, ReadAhead>()

export async function sendListing (ctx: SessionContext, first: string, lines: Iterable<string>): Promise<void> {
  let batch = first
  let n = 0
  for (const line of lines) {
    batch += line + '\r\n' // listing lines start with a digit: never stuffed
    if (++n % LISTING_LINES_PER_WRITE === 0) {
      await reply(ctx, batch)
      batch = ''
      if (ctx.conn.closed) return
    }
  }
  await reply(ctx, batch + '.\r\n')
}

/**
 * RFC 1939 section 7: a unique-id is 1 to 70 characters from 0x21 to 0x7E. Our global ids are hex and pass
 * as they are; anything else is hashed, which keeps it stable across sessions.
 */
export function uniqueId (gid: string): string {
  return /^[\x21-\x7e]{1,70}$/.test(gid) ? gid : createHash('sha256').update(gid).digest('hex')
}

/** The live entry for message number `arg`, or null after answering -ERR. */
export async function liveEntry (ctx: SessionContext, state: StateOf<'transaction'>, n: number): Promise<MaildropEntry | null> {
  const entry = state.drop.get(n)
  if (entry === null) {
    await reply(ctx, err('No such message'))
    return null
  }
  if (entry.deleted) {
    await reply(ctx, err(`Message ${n} already deleted`))
    return null
  }
  return entry
}

/** RETR (lines null) or TOP (lines = body lines wanted). */
export async function sendMessage (ctx: SessionContext, state: StateOf<'transaction'>, n: number, entry: MaildropEntry, lines: number | null): Promise<void> {
  const record = entry.record
  if (lines === null && record.size <= INLINE_MESSAGE_BYTES_MAX) return await sendWhole(ctx, state, n, entry)
  // The maildrop is a snapshot: another session (IMAP) may have expunged the message since login
  if (state.drop.isGone(record.uid)) {
    await reply(ctx, err('Message was removed by another session'))
    return
  }
  const it = ctx.store.streamMessage(record)[Symbol.asyncIterator]()
  let next: IteratorResult<Buffer>
  try {
    next = await it.next() // a missing blob fails here, while an -ERR can still be sent
  } catch (e) {
    await failure(ctx, e, 'read message')
    return
  }
  await reply(ctx, ok(lines === null ? `${record.size} octets` : 'Top of message follows'))
  const stuffer = new DotStuffer()
  const top = lines === null ? null : new TopFilter(lines)
  try {
    while (next.done !== true && !ctx.conn.closed) {
      const part = top === null ? next.value : top.push(next.value)
      if (part.length > 0) await ctx.conn.send(stuffer.push(part))
      if (top?.done === true) break
      next = await it.next()
    }
  } catch (e) {
    // After "+OK" no -ERR can be sent: hanging up is the only honest answer left (the client sees no ".")
    const logId = randomBytes(6).toString('hex')
    ctx.log.error({ event: 'pop3_stream_failed', logId, err: e, uid: record.uid }, 'pop3_stream_failed')
    ctx.conn.destroy()
    return
  } finally {
    await it.return?.() // closes the blob reader when we stop early (TOP, a dropped client)
  }
  await reply(ctx, stuffer.end())
}

/** The body of message n: read ahead earlier, or read now; reads ahead of a client walking the maildrop. */
function bodyOf (ctx: SessionContext, state: StateOf<'transaction'>, n: number, record: MaildropEntry['record']): Promise<Buffer> {
  let ra = readAheads.get(state.drop)
  if (ra === undefined) readAheads.set(state.drop, ra = { last: 0, bodies: new Map() })
  const sequential = n === ra.last + 1
  ra.last = n
  const ready = ra.bodies.get(n)
  ra.bodies.delete(n)
  if (!sequential) ra.bodies.clear()
  else if (ra.bodies.size <= READ_AHEAD_MESSAGES / 2) {
    // refilled half a window at a time: reads started together are merged by the store (one pread for a run
    // of neighbouring bodies)
    for (let k = n + 1; k <= n + READ_AHEAD_MESSAGES; k++) {
      const e = state.drop.get(k)
      if (e === null) break
      if (ra.bodies.has(k) || e.deleted || e.record.size > INLINE_MESSAGE_BYTES_MAX) continue
      const p = ctx.store.readMessage(e.record)
      p.catch(() => {}) // a failed read ahead is read again (and reported) when the message is asked for
      ra.bodies.set(k, p)
    }
  }
  return ready === undefined ? ctx.store.readMessage(record) : ready.catch(async () => await ctx.store.readMessage(record))
}

/** RETR of a small message: read (or read ahead) whole, and answered with one write. */
async function sendWhole (ctx: SessionContext, state: StateOf<'transaction'>, n: number, entry: MaildropEntry): Promise<void> {
  const record = entry.record
  let body: Buffer
  try {
    body = await bodyOf(ctx, state, n, record)
    // The maildrop is a snapshot: another session (IMAP) may have expunged the message since login
    if (state.drop.isGone(record.uid)) {
      await reply(ctx, err('Message was removed by another session'))
      return
    }
  } catch (e) {
    await failure(ctx, e, 'read message')
    return
  }
  const stuffer = new DotStuffer()
  const stuffed = stuffer.push(body)
  // three writes, one system call (the connection corks until the tick ends); the body is not copied
  void reply(ctx, ok(`${record.size} octets`))
  void reply(ctx, stuffed)
  await reply(ctx, stuffer.end())
}

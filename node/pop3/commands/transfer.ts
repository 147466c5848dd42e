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
export async function sendMessage (ctx: SessionContext, state: StateOf<'transaction'>, entry: MaildropEntry, lines: number | null): Promise<void> {
  const record = entry.record
  // The maildrop is a snapshot: another session (IMAP) may have expunged the message since login
  try {
    const current = await ctx.store.getMessage(state.user, state.drop.mailboxId, record.uid)
    if (current === null || current.gid !== record.gid) {
      await reply(ctx, err('Message was removed by another session'))
      return
    }
  } catch (e) {
    await failure(ctx, e, 'check message')
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

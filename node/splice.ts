// The edge of a forwarded session: once a client has logged in on a node that is not its user's primary, the
// node stops reading the client's bytes and joins the client socket to the stream to the primary. Bytes flow
// both ways with back-pressure (pipe), a half-close travels across (the client's FIN becomes the stream's end
// and back), and an error or an abrupt close on either side closes both: a client never waits on a dead peer.
//
// When the primary goes away without ending the session (killed, declared dead by the grid, the stream reset),
// the client is told before it is cut off, in its protocol's words (IMAP `* BYE`, POP3 `-ERR [SYS/TEMP]`), so it
// reconnects at once instead of taking the cut for a network fault; the farewell is said only where the bytes
// to the client stand at the end of a line, since in the middle of a response (a literal, a RETR body) it
// would be read as data.

import type { Duplex } from 'node:stream'

/** How long an ended client socket may linger waiting for the client's own FIN (as the IMAP connection does). */
export const SPLICE_CLOSE_GRACE_MS = 2000

export interface SpliceInit {
  /** Said to the client when the upstream is lost rather than ended (a full line, CRLF included). */
  farewell?: string | Buffer
}

/**
 * Joins `client` and `upstream`; `pending` (bytes the client sent after the login, already read) goes first.
 * Resolves once both are closed.
 */
export async function splice (client: Duplex, upstream: Duplex, pending: Buffer, init: SpliceInit = {}): Promise<void> {
  await new Promise<void>((resolve) => {
    let open = 2
    const closed = (): void => { if (--open === 0) resolve() }
    // the last byte passed to the client: a farewell fits only after a line end (or before any byte)
    let atLineEnd = true
    upstream.on('data', (chunk: Buffer) => { if (chunk.length > 0) atLineEnd = chunk[chunk.length - 1] === 0x0a })
    const lost = (): void => {
      if (init.farewell === undefined || !atLineEnd || client.destroyed || client.writableEnded) {
        client.destroy()
        return
      }
      upstream.unpipe(client)
      client.unpipe(upstream)
      client.resume() // what the client still sends is dropped, so its FIN is seen and the socket closes
      client.end(init.farewell)
      setTimeout(() => client.destroy(), SPLICE_CLOSE_GRACE_MS).unref()
    }
    client.on('error', () => {
      client.destroy()
      upstream.destroy()
    })
    // an upstream error (a reset, a dead peer) is followed by its 'close', where the client is told
    upstream.on('error', () => { upstream.destroy() })
    let upstreamEnded = false
    upstream.once('end', () => {
      upstreamEnded = true
      // pipe ends the client; a client that never closes its side is cut off after a grace period
      setTimeout(() => client.destroy(), SPLICE_CLOSE_GRACE_MS).unref()
    })
    onClose(client, () => {
      upstream.destroy()
      closed()
    })
    onClose(upstream, () => {
      // after a clean end, pipe is still flushing the last bytes to the client; otherwise the peer is gone
      if (!upstreamEnded) lost()
      closed()
    })
    if (pending.length > 0) upstream.write(pending)
    client.pipe(upstream)
    upstream.pipe(client)
  })
}

function onClose (stream: Duplex, fn: () => void): void {
  if (stream.closed) queueMicrotask(fn)
  else stream.once('close', fn)
}

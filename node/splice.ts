// The edge of a forwarded session: once a client has logged in on a node that is not its user's primary, the
// node stops reading the client's bytes and joins the client socket to the stream to the primary. Bytes flow
// both ways with back-pressure (pipe), a half-close travels across (the client's FIN becomes the stream's end
// and back), and an error or an abrupt close on either side closes both: a client never waits on a dead peer.

import type { Duplex } from 'node:stream'

/** How long an ended client socket may linger waiting for the client's own FIN (as the IMAP connection does). */
export const SPLICE_CLOSE_GRACE_MS = 2000

/**
 * Joins `client` and `upstream`; `pending` (bytes the client sent after the login, already read) goes first.
 * Resolves once both are closed.
 */
export async function splice (client: Duplex, upstream: Duplex, pending: Buffer): Promise<void> {
  await new Promise<void>((resolve) => {
    let open = 2
    const closed = (): void => { if (--open === 0) resolve() }
    const fail = (): void => {
      client.destroy()
      upstream.destroy()
    }
    client.on('error', fail)
    upstream.on('error', fail)
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
      if (!upstreamEnded) client.destroy()
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

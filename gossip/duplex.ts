// A libp2p 3 stream as a Node Duplex, for code that speaks sockets (forwarded IMAP and POP3 sessions).
//
// libp2p 3 streams are event targets, not `{ source, sink }` duplexes: bytes arrive as 'message' events,
// `pause()`/`resume()` stop and restart delivery (yamux then withholds window updates, so the sender stalls),
// `send()` returns false when the sender should wait for 'drain', `close()` half-closes the writable end
// (yamux FIN), `abort(err)` resets both ends, 'end' means the remote finished writing and everything it
// wrote was delivered, and 'close' means the stream is finished, with `error` set when it was aborted or reset.
//
// Mapping: Node's push() returning false pauses the libp2p stream and _read() resumes it (back-pressure
// inbound); _write() waits for 'drain' when send() says so (back-pressure outbound); end() half-closes;
// destroy() without an error on a stream that is not finished resets it, because the peer must learn that the
// session died rather than wait; a reset from the peer destroys the Duplex with an error.
//
// libp2p ends a stream whose connection closed under it (the peer's process killed, its host gone) with the same
// 'end' and error-free 'close' as a peer that finished writing: only a chosen end is announced by
// 'remoteCloseWrite' first (yamux FIN). An end without it is the peer lost, and destroys the Duplex with a
// StreamResetError, so a forwarded session can tell its client the server went away instead of a clean logout.

import { Duplex } from 'node:stream'
import type { Stream } from '@libp2p/interface'
import { DUPLEX_HIGH_WATER_BYTES, STREAM_READ_BUFFER_BYTES_MAX } from './constants.ts'

export class StreamResetError extends Error {
  readonly code = 'ECONNRESET'
  constructor (message = 'stream reset by peer', options?: ErrorOptions) {
    super(message, options)
    this.name = 'StreamResetError'
  }
}

export function streamToDuplex (stream: Stream): Duplex {
  stream.maxReadBufferLength = STREAM_READ_BUFFER_BYTES_MAX
  let ended = false
  let remoteClosedWrite = stream.remoteWriteStatus === 'closed'

  const canPauseOrResume = (): boolean => stream.readStatus === 'readable' || stream.readStatus === 'paused'

  const duplex = new Duplex({
    allowHalfOpen: true,
    readableHighWaterMark: DUPLEX_HIGH_WATER_BYTES,
    writableHighWaterMark: DUPLEX_HIGH_WATER_BYTES,
    read () {
      if (stream.readStatus === 'paused') stream.resume()
    },
    write (chunk: Buffer, _encoding, callback) {
      let ok: boolean
      try {
        ok = stream.send(chunk)
      } catch (err) {
        callback(err as Error)
        return
      }
      if (ok) callback()
      else stream.onDrain().then(() => { callback() }, (err: unknown) => { callback(err as Error) })
    },
    final (callback) {
      stream.close().then(() => { callback() }, (err: unknown) => { callback(err as Error) })
    },
    destroy (err, callback) {
      detach()
      if (stream.status === 'open' || stream.status === 'closing') {
        // Unfinished on either side: reset, so the peer sees the failure instead of waiting for more bytes.
        if (err != null || !(stream.writeStatus === 'closed' && ended)) stream.abort(err ?? new Error('stream destroyed locally'))
      }
      callback(err)
    }
  })

  const onMessage = (evt: { data: Uint8Array | Iterable<Uint8Array> }): void => {
    const data = evt.data
    const chunks = data instanceof Uint8Array ? [data] : data
    let more = true
    for (const c of chunks) more = duplex.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength))
    if (!more && stream.readStatus === 'readable' && canPauseOrResume()) stream.pause()
  }
  const onRemoteCloseWrite = (): void => { remoteClosedWrite = true }
  const onEnd = (): void => {
    ended = true
    if (stream.status === 'aborted' || stream.status === 'reset') return // 'close' brings the error
    if (!remoteClosedWrite) {
      detach()
      if (!duplex.destroyed) duplex.destroy(new StreamResetError('connection to the peer lost'))
      return
    }
    duplex.push(null)
  }
  const onClose = (evt: Event & { error?: Error, local?: boolean }): void => {
    if (evt.error == null) return // closed cleanly by both sides; bytes still buffered arrive, then 'end'
    detach()
    if (duplex.destroyed) return
    duplex.destroy(evt.local === true ? evt.error : new StreamResetError(undefined, { cause: evt.error }))
  }
  function detach (): void {
    stream.removeEventListener('message', onMessage as never)
    stream.removeEventListener('end', onEnd)
    stream.removeEventListener('close', onClose as never)
    stream.removeEventListener('remoteCloseWrite', onRemoteCloseWrite)
  }
  stream.addEventListener('remoteCloseWrite', onRemoteCloseWrite)
  stream.addEventListener('message', onMessage as never)
  stream.addEventListener('end', onEnd)
  stream.addEventListener('close', onClose as never)
  if (stream.readableEnded) queueMicrotask(onEnd)
  return duplex
}

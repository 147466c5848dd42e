// DATA's byte scanner, with a native search. smtp-server's stream finds the end of a message (CRLF "." CRLF) and
// the escape dots of dot-stuffed lines (RFC 5321 4.5.2) by a JavaScript loop over every byte of the body, which
// was 6.7 % of the shipped node's main thread under the ingest bench (about 33 µs per 10 KB message on the Intel
// machine: test/bench/ANALYSIS.md, session 11). A dot matters only right after an LF, so this scanner jumps from
// one "\n." to the next with Buffer.indexOf (memchr-speed) and does what the library does at each one; everything
// else about the stream (command mode, the end of data mode, limits, counters) stays the library's.
//
// Its behaviour is the library's own, byte for byte and call for call (test/smtp/data-stream.test.ts feeds random
// messages in random chunkings through both and compares what each emits, ends and keeps): the same treatment of
// a first line that is "." or starts with "..", the same four bytes kept across chunks so a terminator split
// between two reads is found, the same back-pressure. If the library's stream ever stops looking as expected
// (its method renamed), the shim is not installed and the library's scanner runs.

import { SMTPStream } from 'smtp-server/lib/smtp-stream.js'
import type { PassThrough } from 'node:stream'

const LF_DOT = Buffer.from('\n.')

/** The parts of smtp-server's SMTPStream the scanner uses (private in its types). */
export interface DataScanState {
  _dataStream: (PassThrough & { byteLength?: number, sizeExceeded?: boolean }) | null
  _lastBytes: Buffer | false
  _atDataStart: boolean
  _countDataBytes: (len: number) => void
  _endDataMode: (chunk: Buffer | false, remainder: Buffer, done: () => void) => void
  _feedDataStream: (chunk: Buffer, done: () => void) => void
}

const proto = SMTPStream.prototype as unknown as DataScanState & { __mailgridDataScan?: boolean }

/** The library's own scanner, kept for the differential test (and as the fallback when not installed). */
export const libraryFeedDataStream: DataScanState['_feedDataStream'] = proto._feedDataStream

export function feedDataStream (this: DataScanState, input: Buffer, done: () => void): void {
  const dataStream = this._dataStream as NonNullable<DataScanState['_dataStream']>
  let chunk = input
  if (this._lastBytes !== false && this._lastBytes.length > 0) {
    chunk = Buffer.concat([this._lastBytes, chunk], this._lastBytes.length + chunk.length)
    this._lastBytes = false
  }
  let len = chunk.length
  // a first line that is a lone dot ends the message at once (test _atDataStart, not the byte count: see the
  // library's note on a first line ".." whose escape dot a previous chunk already took)
  if (this._atDataStart && len >= 3 && chunk[0] === 0x2e && chunk[1] === 0x0d && chunk[2] === 0x0a) {
    this._endDataMode(false, chunk.subarray(3), done)
    return
  }
  // a first line starting with an escape dot: drop it; the next dot is content
  if (this._atDataStart && len >= 2 && chunk[0] === 0x2e && chunk[1] === 0x2e) {
    chunk = chunk.subarray(1)
    len--
    this._atDataStart = false
  }
  // the dots that start a line, from the third byte on, up to three bytes before the end (a later one may be a
  // terminator cut by the chunk's end: those bytes are kept for the next chunk)
  for (let lf = chunk.indexOf(LF_DOT, 1); lf !== -1; lf = chunk.indexOf(LF_DOT, lf + 1)) {
    const dot = lf + 1
    if (dot >= len - 2) break
    if (chunk[dot - 2] === 0x0d && chunk[dot + 1] === 0x0d && chunk[dot + 2] === 0x0a) {
      // CRLF "." CRLF: what comes before the dot is the message, its last CRLF included
      const body = chunk.subarray(0, dot)
      this._countDataBytes(body.length)
      this._endDataMode(body, chunk.subarray(dot + 3), done)
      return
    }
    if (chunk[dot + 1] === 0x2e) {
      // an escape dot: emit up to it and go on after it in a later turn
      const before = chunk.subarray(0, dot)
      this._lastBytes = false
      this._countDataBytes(before.length)
      if (dataStream.writable) dataStream.write(before)
      const rest = chunk.subarray(dot + 1)
      setImmediate(() => { this._feedDataStream(rest, done) })
      return
    }
  }
  // keep the last four bytes (a terminator may begin in them) and emit the rest
  this._lastBytes = chunk.length < 4 ? chunk : chunk.subarray(chunk.length - 4)
  if (this._lastBytes.length >= chunk.length) {
    done()
    return
  }
  const out = chunk.subarray(0, chunk.length - this._lastBytes.length)
  this._countDataBytes(out.length)
  if (!dataStream.writable) {
    done()
    return
  }
  if (dataStream.write(out) || dataStream.destroyed) {
    done()
    return
  }
  // wait for the reader; a stream the application destroys never drains, it only closes
  const resume = (): void => {
    dataStream.removeListener('drain', resume)
    dataStream.removeListener('close', resume)
    done()
  }
  dataStream.once('drain', resume)
  dataStream.once('close', resume)
}

if (proto.__mailgridDataScan !== true && typeof proto._feedDataStream === 'function' && typeof proto._endDataMode === 'function' && typeof proto._countDataBytes === 'function') {
  proto._feedDataStream = feedDataStream
  proto.__mailgridDataScan = true
}

// node/smtp/data-stream.ts against smtp-server's own DATA scanner: random messages (dot-stuffed lines, lone dots,
// bare CR and LF, terminators early, late, missing or split), cut into random chunks, fed to two SMTPStreams in data
// mode, one with the library's `_feedDataStream` and one with ours. Everything observable must be equal: the bytes
// the data stream emits, whether and where data mode ends, the commands read after it, the byte count and the size
// flag. MAILGRID_DATA_SCAN_CASES sets the number of cases (2,000 here; 100,000 for a long run) and
// MAILGRID_DATA_SCAN_SEED replays one.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SMTPStream } from 'smtp-server/lib/smtp-stream.js'
import { feedDataStream, libraryFeedDataStream } from '../../node/smtp/data-stream.ts'
import type { DataScanState } from '../../node/smtp/data-stream.ts'
import { prng } from '../helpers/prng.ts'

const CASES = Number(process.env.MAILGRID_DATA_SCAN_CASES ?? 2000)
const SEED = Number(process.env.MAILGRID_DATA_SCAN_SEED ?? Math.floor(Math.random() * 2 ** 31))

interface Outcome { data: string, ended: boolean, commands: string[], dataBytes: number, sizeExceeded: boolean | undefined, byteLength: number | undefined }

/** Feeds `chunks` to a stream in data mode whose scanner is `scan`; resolves with what it emitted and read. */
async function run (scan: DataScanState['_feedDataStream'], chunks: Buffer[], maxBytes: number): Promise<Outcome> {
  const stream = new SMTPStream()
  ;(stream as unknown as DataScanState)._feedDataStream = scan
  const commands: string[] = []
  ;(stream as unknown as { oncommand: (c: Buffer, cb: () => void) => void }).oncommand = (c, cb) => { commands.push(c.toString('latin1')); cb() }
  const dataStream = stream.startDataMode(maxBytes) as unknown as NodeJS.ReadableStream & { byteLength?: number, sizeExceeded?: boolean }
  const parts: Buffer[] = []
  let ended = false
  dataStream.on('data', (b: Buffer) => { parts.push(b) })
  dataStream.on('end', () => { ended = true; stream.continue() })
  for (const c of chunks) {
    await new Promise<void>((resolve, reject) => { stream.write(c, err => { if (err != null) reject(err); else resolve() }) })
  }
  // let escape-dot continuations (setImmediate) and the end of data mode run out
  for (let i = 0; i < 50; i++) await new Promise(resolve => setImmediate(resolve))
  return { data: Buffer.concat(parts).toString('latin1'), ended, commands, dataBytes: stream.dataBytes, sizeExceeded: dataStream.sizeExceeded, byteLength: dataStream.byteLength }
}

const LINES = ['', '.', '..', '...', '.x', 'x.', '. ', 'abc', 'Subject: hi', '\r', '\n', '.\r', '.\n', 'a\rb', 'line with words in it', 'z'.repeat(100)]

function message (rnd: () => number): Buffer {
  const n = Math.floor(rnd() * 12)
  const lines: string[] = []
  for (let i = 0; i < n; i++) lines.push(LINES[Math.floor(rnd() * LINES.length)])
  const eol = (): string => { const r = rnd(); return r < 0.85 ? '\r\n' : r < 0.93 ? '\n' : '\r' }
  let text = lines.map(l => l + eol()).join('')
  const end = rnd()
  // the terminator: usually at the end, sometimes with commands after it, sometimes twice, sometimes missing
  if (end < 0.6) text += '.\r\n'
  else if (end < 0.8) text += '.\r\nQUIT\r\nNOOP\r\n'
  else if (end < 0.9) text += '.\r\n.\r\nRSET\r\n'
  if (rnd() < 0.3) text = '.\r\n' + text // a first line that is a lone dot
  else if (rnd() < 0.2) text = '..' + text // or an escaped first dot
  return Buffer.from(text, 'latin1')
}

function chunked (raw: Buffer, rnd: () => number): Buffer[] {
  const out: Buffer[] = []
  let at = 0
  while (at < raw.length) {
    const r = rnd()
    const len = r < 0.3 ? 1 : r < 0.6 ? 1 + Math.floor(rnd() * 5) : 1 + Math.floor(rnd() * raw.length)
    out.push(raw.subarray(at, at + len))
    at += len
  }
  return out.length > 0 ? out : [Buffer.alloc(0)]
}

test(`DATA's scanner: the same bytes, end, commands and counts as smtp-server's own, ${CASES} random messages and chunkings (seed ${SEED})`, async () => {
  assert.notEqual(feedDataStream, libraryFeedDataStream)
  // installed: a new stream uses ours
  assert.equal((SMTPStream.prototype as unknown as DataScanState)._feedDataStream, feedDataStream)
  const rnd = prng(SEED)
  let endedCount = 0
  for (let i = 0; i < CASES; i++) {
    const raw = message(rnd)
    const chunks = chunked(raw, rnd)
    const maxBytes = rnd() < 0.2 ? 1 + Math.floor(rnd() * 40) : 0
    const ours = await run(feedDataStream, chunks, maxBytes)
    const theirs = await run(libraryFeedDataStream, chunks, maxBytes)
    assert.deepEqual(ours, theirs, `case ${i} (seed ${SEED}): ${JSON.stringify(raw.toString('latin1'))} in ${chunks.length} chunks ${JSON.stringify(chunks.map(c => c.length))}`)
    if (ours.ended) endedCount++
  }
  // the generator reaches both sides: messages that end and messages still open
  assert.ok(endedCount > CASES / 3 && endedCount < CASES, `${endedCount} of ${CASES} ended`)
})

test('DATA\'s scanner: dot-stuffing undone, the terminator found across chunk boundaries, what follows it read as commands', async () => {
  const raw = Buffer.from('a\r\n..b\r\n...\r\n.\r\nc\r\n.\r\nQUIT\r\n', 'latin1')
  for (let cut = 1; cut < raw.length; cut++) {
    const r = await run(feedDataStream, [raw.subarray(0, cut), raw.subarray(cut)], 0)
    assert.equal(r.data, 'a\r\n.b\r\n..\r\n', `cut at ${cut}`)
    assert.equal(r.ended, true)
    assert.deepEqual(r.commands, ['c', '.', 'QUIT'])
  }
  // a first line that is a lone dot is an empty message, whatever the chunks
  const empty = await run(feedDataStream, [Buffer.from('.'), Buffer.from('\r\nNOOP\r\n')], 0)
  assert.equal(empty.data, '')
  assert.equal(empty.ended, true)
  assert.deepEqual(empty.commands, ['NOOP'])
})

test('DATA\'s scanner: a reader that does not keep up holds the socket\'s next chunk back, as the library\'s does', async () => {
  for (const scan of [feedDataStream, libraryFeedDataStream]) {
    const stream = new SMTPStream()
    ;(stream as unknown as DataScanState)._feedDataStream = scan
    const dataStream = stream.startDataMode(0) as unknown as NodeJS.ReadableStream
    let written = false
    stream.write(Buffer.alloc(256 * 1024, 0x61), () => { written = true })
    for (let i = 0; i < 20; i++) await new Promise(resolve => setImmediate(resolve))
    assert.equal(written, false, 'the chunk waits for the reader')
    let bytes = 0
    dataStream.on('data', (b: Buffer) => { bytes += b.length })
    for (let i = 0; i < 20 && !written; i++) await new Promise(resolve => setImmediate(resolve))
    assert.equal(written, true, 'and goes on once it reads')
    assert.equal(bytes, 256 * 1024 - 4)
  }
})

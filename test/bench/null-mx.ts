// A durable null MX, the floor under every layer of `npm run bench:ladder`: smtp-server (the library the node's SMTP
// service is built on, same limits on line length and size), each message's bytes appended to one file and made
// durable (writev, then fdatasync, one group per turn of the event loop as the node's store commits) before the 250.
// Nothing else: no parsing, no recipient lookup, no checks, no index, no log. What any Node MX on smtp-server that
// keeps what it acknowledges must spend at least, on this machine.
// Usage: node test/bench/null-mx.ts FILE. Prints `READY {"smtp":PORT}`; on SIGTERM prints `STORED n` (messages made
// durable and acknowledged) and exits.

import { open } from 'node:fs/promises'
import { SMTPServer } from 'smtp-server'

const MESSAGE_BYTES_MAX = 50 * 1024 * 1024 // the bench node's limit
const CLIENTS_MAX = 1000

const [path] = process.argv.slice(2)
if (path === undefined) throw new Error('usage: node test/bench/null-mx.ts FILE')
const file = await open(path, 'w')

interface Waiting { bytes: Buffer, done: (err: Error | null) => void }
let queue: Waiting[] = []
let writing = false
let stored = 0

/** Writes and syncs what waits, in groups: one writev and one fdatasync for whatever arrived meanwhile. */
async function drain (): Promise<void> {
  if (writing) return
  writing = true
  try {
    while (queue.length > 0) {
      const group = queue
      queue = []
      try {
        await file.writev(group.map(w => w.bytes))
        await file.datasync()
        stored += group.length
        for (const w of group) w.done(null)
      } catch (err) {
        for (const w of group) w.done(err as Error)
      }
    }
  } finally {
    writing = false
  }
}

const server = new SMTPServer({
  secure: false,
  authOptional: true,
  disabledCommands: ['AUTH', 'STARTTLS'],
  logger: false,
  maxClients: CLIENTS_MAX,
  size: MESSAGE_BYTES_MAX,
  onData (stream, _session, callback) {
    const chunks: Buffer[] = []
    stream.on('data', (c: Buffer) => { chunks.push(c) })
    stream.on('end', () => {
      if ((stream as unknown as { sizeExceeded?: boolean }).sizeExceeded === true) { callback(new Error('Message too big')); return }
      queue.push({ bytes: Buffer.concat(chunks), done: callback })
      void drain()
    })
  }
})
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`READY ${JSON.stringify({ smtp: (server.server.address() as { port: number }).port })}\n`)
})
process.on('SIGTERM', () => {
  server.close(() => {
    void file.close().finally(() => {
      process.stdout.write(`STORED ${stored}\n`)
      process.exit(0)
    })
  })
})

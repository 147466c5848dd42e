// A lean SMTP load generator for benchmarks and crash tests: N persistent connections, each sending messages
// with PIPELINING (MAIL, RCPT, DATA in one write, RFC 2920), counting each 250 after the final dot as an
// acknowledgement. Bounded by a message count and a deadline; stops early on an AbortSignal.

import { connect } from 'node:net'
import type { Socket } from 'node:net'

export interface LoadInit {
  port: number
  connections: number
  messages: number // total over all connections
  firstId?: number // ids run from here (X-Load-Id), so several runs can share one mailbox
  sizeBytes: number // approximate size of each message
  /** The message for an id (default makeMessage): a bench that sends prepared messages (e.g. DKIM-signed ones). */
  message?: (id: number, rcpt: string) => Buffer
  recipient: (i: number) => string
  deadlineMs: number
  signal?: AbortSignal
  onAck?: (id: number, rcpt: string) => void
  onReply?: (line: string) => void // every final reply line, for diagnostics
}

export interface LoadResult {
  acked: number
  failed: number // a definite 4xx/5xx answer
  unknown: number // sent, but the connection died before an answer: not acknowledged, maybe stored
  elapsedMs: number
  latenciesMs: number[] // final dot to 250
  bytes: number
}

export function makeMessage (id: number, rcpt: string, sizeBytes: number): Buffer {
  const head = `From: Load <load@bench.test>\r\nTo: <${rcpt}>\r\nSubject: load message ${id}\r\n` +
    `Message-ID: <load-${id}@bench.test>\r\nX-Load-Id: ${id}\r\nDate: ${new Date(0).toUTCString()}\r\n\r\n`
  const line = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-_=+abcdefghij\r\n' // 78 bytes
  const n = Math.max(1, Math.ceil((sizeBytes - head.length) / line.length))
  return Buffer.from(head + line.repeat(n))
}

class Conn {
  private readonly socket: Socket
  private buf = ''
  private want: Array<(line: string) => void> = []
  dead = false
  onLine?: (line: string) => void

  constructor (socket: Socket) {
    this.socket = socket
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => {
      this.buf += d
      let i: number
      while ((i = this.buf.indexOf('\r\n')) >= 0) {
        const line = this.buf.slice(0, i)
        this.buf = this.buf.slice(i + 2)
        if (/^\d{3}-/.test(line)) continue // continuation of a multi-line reply
        this.onLine?.(line)
        this.want.shift()?.(line)
      }
    })
    const die = (): void => {
      this.dead = true
      for (const w of this.want.splice(0)) w('')
    }
    socket.on('close', die)
    socket.on('error', die)
  }

  reply (): Promise<string> {
    if (this.dead) return Promise.resolve('')
    return new Promise(resolve => this.want.push(resolve))
  }

  write (data: string | Buffer): void {
    if (!this.dead) this.socket.write(data)
  }

  close (): void {
    this.socket.destroy()
  }
}

export async function runSmtpLoad (init: LoadInit): Promise<LoadResult> {
  const res: LoadResult = { acked: 0, failed: 0, unknown: 0, elapsedMs: 0, latenciesMs: [], bytes: 0 }
  let next = 0
  const start = performance.now()
  const deadline = start + init.deadlineMs
  const conns: Conn[] = []
  const worker = async (): Promise<void> => {
    const socket = connect({ port: init.port, host: '127.0.0.1' })
    const c = new Conn(socket)
    c.onLine = init.onReply
    conns.push(c)
    const greeting = c.reply()
    await new Promise<void>((resolve) => { socket.once('connect', resolve); socket.once('error', () => resolve()) })
    if (!(await greeting).startsWith('220')) return
    c.write('EHLO load.test\r\n')
    if (!(await c.reply()).startsWith('250')) return
    while (!c.dead && next < init.messages && performance.now() < deadline && init.signal?.aborted !== true) {
      const id = (init.firstId ?? 0) + next++
      const rcpt = init.recipient(id)
      const body = init.message?.(id, rcpt) ?? makeMessage(id, rcpt, init.sizeBytes)
      const r1 = c.reply(); const r2 = c.reply(); const r3 = c.reply()
      c.write(`MAIL FROM:<load@bench.test>\r\nRCPT TO:<${rcpt}>\r\nDATA\r\n`)
      const [a, b, d] = [await r1, await r2, await r3]
      if (!a.startsWith('250') || !b.startsWith('250') || !d.startsWith('354')) {
        if (c.dead) { res.unknown++; break }
        res.failed++
        if (d.startsWith('354')) c.write('.\r\n')
        c.write('RSET\r\n')
        if (d.startsWith('354')) await c.reply()
        await c.reply()
        continue
      }
      const t0 = performance.now()
      const done = c.reply()
      c.write(Buffer.concat([body, Buffer.from('.\r\n')]))
      const r = await done
      if (r.startsWith('250')) {
        res.acked++
        res.bytes += body.length
        res.latenciesMs.push(performance.now() - t0)
        init.onAck?.(id, rcpt)
      } else if (r === '') {
        res.unknown++
      } else {
        res.failed++
      }
    }
    if (!c.dead) {
      const bye = c.reply()
      c.write('QUIT\r\n')
      await bye
    }
    c.close()
  }
  const abort = (): void => { for (const c of conns) c.close() }
  init.signal?.addEventListener('abort', abort, { once: true })
  await Promise.all(Array.from({ length: init.connections }, () => worker()))
  init.signal?.removeEventListener('abort', abort)
  res.elapsedMs = performance.now() - start
  return res
}

export function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(p / 100 * sorted.length))]
}

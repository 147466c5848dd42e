// A minimal POP3 client for benchmarks (RFC 1939): USER/PASS, STAT, and RETR of a whole maildrop pipelined
// (RFC 2449 PIPELINING) with a bounded window, counting bytes of each multi-line answer up to its ".CRLF".

import { connect } from 'node:net'
import type { Socket } from 'node:net'

const REPLY_TIMEOUT_MS = 120_000 // one answer; a stalled server fails the measurement instead of hanging it
const END = Buffer.from('\r\n.\r\n')

interface Want { multi: boolean, resolve: (r: { ok: boolean, line: string, bytes: number }) => void }

export class Pop3Raw {
  private readonly socket: Socket
  private buf: Buffer = Buffer.alloc(0)
  private readonly wants: Want[] = []
  private closed = false

  private constructor (socket: Socket) {
    this.socket = socket
    socket.on('data', (d: Buffer) => { this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]); this.drain() })
    const die = (): void => {
      this.closed = true
      for (const w of this.wants.splice(0)) w.resolve({ ok: false, line: 'connection closed', bytes: 0 })
    }
    socket.on('close', die)
    socket.on('error', die)
  }

  static async login (port: number, user: string, password: string): Promise<Pop3Raw> {
    const c = new Pop3Raw(connect({ port, host: '127.0.0.1' }))
    const greet = await c.next(false)
    if (!greet.ok) throw new Error(`POP3 greeting: ${greet.line}`)
    for (const cmd of [`USER ${user}`, `PASS ${password}`]) {
      const r = await c.send(cmd, false)
      if (!r.ok) { c.socket.destroy(); throw new Error(`POP3 ${cmd.split(' ')[0]} → ${r.line}`) }
    }
    return c
  }

  async send (cmd: string, multi: boolean): Promise<{ ok: boolean, line: string, bytes: number }> {
    const p = this.next(multi)
    if (!this.closed) this.socket.write(cmd + '\r\n')
    return await p
  }

  /** RETR 1..count with up to `window` commands in flight; returns messages and bytes received. */
  async retrAll (count: number, window: number): Promise<{ messages: number, bytes: number, failed: string | null }> {
    let sent = 0
    let messages = 0
    let bytes = 0
    let failed: string | null = null
    const inflight: Array<Promise<{ ok: boolean, line: string, bytes: number }>> = []
    while ((sent < count || inflight.length > 0) && failed === null) {
      let batch = ''
      while (sent < count && inflight.length < window) {
        inflight.push(this.next(true))
        batch += `RETR ${++sent}\r\n`
      }
      if (batch !== '') this.socket.write(batch)
      const r = await (inflight.shift() as Promise<{ ok: boolean, line: string, bytes: number }>)
      if (!r.ok) failed = r.line
      else { messages++; bytes += r.bytes }
    }
    await Promise.all(inflight)
    return { messages, bytes, failed }
  }

  async quit (): Promise<void> {
    await this.send('QUIT', false)
    this.socket.destroy()
  }

  private next (multi: boolean): Promise<{ ok: boolean, line: string, bytes: number }> {
    if (this.closed) return Promise.resolve({ ok: false, line: 'connection closed', bytes: 0 })
    let timer: NodeJS.Timeout | undefined
    return new Promise<{ ok: boolean, line: string, bytes: number }>(resolve => {
      timer = setTimeout(() => { this.socket.destroy(); resolve({ ok: false, line: 'timeout', bytes: 0 }) }, REPLY_TIMEOUT_MS)
      this.wants.push({ multi, resolve: r => { clearTimeout(timer); resolve(r) } })
    })
  }

  private drain (): void {
    for (;;) {
      const w = this.wants[0]
      if (w === undefined) { this.buf = Buffer.alloc(0); return }
      const eol = this.buf.indexOf('\r\n')
      if (eol < 0) return
      const line = this.buf.subarray(0, eol).toString('latin1')
      const ok = line.startsWith('+OK')
      if (!w.multi || !ok) {
        this.wants.shift()
        this.buf = this.buf.subarray(eol + 2)
        w.resolve({ ok, line, bytes: 0 })
        continue
      }
      // The body starts after the status line's CRLF; searching from that CRLF also finds an empty body (".CRLF").
      const end = this.buf.indexOf(END, eol)
      if (end < 0) return
      this.wants.shift()
      const bytes = end + 2 - (eol + 2)
      this.buf = this.buf.subarray(end + END.length)
      w.resolve({ ok, line, bytes })
    }
  }
}

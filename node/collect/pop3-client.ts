// A small POP3 client (RFC 1939, STLS from RFC 2595) for collection. Written here rather than using node-pop3
// (npm), which finds the end of a multi-line answer only when "\r\n.\r\n" arrives inside one
// socket read (a body split across reads at the wrong place never ends), expects each status line whole in one
// read, returns RETR as a UTF-8 string (8-bit messages would not arrive byte for byte), leaves dot-stuffing in
// place and bounds nothing. This one reads lines across reads, un-stuffs dots, returns bytes, and bounds line
// length, message size and time.

import { connect as connectTcp, isIP } from 'node:net'
import type { Socket } from 'node:net'
import { connect as connectTls } from 'node:tls'
import type { TLSSocket } from 'node:tls'

export const POP3_LINE_BYTES_MAX = 8192 // RFC 1939 says 512 for a status line; some servers' UIDL lines are longer
export const POP3_LIST_ENTRIES_MAX = 1_000_000
export const POP3_TIMEOUT_MS = 60_000 // one answer; a slow RETR of a large message gets this per read, not in total

export class Pop3Error extends Error {}

export interface Pop3Options {
  host: string
  port: number
  tls: 'implicit' | 'starttls' | 'none'
  ca?: string
  insecure?: boolean
  /** Connect to this address (checked by node/host-policy.ts) rather than resolving `host` again; TLS still verifies `host`. */
  address?: string
  timeoutMs?: number
  signal?: AbortSignal
}

export class Pop3Client {
  private socket: Socket | TLSSocket
  private buf: Buffer = Buffer.alloc(0)
  private waiter: (() => void) | null = null
  private failure: Error | null = null
  private readonly timeoutMs: number

  private constructor (socket: Socket | TLSSocket, timeoutMs: number) {
    this.socket = socket
    this.timeoutMs = timeoutMs
    this.attach(socket)
  }

  private attach (s: Socket | TLSSocket): void {
    s.on('data', (d: Buffer) => {
      this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d])
      this.wake()
    })
    s.on('error', err => { this.failure ??= err; this.wake() })
    s.on('close', () => { this.failure ??= new Pop3Error('connection closed by the server'); this.wake() })
  }

  private wake (): void {
    const w = this.waiter
    this.waiter = null
    w?.()
  }

  static async connect (o: Pop3Options): Promise<Pop3Client> {
    const timeoutMs = o.timeoutMs ?? POP3_TIMEOUT_MS
    const tlsOpts = { rejectUnauthorized: o.insecure !== true, ...(isIP(o.host) === 0 ? { servername: o.host } : {}), ...(o.ca !== undefined && o.ca !== '' ? { ca: o.ca } : {}) }
    const socket: Socket | TLSSocket = o.tls === 'implicit'
      ? connectTls({ host: o.address ?? o.host, port: o.port, ...tlsOpts })
      : connectTcp({ host: o.address ?? o.host, port: o.port })
    const client = new Pop3Client(socket, timeoutMs)
    const onAbort = (): void => { socket.destroy(new Pop3Error('aborted')) }
    o.signal?.addEventListener('abort', onAbort, { once: true })
    await client.status() // the greeting
    if (o.tls === 'starttls') {
      await client.command('STLS')
      client.socket.removeAllListeners('data')
      const secure = connectTls({ socket: client.socket as Socket, ...tlsOpts })
      client.socket = secure
      client.attach(secure)
      await new Promise<void>((resolve, reject) => {
        secure.once('secureConnect', resolve)
        secure.once('error', reject)
      })
    }
    return client
  }

  /** Reads one line (without CRLF). */
  private async line (): Promise<Buffer> {
    for (;;) {
      const eol = this.buf.indexOf('\r\n')
      if (eol >= 0) {
        if (eol > POP3_LINE_BYTES_MAX) throw new Pop3Error('line too long from the server')
        const out = this.buf.subarray(0, eol)
        this.buf = this.buf.subarray(eol + 2)
        return out
      }
      if (this.buf.length > POP3_LINE_BYTES_MAX) throw new Pop3Error('line too long from the server')
      if (this.failure !== null) throw this.failure
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => { this.waiter = null; reject(new Pop3Error('timeout waiting for the server')) }, this.timeoutMs)
        this.waiter = () => { clearTimeout(timer); resolve() }
      })
    }
  }

  private async status (): Promise<string> {
    const l = (await this.line()).toString('latin1')
    if (l.startsWith('+OK')) return l.slice(3).trim()
    throw new Pop3Error(l.startsWith('-ERR') ? `server said: ${l.slice(4).trim().slice(0, 200)}` : 'not a POP3 answer')
  }

  private async command (cmd: string): Promise<string> {
    if (/[\r\n]/.test(cmd)) throw new Pop3Error('line break in a command')
    this.socket.write(cmd + '\r\n')
    return await this.status()
  }

  /** The lines of a multi-line answer, un-stuffed, without the final ".". */
  private async multiline (onLine: (l: Buffer) => void): Promise<void> {
    for (;;) {
      const l = await this.line()
      if (l.length === 1 && l[0] === 0x2e) return
      onLine(l[0] === 0x2e ? l.subarray(1) : l)
    }
  }

  async login (user: string, password: string): Promise<void> {
    await this.command(`USER ${user}`)
    try {
      await this.command(`PASS ${password}`)
    } catch (err) {
      throw new Pop3Error(`login failed: ${(err as Error).message}`)
    }
  }

  /** Message numbers with their unique ids and sizes (UIDL and LIST). */
  async list (): Promise<Array<{ n: number, uid: string, size: number }>> {
    const uids = new Map<number, string>()
    await this.command('UIDL')
    await this.multiline(l => {
      if (uids.size >= POP3_LIST_ENTRIES_MAX) throw new Pop3Error('too many messages')
      const m = /^(\d+) ([\x21-\x7e]{1,70})$/.exec(l.toString('latin1'))
      if (m !== null) uids.set(Number(m[1]), m[2])
    })
    const out: Array<{ n: number, uid: string, size: number }> = []
    await this.command('LIST')
    await this.multiline(l => {
      const m = /^(\d+) (\d+)/.exec(l.toString('latin1'))
      if (m === null) return
      const uid = uids.get(Number(m[1]))
      if (uid !== undefined && out.length < POP3_LIST_ENTRIES_MAX) out.push({ n: Number(m[1]), uid, size: Number(m[2]) })
    })
    return out
  }

  /** The message, byte for byte (dot-stuffing removed); at most `maxBytes`. */
  async retr (n: number, maxBytes: number): Promise<Buffer> {
    await this.command(`RETR ${n}`)
    const parts: Buffer[] = []
    let size = 0
    let over = false
    await this.multiline(l => {
      size += l.length + 2
      if (size > maxBytes) { over = true; return }
      parts.push(l, CRLF)
    })
    if (over) throw new Pop3Error(`message ${n} larger than ${maxBytes} bytes`)
    return Buffer.concat(parts, size)
  }

  async dele (n: number): Promise<void> {
    await this.command(`DELE ${n}`)
  }

  /** Ends the session: the server removes the messages marked deleted only now (RFC 1939 6). */
  async quit (): Promise<void> {
    try {
      await this.command('QUIT')
    } finally {
      this.close()
    }
  }

  close (): void {
    this.socket.destroy()
  }
}

const CRLF = Buffer.from('\r\n')

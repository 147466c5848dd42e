// A small raw client for protocol tests: send bytes, read replies. SMTP replies are complete when a line has
// a space after the code; POP3 and IMAP callers pass their own completion test.

import { connect as netConnect } from 'node:net'
import type { Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { spawn } from 'node:child_process'

export const smtpDone = (buf: string): boolean => /(^|\r\n)\d{3} [^\r\n]*\r\n$/.test(buf)

export class RawClient {
  private socket: Socket
  private buf = ''
  private waiters: Array<() => void> = []
  closed = false

  private constructor (socket: Socket) {
    this.socket = socket
    this.attach()
  }

  private attach (): void {
    this.socket.setEncoding('latin1')
    this.socket.on('data', (d: string) => { this.buf += d; this.wake() })
    this.socket.on('close', () => { this.closed = true; this.wake() })
    this.socket.on('error', () => { this.closed = true; this.wake() })
  }

  private wake (): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }

  static async connect (port: number, opts: { tls?: boolean } = {}): Promise<RawClient> {
    const socket = opts.tls === true
      ? tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false })
      : netConnect({ port, host: '127.0.0.1' })
    await new Promise<void>((resolve, reject) => {
      socket.once(opts.tls === true ? 'secureConnect' : 'connect', () => resolve())
      socket.once('error', reject)
    })
    return new RawClient(socket)
  }

  /** Waits until done(buffer) holds, the peer closes, or the timeout passes; returns and clears the buffer. */
  async read (done: (buf: string) => boolean = smtpDone, timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs
    while (!done(this.buf) && !this.closed) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timeout waiting for reply; have ${JSON.stringify(this.buf.slice(0, 500))}`)
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, left)
        this.waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
    const out = this.buf
    this.buf = ''
    return out
  }

  write (data: string | Buffer): void {
    this.socket.write(data)
  }

  async cmd (line: string, done: (buf: string) => boolean = smtpDone, timeoutMs?: number): Promise<string> {
    this.write(line + '\r\n')
    return await this.read(done, timeoutMs)
  }

  async upgrade (): Promise<void> {
    const plain = this.socket
    plain.removeAllListeners('data')
    const secure = tlsConnect({ socket: plain, rejectUnauthorized: false, servername: 'localhost' })
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve())
      secure.once('error', reject)
    })
    this.socket = secure
    this.attach()
  }

  async waitClosed (timeoutMs = 10_000): Promise<boolean> {
    try {
      await this.read(() => false, timeoutMs)
    } catch {
      return false
    }
    return this.closed
  }

  close (): void {
    this.socket.destroy()
  }
}

/** Runs a Python 3 script; resolves with its exit code and output. */
export async function python (script: string, args: string[] = [], timeoutMs = 60_000): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return await new Promise((resolve, reject) => {
    const child = spawn('python3', ['-c', script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', d => { stdout += d })
    child.stderr.on('data', d => { stderr += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', reject)
    child.on('close', code => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
}

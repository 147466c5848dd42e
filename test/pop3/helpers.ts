// Fixtures for the POP3 tests: a temporary LevelDB store with one user, POP3 servers on ephemeral loopback ports,
// a self-signed certificate, log capture, Python's poplib as a real client, and a raw-socket client for hostile
// input.

import { spawn } from 'node:child_process'
import { connect } from 'node:net'
import type { Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { generate } from 'selfsigned'
import pino from 'pino'
import type { Logger } from 'pino'
import { createStore } from '../../store/index.ts'
import type { Store } from '../../store/index.ts'
import { createAuthenticator } from '../../node/auth.ts'
import type { Authenticator } from '../../node/auth.ts'
import { AuthThrottle, ConnectionLimiter } from '../../node/limits.ts'
import { createPop3Server } from '../../node/pop3/index.ts'
import type { Pop3Init, Pop3Server } from '../../node/pop3/index.ts'
import { tempDir } from '../helpers/tmp.ts'

type After = { after: (fn: () => Promise<void>) => void }

export const USER = 'alice@example.com'
export const PASSWORD = 'correct horse battery' // spaces on purpose: RFC 1939 7 lets PASS carry them

export interface Fixture {
  store: Store
  dir: string
  cafile: string
  tls: { key: string, cert: string }
  logs: Array<Record<string, unknown>>
  logger: Logger
  auth: Authenticator
  server (init: Partial<Pop3Init>, opts?: { limiter?: ConnectionLimiter, auth?: Authenticator }): Promise<{ port: number, server: Pop3Server }>
}

export async function fixture (t: After): Promise<Fixture> {
  const dir = await tempDir(t, 'mailgrid-pop3-')
  const store = createStore({}, { path: join(dir, 'store'), scryptLogN: 10 })
  await store.start()
  t.after(async () => { await store.stop() })
  await store.addDomain('example.com')
  await store.addUser({ address: USER, password: PASSWORD })
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], { keyType: 'ec', algorithm: 'sha256' })
  const tls = { key: pems.private, cert: pems.cert }
  const cafile = join(dir, 'ca.pem')
  await writeFile(cafile, pems.cert)
  const logs: Array<Record<string, unknown>> = []
  const logger = pino({ level: 'debug' }, { write (s: string) { logs.push(JSON.parse(s)) } })
  // The per-IP budget is large: every test client comes from 127.0.0.1
  const auth = createAuthenticator({ directory: store, throttle: new AuthThrottle({ perIp: 10_000, perAccount: 10_000 }) })
  return {
    store,
    dir,
    cafile,
    tls,
    logs,
    logger,
    auth,
    async server (init, opts = {}) {
      const server = createPop3Server(
        { store, auth: opts.auth ?? auth, logger, limiter: opts.limiter ?? new ConnectionLimiter() },
        { host: '127.0.0.1', port: 0, tls, idleTimeoutMs: 60_000, ...init }
      )
      const { port } = await server.listen()
      t.after(async () => { await server.close() })
      return { port, server }
    }
  }
}

export type Step = [string, ...Array<string | number>]
export type StepResult = { ok: true, r: any } | { ok: false, err: string }

const SCRIPT = join(fileURLToPath(new URL('.', import.meta.url)), 'poplib_client.py')

/** Runs a poplib session; the first result is the greeting. */
export async function poplib (plan: { port: number, mode: 'plain' | 'stls' | 'ssl', cafile?: string, steps: Step[] }): Promise<StepResult[]> {
  const child = spawn('python3', [SCRIPT], { stdio: ['pipe', 'pipe', 'pipe'] })
  const out: Buffer[] = []
  const errOut: Buffer[] = []
  child.stdout.on('data', (d: Buffer) => out.push(d))
  child.stderr.on('data', (d: Buffer) => errOut.push(d))
  child.stdin.end(JSON.stringify({ host: '127.0.0.1', cafile: null, ...plan }))
  const code = await new Promise<number | null>(resolve => child.on('close', resolve))
  if (code !== 0) throw new Error(`poplib client failed (${code}): ${Buffer.concat(errOut).toString()}`)
  return JSON.parse(Buffer.concat(out).toString())
}

/** The bytes of a poplib message result (RETR/TOP), line breaks restored as CRLF. */
export function bytesOf (r: StepResult, finalCrlf: boolean): Buffer {
  if (!r.ok) throw new Error('step failed: ' + r.err)
  return Buffer.concat([Buffer.from(r.r.data, 'latin1'), Buffer.from(finalCrlf ? '\r\n' : '')])
}

/** A raw client for hostile input: sends bytes, reads lines, sees the close. */
export class RawClient {
  readonly socket: Socket
  // received bytes: a list joined only when read, so a 20 MB response is not copied once per chunk
  private chunks: Buffer[] = []
  private joined: Buffer = Buffer.alloc(0)
  private tail: Buffer = Buffer.alloc(0) // the last 4 bytes, to find "\r\n.\r\n" across chunk boundaries
  private endSeen = false
  closed = false
  private waiter: (() => void) | null = null

  private get buf (): Buffer {
    if (this.chunks.length > 0) {
      this.joined = Buffer.concat([this.joined, ...this.chunks])
      this.chunks = []
    }
    return this.joined
  }

  private set buf (b: Buffer) {
    this.chunks = []
    this.joined = b
    this.endSeen = b.includes('\r\n.\r\n') || b.subarray(0, 3).equals(Buffer.from('.\r\n'))
    this.tail = b.subarray(Math.max(0, b.length - 4))
  }

  private constructor (socket: Socket) {
    this.socket = socket
    socket.on('data', (d: Buffer) => {
      const probe = Buffer.concat([this.tail, d.subarray(0, 4)])
      if (probe.includes('\r\n.\r\n') || d.includes('\r\n.\r\n')) this.endSeen = true
      this.tail = Buffer.concat([this.tail, d]).subarray(-4)
      this.chunks.push(d)
      this.poke()
    })
    socket.on('close', () => { this.closed = true; this.poke() })
    socket.on('error', () => {})
  }

  static async open (port: number, tls = false): Promise<RawClient> {
    const socket = tls
      ? tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false })
      : connect({ host: '127.0.0.1', port })
    await new Promise<void>((resolve, reject) => {
      socket.once(tls ? 'secureConnect' : 'connect', () => resolve())
      socket.once('error', reject)
    })
    return new RawClient(socket)
  }

  private poke (): void {
    const w = this.waiter
    this.waiter = null
    w?.()
  }

  send (data: string | Buffer): void {
    this.socket.write(data)
  }

  /** Waits until `n` bytes after position 0 satisfy `done`; bounded by a deadline. */
  private async until (done: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!done()) {
      if (this.closed) throw new Error(`connection closed while waiting for ${what}; got ${JSON.stringify(this.buf.toString('latin1').slice(0, 200))}`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timeout waiting for ${what}`)
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, left)
        this.waiter = () => { clearTimeout(timer); resolve() }
      })
    }
  }

  async line (): Promise<string> {
    await this.until(() => this.buf.includes('\r\n'), 'a line')
    const i = this.buf.indexOf('\r\n')
    const line = this.buf.subarray(0, i).toString('latin1')
    this.buf = this.buf.subarray(i + 2)
    return line
  }

  /** A multi-line response body up to the "." line, raw (still stuffed), after its status line was read. */
  async multiline (timeoutMs = 10_000): Promise<Buffer> {
    // the end is found as chunks arrive (constructor); the whole buffer is joined and searched once
    await this.until(() => this.endSeen || (this.chunks.length === 0 && this.joined.subarray(0, 3).equals(Buffer.from('.\r\n'))) || this.buf.subarray(0, 3).equals(Buffer.from('.\r\n')), 'a multi-line end', timeoutMs)
    const i = this.buf.subarray(0, 3).equals(Buffer.from('.\r\n')) ? -2 : this.buf.indexOf('\r\n.\r\n')
    const body = this.buf.subarray(0, i + 2)
    this.buf = this.buf.subarray(i + 5)
    return body
  }

  async lines (n: number): Promise<string[]> {
    const out: string[] = []
    for (let i = 0; i < n; i++) out.push(await this.line())
    return out
  }

  /** Resolves once the server has closed the connection; throws after the deadline. */
  async closedByServer (timeoutMs = 10_000): Promise<void> {
    await this.until(() => this.closed, 'close', timeoutMs).catch(e => {
      if (!this.closed) throw e
    })
  }

  get pending (): string {
    return this.buf.toString('latin1')
  }

  close (): void {
    this.socket.destroy()
  }
}

/** Logs in a raw client with USER/PASS (the server must allow plaintext here). */
export async function rawLogin (c: RawClient): Promise<void> {
  const greeting = await c.line()
  if (!greeting.startsWith('+OK')) throw new Error(greeting)
  c.send(`USER ${USER}\r\nPASS ${PASSWORD}\r\n`)
  const [u, p] = await c.lines(2)
  if (!u.startsWith('+OK') || !p.startsWith('+OK')) throw new Error(`${u} / ${p}`)
}

/** A message of about `bytes` octets with CRLF lines, some starting with '.'. */
export function bigMessage (bytes: number): Buffer {
  const head = 'From: a@example.com\r\nTo: alice@example.com\r\nSubject: big\r\n\r\n'
  const lines: string[] = []
  let size = head.length
  for (let i = 0; size < bytes; i++) {
    const line = (i % 7 === 0 ? '.' : '') + `line ${i} ` + 'x'.repeat(60 + (i % 13)) + '\r\n'
    lines.push(line)
    size += line.length
  }
  return Buffer.from(head + lines.join(''))
}

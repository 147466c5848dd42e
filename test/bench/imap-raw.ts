// A minimal IMAP client for benchmarks: one command at a time (or IDLE), responses parsed as lines with
// literals ({N} at the end of a line, RFC 3501 4.3 / RFC 9051 4.3), literal bytes counted and skipped unless
// the caller asks for them. It never buffers a FETCH BODY[] stream beyond the current chunk, so the client does
// not limit the server's measured throughput.

import { connect } from 'node:net'
import type { Socket } from 'node:net'

const REPLY_TIMEOUT_MS = 600_000 // one command; a full fetch of 50,000 messages on a loaded machine stays well under it
const LINE_BYTES_MAX = 1024 * 1024 // a response line outside literals (a SEARCH result of 50,000 UIDs is ~300 KB)

export interface Untagged {
  text: string // the response without its literals, each literal replaced by {N}
  literalBytes: number
  literals?: Buffer[] // only when keepLiterals
}

export interface Tagged {
  ok: boolean
  status: string // OK, NO, BAD
  text: string
  untagged: Untagged[] // only when collected
}

export class ImapRaw {
  private readonly socket: Socket
  private pending: Buffer = Buffer.alloc(0)
  private literalLeft = 0
  private current: Untagged = { text: '', literalBytes: 0 }
  private keep: Buffer[] | null = null
  private seq = 0
  private waiter: { tag: string, resolve: (t: Tagged) => void, reject: (e: Error) => void, collect: boolean, untagged: Untagged[], onUntagged?: (u: Untagged) => void, keepLiterals: boolean } | null = null
  private contWaiter: (() => void) | null = null
  private greetingWaiter: ((line: string) => void) | null = null
  private closedErr: Error | null = null
  literalBytesTotal = 0

  private constructor (socket: Socket) {
    this.socket = socket
    socket.on('data', (d: Buffer) => { this.onData(d) })
    const fail = (err?: Error): void => {
      this.closedErr ??= err ?? new Error('connection closed')
      this.waiter?.reject(this.closedErr)
      this.waiter = null
      this.greetingWaiter?.('')
    }
    socket.on('error', fail)
    socket.on('close', () => fail())
  }

  static async connect (port: number, timeoutMs = 30_000): Promise<ImapRaw> {
    const socket = connect({ port, host: '127.0.0.1' })
    const c = new ImapRaw(socket)
    const greeting = await withTimeout(new Promise<string>(resolve => { c.greetingWaiter = resolve }), timeoutMs, 'greeting')
    if (!greeting.startsWith('* OK')) { socket.destroy(); throw new Error(`bad greeting: ${greeting}`) }
    return c
  }

  /** Sends `TAG command`; resolves at the tagged reply. Untagged responses are collected when `collect`. */
  async command (cmd: string, opts: { collect?: boolean, keepLiterals?: boolean, onUntagged?: (u: Untagged) => void } = {}): Promise<Tagged> {
    if (this.closedErr !== null) throw this.closedErr
    if (this.waiter !== null) throw new Error('one command at a time')
    const tag = `b${++this.seq}`
    const done = new Promise<Tagged>((resolve, reject) => {
      this.waiter = { tag, resolve, reject, collect: opts.collect === true, untagged: [], onUntagged: opts.onUntagged, keepLiterals: opts.keepLiterals === true }
    })
    this.socket.write(`${tag} ${cmd}\r\n`)
    return await withTimeout(done, REPLY_TIMEOUT_MS, cmd.slice(0, 40))
  }

  /** Checked command: throws with the server's words unless OK. */
  async ok (cmd: string, opts: { collect?: boolean, keepLiterals?: boolean, onUntagged?: (u: Untagged) => void } = {}): Promise<Tagged> {
    const r = await this.command(cmd, opts)
    if (!r.ok) throw new Error(`${cmd.split(' ')[0]} → ${r.status} ${r.text}`)
    return r
  }

  /** Starts IDLE (RFC 2177) and resolves at the server's continuation; the tagged reply comes after DONE. */
  async idle (): Promise<{ end: Promise<Tagged> }> {
    const cont = new Promise<void>(resolve => { this.contWaiter = resolve })
    const end = this.command('IDLE')
    end.catch(() => {})
    await Promise.race([cont, end.then(r => { throw new Error(`IDLE → ${r.status} ${r.text}`) })])
    return { end } // wrapped: an async function would otherwise wait for the tagged reply, which follows DONE
  }

  done (): void {
    this.socket.write('DONE\r\n')
  }

  close (): void {
    this.socket.destroy()
  }

  private onData (chunk: Buffer): void {
    let pos = 0
    while (pos < chunk.length) {
      if (this.literalLeft > 0) {
        const n = Math.min(this.literalLeft, chunk.length - pos)
        this.keep?.push(chunk.subarray(pos, pos + n))
        this.literalLeft -= n
        this.current.literalBytes += n
        this.literalBytesTotal += n
        pos += n
        if (this.literalLeft === 0 && this.keep !== null) {
          ;(this.current.literals ??= []).push(Buffer.concat(this.keep))
          this.keep = null
        }
        continue
      }
      const nl = chunk.indexOf(10, pos)
      if (nl < 0) {
        this.pending = Buffer.concat([this.pending, chunk.subarray(pos)])
        if (this.pending.length > LINE_BYTES_MAX) this.socket.destroy(new Error('response line too long'))
        return
      }
      const piece = chunk.subarray(pos, nl + 1)
      const line = (this.pending.length > 0 ? Buffer.concat([this.pending, piece]) : piece).toString('latin1').replace(/\r?\n$/, '')
      this.pending = Buffer.alloc(0)
      pos = nl + 1
      this.onLine(line)
    }
  }

  private onLine (line: string): void {
    this.current.text += line
    const lit = /\{(\d+)\+?\}$/.exec(line)
    if (lit !== null) {
      this.literalLeft = Number(lit[1])
      if (this.waiter?.keepLiterals === true) this.keep = []
      if (this.literalLeft === 0 && this.keep !== null) { (this.current.literals ??= []).push(Buffer.alloc(0)); this.keep = null }
      return
    }
    const resp = this.current
    this.current = { text: '', literalBytes: 0 }
    if (this.greetingWaiter !== null) { const g = this.greetingWaiter; this.greetingWaiter = null; g(resp.text); return }
    if (resp.text.startsWith('+')) { const c = this.contWaiter; this.contWaiter = null; c?.(); return }
    const w = this.waiter
    if (w === null) return
    if (resp.text.startsWith('* ')) {
      w.onUntagged?.(resp)
      if (w.collect) w.untagged.push(resp)
      return
    }
    if (resp.text.startsWith(w.tag + ' ')) {
      this.waiter = null
      const rest = resp.text.slice(w.tag.length + 1)
      const sp = rest.indexOf(' ')
      const status = (sp < 0 ? rest : rest.slice(0, sp)).toUpperCase()
      w.resolve({ ok: status === 'OK', status, text: sp < 0 ? '' : rest.slice(sp + 1), untagged: w.untagged })
    }
  }
}

/** Logs in (LOGIN, RFC 3501 6.2.3) and returns the connection. */
export async function imapLogin (port: number, user: string, password: string): Promise<ImapRaw> {
  const c = await ImapRaw.connect(port)
  try {
    await c.ok(`LOGIN ${quote(user)} ${quote(password)}`)
  } catch (err) {
    c.close()
    throw err
  }
  return c
}

export function quote (s: string): string {
  return `"${s.replace(/[\\"]/g, m => '\\' + m)}"`
}

/** The number in `* N EXISTS` among collected untagged responses, or in a STATUS (MESSAGES N) reply. */
export function existsOf (t: Tagged): number | null {
  for (const u of t.untagged) {
    const m = /^\* (\d+) EXISTS/i.exec(u.text) ?? /MESSAGES (\d+)/i.exec(u.text)
    if (m !== null) return Number(m[1])
  }
  return null
}

async function withTimeout<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms)
    })])
  } finally {
    clearTimeout(timer)
  }
}

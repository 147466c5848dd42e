// One SMTP client session to one address, on nodemailer's SMTPConnection (we do not write an SMTP client):
// connect, greeting, EHLO, STARTTLS (opportunistic, required, or required and verified), AUTH, then any number
// of transactions separated by RSET. What nodemailer leaves open is closed here:
// - time: nodemailer's socketTimeout only notices a silent peer; a peer that trickles a byte now and then
//   could hold a session for ever. Every step here (setting up, each transaction, RSET) has a deadline after
//   which the socket is destroyed.
// - memory: nodemailer buffers at most `maxResponseSize` bytes of one reply (its default is 1 MiB), an
//   endless line without CRLF included, then drops the connection; we set REPLY_BYTES_MAX.
// - per-recipient DSN: nodemailer's envelope carries one NOTIFY/ORCPT for all recipients; RFC 3461 gives each
//   recipient its own, so the session replaces nodemailer's RCPT-parameter hook (see rcptDsnArgs).

import SMTPConnection from 'nodemailer/lib/smtp-connection'
import type { Envelope } from './types.ts'

export const REPLY_BYTES_MAX = 64 * 1024 // RFC 5321 4.5.3.1.5: a reply line is 512 bytes; 128 lines of EHLO is plenty
export const CONNECT_MS_MAX = 30_000 // TCP connect (RFC 5321 4.5.3.2 has no connect figure; Postfix smtp_connect_timeout 30 s)
export const GREETING_MS_MAX = 60_000 // RFC 5321 4.5.3.2.1 says 5 min; Postfix smtp_helo_timeout 300 s, we are less patient
export const SETUP_MS_MAX = 120_000 // connect + greeting + EHLO + STARTTLS + EHLO + AUTH, together
export const COMMAND_MS_MAX = 120_000 // silence while waiting for one reply (RFC 5321 4.5.3.2.2 MAIL 5 min)
export const TRANSACTION_MS_MAX = 600_000 // MAIL to the reply after the final dot (RFC 5321 4.5.3.2.6: 10 min)
export const RESPONSE_CHARS_MAX = 1000 // what one outcome keeps of a remote's reply

export interface SessionTimeouts {
  connectMs?: number
  greetingMs?: number
  setupMs?: number
  commandMs?: number
  transactionMs?: number
}

export interface SessionInit {
  address: string // an IP address: DNS was done by the caller
  port: number
  /** The remote's name: SNI, certificate checks, and the 'name[ip]:port' shown in outcomes. */
  servername: string
  /** Our name in EHLO. */
  name: string
  /** smtps: TLS from the first byte. */
  implicitTls?: boolean
  /** opportunistic: STARTTLS when offered, certificate not checked; required: STARTTLS or fail; none: plaintext. */
  starttls: 'opportunistic' | 'required' | 'none'
  /** Check the certificate against `servername` (MTA-STS enforce, the smarthost). */
  verifyCertificate: boolean
  ca?: string | string[]
  auth?: { user: string, pass: string }
  timeouts?: SessionTimeouts
}

/** The remote's answer to one transaction, per recipient, or why the session failed. */
export interface TransactionResult {
  /** Per recipient in envelope order: the reply code and text, or null when no reply concerns it (session failure). */
  replies: Array<{ code: number, response: string } | null>
  /** The session broke (or cannot be trusted): do not reuse it. */
  broken: boolean
  /** When broken: what happened, for the recipients without a reply. */
  error?: string
}

export class SessionError extends Error {
  readonly code: number // the reply code when a server answered (greeting 554, EHLO 421, AUTH 535), else 0
  readonly response: string
  readonly tls: boolean // a TLS failure (handshake, certificate, STARTTLS refused)
  readonly auth: boolean // AUTH was refused (wrong credentials, no common mechanism)
  constructor (message: string, code: number, response: string, tls: boolean, auth = false) {
    super(message)
    this.code = code
    this.response = response
    this.tls = tls
    this.auth = auth
  }
}

interface NodemailerError extends Error { code?: string, responseCode?: number, response?: string, command?: string, rejectedErrors?: NodemailerError[], recipient?: string }

/** The parts of nodemailer's SMTPConnection this module relies on beyond its typed API. */
interface ConnectionInternals {
  _supportedExtensions?: string[]
  _maxAllowedSize?: number | false
  _recipientQueue?: string[]
  _envelope?: { accepted?: string[], rejectedErrors?: NodemailerError[] } | false
  _getDsnRcptToArgs?: () => string
}

export class Session {
  readonly remote: string
  readonly init: SessionInit
  /** The name the remote gave in its EHLO (or HELO) reply. */
  ehloName = ''
  secure = false
  transactions = 0
  lastUsedAt = 0
  private readonly conn: SMTPConnection
  private readonly internals: ConnectionInternals
  private dead = false
  private rcptArgs: Map<string, string> = new Map()

  private constructor (init: SessionInit) {
    this.init = init
    this.remote = `${init.servername}[${init.address}]:${init.port}`
    const t = init.timeouts ?? {}
    const tls = {
      servername: init.servername,
      rejectUnauthorized: init.verifyCertificate,
      ...(init.ca !== undefined ? { ca: init.ca } : {}),
      minVersion: 'TLSv1.2' as const
    }
    const options = {
      host: init.address,
      port: init.port,
      name: init.name,
      secure: init.implicitTls === true,
      servername: init.servername,
      ignoreTLS: init.starttls === 'none',
      requireTLS: init.starttls === 'required',
      opportunisticTLS: init.starttls === 'opportunistic',
      tls,
      connectionTimeout: t.connectMs ?? CONNECT_MS_MAX,
      greetingTimeout: t.greetingMs ?? GREETING_MS_MAX,
      socketTimeout: t.commandMs ?? COMMAND_MS_MAX,
      socketCloseTimeout: 1000,
      maxResponseSize: REPLY_BYTES_MAX,
      allowInternalNetworkInterfaces: true,
      logger: false
    }
    this.conn = new SMTPConnection(options as SMTPConnection.Options)
    this.internals = this.conn as unknown as ConnectionInternals
    // RFC 3461 4.1/4.2: NOTIFY and ORCPT belong to each recipient; nodemailer asks this hook right after it
    // queued the recipient whose RCPT TO it is writing.
    if (typeof this.internals._getDsnRcptToArgs === 'function') {
      this.internals._getDsnRcptToArgs = () => {
        const q = this.internals._recipientQueue ?? []
        return this.rcptArgs.get(q[q.length - 1] ?? '') ?? ''
      }
    }
    this.conn.on('error', () => { this.dead = true })
    this.conn.on('end', () => { this.dead = true })
  }

  get usable (): boolean {
    return !this.dead && !(this.conn as unknown as { destroyed?: boolean }).destroyed
  }

  get extensions (): string[] { return this.internals._supportedExtensions ?? [] }

  /** The SIZE the remote announced; 0 when none or unlimited. */
  get sizeLimit (): number { return typeof this.internals._maxAllowedSize === 'number' ? this.internals._maxAllowedSize : 0 }

  /** Connects and sets the session up (greeting, EHLO, STARTTLS, AUTH); throws SessionError. */
  static async open (init: SessionInit, signal?: AbortSignal): Promise<Session> {
    const s = new Session(init)
    const setupMs = init.timeouts?.setupMs ?? SETUP_MS_MAX
    try {
      await s.bounded(setupMs, signal, 'setting up the session', done => s.conn.connect(err => done(err)))
    } catch (err) {
      s.close()
      throw toSessionError(err, false)
    }
    if (init.auth !== undefined) {
      const auth = init.auth
      try {
        await s.bounded(setupMs, signal, 'AUTH', done => s.conn.login({ user: auth.user, pass: auth.pass }, err => done(err)))
      } catch (err) {
        s.close()
        throw toSessionError(err, true)
      }
    }
    s.secure = s.conn.secure
    const last = typeof s.conn.lastServerResponse === 'string' ? s.conn.lastServerResponse : ''
    s.ehloName = /^\d{3}[ -](\S+)/.exec(last)?.[1]?.toLowerCase() ?? ''
    s.lastUsedAt = Date.now()
    return s
  }

  /** One transaction; never throws: a broken session is reported in the result. */
  async send (envelope: Envelope, message: Buffer, signal?: AbortSignal): Promise<TransactionResult> {
    this.transactions++
    const rcpts = envelope.rcpts.map(r => r.address)
    const dsnOffered = this.extensions.includes('DSN')
    this.rcptArgs = new Map(envelope.rcpts.map(r => [r.address, dsnOffered ? rcptDsnArgs(r) : '']))
    const hasDsn = envelope.dsn?.ret !== undefined || envelope.dsn?.envid !== undefined
    const nmEnvelope = {
      from: envelope.from,
      to: rcpts,
      size: message.length,
      use8BitMime: envelope.eightBit === true,
      ...(hasDsn ? { dsn: { ret: envelope.dsn?.ret, envid: envelope.dsn?.envid } } : {})
    }
    const limitMs = this.init.timeouts?.transactionMs ?? TRANSACTION_MS_MAX
    try {
      const info = await this.bounded<SMTPConnection.SentMessageInfo>(limitMs, signal, 'the transaction', done =>
        this.conn.send(nmEnvelope as SMTPConnection.Envelope, message, (err, i) => done(err, i)))
      this.lastUsedAt = Date.now()
      const byRcpt = rejectedByRcpt(info.rejectedErrors)
      const final = parseReply(info.response)
      return { replies: rcpts.map(r => byRcpt.get(r) ?? final), broken: false }
    } catch (e) {
      this.lastUsedAt = Date.now()
      const err = e as NodemailerError
      const reply = err.response !== undefined ? parseReply(err.response) : null
      if (err.code === 'EENVELOPE' && err.command === 'MAIL FROM' && reply !== null) {
        return { replies: rcpts.map(() => reply), broken: !this.usable } // the sender refused: every recipient
      }
      if (err.code === 'EENVELOPE' && err.command === 'RCPT TO') {
        const byRcpt = rejectedByRcpt(err.rejectedErrors)
        return { replies: rcpts.map(r => byRcpt.get(r) ?? reply), broken: !this.usable }
      }
      if ((err.code === 'EENVELOPE' || err.code === 'EMESSAGE') && err.command === 'DATA' && reply !== null) {
        // RFC 5321 3.3: a failure at DATA or after the dot applies to every accepted recipient.
        const env = this.internals._envelope
        const byRcpt = rejectedByRcpt(env === false || env === undefined ? undefined : env.rejectedErrors)
        return { replies: rcpts.map(r => byRcpt.get(r) ?? reply), broken: !this.usable }
      }
      this.close()
      return { replies: rcpts.map(() => null), broken: true, error: describe(err) }
    }
  }

  /** RSET before the session's next transaction; false when the session is no longer usable. */
  async reset (signal?: AbortSignal): Promise<boolean> {
    if (!this.usable) return false
    try {
      await this.bounded(this.init.timeouts?.commandMs ?? COMMAND_MS_MAX, signal, 'RSET', done => this.conn.reset(err => done(err)))
      return true
    } catch {
      this.close()
      return false
    }
  }

  /** QUIT when the session is healthy, then close; safe to call twice. */
  close (): void {
    if (!this.dead && this.conn.stage === 'connected') {
      try { this.conn.quit() } catch {}
    }
    this.dead = true
    this.conn.close()
  }

  /** Runs one nodemailer step with a deadline and the caller's signal; both destroy the connection. */
  private async bounded<T> (limitMs: number, signal: AbortSignal | undefined, what: string,
    start: (done: (err: Error | null | undefined | false, value?: T) => void) => void): Promise<T> {
    signal?.throwIfAborted()
    return await new Promise<T>((resolve, reject) => {
      let finished = false
      const finish = (err: Error | null, value?: T): void => {
        if (finished) return
        finished = true
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        this.conn.removeListener('error', onError)
        if (err !== null) reject(err)
        else resolve(value as T)
      }
      const fail = (err: Error): void => {
        this.dead = true
        this.conn.close()
        finish(err)
      }
      const onAbort = (): void => fail(signal?.reason instanceof Error ? signal.reason : new Error('aborted'))
      // nodemailer reports a connection that fails (refused, reset, timed out, TLS) as an 'error' event, and
      // for some steps never calls the step's callback.
      const onError = (err: Error): void => { this.dead = true; finish(err) }
      this.conn.once('error', onError)
      const timer = setTimeout(() => fail(Object.assign(new Error(`${what} took more than ${limitMs} ms`), { code: 'ETIMEDOUT' })), limitMs)
      signal?.addEventListener('abort', onAbort, { once: true })
      try {
        start((err, value) => finish(err === null || err === undefined || err === false ? null : err, value))
      } catch (err) {
        fail(err as Error)
      }
    })
  }
}

/** RFC 3461 NOTIFY and ORCPT of one recipient, xtext-encoded (RFC 3461 4). */
export function rcptDsnArgs (r: Envelope['rcpts'][number]): string {
  const args: string[] = []
  if (r.notify !== undefined && r.notify.length > 0) args.push(`NOTIFY=${r.notify.join(',')}`)
  if (r.orcpt !== undefined && r.orcpt !== '') {
    const orcpt = r.orcpt.includes(';') ? r.orcpt : `rfc822;${r.orcpt}`
    const semi = orcpt.indexOf(';')
    args.push(`ORCPT=${orcpt.slice(0, semi)};${xtext(orcpt.slice(semi + 1))}`)
  }
  return args.length > 0 ? ` ${args.join(' ')}` : ''
}

export function xtext (s: string): string {
  let out = ''
  for (const b of Buffer.from(s)) {
    out += b < 0x21 || b > 0x7e || b === 0x2b || b === 0x3d ? `+${b.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(b)
  }
  return out
}

/** '550 5.1.1 <x>: no such user' -> code and the text on one line, bounded. */
export function parseReply (response: string): { code: number, response: string } {
  const oneLine = response.replace(/\r?\n/g, ' ').replace(/\s+/g, ' ').trim().slice(0, RESPONSE_CHARS_MAX)
  const code = Number(/^(\d{3})/.exec(oneLine)?.[1] ?? 0)
  return { code, response: oneLine }
}

/** The RFC 3463 status in a reply, or the class of its code ('4.0.0'); '' when there is no code. */
export function enhancedOf (code: number, response: string): string {
  const m = /^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b/.exec(response)
  if (m?.[1] !== undefined) return m[1]
  return code >= 200 && code < 600 ? `${Math.floor(code / 100)}.0.0` : ''
}

function rejectedByRcpt (errors: NodemailerError[] | undefined): Map<string, { code: number, response: string }> {
  const out = new Map<string, { code: number, response: string }>()
  for (const e of errors ?? []) {
    if (e.recipient !== undefined && e.response !== undefined) out.set(e.recipient, parseReply(e.response))
  }
  return out
}

function toSessionError (err: unknown, auth: boolean): SessionError {
  const e = err as NodemailerError
  const response = e.response !== undefined ? parseReply(e.response) : { code: 0, response: '' }
  const isTls = e.code === 'ETLS' || e.command === 'STARTTLS' || /certificate|TLS|SSL|self.signed|altnames/i.test(e.message)
  // nodemailer's own AUTH errors (EAUTH, no common mechanism) carry no reply; anything after connect is AUTH's
  return new SessionError(describe(e), response.code, response.response, isTls && !auth, auth && e.code !== 'ETIMEDOUT' && e.code !== 'ECONNECTION')
}

function describe (e: NodemailerError): string {
  const text = (e.response ?? e.message ?? String(e)).replace(/\s+/g, ' ').trim()
  return text.slice(0, RESPONSE_CHARS_MAX)
}

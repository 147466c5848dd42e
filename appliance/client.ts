// The CLI's side of the admin API: finds the node through DATA/admin.json and DATA/admin.token (this machine),
// or takes a URL, a token and a certificate fingerprint (a remote node: --url, --token, --fingerprint or
// MAILGRID_URL, MAILGRID_TOKEN, MAILGRID_FINGERPRINT), sends one JSON request, and turns every failure into a
// one-line CliError the command prints.
//
// HTTPS is checked before a byte of the request (the token) is written: against the pinned SHA-256 fingerprint
// when one is given (the node's self-signed certificate), else against the system's CAs and the host name.
// Plain HTTP is refused for anything but a loopback address.

import { request as httpRequest } from 'node:http'
import type { ClientRequest, IncomingMessage } from 'node:http'
import { connect as tlsConnect } from 'node:tls'
import type { TLSSocket } from 'node:tls'
import { isIP } from 'node:net'
import { isLoopbackHost } from './config.ts'
import { processAlive, readAdminInfo, readToken } from './runtime.ts'

export const CLI_REQUEST_TIMEOUT_MS = 30_000 // longer than any admin request should take (scrypt, a fsync)
export const CLI_RESPONSE_BYTES_MAX = 64 * 1024 * 1024 // a listing of many users still fits; a stray server's stream does not
export const FINGERPRINT_HEX_CHARS = 64 // SHA-256

/** A failure to report on one line; exit code 1. */
export class CliError extends Error {
  /** The admin API's HTTP status when it answered with an error. */
  readonly status: number | undefined
  constructor (message: string, status?: number) {
    super(message)
    this.name = 'CliError'
    this.status = status
  }
}

export interface AdminClient {
  request (method: string, path: string, body?: unknown): Promise<any>
  /** The admin URL this client talks to. */
  readonly url: string
}

export interface ConnectOptions {
  /** Per request; default CLI_REQUEST_TIMEOUT_MS. Polling callers (cluster up) use a short one. */
  timeoutMs?: number
}

/** A remote node: its admin URL, the bearer token, and the certificate's fingerprint to pin (optional for a CA-signed one). */
export interface RemoteTarget {
  url: string
  token: string
  fingerprint?: string
}

/**
 * A fingerprint as typed or pasted (`AB:CD:...`, `abcd...`, `sha256:AB:CD...`) in X509Certificate's form
 * (upper-case hex pairs joined by colons); null when it is not a SHA-256 fingerprint.
 */
export function normalizeFingerprint (text: string): string | null {
  const hex = text.trim().replace(/^sha-?256[:\s]\s*/i, '').replace(/[:\s]/g, '').toUpperCase()
  if (!new RegExp(`^[0-9A-F]{${FINGERPRINT_HEX_CHARS}}$`).test(hex)) return null
  return hex.match(/../g)!.join(':')
}

interface Target {
  url: URL
  token: string
  fingerprint: string | null
  /** Where the token came from, for the message when it is refused. */
  tokenSource: string
  /** How to name the node in messages. */
  who: string
}

/** A client for the node running on this data dir; throws CliError when no node is running there. */
export async function connect (dataDir: string, options: ConnectOptions = {}): Promise<AdminClient> {
  const info = await readAdminInfo(dataDir)
  const token = await readToken(dataDir)
  if (info === null || token === null || !processAlive(info.pid)) {
    // A node killed without a clean stop leaves admin.json behind; its pid tells that nobody answers there.
    throw new CliError(`no node is running on data dir ${dataDir} (start one with: mailgrid start --data ${dataDir})`)
  }
  return client({
    url: new URL(info.url),
    token,
    fingerprint: info.fingerprint === undefined ? null : normalizeFingerprint(info.fingerprint),
    tokenSource: `the token in ${dataDir}/admin.token`,
    who: `the node of data dir ${dataDir} (${info.url})`
  }, options)
}

/** A client for a node elsewhere; throws CliError for a URL it will not send a token to. */
export function connectRemote (remote: RemoteTarget, options: ConnectOptions = {}): AdminClient {
  let url: URL
  try {
    url = new URL(remote.url)
  } catch {
    throw new CliError(`not a URL: ${remote.url} (expected https://HOST:PORT)`)
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new CliError(`not an admin URL: ${remote.url} (expected https://HOST:PORT)`)
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    throw new CliError(`refusing to send the admin token in clear to ${url.host}: use https:// (plain HTTP is for loopback only)`)
  }
  let fingerprint: string | null = null
  if (remote.fingerprint !== undefined && remote.fingerprint !== '') {
    fingerprint = normalizeFingerprint(remote.fingerprint)
    if (fingerprint === null) throw new CliError(`not a SHA-256 fingerprint: ${remote.fingerprint} (64 hex digits, colons optional)`)
  }
  return client({ url, token: remote.token, fingerprint, tokenSource: 'the token given (--token or MAILGRID_TOKEN)', who: `the node at ${url.origin}` }, options)
}

/** The TLS connection, checked before anything is sent on it. */
async function secureSocket (t: Target, signal: AbortSignal): Promise<TLSSocket> {
  const host = t.url.hostname.replace(/^\[|\]$/g, '')
  const socket = tlsConnect({
    host,
    port: Number(t.url.port === '' ? 443 : t.url.port),
    ...(isIP(host) === 0 ? { servername: host } : {}),
    minVersion: 'TLSv1.2',
    // decided below, by the pin or by the CA check, before the request is written
    rejectUnauthorized: false
  })
  const abort = (): void => { socket.destroy(new Error('timeout')) }
  signal.addEventListener('abort', abort, { once: true })
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', () => resolve())
      socket.once('error', reject)
    })
  } finally {
    signal.removeEventListener('abort', abort)
  }
  const presented = socket.getPeerCertificate().fingerprint256 ?? ''
  if (t.fingerprint !== null) {
    if (presented.toUpperCase() !== t.fingerprint) {
      socket.destroy()
      throw new CliError(`${t.who} presents a certificate with SHA-256 fingerprint ${presented}, not the pinned ${t.fingerprint}: refusing to send the token (another machine, or someone in between; first boot and \`mailgrid status\` show the right one)`)
    }
    return socket
  }
  if (!socket.authorized) {
    socket.destroy()
    throw new CliError(`${t.who} presents a certificate this machine does not trust (${String(socket.authorizationError)}); if it is the node's own, pin it: --fingerprint ${presented} (check it against what first boot or \`mailgrid status\` on the node shows)`)
  }
  return socket
}

function describe (err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message ?? String(err)
}

function client (t: Target, options: ConnectOptions): AdminClient {
  const timeoutMs = options.timeoutMs ?? CLI_REQUEST_TIMEOUT_MS
  return {
    url: t.url.origin,
    async request (method, path, body) {
      const signal = AbortSignal.timeout(timeoutMs)
      const payload = body === undefined ? undefined : JSON.stringify(body)
      let socket: TLSSocket | null = null
      if (t.url.protocol === 'https:') {
        try {
          socket = await secureSocket(t, signal)
        } catch (err) {
          if (err instanceof CliError) throw err
          throw new CliError(`${t.who} does not answer (${describe(err)}); is it running?`)
        }
      }
      const tls = socket
      let res: IncomingMessage
      let text: string
      try {
        ({ res, text } = await new Promise<{ res: IncomingMessage, text: string }>((resolve, reject) => {
          const req: ClientRequest = httpRequest({
            host: t.url.hostname.replace(/^\[|\]$/g, ''),
            port: Number(t.url.port === '' ? (tls === null ? 80 : 443) : t.url.port),
            method,
            path: t.url.pathname.replace(/\/$/, '') + path,
            headers: {
              host: t.url.host,
              authorization: `Bearer ${t.token}`,
              ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) })
            },
            // no agent: a fresh connection per request, the checked TLS socket when there is one
            ...(tls === null ? { agent: false } : { createConnection: () => tls }),
            signal
          }, r => {
            const chunks: Buffer[] = []
            let size = 0
            r.on('data', (c: Buffer) => {
              size += c.length
              if (size > CLI_RESPONSE_BYTES_MAX) { req.destroy(new CliError(`${t.who} sent an oversized answer`)); return }
              chunks.push(c)
            })
            r.once('end', () => resolve({ res: r, text: Buffer.concat(chunks).toString('utf8') }))
            r.once('error', reject)
          })
          req.once('error', reject)
          req.end(payload)
        }))
      } catch (err) {
        if (err instanceof CliError) throw err
        throw new CliError(`${t.who} does not answer (${signal.aborted ? 'timeout' : describe(err)}); is it running?`)
      } finally {
        tls?.destroy()
      }
      const status = res.statusCode ?? 0
      if (status === 401) throw new CliError(`${t.who} refused ${t.tokenSource}: wrong admin token`)
      let json: any
      try {
        json = JSON.parse(text)
      } catch {
        throw new CliError(`the admin API at ${t.url.origin} answered HTTP ${status} without JSON`)
      }
      if (status < 200 || status > 299) throw new CliError(typeof json?.error === 'string' ? json.error : `the admin API answered HTTP ${status}`, status)
      return json
    }
  }
}

// A connection to another IMAP server (imapflow), as IMAP import (node/migrate/imap.ts) and mail collection
// (node/collect/collector.ts) both make it: one place for the TLS choice, the certificate rules, the timeouts and
// the literal bound, so the two cannot drift apart.

import { isIP } from 'node:net'
import { ImapFlow } from 'imapflow'

export const REMOTE_IMAP_CONNECT_TIMEOUT_MS = 30_000
export const REMOTE_IMAP_GREETING_TIMEOUT_MS = 15_000
export const REMOTE_IMAP_SOCKET_TIMEOUT_MS = 5 * 60_000 // a FETCH of a 50 MB message on a slow link
export const REMOTE_IMAP_LITERAL_SLACK_BYTES = 64 * 1024 // a literal may exceed the store's message cap by this much before the connection is cut

/** Where and as whom to log in (an import's source, a collection account). */
export interface RemoteImapAccount {
  host: string
  port: number
  /** 'implicit': IMAPS; 'starttls': IMAP with STARTTLS required; 'none': plain IMAP (a test or a trusted LAN). */
  tls: 'implicit' | 'starttls' | 'none'
  user: string
  password: string
  /** CA certificates (PEM) to trust besides the system's, for a server with a private CA. */
  ca?: string
  /** Accept any certificate (a server with a self-signed one). */
  insecure?: boolean
}

export interface RemoteImapOptions extends RemoteImapAccount {
  /** The store's message cap: a larger literal from the server cuts the connection instead of filling memory. */
  messageBytesMax: number
  /**
   * Connect to this address (checked by node/host-policy.ts) rather than resolving `host` again; the certificate is
   * still verified against `host`.
   */
  address?: string
  signal?: AbortSignal
  /** Errors imapflow emits outside a command (a reset socket): they end the connection either way. */
  onError?: (err: Error) => void
}

export interface RemoteImap {
  readonly client: ImapFlow
  /** LOGOUT, or a plain close when that fails; safe to call twice. */
  close (): Promise<void>
}

/** Connects and logs in; rejects (with the connection closed) when it cannot, or when `signal` aborts. */
export async function connectRemoteImap (o: RemoteImapOptions): Promise<RemoteImap> {
  const named = isIP(o.host) === 0
  const client = new ImapFlow({
    host: o.address ?? o.host,
    port: o.port,
    secure: o.tls === 'implicit',
    doSTARTTLS: o.tls === 'starttls' ? true : o.tls === 'none' ? false : undefined,
    auth: { user: o.user, pass: o.password },
    // imapflow's own log would carry the LOGIN line: ours never does
    logger: false,
    disableAutoIdle: true,
    connectionTimeout: REMOTE_IMAP_CONNECT_TIMEOUT_MS,
    greetingTimeout: REMOTE_IMAP_GREETING_TIMEOUT_MS,
    socketTimeout: REMOTE_IMAP_SOCKET_TIMEOUT_MS,
    maxLiteralSize: o.messageBytesMax + REMOTE_IMAP_LITERAL_SLACK_BYTES,
    ...(named ? { servername: o.host } : {}),
    tls: { rejectUnauthorized: o.insecure !== true, ...(named ? { servername: o.host } : {}), ...(o.ca !== undefined && o.ca !== '' ? { ca: o.ca } : {}) }
  } as ConstructorParameters<typeof ImapFlow>[0])
  client.on('error', (err: Error) => { o.onError?.(err) })
  const onAbort = (): void => { client.close() }
  o.signal?.addEventListener('abort', onAbort, { once: true })
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    o.signal?.removeEventListener('abort', onAbort)
    await client.logout().catch(() => { client.close() })
  }
  try {
    o.signal?.throwIfAborted()
    await client.connect()
    o.signal?.throwIfAborted()
  } catch (err) {
    await close()
    throw err
  }
  return { client, close }
}

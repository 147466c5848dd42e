// Fixtures for the IMAP tests: a temporary LevelDB store with users, IMAP listeners on ephemeral loopback
// ports (plain with STARTTLS, and implicit TLS), a self-signed certificate, log capture, a raw client that
// waits for tagged replies, and imapflow clients.

import { join } from 'node:path'
import { generate } from 'selfsigned'
import pino from 'pino'
import type { Logger } from 'pino'
import { ImapFlow } from 'imapflow'
import { createStore } from '../../store/index.ts'
import type { Store } from '../../store/index.ts'
import { createAuthenticator } from '../../node/auth.ts'
import { AuthThrottle } from '../../node/limits.ts'
import { createImapServer } from '../../node/imap/index.ts'
import type { ImapInit, ImapServer } from '../../node/imap/index.ts'
import { RawClient } from '../helpers/client.ts'
import { tempDir } from '../helpers/tmp.ts'

type After = { after: (fn: () => Promise<void>) => void }

export const USER = 'alice@example.com'
export const PASSWORD = 'secret pass'
export const OTHER = 'bob@example.com'

export interface Fixture {
  store: Store
  tls: { key: string, cert: string }
  logs: Array<Record<string, unknown>>
  logger: Logger
  server (init?: Partial<ImapInit>, store?: Store): Promise<{ port: number, server: ImapServer }>
}

export async function fixture (t: After): Promise<Fixture> {
  const dir = await tempDir(t, 'mailgrid-imap-')
  const store = createStore({}, { path: join(dir, 'store'), scryptLogN: 10, sync: false })
  await store.start()
  t.after(async () => { await store.stop() })
  await store.addDomain('example.com')
  await store.addUser({ address: USER, password: PASSWORD })
  await store.addUser({ address: OTHER, password: PASSWORD })
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], { keyType: 'ec', algorithm: 'sha256' })
  const tls = { key: pems.private, cert: pems.cert }
  const logs: Array<Record<string, unknown>> = []
  const logger = pino({ level: 'debug' }, { write (s: string) { logs.push(JSON.parse(s)) } })
  const auth = createAuthenticator({ directory: store, throttle: new AuthThrottle({ perIp: 10_000, perAccount: 10_000 }) })
  return {
    store,
    tls,
    logs,
    logger,
    async server (init = {}, override?: Store) {
      const server = createImapServer({ store: override ?? store, auth, logger, tls }, {
        endpoint: { host: '127.0.0.1', port: 0 }, allowInsecureAuthOnLoopback: true, ...init,
      })
      const { port } = await server.listen()
      t.after(async () => { await server.close() })
      return { port, server }
    },
  }
}

/** The buffer ends with the tagged completion of `tag` (only its last line is looked at: answers run to megabytes). */
export const tagged = (tag: string) => {
  const line = new RegExp(`^${tag} (OK|NO|BAD)[^\\r\\n]*\\r\\n$`)
  return (buf: string): boolean => {
    if (!buf.endsWith('\r\n')) return false
    const i = buf.lastIndexOf('\r\n', buf.length - 3)
    return line.test(i < 0 ? buf : buf.slice(i + 2))
  }
}
export const untaggedLine = (buf: string): boolean => /\r\n$/.test(buf)

/** A raw IMAP client: greeting read on connect; cmd() waits for the tagged reply. */
export class RawImap {
  readonly client: RawClient
  greeting = ''
  private n = 0
  private constructor (client: RawClient) { this.client = client }

  static async connect (port: number, opts: { tls?: boolean } = {}): Promise<RawImap> {
    const raw = new RawImap(await RawClient.connect(port, opts))
    raw.greeting = await raw.client.read(untaggedLine)
    return raw
  }

  /** Sends `tag text` and reads up to its tagged completion; timeoutMs as RawClient.read's. */
  async cmd (text: string, tag = `t${++this.n}`, timeoutMs?: number): Promise<string> {
    return await this.client.cmd(`${tag} ${text}`, tagged(tag), timeoutMs)
  }

  async login (user = USER, password = PASSWORD): Promise<string> {
    return await this.cmd(`LOGIN "${user}" "${password}"`)
  }

  close (): void { this.client.close() }
}

/** Two raw sessions on `port`, both logged in as USER, closed after the test. */
export async function sessionPair (t: After, port: number): Promise<[RawImap, RawImap]> {
  const a = await RawImap.connect(port)
  const b = await RawImap.connect(port)
  t.after(async () => { a.close(); b.close() })
  await a.login()
  await b.login()
  return [a, b]
}

export async function flow (t: After, port: number, opts: { secure?: boolean, doSTARTTLS?: boolean, user?: string, qresync?: boolean } = {}): Promise<ImapFlow> {
  const client = new ImapFlow({
    host: '127.0.0.1',
    port,
    secure: opts.secure ?? false,
    ...(opts.doSTARTTLS === undefined ? {} : { doSTARTTLS: opts.doSTARTTLS }),
    tls: { rejectUnauthorized: false },
    auth: { user: opts.user ?? USER, pass: PASSWORD },
    logger: false,
    qresync: opts.qresync ?? false,
  })
  client.on('error', () => {})
  await client.connect()
  t.after(async () => { await client.logout().catch(() => client.close()) })
  return client
}

/** A message with nested multiparts, an attachment, RFC 2047 headers and an 8-bit body. */
export function richMessage (subject = 'Grüße aus Köln'): Buffer {
  const encoded = `=?UTF-8?B?${Buffer.from(subject).toString('base64')}?=`
  return Buffer.from([
    'From: =?UTF-8?Q?J=C3=B6rg?= <joerg@example.org>',
    'To: Alice <alice@example.com>, bob@example.com',
    'Cc: carol@example.net',
    `Subject: ${encoded}`,
    'Date: Mon, 02 Feb 2026 10:00:00 +0000',
    'Message-ID: <rich-1@example.org>',
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="outer"',
    '',
    '--outer',
    'Content-Type: multipart/alternative; boundary="inner"',
    '',
    '--inner',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
    '',
    'Hallo Wält, this is the plain body with needle-word.',
    '--inner',
    'Content-Type: text/html; charset=utf-8',
    'Content-Transfer-Encoding: quoted-printable',
    '',
    '<p>Hallo W=C3=A4lt</p>',
    '--inner--',
    '--outer',
    'Content-Type: application/octet-stream; name="data.bin"',
    'Content-Disposition: attachment; filename="data.bin"',
    'Content-Transfer-Encoding: base64',
    '',
    Buffer.from([0, 1, 2, 3, 255, 254, 0, 10]).toString('base64'),
    '--outer',
    'Content-Type: message/rfc822',
    '',
    'From: inner@example.org',
    'Subject: inner message',
    '',
    'inner body',
    '--outer--',
    '',
  ].join('\r\n'), 'utf8')
}

export function simpleMessage (subject: string, body = 'hello\r\n'): Buffer {
  return Buffer.from(`From: sender@example.org\r\nTo: alice@example.com\r\nSubject: ${subject}\r\nDate: Tue, 03 Feb 2026 12:00:00 +0000\r\nMessage-ID: <${subject.replace(/\W/g, '')}@example.org>\r\n\r\n${body}`)
}

/** The store behind a proxy that counts the calls of each method (tests of what a command reads). */
export function counting (store: Store): { store: Store, calls: Map<string, number> } {
  const calls = new Map<string, number>()
  const proxy = new Proxy(store, {
    get (target, key, receiver) {
      const value = Reflect.get(target, key, receiver)
      if (typeof value !== 'function') return value
      return (...args: unknown[]) => {
        calls.set(String(key), (calls.get(String(key)) ?? 0) + 1)
        return (value as (...a: unknown[]) => unknown).apply(target, args)
      }
    },
  })
  return { store: proxy, calls }
}

// Client autoconfig (issue 11, item 6) on the public web listeners (listen.http, listen.https): a mail client
// given only an address learns the grid's host name, ports and TLS settings.
//
//   GET  /mail/config-v1.1.xml?emailaddress=A                  Thunderbird (and K-9, FairEmail, Evolution)
//   GET  /.well-known/autoconfig/mail/config-v1.1.xml?...       the same, where Thunderbird looks first
//   POST /autodiscover/autodiscover.xml                         Outlook's POX autodiscover (the request's EMailAddress)
//   GET  /apple/mailgrid.mobileconfig?email=A                   an Apple configuration profile (unsigned plist)
//
// Every document names the services this node listens on (implicit TLS first: IMAPS, POP3S, SMTPS; then the
// STARTTLS ports), with their bound ports, so the production config gives 993/995/465/587 and `npm start` its
// 29xx ports. An address whose domain is not ours gets 404: we do not claim other providers' users. Nothing
// here says whether an account exists. Every value that reaches a document is XML-escaped.

import { createHash } from 'node:crypto'
import { createServer } from 'node:http'
import { createServer as createTlsServer } from 'node:https'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import { domainOf, normalizeAddress, normalizeDomain } from '../store/index.ts'
import type { Directory } from '../store/index.ts'
import type { Endpoint, ServiceName, ServiceStatus, TlsMaterial } from '../node/types.ts'

export const AUTODISCOVER_BODY_BYTES_MAX = 64 * 1024 // Outlook's request is a few hundred bytes
export const AUTOCONFIG_HEADERS_TIMEOUT_MS = 10_000
export const AUTOCONFIG_REQUEST_TIMEOUT_MS = 30_000
export const AUTOCONFIG_CONNECTIONS_MAX = 256 // a public listener: bounded like every other
export const ADDRESS_CHARS_MAX = 254 // RFC 5321 4.5.3.1.3: the longest path

export const THUNDERBIRD_PATHS = ['/mail/config-v1.1.xml', '/.well-known/autoconfig/mail/config-v1.1.xml']
export const AUTODISCOVER_PATH = '/autodiscover/autodiscover.xml' // matched without regard to case, as IIS does
export const MOBILECONFIG_PATH = '/apple/mailgrid.mobileconfig'
const AUTODISCOVER_RESPONSE_NS = 'http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006'
const OUTLOOK_RESPONSE_NS = 'http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a'

/** One service a client may use: where, and how its TLS starts. */
export interface MailEndpoint {
  protocol: 'imap' | 'pop3' | 'smtp'
  port: number
  socket: 'SSL' | 'STARTTLS' // Thunderbird's words: TLS from the first byte, or upgraded by STARTTLS/STLS
}

/** What every document says: the host name clients use and the services, in order of preference per protocol. */
export interface ClientSettings {
  hostname: string
  endpoints: MailEndpoint[]
}

// implicit TLS first (RFC 8314 3: preferred), then the STARTTLS port; the MX port (25) is not for clients
const CLIENT_SERVICES: ReadonlyArray<[ServiceName, MailEndpoint['protocol'], MailEndpoint['socket']]> = [
  ['imaps', 'imap', 'SSL'], ['imap', 'imap', 'STARTTLS'],
  ['pop3s', 'pop3', 'SSL'], ['pop3', 'pop3', 'STARTTLS'],
  ['smtps', 'smtp', 'SSL'], ['submission', 'smtp', 'STARTTLS']
]

/** The client-facing services among those listening, in CLIENT_SERVICES order. */
export function clientSettings (hostname: string, services: readonly ServiceStatus[]): ClientSettings {
  const endpoints: MailEndpoint[] = []
  for (const [name, protocol, socket] of CLIENT_SERVICES) {
    const s = services.find(x => x.name === name)
    if (s !== undefined) endpoints.push({ protocol, port: s.port, socket })
  }
  return { hostname, endpoints }
}

/** XML character data and attribute values (XML 1.0 2.4, 3.3.3); control characters XML cannot carry are dropped. */
export function xmlEscape (s: string): string {
  return s.replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!)
    .replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]/g, '')
}

/** Thunderbird's autoconfig document (https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat). */
export function thunderbirdXml (s: ClientSettings, domain: string): string {
  const e = xmlEscape
  const server = (tag: 'incomingServer' | 'outgoingServer', x: MailEndpoint): string[] => [
    `    <${tag} type="${x.protocol}">`,
    `      <hostname>${e(s.hostname)}</hostname>`,
    `      <port>${x.port}</port>`,
    `      <socketType>${x.socket}</socketType>`,
    '      <authentication>password-cleartext</authentication>',
    '      <username>%EMAILADDRESS%</username>',
    `    </${tag}>`
  ]
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<clientConfig version="1.1">',
    `  <emailProvider id="${e(domain)}">`,
    `    <domain>${e(domain)}</domain>`,
    `    <displayName>${e(domain)} (mailgrid)</displayName>`,
    `    <displayShortName>${e(domain)}</displayShortName>`,
    ...s.endpoints.filter(x => x.protocol !== 'smtp').flatMap(x => server('incomingServer', x)),
    ...s.endpoints.filter(x => x.protocol === 'smtp').flatMap(x => server('outgoingServer', x)),
    '  </emailProvider>',
    '</clientConfig>',
    ''
  ].join('\n')
}

/** Outlook's POX autodiscover answer (MS-OXDSCLI 2.2.4.2): one Protocol per service, implicit TLS first. */
export function autodiscoverXml (s: ClientSettings, address: string): string {
  const e = xmlEscape
  const seen = new Set<string>()
  const protocols: string[] = []
  for (const x of s.endpoints) {
    // Outlook takes the first entry of each Type: the implicit-TLS one when it listens
    if (seen.has(x.protocol)) continue
    seen.add(x.protocol)
    protocols.push(
      '      <Protocol>',
      `        <Type>${x.protocol.toUpperCase()}</Type>`,
      `        <Server>${e(s.hostname)}</Server>`,
      `        <Port>${x.port}</Port>`,
      '        <DomainRequired>off</DomainRequired>',
      `        <LoginName>${e(address)}</LoginName>`,
      '        <SPA>off</SPA>',
      x.socket === 'SSL' ? '        <SSL>on</SSL>' : '        <Encryption>TLS</Encryption>',
      '        <AuthRequired>on</AuthRequired>',
      ...(x.protocol === 'smtp' ? ['        <UsePOPAuth>on</UsePOPAuth>', '        <SMTPLast>off</SMTPLast>'] : []),
      '      </Protocol>'
    )
  }
  return [
    '<?xml version="1.0" encoding="utf-8"?>',
    `<Autodiscover xmlns="${AUTODISCOVER_RESPONSE_NS}">`,
    `  <Response xmlns="${OUTLOOK_RESPONSE_NS}">`,
    '    <Account>',
    '      <AccountType>email</AccountType>',
    '      <Action>settings</Action>',
    ...protocols.map(l => `  ${l}`),
    '    </Account>',
    '  </Response>',
    '</Autodiscover>',
    ''
  ].join('\n')
}

/** A stable UUID (RFC 9562 version 8 layout) from text: the same address re-downloads the same profile. */
function uuidOf (text: string): string {
  const h = createHash('sha256').update(text).digest()
  h[6] = (h[6] & 0x0f) | 0x80
  h[8] = (h[8] & 0x3f) | 0x80
  const x = h.subarray(0, 16).toString('hex').toUpperCase()
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`
}

/** An Apple configuration profile with one IMAP account (com.apple.mail.managed), unsigned. */
export function mobileconfigXml (s: ClientSettings, address: string): string {
  const e = xmlEscape
  const imap = s.endpoints.find(x => x.protocol === 'imap')
  const smtp = s.endpoints.find(x => x.protocol === 'smtp')
  const str = (k: string, v: string): string[] => [`<key>${k}</key>`, `<string>${e(v)}</string>`]
  const int = (k: string, v: number): string[] => [`<key>${k}</key>`, `<integer>${v}</integer>`]
  const bool = (k: string, v: boolean): string[] => [`<key>${k}</key>`, v ? '<true/>' : '<false/>']
  const id = `mailgrid.${s.hostname.split('.').reverse().join('.')}`
  const account = [
    ...str('EmailAccountDescription', address),
    ...str('EmailAccountName', address),
    ...str('EmailAccountType', 'EmailTypeIMAP'),
    ...str('EmailAddress', address),
    ...str('IncomingMailServerAuthentication', 'EmailAuthPassword'),
    ...str('IncomingMailServerHostName', s.hostname),
    ...int('IncomingMailServerPortNumber', imap?.port ?? 993),
    ...bool('IncomingMailServerUseSSL', true), // STARTTLS on the IMAP port when IMAPS is off
    ...str('IncomingMailServerUsername', address),
    ...str('OutgoingMailServerAuthentication', 'EmailAuthPassword'),
    ...str('OutgoingMailServerHostName', s.hostname),
    ...int('OutgoingMailServerPortNumber', smtp?.port ?? 465),
    ...bool('OutgoingMailServerUseSSL', true),
    ...str('OutgoingMailServerUsername', address),
    ...bool('OutgoingPasswordSameAsIncomingPassword', true),
    ...str('PayloadDescription', `The mail account ${address}`),
    ...str('PayloadDisplayName', address),
    ...str('PayloadIdentifier', `${id}.account.${uuidOf('account ' + address)}`),
    ...str('PayloadType', 'com.apple.mail.managed'),
    ...str('PayloadUUID', uuidOf('account ' + address)),
    ...int('PayloadVersion', 1),
    ...bool('PreventAppSheet', false),
    ...bool('PreventMove', false),
    ...bool('SMIMEEnabled', false)
  ]
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">',
    '<plist version="1.0">',
    '<dict>',
    '<key>PayloadContent</key>',
    '<array>',
    '<dict>',
    ...account,
    '</dict>',
    '</array>',
    ...str('PayloadDescription', `Mail settings for ${address} on ${s.hostname}`),
    ...str('PayloadDisplayName', `Mail: ${address}`),
    ...str('PayloadIdentifier', `${id}.${uuidOf('profile ' + address)}`),
    ...bool('PayloadRemovalDisallowed', false),
    ...str('PayloadType', 'Configuration'),
    ...str('PayloadUUID', uuidOf('profile ' + address)),
    ...int('PayloadVersion', 1),
    '</dict>',
    '</plist>',
    ''
  ].join('\n')
}

export interface AutoconfigComponents {
  /** Which domains are ours. */
  directory: Pick<Directory, 'isLocalDomain'>
  /** The services this node listens on (fixed once it runs; MailNode.status().services). */
  services: () => readonly ServiceStatus[]
  logger: Logger
}

export interface AutoconfigInit {
  endpoint: Endpoint
  /** The name clients connect to (config hostname). */
  hostname: string
  /** HTTPS with this certificate; absent: plain HTTP. */
  tls?: TlsMaterial
}

export interface AutoconfigServer {
  start (): Promise<void>
  stop (): Promise<void>
  /** `http(s)://HOST:PORT` once started. */
  readonly url: string
}

class Answer extends Error {
  readonly status: number
  constructor (status: number, message: string) {
    super(message)
    this.status = status
  }
}

async function readBody (req: IncomingMessage): Promise<string> {
  if (Number(req.headers['content-length'] ?? 0) > AUTODISCOVER_BODY_BYTES_MAX) throw new Answer(413, 'Request too large')
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > AUTODISCOVER_BODY_BYTES_MAX) throw new Answer(413, 'Request too large')
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8')
}

const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', apos: "'", quot: '"' }

/** The EMailAddress of Outlook's request (MS-OXDSCLI 2.2.3), its character references decoded (XML 1.0 4.1, 4.6); the body is bounded, one element is all we read. */
export function requestedAddress (xml: string): string | null {
  const m = /<(?:\w+:)?EMailAddress>\s*([^<]{1,1024}?)\s*<\/(?:\w+:)?EMailAddress>/.exec(xml)
  // a bare '&' is not well-formed XML (2.4): no address from such a request
  if (m === null || /&(?!(?:#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|[a-z]{2,4});)/.test(m[1])) return null
  let bad = false
  const text = m[1].replace(/&(#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|[a-z]{2,4});/g, (_, ref: string) => {
    const code = ref.startsWith('#x') ? parseInt(ref.slice(2), 16) : ref.startsWith('#') ? Number(ref.slice(1)) : null
    if (code === null) return ENTITIES[ref] ?? ((bad = true), '')
    if (code > 0x10ffff) { bad = true; return '' }
    return String.fromCodePoint(code)
  })
  return bad ? null : text
}

export function createAutoconfigServer (components: AutoconfigComponents, init: AutoconfigInit): AutoconfigServer {
  const log = components.logger
  let server: Server | null = null
  let url = ''

  /** The address as given, checked: a valid address of one of our domains. */
  async function ourAddress (given: string | null): Promise<string> {
    if (given === null || given === '' || given.length > ADDRESS_CHARS_MAX) throw new Answer(400, 'An email address is required')
    const address = normalizeAddress(given)
    if (address === null) throw new Answer(400, 'Not an email address')
    if (!await components.directory.isLocalDomain(domainOf(address))) throw new Answer(404, 'Not a domain of this server')
    return address
  }

  async function handle (req: IncomingMessage, res: ServerResponse): Promise<number> {
    const parsed = new URL(req.url ?? '/', 'http://autoconfig.invalid')
    const path = parsed.pathname
    const settings = (): ClientSettings => clientSettings(init.hostname, components.services())
    const reply = (type: string, body: string, extra: Record<string, string> = {}): number => {
      res.writeHead(200, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...extra })
      res.end(req.method === 'HEAD' ? undefined : body)
      return 200
    }
    const only = (...methods: string[]): void => {
      if (!methods.includes(req.method ?? '')) throw new Answer(405, 'Method not allowed')
    }
    if (THUNDERBIRD_PATHS.includes(path)) {
      only('GET', 'HEAD')
      // Thunderbird sends the address; a request without one gets the document of no domain in particular
      const given = parsed.searchParams.get('emailaddress')
      const domain = given === null ? normalizeDomain(init.hostname) ?? init.hostname : domainOf(await ourAddress(given))
      return reply('application/xml; charset=utf-8', thunderbirdXml(settings(), domain))
    }
    if (path.toLowerCase() === AUTODISCOVER_PATH) {
      only('POST')
      const address = await ourAddress(requestedAddress(await readBody(req)))
      return reply('application/xml; charset=utf-8', autodiscoverXml(settings(), address))
    }
    if (path === MOBILECONFIG_PATH) {
      only('GET', 'HEAD')
      const address = await ourAddress(parsed.searchParams.get('email'))
      return reply('application/x-apple-aspen-config', mobileconfigXml(settings(), address), {
        'content-disposition': `attachment; filename="${address.replace(/[^A-Za-z0-9._@-]/g, '_')}.mobileconfig"`
      })
    }
    throw new Answer(404, 'Not found')
  }

  function onRequest (req: IncomingMessage, res: ServerResponse): void {
    handle(req, res).catch((err: unknown) => {
      const status = err instanceof Answer ? err.status : 500
      if (!(err instanceof Answer)) log.error({ event: 'autoconfig_internal_error', err }, 'autoconfig request failed')
      const text = (err instanceof Answer ? err.message : 'Internal error') + '\n'
      if (res.headersSent) { res.destroy(); return status }
      res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...(status === 413 ? { connection: 'close' } : {}) })
      res.end(text)
      return status
    }).then(status => {
      log.debug({ event: 'autoconfig_request', method: req.method, path: (req.url ?? '').split('?')[0], status }, 'autoconfig request')
    }, () => { res.destroy() })
  }

  return {
    get url () { return url },
    async start () {
      if (server !== null) return
      const timeouts = { headersTimeout: AUTOCONFIG_HEADERS_TIMEOUT_MS, requestTimeout: AUTOCONFIG_REQUEST_TIMEOUT_MS }
      const s: Server = init.tls === undefined
        ? createServer(timeouts, onRequest)
        : createTlsServer({ ...timeouts, cert: init.tls.cert, key: init.tls.key, minVersion: 'TLSv1.2' }, onRequest)
      s.on('tlsClientError', () => {})
      s.maxConnections = AUTOCONFIG_CONNECTIONS_MAX
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject)
        s.listen(init.endpoint.port, init.endpoint.host, () => { s.off('error', reject); resolve() })
      })
      server = s
      const a = s.address() as AddressInfo
      url = `${init.tls === undefined ? 'http' : 'https'}://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`
      log.info({ event: 'autoconfig_listening', url }, 'client autoconfig listening')
    },
    async stop () {
      const s = server
      if (s === null) return
      server = null
      const closed = new Promise<void>(resolve => s.close(() => resolve()))
      s.closeAllConnections()
      await closed
    }
  }
}

// Which remote hosts the node may connect to on a user's behalf (mail collection, issue 15): a user names a
// POP3/IMAP host and the user's primary connects there, so without a rule any user could make the grid reach its
// own loopback services, the admin port, link-local addresses (cloud metadata at 169.254.169.254), the grid's
// members or hosts of its private LAN (server-side request forgery).
//
// The rule: every address the name resolves to must be allowed (one bad address refuses the host: the resolver,
// not we, would pick which one a client uses). Refused always: loopback, unspecified, link-local, multicast,
// reserved/broadcast, and the addresses of this node and of every grid member. Private ranges (RFC 1918, RFC 6598
// shared space, fc00::/7, fec0::/10) only when `allowPrivate` (the appliance's `collect.allowPrivate`).
// IPv6 forms that carry an IPv4 address (mapped ::ffff:0:0/96, compatible ::/96, NAT64 64:ff9b::/96, 6to4
// 2002::/16) are judged by that IPv4 address.
//
// Ports: the standard POP3/IMAP ports (110, 995, 143, 993) and any unprivileged port (1024 and above, where real
// providers put their alternatives). Privileged ports other than those four are refused: they are other
// protocols' well-known services (SSH 22, SMTP 25/465/587, DNS 53, HTTP 80/443, LDAP 389, ...), which a mail
// client talking to them could only misuse.
//
// `check` is called when an account is added (the admin API answers 400 with the reason) and again before every
// connection, whose socket then goes to an address checked just now (not to the name, which a DNS server could
// answer differently a moment later: DNS rebinding).

import { lookup, Resolver } from 'node:dns/promises'
import { isIP } from 'node:net'

export const HOST_NAME_BYTES_MAX = 253 // RFC 1035 2.3.4 (a name of at most 255 octets on the wire)
export const HOST_ADDRESSES_MAX = 32 // addresses of one name that are checked; more is refused as suspicious
export const HOST_RESOLVE_TIMEOUT_MS = 5000 // one query to a configured resolver
export const HOST_RESOLVE_TRIES = 2
export const MAIL_PORTS: readonly number[] = [110, 995, 143, 993] // RFC 1939 / RFC 8314 (POP3, POP3S), RFC 9051 (IMAP, IMAPS)
export const UNPRIVILEGED_PORT_MIN = 1024

export type AddressKind = 'public' | 'private' | 'loopback' | 'unspecified' | 'linkLocal' | 'multicast' | 'reserved'

/** A host refused by the policy; the message says why and is safe to show to the user. */
export class HostRefused extends Error {}

export interface HostPolicyInit {
  /** Allow RFC 1918 / RFC 6598 / fc00::/7 addresses (a collection server on the organisation's LAN). */
  allowPrivate: boolean
  /** Tests only (never a config key): allow loopback, where the tests' private Dovecot listens. */
  allowLoopback?: boolean
  /** Resolvers ('host' or 'host:port') for names; [] = the system's (getaddrinfo, /etc/hosts included). */
  dnsServers?: string[]
}

export interface HostPolicyComponents {
  /** Addresses of this node and of every grid member now (IP strings; anything else is ignored). */
  ownAddresses: () => Iterable<string>
}

export interface HostPolicy {
  /** Refuses (HostRefused) a port outside the rule. */
  checkPort (port: number): void
  /** Resolves `host` and checks the port and every address; resolves to the addresses (at least one), all allowed. */
  check (host: string, port: number, opts?: { signal?: AbortSignal }): Promise<string[]>
}

/** 4 or 16 bytes of an IP literal, or null. */
export function ipBytes (ip: string): number[] | null {
  const text = ip.replace(/^\[|\]$/g, '').replace(/%.*$/, '') // an IPv6 zone id (fe80::1%eth0) names no other address
  const family = isIP(text)
  if (family === 4) return text.split('.').map(Number)
  if (family !== 6) return null
  // a trailing dotted IPv4 part (::ffff:1.2.3.4) as its two hex groups
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  const head = v4 === null ? text : text.slice(0, -v4[1].length) + v4[1].split('.').map(Number).reduce<string[]>((g, x, i) => { if (i % 2 === 0) g.push(''); g[g.length - 1] += x.toString(16).padStart(2, '0'); return g }, []).join(':')
  const [l, r] = head.includes('::') ? head.split('::') : [head, null]
  const left = l === '' ? [] : l.split(':').map(h => parseInt(h, 16))
  const right = r === null || r === '' ? [] : r.split(':').map(h => parseInt(h, 16))
  const fill = 8 - left.length - right.length
  const groups = [...left, ...(r === null ? [] : new Array<number>(Math.max(fill, 0)).fill(0)), ...right]
  if (groups.length !== 8 || groups.some(g => !Number.isInteger(g) || g < 0 || g > 0xffff)) return null
  return groups.flatMap(g => [g >> 8, g & 0xff])
}

function classify4 (b: number[]): AddressKind {
  const [a, c] = b
  if (a === 0) return 'unspecified' // 0.0.0.0/8, "this network" (RFC 1122 3.2.1.3): 0.0.0.0 reaches the local host
  if (a === 127) return 'loopback'
  if (a === 169 && c === 254) return 'linkLocal' // RFC 3927; 169.254.169.254 is the cloud metadata service
  if (a >= 224 && a <= 239) return 'multicast'
  if (a >= 240) return 'reserved' // 240/4 and the broadcast 255.255.255.255
  if (a === 10 || (a === 172 && c >= 16 && c <= 31) || (a === 192 && c === 168)) return 'private' // RFC 1918
  if (a === 100 && c >= 64 && c <= 127) return 'private' // RFC 6598 shared address space (carrier NAT)
  return 'public'
}

/** What kind of address `ip` is (IPv4 or IPv6 text); null when it is not an IP literal. */
export function classifyAddress (ip: string): AddressKind | null {
  const b = ipBytes(ip)
  if (b === null) return null
  if (b.length === 4) return classify4(b)
  const zero = (from: number, to: number): boolean => b.slice(from, to).every(x => x === 0)
  if (zero(0, 16)) return 'unspecified'
  if (zero(0, 15) && b[15] === 1) return 'loopback'
  if (zero(0, 10) && b[10] === 0xff && b[11] === 0xff) return classify4(b.slice(12)) // ::ffff:a.b.c.d
  if (zero(0, 12)) return classify4(b.slice(12)) // ::a.b.c.d (deprecated IPv4-compatible)
  if (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zero(4, 12)) return classify4(b.slice(12)) // NAT64, RFC 6052
  if (b[0] === 0x20 && b[1] === 0x02) return classify4(b.slice(2, 6)) // 6to4, RFC 3056
  if (b[0] === 0xff) return 'multicast'
  if (b[0] === 0xfe && (b[1] & 0xc0) === 0x80) return 'linkLocal' // fe80::/10
  if (b[0] === 0xfe && (b[1] & 0xc0) === 0xc0) return 'private' // fec0::/10, the deprecated site-local
  if ((b[0] & 0xfe) === 0xfc) return 'private' // fc00::/7, unique local (RFC 4193)
  return 'public'
}

/** One text per address, whatever its spelling (IPv4-mapped IPv6 as the IPv4 address). */
function addressKey (ip: string): string | null {
  const b = ipBytes(ip)
  if (b === null) return null
  const v4 = b.length === 4 ? b : b.slice(0, 10).every(x => x === 0) && b[10] === 0xff && b[11] === 0xff ? b.slice(12) : null
  return v4 !== null ? v4.join('.') : b.map(x => x.toString(16).padStart(2, '0')).join('')
}

const KIND_TEXT: Record<AddressKind, string> = {
  public: 'public',
  private: 'a private address (allowed only with collect.allowPrivate)',
  loopback: 'loopback',
  unspecified: 'the unspecified address',
  linkLocal: 'link-local',
  multicast: 'multicast',
  reserved: 'reserved'
}

const HOST_NAME = /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.?$/i

export function createHostPolicy (components: HostPolicyComponents, init: HostPolicyInit): HostPolicy {
  const servers = init.dnsServers ?? []

  async function resolve (host: string, signal?: AbortSignal): Promise<string[]> {
    if (servers.length === 0) {
      // getaddrinfo, as a client library would use: /etc/hosts included
      const found = await lookup(host, { all: true, verbatim: true })
      return found.map(a => a.address)
    }
    const r = new Resolver({ timeout: HOST_RESOLVE_TIMEOUT_MS, tries: HOST_RESOLVE_TRIES })
    r.setServers(servers)
    const onAbort = (): void => { r.cancel() }
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      const none = (err: { code?: string }): string[] => {
        if (err.code === 'ENODATA' || err.code === 'ENOTFOUND') return []
        throw err
      }
      const [v4, v6] = await Promise.all([r.resolve4(host).catch(none), r.resolve6(host).catch(none)])
      return [...v4, ...v6]
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
  }

  function checkPort (port: number): void {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new HostRefused(`port ${port}: not a port`)
    if (port < UNPRIVILEGED_PORT_MIN && !MAIL_PORTS.includes(port)) {
      throw new HostRefused(`port ${port} refused: only the POP3/IMAP ports (${MAIL_PORTS.join(', ')}) or ports from ${UNPRIVILEGED_PORT_MIN} up`)
    }
  }

  function checkAddress (host: string, ip: string, own: Set<string>): void {
    const kind = classifyAddress(ip)
    const shown = host === ip ? ip : `${host} resolves to ${ip}, which is`
    if (kind === null) throw new HostRefused(`${host}: not an address: ${ip}`)
    if (kind === 'loopback' && init.allowLoopback === true) return
    if (kind === 'private' && init.allowPrivate) {
      // allowed, unless it is one of the grid's own machines
    } else if (kind !== 'public') {
      throw new HostRefused(`host refused: ${shown} ${KIND_TEXT[kind]}`)
    }
    if (own.has(addressKey(ip) ?? '')) throw new HostRefused(`host refused: ${shown} a member of this grid`)
  }

  return {
    checkPort,
    async check (host, port, opts = {}) {
      checkPort(port)
      const name = host.replace(/^\[|\]$/g, '')
      let addresses: string[]
      if (isIP(name.replace(/%.*$/, '')) !== 0) {
        addresses = [name]
      } else {
        if (Buffer.byteLength(name) > HOST_NAME_BYTES_MAX || !HOST_NAME.test(name)) throw new HostRefused(`host refused: ${host} is not a host name`)
        // RFC 6761 6.3: localhost and every name under it are the loopback, whatever a resolver says
        const loopbackName = /(^|\.)localhost\.?$/i.test(name)
        if (loopbackName && init.allowLoopback !== true) throw new HostRefused(`host refused: ${host} is loopback`)
        try {
          addresses = loopbackName ? ['127.0.0.1'] : await resolve(name, opts.signal)
        } catch (err) {
          opts.signal?.throwIfAborted()
          throw new HostRefused(`host ${host} does not resolve (${(err as { code?: string }).code ?? String(err)})`)
        }
        if (addresses.length === 0) throw new HostRefused(`host ${host} has no address`)
        if (addresses.length > HOST_ADDRESSES_MAX) throw new HostRefused(`host ${host} has more than ${HOST_ADDRESSES_MAX} addresses`)
      }
      const own = new Set<string>()
      for (const a of components.ownAddresses()) {
        const k = addressKey(a)
        if (k !== null) own.add(k)
      }
      for (const ip of addresses) checkAddress(host, ip, own)
      return addresses
    }
  }
}

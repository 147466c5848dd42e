// Where mail for a domain goes (RFC 5321 5.1): the MX hosts in preference order (equal preferences shuffled),
// each with its IPv4 and IPv6 addresses; no MX means the domain itself is the one implicit MX; a null MX
// (RFC 7505) and a domain that does not exist are permanent failures, a DNS server that fails or is silent a
// temporary one. Also the loop rule: an MX that is this machine (its addresses on the port our own MX listens
// on) is dropped together with every MX of equal or worse preference (RFC 5321 5.1, what Postfix does), and
// when none is left the mail "loops back to myself".
// Lookups go to `dnsServers` ('host' or 'host:port'; [] = the system's resolvers) with bounded timeouts.

import { Resolver } from 'node:dns/promises'
import { isIP } from 'node:net'
import { networkInterfaces } from 'node:os'
import type { OpOptions } from '../../store/index.ts'

export const DNS_TRY_TIMEOUT_MS = 2000 // c-ares' first try; it doubles per retry round (glibc's resolv.conf default is 5 s)
export const DNS_TRIES = 2
export const DNS_LOOKUP_MS_MAX = 8000 // a whole lookup, whatever c-ares does: 2 s + 4 s plus slack
export const MX_HOSTS_MAX = 20 // more MX records than this are ignored (Postfix's smtp_mx_address_limit is 5 addresses)
export const TXT_BYTES_MAX = 16 * 1024 // an MTA-STS record is tiny; a TXT answer larger than this is ignored

export interface MxHost {
  name: string // the MX's name (the domain itself for an implicit MX), lower case, no trailing dot
  preference: number
  addresses: string[] // IPv4 first (an appliance without an IPv6 route would wait out a connect per v6 address), then IPv6; DNS order
}

/** A destination: the hosts to try in order, or why there is none. */
export type MxResult =
  | { ok: true, hosts: MxHost[], implicit: boolean }
  | { ok: false, permanent: boolean, enhanced: string, message: string }

export interface MxResolverInit {
  dnsServers: string[]
  dnsTimeoutMs?: number // per try (DNS_TRY_TIMEOUT_MS)
  dnsTries?: number
  /** The whole of one lookup (DNS_LOOKUP_MS_MAX). */
  lookupMsMax?: number
  /** This machine's addresses; default: os.networkInterfaces() plus 127.0.0.0/8 and ::1. */
  localAddresses?: string[]
  /** The port our own inbound MX listens on; an MX at one of our addresses on this port is ourselves. */
  ownSmtpPort?: number
  /** The port used on every MX (outbound.port) */
  port: number
}

export interface MxResolverComponents {
  /** [0, 1), for shuffling equal preferences; Math.random when absent. */
  random?: () => number
}

export interface MxResolver {
  resolve (domain: string, opts?: OpOptions): Promise<MxResult>
  /** IPv4 then IPv6 addresses of a name: [] when it has none; throws DnsError on a temporary failure. */
  addresses (name: string, opts?: OpOptions): Promise<string[]>
  /** TXT records (each one's strings joined), [] when none; throws DnsError on a temporary failure. */
  txt (name: string, opts?: OpOptions): Promise<string[]>
  /** True when this address and port are this machine's own MX. */
  isSelf (address: string, port: number): boolean
}

/** A lookup that failed; `permanent` for NXDOMAIN. */
export class DnsError extends Error {
  readonly code: string
  readonly permanent: boolean
  constructor (code: string, name: string, type: string) {
    super(`${type} lookup for ${name} failed: ${code}`)
    this.code = code
    this.permanent = code === 'ENOTFOUND'
  }
}

const NO_DATA = new Set(['ENODATA', 'ENOTFOUND'])

export function createMxResolver (components: MxResolverComponents, init: MxResolverInit): MxResolver {
  const random = components.random ?? Math.random
  const own = new Set((init.localAddresses ?? machineAddresses()).map(normalizeIp))
  const lookupMsMax = init.lookupMsMax ?? DNS_LOOKUP_MS_MAX

  /** One query on its own resolver, so cancelling it (abort, deadline) touches no other query. */
  const query = async <T>(name: string, type: 'MX' | 'A' | 'AAAA' | 'TXT', opts?: OpOptions): Promise<T[]> => {
    opts?.signal?.throwIfAborted()
    const r = new Resolver({ timeout: init.dnsTimeoutMs ?? DNS_TRY_TIMEOUT_MS, tries: init.dnsTries ?? DNS_TRIES })
    if (init.dnsServers.length > 0) r.setServers(init.dnsServers)
    let timer: NodeJS.Timeout | undefined
    const onAbort = (): void => r.cancel()
    opts?.signal?.addEventListener('abort', onAbort, { once: true })
    try {
      const deadline = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => { r.cancel(); reject(new DnsError('ETIMEOUT', name, type)) }, lookupMsMax)
      })
      return await Promise.race([r.resolve(name, type) as Promise<T[]>, deadline])
    } catch (err) {
      opts?.signal?.throwIfAborted()
      if (err instanceof DnsError) throw err
      throw new DnsError(String((err as { code?: unknown }).code ?? 'EUNKNOWN'), name, type)
    } finally {
      clearTimeout(timer)
      opts?.signal?.removeEventListener('abort', onAbort)
    }
  }

  const family = async (name: string, type: 'A' | 'AAAA', opts?: OpOptions): Promise<string[]> => {
    try {
      return await query<string>(name, type, opts)
    } catch (err) {
      if (err instanceof DnsError && NO_DATA.has(err.code)) return []
      throw err
    }
  }

  const addresses = async (name: string, opts?: OpOptions): Promise<string[]> => {
    if (isIP(name) !== 0) return [name]
    const [v4, v6] = await Promise.allSettled([family(name, 'A', opts), family(name, 'AAAA', opts)])
    if (v4.status === 'rejected' && v6.status === 'rejected') throw v4.reason
    // One family failing temporarily while the other answers: use what answered (Postfix does the same).
    return [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])]
  }

  const isSelf = (address: string, port: number): boolean =>
    init.ownSmtpPort !== undefined && port === init.ownSmtpPort && (own.has(normalizeIp(address)) || isLoopback(address))

  return {
    addresses,
    isSelf,
    async txt (name, opts) {
      try {
        const records = await query<string[]>(name, 'TXT', opts)
        return records.map(parts => parts.join('')).filter(t => t.length <= TXT_BYTES_MAX)
      } catch (err) {
        if (err instanceof DnsError && NO_DATA.has(err.code)) return []
        throw err
      }
    },
    async resolve (domain, opts) {
      const name = domain.toLowerCase().replace(/\.$/, '')
      let records: Array<{ exchange: string, priority: number }>
      try {
        records = await query<{ exchange: string, priority: number }>(name, 'MX', opts)
      } catch (err) {
        if (!(err instanceof DnsError)) throw err
        if (err.code === 'ENOTFOUND') return { ok: false, permanent: true, enhanced: '5.1.2', message: `domain ${name} does not exist (NXDOMAIN)` }
        if (err.code !== 'ENODATA') return temporary(name, 'MX', err.code)
        records = []
      }
      let implicit = false
      let hosts: Array<{ name: string, preference: number }>
      const nullMx = records.filter(r => r.exchange === '' || r.exchange === '.')
      if (records.length > 0 && nullMx.length === records.length) {
        // RFC 7505 3: the domain accepts no mail; 5.1.10 is RFC 7505 4.2's code.
        return { ok: false, permanent: true, enhanced: '5.1.10', message: `domain ${name} accepts no mail (null MX)` }
      }
      if (records.length === 0) {
        implicit = true // RFC 5321 5.1: no MX, the domain is its own MX with preference 0
        hosts = [{ name, preference: 0 }]
      } else {
        hosts = ordered(records.filter(r => !nullMx.includes(r)), random).slice(0, MX_HOSTS_MAX)
      }
      let tempCode = ''
      const resolved: MxHost[] = await Promise.all(hosts.map(async h => {
        try {
          return { ...h, addresses: await addresses(h.name, opts) }
        } catch (err) {
          if (!(err instanceof DnsError)) throw err
          tempCode = err.code
          return { ...h, addresses: [] }
        }
      }))
      // RFC 5321 5.1: when we are one of the MX hosts, only the hosts more preferred than us are candidates.
      const selfAt = resolved.find(h => h.addresses.some(a => isSelf(a, init.port)))
      const candidates = selfAt === undefined ? resolved : resolved.filter(h => h.preference < selfAt.preference)
      if (selfAt !== undefined && candidates.length === 0) {
        return { ok: false, permanent: true, enhanced: '5.4.6', message: `mail for ${name} loops back to myself` }
      }
      const usable = candidates.filter(h => h.addresses.length > 0)
      if (usable.length === 0) {
        if (implicit && tempCode === '') {
          return { ok: false, permanent: true, enhanced: '5.1.2', message: `domain ${name} has no MX and no address record` }
        }
        // An MX naming a host without addresses may be a DNS change in progress: retried, not bounced.
        return temporary(name, 'A/AAAA of its MX hosts', tempCode === '' ? 'no address' : tempCode)
      }
      return { ok: true, hosts: usable, implicit }
    }
  }
}

function temporary (name: string, what: string, code: string): MxResult {
  return { ok: false, permanent: false, enhanced: '4.4.3', message: `DNS ${what} lookup for ${name} failed: ${code}` }
}

/** Preference order, equal preferences in random order (RFC 5321 5.1), names normalized. */
function ordered (records: Array<{ exchange: string, priority: number }>, random: () => number): Array<{ name: string, preference: number }> {
  const keyed = records.map(r => ({ name: r.exchange.toLowerCase().replace(/\.$/, ''), preference: r.priority, key: random() }))
  keyed.sort((a, b) => a.preference - b.preference || a.key - b.key)
  return keyed.map(({ name, preference }) => ({ name, preference }))
}

/** This machine's addresses: every interface's. */
export function machineAddresses (): string[] {
  const out: string[] = []
  for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) out.push(i.address)
  return out
}

function isLoopback (address: string): boolean {
  const a = normalizeIp(address)
  return a.startsWith('127.') || a === '::1'
}

/** '::ffff:192.0.2.1' and '192.0.2.1' are the same host; IPv6 without zone, lower case. */
function normalizeIp (address: string): string {
  const a = address.toLowerCase().replace(/%.*$/, '')
  return a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a
}

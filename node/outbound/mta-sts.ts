// MTA-STS (RFC 8461): a domain that publishes `_mta-sts.DOMAIN TXT "v=STSv1; id=..."` and a policy at
// https://mta-sts.DOMAIN/.well-known/mta-sts.txt can demand that mail reaches it only over TLS with a valid
// certificate, and only through the MX hosts its policy names. Here: look the record up, fetch and parse the
// policy (bounded in size and time, no redirects), cache it by id until max_age, and say which MX hosts may be
// used and whether TLS must be verified. `testing` and `none` change nothing for delivery.

import { request } from 'node:https'
import type { OpOptions } from '../../store/index.ts'
import type { MxHost, MxResolver } from './mx.ts'

export const POLICY_BYTES_MAX = 64 * 1024 // RFC 8461 3.3: senders may limit the policy body to 64 KiB
export const POLICY_FETCH_MS_MAX = 10_000 // RFC 8461 3.3 suggests a short timeout, e.g. 60 s; ours is a delivery's share
export const POLICY_MAX_AGE_S_MAX = 31_557_600 // RFC 8461 3.2: max_age at most one year
export const POLICY_CACHE_ENTRIES_MAX = 10_000 // domains remembered; the oldest is forgotten beyond this
const HTTPS_PORT = 443

export interface StsPolicy {
  id: string
  mode: 'enforce' | 'testing' | 'none'
  mx: string[] // patterns: 'mx.example.com' or '*.example.com'
  maxAgeS: number
}

/** What a policy means for one delivery. */
export type StsDecision =
  | { enforce: false }
  | { enforce: true, policy: StsPolicy, hosts: MxHost[] } // hosts: the MX hosts the policy allows (maybe none)

export interface MtaStsInit {
  /** Extra CA certificates (PEM) trusted for the policy fetch; tests pass their own CA. */
  ca?: string | string[]
  /** The HTTPS port of mta-sts.DOMAIN (443; tests point it at their own server). */
  httpsPort?: number
  fetchMsMax?: number
}

export interface MtaStsComponents {
  resolver: MxResolver
  now?: () => number
}

export interface MtaSts {
  /** The policy in force for `domain` (cached or fetched), or null; never throws for what DNS or HTTPS answers. */
  policy (domain: string, opts?: OpOptions): Promise<StsPolicy | null>
  /** Applies the policy (if any, and enforced) to the MX hosts. */
  decide (domain: string, hosts: MxHost[], opts?: OpOptions): Promise<StsDecision>
}

export function createMtaSts (components: MtaStsComponents, init: MtaStsInit = {}): MtaSts {
  const now = components.now ?? Date.now
  const cache = new Map<string, { policy: StsPolicy, expiresAt: number }>()

  const remember = (domain: string, policy: StsPolicy): void => {
    cache.delete(domain)
    cache.set(domain, { policy, expiresAt: now() + policy.maxAgeS * 1000 })
    if (cache.size > POLICY_CACHE_ENTRIES_MAX) cache.delete(cache.keys().next().value as string)
  }

  const policy = async (domain: string, opts?: OpOptions): Promise<StsPolicy | null> => {
    const name = domain.toLowerCase()
    const cached = cache.get(name)
    const valid = cached !== undefined && cached.expiresAt > now() ? cached.policy : null
    let id: string | null
    try {
      id = recordId(await components.resolver.txt(`_mta-sts.${name}`, opts))
    } catch {
      opts?.signal?.throwIfAborted()
      return valid // RFC 8461 5.1: a DNS failure does not drop a cached policy
    }
    if (id === null) return valid // RFC 8461 3.1 and 5.1: no record, a valid cached policy still applies
    if (valid !== null && valid.id === id) return valid
    try {
      const fetched = await fetchPolicy(components.resolver, name, init, opts)
      const p = { ...fetched, id }
      remember(name, p)
      return p
    } catch {
      opts?.signal?.throwIfAborted()
      return valid // RFC 8461 3.3: a failed fetch keeps the policy already cached
    }
  }

  return {
    policy,
    async decide (domain, hosts, opts) {
      const p = await policy(domain, opts)
      if (p === null || p.mode !== 'enforce') return { enforce: false }
      return { enforce: true, policy: p, hosts: hosts.filter(h => p.mx.some(pattern => mxMatches(pattern, h.name))) }
    }
  }
}

/** The id of the single `v=STSv1` record, or null when there is none or more than one (RFC 8461 3.1). */
export function recordId (records: string[]): string | null {
  const sts = records.filter(r => /^v=STSv1\s*(;|$)/.test(r.trim()))
  if (sts.length !== 1) return null
  const m = /(?:^|;)\s*id=([A-Za-z0-9]{1,32})\s*(?:;|$)/.exec(sts[0] ?? '')
  return m?.[1] ?? null
}

/** RFC 8461 3.2: `key: value` lines; null when the policy is not valid STSv1. */
export function parsePolicy (text: string): Omit<StsPolicy, 'id'> | null {
  let version = ''
  let mode = ''
  let maxAge = -1
  const mx: string[] = []
  for (const line of text.split(/\r?\n/)) {
    const m = /^([A-Za-z0-9_]+)\s*:\s*(.*?)\s*$/.exec(line)
    if (m === null) continue
    const [, key, value] = m as unknown as [string, string, string]
    if (key === 'version') version = value
    else if (key === 'mode') mode = value
    else if (key === 'max_age' && /^\d{1,10}$/.test(value)) maxAge = Math.min(Number(value), POLICY_MAX_AGE_S_MAX)
    else if (key === 'mx' && value !== '') mx.push(value.toLowerCase())
  }
  if (version !== 'STSv1' || maxAge < 0) return null
  if (mode !== 'enforce' && mode !== 'testing' && mode !== 'none') return null
  if (mode !== 'none' && mx.length === 0) return null
  return { mode, mx, maxAgeS: maxAge }
}

/** RFC 8461 4.1: an exact name, or '*.' matching exactly one leftmost label. */
export function mxMatches (pattern: string, host: string): boolean {
  const p = pattern.toLowerCase().replace(/\.$/, '')
  const h = host.toLowerCase().replace(/\.$/, '')
  if (!p.startsWith('*.')) return p === h
  const dot = h.indexOf('.')
  return dot > 0 && h.slice(dot + 1) === p.slice(2)
}

/** GET https://mta-sts.DOMAIN/.well-known/mta-sts.txt, resolved through our resolver, verified, bounded. */
async function fetchPolicy (resolver: MxResolver, domain: string, init: MtaStsInit, opts?: OpOptions): Promise<Omit<StsPolicy, 'id'>> {
  const host = `mta-sts.${domain}`
  const addrs = await resolver.addresses(host, opts)
  const address = addrs[0]
  if (address === undefined) throw new Error(`${host} has no address`)
  const limitMs = init.fetchMsMax ?? POLICY_FETCH_MS_MAX
  const body = await new Promise<string>((resolve, reject) => {
    const req = request({
      host: address,
      servername: host, // SNI and the certificate check are for the name, not the address
      port: init.httpsPort ?? HTTPS_PORT,
      path: '/.well-known/mta-sts.txt',
      method: 'GET',
      headers: { host, accept: 'text/plain' },
      ca: init.ca,
      rejectUnauthorized: true,
      agent: false,
      signal: opts?.signal,
      timeout: limitMs
    }, res => {
      // RFC 8461 3.3: only a 200 counts; redirects are not followed.
      if (res.statusCode !== 200) { res.resume(); req.destroy(); reject(new Error(`HTTP ${res.statusCode ?? 0}`)); return }
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (c: Buffer) => {
        size += c.length
        if (size > POLICY_BYTES_MAX) { req.destroy(); reject(new Error(`policy larger than ${POLICY_BYTES_MAX} bytes`)); return }
        chunks.push(c)
      })
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
      res.on('error', reject)
    })
    const timer = setTimeout(() => req.destroy(new Error(`policy fetch took more than ${limitMs} ms`)), limitMs)
    req.on('close', () => clearTimeout(timer))
    req.on('timeout', () => req.destroy(new Error('policy fetch timed out')))
    req.on('error', reject)
    req.end()
  })
  const parsed = parsePolicy(body)
  if (parsed === null) throw new Error('not a valid STSv1 policy')
  return parsed
}

// What a domain must publish in DNS for mail to reach the grid and for our signatures and checks to mean
// something, and a check of what is published. Every record names its RFC; `required` ones break mail when
// missing (MX, SPF, DKIM, DMARC), the rest help clients and senders (RFC 6186 SRV, autoconfig names) or need
// an operator's decision first (MTA-STS needs the policy served over HTTPS at mta-sts.DOMAIN).

import { createHash } from 'node:crypto'
import { Resolver } from 'node:dns/promises'
import { spf } from 'mailauth'
import type { DkimKey } from '../../store/index.ts'
import { dkimName, dkimTxt } from './keys.ts'

export const MX_PREFERENCE = 10
export const MTA_STS_MAX_AGE_S = 604_800 // one week: RFC 8461 3.2 suggests weeks once a policy is stable
export const DNS_CHECK_TIMEOUT_MS = 3000 // per query and try
export const DNS_CHECK_TRIES = 2

export type DnsRecordData =
  | { type: 'MX', preference: number, exchange: string }
  | { type: 'TXT', text: string }
  | { type: 'SRV', priority: number, weight: number, port: number, target: string }
  | { type: 'CNAME', target: string }

export type DnsRecord = DnsRecordData & {
  name: string // fully qualified, no trailing dot
  /** Zone-file presentation of the data (names with a trailing dot, TXT quoted and split at 255 bytes). */
  value: string
  purpose: string
  required: boolean
}

export interface DomainFacts {
  domain: string
  /** The names of the grid's nodes that accept mail (the MX targets); the first is this node. */
  hosts: string[]
  /** Bound ports of this node's services; a service that is off has none. */
  ports: Partial<Record<'submission' | 'smtps' | 'imap' | 'imaps' | 'pop3' | 'pop3s', number>>
  dkim: Array<Pick<DkimKey, 'selector' | 'publicKey' | 'state'>>
}

const fqdn = (n: string): string => n === '.' ? '.' : `${n}.`

function txtValue (text: string): string {
  const b = Buffer.from(text)
  const parts: string[] = []
  for (let i = 0; i < b.length || parts.length === 0; i += 255) parts.push(`"${b.subarray(i, i + 255).toString().replace(/[\\"]/g, c => `\\${c}`)}"`)
  return parts.join(' ')
}

function rec (name: string, data: DnsRecordData, purpose: string, required: boolean): DnsRecord {
  const value = data.type === 'MX'
    ? `${data.preference} ${fqdn(data.exchange)}`
    : data.type === 'TXT'
      ? txtValue(data.text)
      : data.type === 'SRV' ? `${data.priority} ${data.weight} ${data.port} ${fqdn(data.target)}` : fqdn(data.target)
  return { name, ...data, value, purpose, required }
}

/** Every record `facts.domain` needs, in the order an operator would enter them. */
export function domainRecords (facts: DomainFacts): DnsRecord[] {
  const d = facts.domain
  const host = facts.hosts[0]
  const out: DnsRecord[] = []
  for (const h of facts.hosts) out.push(rec(d, { type: 'MX', preference: MX_PREFERENCE, exchange: h }, 'RFC 5321 5.1: where mail for the domain goes', true))
  out.push(rec(d, { type: 'TXT', text: 'v=spf1 mx -all' }, 'RFC 7208: only the domain\'s MX hosts send its mail', true))
  for (const k of facts.dkim) {
    const why = k.state === 'active' ? 'signs outgoing mail' : k.state === 'pending' ? 'next key: publish, then activate it' : 'former key: keep until mail signed with it has arrived'
    out.push(rec(dkimName(d, k.selector), { type: 'TXT', text: dkimTxt(k) }, `RFC 6376 3.6: DKIM key ${k.selector} (${why})`, true))
  }
  out.push(rec(`_dmarc.${d}`, { type: 'TXT', text: `v=DMARC1; p=quarantine; rua=mailto:dmarc@${d}` }, 'RFC 7489 6.1: DMARC policy; aggregate reports to dmarc@ (create that mailbox or alias)', true))
  // RFC 6186 3.4 (and RFC 8314 5.1 for submissions): a target of "." says the service is not offered
  const srv: Array<[string, keyof DomainFacts['ports']]> = [
    ['_submission._tcp', 'submission'], ['_submissions._tcp', 'smtps'], ['_imap._tcp', 'imap'], ['_imaps._tcp', 'imaps'], ['_pop3._tcp', 'pop3'], ['_pop3s._tcp', 'pop3s']
  ]
  for (const [label, svc] of srv) {
    const port = facts.ports[svc]
    const data: DnsRecordData = port === undefined
      ? { type: 'SRV', priority: 0, weight: 0, port: 0, target: '.' }
      : { type: 'SRV', priority: 0, weight: 1, port, target: host }
    out.push(rec(`${label}.${d}`, data, `RFC 6186: mail clients find ${svc}${port === undefined ? ' (not offered)' : ''}`, false))
  }
  for (const n of ['autoconfig', 'autodiscover']) out.push(rec(`${n}.${d}`, { type: 'CNAME', target: host }, 'client autoconfiguration (Thunderbird, Outlook) looks here', false))
  // The policy id changes whenever the MX list does (RFC 8461 3.1); the policy file itself must be served at
  // https://mta-sts.DOMAIN/.well-known/mta-sts.txt (mtaStsPolicy), which is why these are not required.
  const id = createHash('sha256').update(facts.hosts.join(',')).digest('hex').slice(0, 16)
  out.push(rec(`_mta-sts.${d}`, { type: 'TXT', text: `v=STSv1; id=${id}` }, 'RFC 8461 3.1: MTA-STS (serve the policy at mta-sts.DOMAIN over HTTPS first)', false))
  out.push(rec(`mta-sts.${d}`, { type: 'CNAME', target: host }, 'RFC 8461 3.2: the host that serves the MTA-STS policy', false))
  out.push(rec(`_smtp._tls.${d}`, { type: 'TXT', text: `v=TLSRPTv1; rua=mailto:tlsrpt@${d}` }, 'RFC 8460 3: TLS failure reports to tlsrpt@', false))
  return out
}

/** The MTA-STS policy file (RFC 8461 3.2) that matches domainRecords' _mta-sts record. */
export function mtaStsPolicy (hosts: string[]): string {
  return ['version: STSv1', 'mode: testing', ...hosts.map(h => `mx: ${h}`), `max_age: ${MTA_STS_MAX_AGE_S}`].join('\r\n') + '\r\n'
}

export type CheckStatus = 'ok' | 'missing' | 'wrong' | 'error'
export interface RecordCheck {
  record: DnsRecord
  status: CheckStatus
  found: string[] // what DNS has at that name (of the same kind), for the operator to compare
}

export interface DnsCheckResult {
  domain: string
  ok: boolean // every required record is ok
  checks: RecordCheck[]
}

const norm = (s: string): string => s.toLowerCase().replace(/\.$/, '')
const normTxt = (s: string): string => s.replace(/\s*;\s*/g, ';').replace(/;$/, '').replace(/\s+/g, ' ').trim().toLowerCase()
const tagOf = (text: string, tag: string): string | null => {
  for (const part of text.split(';')) {
    const i = part.indexOf('=')
    if (i > 0 && part.slice(0, i).trim().toLowerCase() === tag) return part.slice(i + 1).replace(/\s+/g, '')
  }
  return null
}
const absent = (err: unknown): boolean => ['ENOTFOUND', 'ENODATA'].includes((err as { code?: string }).code ?? '')

/** Looks every record up (on `servers` when given, 'host[:port]') and compares. Never throws for DNS answers. */
export async function checkRecords (domain: string, records: DnsRecord[], opts: { servers?: string[] } = {}): Promise<DnsCheckResult> {
  const r = new Resolver({ timeout: DNS_CHECK_TIMEOUT_MS, tries: DNS_CHECK_TRIES })
  if (opts.servers !== undefined && opts.servers.length > 0) r.setServers(opts.servers)
  const checks: RecordCheck[] = []
  const hosts = records.flatMap(x => x.type === 'MX' ? [x.exchange] : [])
  for (const record of records) {
    try {
      checks.push(await checkOne(r, record, domain, hosts))
    } catch (err) {
      checks.push({ record, status: absent(err) ? 'missing' : 'error', found: absent(err) ? [] : [String((err as { code?: string }).code ?? err)] })
    }
  }
  return { domain, ok: checks.every(c => !c.record.required || c.status === 'ok'), checks }
}

/** Whether the domain's SPF record, evaluated by mailauth (RFC 7208), passes mail from every address of our hosts. */
async function spfAllows (r: Resolver, domain: string, text: string, hosts: string[]): Promise<boolean> {
  const none = (): string[] => []
  const ips = (await Promise.all(hosts.map(async h => [...await r.resolve4(h).catch(none), ...await r.resolve6(h).catch(none)]))).flat()
  if (ips.length === 0) return false
  const resolver = async (name: string, rrtype: string): Promise<unknown> => {
    // the record being judged is the one found, so a second lookup cannot disagree with it
    if (rrtype === 'TXT' && name.toLowerCase().replace(/\.$/, '') === domain) return [[text]]
    return await r.resolve(name, rrtype)
  }
  for (const ip of ips) {
    const res = await spf({ sender: `postmaster@${domain}`, ip, helo: hosts[0], mta: hosts[0], resolver: resolver as never, maxElapsedTime: DNS_CHECK_TIMEOUT_MS * DNS_CHECK_TRIES })
    if (res.status.result !== 'pass') return false
  }
  return true
}

async function checkOne (r: Resolver, record: DnsRecord, domain: string, hosts: string[]): Promise<RecordCheck> {
  switch (record.type) {
    case 'MX': {
      const mx = await r.resolveMx(record.name)
      const found = mx.map(m => `${m.priority} ${m.exchange}.`)
      return { record, found, status: mx.some(m => norm(m.exchange) === norm(record.exchange)) ? 'ok' : 'missing' }
    }
    case 'TXT': {
      const all = (await r.resolveTxt(record.name)).map(chunks => chunks.join(''))
      const version = record.text.slice(0, record.text.indexOf(';') < 0 ? record.text.indexOf(' ') : record.text.indexOf(';')).toLowerCase()
      const same = all.filter(t => t.toLowerCase().replace(/\s+/g, '').startsWith(version.replace(/\s+/g, '')))
      if (same.length === 0) return { record, found: all, status: 'missing' }
      // RFC 7208 3.2: two SPF records are an error (permerror) whatever they say
      if (same.length > 1 && version === 'v=spf1') return { record, found: same, status: 'wrong' }
      // another wording that does the same job is as good as ours
      if (same.some(t => normTxt(t) === normTxt(record.text))) return { record, found: same, status: 'ok' }
      let ok: boolean
      switch (version) {
        case 'v=dkim1': ok = same.some(t => tagOf(t, 'p') === tagOf(record.text, 'p')); break
        // RFC 7489 6.3: p=none asks receivers for nothing; only a policy that acts protects the domain
        case 'v=dmarc1': ok = same.length === 1 && ['quarantine', 'reject'].includes((tagOf(same[0], 'p') ?? '').toLowerCase()); break
        case 'v=stsv1': ok = same.length === 1 && (tagOf(same[0], 'id') ?? '') !== ''; break
        case 'v=tlsrptv1': ok = same.length === 1 && (tagOf(same[0], 'rua') ?? '') !== ''; break
        case 'v=spf1': ok = await spfAllows(r, domain, same[0], hosts); break
        default: ok = false
      }
      return { record, found: same, status: ok ? 'ok' : 'wrong' }
    }
    case 'SRV': {
      const srv = await r.resolveSrv(record.name)
      const found = srv.map(s => `${s.priority} ${s.weight} ${s.port} ${s.name === '' ? '.' : s.name + '.'}`)
      const ok = srv.some(s => s.port === record.port && norm(s.name === '' ? '.' : s.name) === norm(record.target))
      return { record, found, status: ok ? 'ok' : 'wrong' }
    }
    case 'CNAME': {
      try {
        const c = await r.resolveCname(record.name)
        return { record, found: c.map(x => `${x}.`), status: c.some(x => norm(x) === norm(record.target)) ? 'ok' : 'wrong' }
      } catch (err) {
        if (!absent(err)) throw err
        // an A record with the target's addresses does as well as a CNAME
        const none = (): string[] => []
        const [mine, theirs] = await Promise.all([r.resolve4(record.name).catch(none), r.resolve4(record.target).catch(none)])
        if (mine.length === 0) return { record, found: [], status: 'missing' }
        return { record, found: mine, status: theirs.length > 0 && mine.every(a => theirs.includes(a)) ? 'ok' : 'wrong' }
      }
    }
  }
}

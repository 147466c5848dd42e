// The MX's sender checks: SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489, as RFC 9989 updates it) and ARC
// (RFC 8617), all by mailauth's `authenticate`, with DNS through node:dns on the configured resolvers and a
// bound on the time of the whole check. The outcome is the header block to put on top of the message (RFC
// 8601 5: Authentication-Results above the trace fields, authserv-id = our hostname) and what to do with it.
// Fail open: a DNS failure or time-out gives temperror results and the message is accepted (logged), because
// refusing mail whenever a resolver hiccups loses more legitimate mail than it stops forgeries.
// DNS answers are kept between messages (dns-cache.ts): one resolver per checker, not one per message.

import { Resolver } from 'node:dns/promises'
import { createRequire } from 'node:module'
import { authenticate } from 'mailauth'
import type { AuthenticateResult } from 'mailauth'
import type { Logger } from 'pino'
import { withoutOwnAuthResults } from './headers.ts'
import { createDnsCache, DNS_QUERY_TIMEOUT_MS, DNS_QUERY_TRIES } from './dns-cache.ts'
import type { DnsCache, DnsCacheInit, DnsResolve } from './dns-cache.ts'

export { DNS_QUERY_TIMEOUT_MS, DNS_QUERY_TRIES }
export type { DnsResolve }
// The whole check: under the 10 minutes a client waits for the answer to DATA (RFC 5321 4.5.3.2.6) with a
// wide margin, and short enough that a dead resolver costs each message seconds, not minutes.
export const CHECK_TIMEOUT_MS = 15_000

export interface InboundCheckerComponents {
  logger: Logger
  /** DNS under the checker's answer cache (tests); default: one node:dns resolver on `dnsServers`. */
  resolver?: DnsResolve
  /** The answer cache's clock (tests). */
  now?: () => number
}

export interface InboundCheckerInit {
  hostname: string // the authserv-id
  /** DMARC failure under p=reject: refused (true) or filed into Junk (false). */
  dmarcReject: boolean
  /** 'host' or 'host:port' ('[v6]:port'); [] = the system's resolvers. */
  dnsServers: string[]
  /** Other authserv-ids of our trust boundary (the grid's other nodes' hostnames) whose fields are removed too. */
  trustedIds?: string[]
  /** Bound on one whole check; CHECK_TIMEOUT_MS by default (tests shorten it). */
  timeoutMs?: number
  /** The DNS answer cache's lifetimes and bounds (dns-cache.ts; tests shorten them). */
  dnsCache?: DnsCacheInit
}

export interface CheckContext {
  ip: string // the SMTP client's address
  helo: string
  mailFrom: string // the reverse path; '' for the null sender
  /** The authenticated submitter, when the session logged in: its mail is not checked, only noted (RFC 8601 2.7.4). */
  sender?: string
  signal?: AbortSignal
}

export interface CheckResult {
  /** Header fields to prepend (Authentication-Results first, then Received-SPF), CRLF-terminated. */
  headers: string
  action: 'accept' | 'reject' | 'junk'
  /** For 'reject': the SMTP reply text, '5.7.1 ...' (reply code 550). */
  reply?: string
  /** One word per method, for logs and tests. */
  results: { spf: string, dkim: string, dmarc: string, arc: string }
  /** What an ARC seal added when this message is forwarded needs (seal.ts). */
  arc: { authResults: string, cv: string }
  /** The message to deliver instead, when it came with Authentication-Results under our name (removed, RFC 8601 5). */
  cleaned?: Buffer
}

export interface InboundChecker {
  check (message: Buffer, ctx: CheckContext): Promise<CheckResult>
  /** Ends what the checker runs (threads.ts: its threads); checks after it fail open. Safe twice. */
  close?: () => Promise<void>
}

/** The checker in this thread (createInboundChecker), with its DNS answer cache in reach. */
export interface LocalInboundChecker extends InboundChecker {
  /** The DNS answer cache under the checks (stats for tests and benchmarks). */
  readonly dns: DnsCache
  /**
   * `check` without its first step, the removal of our own Authentication-Results (`cleaned` is never set): the
   * results for `message`, or, when `unsigned` is given, for the message whose unsigned header block it is
   * (unsignedHeaderBlock; `message` may then be that block alone). For a caller that removed the fields itself:
   * the check threads (threads.ts), which are sent an unsigned message's header block instead of all its bytes.
   */
  evaluate (message: Buffer, unsigned: Buffer | null, ctx: CheckContext): Promise<CheckResult>
}

/** A resolver on node:dns with bounded time per query; `cancel` ends every query still waiting (ECANCELLED). */
export function createResolver (dnsServers: string[]): { resolve: DnsResolve, cancel: () => void } {
  const r = new Resolver({ timeout: DNS_QUERY_TIMEOUT_MS, tries: DNS_QUERY_TRIES })
  if (dnsServers.length > 0) r.setServers(dnsServers)
  return {
    resolve: async (name, rrtype) => await r.resolve(name, rrtype),
    cancel: () => { r.cancel() }
  }
}

const TEMP = 'temperror'

/** Names in a header block that make mailauth read the body (DKIM's body hash; ARC's sets carry signatures too). */
const SIGNED_MARKS = ['dkim-signature', 'arc-']

/**
 * What mailauth needs to check `message` when it carries no signature: its header block and the empty line that ends
 * it, without the body. With no DKIM-Signature and no ARC set, no method reads the body (SPF takes the session's
 * facts, DMARC the From field and the other results), so the results and the header fields are the same; but
 * mailauth still passes every byte of the body through its line-break loop, which was a tenth of an unsigned
 * message's ingest time. Null when the message may carry a signature (the marks anywhere in the header block, in any
 * case, even inside another field), or has no end of header block: then the whole message is checked.
 * The end is found as mailauth's parser finds it: the first LF that follows an LF or a CRLF, or starts the message.
 */
export function unsignedHeaderBlock (message: Buffer): Buffer | null {
  let end = -1
  if (message[0] === 0x0a) end = 0
  else if (message[0] === 0x0d && message[1] === 0x0a) end = 1
  else {
    const lflf = message.indexOf('\n\n')
    const lfcrlf = message.indexOf('\n\r\n')
    const a = lflf === -1 ? Infinity : lflf + 1
    const b = lfcrlf === -1 ? Infinity : lfcrlf + 2
    end = Math.min(a, b)
    if (end === Infinity) return null
  }
  if (end + 1 === message.length) return null // nothing to leave out
  const header = message.subarray(0, end + 1)
  const text = header.toString('latin1').toLowerCase()
  for (const mark of SIGNED_MARKS) if (text.includes(mark)) return null
  return header
}

// mailauth's own header parser, so the fields kept below are the rows it would find itself (its folding rules)
const mailauthTools = createRequire(import.meta.url)('mailauth/lib/tools.js') as {
  parseHeaders: (header: Buffer) => { parsed: Array<{ key: string | null, line: Buffer }> }
}
const CRLF = Buffer.from('\r\n')

/**
 * What of an unsigned message's header block mailauth reads: its From fields (DMARC's author domains; SPF takes the
 * session's facts). The other fields are parsed by mailauth all the same, byte by byte, the Received fields into a
 * chain only `trustReceived` uses (off here): a third of the check's time. The From rows are taken as mailauth's
 * parser finds them and given back in order, one per line, then the empty line, so it finds the same rows again.
 */
export function authorFields (header: Buffer): Buffer {
  const parts: Buffer[] = []
  for (const row of mailauthTools.parseHeaders(header).parsed) if (row.key === 'from') parts.push(row.line, CRLF)
  parts.push(CRLF)
  return Buffer.concat(parts)
}

/** The result of a check that could not finish (time-out, internal error): temperror for each method, accepted. */
export function failOpenResult (authservId: string, why: string): CheckResult {
  const ar = `${authservId}; spf=${TEMP} (${why}); dkim=${TEMP} (${why}); dmarc=${TEMP} (${why})`
  return {
    headers: `Authentication-Results: ${ar}\r\n`,
    action: 'accept',
    results: { spf: TEMP, dkim: TEMP, dmarc: TEMP, arc: TEMP },
    arc: { authResults: ar, cv: 'fail' }
  }
}

export function createInboundChecker (components: InboundCheckerComponents, init: InboundCheckerInit): LocalInboundChecker {
  const log = components.logger
  const id = init.hostname
  const timeoutMs = init.timeoutMs ?? CHECK_TIMEOUT_MS

  const failOpen = (why: string): CheckResult => failOpenResult(id, why)

  const ours = [init.hostname, ...(init.trustedIds ?? [])]
  const dns = createDnsCache({ resolve: components.resolver ?? createResolver(init.dnsServers).resolve, ...(components.now !== undefined ? { now: components.now } : {}) }, init.dnsCache)

  const evaluate = async (message: Buffer, unsigned: Buffer | null, ctx: CheckContext): Promise<CheckResult> => {
    ctx.signal?.throwIfAborted()
    if (ctx.sender !== undefined) {
      const ar = `${id}; auth=pass smtp.auth=${ctx.sender.replace(/[^\x21-\x7e]/g, '')}`
      return { headers: `Authentication-Results: ${ar}\r\n`, action: 'accept', results: { spf: 'none', dkim: 'none', dmarc: 'none', arc: 'none' }, arc: { authResults: ar, cv: 'none' } }
    }
    // this check's queries: ended with the check (time-out, abort), so mailauth stops asking; a query another
    // check shares goes on and its answer is kept
    const session = dns.session()
    const resolver = session.resolve
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<'timeout'>(resolve => { timer = setTimeout(() => resolve('timeout'), timeoutMs) })
    let onAbort = (): void => {}
    const aborted = new Promise<'aborted'>(resolve => {
      onAbort = () => resolve('aborted')
      ctx.signal?.addEventListener('abort', onAbort, { once: true })
    })
    let res: AuthenticateResult | 'timeout' | 'aborted'
    try {
      res = await Promise.race([
        // an unsigned message's body is read by no method (unsignedHeaderBlock), nor any field but From (authorFields)
        authenticate(unsigned === null ? message : authorFields(unsigned), {
          ip: clientIp(ctx.ip),
          helo: ctx.helo,
          sender: ctx.mailFrom,
          mta: init.hostname,
          resolver: resolver as never,
          strict: true, // RFC rules exactly: dkim=fail on a body hash mismatch, Authentication-Results on top
          disableBimi: true, // BIMI selects logos for display, nothing we decide on
          maxElapsedTime: timeoutMs
        } as Parameters<typeof authenticate>[1]),
        timedOut,
        aborted
      ])
    } catch (err) {
      log.warn({ event: 'inbound_auth_error', ip: ctx.ip, err }, 'sender authentication failed; accepting')
      return failOpen('internal error')
    } finally {
      clearTimeout(timer)
      ctx.signal?.removeEventListener('abort', onAbort)
      session.end()
    }
    if (res === 'aborted') throw ctx.signal?.reason ?? new Error('aborted')
    if (res === 'timeout') {
      log.warn({ event: 'inbound_auth_timeout', ip: ctx.ip, ms: timeoutMs }, 'sender authentication timed out; accepting')
      return failOpen('timed out')
    }
    const results = {
      spf: res.spf === false ? 'none' : res.spf.status.result,
      dkim: dkimSummary(res),
      dmarc: res.dmarc === false ? 'none' : res.dmarc.status.result,
      arc: res.arc === false ? 'none' : res.arc.status.result
    }
    const arc = res.arc === false ? { authResults: '', cv: 'none' } : { authResults: res.arc.authResults ?? '', cv: res.arc.status.result }
    const headers = res.headers.replace(/\r?\n/g, '\r\n')
    let action: CheckResult['action'] = 'accept'
    let reply: string | undefined
    const dmarc = res.dmarc
    if (dmarc !== false && dmarc.status.result === 'fail') {
      const domain = dmarc.status.header?.from ?? dmarc.domain
      if (dmarc.policy === 'reject' && init.dmarcReject) {
        action = 'reject'
        reply = `5.7.1 Message rejected: it fails the DMARC policy of ${domain} (p=reject)`
      } else if (dmarc.policy === 'reject' || dmarc.policy === 'quarantine') {
        action = 'junk'
      }
    }
    if (Object.values(results).includes(TEMP)) log.warn({ event: 'inbound_auth_temperror', ip: ctx.ip, ...results }, 'DNS trouble during sender authentication; accepting')
    // the results go into the delivery's own line (smtp_delivered, smtp_rejected_dmarc): one info line per message
    log.debug({ event: 'inbound_auth', ip: ctx.ip, from: ctx.mailFrom, ...results, action }, 'sender authentication')
    return { headers, action, ...(reply === undefined ? {} : { reply }), results, arc }
  }

  return {
    dns,
    evaluate,
    async check (message, ctx) {
      ctx.signal?.throwIfAborted()
      const cleaned = withoutOwnAuthResults(message, ours)
      if (cleaned !== null) log.warn({ event: 'inbound_auth_forged', ip: ctx.ip, from: ctx.mailFrom }, 'removed Authentication-Results that claim our name')
      const r = await evaluate(message, ctx.sender === undefined ? unsignedHeaderBlock(message) : null, ctx)
      return cleaned === null ? r : { ...r, cleaned }
    }
  }
}

/** An IPv4 client seen through an IPv6 socket ('::ffff:192.0.2.1') is checked as the IPv4 address it is (RFC 7208 5.6). */
function clientIp (ip: string): string {
  return ip.replace(/^::ffff:(?=\d{1,3}(?:\.\d{1,3}){3}$)/i, '')
}

/** The best DKIM result of the message: pass if any signature passed, else the first result, else none. */
function dkimSummary (res: AuthenticateResult): string {
  const all = (res.dkim?.results ?? []).map(r => r.status.result)
  return all.includes('pass') ? 'pass' : all[0] ?? 'none'
}

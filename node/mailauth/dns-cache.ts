// The inbound checks' DNS answers, kept between messages. A sender's SPF record, its includes, its DMARC record
// and its DKIM key are the same for every message it sends; asking the resolver again for each (and building a
// resolver per message) was a fifth of the MX's busy time under load. One resolver per checker, answers kept by
// (name, rrtype) for a fixed time, concurrent identical queries made once.
//
// Lifetimes are fixed because node:dns's resolveTxt/resolveMx give no TTL. They are short next to the TTLs
// domains publish (SPF, DMARC and DKIM records are commonly 300 s to a day), so a record a domain changes is
// seen within a minute, as it would be through a caching resolver that honours a small TTL. Negative answers
// (NXDOMAIN, NODATA: RFC 2308) are kept shorter, because a domain that is setting up its records should not
// wait. Failures that say nothing about the domain (SERVFAIL, REFUSED, a time-out, an unreachable resolver,
// a cancelled query: RFC 7208 2.6.6 temperror) are never kept: the next message asks again.
//
// Names come from the network (HELO, MAIL FROM domain, From domain, DKIM d= and s=, SPF macros), so the cache
// is bounded by entries and by bytes, least recently used out first; an answer larger than a tenth of the
// byte bound is passed through, never kept.

// One DNS query waits at most this long per try (node's default is 5 s with 4 tries); a check makes up to
// about twenty queries (SPF's ten lookups, RFC 7208 4.6.4, plus DKIM keys, DMARC, ARC), most in sequence.
export const DNS_QUERY_TIMEOUT_MS = 2000
export const DNS_QUERY_TRIES = 2
export const DNS_ANSWER_TTL_MS = 60_000 // answers: a changed record is seen within a minute
export const DNS_NEGATIVE_TTL_MS = 15_000 // NXDOMAIN and NODATA
export const DNS_CACHE_ENTRIES_MAX = 10_000 // about as many sender domains as a busy MX sees in a minute, several names each
export const DNS_CACHE_BYTES_MAX = 8 * 1024 * 1024 // of answer text (keys and strings), estimated
// A query still unanswered after this is given up (ETIMEOUT) even if the resolver under it never settles:
// node:dns ends by itself after its tries; this bounds an injected resolver too, so a waiting entry never stays.
export const DNS_QUERY_DEADLINE_MS = DNS_QUERY_TIMEOUT_MS * DNS_QUERY_TRIES + 1000

/** node:dns's codes for "the name has no such record": the only failures kept. */
const NEGATIVE_CODES = new Set(['ENOTFOUND', 'ENODATA'])

export type DnsResolve = (name: string, rrtype: string) => Promise<unknown>

export interface DnsCacheComponents {
  resolve: DnsResolve
  now?: () => number
}

export interface DnsCacheInit {
  answerTtlMs?: number
  negativeTtlMs?: number
  entriesMax?: number
  bytesMax?: number
  queryDeadlineMs?: number
}

/** The queries of one check: resolve() through the cache; end() rejects whatever it still waits for (ECANCELLED)
 * and every later query, without touching the shared query (its answer is still kept for the next check). */
export interface DnsSession {
  resolve: DnsResolve
  end (): void
}

export interface DnsCache {
  resolve: DnsResolve
  session (): DnsSession
  /** Entries and estimated bytes held; queries sent to the resolver under it; answers from memory. */
  stats (): { entries: number, bytes: number, queries: number, hits: number, coalesced: number }
  clear (): void
}

// a failure carries the error thrown to every caller: mailauth reads its code and copies it, never changes it
type Outcome = { ok: true, value: unknown } | { ok: false, code: string, message: string, error: Error }
interface Entry { outcome: Outcome, expires: number, bytes: number }

export function createDnsCache (components: DnsCacheComponents, init: DnsCacheInit = {}): DnsCache {
  const now = components.now ?? Date.now
  const answerTtl = init.answerTtlMs ?? DNS_ANSWER_TTL_MS
  const negativeTtl = init.negativeTtlMs ?? DNS_NEGATIVE_TTL_MS
  const entriesMax = init.entriesMax ?? DNS_CACHE_ENTRIES_MAX
  const bytesMax = init.bytesMax ?? DNS_CACHE_BYTES_MAX
  const deadlineMs = init.queryDeadlineMs ?? DNS_QUERY_DEADLINE_MS
  const entries = new Map<string, Entry>() // Map order = least recently used first
  const waiting = new Map<string, Promise<Outcome>>()
  let bytes = 0
  let queries = 0
  let hits = 0
  let coalesced = 0

  const drop = (key: string): void => {
    const e = entries.get(key)
    if (e === undefined) return
    entries.delete(key)
    bytes -= e.bytes
  }

  const keep = (key: string, outcome: Outcome, ttl: number): void => {
    const size = key.length + sizeOf(outcome.ok ? outcome.value : outcome.message)
    if (size > bytesMax / 10) return
    drop(key)
    entries.set(key, { outcome, expires: now() + ttl, bytes: size })
    bytes += size
    for (const k of entries.keys()) {
      if (entries.size <= entriesMax && bytes <= bytesMax) break
      drop(k)
    }
  }

  const ask = async (name: string, rrtype: string): Promise<Outcome> => {
    queries++
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(dnsError('ETIMEOUT', `query of ${name} ${rrtype} timed out`, name, rrtype)), deadlineMs)
      timer.unref() // never what keeps a stopping process alive
    })
    try {
      return { ok: true, value: await Promise.race([components.resolve(name, rrtype), deadline]) }
    } catch (err) {
      const code = String((err as { code?: unknown })?.code ?? 'EUNKNOWN')
      const message = String((err as { message?: unknown })?.message ?? code)
      return { ok: false, code, message, error: dnsError(code, message, name, rrtype) }
    } finally {
      clearTimeout(timer)
    }
  }

  const lookup = async (name: string, rrtype: string): Promise<Outcome> => {
    const key = `${rrtype} ${name.toLowerCase()}`
    const e = entries.get(key)
    if (e !== undefined) {
      if (e.expires > now()) {
        entries.delete(key) // re-insert: most recently used last
        entries.set(key, e)
        hits++
        return e.outcome
      }
      drop(key)
    }
    const pending = waiting.get(key)
    if (pending !== undefined) { coalesced++; return await pending }
    const p = ask(name, rrtype).then(outcome => {
      waiting.delete(key)
      if (outcome.ok) keep(key, outcome, answerTtl)
      else if (NEGATIVE_CODES.has(outcome.code)) keep(key, outcome, negativeTtl)
      return outcome
    })
    waiting.set(key, p)
    return await p
  }

  const resolve: DnsResolve = async (name, rrtype) => {
    const o = await lookup(String(name), String(rrtype))
    if (!o.ok) throw o.error
    return copyOf(o.value)
  }

  return {
    resolve,
    session () {
      let ended = false
      const cancels = new Set<(err: Error) => void>()
      return {
        resolve: async (name, rrtype) => {
          if (ended) throw dnsError('ECANCELLED', 'the check ended', name, rrtype)
          let cancel: (err: Error) => void = () => {}
          const cancelled = new Promise<never>((_resolve, reject) => { cancel = reject })
          cancels.add(cancel)
          try {
            return await Promise.race([resolve(name, rrtype), cancelled])
          } finally {
            cancels.delete(cancel)
          }
        },
        end () {
          ended = true
          for (const c of cancels) c(dnsError('ECANCELLED', 'the check ended', '', ''))
          cancels.clear()
        }
      }
    },
    stats: () => ({ entries: entries.size, bytes, queries, hits, coalesced }),
    clear () { entries.clear(); bytes = 0 }
  }
}

/** An error as node:dns gives it (code, hostname, syscall), without a stack: a kept NXDOMAIN is thrown for every
 * message that asks (one error per kept answer; building one with a stack each time was 2.8 % of the MX's busy
 * time under load). */
function dnsError (code: string, message: string, name: string, rrtype: string): Error {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    return Object.assign(new Error(message), { code, hostname: name, syscall: `query${rrtype}` })
  } finally {
    Error.stackTraceLimit = limit
  }
}

/** A copy of the answer's arrays and records, so a caller that sorts or edits what it got cannot change what is kept. */
function copyOf (v: unknown): unknown {
  if (!Array.isArray(v)) return v !== null && typeof v === 'object' ? { ...v } : v
  return v.map(x => Array.isArray(x) ? [...x] : x !== null && typeof x === 'object' ? { ...x } : x)
}

/** Estimated bytes of an answer: its strings' lengths and a little per element (bounded depth: answers are flat). */
function sizeOf (v: unknown, depth = 0): number {
  if (typeof v === 'string') return v.length + 8
  if (depth > 3 || v === null || typeof v !== 'object') return 8
  let n = 16
  for (const x of Array.isArray(v) ? v : Object.values(v)) n += sizeOf(x, depth + 1)
  return n
}

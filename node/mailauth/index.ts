// node/mailauth: sender authentication with mailauth. Outbound: DKIM signing with each domain's key from the
// replicated directory (sign.ts), SRS for forwarded mail (srs.ts) and its ARC seal (seal.ts). Inbound: SPF,
// DKIM, DMARC and ARC on the MX with the Authentication-Results header and the DMARC decision (verify.ts).
// Keys and the records a domain publishes: keys.ts, dns.ts.

export { createSigner } from './sign.ts'
export type { Signer, SignerComponents } from './sign.ts'
export { createInboundChecker, createResolver, failOpenResult, CHECK_TIMEOUT_MS, DNS_QUERY_TIMEOUT_MS } from './verify.ts'
export { createThreadedInboundChecker, inboundThreadCount, CHECK_THREADS_MAX, THREAD_GRACE_MS } from './threads.ts'
export type { ThreadedCheckerComponents, ThreadedCheckerInit, ThreadedInboundChecker } from './threads.ts'
export { createDnsCache, DNS_ANSWER_TTL_MS, DNS_NEGATIVE_TTL_MS, DNS_CACHE_ENTRIES_MAX, DNS_CACHE_BYTES_MAX, DNS_QUERY_DEADLINE_MS } from './dns-cache.ts'
export type { DnsCache, DnsCacheInit, DnsSession } from './dns-cache.ts'
export type { CheckContext, CheckResult, DnsResolve, InboundChecker, InboundCheckerComponents, InboundCheckerInit, LocalInboundChecker } from './verify.ts'
export { createSrs, isSrs, srsSecret, SrsError, SRS_MAX_AGE_DAYS } from './srs.ts'
export type { Srs, SrsInit } from './srs.ts'
export { createArcSealer } from './seal.ts'
export type { ArcSealer, ArcSealerComponents, ArcSealOptions } from './seal.ts'
export { activateDkimKey, createDkimKey, dkimName, dkimTxt, publicView, retireDkimKey, rotateDkimKey, selectorFor, DKIM_RSA_BITS } from './keys.ts'
export { checkRecords, domainRecords, mtaStsPolicy } from './dns.ts'
export type { CheckStatus, DnsCheckResult, DnsRecord, DomainFacts, RecordCheck } from './dns.ts'
export { authorDomains } from './headers.ts'

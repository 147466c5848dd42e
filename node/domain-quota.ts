// A domain's usage for its byte quota (issue 11, item 5): the sum of its users' quota usage, each read where the
// user's mail is (on a grid, the user's primary), cached DOMAIN_USAGE_TTL_MS and grown by every delivery taken
// meanwhile, so a burst of mail to a domain costs one summation per interval, not one per message. The figure may
// lag an expunge by up to the interval: a domain near its quota is refused a little early, never let far past it.

import type { Directory, QuotaUsage } from '../store/index.ts'

/** How long a domain's summed usage is trusted before it is summed again. */
export const DOMAIN_USAGE_TTL_MS = 60_000
/** Users whose usage is read at once while summing (each may be an RPC to its primary). */
export const DOMAIN_USAGE_CONCURRENCY = 16

export interface DomainUsage {
  /** Bytes of mail the domain's users hold now (cached). */
  usage (domain: string): Promise<number>
  /** A delivery just stored `bytes` for users of the domain. */
  added (domain: string, bytes: number): void
}

export interface DomainUsageComponents {
  directory: Pick<Directory, 'listUsers'>
  quota: (user: string) => Promise<QuotaUsage>
  now?: () => number
}

export function createDomainUsage (components: DomainUsageComponents): DomainUsage {
  const now = components.now ?? Date.now
  const cache = new Map<string, { bytes: number, at: number }>()
  const pending = new Map<string, Promise<number>>()

  async function sum (domain: string): Promise<number> {
    const users = (await components.directory.listUsers(domain)).map(u => u.address)
    let total = 0
    for (let i = 0; i < users.length; i += DOMAIN_USAGE_CONCURRENCY) {
      const part = await Promise.all(users.slice(i, i + DOMAIN_USAGE_CONCURRENCY).map(async u => (await components.quota(u).catch(() => null))?.usedBytes ?? 0))
      for (const b of part) total += b
    }
    return total
  }

  return {
    async usage (domain) {
      const c = cache.get(domain)
      if (c !== undefined && now() - c.at < DOMAIN_USAGE_TTL_MS) return c.bytes
      let p = pending.get(domain)
      if (p === undefined) {
        const started = now()
        p = sum(domain).then(bytes => { cache.set(domain, { bytes, at: started }); return bytes }).finally(() => { pending.delete(domain) })
        pending.set(domain, p)
      }
      return await p
    },
    added (domain, bytes) {
      const c = cache.get(domain)
      if (c !== undefined) c.bytes += bytes
    }
  }
}

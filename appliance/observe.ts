// The admin API's statistics, alarms and domain quotas (issue 11), a route table added to the admin listener:
//
//   GET /v1/stats?scope=grid|domain:NAME|user:ADDRESS&from=MS&to=MS
//       { step, t: bucket starts (ms), series: { received, sent, bytesIn, bytesOut, failed, rejected, quarantined,
//         logins, loginFailures, mailboxBytes, deferred }, nodes: { answered, missing } }, summed over the live members
//   GET /v1/stats.csv?...   the same as CSV: a header row, time in ISO 8601
//   GET /v1/alarms          { active: Alarm[], history: Alarm[], nodes: { answered, missing } }, grid-wide
//   GET /v1/domains/NAME/quota               { domain: { name, created, quotaBytes?, quotaUsers? }, users: N }
//   PUT /v1/domains/NAME/quota {bytes?, users?}   sets either (0 = unlimited); answers as GET
//
// from/to default to the last 24 hours; a range longer than 30 days (STATS_RANGE_MS_MAX) is refused with 400.
// A domain administrator (appliance/console) may read the statistics of its domains and their users, and its
// domains' quotas; the grid's statistics, the alarms and setting a quota are for full administrators.

import type { MailNode } from '../node/types.ts'
import { parseScope, STATS_RANGE_MS_MAX, statsCsv, StatsError } from '../node/stats/index.ts'
import type { StatsResult } from '../node/stats/index.ts'
import { HttpError, mustManage, optCount } from './admin.ts'
import type { Route } from './admin.ts'
import { isFullAdmin } from './console/accounts.ts'
import type { Principal } from './console/accounts.ts'
import type { Directory } from '../store/index.ts'

export const STATS_RANGE_DEFAULT_MS = 24 * 3600_000

export interface ObserveComponents {
  stats: MailNode['stats']
  alarms: MailNode['alarms']
  /** The domain quota routes need it; absent: none. */
  directory?: Directory
  now?: () => number
}

function time (q: URLSearchParams, key: string, fallback: number): number {
  const v = q.get(key)
  if (v === null || v === '') return fallback
  if (!/^\d{1,16}$/.test(v) || !Number.isSafeInteger(Number(v))) throw new HttpError(400, `${key}: must be a time in milliseconds since the epoch`)
  return Number(v)
}

export function observeRoutes (c: ObserveComponents): Route[] {
  const now = c.now ?? Date.now
  const query = async (q: URLSearchParams, who: Principal): Promise<StatsResult> => {
    const to = time(q, 'to', now())
    const from = time(q, 'from', to - STATS_RANGE_DEFAULT_MS)
    if (from >= to) throw new HttpError(400, 'from: must be before to')
    if (to - from > STATS_RANGE_MS_MAX) throw new HttpError(400, `from, to: a range of at most ${STATS_RANGE_MS_MAX / 86_400_000} days`)
    let scope
    try {
      scope = parseScope(q.get('scope') ?? 'grid')
    } catch (err) {
      if (err instanceof StatsError) throw new HttpError(400, err.message)
      throw err
    }
    if (scope.kind === 'grid' && !isFullAdmin(who)) throw new HttpError(403, 'The grid\'s statistics are for full administrators: ask for domain:NAME')
    if (scope.kind === 'domain') mustManage(who, scope.name)
    if (scope.kind === 'user') mustManage(who, scope.address.slice(scope.address.lastIndexOf('@') + 1))
    return await c.stats.query(scope, from, to)
  }
  return [
    { method: 'GET', pattern: /^\/v1\/stats$/, scoped: true, handler: async r => ({ json: await query(r.query, r.principal) }) },
    {
      method: 'GET',
      pattern: /^\/v1\/stats\.csv$/,
      scoped: true,
      handler: async r => ({ json: null, text: statsCsv(await query(r.query, r.principal)), contentType: 'text/csv; charset=utf-8; header=present' })
    },
    { method: 'GET', pattern: /^\/v1\/alarms$/, handler: async () => ({ json: await c.alarms.list() }) },
    ...(c.directory === undefined ? [] : quotaRoutes(c.directory))
  ]
}

function quotaRoutes (dir: Directory): Route[] {
  const view = async (name: string): Promise<{ domain: unknown, users: number }> => {
    const domain = await dir.getDomain(name)
    if (domain === null) throw new HttpError(404, `No such domain: ${name}`)
    return { domain, users: (await dir.listUsers(domain.name)).length }
  }
  return [
    { method: 'GET', pattern: /^\/v1\/domains\/([^/]+)\/quota$/, scoped: true, handler: async r => { mustManage(r.principal, r.params[0]); return { json: await view(r.params[0]) } } },
    {
      method: 'PUT',
      pattern: /^\/v1\/domains\/([^/]+)\/quota$/,
      handler: async r => {
        const b = await r.body()
        const quota = { bytes: optCount(b, 'bytes'), users: optCount(b, 'users') }
        if (quota.bytes === undefined && quota.users === undefined) throw new HttpError(400, 'bytes or users: one is required')
        await dir.setDomainQuota(r.params[0], quota)
        return { json: await view(r.params[0]) }
      }
    }
  ]
}

// Quota for imports (issue 15): a message imported into a user counts against the user's quota (bytes and
// messages, store/mail.ts) and the user's domain's byte quota (node/domain-quota.ts), as a delivery does. A
// message that does not fit is skipped, whole: the check comes before anything of it is written (its UID, its
// body), and the report names it with the reason "over quota".
//
// The store enforces the user's quota atomically on an append without a global id (IMAP import); an append under
// a global id (the file imports' idempotence) is not checked by the store (a merge re-adding a message must not
// lose it), so the import checks here first, for a message that is not there yet. The domain figure is the
// cached one SMTP uses, grown by every message imported: near the quota an import may stop a little early,
// never go far past it.

import { domainOf, isMailError } from '../../store/index.ts'
import type { Directory, MailStore } from '../../store/index.ts'
import type { DomainUsage } from '../domain-quota.ts'
import type { ImportMessage, ImportReport, MailTarget } from './types.ts'

/** How a refused message's reason begins, in every import report. */
export const OVER_QUOTA = 'over quota'

export interface ImportQuota {
  /** Null when a message of `bytes` fits the user's quota and its domain's; else the reason (starting "over quota"). */
  check (user: string, bytes: number): Promise<string | null>
  /** A message of `bytes` was imported into `user` (the domain's cached usage grows). */
  added (user: string, bytes: number): void
}

export interface ImportQuotaComponents {
  mail: Pick<MailStore, 'quota'>
  directory: Pick<Directory, 'getDomain'>
  /** The domains' usage (node/domain-quota.ts); absent: domain quotas are not checked. */
  domainUsage?: DomainUsage
}

export function createImportQuota (c: ImportQuotaComponents): ImportQuota {
  return {
    async check (user, bytes) {
      const q = await c.mail.quota(user)
      if (q.limitBytes > 0 && q.usedBytes + bytes > q.limitBytes) return `${OVER_QUOTA} (the user's limit of ${q.limitBytes} bytes, ${q.usedBytes} used)`
      if (q.limitMessages > 0 && q.usedMessages + 1 > q.limitMessages) return `${OVER_QUOTA} (the user's limit of ${q.limitMessages} messages)`
      if (c.domainUsage !== undefined) {
        const domain = domainOf(user)
        const limit = (await c.directory.getDomain(domain))?.quotaBytes ?? 0
        if (limit > 0 && await c.domainUsage.usage(domain) + bytes > limit) return `${OVER_QUOTA} (the domain ${domain}'s limit of ${limit} bytes)`
      }
      return null
    },
    added (user, bytes) {
      c.domainUsage?.added(domainOf(user), bytes)
    }
  }
}

/**
 * A file import's append: a message the user's primary refuses for quota is listed in the report as skipped, with
 * the reason, and the import goes on (a smaller one may still fit); resolves to null then.
 */
export async function appendOrSkip (target: MailTarget, folder: string, item: string, m: ImportMessage, report: ImportReport): Promise<{ uid: number, existed: boolean } | null> {
  try {
    return await target.append(folder, m)
  } catch (err) {
    if (!isMailError(err, 'noQuota')) throw err
    report.skipped.push({ folder, item, reason: err.message.startsWith(OVER_QUOTA) ? err.message : `${OVER_QUOTA} (${err.message})` })
    return null
  }
}

// Admin API of IMAP imports (node/migrate/imap-jobs.ts): a request writes the job's replicated directory entry;
// the target user's primary runs it and writes its report back. The source password is kept in the entry (the
// import logs in with it) and never shown.
//
//   POST   /v1/imports/imap {from, user, password, to, ca?, insecure?}   start (or rejoin the same one running)
//   GET    /v1/imports/imap                                              every job
//   GET    /v1/imports/imap/ADDRESS                                      one job, its report
//   DELETE /v1/imports/imap/ADDRESS                                      forget it (a running one stops)

import { randomBytes } from 'node:crypto'
import { normalizeAddress } from '../store/index.ts'
import type { Directory } from '../store/index.ts'
import { asJob, entryName, IMPORT_ENTRY_PREFIX } from '../node/migrate/imap-jobs.ts'
import type { ImportJob } from '../node/migrate/imap-jobs.ts'
import { parseSourceUrl } from '../node/migrate/imap.ts'
import { HttpError, str } from './admin.ts'
import type { Route } from './admin.ts'

export const SOURCE_FIELD_BYTES_MAX = 1024
export const CA_PEM_BYTES_MAX = 8 * 1024 // a chain of a few certificates; the entry holding it is at most 16 KiB

/** The job as the API shows it: the password left out. */
export function jobView (j: ImportJob): Record<string, unknown> {
  const { password: _password, ca, ...source } = j.source
  return { ...j, source: { ...source, ...(ca !== undefined ? { ca: '(given)' } : {}) } }
}

function bounded (v: string, what: string, max = SOURCE_FIELD_BYTES_MAX): string {
  if (v === '' || Buffer.byteLength(v) > max || /[\r\n\x00]/.test(v)) throw new HttpError(400, `${what}: 1-${max} bytes, no line breaks`)
  return v
}

export function importRoutes (directory: Directory): Route[] {
  const one = async (address: string): Promise<ImportJob> => {
    const a = normalizeAddress(address)
    const j = a === null ? null : asJob(await directory.getEntry(entryName(a)))
    if (j === null) throw new HttpError(404, `No IMAP import for ${address}`)
    return j
  }
  return [
    {
      method: 'POST',
      pattern: /^\/v1\/imports\/imap$/,
      handler: async r => {
        const b = await r.body()
        const url = parseSourceUrl(str(b, 'from'))
        if (url === null) throw new HttpError(400, 'from: imaps://HOST[:PORT] or imap://HOST[:PORT][?tls=starttls]')
        const target = normalizeAddress(str(b, 'to'))
        if (target === null || await directory.getUser(target) === null) throw new HttpError(404, `No such user: ${String(b.to)}`)
        const user = bounded(str(b, 'user'), 'user')
        const password = bounded(str(b, 'password'), 'password')
        const ca = typeof b.ca === 'string' && b.ca !== '' ? b.ca : undefined
        if (ca !== undefined && (Buffer.byteLength(ca) > CA_PEM_BYTES_MAX || !ca.includes('-----BEGIN CERTIFICATE-----'))) throw new HttpError(400, `ca: PEM certificates, at most ${CA_PEM_BYTES_MAX} bytes`)
        const insecure = b.insecure === true
        const source = { ...url, user, password, ...(ca !== undefined ? { ca } : {}), ...(insecure ? { insecure } : {}) }
        let created = false
        const saved = await directory.updateEntry(entryName(target), cur => {
          const j = asJob(cur)
          // the same import still under way: joined, not restarted (a CLI that was interrupted waits on it again)
          if (j !== null && (j.state === 'queued' || j.state === 'running') && j.source.host === source.host && j.source.port === source.port && j.source.user === user && j.source.password === password) return cur
          created = true
          const job: ImportJob = { target, source, run: randomBytes(8).toString('hex'), state: 'queued', requested: Date.now() }
          return job as unknown as Record<string, unknown>
        })
        return { status: created ? 201 : 200, json: { job: jobView(asJob(saved)!) } }
      }
    },
    {
      method: 'GET',
      pattern: /^\/v1\/imports\/imap$/,
      handler: async () => ({ json: { jobs: (await directory.listEntries(IMPORT_ENTRY_PREFIX)).map(e => asJob(e.value)).filter((j): j is ImportJob => j !== null).map(jobView) } })
    },
    { method: 'GET', pattern: /^\/v1\/imports\/imap\/([^/]+)$/, handler: async r => ({ json: { job: jobView(await one(r.params[0])) } }) },
    {
      method: 'DELETE',
      pattern: /^\/v1\/imports\/imap\/([^/]+)$/,
      handler: async r => {
        const j = await one(r.params[0])
        await directory.updateEntry(entryName(j.target), () => null)
        return { json: { deleted: j.target } }
      }
    }
  ]
}

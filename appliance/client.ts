// The CLI's side of the admin API: finds the node through DATA/admin.json and DATA/admin.token, sends one
// JSON request, and turns every failure into a one-line CliError the command prints.

import { processAlive, readAdminInfo, readToken } from './runtime.ts'

export const CLI_REQUEST_TIMEOUT_MS = 30_000 // longer than any admin request should take (scrypt, a fsync)
export const CLI_RESPONSE_BYTES_MAX = 64 * 1024 * 1024 // a listing of many users still fits; a stray server's stream does not

/** A failure to report on one line; exit code 1. */
export class CliError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'CliError'
  }
}

export interface AdminClient {
  request (method: string, path: string, body?: unknown): Promise<any>
}

export interface ConnectOptions {
  /** Per request; default CLI_REQUEST_TIMEOUT_MS. Polling callers (cluster up) use a short one. */
  timeoutMs?: number
}

/** A client for the node running on this data dir; throws CliError when no node is running there. */
export async function connect (dataDir: string, options: ConnectOptions = {}): Promise<AdminClient> {
  const info = await readAdminInfo(dataDir)
  const token = await readToken(dataDir)
  if (info === null || token === null || !processAlive(info.pid)) {
    // A node killed without a clean stop leaves admin.json behind; its pid tells that nobody answers there.
    throw new CliError(`no node is running on data dir ${dataDir} (start one with: mailgrid start --data ${dataDir})`)
  }
  return {
    async request (method, path, body) {
      let res: Response
      try {
        res = await fetch(info.url + path, {
          method,
          headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(options.timeoutMs ?? CLI_REQUEST_TIMEOUT_MS)
        })
      } catch (err) {
        const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name
        throw new CliError(`the node of data dir ${dataDir} does not answer at ${info.url} (${cause}); is it running?`)
      }
      const text = await res.text()
      if (text.length > CLI_RESPONSE_BYTES_MAX) throw new CliError(`the admin API at ${info.url} sent an oversized answer`)
      let json: any
      try {
        json = JSON.parse(text)
      } catch {
        throw new CliError(`the admin API at ${info.url} answered HTTP ${res.status} without JSON`)
      }
      if (!res.ok) throw new CliError(typeof json?.error === 'string' ? json.error : `the admin API answered HTTP ${res.status}`)
      return json
    }
  }
}

// A client of rspamd's HTTP protocol (https://rspamd.com/doc/developers/protocol.html): the message is posted
// to the normal worker's /checkv2 with the SMTP envelope in request headers, and rspamd's JSON answer (action,
// score, required_score, symbols) becomes a FilterVerdict. Time and answer size are bounded; anything but a
// readable answer in time counts as "rspamd unavailable", which failOpen turns into accept (logged) or 451.

import { request as httpRequest } from 'node:http'
import type { IncomingMessage, RequestOptions } from 'node:http'
import { request as httpsRequest } from 'node:https'
import type { Logger } from 'pino'
import type { FilterEnvelope, FilterVerdict, MessageFilter } from './types.ts'

// rspamc's own default timeout is 10 s; a scan of a clean message takes milliseconds, so a silent rspamd for
// this long is a broken one, and an SMTP client waits 10 minutes for the DATA answer (RFC 5321 4.5.3.2.6).
export const RSPAMD_TIMEOUT_MS = 10_000
// A JSON answer with every symbol's options runs to a few KiB; 1 MiB is far above that and still bounded.
export const RSPAMD_ANSWER_BYTES_MAX = 1024 * 1024
// The X-Spamd-Result header lists at most this many symbols, each option list cut at OPTIONS_MAX entries of
// OPTION_CHARS_MAX characters: a header stays well under a few KiB whatever rspamd sends.
export const RESULT_SYMBOLS_MAX = 64
export const RESULT_OPTIONS_MAX = 5
export const RESULT_OPTION_CHARS_MAX = 64
// Request header values (HELO, addresses) cut at this length; RFC 5321 4.5.3.1.3 paths are 256 octets.
export const REQUEST_HEADER_CHARS_MAX = 1024

export interface RspamdInit {
  /** The normal worker's base URL, e.g. 'http://127.0.0.1:11333'; /checkv2 is resolved against it. */
  url: string
  /** rspamd unreachable or unreadable: true accepts (and logs `rspamd_unavailable`), false answers 451. */
  failOpen: boolean
  timeoutMs?: number
}

export interface RspamdComponents {
  logger: Logger
}

/** rspamd's actions (its `actions` section), as /checkv2 names them. */
const ACTIONS = ['no action', 'greylist', 'add header', 'rewrite subject', 'soft reject', 'reject'] as const
type RspamdAction = typeof ACTIONS[number]

export interface RspamdAnswer {
  action: RspamdAction
  score: number
  requiredScore: number
  symbols: Array<{ name: string, score: number, options: string[] }>
}

/** Thrown for anything that is not a usable answer: no connection, timeout, HTTP error, bad JSON. */
export class RspamdUnavailable extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'RspamdUnavailable'
  }
}

/** A header value node:http accepts: UTF-8 bytes carried as latin1, no control characters, bounded. */
function headerValue (s: string): string {
  return Buffer.from(s.slice(0, REQUEST_HEADER_CHARS_MAX), 'utf8').toString('latin1').replace(/[^\x20-\x7e\x80-\xff]/g, '')
}

const num = (v: unknown): number | null => typeof v === 'number' && Number.isFinite(v) ? v : null

/** Reads rspamd's /checkv2 JSON; throws RspamdUnavailable when it is not one. */
export function parseAnswer (json: unknown): RspamdAnswer {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new RspamdUnavailable('answer is not a JSON object')
  const o = json as Record<string, unknown>
  const action = o.action
  if (typeof action !== 'string' || !(ACTIONS as readonly string[]).includes(action)) throw new RspamdUnavailable(`unknown action ${JSON.stringify(action)?.slice(0, 40)}`)
  const score = num(o.score)
  const requiredScore = num(o.required_score)
  if (score === null || requiredScore === null) throw new RspamdUnavailable('answer without score or required_score')
  const symbols: RspamdAnswer['symbols'] = []
  if (typeof o.symbols === 'object' && o.symbols !== null) {
    for (const [key, v] of Object.entries(o.symbols as Record<string, unknown>)) {
      const sym = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>
      const options = Array.isArray(sym.options) ? sym.options.filter((x): x is string => typeof x === 'string') : []
      symbols.push({ name: typeof sym.name === 'string' ? sym.name : key, score: num(sym.score) ?? 0, options })
    }
  }
  return { action: action as RspamdAction, score, requiredScore, symbols }
}

const symbolName = (s: string): string => s.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, RESULT_OPTION_CHARS_MAX)
const optionText = (s: string): string => s.replace(/[^\x20-\x7e]|[[\],;]/g, '?').slice(0, RESULT_OPTION_CHARS_MAX)

/** rspamd's own X-Spamd-Result layout (its milter_headers module): `default: True|False [score / required]; SYM(score)[opts]; ...`. */
export function resultHeader (a: RspamdAnswer, spam: boolean): string {
  const parts = [`default: ${spam ? 'True' : 'False'} [${a.score.toFixed(2)} / ${a.requiredScore.toFixed(2)}]`]
  const symbols = [...a.symbols].sort((x, y) => Math.abs(y.score) - Math.abs(x.score) || (x.name < y.name ? -1 : 1)).slice(0, RESULT_SYMBOLS_MAX)
  for (const s of symbols) parts.push(`${symbolName(s.name)}(${s.score.toFixed(2)})[${s.options.slice(0, RESULT_OPTIONS_MAX).map(optionText).join(',')}]`)
  return `X-Spamd-Result: ${parts.join(';\r\n\t')}\r\n`
}

/** What an answer means for the message. */
export function verdictOf (a: RspamdAnswer): FilterVerdict {
  const reason = `rspamd ${a.action} [${a.score.toFixed(2)} / ${a.requiredScore.toFixed(2)}]`
  switch (a.action) {
    case 'reject': return { action: 'reject', headers: '', reason }
    case 'soft reject':
    case 'greylist': return { action: 'tempfail', headers: '', reason }
    // The message stays byte for byte as sent: a subject rewrite is filed like "add header".
    case 'add header':
    case 'rewrite subject': return { action: 'junk', headers: 'X-Spam: Yes\r\n' + resultHeader(a, true), reason }
    case 'no action': return { action: 'accept', headers: resultHeader(a, false), reason }
  }
}

export function createRspamdFilter (components: RspamdComponents, init: RspamdInit): MessageFilter {
  const log = components.logger
  const base = new URL(init.url.endsWith('/') ? init.url : init.url + '/')
  const endpoint = new URL('checkv2', base)
  const send = endpoint.protocol === 'https:' ? httpsRequest : httpRequest
  const timeoutMs = init.timeoutMs ?? RSPAMD_TIMEOUT_MS

  function post (message: Buffer, env: FilterEnvelope, signal: AbortSignal): Promise<unknown> {
    const headers: Record<string, string | string[]> = {
      'content-length': String(message.length),
      IP: headerValue(env.ip),
      From: headerValue(env.from === '' ? '<>' : env.from),
      'Queue-Id': headerValue(env.queueId)
    }
    if (env.helo !== '') headers.Helo = headerValue(env.helo)
    if (env.rcpts.length > 0) headers.Rcpt = env.rcpts.map(headerValue) // one header line per recipient
    if (env.user !== null) headers.User = headerValue(env.user)
    if (env.hostname !== undefined) headers['MTA-Name'] = headerValue(env.hostname)
    const options: RequestOptions = { method: 'POST', headers, signal, agent: false }
    return new Promise((resolve, reject) => {
      const fail = (what: string): void => reject(new RspamdUnavailable(what))
      const req = send(endpoint, options, (res: IncomingMessage) => {
        const chunks: Buffer[] = []
        let size = 0
        res.on('data', (chunk: Buffer) => {
          size += chunk.length
          if (size > RSPAMD_ANSWER_BYTES_MAX) {
            res.destroy()
            fail(`answer larger than ${RSPAMD_ANSWER_BYTES_MAX} bytes`)
            return
          }
          chunks.push(chunk)
        })
        res.on('error', err => fail(err.message))
        res.on('end', () => {
          if (res.statusCode !== 200) return fail(`HTTP ${res.statusCode ?? 0}`)
          try {
            resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')))
          } catch {
            fail('answer is not JSON')
          }
        })
      })
      req.on('error', (err: NodeJS.ErrnoException) => fail(signal.aborted ? `no answer in ${timeoutMs} ms` : (err.code ?? err.message)))
      req.end(message)
    })
  }

  return {
    async check (message, env, opts) {
      const signal = opts?.signal === undefined ? AbortSignal.timeout(timeoutMs) : AbortSignal.any([opts.signal, AbortSignal.timeout(timeoutMs)])
      const started = Date.now()
      let answer: RspamdAnswer
      try {
        answer = parseAnswer(await post(message, env, signal))
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err)
        log.warn({ queueId: env.queueId, url: endpoint.origin + endpoint.pathname, reason, failOpen: init.failOpen }, 'rspamd_unavailable')
        return init.failOpen
          ? { action: 'accept', headers: '', reason: `rspamd unavailable (${reason}), accepted` }
          : { action: 'tempfail', headers: '', reason: `rspamd unavailable (${reason})` }
      }
      const verdict = verdictOf(answer)
      log.info({ queueId: env.queueId, action: answer.action, score: answer.score, required: answer.requiredScore, ms: Date.now() - started }, 'rspamd_checked')
      return verdict
    }
  }
}

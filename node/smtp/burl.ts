// BURL (RFC 4468) for the submission ports: `BURL imap-url [LAST]` takes the message (or a piece of it) from an IMAP
// URLAUTH URL instead of DATA. smtp-server has no option for an extra command, but it finds a command's handler by
// name on the connection (`handler_<NAME>` on SMTPConnection.prototype, looked up per command by _getHandler), so
// this module adds handler_BURL there, as server.ts's shims add to send, _onCommand and handler_EHLO. The handler is
// inert unless the server's options carry a fetch function under BURL_FETCH (server.ts sets it on submission
// ports when the node gives one): elsewhere BURL answers as an unknown command would.
//
// The pieces of BURL commands without LAST are kept per transaction (a WeakMap on the envelope, which smtp-server
// replaces at each reset, so RSET and a new MAIL drop them); LAST hands the whole message to the server's onData, as
// DATA would, and answers as DATA does. CHUNKING (BDAT) is not offered, so BURL is never mixed with BDAT.

import { PassThrough } from 'node:stream'
import type { Duplex } from 'node:stream'
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js'
import type { SMTPServerSession } from 'smtp-server'
import type { MailStore } from '../../store/index.ts'
import { BadUrl, parseImapUrl, readUrl, UrlTooBig } from '../imap/urls.ts'
import { BURL_SESSION, verifyUrlauth } from '../imap/urlauth.ts'

/** The fetch function in the server's options: the URL's content for the authenticated user, or a thrown
 * BurlError (its code and text are the reply). */
export const BURL_FETCH = Symbol.for('mailgrid.smtp.burlFetch')
export type BurlFetch = (user: string, url: string, max: number) => Promise<Buffer>

export class BurlError extends Error {
  readonly responseCode: number
  constructor (code: number, text: string) {
    super(text)
    this.responseCode = code
  }
}

/** URL pieces one message may be made of. */
export const BURL_PIECES_MAX = 100

type SendFn = (code: number, data: unknown, context?: unknown) => void
interface Envelope { rcptTo: unknown[], mailFrom: unknown }
interface BurlConnection {
  _server: { options: { size?: number, [BURL_FETCH]?: BurlFetch }, onData: (stream: PassThrough, session: SMTPServerSession, cb: (err: (Error & { responseCode?: number }) | null, message?: unknown) => void) => void }
  session: SMTPServerSession & { envelope: Envelope, user?: unknown }
  send: SendFn
  _transactionCounter: number
  _unrecognizedCommands: number
  _resetSession: () => void
}

const pieces = new WeakMap<object, Buffer[]>()

const connection = SMTPConnection.prototype as unknown as { handler_BURL?: (this: BurlConnection, command: Buffer, callback: () => void) => void }
if (connection.handler_BURL === undefined) {
  connection.handler_BURL = function (this: BurlConnection, command: Buffer, callback: () => void): void {
    const fetch = this._server.options[BURL_FETCH]
    if (fetch === undefined) {
      this.send(500, 'Error: command not recognized')
      return callback()
    }
    // RFC 4468 section 3: BURL SP absolute-URI [SP end-marker]; end-marker = "LAST"
    const args = command.toString('latin1').trim().split(/ +/).slice(1)
    const last = args.length === 2 && args[1]!.toUpperCase() === 'LAST'
    if (args.length < 1 || args.length > 2 || (args.length === 2 && !last)) {
      this.send(501, '5.5.4 Syntax: BURL absolute-URI [LAST]')
      return callback()
    }
    const user = typeof this.session.user === 'string' ? this.session.user : null
    if (user === null) {
      this.send(530, '5.7.0 Authentication required')
      return callback()
    }
    if (this.session.envelope.rcptTo.length === 0) {
      this.send(503, '5.5.1 Error: need RCPT command')
      return callback()
    }
    const envelope = this.session.envelope
    const held = pieces.get(envelope) ?? []
    const size = this._server.options.size ?? Infinity
    const have = held.reduce((n, b) => n + b.length, 0)
    const drop = (): void => { pieces.delete(envelope) }
    if (held.length >= BURL_PIECES_MAX) {
      drop()
      this.send(554, '5.5.3 Too many BURL pieces')
      return callback()
    }
    fetch(user, args[0]!, Math.max(0, size - have)).then(bytes => {
      if (this.session.envelope !== envelope) return callback() // the transaction was reset meanwhile
      held.push(bytes)
      if (have + bytes.length > size) {
        drop()
        this.send(552, '5.3.4 Message size exceeds fixed maximum message size')
        return callback()
      }
      if (!last) {
        pieces.set(envelope, held)
        this.send(250, '2.5.0 Waiting for additional BURL commands')
        return callback()
      }
      drop()
      const stream = Object.assign(new PassThrough(), { byteLength: have + bytes.length, sizeExceeded: false })
      this._server.onData(stream, this.session, (err, message) => {
        if (err !== null) this.send(err.responseCode ?? 450, err.message)
        else this.send(250, typeof message === 'string' ? message : 'OK: message queued', 'DATA_OK')
        this._transactionCounter++
        this._unrecognizedCommands = 0
        this._resetSession()
        callback()
      })
      stream.end(Buffer.concat(held))
    }, (err: unknown) => {
      drop()
      // RFC 4468 section 6: a URL that cannot be resolved is 554 5.6.6; not authorized 554 5.7.0
      const e = err instanceof BurlError ? err : new BurlError(554, '5.6.6 IMAP URL resolution failed')
      this.send(e.responseCode, e.message)
      callback()
    })
  }
}

/**
 * The fetch of a node's submission service: the URL must carry a URLAUTH authorization (RFC 4468 section 3) that
 * lets the submission server read it for this user (access `submit+user`, or `anonymous`), verified and read as
 * IMAP's URLFETCH does (node/imap/urlauth.ts), from the store the node's IMAP sessions read.
 */
export function burlFetcher (store: MailStore, now: () => number, grid?: BurlRoute): BurlFetch {
  return async (user, text, max) => {
    let url
    try {
      url = parseImapUrl(text)
    } catch {
      throw new BurlError(554, '5.6.6 IMAP URL resolution failed: not an IMAP URL')
    }
    if (url.urlauth === null || url.user === null) throw new BurlError(554, '5.7.0 BURL needs a URLAUTH-authorized absolute IMAP URL')
    // on a grid, the user's own URLs are read at the user's primary, through an IMAP session there (null: this node)
    if (grid !== undefined && url.user.toLowerCase() === user.toLowerCase()) {
      let stream: Duplex | null
      try {
        stream = await grid.route(user, 'imap', { ip: '127.0.0.1', secure: true, tag: 'B0', enabled: [BURL_SESSION] })
      } catch {
        throw new BurlError(451, '4.4.0 The IMAP server holding this message is unavailable, try again later')
      }
      if (stream !== null) return await fetchOverImap(stream, text, max)
    }
    let owner: string
    try {
      owner = await verifyUrlauth(store, url, { user: null, submitFor: user }, now())
    } catch (err) {
      if (err instanceof BadUrl) throw new BurlError(554, `5.7.0 IMAP URL not authorized: ${err.message}`)
      throw err
    }
    try {
      return await readUrl(store, owner, url, max)
    } catch (err) {
      if (err instanceof BadUrl) throw new BurlError(554, `5.6.6 IMAP URL resolution failed: ${err.message}`)
      if (err instanceof UrlTooBig) throw new BurlError(552, '5.3.4 Message size exceeds fixed maximum message size')
      throw err
    }
  }
}


/** URLFETCH's answer may take this long at the primary. */
export const BURL_REMOTE_TIMEOUT_MS = 30_000

/** A response line from the primary (outside literals). */
const LINE_BYTES_MAX = 64 * 1024

/** The grid's session router (node/grid/forward.ts SessionRouter), as BURL uses it. */
export interface BurlRoute {
  route: (user: string, protocol: 'imap', ctx: { ip: string, secure: boolean, tag: string, enabled: string[] }) => Promise<Duplex | null>
}

/**
 * URLFETCH over an IMAP session at the user's primary (adopted already: its first answer is the tagged OK of B0),
 * then LOGOUT. Reads the `* URLFETCH url {n}` literal, or NIL (refused there: not authorized, or nothing there).
 */
async function fetchOverImap (stream: Duplex, text: string, max: number): Promise<Buffer> {
  if (/["\\]/.test(text)) throw new BurlError(554, '5.6.6 IMAP URL resolution failed: not an IMAP URL')
  const limit = max + 64 * 1024
  return await new Promise<Buffer>((resolve, reject) => {
    let line = Buffer.alloc(0) // bytes of the line being read (bounded: LINE_BYTES_MAX)
    let literal: { need: number, chunks: Buffer[], got: number, urlfetch: boolean } | null = null
    let data: Buffer | null | undefined
    const finish = (err: BurlError | null, out?: Buffer): void => {
      clearTimeout(timer)
      stream.removeAllListeners('data')
      stream.destroy()
      if (err !== null) reject(err)
      else resolve(out!)
    }
    const timer = setTimeout(() => { finish(new BurlError(451, '4.4.0 The IMAP server did not answer in time, try again later')) }, BURL_REMOTE_TIMEOUT_MS)
    stream.on('error', () => {})
    stream.on('close', () => { finish(new BurlError(451, '4.4.0 The IMAP server closed the connection, try again later')) })
    stream.on('data', (chunk: Buffer) => {
      let rest = chunk
      while (rest.length > 0) {
        if (literal !== null) {
          const take = Math.min(literal.need - literal.got, rest.length)
          literal.chunks.push(rest.subarray(0, take))
          literal.got += take
          rest = rest.subarray(take)
          if (literal.got === literal.need) {
            if (literal.urlfetch) data = Buffer.concat(literal.chunks, literal.got)
            literal = null
          }
          continue
        }
        const lf = rest.indexOf(10)
        line = Buffer.concat([line, lf === -1 ? rest : rest.subarray(0, lf + 1)])
        rest = lf === -1 ? Buffer.alloc(0) : rest.subarray(lf + 1)
        if (line.length > LINE_BYTES_MAX) return finish(new BurlError(451, '4.4.0 The IMAP server answered with a line too long'))
        if (lf === -1) return
        const text = line.toString('latin1').replace(/\r?\n$/, '')
        line = Buffer.alloc(0)
        const announced = /\{(\d+)\}$/.exec(text)
        if (announced !== null) {
          const n = Number(announced[1])
          if (n > max) return finish(new BurlError(552, '5.3.4 Message size exceeds fixed maximum message size'))
          literal = { need: n, chunks: [], got: 0, urlfetch: text.startsWith('* URLFETCH ') }
          if (n === 0) { if (literal.urlfetch) data = Buffer.alloc(0); literal = null }
          continue
        }
        if (text.startsWith('* URLFETCH ') && text.endsWith(' NIL')) data = null
        else if (text.startsWith('B0 ') && !text.startsWith('B0 OK')) return finish(new BurlError(451, '4.4.0 The IMAP server refused the session, try again later'))
        else if (text.startsWith('B1 ')) {
          if (data === undefined || data === null) return finish(new BurlError(554, '5.7.0 IMAP URL not authorized or not resolvable'))
          return finish(null, data)
        }
      }
    })
    // the router read its answer line and paused the stream: a 'data' listener alone does not restart it
    stream.resume()
    stream.write(`B1 URLFETCH "${text}"\r\nB2 LOGOUT\r\n`)
  })
}

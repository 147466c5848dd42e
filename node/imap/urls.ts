/**
 * IMAP URLs (RFC 5092) as CATENATE (RFC 4469), URLAUTH (RFC 4467) and BURL (RFC 4468) use them: a message or a
 * part of one, `imap://user@host/Mailbox;UIDVALIDITY=n/;UID=n/;SECTION=s/;PARTIAL=o.l`, optionally with
 * `;EXPIRE=date-time;URLAUTH=access:mech:token`, or server-relative (`/Mailbox;UIDVALIDITY=n/;UID=n`, RFC 4469
 * section 5). Parsing is strict and bounded; a URL that does not parse, names something that is not there, or
 * names something the reader may not read is one answer: BADURL (RFC 4469 section 5, RFC 4467 section 7).
 */
import type { MailStore, MessageRecord } from '../../store/index.ts'
import { parseSection } from './protocol/section.ts'
import type { SectionSpec } from './protocol/section.ts'
import type { Token } from './protocol/types.ts'
import { filterFields, sectionRange } from './commands/fetch.ts'

/** Longest URL we read (RFC 5092 sets none; Dovecot allows a line's worth). */
export const URL_BYTES_MAX = 8192

export interface ImapUrl {
  /** The URL as given. */
  text: string
  /** The user of `imap://user@host`, decoded; null for a server-relative URL. */
  user: string | null
  host: string | null
  mailbox: string
  uidValidity: number | null
  uid: number
  /** `;SECTION=` as given (decoded), and parsed. */
  sectionText: string | null
  section: SectionSpec | null
  partial: { offset: number, length: number | null } | null
  /** `;EXPIRE=` in ms, when present. */
  expire: number | null
  /** `;URLAUTH=access:mech:token`: access is `submit+user`, `user+user`, `authuser` or `anonymous`. */
  urlauth: { access: string, mechanism: string | null, token: string | null } | null
  /** The rump URL: everything up to the access identifier (RFC 4467 section 3), what the token signs. */
  rump: string | null
}

export class BadUrl extends Error {
  readonly url: string
  constructor (url: string, why: string) {
    super(why)
    this.url = url
  }
}

function pctDecode (s: string, url: string): string {
  if (/%(?![0-9A-Fa-f]{2})/.test(s)) throw new BadUrl(url, 'Invalid percent-encoding')
  const bytes = Buffer.from(s.replace(/%([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1')
  const text = bytes.toString('utf8')
  if (!Buffer.from(text, 'utf8').equals(bytes)) throw new BadUrl(url, 'Invalid UTF-8 in URL')
  return text
}

const NZ_NUMBER = /^[1-9]\d{0,9}$/

function nz (s: string, url: string): number {
  if (!NZ_NUMBER.test(s) || Number(s) > 0xffffffff) throw new BadUrl(url, 'Invalid number in URL')
  return Number(s)
}

/** RFC 3339 date-time of `;EXPIRE=` (RFC 4467 section 3). */
function rfc3339 (s: string, url: string): number {
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/i.test(s)) throw new BadUrl(url, 'Invalid EXPIRE')
  const ms = Date.parse(s)
  if (Number.isNaN(ms)) throw new BadUrl(url, 'Invalid EXPIRE')
  return ms
}

/** A section of `;SECTION=` as the FETCH section parser reads it (`1.2`, `HEADER`, `HEADER.FIELDS (A B)`). */
function sectionSpec (text: string, url: string): SectionSpec {
  const fields = /^([^ ()]+) \(([^()]*)\)$/.exec(text)
  const tokens: Token[] = fields === null
    ? [{ type: 'atom', value: text }]
    : [{ type: 'atom', value: fields[1]! }, { type: 'list', items: fields[2]!.split(' ').filter((f) => f !== '').map((value) => ({ type: 'atom' as const, value })) }]
  if (fields === null && /[ ()]/.test(text)) throw new BadUrl(url, 'Invalid SECTION')
  const spec = parseSection(tokens, undefined, false)
  if (typeof spec === 'string') throw new BadUrl(url, spec)
  return spec
}

/** Parses an IMAP URL naming a message or a part of one. Throws BadUrl. */
export function parseImapUrl (text: string): ImapUrl {
  if (text.length === 0 || Buffer.byteLength(text) > URL_BYTES_MAX || /[\x00-\x20\x7f-\uffff]/.test(text)) throw new BadUrl(text, 'Invalid URL')
  let rest = text
  let user: string | null = null
  let host: string | null = null
  if (/^imap:\/\//i.test(rest)) {
    rest = rest.slice(7)
    const slash = rest.indexOf('/')
    if (slash === -1) throw new BadUrl(text, 'URL names no message')
    let server = rest.slice(0, slash)
    rest = rest.slice(slash)
    const at = server.lastIndexOf('@')
    if (at !== -1) {
      // iuserinfo = enc-user [";AUTH=" ...]; the mechanism is the client's concern
      user = pctDecode(server.slice(0, at).replace(/;AUTH=.*$/i, ''), text)
      server = server.slice(at + 1)
    }
    if (!/^[A-Za-z0-9.\-[\]:]+$/.test(server)) throw new BadUrl(text, 'Invalid host')
    host = server.replace(/:\d+$/, '').toLowerCase()
  } else if (!rest.startsWith('/') || rest.startsWith('//')) {
    throw new BadUrl(text, 'Not an IMAP URL')
  }
  rest = rest.slice(1)
  // ;EXPIRE= and ;URLAUTH= follow the message part (RFC 4467 section 3, RFC 5092 section 3.4)
  let urlauth: ImapUrl['urlauth'] = null
  let expire: number | null = null
  let rump: string | null = null
  const authAt = rest.search(/;URLAUTH=/i)
  if (authAt !== -1) {
    const [access, mechanism, token, ...more] = rest.slice(authAt + 9).split(':')
    if (more.length > 0 || access === undefined || !/^(submit\+|user\+)[^:;/]+$|^authuser$|^anonymous$/i.test(access)) throw new BadUrl(text, 'Invalid URLAUTH')
    if (mechanism !== undefined && !/^[A-Za-z0-9\-.]{1,64}$/.test(mechanism)) throw new BadUrl(text, 'Invalid URLAUTH mechanism')
    if (token !== undefined && !/^[0-9A-Fa-f]{32,}$/.test(token)) throw new BadUrl(text, 'Invalid URLAUTH token')
    if ((mechanism === undefined) !== (token === undefined)) throw new BadUrl(text, 'Invalid URLAUTH')
    const lower = access.toLowerCase()
    const who = lower.startsWith('submit+') || lower.startsWith('user+') ? access.slice(access.indexOf('+') + 1) : ''
    urlauth = { access: who === '' ? lower : lower.slice(0, lower.indexOf('+') + 1) + pctDecode(who, text), mechanism: mechanism ?? null, token: token === undefined ? null : token.toLowerCase() }
    rump = text.slice(0, text.length - rest.length + authAt + 9 + access.length)
    rest = rest.slice(0, authAt)
    const expireAt = rest.search(/;EXPIRE=/i)
    if (expireAt !== -1) {
      expire = rfc3339(pctDecode(rest.slice(expireAt + 8), text), text)
      rest = rest.slice(0, expireAt)
    }
  }
  const pieces = rest.split('/;')
  const box = pieces.shift()!
  const v = /;UIDVALIDITY=/i.exec(box)
  const mailbox = pctDecode(v === null ? box : box.slice(0, v.index), text)
  if (mailbox === '') throw new BadUrl(text, 'URL names no mailbox')
  const uidValidity = v === null ? null : nz(box.slice(v.index + 13), text)
  let uid: number | null = null
  let sectionText: string | null = null
  let partial: ImapUrl['partial'] = null
  for (const piece of pieces) {
    const eq = piece.indexOf('=')
    const name = piece.slice(0, eq).toUpperCase()
    const value = piece.slice(eq + 1)
    if (eq === -1) throw new BadUrl(text, 'Invalid URL')
    if (name === 'UID' && uid === null && sectionText === null && partial === null) uid = nz(value, text)
    else if (name === 'SECTION' && uid !== null && sectionText === null && partial === null) sectionText = pctDecode(value, text)
    else if (name === 'PARTIAL' && uid !== null && partial === null) {
      const m = /^(\d{1,10})(?:\.([1-9]\d{0,9}))?$/.exec(value)
      if (m === null) throw new BadUrl(text, 'Invalid PARTIAL')
      partial = { offset: Number(m[1]), length: m[2] === undefined ? null : Number(m[2]) }
    } else throw new BadUrl(text, 'Invalid URL')
  }
  if (uid === null) throw new BadUrl(text, 'URL names no message')
  const section = sectionText === null || sectionText === '' ? null : sectionSpec(sectionText, text)
  return { text, user, host, mailbox: normaliseInbox(mailbox), uidValidity, uid, sectionText, section, partial, expire, urlauth, rump }
}

function normaliseInbox (name: string): string {
  if (name.toUpperCase() === 'INBOX') return 'INBOX'
  if (name.slice(0, 6).toUpperCase() === 'INBOX/') return 'INBOX' + name.slice(5)
  return name
}

/** Where a URL points in the store: the message record and the section, once the mailbox and UIDVALIDITY match. */
export async function locate (store: MailStore, owner: string, url: ImapUrl): Promise<MessageRecord> {
  const box = await store.getMailbox(owner, url.mailbox).catch(() => null)
  if (box === null) throw new BadUrl(url.text, 'No such mailbox')
  if (url.uidValidity !== null && url.uidValidity !== box.uidValidity) throw new BadUrl(url.text, 'UIDVALIDITY changed')
  const record = await store.getMessage(owner, box.id, url.uid)
  if (record === null) throw new BadUrl(url.text, 'No such message')
  return record
}

/** URL content larger than this is refused (TOOBIG): what CATENATE, URLFETCH and BURL may hold of one URL. */
export class UrlTooBig extends Error {}

/**
 * The bytes a URL names in `owner`'s mail (the whole message, or its `;SECTION=`, then `;PARTIAL=`), read from the
 * store; at most `max` bytes of section are read (UrlTooBig beyond). Throws BadUrl when it names nothing.
 */
export async function readUrl (store: MailStore, owner: string, url: ImapUrl, max: number): Promise<Buffer> {
  const record = await locate(store, owner, url)
  const meta = await store.getMeta(record)
  const range = url.section === null ? { start: 0, end: record.size } : sectionRange(meta, record, url.section)
  if (range === null) throw new BadUrl(url.text, 'No such section')
  // the partial first, so that a slice of a large message reads only the slice
  const filtered = url.section?.text === 'HEADER.FIELDS' || url.section?.text === 'HEADER.FIELDS.NOT'
  let { start, end } = range
  if (!filtered && url.partial !== null) {
    start = Math.min(range.start + url.partial.offset, range.end)
    end = url.partial.length === null ? range.end : Math.min(range.end, start + url.partial.length)
  }
  if (end - start > max) throw new UrlTooBig('URL content too large')
  const chunks: Buffer[] = []
  for await (const chunk of store.streamMessage(record, { start, end })) chunks.push(chunk)
  const bytes = Buffer.concat(chunks)
  return filtered ? cut(filterFields(bytes, url.section!.fields ?? [], url.section!.text === 'HEADER.FIELDS.NOT'), url.partial) : bytes
}

/** Applies `;PARTIAL=` (RFC 5092 section 3.3: an offset past the end is empty). */
export function cut (bytes: Buffer, partial: ImapUrl['partial']): Buffer {
  if (partial === null) return bytes
  const start = Math.min(partial.offset, bytes.length)
  return bytes.subarray(start, partial.length === null ? bytes.length : Math.min(bytes.length, start + partial.length))
}

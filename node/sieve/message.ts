// The message as a Sieve script sees it: header fields (which editheader changes, and later tests then see,
// RFC 5293 section 5), addresses, body parts. Parsing is the project's: store/mime splits the header and the
// MIME structure, decodes RFC 2047 words and charsets, and parses address lists as IMAP SEARCH does.

import { createRequire } from 'node:module'
import { analyzeMessage, decodeHeaderValue, decodedText, decodeTransfer, headerFields, MISSING_DOMAIN, MISSING_MAILBOX, parseAddressList, textParts } from '../../store/mime/index.ts'
import type { MessageMeta, MimePart } from '../../store/mime/index.ts'

interface Libmime {
  encodeWords (value: string, encoding: 'Q' | 'B', maxLength: number): string
  foldLines (value: string, lineLength: number): string
}
// libmime ships no types; this is the slice of its public API used here (as in store/mime/decode.ts).
const libmime = createRequire(import.meta.url)('libmime') as Libmime

export interface Field {
  name: string // as written
  lname: string // lower-cased
  value: string // unfolded and trimmed, RFC 2047 words still encoded
  raw: Buffer | null // the original bytes (with line break); null for a field added by addheader
  decoded?: string // cached decodeHeaderValue(value)
  addresses?: MailAddress[] // cached address list
}

export interface MailAddress { local: string, domain: string }

/** Where the header block ends: after the first empty line (or the whole message when there is none). */
function headerEnd (raw: Buffer): number {
  if (raw[0] === 0x0a) return 1
  if (raw[0] === 0x0d && raw[1] === 0x0a) return 2
  for (let i = raw.indexOf(0x0a); i !== -1; i = raw.indexOf(0x0a, i + 1)) {
    if (raw[i + 1] === 0x0a) return i + 2
    if (raw[i + 1] === 0x0d && raw[i + 2] === 0x0a) return i + 3
  }
  return raw.length
}

export class MessageView {
  readonly raw: Buffer
  fields: Field[]
  edited = false
  private readonly eol: string
  private readonly bodyStart: number
  private parsed: MessageMeta | null = null
  private index: Map<string, Field[]> | null = null
  private readonly partText = new Map<MimePart, string>()
  private rawBody: string | undefined

  constructor (raw: Buffer) {
    this.raw = raw
    // The header alone is read here; the MIME structure only when a body test asks (meta).
    this.bodyStart = headerEnd(raw)
    this.fields = headerFields(raw, 0, this.bodyStart).map(f => ({
      name: f.name, lname: f.name.toLowerCase(), value: f.value, raw: raw.subarray(f.start, f.end)
    }))
    this.eol = raw.subarray(0, this.bodyStart).includes('\r\n') || this.bodyStart === 0 ? '\r\n' : '\n'
  }

  get meta (): MessageMeta {
    this.parsed ??= analyzeMessage(this.raw)
    return this.parsed
  }

  /** The fields named `name`, in order (for :index). */
  named (name: string): Field[] {
    if (this.index === null) {
      this.index = new Map()
      for (const f of this.fields) {
        const list = this.index.get(f.lname)
        if (list === undefined) this.index.set(f.lname, [f])
        else list.push(f)
      }
    }
    return this.index.get(name.toLowerCase()) ?? []
  }

  /** RFC 5228 5.7: values decoded from RFC 2047 encoded words. */
  decoded (f: Field): string {
    f.decoded ??= decodeHeaderValue(f.value)
    return f.decoded
  }

  /** The addresses of one field (RFC 5228 2.7.4), group markers left out. */
  addresses (f: Field): MailAddress[] {
    if (f.addresses !== undefined) return f.addresses
    const list = parseAddressList(f.value)
    const out: MailAddress[] = []
    for (const a of list ?? []) {
      if (a.host === null) continue // group start or end
      const local = a.mailbox === null || a.mailbox === MISSING_MAILBOX ? '' : a.mailbox
      const domain = a.host === MISSING_DOMAIN ? '' : a.host
      if (local === '' && domain === '') continue
      out.push({ local, domain })
    }
    f.addresses = out
    return out
  }

  /** addheader (RFC 5293 section 4): at the top, or with :last at the end of the header. */
  add (name: string, value: string, last: boolean): void {
    let v = /[^\x00-\x7f]/.test(value) ? libmime.encodeWords(value, 'Q', 52) : value
    v = v.replace(/[\r\n]+/g, ' ')
    const field: Field = { name, lname: name.toLowerCase(), value: v, raw: null }
    if (last) this.fields.push(field)
    else this.fields.unshift(field)
    this.edited = true
    this.index = null
  }

  remove (doomed: Set<Field>): void {
    const before = this.fields.length
    this.fields = this.fields.filter(f => !doomed.has(f))
    if (this.fields.length !== before) {
      this.edited = true
      this.index = null
    }
  }

  /** The message with the edited header and the original body. */
  build (): Buffer {
    const parts: Buffer[] = []
    for (const f of this.fields) {
      if (f.raw !== null) parts.push(f.raw)
      else parts.push(Buffer.from(libmime.foldLines(`${f.name}: ${f.value}`, 76).replace(/\r?\n/g, this.eol) + this.eol, 'utf8'))
    }
    parts.push(Buffer.from(this.eol))
    parts.push(this.raw.subarray(this.bodyStart))
    return Buffer.concat(parts)
  }

  /** RFC 5173 body transforms. :raw: the undecoded body; :text: the text parts, decoded; :content: the
   * parts of the listed types ("" any, "text" any text/*, "text/html" exactly), decoded. At most `max` bytes each. */
  bodies (transform: 'raw' | 'text' | 'content', types: string[], max: number): string[] {
    const root = this.meta.root
    if (transform === 'raw') {
      this.rawBody ??= this.raw.toString('utf8', root.bodyStart, Math.min(this.raw.length, root.bodyStart + max))
      return [this.rawBody]
    }
    if (transform === 'text') return textParts(this.meta).map(p => this.text(p, max))
    const wanted = types.map(t => t.toLowerCase())
    const out: string[] = []
    const walk = (p: MimePart): void => {
      const full = `${p.type}/${p.subtype}`
      const hit = wanted.some(w => w === '' || w === p.type || w === full)
      if (p.parts !== undefined) {
        // RFC 5173 5.2: a matching multipart's text is its prologue and epilogue; we search its children.
        for (const c of p.parts) walk(c)
      } else if (p.message !== undefined) {
        if (hit) out.push(this.raw.toString('utf8', p.bodyStart, Math.min(p.bodyEnd, p.bodyStart + max)))
        walk(p.message.root)
      } else if (hit) {
        out.push(this.text(p, max))
      }
    }
    walk(root)
    return out
  }

  /** A leaf part's content, decoded once per run: text/* to Unicode by its charset, others transfer-decoded. */
  private text (p: MimePart, max: number): string {
    let t = this.partText.get(p)
    if (t === undefined) {
      t = p.type === 'text' ? decodedText(this.raw, p) : decodeTransfer(this.raw.subarray(p.bodyStart, Math.min(p.bodyEnd, p.bodyStart + max * 2)), p.encoding).toString('latin1')
      if (t.length > max) t = t.slice(0, max)
      this.partText.set(p, t)
    }
    return t
  }
}

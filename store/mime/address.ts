// Address lists (RFC 5322 section 3.4) into RFC 3501 envelope addresses, and the envelope itself.
// Lenient by design: whatever the header says yields some addresses, never an exception. Encoded words stay
// encoded (the envelope carries raw values). One tokenising pass, then one pass over the tokens.

import { ENVELOPE_ADDRESSES_MAX, MISSING_DOMAIN, MISSING_MAILBOX } from './constants.ts'
import type { Address, Envelope } from './types.ts'

const ATOM = 0
const QUOTED = 1
const COMMENT = 2
const SPECIAL = 3
const LITERAL = 4

interface Token {
  kind: number
  text: string
}

// RFC 5322 specials that structure an address; `.` and `\` stay inside atoms here.
const SPECIALS = '<>:;@,'

function tokenize (s: string): Token[] {
  const tokens: Token[] = []
  let i = 0
  while (i < s.length) {
    const c = s[i]
    if (c === ' ' || c === '\t' || c === '\r' || c === '\n') {
      i++
    } else if (c === '"') {
      let text = ''
      let from = ++i
      while (i < s.length && s[i] !== '"') {
        if (s[i] === '\\' && i + 1 < s.length) {
          text += s.slice(from, i)
          from = i + 1
          i += 2
        } else {
          i++
        }
      }
      tokens.push({ kind: QUOTED, text: text + s.slice(from, i) })
      i++
    } else if (c === '(') {
      let depth = 0
      let text = ''
      let from = i + 1
      while (i < s.length) {
        const d = s[i]
        if (d === '\\' && i + 1 < s.length) {
          text += s.slice(from, i)
          from = i + 1
          i += 2
          continue
        }
        if (d === '(') depth++
        else if (d === ')' && --depth === 0) break
        i++
      }
      tokens.push({ kind: COMMENT, text: text + s.slice(from, i) })
      i++
    } else if (c === '[') {
      const close = s.indexOf(']', i)
      const end = close === -1 ? s.length : close + 1
      tokens.push({ kind: LITERAL, text: s.slice(i, end) })
      i = end
    } else if (SPECIALS.includes(c)) {
      tokens.push({ kind: SPECIAL, text: c })
      i++
    } else {
      const from = i
      while (i < s.length) {
        const d = s[i]
        if (d === ' ' || d === '\t' || d === '\r' || d === '\n' || d === '"' || d === '(' || d === '[' || SPECIALS.includes(d)) break
        i++
      }
      tokens.push({ kind: ATOM, text: s.slice(from, i) })
    }
  }
  return tokens
}

function isSpecial (t: Token | undefined, chars: string): boolean {
  return t !== undefined && t.kind === SPECIAL && chars.includes(t.text)
}

/** Parses an address list; null when it holds no address (IMAP NIL). */
export function parseAddressList (value: string): Address[] | null {
  const p = new AddressParser(tokenize(value))
  p.list()
  return p.out.length === 0 ? null : p.out
}

class AddressParser {
  readonly tokens: Token[]
  readonly out: Address[] = []
  i = 0

  constructor (tokens: Token[]) {
    this.tokens = tokens
  }

  private push (a: Address): void {
    if (this.out.length < ENVELOPE_ADDRESSES_MAX) this.out.push(a)
  }

  list (): void {
    while (this.i < this.tokens.length && this.out.length < ENVELOPE_ADDRESSES_MAX) {
      if (isSpecial(this.tokens[this.i], ',;>')) { this.i++; continue }
      this.mailboxOrGroup(false)
    }
  }

  /** One mailbox, or (outside a group) a whole group. Always consumes at least one token. */
  private mailboxOrGroup (inGroup: boolean): void {
    const start = this.i
    const phrase: Token[] = []
    const comments: string[] = []
    const t = this.tokens
    while (this.i < t.length && !isSpecial(t[this.i], '<>:;@,')) {
      const tok = t[this.i++]
      if (tok.kind === COMMENT) comments.push(tok.text)
      else phrase.push(tok)
    }
    const next = t[this.i]
    if (isSpecial(next, ':') && !inGroup) {
      // RFC 3501 section 7.4.2: a group is a start marker (mailbox = group name), its members, an end marker.
      this.i++
      this.push({ name: null, adl: null, mailbox: words(phrase), host: null })
      while (this.i < t.length && !isSpecial(t[this.i], ';')) {
        if (isSpecial(t[this.i], ',:>')) { this.i++; continue }
        this.mailboxOrGroup(true)
      }
      this.i++
      this.push({ name: null, adl: null, mailbox: null, host: null })
      return
    }
    if (isSpecial(next, '<')) {
      this.i++
      this.angle(phrase, comments)
      return
    }
    if (isSpecial(next, '@')) {
      this.i++
      const domain = this.domain(comments, '<>,;')
      this.push(make(comments.length > 0 ? comments[comments.length - 1] : null, null, joined(phrase), domain))
      this.skipRest()
      return
    }
    // A bare word without `@` (`To: undisclosed-recipients`): keep it as a mailbox without domain.
    if (phrase.length > 0) {
      this.push(make(comments.length > 0 ? comments[comments.length - 1] : null, null, joined(phrase), ''))
    }
    if (this.i === start) this.i++
  }

  /** After `<`: optional route, addr-spec, `>`. */
  private angle (phrase: Token[], comments: string[]): void {
    const t = this.tokens
    let adl: string | null = null
    if (isSpecial(t[this.i], '@')) {
      // RFC 5322 section 4.4 obs-route: `@a,@b:` before the address.
      let j = this.i
      while (j < t.length && !isSpecial(t[j], ':>')) j++
      if (isSpecial(t[j], ':')) {
        adl = t.slice(this.i, j).filter(x => x.kind !== COMMENT).map(x => x.text).join('')
        this.i = j + 1
      }
    }
    const local: Token[] = []
    while (this.i < t.length && !isSpecial(t[this.i], '@>,;<:')) {
      const tok = t[this.i++]
      if (tok.kind === COMMENT) comments.push(tok.text)
      else local.push(tok)
    }
    let domain = ''
    if (isSpecial(t[this.i], '@')) {
      this.i++
      domain = this.domain(comments, '>,;<')
    }
    if (isSpecial(t[this.i], '>')) this.i++
    this.skipRest()
    const name = phrase.length > 0 ? words(phrase) : null
    // The name of a name-addr is its display-name phrase alone: comments inside or after the brackets (`<a (x)@ b>`,
    // `<a@b> (x)`) are no name (RFC 5322 3.2.2: comments carry no meaning), as Dovecot reads them. Only the bare
    // addr-spec form `a@b (Name)` takes a comment as its name (the old RFC 822 convention, above).
    this.push(make(name, adl, joined(local), domain))
  }

  private domain (comments: string[], stop: string): string {
    const t = this.tokens
    let out = ''
    while (this.i < t.length && !isSpecial(t[this.i], stop)) {
      const tok = t[this.i++]
      if (tok.kind === COMMENT) comments.push(tok.text)
      else out += tok.text
    }
    return out
  }

  /** Skips junk up to the next `,` or `;`; returns the comments met. */
  private skipRest (): string[] {
    const t = this.tokens
    const comments: string[] = []
    // `;` also ends an address outside a group: some clients separate addresses with it.
    while (this.i < t.length && !isSpecial(t[this.i], ',;')) {
      const tok = t[this.i++]
      if (tok.kind === COMMENT) comments.push(tok.text)
    }
    return comments
  }
}

function make (name: string | null, adl: string | null, mailbox: string, host: string): Address {
  return {
    name: name === '' ? null : name,
    adl,
    mailbox: mailbox === '' ? MISSING_MAILBOX : mailbox,
    host: host === '' ? MISSING_DOMAIN : host
  }
}

/** A display name: words joined by single spaces, quoted strings unquoted. */
function words (tokens: Token[]): string {
  return tokens.map(t => t.text).join(' ')
}

/** A local part or domain: pieces joined without the white space between them (RFC 5322 obs-local-part). */
function joined (tokens: Token[]): string {
  return tokens.map(t => t.text).join('')
}

/** The RFC 3501 envelope from a header's first values, keyed by lower-case field name. */
export function buildEnvelope (get: (name: string) => string | null): Envelope {
  const list = (name: string): Address[] | null => {
    const v = get(name)
    return v === null ? null : parseAddressList(v)
  }
  const from = list('from')
  // RFC 3501 section 7.4.2: an absent or empty Sender or Reply-To takes the value of From.
  return {
    date: get('date'),
    subject: get('subject'),
    from,
    sender: list('sender') ?? from,
    replyTo: list('reply-to') ?? from,
    to: list('to'),
    cc: list('cc'),
    bcc: list('bcc'),
    inReplyTo: get('in-reply-to'),
    messageId: get('message-id')
  }
}

export function emptyEnvelope (): Envelope {
  return { date: null, subject: null, from: null, sender: null, replyTo: null, to: null, cc: null, bcc: null, inReplyTo: null, messageId: null }
}

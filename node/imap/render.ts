/**
 * ENVELOPE, BODY and BODYSTRUCTURE as IMAP values (RFC 3501 section 7.4.2, RFC 9051 section
 * 7.5.2), rendered from the MIME structure the store cached at delivery (the store's `mime` module). Strings are
 * raw header values; RFC 2047 words stay encoded, as the RFC asks.
 */
import type { mime } from '../../store/index.ts'

type Address = mime.Address
type Envelope = mime.Envelope
type MimePart = mime.MimePart
import { list, nstr, num, str } from './protocol/compiler.ts'
import type { Value } from './protocol/compiler.ts'

function addresses (items: Address[] | null): Value {
  if (items === null || items.length === 0) return null
  return list(items.map((a) => list([nstr(a.name), nstr(a.adl), nstr(a.mailbox), nstr(a.host)])))
}

export function envelopeValue (envelope: Envelope): Value {
  return list([
    nstr(envelope.date),
    nstr(envelope.subject),
    addresses(envelope.from),
    addresses(envelope.sender),
    addresses(envelope.replyTo),
    addresses(envelope.to),
    addresses(envelope.cc),
    addresses(envelope.bcc),
    nstr(envelope.inReplyTo),
    nstr(envelope.messageId),
  ])
}

function params (pairs: [string, string][]): Value {
  if (pairs.length === 0) return null
  return list(pairs.flatMap(([name, value]) => [str(name.toUpperCase()), str(value)]))
}

function disposition (part: MimePart): Value {
  if (part.disposition === null) return null
  return list([str(part.disposition[0].toUpperCase()), params(part.disposition[1])])
}

/** body-fld-lang allows a bare string for one tag; Dovecot always writes a list, and so do we. */
function language (part: MimePart): Value {
  if (part.language === null || part.language.length === 0) return null
  return list(part.language.map((l) => str(l)))
}

/**
 * A text part's parameters, with the RFC 2045 section 5.2 default charset added when the header names
 * none (`Content-Type: text/plain; format=flowed` is us-ascii), as Dovecot's BODYSTRUCTURE does.
 */
function bodyParams (part: MimePart): [string, string][] {
  if (part.type !== 'text' || part.params.some(([name]) => name.toLowerCase() === 'charset')) return part.params
  return [...part.params, ['charset', 'us-ascii']]
}

/** An empty multipart (no boundary found) gets one empty text/plain child, as Dovecot renders it. */
const EMPTY_TEXT: Value[] = [str('TEXT'), str('PLAIN'), list([str('CHARSET'), str('US-ASCII')]), null, null, str('7BIT'), num(0), num(0)]

/** BODYSTRUCTURE when `extended`, else BODY (RFC 3501 section 7.4.2). */
export function structureValue (part: MimePart, extended: boolean): Value {
  if (part.parts !== undefined) {
    const children = part.parts.length === 0 ? [list(EMPTY_TEXT)] : part.parts.map((child) => structureValue(child, extended))
    const items: Value[] = [...children, str(part.subtype.toUpperCase())]
    if (extended) items.push(params(part.params), disposition(part), language(part), nstr(part.location))
    return list(items)
  }
  const items: Value[] = [
    str(part.type.toUpperCase()),
    str(part.subtype.toUpperCase()),
    params(bodyParams(part)),
    nstr(part.id),
    nstr(part.description),
    str(part.encoding.toUpperCase()),
    num(part.size),
  ]
  if (part.message !== undefined) {
    items.push(envelopeValue(part.message.envelope), structureValue(part.message.root, extended), num(part.lines))
  } else if (part.type === 'text') {
    items.push(num(part.lines))
  }
  if (extended) items.push(nstr(part.md5), disposition(part), language(part), nstr(part.location))
  return list(items)
}

// The cached structure of one message: plain JSON-serialisable data, stored once at delivery so that IMAP
// renders ENVELOPE, BODYSTRUCTURE and BODY[section] without parsing the message again.

/** One address of an envelope list (RFC 3501 section 7.4.2). Group syntax: a start marker has `mailbox` =
 * the group name and every other field null; an end marker has all four fields null. */
export interface Address {
  name: string | null // display name (or the comment of `a@b (Name)`), raw: RFC 2047 words still encoded
  adl: string | null // source route, e.g. `@relay1,@relay2`
  mailbox: string | null
  host: string | null
}

/** RFC 3501 section 7.4.2 fields; strings are the raw header values, unfolded and trimmed, RFC 2047 words
 * still encoded (decode with decodeHeaderValue). `sender` and `replyTo` default to `from` as 7.4.2 asks.
 * The first occurrence of a duplicated field wins. */
export interface Envelope {
  date: string | null
  subject: string | null
  from: Address[] | null
  sender: Address[] | null
  replyTo: Address[] | null
  to: Address[] | null
  cc: Address[] | null
  bcc: Address[] | null
  inReplyTo: string | null
  messageId: string | null
}

/**
 * One node of the body structure. Offsets are byte offsets in the raw message, end exclusive:
 * `raw.subarray(headerStart, headerEnd)` is the part's header block including its blank line (if any),
 * `raw.subarray(bodyStart, bodyEnd)` its body. The line break before a boundary belongs to the boundary
 * (RFC 2046 section 5.1.1), so it is in neither. Text values (type, subtype, encoding, disposition type,
 * parameter names) are lower-cased; parameter values are as written.
 *
 * Rendering rule: a part is a multipart iff `parts` is present (an empty `parts` is a multipart in which no
 * boundary was found: write a zero-length text/plain child, as Dovecot does); it is an encapsulated message
 * iff `message` is present. A part whose type says multipart or message/rfc822 but which carries neither
 * (no boundary, a transfer encoding that hides the structure, or a limit of constants.ts) is a basic part.
 */
export interface MimePart {
  headerStart: number
  headerEnd: number
  bodyStart: number
  bodyEnd: number
  type: string
  subtype: string
  params: [string, string][] // RFC 2231 continuations joined; an extended value keeps `name*` and its `charset'lang'%XX` form
  id: string | null
  description: string | null
  encoding: string // Content-Transfer-Encoding, `7bit` when absent
  size: number // body octets (bodyEnd - bodyStart), as stored
  lines: number // line feeds in the body, plus one for a last line without one
  md5: string | null
  disposition: [string, [string, string][]] | null
  language: string[] | null
  location: string | null
  parts?: MimePart[]
  message?: EncapsulatedMessage
}

export interface EncapsulatedMessage {
  envelope: Envelope
  root: MimePart
}

export interface MessageMeta {
  envelope: Envelope
  root: MimePart
}

/** One header field: `name` as written, `value` unfolded and trimmed; `start`/`end` span its raw bytes
 * including the final line break. */
export interface HeaderField {
  name: string
  value: string
  start: number
  end: number
}

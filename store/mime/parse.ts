// The one pass over a message that builds its MessageMeta. Lines are visited once: header lines one by one,
// bodies by jumping between `\n--` occurrences with Buffer.indexOf (a body without an open boundary is not
// scanned at all). Open parts live on a stack; open multipart boundaries are checked innermost first, so a
// boundary of an outer multipart also ends every unclosed part inside it (RFC 2046 section 5.1.2).

import { buildEnvelope, emptyEnvelope } from './address.ts'
import { BOUNDARY_BYTES_MAX, MIME_DEPTH_MAX, MIME_PARTS_MAX } from './constants.ts'
import { CR, DASH, fieldName, fieldValue, HT, LF, scanHeader, SP, textEncoding, trimBlanks, valueEnd } from './header.ts'
import type { RawField } from './header.ts'
import { parseContentType, parseDisposition } from './params.ts'
import type { Envelope, MessageMeta, MimePart } from './types.ts'

const HEADER = 0
const BODY = 1

interface Frame {
  part: MimePart
  index: number // position in the stack
  state: number // HEADER until the part's blank line is seen, then BODY
  depth: number // expanded multipart/message levels above this part
  digest: boolean // child of multipart/digest: default type message/rfc822 (RFC 2046 section 5.1.5)
  holder: { envelope: Envelope } | null // set on message roots: receives the envelope
  boundary: Buffer | null // a multipart whose close delimiter has not been seen
}

interface Delimiter {
  frame: number // stack index of the multipart whose boundary the line carries
  close: boolean
  lineStart: number
  lineEnd: number
}

interface Ctx {
  raw: Buffer
  stack: Frame[]
  active: Frame[] // frames with a boundary, in stack order
  parts: number
  frozen: boolean // MIME_PARTS_MAX reached: no further boundary is recognised
  pending: Delimiter | null
}

const NL_DASHES = Buffer.from('\n--', 'latin1')

const CONTENT_FIELDS = new Set(['content-type', 'content-transfer-encoding', 'content-id', 'content-description',
  'content-disposition', 'content-language', 'content-location', 'content-md5'])
const ENVELOPE_FIELDS = new Set(['date', 'subject', 'from', 'sender', 'reply-to', 'to', 'cc', 'bcc', 'in-reply-to', 'message-id'])

export function analyze (raw: Buffer): MessageMeta {
  const len = raw.length
  const root = newPart(0)
  const meta: MessageMeta = { envelope: emptyEnvelope(), root }
  const ctx: Ctx = { raw, stack: [], active: [], parts: 1, frozen: false, pending: null }
  ctx.stack.push({ part: root, index: 0, state: HEADER, depth: 0, digest: false, holder: meta, boundary: null })
  const stopAt = (lineStart: number): boolean => {
    ctx.pending = matchDelimiter(ctx, lineStart)
    return ctx.pending !== null
  }
  let pos = 0
  for (;;) {
    const top = ctx.stack[ctx.stack.length - 1]
    if (top.state === HEADER) {
      const scan = scanHeader(raw, pos, len, ctx.active.length > 0 && !ctx.frozen ? stopAt : null)
      if (scan.kind === 'stop' && ctx.pending !== null) {
        // The header ran into a boundary: no blank line, no body.
        const m = ctx.pending
        finishHeader(ctx, top, scan.fields, Math.max(lineBreakBefore(raw, scan.end), top.part.headerStart), true)
        pos = delimiter(ctx, m)
      } else {
        finishHeader(ctx, top, scan.fields, scan.end, true)
        pos = scan.end
      }
      continue
    }
    if (ctx.active.length === 0 || ctx.frozen) break
    const m = findDelimiter(ctx, pos)
    if (m === null) break
    pos = delimiter(ctx, m)
  }
  closeFrames(ctx, 0, len)
  computeSizes(raw, root)
  return meta
}

function newPart (headerStart: number): MimePart {
  return {
    headerStart,
    headerEnd: headerStart,
    bodyStart: headerStart,
    bodyEnd: headerStart,
    type: 'text',
    subtype: 'plain',
    params: [],
    id: null,
    description: null,
    encoding: '7bit',
    size: 0,
    lines: 0,
    md5: null,
    disposition: null,
    language: null,
    location: null
  }
}

/** The position before the line break that precedes `lineStart`: that break belongs to the boundary. */
function lineBreakBefore (raw: Buffer, lineStart: number): number {
  let e = lineStart
  if (e > 0 && raw[e - 1] === LF) e--
  if (e > 0 && raw[e - 1] === CR) e--
  return e
}

/** Is the line at `lineStart` (which begins with `--`) a delimiter of an open multipart? RFC 2046 section
 * 5.1.1: `--boundary` then optional blanks then the line break; `--boundary--` closes, whatever follows. */
function matchDelimiter (ctx: Ctx, lineStart: number): Delimiter | null {
  const raw = ctx.raw
  const len = raw.length
  for (let a = ctx.active.length - 1; a >= 0; a--) {
    const f = ctx.active[a]
    const b = f.boundary as Buffer
    const p = lineStart + 2 + b.length
    if (p > len) continue
    let k = 0
    while (k < b.length && raw[lineStart + 2 + k] === b[k]) k++
    if (k < b.length) continue
    if (p + 1 < len && raw[p] === DASH && raw[p + 1] === DASH) {
      const nl = raw.indexOf(LF, p + 2)
      return { frame: f.index, close: true, lineStart, lineEnd: nl === -1 ? len : nl + 1 }
    }
    let q = p
    while (q < len && (raw[q] === SP || raw[q] === HT)) q++
    if (q === len) return { frame: f.index, close: false, lineStart, lineEnd: len }
    if (raw[q] === LF) return { frame: f.index, close: false, lineStart, lineEnd: q + 1 }
    if (raw[q] === CR && (q + 1 === len || raw[q + 1] === LF)) return { frame: f.index, close: false, lineStart, lineEnd: Math.min(q + 2, len) }
  }
  return null
}

/** The next delimiter line starting at or after `pos` (a line start). */
function findDelimiter (ctx: Ctx, pos: number): Delimiter | null {
  const raw = ctx.raw
  let from = Math.max(0, pos - 1)
  for (;;) {
    const nl = raw.indexOf(NL_DASHES, from)
    if (nl === -1) return null
    if (nl + 1 >= pos) {
      const m = matchDelimiter(ctx, nl + 1)
      if (m !== null) return m
    }
    from = nl + 1
  }
}

/** Acts on a delimiter line; returns where scanning goes on. */
function delimiter (ctx: Ctx, m: Delimiter): number {
  closeFrames(ctx, m.frame + 1, lineBreakBefore(ctx.raw, m.lineStart))
  const f = ctx.stack[m.frame]
  if (m.close) {
    // The epilogue that follows is body of the multipart, up to a boundary of an enclosing one.
    f.boundary = null
    ctx.active.pop()
  } else if (ctx.parts >= MIME_PARTS_MAX) {
    ctx.frozen = true
  } else {
    const child = newPart(m.lineEnd)
    ctx.parts++
    f.part.parts?.push(child)
    ctx.stack.push({ part: child, index: ctx.stack.length, state: HEADER, depth: f.depth + 1, digest: f.part.subtype === 'digest', holder: null, boundary: null })
  }
  return m.lineEnd
}

/** Ends the frames from stack index `from` up at `end`. Inner parts end first; an enclosing part never ends
 * before a part inside it, even when a clamp moved that end (a header that ran into a boundary). */
function closeFrames (ctx: Ctx, from: number, end: number): void {
  let e = end
  for (let i = ctx.stack.length - 1; i >= from; i--) {
    const f = ctx.stack[i]
    if (f.state === HEADER) finishHeader(ctx, f, [], Math.max(e, f.part.headerStart), false)
    if (e < f.part.bodyStart) e = f.part.bodyStart
    f.part.bodyEnd = e
    if (f.boundary !== null) ctx.active.pop()
  }
  ctx.stack.length = from
}

/** The header of `frame` ends at `headerEnd` (its body starts there): read its fields, and open the
 * structure inside it when `expand` allows. */
function finishHeader (ctx: Ctx, frame: Frame, fields: RawField[], headerEnd: number, expand: boolean): void {
  const raw = ctx.raw
  const part = frame.part
  part.headerEnd = headerEnd
  part.bodyStart = headerEnd
  part.bodyEnd = headerEnd
  frame.state = BODY
  const content = new Map<string, string>()
  let contentType: RawField | null = null
  const envelope = frame.holder === null ? null : new Map<string, string>()
  for (const f of fields) {
    const name = fieldName(raw, f).toLowerCase()
    if (CONTENT_FIELDS.has(name)) {
      if (content.has(name)) continue
      content.set(name, fieldValue(raw, f))
      if (name === 'content-type') contentType = f
    } else if (envelope !== null && ENVELOPE_FIELDS.has(name) && !envelope.has(name)) {
      envelope.set(name, fieldValue(raw, f))
    }
  }
  const ctValue = content.get('content-type')
  const ct = ctValue === undefined ? null : parseContentType(ctValue)
  if (ct !== null) {
    part.type = ct.type
    part.subtype = ct.subtype
    part.params = ct.params
  } else if (ctValue === undefined && frame.digest) {
    part.type = 'message'
    part.subtype = 'rfc822'
  } else {
    // RFC 2045 section 5.2: absent or invalid means text/plain; charset=us-ascii.
    part.params = [['charset', 'us-ascii']]
  }
  const cte = content.get('content-transfer-encoding')
  if (cte !== undefined) part.encoding = firstWord(cte) || '7bit'
  part.id = nonEmpty(content.get('content-id'))
  part.description = nonEmpty(content.get('content-description'))
  part.md5 = nonEmpty(content.get('content-md5'))
  part.location = nonEmpty(content.get('content-location'))
  const disposition = content.get('content-disposition')
  if (disposition !== undefined) part.disposition = parseDisposition(disposition)
  const language = content.get('content-language')
  if (language !== undefined) part.language = languages(language)
  if (frame.holder !== null && envelope !== null) {
    frame.holder.envelope = buildEnvelope(name => envelope.get(name) ?? null)
  }

  // A transfer encoding other than an identity one hides the structure (RFC 2045 section 6.4 forbids it on
  // composite types); such a part stays opaque.
  if (!expand || frame.depth >= MIME_DEPTH_MAX || ctx.frozen || part.encoding === 'base64' || part.encoding === 'quoted-printable') return
  if (part.type === 'multipart') {
    if (contentType === null) return
    // The boundary is matched as the bytes it was written with.
    const boundary = boundaryOf(part, textEncoding(raw, contentType.valueStart, valueEnd(contentType)))
    if (boundary === null) return
    part.parts = []
    frame.boundary = boundary
    ctx.active.push(frame)
  } else if (part.type === 'message' && (part.subtype === 'rfc822' || part.subtype === 'global') && ctx.parts < MIME_PARTS_MAX) {
    const inner = newPart(headerEnd)
    ctx.parts++
    const message = { envelope: emptyEnvelope(), root: inner }
    part.message = message
    ctx.stack.push({ part: inner, index: ctx.stack.length, state: HEADER, depth: frame.depth + 1, digest: false, holder: message, boundary: null })
  }
}

function boundaryOf (part: MimePart, enc: 'latin1' | 'utf8'): Buffer | null {
  for (const [name, value] of part.params) {
    if (name !== 'boundary') continue
    const bytes = Buffer.from(value, enc)
    return bytes.length === 0 || bytes.length > BOUNDARY_BYTES_MAX ? null : bytes
  }
  return null
}

function nonEmpty (value: string | undefined): string | null {
  return value === undefined || value === '' ? null : value
}

/** `7BIT (comment)` → `7bit`. */
function firstWord (value: string): string {
  let end = 0
  while (end < value.length) {
    const c = value.charCodeAt(end)
    if (c === 0x20 || c === 0x09 || c === 0x28 || c === 0x3b) break
    end++
  }
  return value.slice(0, end).toLowerCase()
}

/** RFC 3282: a comma-separated list of language tags. */
function languages (value: string): string[] | null {
  const tags: string[] = []
  for (const piece of value.split(',')) {
    const tag = trimBlanks(piece)
    if (tag !== '') tags.push(tag)
  }
  return tags.length === 0 ? null : tags
}

/** Sets `size` everywhere and `lines` on text parts and encapsulated messages. A message's line count is
 * assembled from its pieces, so each byte of the message is counted at most once. */
function computeSizes (raw: Buffer, root: MimePart): void {
  const feeds = new Map<MimePart, number>()
  const lineFeeds = (part: MimePart): number => {
    let n = feeds.get(part)
    if (n !== undefined) return n
    if (part.parts !== undefined && part.parts.length > 0) {
      n = 0
      let cursor = part.bodyStart
      for (const child of part.parts) {
        n += countLineFeeds(raw, cursor, child.bodyStart) + lineFeeds(child)
        cursor = child.bodyEnd
      }
      n += countLineFeeds(raw, cursor, part.bodyEnd)
    } else if (part.message !== undefined) {
      const inner = part.message.root
      n = countLineFeeds(raw, part.bodyStart, inner.bodyStart) + lineFeeds(inner) + countLineFeeds(raw, inner.bodyEnd, part.bodyEnd)
    } else {
      n = countLineFeeds(raw, part.bodyStart, part.bodyEnd)
    }
    feeds.set(part, n)
    return n
  }
  const todo: MimePart[] = [root]
  while (todo.length > 0) {
    const part = todo.pop() as MimePart
    part.size = part.bodyEnd - part.bodyStart
    if (part.type === 'text' || part.message !== undefined) {
      const last = part.size > 0 && raw[part.bodyEnd - 1] !== LF ? 1 : 0
      part.lines = lineFeeds(part) + last
    }
    if (part.parts !== undefined) todo.push(...part.parts)
    if (part.message !== undefined) todo.push(part.message.root)
  }
}

function countLineFeeds (raw: Buffer, start: number, end: number): number {
  if (end <= start) return 0
  // A view, so that the search never runs past `end` into bytes another part will count.
  const view = raw.subarray(start, end)
  let n = 0
  let i = view.indexOf(LF)
  while (i !== -1) {
    n++
    i = view.indexOf(LF, i + 1)
  }
  return n
}

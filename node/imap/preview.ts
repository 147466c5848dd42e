/**
 * PREVIEW (RFC 8970): up to 256 characters of the message's text, for a message list. Taken from the first
 * text/plain or text/html part that is not an attachment (encapsulated messages are not looked into), transfer-
 * and charset-decoded, HTML tags, comments, scripts and styles removed and its entities decoded, white space
 * collapsed. Only the first PREVIEW_SOURCE_BYTES_MAX bytes of the part are read. A message's text never changes
 * (RFC 3501 section 2.3.1.1: content is immutable), so previews are cached on the node by body hash.
 */
import { mime } from '../../store/index.ts'
import type { MailStore, MessageMeta, MessageRecord } from '../../store/index.ts'

/** RFC 8970 section 3.1: "MUST NOT be more than 256 characters". */
export const PREVIEW_CHARS_MAX = 256

/** Encoded bytes of the part read to make a preview: enough for 256 characters of any encoding and some markup. */
export const PREVIEW_SOURCE_BYTES_MAX = 64 * 1024

/** Previews kept on the node (a few hundred bytes each). */
export const PREVIEW_CACHE_MAX = 20_000

const cache = new Map<string, string>()

/** The cached preview of a body, if any (PREVIEW (LAZY) answers from here, RFC 8970 section 3.2). */
export function cachedPreview (record: Pick<MessageRecord, 'blob'>): string | undefined {
  return cache.get(record.blob)
}

function remember (blob: string, text: string): void {
  cache.delete(blob)
  cache.set(blob, text)
  if (cache.size > PREVIEW_CACHE_MAX) cache.delete(cache.keys().next().value!)
}

/** The part the preview is taken from, or null. */
export function previewPart (meta: MessageMeta): mime.MimePart | null {
  const stack: mime.MimePart[] = [meta.root]
  while (stack.length > 0) {
    const part = stack.shift()!
    if (part.parts !== undefined) {
      // multipart/alternative: the plain version is read first whichever order it comes in
      const children = part.subtype === 'alternative' ? [...part.parts].sort((a, b) => Number(b.subtype === 'plain') - Number(a.subtype === 'plain')) : part.parts
      stack.unshift(...children)
      continue
    }
    if (part.type !== 'text' || (part.subtype !== 'plain' && part.subtype !== 'html')) continue
    if (part.disposition !== null && part.disposition[0] === 'attachment') continue
    return part
  }
  return null
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: '\'', nbsp: ' ' }

/** HTML to its text: scripts, styles, comments and tags removed, entities decoded. */
export function htmlText (html: string): string {
  return html
    .replace(/<!--[\s\S]*?(-->|$)/g, ' ')
    .replace(/<(script|style|head|title)\b[\s\S]*?(<\/\1\s*>|$)/gi, ' ')
    .replace(/<[^>]*(>|$)/g, ' ')
    .replace(/&(#x[0-9a-f]{1,6}|#\d{1,7}|[a-z]{2,8});/gi, (whole, name: string) => {
      if (name[0] === '#') {
        const cp = name[1] === 'x' || name[1] === 'X' ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10)
        return cp > 0 && cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff) ? String.fromCodePoint(cp) : ' '
      }
      return ENTITIES[name.toLowerCase()] ?? whole
    })
}

/** Text made fit for a preview: white space collapsed, control characters gone, at most 256 characters. */
export function previewText (text: string): string {
  const flat = text.replace(/[\x00-\x1f\x7f\u00a0\u2028\u2029\s]+/g, ' ').replace(/\uFFFD+$/, '').trim()
  const chars = [...flat]
  return chars.length <= PREVIEW_CHARS_MAX ? flat : chars.slice(0, PREVIEW_CHARS_MAX).join('').trimEnd()
}

/** The preview of a message ('' when it has no text part to take it from). */
export async function makePreview (store: MailStore, record: MessageRecord, meta: MessageMeta): Promise<string> {
  const hit = cache.get(record.blob)
  if (hit !== undefined) return hit
  const part = previewPart(meta)
  let text = ''
  if (part !== null) {
    const end = Math.min(part.bodyEnd, part.bodyStart + PREVIEW_SOURCE_BYTES_MAX)
    const chunks: Buffer[] = []
    for await (const chunk of store.streamMessage(record, { start: part.bodyStart, end })) chunks.push(chunk)
    const decoded = mime.decodeCharset(mime.decodeTransfer(Buffer.concat(chunks), part.encoding), mime.paramValue(part.params, 'charset'))
    text = previewText(part.subtype === 'html' ? htmlText(decoded) : decoded)
  }
  remember(record.blob, text)
  return text
}

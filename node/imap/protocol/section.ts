/**
 * Fetch section specifications (RFC 3501 section 6.4.5, RFC 9051 section 6.4.5):
 * `BODY[1.2.HEADER.FIELDS (A B)]<0.100>`, read from the token tree the tokenizer made.
 */
import type { PartialRange, Token } from './types.ts'

export type SectionText = 'HEADER' | 'HEADER.FIELDS' | 'HEADER.FIELDS.NOT' | 'TEXT' | 'MIME'

export interface SectionSpec {
  /** Part path, `[]` for the whole message. */
  part: number[]
  /** Absent: the whole part (or message). */
  text?: SectionText
  fields?: string[]
  partial?: PartialRange
  /** The section as it is echoed in the response, e.g. `1.2.HEADER.FIELDS (SUBJECT)`. */
  label: string
}

/** Part numbers per path: deeper nesting than this is refused (it bounds the walk). */
export const SECTION_PART_DEPTH_MAX = 32

/** Header names in HEADER.FIELDS: enough for any real client. */
export const SECTION_FIELDS_MAX = 256

const FIELD_NAME = /^[\x21-\x39\x3b-\x7e]+$/

/** Returns the spec, or an error message for BAD. `binary` sections take part numbers only. */
export function parseSection (tokens: Token[], partial: PartialRange | undefined, binary: boolean): SectionSpec | string {
  if (tokens.length === 0) return { part: [], label: '', ...(partial ? { partial } : {}) }
  const head = tokens[0]!
  if (head.type !== 'atom') return 'Invalid section'
  const pieces = head.value.split('.')
  const part: number[] = []
  while (pieces.length > 0 && /^[1-9]\d{0,9}$/.test(pieces[0]!)) {
    part.push(Number(pieces.shift()))
    if (part.length > SECTION_PART_DEPTH_MAX) return 'Section too deep'
  }
  const rest = pieces.join('.').toUpperCase()
  let text: SectionText | undefined
  if (rest === '') {
    text = undefined
  } else if (rest === 'HEADER' || rest === 'TEXT' || rest === 'HEADER.FIELDS' || rest === 'HEADER.FIELDS.NOT') {
    text = rest
  } else if (rest === 'MIME' && part.length > 0) {
    // RFC 3501 section 6.4.5: MIME needs a part number.
    text = 'MIME'
  } else {
    return 'Invalid section'
  }
  if (binary && text !== undefined) return 'BINARY takes part numbers only'
  if (head.value.endsWith('.') || head.value.startsWith('.')) return 'Invalid section'
  let fields: string[] | undefined
  let label = head.value.toUpperCase()
  if (text === 'HEADER.FIELDS' || text === 'HEADER.FIELDS.NOT') {
    const list = tokens[1]
    if (tokens.length !== 2 || list?.type !== 'list' || list.items.length === 0) return 'Missing header list'
    if (list.items.length > SECTION_FIELDS_MAX) return 'Too many header fields'
    fields = []
    for (const item of list.items) {
      const name = item.type === 'atom' || item.type === 'string' ? item.value
        : item.type === 'literal' ? Buffer.concat(item.chunks).toString('latin1') : null
      if (name === null || !FIELD_NAME.test(name)) return 'Invalid header field name'
      fields.push(name)
    }
    label += ` (${fields.map((f) => f.toUpperCase()).join(' ')})`
  } else if (tokens.length !== 1) {
    return 'Invalid section'
  }
  return {
    part,
    ...(text === undefined ? {} : { text }),
    ...(fields === undefined ? {} : { fields }),
    ...(partial === undefined ? {} : { partial }),
    label,
  }
}

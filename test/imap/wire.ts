// A small reader of server responses for tests: splits a buffer (read as latin1, so one char is one byte) into
// responses, each a token tree with atoms, quoted strings, literals (including literal8) and lists. Tests then
// look items up by name instead of matching regular expressions across literals.

export type Item = string | { literal: string } | null | Item[]

export interface Response {
  tag: string
  items: Item[]
}

export function parseResponses (buf: string): Response[] {
  const out: Response[] = []
  let pos = 0
  const fail = (what: string): never => { throw new Error(`${what} at ${pos}: ${JSON.stringify(buf.slice(pos, pos + 60))}`) }
  const readList = (close: string | null): Item[] => {
    const items: Item[] = []
    for (;;) {
      if (pos >= buf.length) fail('unterminated response')
      const c = buf[pos]!
      if (close === null && buf.startsWith('\r\n', pos)) { pos += 2; return items }
      if (c === ' ') { pos++; continue }
      if (close !== null && c === close) { pos++; return items }
      if (c === '(') { pos++; items.push(readList(')')); continue }
      if (c === '"') {
        let value = ''
        pos++
        while (buf[pos] !== '"') {
          if (pos >= buf.length) fail('unterminated string')
          if (buf[pos] === '\\') pos++
          value += buf[pos++]
        }
        pos++
        items.push(value)
        continue
      }
      const literal = /^~?\{(\d+)\}\r\n/.exec(buf.slice(pos, pos + 40))
      if (literal !== null) {
        pos += literal[0].length
        const size = Number(literal[1])
        items.push({ literal: buf.slice(pos, pos + size) })
        pos += size
        continue
      }
      // An atom runs to a space, a bracket that closes a list, or the line end; `[...]` inside stays in it.
      let depth = 0
      const start = pos
      while (pos < buf.length) {
        const ch = buf[pos]!
        if (ch === '[') depth++
        else if (ch === ']') depth--
        else if (depth === 0 && (ch === ' ' || ch === ')' || ch === '(' || ch === '\r')) break
        else if (depth > 0 && ch === '\r') break
        pos++
      }
      const atom = buf.slice(start, pos)
      items.push(atom === 'NIL' ? null : atom)
    }
  }
  while (pos < buf.length) {
    const space = buf.indexOf(' ', pos)
    if (space === -1) fail('no tag')
    const tag = buf.slice(pos, space)
    pos = space + 1
    out.push({ tag, items: readList(null) })
  }
  return out
}

/** The FETCH responses of a reply, by sequence number, as name → value maps. */
export function fetchResponses (buf: string): Map<number, Map<string, Item>> {
  const out = new Map<number, Map<string, Item>>()
  for (const r of parseResponses(buf)) {
    if (r.tag !== '*' || r.items[1] !== 'FETCH') continue
    const list = r.items[2] as Item[]
    const items = new Map<string, Item>()
    for (let i = 0; i < list.length; i += 2) items.set(list[i] as string, list[i + 1]!)
    out.set(Number(r.items[0]), items)
  }
  return out
}

/** The text of a string or literal item. */
export function text (item: Item | undefined): string {
  if (typeof item === 'string') return item
  if (item !== null && item !== undefined && !Array.isArray(item)) return item.literal
  throw new Error(`not a string: ${JSON.stringify(item)}`)
}

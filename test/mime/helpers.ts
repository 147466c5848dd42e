// Shared by the MIME tests: a compact view of a structure and the invariants every analysis must satisfy.
import assert from 'node:assert/strict'
import { MIME_DEPTH_MAX, MIME_PARTS_MAX } from '../../store/mime/index.ts'
import type { MessageMeta, MimePart } from '../../store/mime/index.ts'

/** `multipart/mixed(text/plain,message/rfc822[text/plain])`; a multipart without `parts` shows as a leaf. */
export function shape (part: MimePart): string {
  const name = `${part.type}/${part.subtype}`
  if (part.parts !== undefined) return `${name}(${part.parts.map(shape).join(',')})`
  if (part.message !== undefined) return `${name}[${shape(part.message.root)}]`
  return name
}


/** Builds a message from lines joined by CRLF (or `eol`). */
export function msg (rows: string[], eol = '\r\n', encoding: BufferEncoding = 'utf8'): Buffer {
  return Buffer.from(rows.join(eol), encoding)
}

export function header (raw: Buffer, p: MimePart): string {
  return raw.subarray(p.headerStart, p.headerEnd).toString('latin1')
}

export function body (raw: Buffer, p: MimePart): string {
  return raw.subarray(p.bodyStart, p.bodyEnd).toString('latin1')
}

/** Structural invariants: offsets nest and never overlap, sizes agree, limits hold, JSON round-trips. */
export function validate (meta: MessageMeta, raw: Buffer): void {
  const len = raw.length
  assert.equal(meta.root.headerStart, 0)
  assert.equal(meta.root.bodyEnd, len)
  let count = 0
  const walk = (p: MimePart, lo: number, hi: number, depth: number): void => {
    count++
    assert.ok(depth <= MIME_DEPTH_MAX + 1, `depth ${depth}`)
    assert.ok(lo <= p.headerStart && p.headerStart <= p.headerEnd && p.headerEnd === p.bodyStart &&
      p.bodyStart <= p.bodyEnd && p.bodyEnd <= hi, `offsets ${JSON.stringify([lo, p.headerStart, p.headerEnd, p.bodyStart, p.bodyEnd, hi])}`)
    assert.equal(p.size, p.bodyEnd - p.bodyStart)
    assert.ok(p.lines >= 0 && p.lines <= p.size)
    assert.ok(p.type.length > 0 && p.subtype.length > 0)
    if (p.parts !== undefined) {
      assert.equal(p.type, 'multipart')
      let prev = p.bodyStart
      for (const c of p.parts) {
        assert.ok(c.headerStart >= prev, 'siblings overlap')
        walk(c, prev, p.bodyEnd, depth + 1)
        prev = c.bodyEnd
      }
    }
    if (p.message !== undefined) {
      assert.equal(p.message.root.headerStart, p.bodyStart)
      assert.equal(p.message.root.bodyEnd, p.bodyEnd)
      walk(p.message.root, p.bodyStart, p.bodyEnd, depth + 1)
    }
  }
  walk(meta.root, 0, len, 0)
  assert.ok(count <= MIME_PARTS_MAX, `parts ${count}`)
  assert.deepEqual(JSON.parse(JSON.stringify(meta)), meta)
}

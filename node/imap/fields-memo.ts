/**
 * The HEADER.FIELDS and HEADER.FIELDS.NOT answers FETCH made lately, node-wide. Clients ask for the same few
 * fields of the same messages again and again (a message list: FROM TO SUBJECT DATE MESSAGE-ID for each message in
 * view, on every scroll and resync; the bench's mixed load), and picking the fields out of the header block was
 * about a quarter of such a FETCH's time (the header copy made, every field's span and name found and
 * lower-cased, the wanted ones concatenated). Dovecot keeps the same answers in its cache file.
 *
 * An answer is keyed by the body's hash and the prefix this server added to it (together they are the message's
 * header block: the same key always names the same bytes, so an answer is never stale, only unneeded) and by the
 * field list. Bounded by bytes; the bodies first answered for go first. The kept buffers are shared: callers
 * must not change them (FETCH hands them to the socket or takes a subarray).
 */

export const FIELDS_MEMO_BYTES_MAX = 8 * 1024 * 1024

/** A fixed charge per answer for its keys and maps, so that many tiny answers also stay bounded. */
const ENTRY_OVERHEAD_BYTES = 64

export class FieldsMemo {
  readonly #max: number
  #bytes = 0
  /** body hash → prefix → field list key → answer. Two lookups of the record's own strings, whose hashes V8 keeps. */
  readonly #byBlob = new Map<string, Map<string, Map<string, Buffer>>>()

  constructor (maxBytes = FIELDS_MEMO_BYTES_MAX) {
    this.#max = maxBytes
  }

  get bytes (): number {
    return this.#bytes
  }

  get (blob: string, prefix: string, fields: string): Buffer | undefined {
    return this.#byBlob.get(blob)?.get(prefix)?.get(fields)
  }

  set (blob: string, prefix: string, fields: string, answer: Buffer): void {
    const weight = answer.length + prefix.length + fields.length + ENTRY_OVERHEAD_BYTES
    if (weight > this.#max) return
    let byPrefix = this.#byBlob.get(blob)
    if (byPrefix === undefined) this.#byBlob.set(blob, byPrefix = new Map())
    let byFields = byPrefix.get(prefix)
    if (byFields === undefined) byPrefix.set(prefix, byFields = new Map())
    const old = byFields.get(fields)
    if (old !== undefined) this.#bytes -= old.length + prefix.length + fields.length + ENTRY_OVERHEAD_BYTES
    byFields.set(fields, answer)
    this.#bytes += weight
    for (const [b, kept] of this.#byBlob) {
      if (this.#bytes <= this.#max) break
      this.#byBlob.delete(b)
      for (const [p, answers] of kept) for (const [f, v] of answers) this.#bytes -= v.length + p.length + f.length + ENTRY_OVERHEAD_BYTES
    }
  }
}

/** The memo key of a field list: the names lower-cased (they match without regard to case), `.NOT` marked. */
export function fieldsKey (names: readonly string[], not: boolean): string {
  return (not ? '!' : '=') + names.map((n) => n.toLowerCase()).join('\0')
}

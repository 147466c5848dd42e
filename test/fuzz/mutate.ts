// The byte-mutation layer: from one input, 1 to 6 edits of the kinds that broke parsers elsewhere (AFL's
// havoc stage, libFuzzer's mutators): bit flips, interesting bytes, truncation, deletion, duplication of a
// range many times, splicing with another corpus entry, numbers swapped for huge or negative ones, deep
// nesting of brackets, and protocol tokens from the target's dictionary. Bounded by maxBytes.

export interface Rng {
  /** [0, 1) */
  next: () => number
  /** An integer in [0, n). */
  int: (n: number) => number
}

export interface MutateOptions {
  dictionary: string[]
  maxBytes: number
  corpus: Buffer[]
}

const INTERESTING_BYTES = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x0d, 0x0a, 0x20, 0x09, 0x28, 0x29, 0x7b, 0x7d, 0x22, 0x5c,
  0x5b, 0x5d, 0x3c, 0x3e, 0x7e, 0x2b, 0x3a, 0x2a, 0x2d, 0x2e, 0x3d, 0x3b, 0x2c, 0x25, 0x24, 0xc3, 0xe2]
const HUGE_NUMBERS = ['0', '-1', '4294967295', '4294967296', '2147483648', '9007199254740993', '18446744073709551616',
  '99999999999999999999', '1e309', '00000000000000000001', '0x10', '1.5', 'NaN', '-0']
const OPENERS = ['(', '[', '{', '<', '"', '=?', '--', '~{', '[[a]]\n', '{a={', '[a.b.c', 'x.']

function pick<T> (r: Rng, xs: readonly T[]): T {
  return xs[r.int(xs.length)]!
}

function clip (b: Buffer, max: number): Buffer {
  return b.length > max ? b.subarray(0, max) : b
}

function edit (b: Buffer, r: Rng, o: MutateOptions): Buffer {
  const len = b.length
  const at = (): number => r.int(len + 1)
  switch (r.int(13)) {
    case 0: { // flip bits
      if (len === 0) return b
      const c = Buffer.from(b)
      for (let n = 1 + r.int(4); n > 0; n--) c[r.int(len)]! ^= 1 << r.int(8)
      return c
    }
    case 1: { // an interesting byte over one
      if (len === 0) return Buffer.from([pick(r, INTERESTING_BYTES)])
      const c = Buffer.from(b)
      c[r.int(len)] = pick(r, INTERESTING_BYTES)
      return c
    }
    case 2: // truncate
      return b.subarray(0, at())
    case 3: { // delete a range
      const s = at()
      return Buffer.concat([b.subarray(0, s), b.subarray(Math.min(len, s + 1 + r.int(64)))])
    }
    case 4: { // duplicate a range, possibly many times
      if (len === 0) return b
      const s = r.int(len)
      const piece = b.subarray(s, Math.min(len, s + 1 + r.int(32)))
      const times = r.next() < 0.7 ? 1 + r.int(4) : 1 + r.int(Math.max(1, Math.floor(o.maxBytes / Math.max(1, piece.length) / 2)))
      return Buffer.concat([b.subarray(0, s), Buffer.concat(Array(times).fill(piece) as Buffer[]), b.subarray(s)])
    }
    case 5: { // splice with another corpus entry
      if (o.corpus.length === 0) return b
      const other = pick(r, o.corpus)
      return Buffer.concat([b.subarray(0, at()), other.subarray(r.int(other.length + 1))])
    }
    case 6: { // a number swapped for a huge or odd one
      const s = b.toString('latin1')
      const numbers = [...s.matchAll(/\d+/g)]
      if (numbers.length === 0) return Buffer.concat([b.subarray(0, at()), Buffer.from(pick(r, HUGE_NUMBERS))])
      const m = pick(r, numbers)
      return Buffer.from(s.slice(0, m.index) + pick(r, HUGE_NUMBERS) + s.slice(m.index + m[0].length), 'latin1')
    }
    case 7: { // deep nesting: many openers, sometimes closed
      const opener = pick(r, OPENERS)
      const depth = r.next() < 0.5 ? 1 + r.int(64) : 1 + r.int(20_000)
      const closer = opener === '(' ? ')' : opener === '[' ? ']' : opener === '{' ? '}' : opener === '<' ? '>' : ''
      const s = at()
      const open = opener.repeat(depth)
      const close = r.next() < 0.5 ? closer.repeat(depth) : ''
      return Buffer.concat([b.subarray(0, s), Buffer.from(open, 'latin1'), b.subarray(s), Buffer.from(close, 'latin1')])
    }
    case 8: { // a dictionary token inserted
      if (o.dictionary.length === 0) return b
      const s = at()
      return Buffer.concat([b.subarray(0, s), Buffer.from(pick(r, o.dictionary), 'utf8'), b.subarray(s)])
    }
    case 9: { // random bytes inserted
      const s = at()
      const junk = Buffer.alloc(1 + r.int(16))
      for (let i = 0; i < junk.length; i++) junk[i] = r.int(256)
      return Buffer.concat([b.subarray(0, s), junk, b.subarray(s)])
    }
    case 10: { // two lines swapped
      const lines = b.toString('latin1').split('\n')
      if (lines.length < 2) return b
      const i = r.int(lines.length)
      const j = r.int(lines.length)
      const t = lines[i]!
      lines[i] = lines[j]!
      lines[j] = t
      return Buffer.from(lines.join('\n'), 'latin1')
    }
    case 11: { // line ends changed: CRLF to LF, LF to CR, CR removed
      const s = b.toString('latin1')
      const v = r.int(3)
      return Buffer.from(v === 0 ? s.replace(/\r\n/g, '\n') : v === 1 ? s.replace(/\n/g, '\r') : s.replace(/\r/g, ''), 'latin1')
    }
    default: { // a long run of one byte (overlong lines, huge literals of filler)
      const s = at()
      const run = Buffer.alloc(1 + r.int(Math.min(o.maxBytes, 70_000)), pick(r, [0x41, 0x20, 0x0a, 0x2d, 0x00, 0x3d]))
      return Buffer.concat([b.subarray(0, s), run, b.subarray(s)])
    }
  }
}

export function mutate (input: Buffer, r: Rng, o: MutateOptions): Buffer {
  let b = input
  for (let n = 1 + r.int(6); n > 0; n--) b = clip(edit(b, r, o), o.maxBytes)
  return b
}

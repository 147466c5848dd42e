/**
 * Sequence sets (RFC 3501 section 9 `sequence-set`, RFC 9051 adds `$` for SEARCHRES). Parsed once
 * into ranges; `*` stays symbolic until resolved against the mailbox, because it means the
 * largest number in use at the moment the command runs (RFC 3501 section 6.4.8).
 */

/** `*` before resolution. */
export const STAR = -1

export interface SequenceRange {
  start: number
  end: number
}

/** Largest sequence number or UID (RFC 3501: nz-number is a 32-bit unsigned integer). */
export const NUMBER_MAX = 0xffffffff

/** Ranges in one set: bounds the work of resolving a pathological `1,2,3,...` set. */
export const SEQUENCE_RANGES_MAX = 20_000

const SEQUENCE_SET = /^(?:\d+|\*)(?::(?:\d+|\*))?(?:,(?:\d+|\*)(?::(?:\d+|\*))?)*$/

/** Parses `1:4,7,9:*` into ranges with STAR for `*`; null if malformed. `$` is handled by callers. */
export function parseSequenceSet (text: string): SequenceRange[] | null {
  if (text.length === 0 || !SEQUENCE_SET.test(text)) return null
  const ranges: SequenceRange[] = []
  for (const piece of text.split(',')) {
    if (ranges.length >= SEQUENCE_RANGES_MAX) return null
    const [a, b] = piece.split(':') as [string, string | undefined]
    const start = a === '*' ? STAR : Number(a)
    const end = b === undefined ? start : b === '*' ? STAR : Number(b)
    for (const n of [start, end]) {
      if (n !== STAR && (n < 1 || n > NUMBER_MAX)) return null
    }
    ranges.push({ start, end })
  }
  return ranges
}

/**
 * Replaces `*` by `max`, orders each range and merges overlaps, so membership is a binary search.
 * `5:*` with max 3 is `3:5` (RFC 3501 section 9: the order of the two bounds does not matter).
 */
export function resolveSequenceSet (ranges: SequenceRange[], max: number): SequenceRange[] {
  const resolved = ranges.map(({ start, end }) => {
    const a = start === STAR ? max : start
    const b = end === STAR ? max : end
    return a <= b ? { start: a, end: b } : { start: b, end: a }
  }).sort((x, y) => x.start - y.start)
  const merged: SequenceRange[] = []
  for (const range of resolved) {
    const last = merged[merged.length - 1]
    if (last !== undefined && range.start <= last.end + 1) {
      last.end = Math.max(last.end, range.end)
    } else {
      merged.push({ ...range })
    }
  }
  return merged
}

/** Membership in resolved (sorted, merged) ranges. */
export function inRanges (ranges: SequenceRange[], n: number): boolean {
  let lo = 0
  let hi = ranges.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    const range = ranges[mid]!
    if (n < range.start) hi = mid - 1
    else if (n > range.end) lo = mid + 1
    else return true
  }
  return false
}

/** Compact form of a sorted list of numbers: [1,2,3,7] becomes `1:3,7` (for COPYUID, VANISHED, ESEARCH). */
export function formatSequenceSet (numbers: Iterable<number>): string {
  const sorted = [...numbers].sort((a, b) => a - b)
  const out: string[] = []
  let i = 0
  while (i < sorted.length) {
    let j = i
    while (j + 1 < sorted.length && sorted[j + 1]! <= sorted[j]! + 1) j++
    out.push(sorted[i] === sorted[j] ? String(sorted[i]) : `${sorted[i]}:${sorted[j]}`)
    i = j + 1
  }
  return out.join(',')
}

/** Same, keeping the given order (COPYUID pairs source and destination UIDs by position). */
export function formatOrderedSet (numbers: number[]): string {
  const out: string[] = []
  let i = 0
  while (i < numbers.length) {
    let j = i
    while (j + 1 < numbers.length && numbers[j + 1] === numbers[j]! + 1) j++
    out.push(i === j ? String(numbers[i]) : `${numbers[i]}:${numbers[j]}`)
    i = j + 1
  }
  return out.join(',')
}

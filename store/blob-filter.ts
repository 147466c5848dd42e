// Which bodies this node may hold already: a Bloom filter over the SHA-256 hashes of its stored bodies, so that a
// delivery of a new body (nearly every delivery) learns "not stored" without asking LevelDB.
//
// The question used to be a synchronous LevelDB get (keys.blob) on the event loop: 6 µs at the median, 11 µs on
// average and, a few times a second under ingest, several milliseconds, when LevelDB's mutex was held by the writer
// or a compaction (measured over 20,000 deliveries; the whole event loop waits that long). The filter answers in a
// fraction of a microsecond and never says "not stored" of a body that is: a "maybe" is then asked of LevelDB, as
// before.
//
// The hashes are SHA-256, uniformly spread, so the filter's bit positions are read from the hash itself (eight
// 32-bit slices), no hashing of its own. 16 bits per body with 8 positions: about 0.06 % false "maybe"s. The bits
// are loaded from LevelDB's body index (keys only) in the background when the store starts; until that scan ends
// every answer is "maybe". Bodies are never taken out of the index, so nothing is ever taken out of the filter.
// When the bodies outgrow the filter it is loaded again at twice the size, the old one answering meanwhile.

/** Bits per body the filter is sized for, and the share of that at which it is loaded again at twice the size. */
const BITS_PER_BODY = 16
const GROW_AT_BITS_PER_BODY = 12
const SLICES = 8 // bit positions per hash: eight 32-bit slices of the 64 hex digits
export const BLOB_FILTER_BITS_MIN = 1 << 23 // 1 MiB: half a million bodies before the first regrowth
export const BLOB_FILTER_BITS_MAX = 2 ** 31 // 256 MiB, a store of ~130 million bodies; past it "maybe" gets likelier

export interface BlobFilterSource {
  /** Every stored body's hash, in any order; the scan stops when `signal` fires. */
  hashes (signal: AbortSignal): AsyncIterable<string[]>
}

interface Bits { words: Uint32Array, mask: number }

function newBits (bits: number): Bits {
  return { words: new Uint32Array(bits / 32), mask: bits - 1 }
}

/** The i-th 32-bit slice of a hash in lower-case hex (as sha256Hex writes it), read without a substring. */
function slice32 (hash: string, i: number): number {
  let v = 0
  for (let j = i * 8; j < i * 8 + 8; j++) {
    const c = hash.charCodeAt(j)
    v = (v << 4) | (c <= 57 ? c - 48 : c - 87)
  }
  return v
}

function set (b: Bits, hash: string): void {
  for (let i = 0; i < SLICES; i++) {
    const bit = (slice32(hash, i) & b.mask) >>> 0
    b.words[bit >>> 5] |= 1 << (bit & 31)
  }
}

function test (b: Bits, hash: string): boolean {
  for (let i = 0; i < SLICES; i++) {
    const bit = (slice32(hash, i) & b.mask) >>> 0
    if ((b.words[bit >>> 5] & (1 << (bit & 31))) === 0) return false
  }
  return true
}

const HASH = /^[0-9a-f]{64}$/

export class BlobFilter {
  readonly #source: BlobFilterSource
  /** The filter that answers; null until the first scan ended. */
  #ready: Bits | null = null
  /** The filter a scan is filling (adds go to it too); null when no scan runs. */
  #loading: Bits | null = null
  /** Bodies in the answering filter (scanned and added; a body added twice counts twice: the size errs larger). */
  #count = 0
  #loadingCount = 0
  #scan: Promise<void> | null = null
  /** Hashes added whose batches are not known durable yet: a scan started now might not see them, so a new filter
   * gets them from here (the iterator's snapshot is taken after they are copied). */
  readonly #pending = new Set<string>()
  #abort = new AbortController()
  /** Questions answered "maybe" and "not stored" (tests, diagnostics). */
  maybes = 0
  noes = 0

  constructor (source: BlobFilterSource) {
    this.#source = source
  }

  /** Starts the scan of the stored bodies (it runs in the background; `stop` ends it). */
  start (bits = BLOB_FILTER_BITS_MIN): void {
    if (this.#scan !== null || this.#ready !== null) return
    this.#load(bits)
  }

  /** Ends a scan under way; the filter then answers "maybe" to everything until started again. Safe twice. */
  async stop (): Promise<void> {
    this.#abort.abort()
    const scan = this.#scan
    if (scan !== null) await scan
    this.#ready = null
    this.#loading = null
    this.#pending.clear()
    this.#abort = new AbortController()
  }

  get loaded (): boolean {
    return this.#ready !== null
  }

  /** Size of the answering filter in bits (0 before the first scan ended), and whether a scan runs (tests). */
  get bits (): number {
    return this.#ready === null ? 0 : this.#ready.words.length * 32
  }

  get scanning (): boolean {
    return this.#scan !== null
  }

  /** False only when the body with this hash is certainly not stored (nor being stored by a delivery under way). */
  mayHold (hash: string): boolean {
    const b = this.#ready
    if (b === null || !HASH.test(hash)) { this.maybes++; return true }
    if (test(b, hash)) { this.maybes++; return true }
    this.noes++
    return false
  }

  /** A body about to be stored under this hash: from now on it is "maybe" (before its batch is durable, so a
   * concurrent delivery of the same body asks LevelDB, as it did before the filter). */
  add (hash: string): void {
    if (!HASH.test(hash)) return
    this.#pending.add(hash)
    if (this.#ready !== null) { set(this.#ready, hash); this.#count++ }
    if (this.#loading !== null) { set(this.#loading, hash); this.#loadingCount++ }
    if (this.#ready !== null && this.#loading === null && this.#count * GROW_AT_BITS_PER_BODY > this.#ready.words.length * 32 &&
      this.#ready.words.length * 32 < BLOB_FILTER_BITS_MAX) {
      this.#load(Math.min(BLOB_FILTER_BITS_MAX, this.#ready.words.length * 64))
    }
  }

  /** The body's batch is durable (a scan started from now on sees it). */
  durable (hash: string): void {
    this.#pending.delete(hash)
  }

  /** The body's batch failed: it is not stored (or, if it reached the disk after all, a scan sees it). */
  failed (hash: string): void {
    this.#pending.delete(hash)
  }

  #load (bits: number): void {
    const filling = newBits(bits)
    this.#loading = filling
    this.#loadingCount = 0
    for (const h of this.#pending) { set(filling, h); this.#loadingCount++ }
    const signal = this.#abort.signal
    this.#scan = (async () => {
      try {
        for await (const batch of this.#source.hashes(signal)) {
          if (signal.aborted) return
          for (const h of batch) if (HASH.test(h)) { set(filling, h); this.#loadingCount++ }
        }
        if (signal.aborted) return
        this.#ready = filling
        this.#count = this.#loadingCount
      } catch {
        // the scan failed (the store closing under it): the answering filter stays as it was ("maybe" if none)
      } finally {
        if (this.#loading === filling) this.#loading = null
        this.#scan = null
      }
      // sized from what the scan found: a store larger than the filter is loaded again, larger
      if (!signal.aborted && this.#ready === filling && this.#count * BITS_PER_BODY > bits && bits < BLOB_FILTER_BITS_MAX) {
        this.#load(Math.min(BLOB_FILTER_BITS_MAX, 2 ** Math.ceil(Math.log2(this.#count * BITS_PER_BODY))))
      }
    })()
  }
}

// Content-addressed message bodies in append-only segment files, indexed by LevelDB ("data in files, index in
// a database", seeds 000 and 002). A body is stored once per node however many users and mailboxes hold it.
//
// Durability protocol: bytes are appended to the current segment at a reserved offset; the caller's LevelDB
// batch that indexes them is committed only after `sync()` has fdatasync'd every segment written since the
// last sync (the group committer does this once per group). A crash between the two leaves unindexed bytes
// in a segment: garbage, never a dangling index entry.
//
// Segment record: MAGIC (4) | length (u32 BE) | sha256 (32) | body. The header lets a scan rebuild the index.

import { mkdir, open, readdir } from 'node:fs/promises'
import { constants, read as readFd, readv as readvFd } from 'node:fs'
import type { FileHandle } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { join } from 'node:path'

export const SEGMENT_BYTES_MAX = 256 * 1024 * 1024 // roll over to a new file past this; keeps files movable
export const READ_CHUNK_BYTES = 64 * 1024 // streamed reads never hold more than this per chunk
const MAGIC = Buffer.from('MGB1')
export const RECORD_HEADER_BYTES = 4 + 4 + 32

export interface BlobLocation {
  seg: number
  off: number // offset of the body (after the record header)
  len: number
}

// Merging reads (see flushReads): ranges at most this far apart are read together, the bytes between them
// thrown away (a segment record header is 40 bytes; a few KiB of another user's mail costs less than a second
// thread-pool round trip), and one merged read spans at most this much
/**
 * Bodies appended lately are kept in memory up to this many bytes (the oldest go first): a grid primary ships
 * every body it stored to its replicas within milliseconds, and that read then costs a copy instead of a read
 * from the segment file (read and readBuffers were 0.13 ms per message of the grid's CPU, bench:grid profile).
 */
export const RECENT_BYTES_MAX = 8 * 1024 * 1024
/** Larger bodies are not kept: one would push out hundreds of ordinary ones. */
export const RECENT_BODY_BYTES_MAX = 1024 * 1024

export const COALESCE_GAP_BYTES = 16 * 1024
export const COALESCE_SPAN_BYTES_MAX = 1024 * 1024
const READ_RUN_MAX = 256 // bodies per merged read: with the gaps, 511 iovecs, under Linux's IOV_MAX of 1024

// One pwritev carries at most this many bodies (IOV_MAX is 1024 iovecs on Linux, two per body) and bytes
const APPEND_RUN_MAX = 256
const APPEND_RUN_BYTES_MAX = 16 * 1024 * 1024

interface PendingAppend {
  seg: Segment
  start: number
  bufs: [Buffer, Buffer] // record header, body
  resolve: () => void
  reject: (err: unknown) => void
}

interface ReadRequest {
  seg: number
  pos: number
  len: number
  into: Buffer
  at: number
  resolve: (buf: Buffer) => void
  reject: (err: unknown) => void
}

interface Segment {
  id: number
  fh: FileHandle
  size: number
  dirty: boolean
}

function preadvFd (fd: number, bufs: Buffer[], position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    readvFd(fd, bufs, position, (err, bytesRead) => { if (err !== null) reject(err); else resolve(bytesRead) })
  })
}

function preadFd (fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    readFd(fd, buf, offset, length, position, (err, bytesRead) => { if (err !== null) reject(err); else resolve(bytesRead) })
  })
}

export function sha256Hex (data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

export class BlobFiles {
  readonly dir: string
  private readonly segments = new Map<number, Segment>()
  private current: Segment | null = null
  private pendingWrites = new Set<Promise<unknown>>()
  private opening: Promise<Segment> | null = null
  private readonly openings = new Map<number, Promise<Segment>>()
  private queued: ReadRequest[] = []
  private flushScheduled = false
  private appends: PendingAppend[] = []
  private appendScheduled = false
  private readonly recent = new Map<string, { body: Buffer, hash: string }>() // `seg:off` → body, in the order appended
  /** The same bodies by content hash: the primary's shipment of what it just stored asks by hash (no location read). */
  private readonly recentByHash = new Map<string, Buffer>()
  private recentBytes = 0

  constructor (dir: string) {
    this.dir = dir
  }

  async start (): Promise<void> {
    await mkdir(this.dir, { recursive: true })
    const ids = (await readdir(this.dir))
      .map(f => /^seg-(\d{6})\.dat$/.exec(f))
      .filter((m): m is RegExpExecArray => m !== null)
      .map(m => Number(m[1]))
      .sort((a, b) => a - b)
    const last = ids.at(-1)
    if (last !== undefined) this.current = await this.openSegment(last)
  }

  async stop (): Promise<void> {
    await this.sync()
    for (const seg of this.segments.values()) await seg.fh.close()
    this.segments.clear()
    this.recent.clear()
    this.recentByHash.clear()
    this.recentBytes = 0
    this.current = null
  }

  private openSegment (id: number): Promise<Segment> {
    const existing = this.segments.get(id)
    if (existing !== undefined) return Promise.resolve(existing)
    // concurrent first reads of a segment (FETCH reads ahead) share one open: a second handle would leak
    let opening = this.openings.get(id)
    if (opening === undefined) {
      opening = (async () => {
        try {
          // Not O_APPEND: Linux pwrite ignores the position under O_APPEND, and offsets are reserved up front.
          const fh = await open(join(this.dir, `seg-${String(id).padStart(6, '0')}.dat`), constants.O_RDWR | constants.O_CREAT, 0o600)
          const { size } = await fh.stat()
          const seg: Segment = { id, fh, size, dirty: false }
          this.segments.set(id, seg)
          return seg
        } finally {
          this.openings.delete(id)
        }
      })()
      this.openings.set(id, opening)
    }
    return opening
  }

  private async writable (len: number): Promise<Segment> {
    while (this.opening !== null) await this.opening
    const cur = this.current
    if (cur !== null && (cur.size + len <= SEGMENT_BYTES_MAX || cur.size === 0)) return cur
    const next = (cur?.id ?? 0) + 1
    this.opening = this.openSegment(next)
    try {
      this.current = await this.opening
      return this.current
    } finally {
      this.opening = null
    }
  }

  /** Appends a body; the returned location is valid (and durable) after the next `sync()`. */
  async append (hash: string, body: Buffer): Promise<BlobLocation> {
    const seg = await this.writable(body.length + RECORD_HEADER_BYTES)
    const start = seg.size
    seg.size += RECORD_HEADER_BYTES + body.length // reserve before awaiting, so concurrent appends never overlap
    seg.dirty = true
    const header = Buffer.allocUnsafe(RECORD_HEADER_BYTES)
    MAGIC.copy(header, 0)
    header.writeUInt32BE(body.length, 4)
    header.write(hash, 8, 'hex')
    const p = new Promise<void>((resolve, reject) => {
      this.appends.push({ seg, start, bufs: [header, body], resolve, reject })
      if (!this.appendScheduled) {
        this.appendScheduled = true
        setImmediate(() => { this.flushAppends() })
      }
    })
    this.pendingWrites.add(p)
    try {
      await p
    } finally {
      this.pendingWrites.delete(p)
    }
    const loc = { seg: seg.id, off: start + RECORD_HEADER_BYTES, len: body.length }
    this.remember(loc, body, hash)
    return loc
  }

  private remember (loc: BlobLocation, body: Buffer, hash: string): void {
    if (body.length > RECENT_BODY_BYTES_MAX) return
    this.recent.set(`${loc.seg}:${loc.off}`, { body, hash })
    this.recentByHash.set(hash, body)
    this.recentBytes += body.length
    for (const [k, b] of this.recent) {
      if (this.recentBytes <= RECENT_BYTES_MAX) break
      this.recent.delete(k)
      if (this.recentByHash.get(b.hash) === b.body) this.recentByHash.delete(b.hash)
      this.recentBytes -= b.body.length
    }
  }

  /** A copy of a body appended lately, by its content hash (the caller may change it), or undefined. */
  kept (hash: string): Buffer | undefined {
    const b = this.recentByHash.get(hash)
    return b === undefined ? undefined : Buffer.from(b)
  }

  /**
   * The appends of one turn of the event loop lie back to back in their segment (offsets are reserved in order):
   * one pwritev per run instead of one write per message, so concurrent deliveries cost one thread-pool round
   * trip together.
   */
  private flushAppends (): void {
    this.appendScheduled = false
    const all = this.appends
    this.appends = []
    all.sort((a, b) => a.seg.id - b.seg.id || a.start - b.start)
    for (let i = 0; i < all.length;) {
      let end = all[i].start + all[i].bufs[0].length + all[i].bufs[1].length
      let bytes = end - all[i].start
      let j = i + 1
      while (j < all.length && all[j].seg === all[i].seg && all[j].start === end && j - i < APPEND_RUN_MAX &&
        bytes + all[j].bufs[1].length <= APPEND_RUN_BYTES_MAX) {
        end += all[j].bufs[0].length + all[j].bufs[1].length
        bytes = end - all[i].start
        j++
      }
      const run = all.slice(i, j)
      run[0].seg.fh.writev(run.flatMap(a => a.bufs), run[0].start).then(({ bytesWritten }) => {
        if (bytesWritten !== bytes) throw new Error(`short write to segment ${run[0].seg.id}: ${bytesWritten} of ${bytes} bytes`)
        for (const a of run) a.resolve()
      }).catch((err: unknown) => { for (const a of run) a.reject(err) })
      i = j
    }
  }

  /** Makes every append that has resolved so far durable. */
  async sync (): Promise<void> {
    if (this.pendingWrites.size > 0) await Promise.allSettled([...this.pendingWrites])
    const dirty = [...this.segments.values()].filter(s => s.dirty)
    for (const s of dirty) s.dirty = false
    await Promise.all(dirty.map(s => s.fh.datasync()))
  }

  /**
   * Bytes [start, end) of a body; with `into`, read into that buffer at `at` (a caller that puts a prefix before
   * the body saves a copy). The callback form of pread: FileHandle.read costs a promise and a handle check per
   * call, which showed in profiles of whole-mailbox FETCH.
   */
  async read (loc: BlobLocation, start = 0, end = loc.len, into?: Buffer, at = 0): Promise<Buffer> {
    const len = Math.max(0, Math.min(end, loc.len) - start)
    const buf = into ?? Buffer.allocUnsafe(len)
    if (buf.length < at + len) throw new RangeError('read target too small')
    if (len === 0) return buf
    const kept = this.recent.get(`${loc.seg}:${loc.off}`)?.body
    if (kept !== undefined && kept.length === loc.len) {
      kept.copy(buf, at, start, start + len) // a copy: the caller may change what it gets
      return buf
    }
    const pos = loc.off + start
    if (len > COALESCE_SPAN_BYTES_MAX) {
      await this.preadFully(loc.seg, buf, at, len, pos)
      return buf
    }
    return await new Promise((resolve, reject) => {
      this.queued.push({ seg: loc.seg, pos, len, into: buf, at, resolve, reject })
      if (!this.flushScheduled) {
        this.flushScheduled = true
        setImmediate(() => { this.flushReads() })
      }
    })
  }

  /**
   * The reads asked for in one turn of the event loop, merged where they lie close together in one segment (a
   * mailbox's messages usually do: they were appended in the order they arrived): one pread and one thread-pool
   * round trip for a run of messages instead of one each.
   */
  private flushReads (): void {
    this.flushScheduled = false
    const all = this.queued
    this.queued = []
    all.sort((a, b) => a.seg - b.seg || a.pos - b.pos)
    for (let i = 0; i < all.length;) {
      const from = all[i].pos
      let to = from + all[i].len
      let j = i + 1
      while (j < all.length && j - i < READ_RUN_MAX && all[j].seg === all[i].seg && all[j].pos - to <= COALESCE_GAP_BYTES &&
        Math.max(to, all[j].pos + all[j].len) - from <= COALESCE_SPAN_BYTES_MAX) {
        to = Math.max(to, all[j].pos + all[j].len)
        j++
      }
      void this.readSpan(all.slice(i, j), from, to)
      i = j
    }
  }

  private async readSpan (reqs: ReadRequest[], from: number, to: number): Promise<void> {
    if (reqs.length > 1) {
      try {
        // Disjoint ranges (the usual case): one preadv straight into each caller's buffer, the gaps between
        // them into scratch space. Overlapping ones (one body asked for twice): one read, then copies.
        const iov: Buffer[] = []
        let at = from
        for (const r of reqs) {
          if (r.pos < at) { iov.length = 0; break }
          if (r.pos > at) iov.push(Buffer.allocUnsafe(r.pos - at))
          iov.push(r.into.subarray(r.at, r.at + r.len))
          at = r.pos + r.len
        }
        if (iov.length > 0) {
          const seg = this.segments.get(reqs[0].seg) ?? await this.openSegment(reqs[0].seg)
          if (await preadvFd(seg.fh.fd, iov, from) !== to - from) throw new Error('short read')
        } else {
          const span = Buffer.allocUnsafe(to - from)
          await this.preadFully(reqs[0].seg, span, 0, to - from, from)
          for (const r of reqs) span.copy(r.into, r.at, r.pos - from, r.pos - from + r.len)
        }
        for (const r of reqs) r.resolve(r.into)
        return
      } catch {
        // a short read, or one bad record: read each alone, so that each succeeds or fails on its own
      }
    }
    await Promise.all(reqs.map(async r => {
      try {
        await this.preadFully(r.seg, r.into, r.at, r.len, r.pos)
        r.resolve(r.into)
      } catch (err) {
        r.reject(err)
      }
    }))
  }

  private async preadFully (segId: number, buf: Buffer, at: number, len: number, pos: number): Promise<void> {
    const seg = this.segments.get(segId) ?? await this.openSegment(segId)
    let done = 0
    while (done < len) {
      const bytesRead = await preadFd(seg.fh.fd, buf, at + done, len - done, pos + done)
      if (bytesRead === 0) throw new Error(`blob truncated in segment ${segId} at ${pos}`)
      done += bytesRead
    }
  }

  async * stream (loc: BlobLocation, start = 0, end = loc.len): AsyncIterable<Buffer> {
    let pos = Math.max(0, start)
    const stop = Math.min(end, loc.len)
    while (pos < stop) {
      const next = Math.min(stop, pos + READ_CHUNK_BYTES)
      yield await this.read(loc, pos, next)
      pos = next
    }
  }
}

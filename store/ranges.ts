// Reading a LevelDB range without pinning native memory. classic-level's `nextv(size)` reserves room for `size`
// entries (about 64 bytes each) in a native vector that lives until the iterator's JavaScript wrapper is garbage
// collected, not when the iterator closes; abstract-level's `for await` and `all()` ask for 1,000 entries, so every
// range read left about 64 KiB behind, which V8 does not see (the wrapper is a few bytes) and so does not hurry to
// collect. An IMAP SELECT or STATUS reads three small ranges: 5,000 IDLE sessions grew the node by ~300 MiB that
// way (heaptrack: NextWorker::DoExecute → std::vector::reserve). Here a range is read in batches that start small
// and double up to abstract-level's 1,000, so a short range reserves a few hundred bytes and a long one costs
// no more round trips than before, plus a few.

/** The first batch; most ranges read on a session's path (mailboxes, subscriptions, a small mailbox) fit in it. */
export const RANGE_FIRST_BATCH = 8
/** The largest batch (abstract-level's own). */
export const RANGE_BATCH_MAX = 1000

interface BatchIterator<T> {
  nextv: (size: number) => Promise<T[]>
  close: () => Promise<void>
}

/**
 * Every entry of the range the iterator covers, in order; the iterator is closed at the end or on error. `first`:
 * the first batch, when the caller knows the range's size (at most RANGE_BATCH_MAX).
 */
export async function readRange<T> (it: BatchIterator<T>, first = RANGE_FIRST_BATCH): Promise<T[]> {
  const out: T[] = []
  for await (const batch of batches(it, first)) for (const x of batch) out.push(x)
  return out
}

/** The range in batches (8, 16, 32, ... up to 1,000 entries); closes the iterator when done, broken off or failed. */
export async function * batches<T> (it: BatchIterator<T>, first = RANGE_FIRST_BATCH): AsyncGenerator<T[]> {
  try {
    let size = Math.max(1, Math.min(RANGE_BATCH_MAX, Math.floor(first)))
    for (;;) {
      const batch = await it.nextv(size)
      if (batch.length === 0) return
      yield batch
      // a short batch is not the end: classic-level also stops at highWaterMarkBytes (16 KiB); only [] ends it
      size = Math.min(RANGE_BATCH_MAX, size * 2)
    }
  } finally {
    await it.close()
  }
}

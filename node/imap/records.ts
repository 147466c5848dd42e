/**
 * Reading index records for a UID list: a contiguous run is one range read, a sparse list one multi-get
 * (store.getMessages), so `FETCH 1,50000` reads two records, not fifty thousand. Work goes in batches, so
 * a FETCH over a large mailbox holds one batch of records at a time and starts answering at once.
 */
import type { MailStore, MessageRecord } from '../../store/index.ts'

/**
 * Records per batch. Large enough that the per-call overhead of LevelDB disappears (a range read of 500
 * small records takes well under a millisecond), small enough that a 50,000-message FETCH holds little.
 */
export const RECORD_BATCH_MAX = 500

/** The records of these ascending UIDs that exist, in UID order. */
export async function readRecords (store: MailStore, user: string, mailboxId: string, uids: readonly number[]): Promise<MessageRecord[]> {
  if (uids.length === 0) return []
  const first = uids[0]!
  const last = uids[uids.length - 1]!
  // Dense: a range read costs about the same as a multi-get of the wanted keys and reads in key order.
  if ((last - first + 1) <= uids.length * 2) {
    const range = await store.listMessages(user, mailboxId, { from: first, to: last })
    // the wanted ones, both lists ascending: one walk, no set and no closure (SEARCH and FETCH ask this for every
    // batch of the mailbox)
    const out: MessageRecord[] = []
    let j = 0
    for (const r of range) {
      while (j < uids.length && uids[j]! < r.uid) j++
      if (j === uids.length) break
      if (uids[j] === r.uid) out.push(r)
    }
    return out
  }
  return await store.getMessages(user, mailboxId, [...uids])
}

/** Yields the records of ascending `uids` in batches of RECORD_BATCH_MAX. */
export async function * recordBatches (store: MailStore, user: string, mailboxId: string, uids: readonly number[]): AsyncGenerator<MessageRecord[]> {
  for (let i = 0; i < uids.length; i += RECORD_BATCH_MAX) {
    yield await readRecords(store, user, mailboxId, uids.slice(i, i + RECORD_BATCH_MAX))
  }
}

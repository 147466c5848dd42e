// POP3 session state (RFC 1939 section 3) as a discriminated union: each state carries only what is valid
// in it, so a handler cannot reach a maildrop before login. The maildrop is a snapshot taken at login:
// messages delivered later appear in the next session, and deletions are marks until QUIT.

import type { MessageRecord } from '../../store/index.ts'

export interface MaildropEntry {
  readonly record: MessageRecord
  deleted: boolean
}

/** The messages of one session, numbered from 1 in UID order (RFC 1939 section 5). */
export class Maildrop {
  readonly mailboxId: string
  private readonly entries: MaildropEntry[]
  // UIDs another session expunged since the snapshot (told by the store's change events)
  private readonly gone = new Set<number>()

  constructor (mailboxId: string, records: MessageRecord[], expunged: Iterable<number> = []) {
    this.mailboxId = mailboxId
    this.entries = records.map(record => ({ record, deleted: false }))
    for (const uid of expunged) this.gone.add(uid)
  }

  /** Another session expunged these messages: they can no longer be retrieved. */
  markGone (uids: Iterable<number>): void {
    for (const uid of uids) this.gone.add(uid)
  }

  isGone (uid: number): boolean {
    return this.gone.has(uid)
  }

  /** The entry for a message number, or null when out of range. A deleted one is returned marked. */
  get (n: number): MaildropEntry | null {
    return Number.isInteger(n) && n >= 1 && n <= this.entries.length ? this.entries[n - 1] : null
  }

  /** Message numbers and entries of the messages not marked deleted. */
  * live (): Generator<[number, MaildropEntry]> {
    for (let i = 0; i < this.entries.length; i++) {
      if (!this.entries[i].deleted) yield [i + 1, this.entries[i]]
    }
  }

  stat (): { count: number, octets: number } {
    let count = 0
    let octets = 0
    for (const [, e] of this.live()) {
      count++
      octets += e.record.size
    }
    return { count, octets }
  }

  reset (): void {
    for (const e of this.entries) e.deleted = false
  }

  deleted (): MessageRecord[] {
    return this.entries.filter(e => e.deleted).map(e => e.record)
  }
}

export type SessionState =
  | { kind: 'authorization', user: string | null, failures: number } // user: given by USER, awaiting PASS
  | { kind: 'transaction', user: string, drop: Maildrop }
  | { kind: 'update', user: string }

export type StateKind = SessionState['kind']
export type StateOf<K extends StateKind> = Extract<SessionState, { kind: K }>

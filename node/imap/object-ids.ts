/**
 * OBJECTID (RFC 8474): MAILBOXID, EMAILID and THREADID, derived from what every replica holds alike, so they are
 * the same on every node, after a failover, a catch-up or a merge, without anything stored for them.
 *
 * - MAILBOXID: `F` + a digest of the user, the mailbox's store id (stable across RENAME) and its UIDVALIDITY. A
 *   mailbox deleted and created again gets a new store id, so a new MAILBOXID (section 4: never reused).
 * - EMAILID: `M` + a digest of the message's bytes (the trace header this server added, then the body's SHA-256).
 *   Section 5.1: the same for a message after COPY or MOVE (the bytes do not change) and for identical messages
 *   appended twice (allowed: "the same EMAILID ... MUST have identical content"), never for different bytes.
 * - THREADID: `T` + a digest of the thread's root message id: the first id of References, else of In-Reply-To, else
 *   the message's own Message-ID; a message with none of them is a thread of its own (its EMAILID's digest).
 *   Replies that keep References (RFC 5322 section 3.6.4) share their root's THREADID across mailboxes (section
 *   5.2); a chain linked by In-Reply-To alone is split where a message lacks References.
 */
import { createHash } from 'node:crypto'
import type { Mailbox, MessageRecord } from '../../store/index.ts'
import { messageIds, REFERENCES_MAX, wantedFields } from './sort-keys.ts'
import type { SortKeys } from './sort-keys.ts'

/** RFC 8474 section 7: objectid = 1*255(ALPHA / DIGIT / "_" / "-"). */
export const OBJECTID = /^[A-Za-z0-9_-]{1,255}$/

function digest (...parts: string[]): string {
  const h = createHash('sha256')
  for (const p of parts) h.update(p).update('\x00')
  return h.digest('base64url').slice(0, 24)
}

export function mailboxObjectId (user: string, mailbox: Pick<Mailbox, 'id' | 'uidValidity'>): string {
  return 'F' + digest('mailbox', user.toLowerCase(), mailbox.id, String(mailbox.uidValidity))
}

export function emailObjectId (record: Pick<MessageRecord, 'prefix' | 'blob'>): string {
  return 'M' + digest('email', record.prefix, record.blob)
}

/** The thread root of a message from its sort keys (sort-keys.ts keeps Message-ID and References, or In-Reply-To). */
export function threadObjectIdFromKeys (record: Pick<MessageRecord, 'prefix' | 'blob'>, keys: Pick<SortKeys, 'messageId' | 'references'>): string {
  const root = keys.references[0] ?? keys.messageId
  return 'T' + (root === undefined || root === null ? digest('thread-self', emailObjectId(record)) : digest('thread', root))
}

/** The same from a header block (SEARCH THREADID reads the kept header copy). */
export function threadObjectIdFromHeader (record: Pick<MessageRecord, 'prefix' | 'blob'>, header: Buffer): string {
  const fields = wantedFields(header)
  let references = messageIds(fields.get('references') ?? '')
  // as sort-keys.ts keeps them, so FETCH (from the kept keys) and SEARCH (from the header) agree
  if (references.length > REFERENCES_MAX) references = references.slice(references.length - REFERENCES_MAX)
  const inReplyTo = messageIds(fields.get('in-reply-to') ?? '')
  const own = messageIds(fields.get('message-id') ?? '')
  return threadObjectIdFromKeys(record, { references: references.length > 0 ? references : inReplyTo.slice(0, 1), messageId: own[0] ?? null })
}

// What the file importers write to and the exporters read from: one user's mail, as the node's UserMail
// (user-mail.ts) offers it in the daemon, or as the CLI reaches it over the admin API (appliance/mail-client.ts).

import type { Mailbox, MessageRecord, SpecialUse } from '../../store/index.ts'
import type { ImportMessage } from './user-mail.ts'

export type { ImportMessage }

export interface MailTarget {
  /** The mailbox, created (with its parents) if missing. */
  ensureMailbox (name: string, specialUse?: SpecialUse | null): Promise<Mailbox>
  subscribe (name: string): Promise<void>
  /** Adds the message unless its global id is there already (`existed`). */
  append (mailbox: string, m: ImportMessage): Promise<{ uid: number, existed: boolean }>
}

export interface MailSource {
  mailboxes (): Promise<{ mailboxes: Mailbox[], subscriptions: string[] }>
  /** A page of records from UID `from`; `next` null when done. */
  messages (mailboxId: string, from: number, limit: number): Promise<{ messages: MessageRecord[], next: number | null }>
  /** Bytes of a body from `offset` (a bounded chunk) and the body's size. */
  blob (hash: string, offset: number): Promise<{ data: Buffer, size: number }>
}

export interface ImportReport {
  folders: number
  messages: number // added now
  existing: number // there already (a second run)
  bytes: number
  uidsKept: number // added under the UID the source gave them
  skipped: Array<{ folder: string, item: string, reason: string }>
}

export interface ExportReport {
  folders: number
  messages: number
  bytes: number
  skipped: Array<{ folder: string, item: string, reason: string }>
}

export function emptyImportReport (): ImportReport {
  return { folders: 0, messages: 0, existing: 0, bytes: 0, uidsKept: 0, skipped: [] }
}

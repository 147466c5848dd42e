/**
 * How failures reach an IMAP client. Store errors (the closed list in store/errors.ts) map here,
 * once, to response codes (RFC 5530); syntax errors found while reading arguments are BAD;
 * anything else is logged with an id and answered "Internal error".
 */
import { imapError } from '../errors.ts'

/** A malformed argument: the command is answered BAD with this text (and LIMIT when a limit refused it). */
export class ArgumentError extends Error {
  readonly code: string | undefined
  constructor (message: string, code?: 'LIMIT' | 'TOOBIG') {
    super(message)
    this.code = code
  }
}

/** A refusal with an optional response code: the command is answered NO. */
export class CommandRefused extends Error {
  readonly code: string | undefined
  constructor (message: string, code?: string) {
    super(message)
    this.code = code
  }
}

export interface ErrorReply {
  status: 'NO' | 'BAD'
  code?: string
  text: string
}

/**
 * Maps an error to its IMAP answer. Store errors go through the node's one mapping
 * (node/errors.ts); anything else is internal and gets "Internal error" with a log id.
 */
export function replyForError (err: unknown): ErrorReply & { logId: string | null } {
  if (err instanceof ArgumentError) return { status: 'BAD', ...(err.code === undefined ? {} : { code: err.code }), text: err.message, logId: null }
  if (err instanceof CommandRefused) return { status: 'NO', ...(err.code === undefined ? {} : { code: err.code }), text: err.message, logId: null }
  const mapped = imapError(err)
  return { status: 'NO', ...(mapped.code === null ? {} : { code: mapped.code }), text: mapped.text, logId: mapped.logId }
}

/**
 * The capability list (RFC 3501 section 7.2.1). Everything is advertised in every state except
 * what depends on the transport: STARTTLS only in plaintext, LOGINDISABLED and AUTH=PLAIN
 * according to whether plaintext credentials are allowed here, COMPRESS until it is active.
 */
import type { Session } from './session.ts'

/** Extensions that hold in every state and on every transport. */
const ALWAYS = [
  'IMAP4rev1', 'IMAP4rev2', 'LITERAL+', 'SASL-IR', 'ID', 'ENABLE', 'IDLE', 'NAMESPACE', 'UNSELECT',
  'UIDPLUS', 'MOVE', 'CHILDREN', 'SPECIAL-USE', 'LIST-EXTENDED', 'LIST-STATUS', 'CONDSTORE', 'QRESYNC',
  'QUOTA', 'QUOTA=RES-STORAGE', 'QUOTA=RES-MESSAGE', 'ESEARCH', 'SEARCHRES', 'BINARY', 'UTF8=ACCEPT',
  'STATUS=SIZE',
  // RFC 5256, RFC 5957, RFC 5267 section 3 (commands/sort.ts, commands/thread.ts)
  'SORT', 'SORT=DISPLAY', 'THREAD=ORDEREDSUBJECT', 'THREAD=REFERENCES', 'ESORT',
  // RFC 9394: SEARCH/SORT RETURN (PARTIAL range) and the FETCH modifier (PARTIAL range) (commands/search.ts, sort.ts, fetch.ts)
  'PARTIAL',
  // RFC 5267 section 4 (search-context.ts, commands/cancelupdate.ts)
  'CONTEXT=SEARCH', 'CONTEXT=SORT',
  // RFC 5465 (notify.ts, commands/notify.ts)
  'NOTIFY',
  // RFC 5464, server and mailbox entries (commands/metadata.ts)
  'METADATA',
  // RFC 3502, RFC 8508 (commands/append.ts)
  'MULTIAPPEND', 'REPLACE',
  // RFC 8474 (object-ids.ts), RFC 8514 (the store's save date), RFC 8970 (preview.ts), RFC 6154 section 3 (CREATE)
  'OBJECTID', 'SAVEDATE', 'PREVIEW', 'CREATE-SPECIAL-USE',
  // RFC 4469 (commands/append.ts, urls.ts), RFC 4467 (urlauth.ts, commands/genurlauth.ts)
  'CATENATE', 'URLAUTH',
]

export function capabilities (session: Session): string[] {
  const caps = [...ALWAYS]
  if (!session.connection.secure && session.secureContext() !== null && session.state.kind === 'notAuthenticated') {
    caps.push('STARTTLS')
  }
  if (session.state.kind === 'notAuthenticated') {
    if (session.insecureAuthAllowed) caps.push('AUTH=PLAIN')
    else caps.push('LOGINDISABLED')
  }
  caps.push(`APPENDLIMIT=${session.options.limits.appendBytesMax}`)
  if (!session.connection.compressed && session.state.kind !== 'notAuthenticated') caps.push('COMPRESS=DEFLATE')
  return caps
}

// store/: durable local state on LevelDB — the directory, mailboxes, message index, content-addressed blobs and
// each user's change log — behind the interfaces in types.ts. Nothing here knows sockets, protocols or peers.

import { LevelStore } from './directory.ts'
import type { StoreComponents, StoreInit } from './mail.ts'
import type { Store } from './types.ts'

export type * from './types.ts'
export type { StoreComponents, StoreInit } from './mail.ts'
export { LogDivergedError, MailError, isMailError } from './errors.ts'
export type { MailErrorKind } from './errors.ts'
export { normalizeAddress, normalizeAliasAddress, normalizeDomain, domainOf } from './address.ts'
export { dummyHash, hashPassword, SCRYPT_LOG_N, verifyPassword } from './password.ts'
export { DELIMITER, checkMailboxName, normalizeMailboxName } from './names.ts'
export { DEFAULT_MAILBOXES, ATTR_KEY_BYTES_MAX, ATTR_VALUE_BYTES_MAX, ATTRS_PER_USER_MAX, ATTR_BYTES_PER_USER_MAX, COMBINE_MAX } from './mail.ts'
export { summarizeLog, attrWins } from './summary.ts'
export { QUEUE_SHARD_PREFIX, isQueueShard } from './shards.ts'
export type { AddedMessage, LogSummary } from './summary.ts'
export { DiskWatch, diskFloorBytes, diskSpace, DISK_CHECK_MS, DISK_FLOOR_BYTES_DEFAULT, DISK_FLOOR_FRACTION_DEFAULT, DISK_RECOVER_MARGIN } from './disk.ts'
export type { DiskSpace, DiskState, DiskWatchComponents, DiskWatchInit } from './disk.ts'
export * as mime from './mime/index.ts'

export function createStore (components: StoreComponents, init: StoreInit): Store {
  return new LevelStore(components, init)
}

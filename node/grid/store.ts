// The MailStore the protocol servers use on a grid node: reads come from the local copy (sessions run on the
// user's primary, forwarded there by the edge node), and every write goes through the grid — this node must
// lead the user, the change is made locally and then shipped to every alive replica before the call
// resolves, so an acknowledgement means durable on all of them.

import type { MailStore, OpOptions } from '../../store/index.ts'
import type { Grid } from './grid.ts'

import { MailError } from '../../store/index.ts'

type WriteMethod = 'createMailbox' | 'deleteMailbox' | 'renameMailbox' | 'setSubscribed' | 'append' | 'appendMany' | 'storeFlags' | 'expunge' | 'copy' | 'move' | 'setAttrs'
// User attributes (Sieve scripts, vacation memory) are accepted on both sides of a partition like deliveries
// (vacation memory is written at delivery); the merge keeps both sides' changes (merge.ts)
const WRITES: WriteMethod[] = ['createMailbox', 'deleteMailbox', 'renameMailbox', 'setSubscribed', 'append', 'appendMany', 'storeFlags', 'expunge', 'copy', 'move', 'setAttrs']
// New messages (APPEND, COPY) are accepted like deliveries on both sides of a partition; these change what
// exists, and need the majority side (Grid.hasQuorum)
const MAILBOX_CHANGES = new Set<WriteMethod>(['createMailbox', 'deleteMailbox', 'renameMailbox', 'setSubscribed', 'storeFlags', 'expunge', 'move'])

// The reads of a session that name the user (the rest take a record one of these returned)
type ReadMethod = 'listMailboxes' | 'getMailbox' | 'listSubscriptions' | 'listMessages' | 'listFlags' | 'getMessage' | 'getMessages' | 'changesSince' | 'readLog' | 'getAttr' | 'listAttrs'
const READS: ReadMethod[] = ['listMailboxes', 'getMailbox', 'listSubscriptions', 'listMessages', 'listFlags', 'getMessage', 'getMessages', 'changesSince', 'readLog', 'getAttr', 'listAttrs']

// A user this node started empty while its mail may exist on a member it could not reach (catch-up.ts): the UIDs
// it gives meanwhile may name other messages in that copy, under the same UIDVALIDITY, and the merge that takes
// the copy in moves ours. No session sees them: reads and session writes (APPEND and COPY answer UIDs) get a
// temporary failure until that copy is taken in; deliveries (Grid.deliver) are accepted meanwhile.
const PROVISIONAL = 'This mailbox is being recovered after a failure (new mail is still accepted); try again shortly'

export function replicatedMailStore (grid: Grid, local: MailStore): MailStore {
  const settled = async (user: string, opts?: OpOptions): Promise<void> => {
    if (!grid.provisional(user)) return
    // a member holding the older copy may be back: catching up now takes it in (the rebalance round would soon)
    await grid.lead(user, opts).catch(() => {})
    if (grid.provisional(user)) throw new MailError('unavailable', PROVISIONAL)
  }
  const reads: Record<string, unknown> = {}
  for (const m of READS) {
    if (local[m] === undefined) continue
    const fn = (local[m] as (...args: unknown[]) => Promise<unknown>).bind(local)
    // the common case (not provisional) costs one map lookup
    reads[m] = async (user: string, ...rest: unknown[]) => grid.provisional(user) ? await settled(user).then(async () => await fn(user, ...rest)) : await fn(user, ...rest)
  }
  const wrapped: Record<string, unknown> = {}
  for (const m of WRITES) {
    const fn = (local[m] as (...args: unknown[]) => Promise<unknown>).bind(local)
    wrapped[m] = async (user: string, ...rest: unknown[]) => {
      const opts = rest.at(-1) as OpOptions | undefined
      // an appendMany that expunges (IMAP REPLACE) changes what exists, like an expunge
      const expunges = m === 'appendMany' && (opts as { expunge?: unknown } | undefined)?.expunge !== undefined
      if ((MAILBOX_CHANGES.has(m) || expunges) && !grid.hasQuorum()) {
        throw new MailError('unavailable', 'Mailbox changes are paused: this node is cut off from most of the grid; new mail is still accepted')
      }
      await grid.lead(user, opts)
      if (grid.provisional(user)) throw new MailError('unavailable', PROVISIONAL)
      const out = await fn(user, ...rest)
      await grid.replicate(user, opts)
      return out
    }
  }
  return {
    listMailboxes: local.listMailboxes.bind(local),
    getMailbox: local.getMailbox.bind(local),
    listSubscriptions: local.listSubscriptions.bind(local),
    listMessages: local.listMessages.bind(local),
    getMessage: local.getMessage.bind(local),
    getMessages: local.getMessages.bind(local),
    getMeta: local.getMeta.bind(local),
    readMessage: local.readMessage.bind(local),
    streamMessage: local.streamMessage.bind(local),
    changesSince: local.changesSince.bind(local),
    subscribe: local.subscribe.bind(local),
    readLog: local.readLog.bind(local),
    getAttr: local.getAttr.bind(local),
    listAttrs: local.listAttrs.bind(local),
    // the fast read paths (flag index, header copies) are the local copy's, like every read here
    ...(local.listFlags !== undefined ? { listFlags: local.listFlags.bind(local) } : {}),
    ...(local.readHeader !== undefined ? { readHeader: local.readHeader.bind(local) } : {}),
    quota: async (user: string) => await grid.quota(user),
    deliver: async (raw, targets, opts) => await grid.deliver(raw, targets, opts),
    ...reads,
    ...wrapped
  } as MailStore
}

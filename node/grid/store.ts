// The MailStore the protocol servers use on a grid node: reads come from the local copy (sessions run on the
// user's primary, forwarded there by the edge node), and every write goes through the grid — this node must
// lead the user, the change is made locally and then shipped to every alive replica before the call
// resolves, so an acknowledgement means durable on all of them.

import type { MailStore, OpOptions } from '../../store/index.ts'
import type { Grid } from './grid.ts'

import { MailError } from '../../store/index.ts'

type WriteMethod = 'createMailbox' | 'deleteMailbox' | 'renameMailbox' | 'setSubscribed' | 'append' | 'storeFlags' | 'expunge' | 'copy' | 'move'
const WRITES: WriteMethod[] = ['createMailbox', 'deleteMailbox', 'renameMailbox', 'setSubscribed', 'append', 'storeFlags', 'expunge', 'copy', 'move']
// New messages (APPEND, COPY) are accepted like deliveries on both sides of a partition; these change what
// exists, and need the majority side (Grid.hasQuorum)
const MAILBOX_CHANGES = new Set<WriteMethod>(['createMailbox', 'deleteMailbox', 'renameMailbox', 'setSubscribed', 'storeFlags', 'expunge', 'move'])

export function replicatedMailStore (grid: Grid, local: MailStore): MailStore {
  const wrapped: Record<string, unknown> = {}
  for (const m of WRITES) {
    const fn = (local[m] as (...args: unknown[]) => Promise<unknown>).bind(local)
    wrapped[m] = async (user: string, ...rest: unknown[]) => {
      const opts = rest.at(-1) as OpOptions | undefined
      if (MAILBOX_CHANGES.has(m) && !grid.hasQuorum()) {
        throw new MailError('unavailable', 'Mailbox changes are paused: this node is cut off from most of the grid; new mail is still accepted')
      }
      await grid.lead(user, opts)
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
    // the fast read paths (flag index, header copies) are the local copy's, like every read here
    ...(local.listFlags !== undefined ? { listFlags: local.listFlags.bind(local) } : {}),
    ...(local.readHeader !== undefined ? { readHeader: local.readHeader.bind(local) } : {}),
    quota: async (user: string) => await grid.quota(user),
    deliver: async (raw, targets, opts) => await grid.deliver(raw, targets, opts),
    ...wrapped
  } as MailStore
}

// QUIT (RFC 1939 sections 4 and 6). From TRANSACTION it enters UPDATE: the messages marked deleted are expunged
// in one store batch, and only those that still exist as the same message (IMAP may have expunged some, and
// the snapshot's UIDs are checked against their global ids). A connection dropped without QUIT deletes nothing.

import { err, ok } from '../codec.ts'
import { bad, command, reply } from '../context.ts'
import { pop3Error } from '../../errors.ts'

export default command({
  name: 'QUIT',
  states: ['authorization', 'transaction'],
  async run (ctx, state, cmd) {
    if (cmd.args.length !== 0) return await bad(ctx, 'Syntax: QUIT')
    if (state.kind === 'authorization') {
      ctx.log.info({ event: 'pop3_quit', user: null }, 'pop3_quit')
      await reply(ctx, ok('Bye'))
      ctx.conn.end()
      return
    }
    const { user, drop } = state
    ctx.state = { kind: 'update', user }
    const marked = drop.deleted()
    let expunged = 0
    try {
      if (marked.length > 0) {
        const uids = marked.map(r => r.uid)
        const current = await ctx.store.listMessages(user, drop.mailboxId, { from: Math.min(...uids), to: Math.max(...uids) })
        const gidOf = new Map(current.map(r => [r.uid, r.gid]))
        const still = marked.filter(r => gidOf.get(r.uid) === r.gid).map(r => r.uid)
        if (still.length > 0) expunged = (await ctx.store.expunge(user, drop.mailboxId, still)).uids.length
      }
    } catch (e) {
      const w = pop3Error(e)
      ctx.log.error({ event: 'pop3_quit_failed', user, logId: w.logId, err: e }, 'pop3_quit_failed')
      // RFC 1939 section 6: -ERR when some deleted messages could not be removed
      await reply(ctx, err('Some deleted messages not removed', 'SYS/TEMP'))
      ctx.conn.end()
      return
    }
    ctx.log.info({ event: 'pop3_quit', user, marked: marked.length, expunged }, 'pop3_quit')
    await reply(ctx, ok(`Bye, ${expunged} messages deleted`))
    ctx.conn.end()
  }
})

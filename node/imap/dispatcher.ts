/**
 * The one place where a parsed command meets its module: look-up (with the UID prefix),
 * state check, arity check, the bad-command budget, error mapping, then the untagged updates
 * RFC 3501 section 7.4.1 allows and finally the tagged reply. Command modules never write
 * tagged responses themselves.
 */
import type { ParsedCommand } from './protocol/types.ts'
import type { CommandModule, Invocation, Reply, StateName } from './command.ts'
import { replyForError } from './errors.ts'
import { COMMANDS } from './commands/index.ts'
import type { Session } from './session.ts'
import { MOVED_TEXT } from './constants.ts'

// Commands that wait for the client (IDLE until DONE, AUTHENTICATE for its response) say nothing of our latency.
const UNTIMED = new Set(['IDLE', 'AUTHENTICATE'])

export async function dispatch (session: Session, command: ParsedCommand): Promise<void> {
  const metrics = session.components.metrics
  if (metrics === undefined) return await run(session, command)
  metrics.inc('commands', 'imap')
  if (UNTIMED.has(command.name)) return await run(session, command)
  const started = performance.now()
  try {
    await run(session, command)
  } finally {
    metrics.observe('commandSeconds', 'imap', (performance.now() - started) / 1000)
  }
}

async function run (session: Session, command: ParsedCommand): Promise<void> {
  const { tag } = command
  if (session.movedAway()) {
    await session.bye(MOVED_TEXT, { name: 'UNAVAILABLE' })
    return
  }
  let name = command.name
  let args = command.args
  let uid = false
  if (name === 'UID') {
    const sub = args[0]
    if (sub?.type !== 'atom') return bad(session, tag, 'UID needs a command')
    name = sub.value.toUpperCase()
    args = args.slice(1)
    uid = true
  }
  const module: CommandModule | undefined = COMMANDS.get(name)
  if (module === undefined || (uid && module.uid !== true)) {
    return bad(session, tag, `Unknown command ${uid ? 'UID ' : ''}${name.slice(0, 32)}`)
  }
  const state = session.state.kind
  if (state === 'logout' || !module.states.includes(state as StateName)) {
    return bad(session, tag, `${name} not allowed now`)
  }
  if (args.length < module.args.min || args.length > module.args.max) {
    return bad(session, tag, `Syntax: ${module.syntax}`)
  }
  const invocation: Invocation = { tag, name, args, uid }
  let reply: Reply
  try {
    // FETCH, STORE and SEARCH see the mailbox as it is now: new messages are announced (EXISTS) and flag
    // changes reported first, as Dovecot does; expunges still wait (RFC 3501 section 7.4.1).
    if (!module.expungeAllowed) {
      await session.flushUpdates(false)
      if (session.loggedOut) return
    }
    reply = await module.run(session, invocation) ?? {}
  } catch (err) {
    const mapped = replyForError(err)
    if (mapped.logId !== null) {
      session.log.error({ err, event: 'imap_internal_error', logId: mapped.logId, command: name }, 'command failed')
    }
    reply = { status: mapped.status, ...(mapped.code === undefined ? {} : { code: { name: mapped.code } }), text: mapped.text }
  }
  if (reply.done === true) return
  if (session.loggedOut && reply.status === undefined) {
    // LOGOUT: BYE went out already; the tagged OK follows and the connection closes.
    await session.sendStatus(tag, 'OK', `${name} completed`)
    await session.connection.end()
    return
  }
  if (reply.status === 'BAD') {
    session.components.metrics?.inc('errors', 'imap')
    await session.sendStatus(tag, 'BAD', reply.text ?? 'Invalid arguments', reply.code)
    session.countBad()
    return
  }
  if (reply.status === 'NO') session.components.metrics?.inc('errors', 'imap')
  // RFC 3501 section 7.4.1: updates go before the tagged reply; UID forms may carry EXPUNGE.
  await session.flushUpdates(module.expungeAllowed || uid)
  if (session.loggedOut) return
  await session.flushNotifications()
  await session.sendStatus(tag, reply.status ?? 'OK', reply.text ?? `${uid ? 'UID ' : ''}${name} completed`, reply.code)
  if (session.state.kind === 'selected') session.state.mailbox.replied()
}

async function bad (session: Session, tag: string, text: string): Promise<void> {
  session.components.metrics?.inc('errors', 'imap')
  await session.sendStatus(tag, 'BAD', text)
  session.countBad()
}

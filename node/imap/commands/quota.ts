/** QUOTA (RFC 9208): one quota root "" per user, STORAGE in KiB and MESSAGE counts. */
import { atom, list, num, str } from '../protocol/compiler.ts'
import type { Value } from '../protocol/compiler.ts'
import { astring, mailboxName } from '../args.ts'
import { CommandRefused } from '../errors.ts'
import type { CommandModule } from '../command.ts'
import type { Session } from '../session.ts'
import { wireName } from '../mailboxes.ts'

async function quotaResponse (session: Session): Promise<Value[]> {
  const usage = await session.components.store.quota(session.user!)
  const resources: Value[] = []
  // A zero limit means unlimited: the resource is then not reported (RFC 9208 section 5.1).
  if (usage.limitBytes > 0) resources.push(atom('STORAGE'), num(Math.ceil(usage.usedBytes / 1024)), num(Math.floor(usage.limitBytes / 1024)))
  if (usage.limitMessages > 0) resources.push(atom('MESSAGE'), num(usage.usedMessages), num(usage.limitMessages))
  return [atom('QUOTA'), str(''), list(resources)]
}

export const getquotaroot: CommandModule = {
  name: 'GETQUOTAROOT',
  syntax: 'GETQUOTAROOT mailbox',
  states: ['authenticated', 'selected'],
  args: { min: 1, max: 1 },
  expungeAllowed: true,
  async run (session, { args }) {
    const name = mailboxName(args[0], session.utf8)
    const mailbox = await session.components.store.getMailbox(session.user!, name)
    if (mailbox === null) throw new CommandRefused('No such mailbox', 'NONEXISTENT')
    await session.send([atom('QUOTAROOT'), wireName(session, name), str('')])
    await session.send(await quotaResponse(session))
    return undefined
  },
}

export const getquota: CommandModule = {
  name: 'GETQUOTA',
  syntax: 'GETQUOTA root',
  states: ['authenticated', 'selected'],
  args: { min: 1, max: 1 },
  expungeAllowed: true,
  async run (session, { args }) {
    if (astring(args[0], 'quota root') !== '') throw new CommandRefused('No such quota root', 'NONEXISTENT')
    await session.send(await quotaResponse(session))
    return undefined
  },
}

export const setquota: CommandModule = {
  name: 'SETQUOTA',
  syntax: 'SETQUOTA root (resource limit ...)',
  states: ['authenticated', 'selected'],
  args: { min: 2, max: 2 },
  expungeAllowed: true,
  async run () {
    // Quotas are set by the administrator in the directory, not by the user.
    throw new CommandRefused('Quotas are set by the administrator', 'NOPERM')
  },
}

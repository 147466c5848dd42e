/** ENABLE (RFC 5161), ID (RFC 2971), NAMESPACE (RFC 2342). */
import { atom, list, str } from '../protocol/compiler.ts'
import type { Value } from '../protocol/compiler.ts'
import { astring, isNil, keyword, listOf } from '../args.ts'
import { ArgumentError } from '../errors.ts'
import { DELIMITER } from '../constants.ts'
import type { CommandModule } from '../command.ts'

/** What ENABLE can turn on. RFC 7162 section 3.2.3: QRESYNC implies CONDSTORE. */
const ENABLEABLE = new Set(['CONDSTORE', 'QRESYNC', 'UTF8=ACCEPT', 'IMAP4REV2'])

export const enable: CommandModule = {
  name: 'ENABLE',
  syntax: 'ENABLE capability...',
  states: ['authenticated'],
  args: { min: 1, max: 16 },
  expungeAllowed: true,
  async run (session, { args }) {
    const turned: string[] = []
    for (const arg of args) {
      const name = keyword(arg, 'capability')
      if (!ENABLEABLE.has(name) || session.enabled.has(name)) continue
      session.enabled.add(name)
      turned.push(name === 'IMAP4REV2' ? 'IMAP4rev2' : name)
      if (name === 'QRESYNC' && !session.enabled.has('CONDSTORE')) session.enabled.add('CONDSTORE')
    }
    await session.send([atom('ENABLED'), ...turned.map(atom)])
    return undefined
  },
}

/** Fields and lengths RFC 2971 section 3.3 allows a client to send. */
const ID_FIELDS_MAX = 30

export const id: CommandModule = {
  name: 'ID',
  syntax: 'ID ( field value ... ) | NIL',
  states: ['notAuthenticated', 'authenticated', 'selected'],
  args: { min: 1, max: 1 },
  expungeAllowed: true,
  async run (session, { args }) {
    if (!isNil(args[0])) {
      const items = listOf(args[0], 'ID list').items
      if (items.length % 2 !== 0 || items.length > ID_FIELDS_MAX * 2) throw new ArgumentError('Invalid ID list')
      const fields: Record<string, string | null> = {}
      for (let i = 0; i < items.length; i += 2) {
        fields[astring(items[i], 'field').slice(0, 30)] = isNil(items[i + 1]) ? null : astring(items[i + 1], 'value').slice(0, 1024)
      }
      session.log.info({ event: 'imap_client_id', client: fields }, 'client id')
    }
    const values: Value[] = [str('name'), str('mailgrid'), str('vendor'), str('mailgrid')]
    await session.send([atom('ID'), list(values)])
    return undefined
  },
}

export const namespace: CommandModule = {
  name: 'NAMESPACE',
  syntax: 'NAMESPACE',
  states: ['authenticated', 'selected'],
  args: { min: 0, max: 0 },
  expungeAllowed: true,
  async run (session) {
    // One personal namespace with no prefix; no shared or other users' namespaces.
    await session.send([atom('NAMESPACE'), list([list([str(''), str(DELIMITER)])]), null, null])
    return undefined
  },
}

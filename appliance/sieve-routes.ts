// Admin API of users' mail rules (node/managesieve): their Sieve scripts, and a vacation message and a forward
// address that the API writes as a generated script ("mailgrid") and activates. Every call runs at the user's
// primary (node/managesieve/service.ts), so an answer means durable on every alive replica.
//
//   GET    /v1/users/ADDRESS/sieve                    {scripts: [{name, active}]}
//   GET    /v1/users/ADDRESS/sieve/NAME               {name, active, source}
//   PUT    /v1/users/ADDRESS/sieve/NAME {source, activate?}   compiled first: 400 "line N: ..." when invalid
//   DELETE /v1/users/ADDRESS/sieve/NAME               (not the active one)
//   PUT    /v1/users/ADDRESS/sieve-active {name}      activates NAME; '' deactivates
//   GET    /v1/users/ADDRESS/rules                    {vacation, forward, active, source}: what the generated script says
//   PUT    /v1/users/ADDRESS/vacation {subject, message, days?}    DELETE clears it
//   PUT    /v1/users/ADDRESS/forward {address, keepCopy?}          DELETE clears it

import { normalizeAddress } from '../store/index.ts'
import type { Directory } from '../store/index.ts'
import { ScriptError } from '../node/managesieve/index.ts'
import type { SieveService } from '../node/managesieve/service.ts'
import { HttpError, str } from './admin.ts'
import type { Body, Route } from './admin.ts'

export const GENERATED_SCRIPT = 'mailgrid'
export const VACATION_MESSAGE_BYTES_MAX = 16 * 1024
export const VACATION_SUBJECT_CHARS_MAX = 200
export const VACATION_DAYS_DEFAULT = 7 // RFC 5230 4.1 suggests 7
export const VACATION_DAYS_MAX = 365
const SETTINGS_MARK = '# mailgrid-settings: '

export interface RulesSettings {
  vacation: { subject: string, message: string, days: number } | null
  forward: { address: string, keepCopy: boolean } | null
}

/** A Sieve quoted string (RFC 5228 2.4.2: backslash escapes the quote and itself; line breaks are allowed). */
function quoted (s: string): string {
  return '"' + s.replace(/\\/g, '\\\\').replace(/"/g, '\\"') + '"'
}

/** The generated script; its settings ride along in a comment so they can be read back. */
export function generateScript (s: RulesSettings): string {
  const lines = [
    '# Written by mailgrid (admin API: vacation and forward); replaced whenever those change.',
    SETTINGS_MARK + JSON.stringify(s).replace(/[\r\n]/g, ' ')
  ]
  const req = [...(s.vacation !== null ? ['vacation'] : []), ...(s.forward?.keepCopy === true ? ['copy'] : [])]
  if (req.length > 0) lines.push(`require [${req.map(quoted).join(', ')}];`)
  if (s.vacation !== null) {
    lines.push(`vacation :days ${s.vacation.days} :subject ${quoted(s.vacation.subject)} ${quoted(s.vacation.message.replace(/\r?\n/g, '\r\n'))};`)
  }
  if (s.forward !== null) lines.push(`redirect ${s.forward.keepCopy ? ':copy ' : ''}${quoted(s.forward.address)};`)
  return lines.join('\r\n') + '\r\n'
}

export function readSettings (source: string | null): RulesSettings {
  const line = source?.split(/\r?\n/).find(l => l.startsWith(SETTINGS_MARK))
  if (line === undefined) return { vacation: null, forward: null }
  try {
    const v = JSON.parse(line.slice(SETTINGS_MARK.length)) as RulesSettings
    return { vacation: v.vacation ?? null, forward: v.forward ?? null }
  } catch {
    return { vacation: null, forward: null }
  }
}

function vacationOf (b: Body): NonNullable<RulesSettings['vacation']> {
  const subject = str(b, 'subject')
  const message = str(b, 'message')
  if (subject === '' || [...subject].length > VACATION_SUBJECT_CHARS_MAX || /[\r\n\x00]/.test(subject)) throw new HttpError(400, `subject: 1-${VACATION_SUBJECT_CHARS_MAX} characters, one line`)
  if (message === '' || Buffer.byteLength(message) > VACATION_MESSAGE_BYTES_MAX || message.includes('\x00')) throw new HttpError(400, `message: 1-${VACATION_MESSAGE_BYTES_MAX} bytes`)
  const days = b.days ?? VACATION_DAYS_DEFAULT
  if (!Number.isInteger(days) || (days as number) < 1 || (days as number) > VACATION_DAYS_MAX) throw new HttpError(400, `days: 1-${VACATION_DAYS_MAX}`)
  return { subject, message, days: days as number }
}

export function sieveRoutes (c: { directory: Directory, sieve: SieveService }): Route[] {
  const userOf = async (address: string): Promise<string> => {
    const a = normalizeAddress(address)
    if (a === null || await c.directory.getUser(a) === null) throw new HttpError(404, `No such user: ${address}`)
    return a
  }
  const mapped = async <T>(f: () => Promise<T>): Promise<T> => {
    try {
      return await f()
    } catch (err) {
      if (err instanceof ScriptError) throw new HttpError(err.kind === 'nonExistent' ? 404 : err.kind === 'alreadyExists' || err.kind === 'active' ? 409 : 400, err.message)
      throw err
    }
  }
  const settingsOf = async (user: string): Promise<RulesSettings> => {
    const list = await c.sieve.list(user)
    return list.some(s => s.name === GENERATED_SCRIPT) ? readSettings(await c.sieve.get(user, GENERATED_SCRIPT)) : { vacation: null, forward: null }
  }
  /** Writes the generated script from `next` and activates it; with nothing left in it, deactivates and removes it. */
  const apply = async (user: string, next: RulesSettings): Promise<Record<string, unknown>> => {
    if (next.vacation === null && next.forward === null) {
      const list = await c.sieve.list(user)
      const gen = list.find(s => s.name === GENERATED_SCRIPT)
      if (gen?.active === true) await c.sieve.setActive(user, '')
      if (gen !== undefined) await c.sieve.delete(user, GENERATED_SCRIPT)
      return { ...next, active: list.find(s => s.active && s.name !== GENERATED_SCRIPT)?.name ?? null, source: null }
    }
    const source = generateScript(next)
    await c.sieve.put(user, GENERATED_SCRIPT, source, true)
    return { ...next, active: GENERATED_SCRIPT, source }
  }
  const user = /^\/v1\/users\/([^/]+)/.source
  return [
    {
      method: 'GET',
      pattern: new RegExp(`${user}/sieve$`),
      handler: async r => ({ json: { scripts: await c.sieve.list(await userOf(r.params[0])) } })
    },
    {
      method: 'GET',
      pattern: new RegExp(`${user}/sieve/([^/]+)$`),
      handler: async r => {
        const u = await userOf(r.params[0])
        const name = r.params[1]
        const source = await mapped(async () => await c.sieve.get(u, name))
        const active = (await c.sieve.list(u)).some(s => s.name === name && s.active)
        return { json: { name, active, source } }
      }
    },
    {
      method: 'PUT',
      pattern: new RegExp(`${user}/sieve/([^/]+)$`),
      handler: async r => {
        const u = await userOf(r.params[0])
        const b = await r.body()
        const name = r.params[1]
        await mapped(async () => { await c.sieve.put(u, name, str(b, 'source'), b.activate === true) })
        return { json: { name, active: b.activate === true ? true : (await c.sieve.list(u)).some(s => s.name === name && s.active) } }
      }
    },
    {
      method: 'DELETE',
      pattern: new RegExp(`${user}/sieve/([^/]+)$`),
      handler: async r => {
        const u = await userOf(r.params[0])
        await mapped(async () => { await c.sieve.delete(u, r.params[1]) })
        return { json: { deleted: true } }
      }
    },
    {
      method: 'PUT',
      pattern: new RegExp(`${user}/sieve-active$`),
      handler: async r => {
        const u = await userOf(r.params[0])
        const name = str(await r.body(), 'name')
        await mapped(async () => { await c.sieve.setActive(u, name) })
        return { json: { active: name === '' ? null : name } }
      }
    },
    {
      method: 'GET',
      pattern: new RegExp(`${user}/rules$`),
      handler: async r => {
        const u = await userOf(r.params[0])
        const active = (await c.sieve.list(u)).find(s => s.active)?.name ?? null
        const settings = await settingsOf(u)
        const source = active === GENERATED_SCRIPT ? await c.sieve.get(u, GENERATED_SCRIPT) : null
        return { json: { ...settings, active, source } }
      }
    },
    {
      method: 'PUT',
      pattern: new RegExp(`${user}/vacation$`),
      handler: async r => {
        const u = await userOf(r.params[0])
        const vacation = vacationOf(await r.body())
        return { json: await mapped(async () => await apply(u, { ...await settingsOf(u), vacation })) }
      }
    },
    {
      method: 'DELETE',
      pattern: new RegExp(`${user}/vacation$`),
      handler: async r => {
        const u = await userOf(r.params[0])
        return { json: await mapped(async () => await apply(u, { ...await settingsOf(u), vacation: null })) }
      }
    },
    {
      method: 'PUT',
      pattern: new RegExp(`${user}/forward$`),
      handler: async r => {
        const u = await userOf(r.params[0])
        const b = await r.body()
        const address = normalizeAddress(str(b, 'address'))
        if (address === null) throw new HttpError(400, 'address: not a mail address')
        if (address.toLowerCase() === u.toLowerCase()) throw new HttpError(400, 'address: a user cannot forward to itself')
        return { json: await mapped(async () => await apply(u, { ...await settingsOf(u), forward: { address, keepCopy: b.keepCopy === true } })) }
      }
    },
    {
      method: 'DELETE',
      pattern: new RegExp(`${user}/forward$`),
      handler: async r => {
        const u = await userOf(r.params[0])
        return { json: await mapped(async () => await apply(u, { ...await settingsOf(u), forward: null })) }
      }
    }
  ]
}

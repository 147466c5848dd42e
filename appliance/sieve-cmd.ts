// `mailgrid sieve ...`: users' Sieve scripts, vacation message and forward address over the admin API
// (appliance/sieve-routes.ts).

import { readFile } from 'node:fs/promises'
import type { AdminClient } from './client.ts'

export class SieveUsageError extends Error {}

export interface SieveCtx {
  values: Record<string, string | boolean | undefined>
  args: string[]
  api: () => Promise<AdminClient>
  stdout: { write (s: string): unknown }
}

export const SIEVE_USAGE = `  sieve list ADDRESS                      the user's Sieve scripts, the active one marked
  sieve get ADDRESS NAME                  print a script
  sieve put ADDRESS NAME --file F [--activate]
                                          store a script (compiled first: errors name their line)
  sieve del ADDRESS NAME                  delete a script (not the active one)
  sieve activate ADDRESS NAME|--off       make NAME the active script, or none
  sieve vacation ADDRESS --subject S --message M [--days N] | --off
                                          an automatic reply, once per sender every N days (default 7)
  sieve forward ADDRESS TARGET [--keep-copy] | --off
                                          redirect the user's mail to TARGET (SRS), keeping a copy or not
  sieve show ADDRESS                      vacation and forward as set, and the generated script
`

const COMMON = ['data', 'config', 'json', 'help', 'url', 'token', 'fingerprint', 'profile']

function only (values: SieveCtx['values'], allowed: string[], command: string): void {
  for (const k of Object.keys(values)) if (values[k] !== undefined && !COMMON.includes(k) && !allowed.includes(k)) throw new SieveUsageError(`--${k} does not apply to ${command}`)
}

export async function sieveCommand (ctx: SieveCtx): Promise<void> {
  const [sub, address, name, ...extra] = ctx.args
  const v = ctx.values
  if (address === undefined) throw new SieveUsageError('sieve needs a subcommand (list, get, put, del, activate, vacation, forward, show) and an ADDRESS')
  if (extra.length > 0) throw new SieveUsageError(`unexpected argument: ${extra[0]}`)
  const base = `/v1/users/${encodeURIComponent(address)}`
  const api = async (): Promise<AdminClient> => await ctx.api()
  const print = (json: unknown, text: string): void => { ctx.stdout.write(v.json === true ? JSON.stringify(json, null, 2) + '\n' : text) }
  const needName = (): string => {
    if (name === undefined) throw new SieveUsageError(`sieve ${sub} needs a script NAME`)
    return name
  }
  switch (sub) {
    case 'list': {
      only(v, [], 'sieve list')
      const { scripts } = await (await api()).request('GET', `${base}/sieve`) as { scripts: Array<{ name: string, active: boolean }> }
      return print(scripts, scripts.length === 0 ? 'no scripts\n' : scripts.map(s => `${s.name}${s.active ? '  (active)' : ''}\n`).join(''))
    }
    case 'get': {
      only(v, [], 'sieve get')
      const r = await (await api()).request('GET', `${base}/sieve/${encodeURIComponent(needName())}`) as { source: string }
      return print(r, r.source)
    }
    case 'put': {
      only(v, ['file', 'activate'], 'sieve put')
      if (typeof v.file !== 'string') throw new SieveUsageError('sieve put needs --file F')
      const source = await readFile(v.file, 'utf8')
      const r = await (await api()).request('PUT', `${base}/sieve/${encodeURIComponent(needName())}`, { source, activate: v.activate === true })
      return print(r, `stored ${needName()}${v.activate === true ? ' (active)' : ''}\n`)
    }
    case 'del': {
      only(v, [], 'sieve del')
      const r = await (await api()).request('DELETE', `${base}/sieve/${encodeURIComponent(needName())}`)
      return print(r, `deleted ${needName()}\n`)
    }
    case 'activate': {
      only(v, ['off'], 'sieve activate')
      if ((v.off === true) === (name !== undefined)) throw new SieveUsageError('sieve activate takes a NAME or --off')
      const r = await (await api()).request('PUT', `${base}/sieve-active`, { name: name ?? '' })
      return print(r, name === undefined ? 'no active script\n' : `${name} is active\n`)
    }
    case 'vacation': {
      only(v, ['subject', 'message', 'days', 'off'], 'sieve vacation')
      if (name !== undefined) throw new SieveUsageError('sieve vacation takes one ADDRESS')
      if (v.off === true) return print(await (await api()).request('DELETE', `${base}/vacation`), 'vacation off\n')
      if (typeof v.subject !== 'string' || typeof v.message !== 'string') throw new SieveUsageError('sieve vacation needs --subject and --message (or --off)')
      if (v.days !== undefined && !/^\d+$/.test(String(v.days))) throw new SieveUsageError('--days: a whole number')
      const r = await (await api()).request('PUT', `${base}/vacation`, { subject: v.subject, message: v.message, ...(v.days !== undefined ? { days: Number(v.days) } : {}) })
      return print(r, 'vacation on\n')
    }
    case 'forward': {
      only(v, ['keep-copy', 'off'], 'sieve forward')
      if (v.off === true) return print(await (await api()).request('DELETE', `${base}/forward`), 'forward off\n')
      if (name === undefined) throw new SieveUsageError('sieve forward needs a TARGET address (or --off)')
      const r = await (await api()).request('PUT', `${base}/forward`, { address: name, keepCopy: v['keep-copy'] === true })
      return print(r, `forwarding to ${name}${v['keep-copy'] === true ? ', keeping a copy' : ''}\n`)
    }
    case 'show': {
      only(v, [], 'sieve show')
      const r = await (await api()).request('GET', `${base}/rules`) as { vacation: { subject: string, days: number } | null, forward: { address: string, keepCopy: boolean } | null, active: string | null, source: string | null }
      return print(r, [
        `vacation: ${r.vacation === null ? 'off' : `"${r.vacation.subject}", every ${r.vacation.days} days`}`,
        `forward: ${r.forward === null ? 'off' : `${r.forward.address}${r.forward.keepCopy ? ' (keeping a copy)' : ''}`}`,
        `active script: ${r.active ?? 'none'}`,
        ...(r.source !== null ? ['', r.source] : [])
      ].join('\n') + '\n')
    }
    default: throw new SieveUsageError(`unknown sieve subcommand: ${sub}`)
  }
}

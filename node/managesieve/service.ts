// A user's Sieve scripts for callers that are not a ManageSieve session (the admin API, the CLI through it): the
// operations of SieveScripts, run at the user's primary, on this node when it is the primary (or standalone), else
// over one RPC to it. Writes there go through the replicated store (lead, write, replicate), so an answer means
// durable on every alive replica, as a ManageSieve session forwarded to the primary gets.

import type { Logger } from 'pino'
import type { Gossip } from '../../gossip/types.ts'
import { isMailError, MailError } from '../../store/index.ts'
import type { MailErrorKind, MailStore } from '../../store/index.ts'
import type { Grid } from '../grid/index.ts'
import { ScriptError, SieveScripts } from './scripts.ts'
import type { ScriptErrorKind, ScriptInfo } from './scripts.ts'

export const SIEVE_SCRIPTS_PROTOCOL = '/mailgrid/sieve-scripts/1.0.0'
export const SIEVE_RPC_TIMEOUT_MS = 30_000 // a write: catch-up of a new primary, fsync, replication

export interface SieveServiceComponents {
  mail: Pick<MailStore, 'getAttr' | 'listAttrs' | 'setAttrs'>
  grid: Pick<Grid, 'primaryOf' | 'lead'> | null
  gossip: Pick<Gossip, 'self' | 'call' | 'handle'> | null
  logger: Logger
}

type Op = 'list' | 'get' | 'put' | 'setActive' | 'delete' | 'rename' | 'active'
const OPS = new Set<Op>(['list', 'get', 'put', 'setActive', 'delete', 'rename', 'active'])
const SCRIPT_KINDS = new Set<ScriptErrorKind>(['nonExistent', 'alreadyExists', 'active', 'maxScripts', 'maxSize', 'badName', 'invalid'])
const MAIL_KINDS = new Set<MailErrorKind>(['temp', 'unavailable', 'notFound', 'exists', 'noQuota', 'tooBig', 'limit', 'invalid', 'denied', 'authFailed', 'expungeIssued', 'nonExistent', 'hasChildren'])

export class SieveService {
  private readonly scripts: SieveScripts
  private readonly c: SieveServiceComponents

  constructor (components: SieveServiceComponents) {
    this.c = components
    this.scripts = new SieveScripts(components.mail)
  }

  /** Serves the operations other nodes send this one as the primary. */
  handle (): void {
    this.c.gossip?.handle(SIEVE_SCRIPTS_PROTOCOL, async req => {
      try {
        const op = req.header.op as Op
        const user = req.header.user
        if (!OPS.has(op) || typeof user !== 'string' || user === '') throw new MailError('invalid', 'bad sieve-scripts request')
        const args = Array.isArray(req.header.args) ? req.header.args : []
        return { header: { result: await this.local(op, user, args) } }
      } catch (err) {
        if (err instanceof ScriptError) return { header: { error: { script: err.kind, message: err.message } } }
        if (isMailError(err)) return { header: { error: { kind: err.kind, message: err.message } } }
        this.c.logger.error({ err }, 'sieve_scripts_rpc_failed')
        return { header: { error: { kind: 'temp', message: 'Internal error on the owning node' } } }
      }
    })
  }

  async list (user: string): Promise<ScriptInfo[]> { return await this.run('list', user, []) as ScriptInfo[] }
  async get (user: string, name: string): Promise<string> { return await this.run('get', user, [name]) as string }
  async active (user: string): Promise<{ name: string, source: string } | null> { return await this.run('active', user, []) as { name: string, source: string } | null }
  async put (user: string, name: string, source: string, activate = false): Promise<void> { await this.run('put', user, [name, source, activate]) }
  async setActive (user: string, name: string): Promise<void> { await this.run('setActive', user, [name]) }
  async delete (user: string, name: string): Promise<void> { await this.run('delete', user, [name]) }
  async rename (user: string, from: string, to: string): Promise<void> { await this.run('rename', user, [from, to]) }

  private async run (op: Op, user: string, args: unknown[]): Promise<unknown> {
    const { grid, gossip } = this.c
    if (grid === null || gossip === null) return await this.local(op, user, args)
    const primary = grid.primaryOf(user)
    if (primary === null) throw new MailError('unavailable', 'No node owns this user right now')
    if (primary === gossip.self) return await this.local(op, user, args)
    let res
    try {
      res = await gossip.call(primary, SIEVE_SCRIPTS_PROTOCOL, { header: { op, user, args } }, { timeoutMs: SIEVE_RPC_TIMEOUT_MS })
    } catch (err) {
      throw new MailError('unavailable', `The node owning this user is unreachable: ${String(err)}`)
    }
    const e = res.header.error as { script?: string, kind?: string, message?: string } | undefined
    if (e !== undefined) {
      if (SCRIPT_KINDS.has(e.script as ScriptErrorKind)) throw new ScriptError(e.script as ScriptErrorKind, String(e.message))
      throw new MailError(MAIL_KINDS.has(e.kind as MailErrorKind) ? e.kind as MailErrorKind : 'temp', String(e.message ?? 'Error on the owning node'))
    }
    return res.header.result ?? null
  }

  private async local (op: Op, user: string, args: unknown[]): Promise<unknown> {
    // reads come from this copy: caught up first when this node leads the user
    await this.c.grid?.lead(user)
    const s = (i: number): string => {
      if (typeof args[i] !== 'string') throw new MailError('invalid', 'bad sieve-scripts argument')
      return args[i] as string
    }
    switch (op) {
      case 'list': return await this.scripts.list(user)
      case 'get': return await this.scripts.get(user, s(0))
      case 'active': return await this.scripts.active(user)
      case 'put': return await this.scripts.put(user, s(0), s(1), { activate: args[2] === true })
      case 'setActive': return await this.scripts.setActive(user, s(0))
      case 'delete': return await this.scripts.delete(user, s(0))
      case 'rename': return await this.scripts.rename(user, s(0), s(1))
    }
  }
}

/** The shape of a command module (one file per command in commands/), as WildDuck's imap-core has it. */
import type { Value } from './protocol/compiler.ts'
import type { Token } from './protocol/types.ts'
import type { Session } from './session.ts'

export type StateName = 'notAuthenticated' | 'authenticated' | 'selected'

export interface Invocation {
  tag: string
  /** The command name as the module knows it (`FETCH` for `UID FETCH` too). */
  name: string
  args: Token[]
  /** Called as `UID <name>`. */
  uid: boolean
}

export interface Reply {
  status?: 'OK' | 'NO' | 'BAD'
  code?: { name: string, args?: Value[] }
  text?: string
  /** The module already sent its tagged reply (STARTTLS and COMPRESS must, before switching). */
  done?: boolean
}

export interface CommandModule {
  name: string
  /** The syntax line, for readers and for the BAD text on an arity error. */
  syntax: string
  states: readonly StateName[]
  /** Argument count bounds (after the UID prefix is removed). */
  args: { min: number, max: number }
  /** Whether `UID <name>` exists. */
  uid?: boolean
  /**
   * RFC 3501 section 7.4.1: may EXPUNGE responses be sent when this command completes? False
   * for FETCH, STORE and SEARCH (their UID forms allow it), because the client may be relying on
   * the sequence numbers it just used.
   */
  expungeAllowed: boolean
  run: (session: Session, invocation: Invocation) => Promise<Reply | undefined>
}

// The command table: every POP3 command this server knows, by keyword. APOP is not offered.

import type { CommandSpec } from '../context.ts'
import auth from './auth.ts'
import capa from './capa.ts'
import dele from './dele.ts'
import list from './list.ts'
import noop from './noop.ts'
import pass from './pass.ts'
import quit from './quit.ts'
import retr from './retr.ts'
import rset from './rset.ts'
import stat from './stat.ts'
import stls from './stls.ts'
import top from './top.ts'
import uidl from './uidl.ts'
import user from './user.ts'

export const COMMANDS: ReadonlyMap<string, CommandSpec> = new Map(
  [auth, capa, dele, list, noop, pass, quit, retr, rset, stat, stls, top, uidl, user].map(c => [c.name, c])
)

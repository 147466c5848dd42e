/** The command table: one module per command, looked up by name by the dispatcher. */
import type { CommandModule } from '../command.ts'
import { append, replace } from './append.ts'
import { cancelupdate } from './cancelupdate.ts'
import { capability } from './capability.ts'
import { compress } from './compress.ts'
import { copy, move } from './copy.ts'
import { enable, id, namespace } from './enable.ts'
import { close, expunge, unselect } from './expunge.ts'
import { fetch } from './fetch.ts'
import { genurlauth, resetkey, urlfetch } from './genurlauth.ts'
import { idle } from './idle.ts'
import { list, lsub } from './list.ts'
import { authenticateCommand, login } from './login.ts'
import { logout } from './logout.ts'
import { create, deleteCommand, rename, subscribe, unsubscribe } from './mailbox.ts'
import { getmetadata, setmetadata } from './metadata.ts'
import { check, noop } from './noop.ts'
import { notify } from './notify.ts'
import { getquota, getquotaroot, setquota } from './quota.ts'
import { search } from './search.ts'
import { sort } from './sort.ts'
import { examine, select } from './select.ts'
import { starttls } from './starttls.ts'
import { status } from './status.ts'
import { store } from './store.ts'
import { thread } from './thread.ts'

const ALL: CommandModule[] = [
  capability, noop, logout, starttls, login, authenticateCommand, enable, id, namespace, compress,
  select, examine, create, deleteCommand, rename, subscribe, unsubscribe, list, lsub, status, append,
  check, close, unselect, expunge, search, fetch, store, copy, move, idle, getquota, getquotaroot, setquota,
  sort, thread, replace, genurlauth, resetkey, urlfetch, cancelupdate, notify, getmetadata, setmetadata,
]

export const COMMANDS: ReadonlyMap<string, CommandModule> = new Map(ALL.map((c) => [c.name, c]))

// Collection of mail from a user's accounts elsewhere (issue 15, item 5). Each account is a replicated directory
// entry `collect/USER/ID` (written by the admin API on any node); what was fetched so far is a second entry
// `collect-state/USER/ID` written only by the runner. The user's primary fetches each account when it is due (its
// interval after the last run, or at once when asked), so after a failover the new primary goes on from the
// same state. Messages enter through the normal local delivery (MailStore.deliver, with a Received line), into
// INBOX or the chosen folder.
//
// POP3: UIDL based. A message is fetched when its unique id is not in the state; with `leave` it stays on the
// server, without it is deleted (DELE, committed by QUIT). The state keeps the ids of messages still on the server
// that were fetched (hashed, at most COLLECT_SEEN_MAX).
// IMAP: UIDVALIDITY + UID. Messages above the last UID fetched; a new UIDVALIDITY starts over. Without `leave` the
// fetched messages are flagged \Deleted and expunged.
//
// Hosts: every run checks the account's host again (node/host-policy.ts: no loopback, link-local, grid member or,
// unless allowed, private address) and connects to the address it checked, so a name that resolved to a public
// address when the account was added and to 127.0.0.1 now is refused (DNS rebinding).
//
// The state is written after every COLLECT_STATE_EVERY messages and at the end: a node that dies in between
// delivers those messages again on the next run (at least once, never lost).

import { createHash } from 'node:crypto'
import type { Logger } from 'pino'
import type { Directory, DirectoryRecord, MailStore } from '../../store/index.ts'
import { DirectoryJobs } from '../directory-jobs.ts'
import type { HostPolicy } from '../host-policy.ts'
import { connectRemoteImap } from '../remote-imap.ts'
import { rfc5322Date } from '../smtp/received.ts'
import { Pop3Client } from './pop3-client.ts'

export const COLLECT_ENTRY_PREFIX = 'collect/'
export const COLLECT_STATE_PREFIX = 'collect-state/'
export const COLLECT_TICK_MS = 15_000 // how often due accounts are looked for
export const COLLECT_INTERVAL_MIN_MINUTES = 1
export const COLLECT_INTERVAL_DEFAULT_MINUTES = 10
export const COLLECT_ACCOUNTS_PER_USER_MAX = 20
export const COLLECT_SEEN_MAX = 1000 // ids kept (11-char hashes): the state entry stays under the directory's 16 KiB
export const COLLECT_RUN_TIMEOUT_MS = 10 * 60_000
export const COLLECT_RUNS_IN_FLIGHT = 4
export const COLLECT_MESSAGES_PER_RUN_MAX = 5000 // the rest comes on the next run
export const COLLECT_STATE_EVERY = 10
export const COLLECT_ERROR_CHARS_MAX = 300

export interface CollectAccount {
  id: string
  user: string
  protocol: 'pop3' | 'imap'
  host: string
  port: number
  tls: 'implicit' | 'starttls' | 'none'
  username: string
  password: string // as given: we log in with it
  folder: string // where collected mail goes here
  source: string // IMAP: the folder read there (INBOX)
  leave: boolean // leave the messages on the server
  intervalMinutes: number
  ca?: string
  insecure?: boolean
  created: number
  runNow?: number // asked to run at once (ms): runs when later than the last run's start
}

export interface CollectState {
  lastRunAt: number // start of the last run
  lastOkAt: number
  lastError: string // '' when the last run went well
  lastCount: number // messages delivered by the last run
  total: number
  uidValidity?: number
  lastUid?: number
  seen?: string[]
}

export const accountEntry = (user: string, id: string): string => `${COLLECT_ENTRY_PREFIX}${user}/${id}`
export const stateEntry = (user: string, id: string): string => `${COLLECT_STATE_PREFIX}${user}/${id}`

export function emptyState (): CollectState {
  return { lastRunAt: 0, lastOkAt: 0, lastError: '', lastCount: 0, total: 0 }
}

export interface CollectorComponents {
  directory: Pick<Directory, 'getEntry' | 'listEntries' | 'updateEntry'>
  onDirectoryChange?: (listener: (records: DirectoryRecord[]) => void) => () => void
  mail: MailStore
  isPrimary: (user: string) => boolean
  /** Which hosts may be connected to; checked before every connection. */
  hosts: HostPolicy
  logger: Logger
  now?: () => number
}

export interface CollectorInit {
  hostname: string
  messageBytesMax: number
  tickMs?: number
}

const short = (uid: string): string => createHash('sha256').update(uid).digest('base64url').slice(0, 11)

function reason (err: unknown): string {
  const e = err as { responseText?: string, message?: string }
  return String(e.responseText ?? e.message ?? err).replace(/[\r\n]+/g, ' ').slice(0, COLLECT_ERROR_CHARS_MAX)
}

export class Collector {
  private readonly c: CollectorComponents
  private readonly init: CollectorInit
  private readonly log: Logger
  private readonly now: () => number
  private readonly jobs: DirectoryJobs

  constructor (components: CollectorComponents, init: CollectorInit) {
    this.c = components
    this.init = init
    this.log = components.logger.child({ ns: 'collect' })
    this.now = components.now ?? Date.now
    this.jobs = new DirectoryJobs({ onDirectoryChange: components.onDirectoryChange, isPrimary: components.isPrimary, logger: this.log }, {
      prefix: COLLECT_ENTRY_PREFIX,
      scanMs: init.tickMs ?? COLLECT_TICK_MS,
      jobsMax: COLLECT_RUNS_IN_FLIGHT,
      scanFailedEvent: 'collect_scan_failed',
      scan: async () => { await this.beginDue() }
    })
  }

  start (): void { this.jobs.start() }

  async stop (): Promise<void> { await this.jobs.stop() }

  async scan (): Promise<void> { await this.jobs.scan() }

  /** Begins the accounts due that this node leads. */
  private async beginDue (): Promise<void> {
    const entries = await this.c.directory.listEntries(COLLECT_ENTRY_PREFIX)
    for (const e of entries) {
      if (this.jobs.full) break
      const a = e.value as unknown as CollectAccount
      if (typeof a.user !== 'string' || typeof a.id !== 'string' || !this.jobs.mayBegin(e.name, a.user)) continue
      const st = (await this.c.directory.getEntry(stateEntry(a.user, a.id))) as CollectState | null ?? emptyState()
      const due = st.lastRunAt + a.intervalMinutes * 60_000 <= this.now() || (a.runNow ?? 0) > st.lastRunAt
      if (!due) continue
      this.jobs.begin(e.name, undefined, async signal => { await this.runAccount(a, st, signal) })
    }
  }

  private async saveState (a: CollectAccount, st: CollectState): Promise<void> {
    await this.c.directory.updateEntry(stateEntry(a.user, a.id), () => ({ ...st }) as unknown as Record<string, unknown>)
  }

  private async deliver (a: CollectAccount, raw: Buffer): Promise<void> {
    const received = `Received: from ${a.host} (${a.protocol.toUpperCase()} account ${a.username.replace(/[^\x21-\x7e]/g, '?')})\r\n` +
      `\tby ${this.init.hostname} (mailgrid collect) for <${a.user}>; ${rfc5322Date(new Date(this.now()))}\r\n`
    await this.c.mail.deliver(raw, [{ user: a.user, ...(a.folder === 'INBOX' ? {} : { mailbox: a.folder }), prefix: received }], { internalDate: this.now() })
  }

  /** One run of one account; the outcome goes into its state entry. */
  async runAccount (a: CollectAccount, before: CollectState, stop: AbortSignal): Promise<void> {
    const log = this.log.child({ user: a.user, account: a.id, protocol: a.protocol, host: a.host })
    const st: CollectState = { ...before, lastRunAt: this.now(), lastCount: 0 }
    const signal = AbortSignal.any([stop, AbortSignal.timeout(COLLECT_RUN_TIMEOUT_MS)])
    try {
      if (a.protocol === 'pop3') await this.runPop3(a, st, signal)
      else await this.runImap(a, st, signal)
      st.lastOkAt = this.now()
      st.lastError = ''
      log.info({ delivered: st.lastCount }, 'collect_run_done')
    } catch (err) {
      st.lastError = reason(err)
      log.warn({ err: st.lastError, delivered: st.lastCount }, 'collect_run_failed')
    }
    await this.saveState(a, st).catch(err => log.warn({ err: String(err) }, 'collect_state_not_saved'))
  }

  private async runPop3 (a: CollectAccount, st: CollectState, signal: AbortSignal): Promise<void> {
    const [address] = await this.c.hosts.check(a.host, a.port, { signal })
    const client = await Pop3Client.connect({ host: a.host, address, port: a.port, tls: a.tls, ca: a.ca, insecure: a.insecure, signal })
    try {
      await client.login(a.username, a.password)
      const list = await client.list()
      const present = new Set(list.map(m => short(m.uid)))
      const seen = new Set((st.seen ?? []).filter(s => present.has(s))) // ids gone from the server are forgotten
      let since = 0
      for (const m of list) {
        signal.throwIfAborted()
        const id = short(m.uid)
        if (seen.has(id)) {
          if (!a.leave) await client.dele(m.n) // fetched before, its deletion not committed then
          continue
        }
        if (st.lastCount >= COLLECT_MESSAGES_PER_RUN_MAX) break
        if (a.leave && seen.size >= COLLECT_SEEN_MAX) throw new Error(`more than ${COLLECT_SEEN_MAX} messages left on the server: collect with delete, or remove old mail there`)
        if (m.size > this.init.messageBytesMax) {
          seen.add(id)
          st.lastError = `message ${m.uid} skipped: ${m.size} bytes, over the limit`
          continue
        }
        const raw = await client.retr(m.n, this.init.messageBytesMax + 1024)
        await this.deliver(a, raw)
        seen.add(id)
        st.seen = [...seen] // kept current: a run that fails later saves what it fetched
        st.lastCount++
        st.total++
        if (!a.leave) await client.dele(m.n)
        if (++since >= COLLECT_STATE_EVERY) {
          since = 0
          st.seen = [...seen]
          await this.saveState(a, st)
        }
      }
      st.seen = [...seen]
      await client.quit()
    } finally {
      client.close()
    }
  }

  private async runImap (a: CollectAccount, st: CollectState, signal: AbortSignal): Promise<void> {
    const [address] = await this.c.hosts.check(a.host, a.port, { signal })
    const remote = await connectRemoteImap({
      host: a.host, address, port: a.port, tls: a.tls, user: a.username, password: a.password, ca: a.ca, insecure: a.insecure, messageBytesMax: this.init.messageBytesMax, signal
    })
    const client = remote.client
    try {
      const box = await client.mailboxOpen(a.source, { readOnly: a.leave })
      const validity = Number(box.uidValidity)
      if (st.uidValidity !== validity) {
        st.uidValidity = validity
        st.lastUid = 0
      }
      const after = st.lastUid ?? 0
      if (box.exists === 0) return
      const metas = (await client.fetchAll(`${after + 1}:*`, { uid: true, size: true }, { uid: true })).filter(m => m.uid > after).sort((x, y) => x.uid - y.uid)
      let since = 0
      const done: number[] = []
      for (const m of metas.slice(0, COLLECT_MESSAGES_PER_RUN_MAX)) {
        signal.throwIfAborted()
        if (Number(m.size) <= this.init.messageBytesMax) {
          const got = await client.fetchOne(String(m.uid), { source: true }, { uid: true })
          if (got !== undefined && got !== false && got.source !== undefined) {
            await this.deliver(a, got.source)
            st.lastCount++
            st.total++
            done.push(m.uid)
          }
        } else {
          st.lastError = `message ${m.uid} skipped: ${m.size} bytes, over the limit`
        }
        st.lastUid = m.uid
        if (++since >= COLLECT_STATE_EVERY) {
          since = 0
          await this.saveState(a, st)
        }
      }
      if (!a.leave && done.length > 0) await client.messageDelete(done.join(','), { uid: true })
    } finally {
      await remote.close()
    }
  }
}

// The measurements, each run the same way against either system: SMTP ingest with end-to-end visibility over
// IMAP, SELECT of a big mailbox, a full-mailbox FETCH, a mixed IMAP workload, POP3 RETR of a whole maildrop,
// and (mailgrid only) RSS with many IDLE sessions. Every loop is bounded by a count and a deadline.

import { readFile } from 'node:fs/promises'
import { percentile, runSmtpLoad } from '../helpers/smtp-load.ts'
import { existsOf, imapLogin } from './imap-raw.ts'
import type { ImapRaw } from './imap-raw.ts'
import { Pop3Raw } from './pop3-raw.ts'

const POLL_INTERVAL_MS = 50 // between rounds of STATUS while waiting for mail to become visible
const STATUS_POOL_MAX = 100 // IMAP connections used to watch mailboxes (Dovecot allows 10 per user and IP)
const POP3_WINDOW = 32 // RETR commands in flight (RFC 2449 PIPELINING)
const IDLE_SETUP_CONCURRENCY = 50 // logins in flight while opening IDLE sessions
const SETTLE_MS = 3000 // after setup, before reading RSS, so allocation bursts have been collected

export interface SystemPorts { smtp: number, imap: number, pop3: number }

export interface IngestResult {
  sizeBytes: number
  messages: number
  connections: number
  acked: number
  failed: number
  unknown: number
  acceptSeconds: number
  msgPerSec: number
  mbPerSec: number
  p50Ms: number
  p99Ms: number
  /** From the first connection to the moment every acknowledged message was visible over IMAP. */
  visibleSeconds: number | null
  visibleMsgPerSec: number | null
  /** CPU seconds the server spent from the first connection to the last 250 (null when not asked for). */
  cpuSeconds: number | null
  /** The same per acknowledged message, in milliseconds. */
  cpuMsPerMsg: number | null
  /** Share of all the machine's cores busy (any process) from the first connection to the last 250, /proc/stat. */
  machineBusy: number | null
  /** The load generator's own CPU seconds over the same span (this process: the SMTP clients). */
  loadCpuSeconds: number
  /** Acknowledged messages not visible at the deadline (null when IMAP could not be used to count). */
  missing: number | null
  extra: number | null // visible beyond those acknowledged (unknown outcomes that were stored, or duplicates)
  visibleNote: string | null
  expected: Map<string, number> // per user: acknowledged in this run
}

/** Watches INBOX message counts of a set of users over persistent IMAP connections (STATUS, RFC 3501 6.3.10). */
class Watcher {
  private readonly conns = new Map<string, ImapRaw>()

  static async open (port: number, users: string[], password: string): Promise<Watcher> {
    if (users.length > STATUS_POOL_MAX) throw new Error(`at most ${STATUS_POOL_MAX} users can be watched`)
    const w = new Watcher()
    try {
      await Promise.all(users.map(async u => { w.conns.set(u, await imapLogin(port, u, password)) }))
    } catch (err) {
      w.close()
      throw err
    }
    return w
  }

  async counts (users: Iterable<string>): Promise<Map<string, number>> {
    const out = new Map<string, number>()
    await Promise.all([...users].map(async u => {
      const r = await (this.conns.get(u) as ImapRaw).ok('STATUS INBOX (MESSAGES)', { collect: true })
      const n = existsOf(r)
      if (n === null) throw new Error(`STATUS INBOX (MESSAGES) gave no MESSAGES: ${r.untagged.map(x => x.text).join(' | ')}`)
      out.set(u, n)
    }))
    return out
  }

  close (): void {
    for (const c of this.conns.values()) c.close()
  }
}

/**
 * The machine's CPU time so far, all cores, from the first line of /proc/stat (USER_HZ ticks): busy is everything
 * but idle and iowait (a core waiting for the disk is not doing work). Null where /proc is not there.
 */
export async function machineTimes (): Promise<{ busy: number, total: number } | null> {
  try {
    const line = (await readFile('/proc/stat', 'utf8')).split('\n', 1)[0]!
    const f = line.trim().split(/\s+/).slice(1, 9).map(Number) // user nice system idle iowait irq softirq steal
    const total = f.reduce((a, b) => a + b, 0)
    return { busy: total - f[3]! - f[4]!, total }
  } catch {
    return null
  }
}

/** The machine counts as quiet below this share of all its cores busy over a second (the bench's own idle sockets,
 * kernel threads). */
export const QUIET_BUSY_MAX = 0.10

/**
 * Waits until the machine is quiet (below QUIET_BUSY_MAX over one second), at most `maxMs`: what a system still does
 * after the phase before (LevelDB compacting the big mailbox's fill or the last ingest, Dovecot's indexing) is not
 * measured as the next phase's cost. Returns the seconds waited and the last second's busy share.
 */
export async function settle (maxMs = 60_000): Promise<{ seconds: number, busy: number }> {
  const t0 = performance.now()
  let busy = 1
  for (let i = 0; i < 600 && performance.now() - t0 < maxMs; i++) {
    const a = await machineTimes()
    await sleep(1000)
    const b = await machineTimes()
    if (a === null || b === null || b.total === a.total) return { seconds: (performance.now() - t0) / 1000, busy: 0 }
    busy = (b.busy - a.busy) / (b.total - a.total)
    if (busy < QUIET_BUSY_MAX) break
  }
  return { seconds: (performance.now() - t0) / 1000, busy }
}

export async function ingest (sys: SystemPorts, o: {
  sizeBytes: number, messages: number, connections: number, users: string[], password: string, firstId: number,
  deadlineMs: number, visibleDeadlineMs: number,
  /** The server's CPU seconds so far (utime + stime), read just before the load starts and just after it ends. */
  cpu?: () => Promise<number>
  /** The message for an id (runSmtpLoad's default otherwise). */
  message?: (id: number, rcpt: string) => Buffer
}): Promise<IngestResult> {
  let watcher: Watcher | null = null
  let baseline = new Map<string, number>()
  let visibleNote: string | null = null
  try {
    watcher = await Watcher.open(sys.imap, o.users, o.password)
    baseline = await watcher.counts(o.users)
  } catch (err) {
    watcher?.close()
    watcher = null
    visibleNote = `IMAP STATUS failed: ${msg(err)}`
  }
  const expected = new Map<string, number>(o.users.map(u => [u, 0]))
  // after the watcher's logins (one scrypt check each), so the figure is the ingest's alone
  const cpu0 = o.cpu === undefined ? null : await o.cpu()
  const machine0 = await machineTimes()
  const load0 = process.cpuUsage()
  const start = performance.now()
  const load = await runSmtpLoad({
    port: sys.smtp, connections: o.connections, messages: o.messages, sizeBytes: o.sizeBytes, firstId: o.firstId,
    recipient: i => o.users[i % o.users.length], deadlineMs: o.deadlineMs,
    ...(o.message === undefined ? {} : { message: o.message }),
    onAck: (_id, rcpt) => { expected.set(rcpt, (expected.get(rcpt) ?? 0) + 1) }
  })
  const loadUsage = process.cpuUsage(load0)
  const machine1 = await machineTimes()
  const cpuSeconds = cpu0 === null || o.cpu === undefined ? null : await o.cpu() - cpu0
  const machineBusy = machine0 === null || machine1 === null || machine1.total <= machine0.total
    ? null
    : (machine1.busy - machine0.busy) / (machine1.total - machine0.total)
  const lat = load.latenciesMs.sort((a, b) => a - b)
  const acceptSeconds = load.elapsedMs / 1000
  let visibleSeconds: number | null = null
  let missing: number | null = null
  let extra: number | null = null
  if (watcher !== null) {
    try {
      const deadline = performance.now() + o.visibleDeadlineMs
      let left = new Set(o.users)
      let last = new Map<string, number>()
      while (left.size > 0 && performance.now() < deadline) {
        const now = await watcher.counts(left)
        for (const [u, n] of now) {
          last.set(u, n)
          if (n >= (baseline.get(u) ?? 0) + (expected.get(u) ?? 0)) left.delete(u)
        }
        if (left.size > 0) await sleep(POLL_INTERVAL_MS)
      }
      if (left.size === 0) visibleSeconds = (performance.now() - start) / 1000
      last = await watcher.counts(o.users) // settle: a final count of every user, for losses and extras
      missing = 0
      extra = 0
      for (const u of o.users) {
        const d = (last.get(u) ?? 0) - (baseline.get(u) ?? 0) - (expected.get(u) ?? 0)
        if (d < 0) missing -= d
        else extra += d
      }
      if (missing > 0) visibleNote = `${missing} acknowledged messages not visible after ${o.visibleDeadlineMs / 1000} s`
    } catch (err) {
      visibleNote = `IMAP STATUS failed: ${msg(err)}`
    } finally {
      watcher.close()
    }
  }
  return {
    sizeBytes: o.sizeBytes,
    messages: o.messages,
    connections: o.connections,
    acked: load.acked,
    failed: load.failed,
    unknown: load.unknown,
    acceptSeconds,
    msgPerSec: load.acked / acceptSeconds,
    cpuSeconds,
    cpuMsPerMsg: cpuSeconds === null ? null : 1000 * cpuSeconds / Math.max(1, load.acked),
    machineBusy,
    loadCpuSeconds: (loadUsage.user + loadUsage.system) / 1e6,
    mbPerSec: load.bytes / 1e6 / acceptSeconds,
    p50Ms: percentile(lat, 50),
    p99Ms: percentile(lat, 99),
    visibleSeconds,
    visibleMsgPerSec: visibleSeconds === null ? null : load.acked / visibleSeconds,
    missing,
    extra,
    visibleNote,
    expected
  }
}

/** SELECT of a mailbox on fresh connections, `repeats` times: the first (coldest) and the median, in ms. */
export async function selectTime (port: number, user: string, password: string, repeats: number): Promise<{ firstMs: number, medianMs: number, exists: number }> {
  const times: number[] = []
  let exists = 0
  for (let i = 0; i < repeats; i++) {
    const c = await imapLogin(port, user, password)
    try {
      const t0 = performance.now()
      const r = await c.ok('SELECT INBOX', { collect: true })
      times.push(performance.now() - t0)
      exists = existsOf(r) ?? 0
      await c.command('LOGOUT').catch(() => {})
    } finally {
      c.close()
    }
  }
  const sorted = [...times].sort((a, b) => a - b)
  return { firstMs: times[0], medianMs: sorted[Math.floor(sorted.length / 2)], exists }
}

/**
 * `UID FETCH 1:* (FLAGS BODY.PEEK[])` of the whole mailbox, timed from command to tagged OK. With `cpu` (the
 * server's CPU seconds so far), `commandCpuSeconds` is the server's CPU over the command alone: not the login,
 * whose password hash costs mailgrid about 0.1 s at the production scrypt cost and Dovecot next to nothing.
 */
export async function fullFetch (port: number, user: string, password: string, cpu?: () => Promise<number>): Promise<{ messages: number, bytes: number, seconds: number, exists: number, commandCpuSeconds?: number }> {
  const c = await imapLogin(port, user, password)
  try {
    const sel = await c.ok('SELECT INBOX', { collect: true })
    const exists = existsOf(sel) ?? 0
    let messages = 0
    const before = c.literalBytesTotal
    const cpu0 = await cpu?.()
    const t0 = performance.now()
    await c.ok('UID FETCH 1:* (FLAGS BODY.PEEK[])', { onUntagged: u => { if (/^\* \d+ FETCH/i.test(u.text) && u.literalBytes > 0) messages++ } })
    const seconds = (performance.now() - t0) / 1000
    const cpu1 = await cpu?.()
    const bytes = c.literalBytesTotal - before
    if (messages !== exists) throw new Error(`fetched ${messages} of ${exists} messages`)
    await c.command('LOGOUT').catch(() => {})
    return { messages, bytes, seconds, exists, ...(cpu0 !== undefined && cpu1 !== undefined ? { commandCpuSeconds: cpu1 - cpu0 } : {}) }
  } finally {
    c.close()
  }
}

/** The SORT and THREAD commands of the sort phase (RFC 5256), by the name its rows carry. */
export const SORT_THREAD_COMMANDS: Record<string, string> = {
  'SORT (DATE)': 'UID SORT (DATE) UTF-8 ALL',
  'SORT (SUBJECT)': 'UID SORT (SUBJECT) UTF-8 ALL',
  'THREAD=REFERENCES': 'UID THREAD REFERENCES UTF-8 ALL'
}

export interface SortThreadResult {
  exists: number
  firstMs: Record<string, number>
  medianMs: Record<string, number>
  /** Each command once right after `newMail` messages arrived (delivered before it, seen by the session). */
  afterNewMailMs: Record<string, number>
  newMail: number
}

/** How long the sort phase waits for new mail to show in the session (NOOP every 50 ms). */
const NEW_MAIL_VISIBLE_MS = 300_000

/**
 * SORT by date, SORT by subject and THREAD=REFERENCES over a whole mailbox on one session (after SELECT), each
 * `repeats` times in turn: the first run of each (the server builds whatever it keeps) and the median of the
 * rest. Then, per command, `addMail` delivers new mail (returns how many were acknowledged), the session waits
 * until it sees them, and the command runs once: what the first SORT/THREAD after new mail costs. Every answer must
 * name every message of the mailbox once.
 */
export async function sortThread (port: number, user: string, password: string, repeats: number, addMail?: () => Promise<number>): Promise<SortThreadResult> {
  const c = await imapLogin(port, user, password)
  try {
    let exists = existsOf(await c.ok('SELECT INBOX', { collect: true })) ?? 0
    const times: Record<string, number[]> = {}
    const timed = async (cmd: string): Promise<number> => {
      let answer = ''
      const t0 = performance.now()
      await c.ok(cmd, { onUntagged: u => { if (/^\* (SORT|THREAD)\b/i.test(u.text)) answer = u.text } })
      const ms = performance.now() - t0
      const numbers = answer.slice(answer.indexOf(' ', 2) + 1).match(/\d+/g) ?? []
      if (numbers.length !== exists || new Set(numbers).size !== exists) throw new Error(`${cmd} named ${numbers.length} messages (${new Set(numbers).size} distinct) of ${exists}`)
      return ms
    }
    for (let i = 0; i < Math.max(2, repeats); i++) {
      for (const [name, cmd] of Object.entries(SORT_THREAD_COMMANDS)) (times[name] ??= []).push(await timed(cmd))
    }
    const afterNewMailMs: Record<string, number> = {}
    let newMail = 0
    for (const [name, cmd] of addMail === undefined ? [] : Object.entries(SORT_THREAD_COMMANDS)) {
      const added = await addMail!()
      newMail = added
      const deadline = performance.now() + NEW_MAIL_VISIBLE_MS
      for (let seen = exists; seen < exists + added;) {
        if (performance.now() > deadline) throw new Error(`${added} new messages not seen after ${NEW_MAIL_VISIBLE_MS / 1000} s`)
        await sleep(50)
        seen = existsOf(await c.ok('NOOP', { collect: true })) ?? seen
      }
      exists += added
      afterNewMailMs[name] = await timed(cmd)
    }
    await c.command('LOGOUT').catch(() => {})
    const firstMs: Record<string, number> = {}
    const medianMs: Record<string, number> = {}
    for (const [name, t] of Object.entries(times)) {
      firstMs[name] = t[0]
      const rest = t.slice(1).sort((a, b) => a - b)
      medianMs[name] = rest[Math.floor((rest.length - 1) / 2)]
    }
    return { exists, firstMs, medianMs, afterNewMailMs, newMail }
  } finally {
    c.close()
  }
}

export interface MixedResult { ops: number, seconds: number, opsPerSec: number, byKind: Record<string, number>, meanMsByKind: Record<string, number> }

/**
 * `clients` sessions, each on its own user's INBOX, cycling through SEARCH (a flag and a header criterion), STORE
 * (set and clear \Flagged on one message) and a header FETCH of ten messages. The first refused command
 * aborts the measurement with that command in the error. `only`: that kind of command alone (a diagnostic).
 */
export async function mixed (port: number, users: string[], password: string, o: { clients: number, opsPerClient: number, deadlineMs: number, only?: 'search' | 'store' | 'fetch' }): Promise<MixedResult> {
  const byKind: Record<string, number> = { search: 0, store: 0, fetch: 0 }
  const msByKind: Record<string, number> = { search: 0, store: 0, fetch: 0 }
  const conns: ImapRaw[] = []
  try {
    const uidsOf: number[][] = []
    for (let i = 0; i < o.clients; i++) {
      const c = await imapLogin(port, users[i % users.length], password)
      conns.push(c)
      await c.ok('SELECT INBOX')
      const all = await c.ok('UID SEARCH ALL', { collect: true })
      const line = all.untagged.find(u => /^\* SEARCH/i.test(u.text))?.text ?? ''
      const uids = line.split(' ').slice(2).map(Number).filter(n => n > 0)
      if (uids.length < 10) throw new Error(`${users[i % users.length]} has ${uids.length} messages, need 10`)
      uidsOf.push(uids)
    }
    let rnd = 12345 // a fixed LCG: both systems get the same sequence of commands
    const next = (n: number): number => { rnd = (rnd * 1103515245 + 12345) % 2147483648; return rnd % n }
    const deadline = performance.now() + o.deadlineMs
    const t0 = performance.now()
    await Promise.all(conns.map(async (c, ci) => {
      const uids = uidsOf[ci]
      for (let n = 0; n < o.opsPerClient && performance.now() < deadline; n++) {
        // with `only`, the commands of that kind the full cycle would send, in the same order
        const k = o.only === undefined ? n : 3 * n + ['search', 'store', 'fetch'].indexOf(o.only)
        let cmd: string
        let kind: string
        if (k % 3 === 0) {
          kind = 'search'
          cmd = k % 6 === 0 ? 'UID SEARCH FLAGGED' : `UID SEARCH SUBJECT "message ${next(20000)}"`
        } else if (k % 3 === 1) {
          kind = 'store'
          cmd = `UID STORE ${uids[next(uids.length)]} ${k % 2 === 0 ? '+' : '-'}FLAGS.SILENT (\\Flagged)`
        } else {
          kind = 'fetch'
          const a = next(uids.length - 9)
          cmd = `UID FETCH ${uids[a]}:${uids[a + 9]} (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)])`
        }
        const t = performance.now()
        await c.ok(cmd)
        msByKind[kind] += performance.now() - t
        byKind[kind]++
      }
    }))
    const seconds = (performance.now() - t0) / 1000
    const ops = byKind.search + byKind.store + byKind.fetch
    const meanMsByKind = Object.fromEntries(Object.keys(byKind).map(k => [k, byKind[k] === 0 ? 0 : msByKind[k] / byKind[k]]))
    return { ops, seconds, opsPerSec: ops / seconds, byKind, meanMsByKind }
  } finally {
    for (const c of conns) c.close()
  }
}

/** POP3 RETR of every message of a maildrop, pipelined; login and STAT are not in the timed part (nor in `commandCpuSeconds`, as in fullFetch). */
export async function pop3RetrAll (port: number, user: string, password: string, cpu?: () => Promise<number>): Promise<{ messages: number, bytes: number, seconds: number, loginSeconds: number, commandCpuSeconds?: number }> {
  const t0 = performance.now()
  const c = await Pop3Raw.login(port, user, password)
  const stat = await c.send('STAT', false)
  const loginSeconds = (performance.now() - t0) / 1000
  if (!stat.ok) throw new Error(`POP3 STAT → ${stat.line}`)
  const count = Number(stat.line.split(' ')[1])
  const cpu0 = await cpu?.()
  const t1 = performance.now()
  const r = await c.retrAll(count, POP3_WINDOW)
  const seconds = (performance.now() - t1) / 1000
  const cpu1 = await cpu?.()
  if (r.failed !== null) throw new Error(`POP3 RETR → ${r.failed}`)
  if (r.messages !== count) throw new Error(`POP3 retrieved ${r.messages} of ${count}`)
  await c.quit()
  return { messages: r.messages, bytes: r.bytes, seconds, loginSeconds, ...(cpu0 !== undefined && cpu1 !== undefined ? { commandCpuSeconds: cpu1 - cpu0 } : {}) }
}

/** Opens `sessions` IMAP sessions (LOGIN, SELECT INBOX, IDLE), one user each, and reads the server's memory. */
export async function idleSessions (port: number, users: string[], password: string, sessions: number, deadlineMs: number, memory: () => Promise<number>): Promise<{ opened: number, failed: string | null, setupSeconds: number, bytes: number }> {
  const conns: ImapRaw[] = []
  const dones: Array<{ end: Promise<unknown> }> = []
  let failed: string | null = null
  let next = 0
  const t0 = performance.now()
  const deadline = t0 + deadlineMs
  try {
    await Promise.all(Array.from({ length: IDLE_SETUP_CONCURRENCY }, async () => {
      while (next < sessions && failed === null && performance.now() < deadline) {
        const user = users[next++ % users.length]
        try {
          const c = await imapLogin(port, user, password)
          conns.push(c)
          await c.ok('SELECT INBOX')
          dones.push(await c.idle())
        } catch (err) {
          failed ??= `session ${conns.length + 1} (${user}): ${msg(err)}`
        }
      }
    }))
    const setupSeconds = (performance.now() - t0) / 1000
    await sleep(SETTLE_MS)
    const bytes = await memory()
    return { opened: dones.length, failed, setupSeconds, bytes }
  } finally {
    for (const c of conns) { c.done(); c.close() }
  }
}

export function msg (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

export async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

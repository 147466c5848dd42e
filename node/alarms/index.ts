// Alarms (issue 11): conditions an operator must hear of, each with a start, an end and a history. Every node
// checks every ALARM_CHECK_MS (and at once on a membership change) what it alone can see — its disk, its
// certificate, the users it leads that lack copies, the queue shards it leads — and what the grid sees alike is
// raised by one node only, the alive member with the lowest id: a dead member, a burst of authentication failures
// (every member hears every failure, node/auth-grid.ts). A node keeps an alarm it raised until the condition ends,
// even when it is no longer the lowest (so "node dead" is never raised twice for one death by the same rule).
// Raised and cleared alarms are logged (`alarm_raised`, `alarm_cleared`), kept in DATA/alarms.json (active and
// the last ALARM_HISTORY_MAX ended), and mailed to alarms.mailTo when set: into the mailbox when the address is
// ours, through the outbound queue otherwise, with the null sender like a delivery notice. The grid's view is
// gathered from every live member over a small RPC (a dead member's own alarms are missing until it returns).

import { randomBytes, X509Certificate } from 'node:crypto'
import { readFile, rename, writeFile } from 'node:fs/promises'
import type { Logger } from 'pino'
import type { Gossip, Member } from '../../gossip/types.ts'
import type { DiskState } from '../../store/index.ts'
import { rfc5322Date } from '../smtp/received.ts'
import { memberName } from '../stats/index.ts'

export interface Alarm {
  id: string
  kind: AlarmKind
  subject: string // what it is about: a node's name, a host name
  message: string
  node: string // the node that raised it
  start: number // ms
  end: number | null // null while active
}

export type AlarmKind = 'node-dead' | 'disk-full' | 'disk-low' | 'under-replicated' | 'queue-age' | 'cert-expiry' | 'auth-failures'

export const ALARM_CHECK_MS = 10_000
export const ALARM_HISTORY_MAX = 500
export const ALARMS_PROTOCOL = '/mailgrid/alarms/1.0.0'
export const ALARM_GATHER_TIMEOUT_MS = 5_000
/** Samples of the failure count kept for the burst window (one per check; a window of a day at a 10 s check is 8,640). */
const FAILURE_SAMPLES_MAX = 10_000
/**
 * A restarted node knows the members of its last run as dead until it hears from them: it raises "node dead" only for
 * a member it has seen alive since it started, or after this long (a member that never came back).
 */
export const ALARM_STARTUP_GRACE_MS = 60_000
const MAIL_QUEUE_MAX = 100 // alarm mails waiting to leave; a storm past it is logged, not mailed
// A mail that could not be handed over is tried again: a node-dead alarm is raised exactly when the mailbox it goes
// to may be between owners (its primary the dead node, the ring not yet rebuilt). 1 s doubling to 60 s, 12 tries
// (about 8 minutes), then logged as lost.
const MAIL_RETRY_MIN_MS = 1_000
const MAIL_RETRY_MAX_MS = 60_000
const MAIL_TRIES = 12

export interface AlarmsInit {
  /** '' = no mail. */
  mailTo: string
  diskUsedPct: number // 85
  underReplicatedMs: number // 10 minutes
  queueAgeMs: number // 1 hour
  certDays: number // 14
  authFailures: number // within authWindowMs, grid-wide
  authWindowMs: number
  checkMs?: number
  /** DATA/alarms.json */
  path: string
  hostname: string
}

/** What the checks read; each is optional (a standalone node has no grid). */
export interface AlarmSources {
  disk?: () => DiskState
  underReplicated?: () => Promise<number>
  queueOldestMs?: () => Promise<number>
  /** The node's certificate (PEM). */
  cert?: string | Buffer
  /** Authentication failures seen so far (this node's and those the grid told it of); grows. */
  authFailures?: () => number
}

export interface AlarmsComponents {
  logger: Logger
  now?: () => number
  gossip?: Gossip
  sources: AlarmSources
  /** Sends an alarm mail (built here) to `to`; absent: no mail. */
  mail?: (raw: Buffer, to: string) => Promise<void>
}

export interface AlarmList { active: Alarm[], history: Alarm[], nodes: { answered: string[], missing: string[] } }

export interface Alarms {
  start (): Promise<void>
  stop (): Promise<void>
  /** Runs the checks now (the timer does it every checkMs). */
  check (): Promise<void>
  /** This node's alarms. */
  local (): { active: Alarm[], history: Alarm[] }
  /** The grid's: every live member's, an alarm held by two members shown once. */
  list (opts?: { signal?: AbortSignal }): Promise<AlarmList>
}

interface Wanted { kind: AlarmKind, subject: string, message: string }

const DAY_MS = 24 * 3600_000

function isAlarm (x: unknown): x is Alarm {
  const a = x as Alarm
  return typeof a === 'object' && a !== null && typeof a.id === 'string' && typeof a.kind === 'string' && typeof a.subject === 'string' &&
    typeof a.message === 'string' && typeof a.node === 'string' && typeof a.start === 'number' && (a.end === null || typeof a.end === 'number')
}

export function createAlarms (components: AlarmsComponents, init: AlarmsInit): Alarms {
  const now = components.now ?? Date.now
  const log = components.logger.child({ ns: 'alarms' })
  const { gossip, sources } = components
  const checkMs = init.checkMs ?? ALARM_CHECK_MS
  let active: Alarm[] = []
  let history: Alarm[] = []
  let timer: NodeJS.Timeout | null = null
  let running = false
  let checking: Promise<void> | null = null
  let again = false
  let unsubscribe: (() => void) | null = null
  let underSince = 0
  let startedAt = 0
  const seenAlive = new Set<string>()
  const failures: Array<[number, number]> = []
  const mails: Array<{ raw: Buffer, to: string, tries: number }> = []
  let mailing = false
  let mailTimer: NodeJS.Timeout | null = null
  const certValidTo = (() => {
    if (sources.cert === undefined) return null
    try {
      return Date.parse(new X509Certificate(sources.cert).validTo)
    } catch {
      return null
    }
  })()

  const nameOf = (m: Member): string => memberName(m)
  const selfName = (): string => {
    const me = gossip?.members().find(m => m.self)
    return me !== undefined ? nameOf(me) : init.hostname
  }

  async function save (): Promise<void> {
    const tmp = `${init.path}.${randomBytes(4).toString('hex')}.tmp`
    await writeFile(tmp, JSON.stringify({ active, history }))
    await rename(tmp, init.path)
  }

  async function load (): Promise<void> {
    try {
      const v = JSON.parse(await readFile(init.path, 'utf8')) as { active?: unknown, history?: unknown }
      active = Array.isArray(v.active) ? v.active.filter(isAlarm) : []
      history = Array.isArray(v.history) ? v.history.filter(isAlarm).slice(0, ALARM_HISTORY_MAX) : []
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn({ event: 'alarms_load_failed', err: String(err) }, 'alarms_load_failed')
    }
  }

  /** What should be active on this node now. */
  async function wanted (): Promise<Wanted[]> {
    const t = now()
    const out: Wanted[] = []
    const me = selfName()
    const members = gossip?.members() ?? []
    const alive = members.filter(m => m.status === 'alive')
    const lowest = gossip === undefined || alive.length === 0 || alive.map(m => m.id).sort()[0] === gossip.self

    // grid-level: a dead member, raised by the lowest alive member, kept by whoever raised it while it stays dead
    for (const m of members) {
      if (m.status === 'alive') seenAlive.add(m.id)
      if (m.self || m.status === 'alive' || m.status === 'left') continue
      const subject = nameOf(m)
      const held = active.some(a => a.kind === 'node-dead' && a.subject === subject)
      const known = seenAlive.has(m.id) || t - startedAt >= ALARM_STARTUP_GRACE_MS
      if ((m.status === 'dead' && lowest && known) || held) {
        out.push({ kind: 'node-dead', subject, message: `Node ${subject} is ${m.status}: no heartbeat since ${new Date(m.lastSeen).toISOString()}` })
      }
    }

    // grid-level: authentication failures in the window, as this node counts them (the grid's, node/auth-grid.ts)
    if (sources.authFailures !== undefined) {
      const total = sources.authFailures()
      failures.push([t, total])
      while (failures.length > 0 && failures[0][0] < t - init.authWindowMs) failures.shift()
      if (failures.length > FAILURE_SAMPLES_MAX) failures.splice(0, failures.length - FAILURE_SAMPLES_MAX)
      const inWindow = total - (failures[0]?.[1] ?? total)
      const held = active.some(a => a.kind === 'auth-failures')
      if (inWindow >= init.authFailures && (lowest || held)) {
        out.push({ kind: 'auth-failures', subject: 'grid', message: `${inWindow} failed logins in the last ${Math.round(init.authWindowMs / 1000)} s (threshold ${init.authFailures})` })
      } else if (held && inWindow > 0) {
        // still failing, below the threshold: kept until the window is quiet, so a steady attack is one alarm
        const a = active.find(x => x.kind === 'auth-failures')!
        out.push({ kind: 'auth-failures', subject: 'grid', message: a.message })
      }
    }

    const disk = sources.disk?.()
    if (disk !== undefined && disk.totalBytes > 0) {
      const used = 100 * (disk.totalBytes - disk.freeBytes) / disk.totalBytes
      if (used > init.diskUsedPct) out.push({ kind: 'disk-full', subject: me, message: `Data disk of ${me} is ${used.toFixed(1)} % used (threshold ${init.diskUsedPct} %)` })
      if (disk.low) out.push({ kind: 'disk-low', subject: me, message: `Data disk of ${me} has ${disk.freeBytes} bytes free, below its floor of ${disk.floorBytes} (store.minFreeBytes): it takes no new users or copies` })
    }

    if (sources.underReplicated !== undefined) {
      const n = await sources.underReplicated().catch(() => 0)
      if (n === 0) underSince = 0
      else if (underSince === 0) underSince = t
      if (n > 0 && t - underSince >= init.underReplicatedMs) {
        out.push({ kind: 'under-replicated', subject: me, message: `${n} users led by ${me} have had fewer copies than the grid's replicas for more than ${Math.round(init.underReplicatedMs / 60_000)} min` })
      }
    }

    if (sources.queueOldestMs !== undefined) {
      const age = await sources.queueOldestMs().catch(() => 0)
      if (age > init.queueAgeMs) out.push({ kind: 'queue-age', subject: me, message: `The oldest message in ${me}'s outbound queue is ${Math.round(age / 60_000)} min old (threshold ${Math.round(init.queueAgeMs / 60_000)} min)` })
    }

    if (certValidTo !== null && certValidTo - t < init.certDays * DAY_MS) {
      const days = Math.floor((certValidTo - t) / DAY_MS)
      out.push({
        kind: 'cert-expiry',
        subject: me,
        message: certValidTo <= t ? `The TLS certificate of ${me} expired on ${new Date(certValidTo).toISOString()}` : `The TLS certificate of ${me} expires on ${new Date(certValidTo).toISOString()} (in ${days} days)`
      })
    }
    return out
  }

  function notice (alarm: Alarm, what: 'raised' | 'cleared'): void {
    if (init.mailTo === '' || components.mail === undefined) return
    if (mails.length >= MAIL_QUEUE_MAX) {
      log.warn({ event: 'alarm_mail_dropped', id: alarm.id }, 'alarm_mail_dropped')
      return
    }
    const t = now()
    const subject = `[mailgrid] ${what === 'raised' ? 'ALARM' : 'cleared'}: ${alarm.kind} ${alarm.subject}`.replace(/[\r\n]+/g, ' ').slice(0, 200)
    const body = [
      what === 'raised' ? `An alarm was raised by ${alarm.node}:` : `An alarm raised by ${alarm.node} has cleared:`,
      '',
      `  ${alarm.message}`,
      '',
      `Kind:    ${alarm.kind}`,
      `Subject: ${alarm.subject}`,
      `Started: ${new Date(alarm.start).toISOString()}`,
      ...(alarm.end !== null ? [`Ended:   ${new Date(alarm.end).toISOString()}`] : []),
      `Id:      ${alarm.id}`,
      ''
    ].map(l => l.replace(/[\r\n]+/g, ' ')).join('\r\n')
    const raw = Buffer.from([
      `From: mailgrid alarms <postmaster@${init.hostname}>`,
      `To: <${init.mailTo}>`,
      `Subject: ${subject.replace(/[^\x20-\x7e]/g, '?')}`,
      `Date: ${rfc5322Date(new Date(t))}`,
      `Message-ID: <alarm.${alarm.id}.${what}@${init.hostname}>`,
      'Auto-Submitted: auto-generated', // RFC 3834: no vacation reply to this
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: 8bit',
      '',
      body
    ].join('\r\n'))
    mails.push({ raw, to: init.mailTo, tries: 0 })
    if (!mailing && mailTimer === null) void drainMail()
  }

  // in order, one at a time; a failed head waits and is tried again before the ones behind it
  async function drainMail (): Promise<void> {
    mailing = true
    try {
      for (let m = mails[0]; m !== undefined && running; m = mails[0]) {
        try {
          await components.mail!(m.raw, m.to)
          mails.shift()
          log.info({ event: 'alarm_mailed', to: m.to, tries: m.tries + 1 }, 'alarm_mailed')
        } catch (err) {
          m.tries++
          if (m.tries >= MAIL_TRIES) {
            mails.shift()
            log.error({ event: 'alarm_mail_lost', to: m.to, tries: m.tries, err: String(err) }, 'alarm_mail_lost')
            continue
          }
          const wait = Math.min(MAIL_RETRY_MIN_MS * 2 ** (m.tries - 1), MAIL_RETRY_MAX_MS)
          log.warn({ event: 'alarm_mail_failed', to: m.to, tries: m.tries, retryMs: wait, err: String(err) }, 'alarm_mail_failed')
          mailTimer = setTimeout(() => { mailTimer = null; if (running) void drainMail() }, wait)
          mailTimer.unref()
          return
        }
      }
    } finally {
      mailing = false
    }
  }

  async function runCheck (): Promise<void> {
    const want = await wanted()
    const t = now()
    const key = (x: { kind: string, subject: string }): string => `${x.kind}\u0000${x.subject}`
    const wantKeys = new Map(want.map(w => [key(w), w]))
    let changed = false
    const still: Alarm[] = []
    for (const a of active) {
      if (wantKeys.has(key(a))) {
        still.push(a)
        continue
      }
      const ended = { ...a, end: t }
      history.unshift(ended)
      changed = true
      log.warn({ event: 'alarm_cleared', id: a.id, kind: a.kind, subject: a.subject, start: a.start, end: t }, 'alarm_cleared')
      notice(ended, 'cleared')
    }
    const have = new Set(still.map(key))
    for (const w of want) {
      if (have.has(key(w))) continue
      const a: Alarm = { id: `${t.toString(36)}-${randomBytes(4).toString('hex')}`, kind: w.kind, subject: w.subject, message: w.message, node: selfName(), start: t, end: null }
      still.push(a)
      have.add(key(w))
      changed = true
      log.error({ event: 'alarm_raised', id: a.id, kind: a.kind, subject: a.subject, message: a.message }, 'alarm_raised')
      notice(a, 'raised')
    }
    active = still
    if (history.length > ALARM_HISTORY_MAX) history.length = ALARM_HISTORY_MAX
    if (changed) await save().catch((err: unknown) => { log.warn({ event: 'alarms_save_failed', err: String(err) }, 'alarms_save_failed') })
  }

  async function check (): Promise<void> {
    if (checking !== null) {
      again = true
      await checking
      return
    }
    checking = (async () => {
      do {
        again = false
        try {
          await runCheck()
        } catch (err) {
          log.warn({ event: 'alarm_check_failed', err: String(err) }, 'alarm_check_failed')
        }
      } while (again && running)
    })()
    try {
      await checking
    } finally {
      checking = null
    }
  }

  const localView = (): { active: Alarm[], history: Alarm[] } => ({ active: active.map(a => ({ ...a })), history: history.map(a => ({ ...a })) })

  return {
    check,
    local: localView,
    async list (opts = {}) {
      const parts = [localView()]
      const answered = [selfName()]
      const missing: string[] = []
      if (gossip !== undefined) {
        await Promise.all(gossip.members().filter(m => !m.self && m.status !== 'left').map(async m => {
          if (m.status !== 'alive') { missing.push(nameOf(m)); return }
          try {
            const res = await gossip.call(m.id, ALARMS_PROTOCOL, { header: {} }, { timeoutMs: ALARM_GATHER_TIMEOUT_MS, signal: opts.signal })
            const h = res.header as { active?: unknown, history?: unknown }
            parts.push({
              active: Array.isArray(h.active) ? h.active.filter(isAlarm).slice(0, ALARM_HISTORY_MAX) : [],
              history: Array.isArray(h.history) ? h.history.filter(isAlarm).slice(0, ALARM_HISTORY_MAX) : []
            })
            answered.push(nameOf(m))
          } catch {
            missing.push(nameOf(m))
          }
        }))
      }
      const seen = new Set<string>()
      const byKey = new Map<string, Alarm>()
      for (const a of parts.flatMap(p => p.active)) {
        // two members holding the same condition (a death seen by the old and the new lowest member): shown once, the earliest
        const k = `${a.kind}\u0000${a.subject}`
        const prev = byKey.get(k)
        if (prev === undefined || a.start < prev.start) byKey.set(k, a)
      }
      const activeAll = [...byKey.values()].sort((a, b) => b.start - a.start)
      const historyAll = parts.flatMap(p => p.history).filter(a => !seen.has(a.id) && seen.add(a.id) !== undefined)
        .sort((a, b) => (b.end ?? 0) - (a.end ?? 0)).slice(0, ALARM_HISTORY_MAX)
      return { active: activeAll, history: historyAll, nodes: { answered: answered.sort(), missing: missing.sort() } }
    },
    async start () {
      if (running) return
      running = true
      startedAt = now()
      await load()
      gossip?.handle(ALARMS_PROTOCOL, async () => ({ header: localView() }))
      unsubscribe = gossip?.onChange(e => { if (e.type === 'status') void check() }) ?? null
      const tick = (): void => {
        timer = setTimeout(() => { void check().finally(() => { if (running) tick() }) }, checkMs)
        timer.unref()
      }
      tick()
      void check()
    },
    async stop () {
      if (!running) return
      running = false
      if (timer !== null) clearTimeout(timer)
      timer = null
      if (mailTimer !== null) clearTimeout(mailTimer)
      mailTimer = null
      unsubscribe?.()
      unsubscribe = null
      await checking
    }
  }
}

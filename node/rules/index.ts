// node/rules: the user's active Sieve script, run at delivery on the user's primary before the message is stored
// (the grid calls it from Routing.deliverLocal; a standalone node around its store's deliver). It compiles and runs
// the script (node/sieve), then carries out the outcome: the copies to store (keep, fileinto with :create and
// flags, editheader's edited message), redirects and vacation replies through the outbound queue (or straight
// into a local mailbox), rejects in the SMTP reply or as a bounce. Vacation and duplicate memory are user
// attributes too, so they replicate and survive a failover. Whatever fails, the message is kept (RFC 5228 2.10.6).

import { createHash, randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import { domainOf, isMailError, isQueueShard, MailError } from '../../store/index.ts'
import type { DeliveryTarget, Directory, MailStore, OpOptions } from '../../store/index.ts'
import { compileSieve, runSieve, REDIRECTS_MAX } from '../sieve/index.ts'
import type { CompiledScript, SieveOutcome } from '../sieve/index.ts'
import { ActiveScriptCache, SieveScripts, SCRIPT_PREFIX } from '../managesieve/scripts.ts'
import type { AttrChanges } from '../managesieve/scripts.ts'
import type { DeliveryFilter } from '../grid/index.ts'
import type { Envelope } from '../outbound/types.ts'
import { buildDsn } from '../outbound/dsn.ts'
import type { Srs } from '../mailauth/srs.ts'
import { rfc5322Date } from '../smtp/received.ts'

export const MEMORY_PREFIX = 'sieve/memory/'
// Vacation and duplicate memory per user: bounded so a user under a flood of distinct senders cannot grow its
// attributes without end (each entry ~80 bytes; store/mail.ts allows 1 MiB of attributes per user). Expired entries
// are dropped whenever a new one is written; past the bound the oldest go first.
export const MEMORY_ENTRIES_MAX = 1000
export const MEMORY_EXPIRED_DROPS_MAX = 100 // expired entries dropped per write (the rest go with the next writes)
// A message that carries this many of our redirect marks has gone round: it is kept instead of redirected again
export const REDIRECT_HOPS_MAX = 5
export const REDIRECT_HEADER = 'X-Mailgrid-Redirected'
export const COMPILED_CACHE_MAX = 512 // compiled scripts kept, by source hash
export const REJECT_REASON_CHARS_MAX = 400 // a reject reason in our SMTP reply: one line, bounded

export interface RulesComponents {
  /** This node's copy (reads: the script, the memory, the mailboxes; on the primary it is current). With
   * onAttrChange (the node's store), users' active scripts are kept in memory between deliveries. */
  store: Pick<MailStore, 'getAttr' | 'listAttrs' | 'getMailbox'> & Partial<AttrChanges>
  /** The replicated store: memory writes, :create, local deliveries of redirects and replies. */
  mail: Pick<MailStore, 'setAttrs' | 'createMailbox' | 'deliver'>
  directory: Pick<Directory, 'isLocalDomain' | 'resolveRecipient'>
  outbound: { enqueue (raw: Buffer, envelope: Envelope, opts: { received?: string, signal?: AbortSignal }): Promise<string[]> }
  srs: Srs
  logger: Logger
  now?: () => number
}

export interface RulesInit {
  hostname: string
  /** Vacation and duplicate memory entries kept per user; default MEMORY_ENTRIES_MAX. */
  memoryEntriesMax?: number
}

interface Header { name: string, value: string }

/** The header fields of a message's top-level header block, unfolded (bounded: at most 1,000 fields). */
function headers (raw: Buffer): Header[] {
  let end = raw.indexOf('\r\n\r\n')
  if (end < 0) end = raw.indexOf('\n\n')
  const text = raw.subarray(0, end < 0 ? Math.min(raw.length, 256 * 1024) : end).toString('utf8')
  const out: Header[] = []
  for (const line of text.split(/\r?\n/)) {
    if (out.length >= 1000) break
    if (/^[ \t]/.test(line) && out.length > 0) { out[out.length - 1].value += ' ' + line.trim(); continue }
    const i = line.indexOf(':')
    if (i > 0) out.push({ name: line.slice(0, i).trim().toLowerCase(), value: line.slice(i + 1).trim() })
  }
  return out
}

const oneLine = (s: string, max: number): string => s.replace(/[\r\n]+/g, ' ').replace(/[\x00-\x1f\x7f]/g, '').slice(0, max)

/** RFC 2047 for a header text that is not ASCII. */
function encodeWord (s: string): string {
  return /^[\x20-\x7e]*$/.test(s) ? s : `=?UTF-8?B?${Buffer.from(s).toString('base64')}?=`
}

/**
 * RFC 3834 2 and RFC 5230 4.5-4.6: never answer the null sender, a mailer daemon or list software, mail that says
 * it was sent automatically, or mail from a list (List-*, Precedence bulk/list/junk). The interpreter decides
 * this too; the integration checks again because a reply that should not go out cannot be called back.
 */
export function mayAutoReply (from: string, fields: Header[]): boolean {
  if (from === '') return false
  const local = from.split('@')[0].toLowerCase()
  if (local === 'mailer-daemon' || local === 'postmaster' || local.startsWith('owner-') || local.endsWith('-request') || local === 'listserv' || local === 'majordomo') return false
  for (const h of fields) {
    if (h.name.startsWith('list-')) return false
    if (h.name === 'precedence' && /^(bulk|list|junk)\b/i.test(h.value)) return false
    if (h.name === 'auto-submitted' && !/^no\b/i.test(h.value)) return false
    if (h.name === 'x-auto-response-suppress' && /\b(all|oof|autoreply)\b/i.test(h.value)) return false
  }
  return true
}

/** The filter for Routing.deliverLocal (grid) or deliverFiltered around a standalone store. */
export function createSieveFilter (components: RulesComponents, init: RulesInit): DeliveryFilter {
  const { store, mail, directory, outbound, srs } = components
  const log = components.logger
  const now = components.now ?? Date.now
  const cache = store.onAttrChange === undefined ? undefined : new ActiveScriptCache({ onAttrChange: store.onAttrChange.bind(store) })
  const scripts = new SieveScripts({ getAttr: store.getAttr.bind(store), listAttrs: store.listAttrs.bind(store), setAttrs: mail.setAttrs.bind(mail) }, cache)
  const compiled = new Map<string, CompiledScript | { errors: string }>()
  const memoryMax = init.memoryEntriesMax ?? MEMORY_ENTRIES_MAX

  const compile = (source: string): CompiledScript | { errors: string } => {
    const key = createHash('sha256').update(source).digest('hex')
    const hit = compiled.get(key)
    if (hit !== undefined) return hit
    const r = compileSieve(source)
    const v = r.ok ? r.script : { errors: r.errors.map(e => `line ${e.line}: ${e.message}`).join('; ') }
    compiled.set(key, v)
    if (compiled.size > COMPILED_CACHE_MAX) compiled.delete(compiled.keys().next().value as string)
    return v
  }

  const memoryKey = (kind: string, key: string): string => `${MEMORY_PREFIX}${kind}/${createHash('sha256').update(key).digest('hex').slice(0, 32)}`

  const seen = async (user: string, kind: string, key: string, seconds: number): Promise<boolean> => {
    const v = await store.getAttr(user, memoryKey(kind, key))
    if (v === null) return false
    let at = NaN
    try { at = Number((JSON.parse(v) as { at?: unknown }).at) } catch { return false } // not ours: as if unseen
    return Number.isFinite(at) && at + seconds * 1000 > now()
  }

  /** Records memory entries, dropping expired ones and, past MEMORY_ENTRIES_MAX, the oldest. */
  const remember = async (user: string, entries: Array<{ kind: string, key: string, seconds: number }>): Promise<void> => {
    if (entries.length === 0) return
    const t = now()
    const changes = new Map<string, string | null>()
    for (const e of entries.slice(0, 16)) changes.set(memoryKey(e.kind, e.key), JSON.stringify({ at: t, until: t + Math.max(0, e.seconds) * 1000 }))
    const held = (await store.listAttrs(user, MEMORY_PREFIX)).filter(a => !changes.has(a.key)).map(a => {
      try { return { key: a.key, at: Number(JSON.parse(a.value).at), until: Number(JSON.parse(a.value).until) } } catch { return { key: a.key, at: 0, until: 0 } }
    })
    let drops = 0
    for (const h of held) if (!(h.until > t) && drops < MEMORY_EXPIRED_DROPS_MAX) { changes.set(h.key, null); drops++ }
    const left = held.filter(h => !changes.has(h.key)).sort((a, b) => a.at - b.at)
    for (let i = 0; i < left.length + entries.length - memoryMax && i < left.length; i++) changes.set(left[i].key, null)
    await mail.setAttrs(user, [...changes].map(([key, value]) => ({ key, value })))
  }

  /** Hands a message to an address: into the local users' mailboxes when the domain is ours, else to the queue. */
  const send = async (raw: Buffer, from: string, to: string, received: string, opts: OpOptions): Promise<void> => {
    if (await directory.isLocalDomain(domainOf(to))) {
      const users = await directory.resolveRecipient(to)
      if (users.length === 0) throw new MailError('notFound', `no local user ${to}`)
      await mail.deliver(raw, users.map(u => ({ user: u, prefix: `Return-Path: <${from}>\r\n${received}`, envelope: { from, to } })), { ...opts, internalDate: now() })
      return
    }
    await outbound.enqueue(raw, { from, rcpts: [{ address: to }] }, { received, ...(opts.signal !== undefined ? { signal: opts.signal } : {}) })
  }

  const vacationReply = (user: string, v: NonNullable<SieveOutcome['vacation']>, fields: Header[]): Buffer => {
    const get = (n: string): string | undefined => fields.find(h => h.name === n)?.value
    const msgId = get('message-id')
    const refs = [...(get('references') ?? '').split(/\s+/).filter(x => /^<[^<>\s]{1,500}>$/.test(x)).slice(-20), ...(msgId !== undefined && /^<[^<>\s]{1,500}>$/.test(msgId) ? [msgId] : [])]
    const head = [
      `From: ${oneLine(v.from ?? `<${user}>`, 512)}`,
      `To: <${oneLine(v.to, 512)}>`,
      `Subject: ${encodeWord(oneLine(v.subject, 900))}`,
      `Date: ${rfc5322Date(new Date(now()))}`,
      `Message-ID: <vacation.${randomBytes(8).toString('hex')}@${init.hostname}>`,
      ...(msgId !== undefined && refs.includes(msgId) ? [`In-Reply-To: ${msgId}`] : []),
      ...(refs.length > 0 ? [`References: ${refs.join(' ')}`] : []),
      'Auto-Submitted: auto-replied (vacation)', // RFC 3834 5, RFC 5230 5.6
      'Precedence: bulk',
      'MIME-Version: 1.0'
    ]
    // :mime: the body is a MIME entity, its own header included (RFC 5230 5.8)
    const body = v.mime ? v.body.replace(/\r?\n/g, '\r\n') : `Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n${v.body.replace(/\r?\n/g, '\r\n')}`
    return Buffer.from(head.join('\r\n') + '\r\n' + body + (body.endsWith('\r\n') ? '' : '\r\n'))
  }

  return async (raw, target, opts) => {
    const user = target.user
    if (isQueueShard(user)) return null
    let active: { name: string, source: string } | null
    try {
      active = await scripts.active(user)
    } catch (err) {
      log.warn({ user, err: String(err) }, 'sieve_script_unreadable')
      return null
    }
    if (active === null) return null
    const script = compile(active.source)
    if (!(script as CompiledScript).kind) {
      log.warn({ user, script: active.name, errors: (script as { errors: string }).errors }, 'sieve_compile_failed')
      return null
    }
    const env = target.envelope ?? { from: /^Return-Path: <([^>]*)>/i.exec(target.prefix)?.[1] ?? '', to: user }
    const full = target.prefix === '' ? raw : Buffer.concat([Buffer.from(target.prefix), raw])
    const fields = headers(full)
    let outcome: SieveOutcome
    try {
      outcome = await runSieve(script as CompiledScript, { raw: full, envelope: { from: env.from, to: env.to }, size: full.length }, {
        now: new Date(now()),
        user,
        domain: domainOf(user),
        host: init.hostname,
        mailboxExists: async name => (await store.getMailbox(user, name).catch(() => null)) !== null,
        seen: async (kind, key, seconds) => await seen(user, kind, key, seconds),
        resolveInclude: async (name, location) => location === 'personal' ? await store.getAttr(user, SCRIPT_PREFIX + name) : null
      })
    } catch (err) {
      log.error({ user, script: active.name, err }, 'sieve_run_failed')
      return null // implicit keep
    }
    if (outcome.errors.length > 0) log.info({ user, script: active.name, errors: outcome.errors.slice(0, 5).map(e => `line ${e.line}: ${e.message}`) }, 'sieve_runtime_errors')
    const kept: Array<{ raw: Buffer, target: DeliveryTarget }> = []
    const body = outcome.editedMessage ?? full
    const keepCopy = (mailbox: string, flags: string[]): void => {
      kept.push({ raw: body, target: { user, prefix: '', mailbox, flags, ...(target.envelope !== undefined ? { envelope: target.envelope } : {}) } })
    }
    const mustKeep = (why: string): void => {
      log.info({ user, why }, 'sieve_implicit_keep')
      if (kept.length === 0) keepCopy(target.mailbox ?? 'INBOX', target.flags ?? [])
    }

    // reject: in the SMTP reply when this is the only recipient, else a bounce to the sender (RFC 5429 2.1, 2.2)
    if (outcome.reject !== null && outcome.errors.length === 0) {
      const reason = oneLine(outcome.reject.reason, REJECT_REASON_CHARS_MAX) || 'Message rejected'
      if (target.envelope?.rejectable === true) {
        log.info({ user, script: active.name }, 'sieve_rejected_smtp')
        throw new MailError('denied', reason)
      }
      if (mayAutoReply(env.from, [])) { // never a bounce to the null sender or a mailer daemon
        try {
          const dsn = buildDsn({
            hostname: init.hostname, queueId: `sieve-${randomBytes(6).toString('hex')}`, envelope: { from: env.from, rcpts: [{ address: env.to }] },
            arrivalDate: opts.internalDate, action: 'failed', original: full, now: now(),
            outcomes: [{ rcpt: env.to, status: 'failed', code: 550, enhanced: '5.7.1', response: reason, remote: '' }]
          })
          await send(dsn, '', env.from, '', opts)
          log.info({ user, script: active.name }, 'sieve_rejected_bounce')
        } catch (err) {
          log.warn({ user, err: String(err) }, 'sieve_reject_bounce_failed')
          mustKeep('the reject could not be sent back')
        }
      } else {
        log.info({ user, script: active.name, from: env.from }, 'sieve_rejected_unanswered') // RFC 5429 2.1: no notice to a bounce
      }
      return kept
    }

    for (const k of outcome.keep) {
      // keep: where the message would have gone without a script (the spam filter may have said Junk)
      let mailbox = k.mailbox.toUpperCase() === 'INBOX' ? (target.mailbox ?? 'INBOX') : k.mailbox
      if (mailbox !== 'INBOX' && (await store.getMailbox(user, mailbox).catch(() => null)) === null) {
        if (k.create) {
          try {
            await mail.createMailbox(user, mailbox)
          } catch (err) {
            if (!isMailError(err, 'exists')) { log.info({ user, mailbox, err: String(err) }, 'sieve_create_failed'); mailbox = 'INBOX' }
          }
        } else {
          log.info({ user, mailbox }, 'sieve_fileinto_missing') // RFC 5228 4.1: an error; the message goes to INBOX
          mailbox = 'INBOX'
        }
      }
      if (kept.some(c => c.target.mailbox === mailbox)) continue // one copy per mailbox (RFC 5228 2.10.3)
      keepCopy(mailbox, [...new Set([...(target.flags ?? []), ...k.flags])])
    }

    // redirects: through the queue (or into a local mailbox), the sender rewritten with SRS; marked, so a loop stops
    const marks = fields.filter(h => h.name === REDIRECT_HEADER.toLowerCase()).map(h => h.value.toLowerCase())
    const looped = marks.length >= REDIRECT_HOPS_MAX || marks.includes(user.toLowerCase())
    for (const r of outcome.redirects.slice(0, REDIRECTS_MAX)) {
      if (looped) { mustKeep(`redirect loop (${marks.length} redirects already)`); break }
      try {
        const from = env.from === '' ? '' : srs.forward(env.from, domainOf(user))
        const received = `${REDIRECT_HEADER}: ${user}\r\n` + target.prefix.replace(/^Return-Path:[^\n]*\n/i, '')
        await send(outcome.editedMessage ?? raw, from, r.address, received, opts)
        log.info({ user, to: r.address, copy: r.copy }, 'sieve_redirected')
      } catch (err) {
        log.warn({ user, to: r.address, err: String(err) }, 'sieve_redirect_failed')
        mustKeep('a redirect failed')
      }
    }

    // vacation: once per sender and period (the memory is the user's, replicated), never to lists or robots
    const v = outcome.vacation
    if (v !== null && mayAutoReply(v.to, fields) && v.to.toLowerCase() !== user.toLowerCase()) {
      const key = `${v.handle}\x00${v.to.toLowerCase()}`
      try {
        if (!await seen(user, 'vacation', key, v.seconds)) {
          await send(vacationReply(user, v, fields), '', v.to, '', opts)
          await remember(user, [{ kind: 'vacation', key, seconds: v.seconds }])
          log.info({ user, to: v.to }, 'sieve_vacation_sent')
        }
      } catch (err) {
        log.warn({ user, to: v.to, err: String(err) }, 'sieve_vacation_failed')
      }
    }
    try {
      await remember(user, outcome.memory.filter(m => m.kind !== 'vacation'))
    } catch (err) {
      log.warn({ user, err: String(err) }, 'sieve_memory_failed')
    }
    if (outcome.errors.length > 0) mustKeep('runtime error')
    log.info({ user, script: active.name, kept: kept.map(k => k.target.mailbox), redirects: outcome.redirects.length, vacation: v !== null, discarded: kept.length === 0 }, 'sieve_done')
    return kept
  }
}

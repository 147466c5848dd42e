// The interpreter: runs a compiled script against one message (RFC 5228 section 2.10) and returns the
// actions to carry out. Every command and test, every comparison and regex step is charged to a step budget;
// actions, redirects, variables and added headers are counted; a script that crosses a bound, or fails in any
// other way at run time, ends with a runtime error and the implicit keep (RFC 5228 2.10.6).

import { createHash } from 'node:crypto'
import type { Pos } from './ast.ts'
import { compileProgram, includeTarget } from './compile.ts'
import type { ScriptAst } from './compile.ts'
import { HEADER_FIELD_BYTES_MAX, mergeLimits, STRING_BYTES_MAX } from './limits.ts'
import { MatchError, matchAny } from './match.ts'
import type { MatchContext } from './match.ts'
import { MessageView } from './message.ts'
import type { Field, MailAddress } from './message.ts'
import type { Node, Program, VArg, VString } from './program.ts'
import { StepBudgetExceeded } from './regex.ts'
import type { Regex } from './regex.ts'
import type { SieveEnvironment, SieveError, SieveLimits, SieveMessage, SieveOutcome } from './types.ts'
import { datePart, isAddressHeader, isProtectedHeader, parseMailDate, truncateBytes, validFieldName, validRedirectAddress, validZone, zoneMinutes } from './util.ts'
import { vacationAllowed, vacationSeconds } from './vacation.ts'

export const DUPLICATE_SECONDS_DEFAULT = 7 * 86_400 // RFC 7352 3.4 leaves it to the implementation; a week
export const DUPLICATE_SECONDS_MAX = 30 * 86_400
const MATCH_VARIABLES = 10 // ${0}..${9} (RFC 5229 3.2)
// A call into the environment (storage) costs this many steps, so a script cannot make more than
// STEPS_MAX / ENVIRONMENT_CALL_STEPS of them (20,000 with the defaults); answers are remembered for the run.
const ENVIRONMENT_CALL_STEPS = 100

class RuntimeError extends Error {
  readonly pos: Pos
  readonly script: string | null
  constructor (message: string, pos: Pos, script: string | null) {
    super(message)
    this.pos = pos
    this.script = script
  }
}
class Stop extends Error {}
class Return extends Error {}

interface Scope {
  program: Program
  locals: Map<string, string>
  globalNames: Set<string>
}

interface KeepAction { mailbox: string, flags: string[], create: boolean }

function sha (s: string): string {
  return createHash('sha256').update(s).digest('hex')
}

// RFC 3501 flags: the system flags a client may set, or a keyword atom (no atom-specials, ASCII)
const SYSTEM_FLAGS = new Set(['\\seen', '\\answered', '\\flagged', '\\deleted', '\\draft'])
const KEYWORD = /^[\x21\x23-\x24\x26-\x27\x2b-\x5b\x5e-\x7a\x7c\x7e]{1,255}$/

function validFlag (f: string): boolean {
  return f.startsWith('\\') ? SYSTEM_FLAGS.has(f.toLowerCase()) : KEYWORD.test(f)
}

/** Flags of an imap4flags list: each string split on spaces, duplicates (case-insensitive) dropped (RFC 5232 3);
 * a name that is not an IMAP flag is ignored, as Pigeonhole does (RFC 5232 leaves it to the implementation). */
function flagList (strings: string[]): string[] {
  const out: string[] = []
  const seen = new Set<string>()
  for (const s of strings) {
    for (const f of s.split(/[ \t\r\n]+/)) {
      if (f === '' || seen.has(f.toLowerCase()) || !validFlag(f)) continue
      seen.add(f.toLowerCase())
      out.push(f)
    }
  }
  return out
}

function mailboxName (s: string): string {
  return s.toUpperCase() === 'INBOX' ? 'INBOX' : s
}

class Run {
  readonly limits: SieveLimits
  readonly env: SieveEnvironment
  readonly msg: SieveMessage
  readonly view: MessageView
  readonly match: MatchContext
  private steps = 0
  private readonly globals = new Map<string, string>()
  private variableCount = 0
  private matchVars: string[] = []
  private flags: string[] = []
  readonly keeps = new Map<string, KeepAction>()
  readonly redirects = new Map<string, { address: string, copy: boolean }>()
  reject: { reason: string, ereject: boolean } | null = null
  private rejectAt: { pos: Pos, script: string | null } | null = null
  private lastDelivery: Pos | null = null // the latest keep, fileinto, redirect or vacation
  vacation: SieveOutcome['vacation'] = null
  private vacationDone = false
  implicitKeep = true
  private actions = 0
  private headersAdded = 0
  readonly memory: SieveOutcome['memory'] = []
  private readonly duplicates = new Map<string, boolean>()
  private readonly mailboxes = new Map<string, boolean>()
  private readonly included = new Set<string>()
  private readonly runtimeCompiled = new Map<string, Program | null>()
  private readonly stack: string[] = []
  private scope: Scope | null = null
  at: Pos = { line: 1, column: 1, offset: 0 } // the command or test running, for errors raised without a position
  atScript: string | null = null

  constructor (ast: ScriptAst, msg: SieveMessage, env: SieveEnvironment) {
    this.limits = mergeLimits(ast.limits, env.limits)
    this.env = env
    this.msg = msg
    this.view = new MessageView(msg.raw)
    const self = this
    this.match = { budget: { charge (n: number) { self.charge(n) } }, regexInputMax: this.limits.regexInputBytesMax, regexPatternMax: this.limits.regexPatternBytesMax, regexCache: new Map<string, Regex>() }
  }

  charge (n: number): void {
    this.steps += n
    if (this.steps > this.limits.stepsMax) throw new StepBudgetExceeded(`the script ran more than ${this.limits.stepsMax} steps`)
  }

  fail (message: string, pos: Pos): never {
    throw new RuntimeError(message, pos, this.scriptName())
  }

  // ---- variables (RFC 5229) ----

  private isGlobal (name: string, g: boolean): boolean {
    return g || (this.scope?.globalNames.has(name) ?? false)
  }

  getVar (name: string, g: boolean): string {
    return (this.isGlobal(name, g) ? this.globals : this.scope?.locals)?.get(name) ?? ''
  }

  setVar (name: string, g: boolean, value: string, pos: Pos): void {
    const map = this.isGlobal(name, g) ? this.globals : this.scope?.locals
    if (map === undefined) return
    if (!map.has(name)) {
      if (++this.variableCount > this.limits.variablesMax) this.fail(`more than ${this.limits.variablesMax} variables`, pos)
    }
    map.set(name, truncateBytes(value, this.limits.variableBytesMax))
  }

  expand (s: VString): string {
    if (s.constant !== null) return s.constant
    let out = ''
    for (const p of s.parts) {
      if (typeof p === 'string') out += p
      else if ('m' in p) out += this.matchVars[p.m] ?? ''
      else out += this.getVar(p.v, p.g)
      if (out.length > STRING_BYTES_MAX) {
        out = out.slice(0, STRING_BYTES_MAX)
        break
      }
    }
    this.charge(1 + s.parts.length + (out.length >> 8)) // every part is work, even an empty variable
    return out
  }

  strings (a: VArg | null | undefined): string[] {
    if (a == null) return []
    if (a.t === 's') return [this.expand(a.s)]
    if (a.t === 'l') return a.items.map(i => this.expand(i))
    return [String(a.n)]
  }

  str (a: VArg | null | undefined): string {
    return this.strings(a)[0] ?? ''
  }

  num (a: VArg | null | undefined, fallback: number): number {
    return a?.t === 'n' ? a.n : fallback
  }

  private captures (n: Node): (caps: string[]) => void {
    return caps => {
      // RFC 5229 3.2: a successful :matches or :regex sets ${0}..${9}; others keep their old values
      if (this.scope?.program.variables === true && (n.match === 'matches' || n.match === 'regex')) this.matchVars = caps.slice(0, MATCH_VARIABLES)
    }
  }

  private test (n: Node, values: string[], keys: string[]): boolean {
    return matchAny(this.match, n, values, keys, this.captures(n))
  }

  // ---- actions ----

  private countAction (pos: Pos): void {
    if (++this.actions > this.limits.actionsMax) this.fail(`more than ${this.limits.actionsMax} actions`, pos)
  }

  private conflictsWithReject (what: string, pos: Pos): void {
    // reported at the reject, naming the other action (as Pigeonhole does, whichever came first)
    if (this.reject !== null && this.rejectAt !== null) {
      throw new RuntimeError(`reject cannot be used with ${what} (line ${pos.line}) (RFC 5429 2.1)`, this.rejectAt.pos, this.rejectAt.script)
    }
  }

  private scriptName (): string | null {
    const p = this.scope?.program
    return p === undefined || p.name === null ? null : `${p.location ?? 'personal'}:${p.name}`
  }

  private addKeep (mailbox: string, flags: string[], create: boolean): void {
    const name = mailboxName(mailbox)
    const prev = this.keeps.get(name)
    // RFC 5228 2.10.3: filing twice into one mailbox files once; the flags of the last of them apply (as in
    // Pigeonhole, checked by test/sieve/pigeonhole.test.ts)
    if (prev === undefined) this.keeps.set(name, { mailbox: name, flags: [...flags], create })
    else {
      prev.flags = [...flags]
      prev.create ||= create
    }
  }

  // ---- the walk ----

  async block (list: Node[]): Promise<void> {
    let chainTaken = false
    for (const c of list) {
      this.at = c.pos
      this.charge(1)
      if (c.name === 'if') {
        chainTaken = await this.evalTest(c.tests[0])
        if (chainTaken) await this.block(c.block ?? [])
      } else if (c.name === 'elsif') {
        if (!chainTaken) {
          chainTaken = await this.evalTest(c.tests[0])
          if (chainTaken) await this.block(c.block ?? [])
        }
      } else if (c.name === 'else') {
        if (!chainTaken) await this.block(c.block ?? [])
        chainTaken = true
      } else {
        await this.command(c)
      }
    }
  }

  async command (c: Node): Promise<void> {
    switch (c.name) {
      case 'stop': throw new Stop()
      case 'return': throw new Return()
      case 'keep': {
        this.countAction(c.pos)
        this.conflictsWithReject('keep', c.pos)
        this.lastDelivery = c.pos
        const flags = c.tags.has('flags') ? flagList(this.strings(c.tags.get('flags'))) : this.flags
        this.addKeep('INBOX', flags, false)
        this.implicitKeep = false
        return
      }
      case 'discard':
        this.implicitKeep = false
        return
      case 'fileinto': {
        this.countAction(c.pos)
        this.conflictsWithReject('fileinto', c.pos)
        this.lastDelivery = c.pos
        const mailbox = this.str(c.args[0])
        if (mailbox === '' || /[\x00\r\n]/.test(mailbox)) this.fail(`"${mailbox.slice(0, 100)}" is not a valid mailbox name`, c.args[0].pos)
        const flags = c.tags.has('flags') ? flagList(this.strings(c.tags.get('flags'))) : this.flags
        this.addKeep(mailbox, flags, c.tags.has('create'))
        if (!c.tags.has('copy')) this.implicitKeep = false
        return
      }
      case 'redirect': {
        this.countAction(c.pos)
        this.conflictsWithReject('redirect', c.pos)
        this.lastDelivery = c.pos
        const raw = this.str(c.args[0])
        const address = validRedirectAddress(raw)
        if (address === null) this.fail(`"${raw.slice(0, 100)}" is not a valid address to redirect to`, c.args[0].pos)
        // RFC 5228 2.10.3: one redirect per address; the local part is case-sensitive (RFC 5321 2.4), as Pigeonhole has it
        const at = address.lastIndexOf('@')
        const key = address.slice(0, at) + address.slice(at).toLowerCase()
        const copy = c.tags.has('copy')
        const prev = this.redirects.get(key)
        if (prev === undefined) {
          // RFC 5228 4.2 lets an implementation limit redirects; past the limit the script fails (and the message is kept)
          if (this.redirects.size >= this.limits.redirectsMax) this.fail(`more than ${this.limits.redirectsMax} redirects`, c.pos)
          this.redirects.set(key, { address, copy })
        } else {
          prev.copy &&= copy
        }
        if (!copy) this.implicitKeep = false
        return
      }
      case 'reject': case 'ereject': {
        this.countAction(c.pos)
        if (this.reject !== null) this.fail('a message can be rejected only once', c.pos)
        if (this.lastDelivery !== null) this.fail(`${c.name} cannot be used with keep, fileinto, redirect or vacation (line ${this.lastDelivery.line}) (RFC 5429 2.1)`, c.pos)
        this.reject = { reason: this.str(c.args[0]), ereject: c.name === 'ereject' }
        this.rejectAt = { pos: c.pos, script: this.scriptName() }
        this.implicitKeep = false
        return
      }
      case 'setflag': case 'addflag': case 'removeflag': {
        const list = flagList(this.strings(c.args[c.args.length - 1]))
        const variable = c.args.length === 2 ? this.str(c.args[0]) : null
        const current = variable === null ? this.flags : flagList([this.getVar(variable.toLowerCase(), false)])
        let next: string[]
        if (c.name === 'setflag') next = list
        else if (c.name === 'addflag') next = flagList([...current, ...list])
        else {
          const drop = new Set(list.map(f => f.toLowerCase()))
          next = current.filter(f => !drop.has(f.toLowerCase()))
        }
        if (variable === null) this.flags = next
        else this.setVar(variable.toLowerCase(), false, next.join(' '), c.pos)
        return
      }
      case 'set': {
        const full = c.args[0].t === 's' ? c.args[0].s.constant ?? '' : ''
        const dot = full.indexOf('.')
        const name = (dot === -1 ? full : full.slice(dot + 1)).toLowerCase()
        this.setVar(name, dot !== -1, modify(c, this.str(c.args[1])), c.pos)
        return
      }
      case 'global':
        for (const name of this.strings(c.args[0])) this.scope?.globalNames.add(name.toLowerCase())
        return
      case 'vacation': return await this.vacationAction(c)
      case 'include': return await this.include(c)
      case 'addheader': {
        const name = this.str(c.args[0])
        const value = this.str(c.args[1])
        if (!validFieldName(name)) this.fail(`"${name.slice(0, 100)}" is not a valid header field name`, c.args[0].pos)
        if (isProtectedHeader(name)) return // RFC 5293 4: protected fields are left alone
        if (++this.headersAdded > this.limits.headersAddedMax) this.fail(`more than ${this.limits.headersAddedMax} added header fields`, c.pos)
        if (Buffer.byteLength(value) > HEADER_FIELD_BYTES_MAX) this.fail(`header field value longer than ${HEADER_FIELD_BYTES_MAX} bytes`, c.args[1].pos)
        this.charge(this.view.fields.length >> 1) // the header is re-indexed
        this.view.add(name, value, c.tags.has('last'))
        return
      }
      case 'deleteheader': {
        const name = this.str(c.args[0])
        if (!validFieldName(name) || isProtectedHeader(name)) return
        let fields = this.view.named(name)
        const index = c.tags.get('index')
        if (index != null) {
          const i = this.num(index, 1)
          const f = c.tags.has('last') ? fields[fields.length - i] : fields[i - 1]
          fields = f === undefined ? [] : [f]
        }
        const patterns = c.args.length > 1 ? this.strings(c.args[1]) : null
        const doomed = new Set<Field>()
        for (const f of fields) {
          this.charge(1)
          if (patterns === null || this.test(c, [this.view.decoded(f)], patterns)) doomed.add(f)
        }
        if (doomed.size > 0) {
          this.charge(this.view.fields.length >> 1) // the header is rewritten and re-indexed
          this.view.remove(doomed)
        }
        return
      }
      default:
        this.fail(`"${c.name}" cannot run here`, c.pos)
    }
  }

  async evalTest (t: Node): Promise<boolean> {
    this.at = t.pos
    this.charge(1)
    switch (t.name) {
      case 'true': return true
      case 'false': return false
      case 'not': return !(await this.evalTest(t.tests[0]))
      case 'allof':
        for (const x of t.tests) if (!(await this.evalTest(x))) return false
        return true
      case 'anyof':
        for (const x of t.tests) if (await this.evalTest(x)) return true
        return false
      case 'size': return t.tags.has('over') ? this.msg.size > this.num(t.args[0], 0) : this.msg.size < this.num(t.args[0], 0)
      case 'exists':
        return this.strings(t.args[0]).every(h => this.view.named(h).length > 0)
      case 'header': {
        const values = this.fieldsFor(t, this.strings(t.args[0])).map(f => this.view.decoded(f))
        return this.test(t, values, this.strings(t.args[1]))
      }
      case 'address': {
        const values: string[] = []
        for (const f of this.fieldsFor(t, this.strings(t.args[0]).filter(isAddressHeader))) {
          for (const a of this.view.addresses(f)) {
            const v = addressPart(t, a)
            if (v !== null) values.push(v)
          }
        }
        return this.test(t, values, this.strings(t.args[1]))
      }
      case 'envelope': {
        const values: string[] = []
        for (const part of this.strings(t.args[0])) {
          const p = part.toLowerCase()
          const addr = p === 'from' ? this.msg.envelope.from : p === 'to' ? this.msg.envelope.to : p === 'auth' ? this.msg.envelope.auth : undefined
          if (addr === undefined) continue
          const at = addr.lastIndexOf('@')
          const v = addressPart(t, at === -1 ? { local: addr, domain: '' } : { local: addr.slice(0, at), domain: addr.slice(at + 1) })
          if (v !== null) values.push(v)
        }
        return this.test(t, values, this.strings(t.args[1]))
      }
      case 'hasflag': {
        const flags = t.args.length === 2 ? flagList(this.strings(t.args[0]).map(v => this.getVar(v.toLowerCase(), false))) : this.flags
        return this.test(t, flags, flagList(this.strings(t.args[t.args.length - 1])))
      }
      case 'string': {
        let values = this.strings(t.args[0])
        if (t.match === 'count') values = values.filter(v => v !== '') // RFC 5229 5: empty strings are not counted
        return this.test(t, values, this.strings(t.args[1]))
      }
      case 'body': {
        const transform = t.tags.has('raw') ? 'raw' : t.tags.has('content') ? 'content' : 'text'
        const values = this.view.bodies(transform, this.strings(t.tags.get('content')), this.limits.bodyBytesMax)
        this.charge(values.reduce((n, v) => n + (v.length >> 8), 0))
        // RFC 5173 5: the body test does not set match variables
        return matchAny(this.match, t, values, this.strings(t.args[0]), () => {})
      }
      case 'date': case 'currentdate': return this.dateTest(t)
      case 'mailboxexists': {
        for (const name of this.strings(t.args[0])) {
          const key = mailboxName(name)
          let exists = this.mailboxes.get(key)
          if (exists === undefined) {
            this.charge(ENVIRONMENT_CALL_STEPS)
            exists = await this.env.mailboxExists(key)
            this.mailboxes.set(key, exists)
          }
          if (!exists) return false
        }
        return true
      }
      case 'duplicate': return await this.duplicate(t)
      case 'environment': {
        const item = this.str(t.args[0]).toLowerCase()
        const value = environmentItem(this.env, item)
        return value !== null && this.test(t, [value], this.strings(t.args[1]))
      }
      default:
        return this.fail(`unknown test "${t.name}"`, t.pos)
    }
  }

  /** The named fields, in message order per name, narrowed by :index/:last (RFC 5260 6). */
  private fieldsFor (t: Node, names: string[]): Field[] {
    let fields: Field[] = []
    for (const h of names) fields.push(...this.view.named(h))
    const index = t.tags.get('index')
    if (index != null) {
      const i = this.num(index, 1)
      const f = t.tags.has('last') ? fields[fields.length - i] : fields[i - 1]
      fields = f === undefined ? [] : [f]
    }
    this.charge(fields.length)
    return fields
  }

  private localZone (): number {
    const z = this.env.zone
    return z !== undefined && validZone(z) ? zoneMinutes(z) : 0
  }

  private dateTest (t: Node): boolean {
    const part = this.str(t.args[t.name === 'date' ? 1 : 0])
    const keys = this.strings(t.args[t.name === 'date' ? 2 : 1])
    const zoneArg = t.tags.get('zone')
    let zone: number | null = null
    if (zoneArg != null) {
      const z = this.str(zoneArg)
      if (!validZone(z)) this.fail(`"${z}" is not a time zone (+hhmm or -hhmm)`, zoneArg.pos)
      zone = zoneMinutes(z)
    }
    let ms: number
    if (t.name === 'currentdate') {
      ms = this.env.now.getTime()
    } else {
      const fields = this.fieldsFor(t, [this.str(t.args[0])])
      const f = fields[0]
      if (f === undefined) return t.match === 'count' && this.test(t, [], keys)
      // RFC 5260 4: the date-time of a Received field is after its last ';'
      let value = this.view.decoded(f)
      let parsed = parseMailDate(value)
      if (parsed === null && value.includes(';')) {
        value = value.slice(value.lastIndexOf(';') + 1)
        parsed = parseMailDate(value)
      }
      if (parsed === null) return t.match === 'count' && this.test(t, [], keys)
      ms = parsed.ms
      if (t.tags.has('originalzone')) zone = parsed.zone
    }
    const v = datePart(ms, zone ?? this.localZone(), part)
    if (v === null) this.fail(`unknown date part "${part}"`, t.args[t.name === 'date' ? 1 : 0].pos)
    return this.test(t, [v], keys)
  }

  /** RFC 7352. The key is the handle and the unique id; `seen` answers; memory records it if the outcome is carried out. */
  private async duplicate (t: Node): Promise<boolean> {
    let id: string | null
    if (t.tags.has('uniqueid')) id = this.str(t.tags.get('uniqueid'))
    else {
      const name = t.tags.has('header') ? this.str(t.tags.get('header')) : 'message-id'
      const f = this.view.named(name)[0]
      id = f === undefined ? null : this.view.decoded(f).trim()
    }
    if (id === null || id === '') return false // nothing to recognise the message by
    const handle = t.tags.has('handle') ? this.str(t.tags.get('handle')) : ''
    const key = sha(`duplicate\0${handle}\0${id}`)
    const seconds = Math.min(DUPLICATE_SECONDS_MAX, Math.max(1, this.num(t.tags.get('seconds'), DUPLICATE_SECONDS_DEFAULT)))
    const known = this.duplicates.get(key)
    if (known !== undefined) return known
    this.charge(ENVIRONMENT_CALL_STEPS)
    const seen = await this.env.seen('duplicate', key, seconds)
    this.duplicates.set(key, seen)
    if (!seen || t.tags.has('last')) this.memory.push({ kind: 'duplicate', key, seconds })
    return seen
  }

  private async vacationAction (c: Node): Promise<void> {
    this.countAction(c.pos)
    // a vacation after a reject is blamed on the vacation (both answer the sender), as Pigeonhole does
    if (this.reject !== null) this.fail(`vacation cannot be used with reject (line ${this.rejectAt?.pos.line ?? 0}): both answer the sender (RFC 5429 2.1)`, c.pos)
    this.lastDelivery = c.pos
    if (this.vacationDone) this.fail('only one vacation action per message (RFC 5230 4)', c.pos)
    this.vacationDone = true
    const reason = this.str(c.args[0])
    const subjectArg = c.tags.has('subject') ? this.str(c.tags.get('subject')) : null
    const from = c.tags.has('from') ? this.str(c.tags.get('from')) : null
    const addresses = this.strings(c.tags.get('addresses'))
    const mime = c.tags.has('mime')
    const seconds = vacationSeconds(c.tags.has('seconds') ? { seconds: this.num(c.tags.get('seconds'), 0) } : c.tags.has('days') ? { days: this.num(c.tags.get('days'), 0) } : {})
    // RFC 5230 4.2: without :handle, replies with the same reason, subject, from and mime share one memory
    const handle = c.tags.has('handle') ? this.str(c.tags.get('handle')) : sha(`${reason}\0${subjectArg ?? ''}\0${from ?? ''}\0${mime ? 1 : 0}`).slice(0, 32)
    const to = vacationAllowed(this.view, this.msg, this.env.user, addresses)
    if (to === null) return
    const key = sha(`vacation\0${handle}\0${to.toLowerCase()}`)
    if (await this.env.seen('vacation', key, seconds)) return
    const original = this.view.named('subject')[0]
    const subject = subjectArg ?? (original === undefined ? 'Automated reply' : `Auto: ${this.view.decoded(original)}`) // RFC 5230 5.5
    const messageId = this.view.named('message-id')[0]?.value ?? null
    const refs = this.view.named('references')[0]?.value ?? null
    this.vacation = {
      to, from, subject: subject.replace(/[\r\n]+/g, ' '), body: reason, mime, handle, seconds, key,
      inReplyTo: messageId, references: messageId === null ? refs : refs === null ? messageId : `${refs} ${messageId}`
    }
    this.memory.push({ kind: 'vacation', key, seconds })
  }

  /** RFC 6609: include runs another script in its own variable scope; global variables are shared. */
  private async include (c: Node): Promise<void> {
    const t = includeTarget(c)
    if (t.once && this.included.has(t.key)) return
    if (this.stack.includes(t.key)) this.fail(`include loop: "${t.name}" includes itself`, c.pos)
    if (this.stack.length >= this.limits.includeDepthMax) this.fail(`includes nested deeper than ${this.limits.includeDepthMax}`, c.pos)
    const program = await this.resolve(c, t)
    this.included.add(t.key)
    if (program === null) return // :optional and missing
    const outer = this.scope
    this.scope = { program, locals: new Map(), globalNames: new Set() }
    this.stack.push(t.key)
    this.atScript = t.key
    try {
      await this.block(program.commands)
    } catch (e) {
      if (!(e instanceof Return)) throw e
    } finally {
      this.stack.pop()
      this.scope = outer
      this.atScript = this.stack[this.stack.length - 1] ?? null
    }
  }

  private async resolve (c: Node, t: ReturnType<typeof includeTarget>): Promise<Program | null> {
    const parent = this.scope?.program
    if (parent !== undefined && parent.includes.has(t.key)) return parent.includes.get(t.key) ?? null
    if (this.runtimeCompiled.has(t.key)) return this.runtimeCompiled.get(t.key) ?? null
    if (this.runtimeCompiled.size >= this.limits.includeScriptsMax) this.fail(`more than ${this.limits.includeScriptsMax} included scripts`, c.pos)
    this.charge(ENVIRONMENT_CALL_STEPS)
    const text = this.env.resolveInclude === undefined ? null : await this.env.resolveInclude(t.name, t.location)
    if (text === null) {
      if (!t.optional) this.fail(`included script "${t.name}" (${t.location}) does not exist`, c.pos)
      this.runtimeCompiled.set(t.key, null)
      return null
    }
    const r = compileProgram(text, this.limits, t.name, t.location)
    if (r.program === null) {
      const e = r.errors[0]
      this.fail(`included script "${t.name}" (${t.location}) does not compile: line ${e.line} column ${e.column}: ${e.message}`, c.pos)
    }
    this.runtimeCompiled.set(t.key, r.program)
    return r.program
  }

  async main (program: Program): Promise<void> {
    this.scope = { program, locals: new Map(), globalNames: new Set() }
    try {
      await this.block(program.commands)
    } catch (e) {
      if (!(e instanceof Stop) && !(e instanceof Return)) throw e
    }
  }

  outcome (): SieveOutcome {
    const keep = [...this.keeps.values()]
    if (this.implicitKeep && this.reject === null) {
      const inbox = keep.find(k => k.mailbox === 'INBOX')
      if (inbox === undefined) keep.push({ mailbox: 'INBOX', flags: [...this.flags], create: false })
    }
    return {
      keep,
      redirects: [...this.redirects.values()],
      reject: this.reject,
      vacation: this.vacation,
      memory: this.memory,
      editedMessage: this.view.edited ? this.view.build() : null,
      errors: []
    }
  }
}

/** RFC 5228 2.7.4 and RFC 5233 4: the address part a test compares, or null when the address has none. */
function addressPart (t: Node, a: MailAddress): string | null {
  if (t.tags.has('localpart')) return a.local
  if (t.tags.has('domain')) return a.domain
  if (t.tags.has('user') || t.tags.has('detail')) {
    const plus = a.local.indexOf('+')
    if (t.tags.has('user')) return plus === -1 ? a.local : a.local.slice(0, plus)
    return plus === -1 ? null : a.local.slice(plus + 1)
  }
  return a.domain === '' ? a.local : `${a.local}@${a.domain}`
}

/** RFC 5229 4: modifiers apply from the highest precedence down (:lower/:upper, then :lowerfirst/:upperfirst, then quoting, then :length). */
function modify (c: Node, value: string): string {
  let v = value
  if (c.tags.has('lower')) v = v.toLowerCase()
  if (c.tags.has('upper')) v = v.toUpperCase()
  if (c.tags.has('lowerfirst')) v = v.slice(0, 1).toLowerCase() + v.slice(1)
  if (c.tags.has('upperfirst')) v = v.slice(0, 1).toUpperCase() + v.slice(1)
  if (c.tags.has('quotewildcard')) v = v.replace(/[*?\\]/g, '\\$&')
  if (c.tags.has('quoteregex')) v = v.replace(/[\\^$.[\]|()?*+{}]/g, '\\$&')
  if (c.tags.has('length')) v = String([...v].length)
  return v
}

/** RFC 5183 environment items we can answer. */
function environmentItem (env: SieveEnvironment, item: string): string | null {
  switch (item) {
    case 'domain': return env.domain
    case 'host': return env.host
    case 'location': return 'MDA'
    case 'name': return 'mailgrid'
    case 'phase': return 'during'
    case 'version': return '1'
    default: return null
  }
}

function errorOf (e: unknown, at: Pos, script: string | null): SieveError {
  if (e instanceof RuntimeError) {
    return { line: e.pos.line, column: e.pos.column, offset: e.pos.offset, message: e.message, ...(e.script === null ? {} : { script: e.script }) }
  }
  const message = e instanceof StepBudgetExceeded || e instanceof MatchError ? e.message : `internal error: ${(e as Error)?.message ?? String(e)}`
  return { line: at.line, column: at.column, offset: at.offset, message, ...(script === null ? {} : { script }) }
}

export async function execute (ast: ScriptAst, message: SieveMessage, env: SieveEnvironment): Promise<SieveOutcome> {
  let run: Run | null = null
  try {
    run = new Run(ast, message, env)
    await run.main(ast.main)
    return run.outcome()
  } catch (e) {
    // RFC 5228 2.10.6: a runtime error cancels every action; the message is kept
    const at = run?.at ?? { line: 1, column: 1, offset: 0 }
    return { keep: [{ mailbox: 'INBOX', flags: [], create: false }], redirects: [], reject: null, vacation: null, memory: [], editedMessage: null, errors: [errorOf(e, at, run?.atScript ?? null)] }
  }
}

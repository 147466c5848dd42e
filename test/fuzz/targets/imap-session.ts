// The IMAP command layer: a real Session (node/imap/session.ts: parser, dispatcher, every command module)
// against a real LevelDB store in a temporary directory, fed a client transcript; only the socket is replaced
// by an in-memory connection with the same methods. A defect is what the session logs as an internal error
// (an exception that escaped a command where it had to answer BAD or NO: `imap_internal_error`,
// `imap_dispatch_failed`), a stream literal whose length differs from what it announced, output that does
// not read as IMAP responses (checkResponses), or a session that never settles. Each input is one session; most start logged in (so the inputs reach mailbox commands),
// some before login. The user's mail is reset every RESET_INPUTS inputs, so the mailbox stays small.

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { createStore } from '../../../store/index.ts'
import type { Store } from '../../../store/index.ts'
import { createAuthenticator } from '../../../node/auth.ts'
import { AuthThrottle } from '../../../node/limits.ts'
import { Session } from '../../../node/imap/session.ts'
import type { Connection } from '../../../node/imap/connection.ts'
import type { Part } from '../../../node/imap/protocol/compiler.ts'
import { COMMANDS_PER_SECOND_MAX, DEFAULT_LIMITS } from '../../../node/imap/constants.ts'
import type { ImapComponents } from '../../../node/imap/types.ts'
import { rng } from '../engine.ts'
import type { FuzzInput, FuzzTarget } from '../engine.ts'
import { IMAP_DICTIONARY, sessionArb } from '../grammars/imap.ts'
import { loadCorpus } from '../corpus.ts'
import { richMessage, simpleMessage } from '../../imap/helpers.ts'

const USER = 'alice@example.com'
const PASSWORD = 'secret pass'
/** Inputs between two resets of the user's mail (a fresh user with three messages). */
const RESET_INPUTS = 200
/** Output kept per session for the checks; the rest is only counted. */
const OUTPUT_KEPT_BYTES = 64 * 1024

/** The socket edge, in memory: what Session and the command modules call on a Connection. */
class MemoryConnection {
  readonly remoteAddress = '127.0.0.1'
  secure = false
  compressed = false
  closed = false
  /** 'resume' once the session waits for input; 'pause' while a command runs. */
  last: 'pause' | 'resume' = 'resume'
  output: Buffer[] = []
  outputBytes = 0
  defect: Error | null = null
  #onChange: (() => void) | null = null
  session: Session | null = null

  changed (): Promise<void> {
    return new Promise(resolve => { this.#onChange = resolve })
  }

  #notify (): void {
    const f = this.#onChange
    this.#onChange = null
    f?.()
  }

  setTimeout (): void {}
  pause (): void { this.last = 'pause'; this.#notify() }
  resume (): void { this.last = 'resume'; this.#notify() }

  async write (parts: Part[] | Buffer): Promise<void> {
    if (this.closed) return
    for (const part of Buffer.isBuffer(parts) ? [parts] : parts) {
      if (Buffer.isBuffer(part)) {
        this.#keep(part)
        continue
      }
      let sent = 0
      for await (const chunk of part.open()) {
        sent += chunk.length
        this.#keep(Buffer.from(chunk))
      }
      if (sent !== part.size) this.defect ??= new Error(`stream literal announced ${part.size} bytes and sent ${sent}`)
    }
  }

  #keep (b: Buffer): void {
    if (process.env.FUZZ_DEBUG === "1") process.stdout.write(b)
    if (this.outputBytes < OUTPUT_KEPT_BYTES) this.output.push(b)
    this.outputBytes += b.length
  }

  async end (): Promise<void> { this.#close() }
  destroy (): void { this.#close() }
  #close (): void {
    if (this.closed) return
    this.closed = true
    this.session?.onClose()
    this.#notify()
  }

  async startTls (): Promise<void> { this.secure = true }
  async startCompression (): Promise<void> { this.compressed = true }
  async splice (): Promise<void> { this.#close() }
  flush (): Promise<void> { return Promise.resolve() }
}

/**
 * The output as a client reads it: every line outside a literal is untagged (`* `), a continuation (`+`) or a
 * tagged status; a literal's announced size is skipped. Anything else is response splitting (a CR or LF that
 * escaped into a string, a literal longer or shorter than announced).
 */
export function checkResponses (out: Buffer): void {
  let pos = 0
  while (pos < out.length) {
    const lf = out.indexOf(0x0a, pos)
    if (lf === -1) throw new Error(`output ends inside a line: ${JSON.stringify(out.subarray(pos, pos + 80).toString('latin1'))}`)
    const line = out.subarray(pos, lf + 1).toString('latin1')
    if (!line.endsWith('\r\n')) throw new Error(`a response line ends in a bare LF: ${JSON.stringify(line.slice(0, 120))}`)
    if (!/^(\* |\+( |\r\n)|[!#$&'\x2c-\x5b\x5d-\x7a|}~^_`]+ (OK|NO|BAD)[ \r])/.test(line)) throw new Error(`not an IMAP response line: ${JSON.stringify(line.slice(0, 120))}`)
    pos = lf + 1
    // a line may end in literals, each followed by more of the same response line
    for (let m = /~?\{(\d+)\}\r\n$/.exec(line); m !== null;) {
      pos += Number(m[1])
      const next = out.indexOf(0x0a, pos)
      if (next === -1) {
        if (pos > out.length) throw new Error('a literal runs past the end of the output')
        return
      }
      const rest = out.subarray(pos, next + 1).toString('latin1')
      pos = next + 1
      m = /~?\{(\d+)\}\r\n$/.exec(rest)
    }
  }
}

interface Logged { level: number, event?: string, err?: { type?: string, message?: string, stack?: string }, msg?: string }

let dir = ''
let store: Store | null = null
let components: ImapComponents | null = null
const logged: Logged[] = []
let inputs = 0

async function resetUser (): Promise<void> {
  const s = store!
  if (await s.getUser(USER) !== null) await s.deleteUser(USER)
  await s.addUser({ address: USER, password: PASSWORD })
  await s.deliver(richMessage(), [{ user: USER, prefix: '' }])
  await s.deliver(simpleMessage('second', 'body two\r\n'), [{ user: USER, prefix: '', flags: ['\\Seen'] }])
  await s.append(USER, 'Sent', { raw: simpleMessage('sent one') })
}

/** Why a session's log shows a defect, as an Error whose stack points into the code that threw. */
function defectOf (entry: Logged): Error {
  const e = new Error(`${entry.event ?? 'error log'}: ${entry.err?.type ?? ''}: ${entry.err?.message ?? entry.msg ?? ''}`)
  if (entry.err?.stack !== undefined) e.stack = `${e.message}\n${entry.err.stack.split('\n').slice(1).join('\n')}`
  return e
}

let lastOutput = Buffer.alloc(0)
/** What the last session wrote (its first OUTPUT_KEPT_BYTES), for regression tests. */
export function lastSessionOutput (): string {
  return lastOutput.toString('latin1')
}

/**
 * The lines of one input are cut at one second of the session's command rate: the harness's clock turns the
 * rate limit off, so without the cut 1,500 pipelined commands (0.3 ms each) read as one input over HANG_MS.
 */
function withinOneSecond (data: Buffer): Buffer {
  let lf = -1
  for (let n = 0; n < COMMANDS_PER_SECOND_MAX; n++) {
    lf = data.indexOf(0x0a, lf + 1)
    if (lf === -1) return data
  }
  return data.subarray(0, lf + 1)
}

export async function runImapSession (input: FuzzInput): Promise<void> {
  const { knob } = input
  const data = withinOneSecond(input.data)
  if (inputs++ % RESET_INPUTS === 0) await resetUser()
  const r = rng(knob)
  const connection = new MemoryConnection()
  const session = new Session(components!, { init: { endpoint: { host: '127.0.0.1', port: 0 }, allowInsecureAuth: true }, limits: DEFAULT_LIMITS, secureContext: null }, connection as unknown as Connection)
  connection.session = session
  logged.length = 0
  if ((knob & 7) !== 0) session.login(USER)
  session.start()
  const pieces = 1 + r.int(3)
  const size = Math.ceil(data.length / pieces)
  for (let off = 0; off < data.length && !connection.closed; off += size) {
    session.onData(data.subarray(off, off + size))
    // settled: the session waits for input (or an IDLE/AUTHENTICATE line) or it closed
    while (!connection.closed && connection.last === 'pause') await connection.changed()
  }
  connection.destroy()
  // a command may still be finishing its answer after the close: give it its turn before judging the log
  await new Promise(resolve => setImmediate(resolve))
  lastOutput = Buffer.concat(connection.output)
  if (connection.defect !== null) throw connection.defect
  if (connection.outputBytes <= OUTPUT_KEPT_BYTES) checkResponses(lastOutput)
  const bad = logged.find(l => l.level >= 50 || l.event === 'imap_internal_error' || l.event === 'imap_dispatch_failed')
  if (bad !== undefined) throw defectOf(bad)
}

export const imapSession: FuzzTarget = {
  name: 'imap-session',
  grammar: sessionArb,
  corpus: loadCorpus('imap'),
  dictionary: IMAP_DICTIONARY,
  inputBytesMax: 64 * 1024,
  run: runImapSession,
  async setup () {
    dir = mkdtempSync(join(tmpdir(), 'mailgrid-fuzz-imap-'))
    store = createStore({}, { path: join(dir, 'store'), scryptLogN: 10, sync: false })
    await store.start()
    await store.addDomain('example.com')
    await store.addUser({ address: 'bob@example.com', password: PASSWORD })
    const logger = pino({ level: 'warn' }, { write (s: string) { logged.push(JSON.parse(s) as Logged) } })
    const auth = createAuthenticator({ directory: store, throttle: new AuthThrottle({ perIp: 1_000_000_000, perAccount: 1_000_000_000 }) })
    let clock = Date.UTC(2026, 1, 2)
    // a second per command: the session's rate limit never delays an input
    components = { store, auth, logger, now: () => (clock += 1000) }
    inputs = 0
  },
  async teardown () {
    await store?.stop()
    store = null
    rmSync(dir, { recursive: true, force: true })
  }
}

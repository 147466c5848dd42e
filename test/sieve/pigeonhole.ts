// Runs Debian's Pigeonhole (dovecot-sieve) on a script and a message, for differential tests: `sieve-test`
// executes without delivering and prints the actions it would take; `sievec` compiles and prints errors with
// their line. A private config in a temporary directory; nothing of the system's Dovecot is touched.

import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export const SIEVE_TEST = '/usr/bin/sieve-test'
export const SIEVEC = '/usr/bin/sievec'
const NOBODY_ID = 65534 // Dovecot refuses mail access as uid 0
const RUN_TIMEOUT_MS = 60_000

export function isPigeonholeInstalled (): boolean {
  return existsSync(SIEVE_TEST) && existsSync(SIEVEC)
}

/** What Pigeonhole says it would do, reduced to what both implementations can be compared on. */
export interface PigeonholeResult {
  failed: boolean // a runtime error, resolved with the implicit keep
  errorLine: number | null // the script line of that runtime error
  stores: string[] // "folder[flags]" sorted, flags lower-cased and sorted; the implicit keep included
  redirects: string[]
  reject: string | null
  vacation: { seconds: number } | null
  output: string
}

export class Pigeonhole {
  readonly dir: string
  private n = 0

  private constructor (dir: string) {
    this.dir = dir
  }

  static async start (): Promise<Pigeonhole> {
    const dir = await mkdtemp(join(tmpdir(), 'mailgrid-pigeonhole-'))
    await chmod(dir, 0o777)
    const uid = process.getuid?.() === 0 ? NOBODY_ID : process.getuid?.() ?? NOBODY_ID
    const gid = process.getgid?.() === 0 ? NOBODY_ID : process.getgid?.() ?? NOBODY_ID
    for (const d of ['home', 'run', 'state', 'personal', 'global']) {
      await mkdir(join(dir, d))
      await chmod(join(dir, d), 0o777)
    }
    await writeFile(join(dir, 'dovecot.conf'), [
      `mail_uid = ${uid}`, `mail_gid = ${gid}`, 'first_valid_uid = 1',
      `mail_home = ${dir}/home`, `mail_location = maildir:${dir}/home/Maildir`,
      `base_dir = ${dir}/run`, `state_dir = ${dir}/state`, 'log_path = /dev/stderr', 'protocols =',
      'plugin {',
      `  sieve = file:${dir}/personal;active=${dir}/active.sieve`, // where include :personal looks
      `  sieve_global = ${dir}/global`, // and include :global
      '  sieve_extensions = +editheader +vacation-seconds',
      '  sieve_vacation_min_period = 60s', // as node/sieve/vacation.ts
      '  sieve_vacation_max_period = 90d',
      '}', ''
    ].join('\n'))
    return new Pigeonhole(dir)
  }

  async stop (): Promise<void> {
    await rm(this.dir, { recursive: true, force: true })
  }

  private async files (script: string, message?: Buffer): Promise<{ script: string, message: string }> {
    const id = ++this.n
    const s = join(this.dir, `s${id}.sieve`)
    const m = join(this.dir, `m${id}.eml`)
    await writeFile(s, script)
    await chmod(s, 0o666)
    if (message !== undefined) {
      await writeFile(m, message)
      await chmod(m, 0o666)
    }
    return { script: s, message: m }
  }

  private exec (cmd: string, args: string[]): Promise<string> {
    return new Promise(resolve => {
      execFile(cmd, args, { timeout: RUN_TIMEOUT_MS, env: { ...process.env, TZ: 'UTC' }, cwd: this.dir }, (_err, stdout, stderr) => {
        resolve(`${stdout}${stderr}`)
      })
    })
  }

  /** Replaces the scripts include can reach: keys "personal:name" and "global:name". */
  async setIncludes (scripts: Record<string, string>): Promise<void> {
    for (const loc of ['personal', 'global']) {
      await rm(join(this.dir, loc), { recursive: true, force: true })
      await mkdir(join(this.dir, loc))
      await chmod(join(this.dir, loc), 0o777)
    }
    for (const [key, text] of Object.entries(scripts)) {
      const [loc, name] = key.split(':')
      const file = join(this.dir, loc, `${name}.sieve`)
      await writeFile(file, text)
      await chmod(file, 0o666)
    }
  }

  /** sievec: the line numbers of the errors, [] when it compiles. */
  async compileErrors (script: string): Promise<{ lines: number[], output: string }> {
    const f = await this.files(script)
    const output = await this.exec(SIEVEC, ['-c', join(this.dir, 'dovecot.conf'), f.script, `${f.script}.svbin`])
    const lines = [...output.matchAll(/: line (\d+): error:/g)].map(m => Number(m[1]))
    if (lines.length === 0 && /Fatal|error/.test(output)) lines.push(0)
    return { lines, output }
  }

  async run (script: string, message: Buffer, envelope: { from: string, to: string }): Promise<PigeonholeResult> {
    if (envelope.from === '') throw new Error('sieve-test takes no null sender (-f "" and -f "<>" are refused)')
    const f = await this.files(script, message)
    const output = await this.exec(SIEVE_TEST, ['-c', join(this.dir, 'dovecot.conf'), '-f', envelope.from, '-r', envelope.to, f.script, f.message])
    const failed = /final result: failed/.test(output)
    const line = failed ? /: line (\d+): error:/.exec(output) : null
    const r: PigeonholeResult = { failed, errorLine: line === null ? null : Number(line[1]), stores: [], redirects: [], reject: null, vacation: null, output }
    let store: { folder: string, flags: string[] } | null = null
    const flush = (): void => {
      if (store !== null) r.stores.push(store.flags.length === 0 ? store.folder : `${store.folder}[${store.flags.sort().join(' ')}]`)
      store = null
    }
    for (const line of output.split('\n')) {
      let m: RegExpExecArray | null
      if ((m = /^ \* store message in folder: (.*)$/.exec(line)) !== null) { flush(); store = { folder: m[1], flags: [] }; continue }
      if ((m = /^\s+\+ (?:add|set) IMAP flags: (.*)$/.exec(line)) !== null && store !== null) { store.flags.push(...m[1].toLowerCase().split(' ')); continue }
      if (/^\s+[+=]/.test(line) && store !== null) continue
      flush()
      if ((m = /^ \* redirect message to: <(.*)>$/.exec(line)) !== null) r.redirects.push(m[1])
      else if ((m = /^ \* reject message with reason: (.*)$/.exec(line)) !== null) r.reject = m[1]
      else if (/^ \* send vacation message:/.test(line)) r.vacation = { seconds: 0 }
      else if ((m = /^\s+=> seconds : (\d+)/.exec(line)) !== null && r.vacation !== null) r.vacation.seconds = Number(m[1])
    }
    flush()
    if (r.failed && r.stores.length === 0) r.stores.push('INBOX')
    r.stores.sort()
    r.redirects.sort()
    return r
  }
}

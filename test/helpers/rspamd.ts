// A private rspamd for tests: Debian's `rspamd`, started in the foreground with a configuration of its own in
// a temporary directory (its own dbdir, log and pid file), one normal worker on a free loopback port, no
// controller, no proxy, no redis, no maps fetched from anywhere, and a stub resolver pointed at a dead loopback
// port so no query leaves the machine. A tiny TLD list replaces the 9 600-suffix one (10 s of compiling at
// start). `rules` is Lua loaded as rspamd's `lua` option: the test's own symbols.

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from './ports.ts'

const RSPAMD = '/usr/bin/rspamd'
const START_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 10_000
const PROBE_INTERVAL_MS = 100
const PROBE_TIMEOUT_MS = 1000
const OUTPUT_CHARS_MAX = 16_384

export interface RspamdServer {
  /** The normal worker's base URL, for filters.rspamd.url. */
  readonly url: string
  /** rspamd's log so far. */
  log (): Promise<string>
  /** Stops rspamd (every process of it) and removes its files; safe to call twice. */
  stop (): Promise<void>
}

export function isRspamdInstalled (): boolean {
  return existsSync(RSPAMD)
}

export async function startRspamd (init: { rules?: string, actions?: { reject: number, addHeader: number, greylist: number } } = {}): Promise<RspamdServer> {
  const host = '127.0.0.1'
  const port = await freePort(host)
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-rspamd-'))
  const logFile = join(dir, 'rspamd.log')
  const a = init.actions ?? { reject: 15, addHeader: 6, greylist: 4 }
  await writeFile(join(dir, 'tld.dat'), 'com\norg\nnet\ntest\nexample\n')
  await writeFile(join(dir, 'rules.lua'), init.rules ?? '')
  await writeFile(join(dir, 'rspamd.conf'), `
options {
  pidfile = "${dir}/rspamd.pid";
  dbdir = "${dir}";
  tempdir = "${dir}";
  url_tld = "${dir}/tld.dat";
  dns { nameserver = ["127.0.0.1:1"]; timeout = 1s; retransmits = 1; }
}
lua = "${dir}/rules.lua";
logging { type = "file"; filename = "${logFile}"; level = "info"; }
actions { reject = ${a.reject}; add_header = ${a.addHeader}; greylist = ${a.greylist}; }
worker "normal" { bind_socket = "${host}:${port}"; count = 1; }
`)
  // rspamd refuses to keep root privileges unless told which user to run as
  const asRoot = process.getuid?.() === 0 ? ['-u', 'root', '-g', 'root'] : []
  // its own process group: the main process and its workers are stopped together
  const child: ChildProcess = spawn(RSPAMD, ['-f', '-c', join(dir, 'rspamd.conf'), ...asRoot], { stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  let output = ''
  const keep = (b: Buffer): void => { if (output.length < OUTPUT_CHARS_MAX) output += b.toString() }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  const url = `http://${host}:${port}`
  let stopped = false

  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      const pid = child.pid
      try { process.kill(-pid, 'SIGTERM') } catch {}
      const timer = setTimeout(() => { try { process.kill(-pid, 'SIGKILL') } catch {} }, STOP_TIMEOUT_MS)
      await exited
      clearTimeout(timer)
    }
    // the workers leave with the main process; wait until the port is really closed
    const deadline = Date.now() + STOP_TIMEOUT_MS
    while (await pong(url) && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, PROBE_INTERVAL_MS))
    await rm(dir, { recursive: true, force: true })
  }

  const deadline = Date.now() + START_TIMEOUT_MS
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const log = await readFile(logFile, 'utf8').catch(() => '')
      await stop()
      throw new Error(`rspamd exited (${child.exitCode ?? child.signalCode}): ${output.trim()}\n${log}`)
    }
    if (await pong(url)) break
    if (Date.now() > deadline) {
      await stop()
      throw new Error(`rspamd did not answer on ${url} in ${START_TIMEOUT_MS} ms: ${output.trim()}`)
    }
    await new Promise(resolve => setTimeout(resolve, PROBE_INTERVAL_MS))
  }
  return {
    url,
    async log () { return await readFile(logFile, 'utf8').catch(() => '') },
    stop
  }
}

async function pong (url: string): Promise<boolean> {
  try {
    const res = await fetch(url + '/ping', { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) })
    return (await res.text()).trim() === 'pong'
  } catch {
    return false
  }
}

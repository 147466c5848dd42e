// A private DNS server for tests: Debian's dnsmasq (package dnsmasq-base) on a loopback address and a free
// port, answering only from the records the test gives (no /etc/resolv.conf, no /etc/hosts, no upstream), so
// MX, A/AAAA, TXT and raw records (a null MX, RFC 7505) are whatever the test says. Names under `localDomains`
// (default: every *.test name) that have no record answer NXDOMAIN; names elsewhere answer REFUSED.
// `server` is the 'host:port' string for outbound.dnsServers. setRecords restarts dnsmasq on the same port.

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { Resolver } from 'node:dns/promises'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const DNSMASQ = '/usr/sbin/dnsmasq'
const START_TIMEOUT_MS = 10_000
const STOP_TIMEOUT_MS = 5_000
const PROBE_INTERVAL_MS = 50
const TXT_STRING_BYTES_MAX = 255 // RFC 1035 3.3: a <character-string> is one length byte and at most 255 bytes

export interface DnsRecords {
  mx?: Array<{ name: string, host: string, preference: number }>
  /** A or AAAA, by the address's family; several entries for one name give several addresses. */
  address?: Array<{ name: string, address: string }>
  /** One TXT record per entry; a text longer than 255 bytes is split into 255-byte strings (as DKIM keys are). */
  txt?: Array<{ name: string, text: string }>
  /** A null MX (RFC 7505: preference 0, exchange ".") for each name. */
  nullMx?: string[]
  /** Any record as type number and RDATA in hex (dnsmasq's --dns-rr). */
  raw?: Array<{ name: string, type: number, hex: string }>
  /** CNAME alias -> target (the target must be a name with records here). */
  cname?: Array<{ name: string, target: string }>
}

export interface DnsServer {
  /** 'host:port', for outbound.dnsServers. */
  readonly server: string
  readonly host: string
  readonly port: number
  /** Replaces every record (dnsmasq is restarted on the same address and port). */
  setRecords (records: DnsRecords): Promise<void>
  /** dnsmasq's log so far (every query is logged). */
  log (): Promise<string>
  /** Stops dnsmasq and removes its files; safe to call twice. */
  stop (): Promise<void>
}

export function isDnsmasqInstalled (): boolean {
  return existsSync(DNSMASQ)
}

export async function startDns (init: { records: DnsRecords, host?: string, port?: number, localDomains?: string[] }): Promise<DnsServer> {
  const host = init.host ?? '127.0.0.1'
  const port = init.port ?? await freeUdpTcpPort(host)
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-dns-'))
  const conf = join(dir, 'dnsmasq.conf')
  const logFile = join(dir, 'dnsmasq.log')
  const locals = init.localDomains ?? ['test']
  let child: ChildProcess | null = null
  let stopped = false

  const kill = async (): Promise<void> => {
    const c = child
    child = null
    if (c === null || c.exitCode !== null || c.signalCode !== null) return
    const exited = new Promise<void>(resolve => c.once('exit', () => resolve()))
    c.kill('SIGTERM')
    const timer = setTimeout(() => c.kill('SIGKILL'), STOP_TIMEOUT_MS)
    await exited
    clearTimeout(timer)
  }

  const launch = async (records: DnsRecords): Promise<void> => {
    await writeFile(conf, config(host, port, logFile, locals, records))
    const c = spawn(DNSMASQ, [`--conf-file=${conf}`], { stdio: ['ignore', 'ignore', 'pipe'] })
    child = c
    let stderr = ''
    c.stderr?.on('data', (b: Buffer) => { if (stderr.length < 8192) stderr += b.toString() })
    const deadline = Date.now() + START_TIMEOUT_MS
    for (;;) {
      if (c.exitCode !== null || c.signalCode !== null) {
        throw new Error(`dnsmasq exited (${c.exitCode ?? c.signalCode}): ${stderr.trim()}\n${await readFile(logFile, 'utf8').catch(() => '')}`)
      }
      if (await answers(host, port)) return
      if (Date.now() > deadline) {
        await kill()
        throw new Error(`dnsmasq did not answer on ${host}:${port} in ${START_TIMEOUT_MS} ms: ${stderr.trim()}`)
      }
      await new Promise(resolve => setTimeout(resolve, PROBE_INTERVAL_MS))
    }
  }

  try {
    await launch(init.records)
  } catch (err) {
    await rm(dir, { recursive: true, force: true })
    throw err
  }
  return {
    server: `${host}:${port}`,
    host,
    port,
    async setRecords (records) {
      if (stopped) throw new Error('dns server stopped')
      await kill()
      await launch(records)
    },
    async log () { return await readFile(logFile, 'utf8').catch(() => '') },
    async stop () {
      if (stopped) return
      stopped = true
      await kill()
      await rm(dir, { recursive: true, force: true })
    }
  }
}

/** dnsmasq's configuration: one option a line, as `--option=value` without the dashes. */
function config (host: string, port: number, logFile: string, locals: string[], r: DnsRecords): string {
  const lines = [
    'keep-in-foreground',
    'no-resolv',
    'no-hosts',
    'no-poll',
    'pid-file=', // none: the system's /run/dnsmasq.pid is not ours
    `listen-address=${host}`,
    'bind-interfaces',
    `port=${port}`,
    `log-facility=${logFile}`,
    'log-queries',
    'cache-size=0', // answers come from the configuration; nothing to cache, nothing stale after a restart
    ...locals.map(d => `local=/${d}/`)
  ]
  for (const m of r.mx ?? []) lines.push(`mx-host=${m.name},${m.host},${m.preference}`)
  const byName = new Map<string, string[]>()
  for (const a of r.address ?? []) byName.set(a.name, [...(byName.get(a.name) ?? []), a.address])
  for (const [name, addrs] of byName) lines.push(`host-record=${name},${addrs.join(',')}`)
  for (const t of r.txt ?? []) lines.push(`txt-record=${t.name},${txtStrings(t.text).map(s => `"${s}"`).join(',')}`)
  // RFC 7505 3: preference 0, exchange the root name (a single zero byte).
  for (const name of r.nullMx ?? []) lines.push(`dns-rr=${name},15,000000`)
  for (const x of r.raw ?? []) lines.push(`dns-rr=${x.name},${x.type},${x.hex}`)
  for (const c of r.cname ?? []) lines.push(`cname=${c.name},${c.target}`)
  return lines.join('\n') + '\n'
}

/** Splits a TXT value into <character-string>s of at most 255 bytes; dnsmasq's quoting takes \" and \\. */
function txtStrings (text: string): string[] {
  const bytes = Buffer.from(text)
  const out: string[] = []
  for (let i = 0; i < bytes.length || out.length === 0; i += TXT_STRING_BYTES_MAX) {
    out.push(bytes.subarray(i, i + TXT_STRING_BYTES_MAX).toString().replace(/[\\"]/g, c => `\\${c}`))
  }
  return out
}

/** True once the server answers anything (REFUSED is an answer) within a short timeout. */
async function answers (host: string, port: number): Promise<boolean> {
  const r = new Resolver({ timeout: 200, tries: 1 })
  r.setServers([`${host}:${port}`])
  try {
    await r.resolve4('probe.invalid')
    return true
  } catch (err) {
    const code = (err as { code?: string }).code
    return code !== 'ETIMEOUT' && code !== 'ECONNREFUSED'
  }
}

/** A port free for both UDP and TCP on `host` (dnsmasq listens on both). */
async function freeUdpTcpPort (host: string): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = createServer()
      s.once('error', reject)
      s.listen(0, host, () => {
        const p = (s.address() as { port: number }).port
        s.close(() => resolve(p))
      })
    })
    const free = await new Promise<boolean>(resolve => {
      const u = createSocket('udp4')
      u.once('error', () => { u.close(); resolve(false) })
      u.bind(port, host, () => u.close(() => resolve(true)))
    })
    if (free) return port
  }
  throw new Error(`no free UDP+TCP port on ${host}`)
}

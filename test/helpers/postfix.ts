// A private Debian Postfix as the *receiving* MTA of outbound tests: its own config, queue, logs and Maildirs
// under one temporary directory, listening on a loopback address and port, accepting mail for the given
// domains (any local part) and delivering each recipient's copy with virtual(8) into the catch-all Maildir
// DIR/mail/DOMAIN/, so a test reads back the raw bytes (Return-Path and Delivered-To are prepended by
// virtual(8); everything else is as received, so DKIM still verifies). It relays nothing anywhere. STARTTLS is offered
// (a self-signed certificate unless the test gives one) and noted in the Received header and the log.
// setReplies answers chosen recipients with chosen replies (a check_recipient_access table, then a reload);
// down/up stop and start it to play a remote that is away. The approach is test/bench/peer.ts's, without
// Dovecot. POSTFIX_KEEP=1 keeps the directory after stop, for debugging.

import { execFile, spawn } from 'node:child_process'
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs'
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { generate } from 'selfsigned'
import { freePort } from './ports.ts'

const run = promisify(execFile)

const POSTFIX = '/usr/sbin/postfix'
const START_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 30_000
const POLL_MS = 50
const RELOAD_SETTLE_MS = 300 // idle smtpd processes of the old generation exit on the master's reload notice
const NOBODY_ID = 65534 // Debian's nobody:nogroup owns the Maildirs (virtual_minimum_uid is 100)

export interface PostfixInit {
  domains: string[]
  /** Default 127.0.0.2. Any 127.0.0.0/8 address works on Linux without configuring it. */
  host?: string
  /** Default: a free port. */
  port?: number
  /** The name in its greeting and EHLO reply; default mx.<first domain>. */
  hostname?: string
  /** Key and certificate (PEM) for STARTTLS; default a self-signed one for `hostname`. */
  tls?: { key: string, cert: string }
  /** Recipient (or domain) -> reply, e.g. { 'bob@b.test': '450 4.2.0 try later' }. */
  replies?: Record<string, string>
  /** message_size_limit in bytes (default 50 MiB). */
  messageSizeLimit?: number
}

export interface ReceivedMessage {
  rcpt: string // the recipient, from the Delivered-To header
  file: string
  raw: Buffer
}

export interface PostfixServer {
  readonly host: string
  readonly port: number
  readonly hostname: string
  readonly dir: string
  /** Every message delivered so far, oldest first (one per recipient). */
  messages (): Promise<ReceivedMessage[]>
  /** Waits until at least `count` messages are delivered; throws with the log's tail after `timeoutMs`. */
  waitForMessages (count: number, timeoutMs?: number): Promise<ReceivedMessage[]>
  /** Replaces the per-recipient replies and reloads Postfix. */
  setReplies (replies: Record<string, string>): Promise<void>
  /** Postfix's log (maillog_file). */
  log (): Promise<string>
  /** Stops Postfix (the port refuses connections) and starts it again; mail already delivered stays. */
  down (): Promise<void>
  up (): Promise<void>
  /** Stops it and removes its directory; safe to call twice. */
  stop (): Promise<void>
}

export function isPostfixInstalled (): boolean {
  return existsSync(POSTFIX)
}

export async function startPostfix (init: PostfixInit): Promise<PostfixServer> {
  const host = init.host ?? '127.0.0.2'
  const port = init.port ?? await freePort(host)
  const hostname = init.hostname ?? `mx.${init.domains[0] ?? 'example.test'}`
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-postfix-'))
  await chmod(dir, 0o755) // Postfix's unprivileged processes must traverse it
  const pf = join(dir, 'postfix')
  const mail = join(dir, 'mail')
  let running = false
  let removed = false

  const masterGone = async (): Promise<void> => {
    const pid = await masterPid(join(dir, 'spool', 'pid', 'master.pid'))
    if (pid !== null) await killAndWait(pid)
  }
  const down = async (): Promise<void> => {
    if (running) await run(POSTFIX, ['-c', pf, 'stop'], { timeout: STOP_TIMEOUT_MS }).catch(() => {})
    await masterGone()
    running = false
    await waitClosed(host, port)
  }
  const up = async (): Promise<void> => {
    if (running) return
    await daemon(POSTFIX, ['-c', pf, 'start'], join(dir, 'postfix-start.err'))
    running = true
    await waitListening(host, port)
  }
  const tail = async (): Promise<string> => {
    const parts: string[] = []
    for (const f of ['postfix.log', 'postfix-start.err']) {
      try { parts.push(`${f}:\n${(await readFile(join(dir, f), 'utf8')).split('\n').slice(-25).join('\n')}`) } catch {}
    }
    return parts.join('\n')
  }
  const stop = async (): Promise<void> => {
    if (removed) return
    removed = true
    await down().catch(() => {})
    if (process.env.POSTFIX_KEEP !== '1') await rm(dir, { recursive: true, force: true })
  }

  try {
    const tls = init.tls ?? await selfSigned(hostname)
    await mkdir(pf)
    await mkdir(join(dir, 'spool')) // postfix start fills it with the queue directories
    await mkdir(mail)
    await chown(mail, NOBODY_ID, NOBODY_ID)
    await writeFile(join(pf, 'tls.key'), tls.key, { mode: 0o600 })
    await writeFile(join(pf, 'tls.crt'), tls.cert)
    await writeFile(join(pf, 'replies'), accessTable(init.replies ?? {}))
    // A catch-all Maildir per domain (virtual(8) allows no regexp substitution in mailbox paths); the recipient
    // of each copy is in the Delivered-To header virtual(8) prepends.
    await writeFile(join(pf, 'vmailbox'), init.domains.map(d => `@${d.toLowerCase()} ${d.toLowerCase()}/\n`).join(''))
    await writeFile(join(pf, 'main.cf'), mainCf({ dir, pf, mail, hostname, domains: init.domains, size: init.messageSizeLimit }))
    await writeFile(join(pf, 'master.cf'), masterCf(host, port))
    await up()
  } catch (err) {
    const logs = await tail()
    await stop()
    throw new Error(`postfix did not start on ${host}:${port}: ${firstLine(err)}\n${logs}`)
  }

  const messages = async (): Promise<ReceivedMessage[]> => {
    const found: Array<ReceivedMessage & { mtimeMs: number }> = []
    for (const domain of await readdir(mail).catch(() => [] as string[])) {
      for (const sub of ['new', 'cur']) {
        const d = join(mail, domain, sub)
        for (const name of await readdir(d).catch(() => [] as string[])) {
          const file = join(d, name)
          const [raw, st] = await Promise.all([readFile(file), stat(file)])
          found.push({ rcpt: deliveredTo(raw), file, raw, mtimeMs: st.mtimeMs })
        }
      }
    }
    found.sort((a, b) => a.mtimeMs - b.mtimeMs || a.file.localeCompare(b.file))
    return found.map(({ rcpt, file, raw }) => ({ rcpt, file, raw }))
  }

  return {
    host,
    port,
    hostname,
    dir,
    messages,
    async waitForMessages (count, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const got = await messages()
        if (got.length >= count) return got
        if (Date.now() > deadline) throw new Error(`postfix holds ${got.length} of ${count} messages after ${timeoutMs} ms\n${await tail()}`)
        await new Promise(resolve => setTimeout(resolve, POLL_MS))
      }
    },
    async setReplies (replies) {
      await writeFile(join(pf, 'replies'), accessTable(replies))
      if (running) {
        await run(POSTFIX, ['-c', pf, 'reload'], { timeout: STOP_TIMEOUT_MS })
        await new Promise(resolve => setTimeout(resolve, RELOAD_SETTLE_MS))
      }
    },
    async log () { return await readFile(join(dir, 'postfix.log'), 'utf8').catch(() => '') },
    down,
    up,
    stop
  }
}

/** The first Delivered-To header's address (virtual(8) puts it at the top). */
function deliveredTo (raw: Buffer): string {
  const head = raw.subarray(0, 4096).toString('latin1')
  return /^Delivered-To:\s*<?([^>\r\n]+)>?\r?$/im.exec(head)?.[1]?.trim() ?? ''
}

function accessTable (replies: Record<string, string>): string {
  return Object.entries(replies).map(([k, v]) => `${k.toLowerCase()} ${v}\n`).join('')
}

function mainCf (c: { dir: string, pf: string, mail: string, hostname: string, domains: string[], size?: number }): string {
  // Everything not set here is Postfix's default (DSN, 8BITMIME, SMTPUTF8, PIPELINING, SIZE offered).
  // chroot is off because this queue directory is not prepared as a jail; no DNS is used (peer names, MX).
  return `# mailgrid tests: a private receiving Postfix
compatibility_level = 3.6
myhostname = ${c.hostname}
mydestination =
queue_directory = ${c.dir}/spool
data_directory = ${c.dir}/postfix-data
meta_directory = /etc/postfix
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
alias_maps =
alias_database =
biff = no
maillog_file = ${c.dir}/postfix.log
maillog_file_prefixes = ${c.dir}
message_size_limit = ${c.size ?? 52428800}
virtual_mailbox_limit = 0
smtpd_peername_lookup = no
local_header_rewrite_clients =
smtp_dns_support_level = disabled
default_transport = error:5.7.1 this test instance delivers nothing outside
relay_transport = error:5.7.1 this test instance delivers nothing outside
smtpd_relay_restrictions = check_recipient_access texthash:${c.pf}/replies, reject_unauth_destination
smtpd_recipient_restrictions =
virtual_mailbox_domains = ${c.domains.join(', ')}
virtual_mailbox_maps = texthash:${c.pf}/vmailbox
virtual_mailbox_base = ${c.mail}
virtual_uid_maps = static:${NOBODY_ID}
virtual_gid_maps = static:${NOBODY_ID}
virtual_transport = virtual
smtpd_tls_security_level = may
smtpd_tls_cert_file = ${c.pf}/tls.crt
smtpd_tls_key_file = ${c.pf}/tls.key
smtpd_tls_received_header = yes
smtpd_tls_loglevel = 1
`
}

function masterCf (host: string, port: number): string {
  const svc = (name: string, type: string, priv: string, wakeup: string, maxproc: string, cmd: string, unpriv = '-'): string =>
    `${name.padEnd(20)} ${type.padEnd(10)} ${priv} ${unpriv} n ${wakeup} ${maxproc} ${cmd}\n`
  return svc(`${host}:${port}`, 'inet', 'n', '-', '-', 'smtpd') +
    svc('pickup', 'unix', 'n', '60', '1', 'pickup') +
    svc('cleanup', 'unix', 'n', '-', '0', 'cleanup') +
    svc('qmgr', 'unix', 'n', '300', '1', 'qmgr') +
    svc('tlsmgr', 'unix', '-', '1000?', '1', 'tlsmgr') +
    svc('rewrite', 'unix', '-', '-', '-', 'trivial-rewrite') +
    svc('bounce', 'unix', '-', '-', '0', 'bounce') +
    svc('defer', 'unix', '-', '-', '0', 'bounce') +
    svc('trace', 'unix', '-', '-', '0', 'bounce') +
    svc('verify', 'unix', '-', '-', '1', 'verify') +
    svc('flush', 'unix', 'n', '1000?', '0', 'flush') +
    svc('proxymap', 'unix', '-', '-', '-', 'proxymap') +
    svc('smtp', 'unix', '-', '-', '-', 'smtp') +
    svc('showq', 'unix', 'n', '-', '-', 'showq') +
    svc('error', 'unix', '-', '-', '-', 'error') +
    svc('retry', 'unix', '-', '-', '-', 'error') +
    svc('discard', 'unix', '-', '-', '-', 'discard') +
    svc('virtual', 'unix', '-', '-', '-', 'virtual', 'n') + // runs as root to take the mailbox owner's uid
    svc('anvil', 'unix', '-', '-', '1', 'anvil') +
    svc('scache', 'unix', '-', '-', '1', 'scache') +
    svc('postlog', 'unix-dgram', 'n', '-', '1', 'postlogd')
}

async function selfSigned (hostname: string): Promise<{ key: string, cert: string }> {
  const pems = await generate([{ name: 'commonName', value: hostname }], { keyType: 'ec', algorithm: 'sha256' })
  return { key: pems.private, cert: pems.cert }
}

/**
 * Runs a command that starts a daemon and returns when the command exits. Its output goes to a file: the
 * daemon inherits the descriptors, so waiting for pipes to close (execFile) would wait on the daemon.
 */
/** Runs a command that starts a daemon and returns (postfix start, dovecot): its output kept in `errFile`. */
export async function daemon (cmd: string, args: string[], errFile: string): Promise<void> {
  const fd = openSync(errFile, 'w')
  try {
    const child = spawn(cmd, args, { stdio: ['ignore', fd, fd] })
    const code = await new Promise<number | null>((resolve, reject) => {
      const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${cmd} did not return in ${START_TIMEOUT_MS} ms`)) }, START_TIMEOUT_MS)
      child.once('error', err => { clearTimeout(timer); reject(err) })
      child.once('exit', c => { clearTimeout(timer); resolve(c) })
    })
    if (code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${code}: ${readFileSync(errFile, 'utf8').trim()}`)
  } finally {
    closeSync(fd)
  }
}

async function canConnect (host: string, port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const s = connect({ port, host })
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
  })
}

async function waitListening (host: string, port: number): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS
  while (!await canConnect(host, port)) {
    if (Date.now() > deadline) throw new Error(`${host}:${port} not listening after ${START_TIMEOUT_MS} ms`)
    await new Promise(resolve => setTimeout(resolve, POLL_MS))
  }
}

async function waitClosed (host: string, port: number): Promise<void> {
  const deadline = Date.now() + STOP_TIMEOUT_MS
  while (await canConnect(host, port)) {
    if (Date.now() > deadline) throw new Error(`${host}:${port} still listening after ${STOP_TIMEOUT_MS} ms`)
    await new Promise(resolve => setTimeout(resolve, POLL_MS))
  }
}

export async function masterPid (file: string): Promise<number | null> {
  try {
    const pid = Number((await readFile(file, 'utf8')).trim())
    return Number.isInteger(pid) && pid > 0 && existsSync(`/proc/${pid}`) ? pid : null
  } catch {
    return null
  }
}

async function killAndWait (pid: number): Promise<void> {
  const deadline = Date.now() + STOP_TIMEOUT_MS
  // `postfix stop` has already asked the master to go; give it that chance before signalling it ourselves.
  while (existsSync(`/proc/${pid}`) && Date.now() < deadline - STOP_TIMEOUT_MS / 2) await new Promise(resolve => setTimeout(resolve, POLL_MS))
  if (existsSync(`/proc/${pid}`)) try { process.kill(pid, 'SIGTERM') } catch { return }
  while (existsSync(`/proc/${pid}`) && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, POLL_MS))
  if (existsSync(`/proc/${pid}`)) try { process.kill(pid, 'SIGKILL') } catch {}
}

export function firstLine (err: unknown): string {
  const e = err as { stderr?: string, message?: string }
  const text = (e.stderr !== undefined && e.stderr.trim() !== '' ? e.stderr : e.message) ?? String(err)
  return text.trim().split('\n').slice(-3).join(' / ')
}

// The peer the benchmark compares against: Postfix accepting SMTP and delivering over LMTP into Dovecot (Maildir,
// virtual users), from Debian's packages, with their durable defaults (Postfix fsyncs its queue files; Dovecot's
// mail_fsync = optimized). Both run as private instances: their own config, queue, mail and logs under one
// temporary directory, listening on free loopback ports. The system's /etc/postfix and /etc/dovecot are left as
// the packages installed them; no systemd is needed (each master is started by hand and stopped afterwards).
// BENCH_KEEP_PEER=1 keeps the directory (configs, logs, Maildirs) after stop, for debugging.

import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, chown, mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { daemon, firstLine, masterPid } from '../helpers/postfix.ts'
import { freePort } from '../helpers/ports.ts'

const run = promisify(execFile)

const PACKAGES = ['postfix', 'dovecot-imapd', 'dovecot-pop3d', 'dovecot-lmtpd']
const INSTALL_TIMEOUT_MS = 15 * 60_000 // a cold apt cache on a slow mirror; the bench goes on without the peer after it
const START_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 30_000
const NOBODY_ID = 65534 // Debian's nobody:nogroup, the owner of the virtual mailboxes (Dovecot refuses uid 0)

const DOVEADM = '/usr/bin/doveadm'
const INDEX_TIMEOUT_MS = 30 * 60_000 // doveadm index of a 50,000-message Maildir on a loaded 2-core machine
const FILL_CONCURRENCY = 16 // files written at once by fillMaildir

const POSTFIX = '/usr/sbin/postfix'
const DOVECOT = '/usr/sbin/dovecot'
const LMTP = '/usr/lib/dovecot/lmtp'

export interface PeerPorts { smtp: number, imap: number, pop3: number, lmtp: number }

export interface Peer {
  ports: PeerPorts
  dir: string
  versions: { postfix: string, dovecot: string }
  /** Postfix and Dovecot processes of this instance (for RSS). */
  pids (): Promise<number[]>
  /**
   * Puts `count` messages straight into a user's INBOX (Maildir files in new/, as a local delivery agent writes
   * them), then has Dovecot index them (`doveadm index`). The fast
   * way to give Dovecot a large mailbox: through Postfix and LMTP, 50,000 messages took 5-20 minutes on the bench
   * machine. Not a measurement; the time is reported apart.
   */
  fillMaildir (user: string, count: number, message: (i: number) => Buffer): Promise<{ writeSeconds: number, indexSeconds: number }>
  stop (): Promise<void>
}

/** Installs the packages when missing. Returns null when they are there, else the reason they are not. */
export async function ensurePeerInstalled (log: (s: string) => void): Promise<string | null> {
  if (installed()) return null
  log(`peer: installing ${PACKAGES.join(' ')} from Debian packages`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  try {
    // Preseed Postfix's debconf questions so its dialog never blocks; "No configuration" leaves /etc/postfix
    // without a main.cf, so the system instance stays unconfigured and unstarted.
    const answers = 'postfix postfix/main_mailer_type select No configuration\npostfix postfix/mailname string peer.bench.test\n'
    await shell('debconf-set-selections', [], env, answers)
    const args = ['-y', '-q', '-o', 'Dpkg::Options::=--force-confdef', '-o', 'Dpkg::Options::=--force-confold', 'install', ...PACKAGES]
    try {
      await run('apt-get', args, { env, timeout: INSTALL_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 })
    } catch {
      await run('apt-get', ['-q', 'update'], { env, timeout: INSTALL_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 })
      await run('apt-get', args, { env, timeout: INSTALL_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 })
    }
  } catch (err) {
    return `apt-get install failed: ${firstLine(err)}`
  }
  return installed() ? null : 'packages installed but binaries missing'
}

function installed (): boolean {
  return existsSync(POSTFIX) && existsSync(DOVECOT) && existsSync(LMTP) && existsSync('/usr/lib/dovecot/imap') &&
    existsSync('/usr/lib/dovecot/pop3')
}

export async function startPeer (init: { domain: string, users: string[], password: string }): Promise<Peer> {
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-peer-'))
  await chmod(dir, 0o755) // Postfix's and Dovecot's unprivileged processes must traverse it
  const ports: PeerPorts = { smtp: await freePort(), imap: await freePort(), pop3: await freePort(), lmtp: await freePort() }
  let postfixStarted = false
  let dovecotStarted = false
  const pf = join(dir, 'postfix')
  const dc = join(dir, 'dovecot.conf')
  const stop = async (): Promise<void> => {
    if (postfixStarted) await run(POSTFIX, ['-c', pf, 'stop'], { timeout: STOP_TIMEOUT_MS }).catch(() => {})
    if (dovecotStarted) {
      const pid = await masterPid(join(dir, 'dovecot-run', 'master.pid'))
      if (pid !== null) await killAndWait(pid)
    }
    const pfPid = await masterPid(join(dir, 'spool', 'pid', 'master.pid'))
    if (pfPid !== null) await killAndWait(pfPid)
    postfixStarted = dovecotStarted = false
    if (process.env.BENCH_KEEP_PEER !== '1') await rm(dir, { recursive: true, force: true })
  }
  try {
    await writeDovecot(dir, dc, ports, init)
    await writePostfix(dir, pf, ports, init)
    await daemon(DOVECOT, ['-c', dc], join(dir, 'dovecot-start.err'))
    dovecotStarted = true
    await daemon(POSTFIX, ['-c', pf, 'start'], join(dir, 'postfix-start.err'))
    postfixStarted = true
    await waitListening([ports.smtp, ports.imap, ports.pop3, ports.lmtp])
  } catch (err) {
    const logs = await tails(dir)
    await stop()
    throw new Error(`peer did not start: ${firstLine(err)}\n${logs}`)
  }
  const versions = {
    postfix: (await run('/usr/sbin/postconf', ['-d', '-h', 'mail_version'])).stdout.trim(),
    dovecot: (await run(DOVECOT, ['--version'])).stdout.trim()
  }
  return {
    ports,
    dir,
    versions,
    async pids () {
      const roots = [await masterPid(join(dir, 'spool', 'pid', 'master.pid')), await masterPid(join(dir, 'dovecot-run', 'master.pid'))]
      return descendants(roots.filter((p): p is number => p !== null))
    },
    async fillMaildir (user, count, message) {
      const at = user.indexOf('@')
      const home = join(dir, 'mail', user.slice(at + 1), user.slice(0, at))
      const t0 = performance.now()
      for (const d of [join(dir, 'mail', user.slice(at + 1)), home, ...['cur', 'new', 'tmp'].map(s => join(home, s))]) {
        await mkdir(d, { recursive: true })
        await chown(d, NOBODY_ID, NOBODY_ID)
      }
      const now = Math.floor(Date.now() / 1000)
      let next = 0
      const worker = async (): Promise<void> => {
        while (next < count) {
          const i = next++
          const body = message(i)
          // Maildir unique name (time.Mn.host) with Dovecot's S=size, so it need not stat for the size
          const file = join(home, 'new', `${now}.M${i}P${process.pid}.bench,S=${body.length}`)
          const fh = await open(file, 'wx', 0o600)
          try {
            await fh.writeFile(body)
            await fh.chown(NOBODY_ID, NOBODY_ID)
          } finally {
            await fh.close()
          }
        }
      }
      await Promise.all(Array.from({ length: FILL_CONCURRENCY }, async () => await worker()))
      const t1 = performance.now()
      await run(DOVEADM, ['-c', dc, 'index', '-u', user, 'INBOX'], { timeout: INDEX_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 })
      return { writeSeconds: (t1 - t0) / 1000, indexSeconds: (performance.now() - t1) / 1000 }
    },
    stop
  }
}

/** Postfix as the submission MTA of the outbound figure: what a relay of its own is to the receiver. */
export interface RelayPeer {
  port: number
  dir: string
  version: string
  /** Postfix processes of this instance (master and its children). */
  pids (): Promise<number[]>
  stop (): Promise<void>
}

/**
 * A second private Postfix that accepts mail from loopback (mynetworks, no AUTH: Postfix's SASL needs a Dovecot or
 * Cyrus of its own) and relays every message to `relayTo` (relayhost = [host]:port, so no DNS is involved), with
 * opportunistic STARTTLS as mailgrid uses. Its queue is durable as shipped (queue files fsync'd before the 250);
 * its delivery concurrency, connection cache and every other knob are Postfix's defaults.
 */
export async function startRelayPeer (init: { relayTo: { host: string, port: number }, hostname: string }): Promise<RelayPeer> {
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-relay-peer-'))
  await chmod(dir, 0o755)
  const pf = join(dir, 'postfix')
  const port = await freePort()
  let started = false
  const stop = async (): Promise<void> => {
    if (started) await run(POSTFIX, ['-c', pf, 'stop'], { timeout: STOP_TIMEOUT_MS }).catch(() => {})
    const pid = await masterPid(join(dir, 'spool', 'pid', 'master.pid'))
    if (pid !== null) await killAndWait(pid)
    started = false
    if (process.env.BENCH_KEEP_PEER !== '1') await rm(dir, { recursive: true, force: true })
  }
  try {
    await mkdir(pf)
    await mkdir(join(dir, 'spool'))
    await writeFile(join(pf, 'main.cf'), `# mailgrid bench: a private Postfix relaying submitted mail to the outbound receiver
compatibility_level = 3.6
myhostname = ${init.hostname}
mydestination =
queue_directory = ${dir}/spool
data_directory = ${dir}/postfix-data
meta_directory = /etc/postfix
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
biff = no
maillog_file = ${dir}/postfix.log
maillog_file_prefixes = ${dir}
message_size_limit = 52428800
smtpd_peername_lookup = no
relayhost = [${init.relayTo.host}]:${init.relayTo.port}
smtp_dns_support_level = disabled
smtp_tls_security_level = may
`)
    const svc = (name: string, type: string, priv: string, wakeup: string, maxproc: string, cmd: string): string =>
      `${name.padEnd(20)} ${type.padEnd(10)} ${priv} - n ${wakeup} ${maxproc} ${cmd}\n`
    await writeFile(join(pf, 'master.cf'),
      svc(`127.0.0.1:${port}`, 'inet', 'n', '-', '-', 'smtpd') +
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
      svc('relay', 'unix', '-', '-', '-', 'smtp') +
      svc('showq', 'unix', 'n', '-', '-', 'showq') +
      svc('error', 'unix', '-', '-', '-', 'error') +
      svc('retry', 'unix', '-', '-', '-', 'error') +
      svc('discard', 'unix', '-', '-', '-', 'discard') +
      svc('anvil', 'unix', '-', '-', '1', 'anvil') +
      svc('scache', 'unix', '-', '-', '1', 'scache') +
      svc('postlog', 'unix-dgram', 'n', '-', '1', 'postlogd'))
    await daemon(POSTFIX, ['-c', pf, 'start'], join(dir, 'postfix-start.err'))
    started = true
    await waitListening([port])
  } catch (err) {
    const logs = await tails(dir)
    await stop()
    throw new Error(`relay peer did not start: ${firstLine(err)}\n${logs}`)
  }
  const version = (await run('/usr/sbin/postconf', ['-d', '-h', 'mail_version'])).stdout.trim()
  return {
    port,
    dir,
    version,
    async pids () {
      const root = await masterPid(join(dir, 'spool', 'pid', 'master.pid'))
      return root === null ? [] : await descendants([root])
    },
    stop
  }
}

async function writeDovecot (dir: string, file: string, ports: PeerPorts, init: { users: string[], password: string }): Promise<void> {
  const mail = join(dir, 'mail')
  await mkdir(mail)
  await chown(mail, NOBODY_ID, NOBODY_ID)
  await writeFile(join(dir, 'dovecot-users'), init.users.map(u => `${u}:{PLAIN}${init.password}::::::\n`).join(''))
  await writeFile(file, `# mailgrid bench: a private Dovecot instance; everything not set here is Dovecot's default
# (mail_fsync = optimized, the durable default).
instance_name = mailgrid-bench-${process.pid}
base_dir = ${dir}/dovecot-run
state_dir = ${dir}/dovecot-state
log_path = ${dir}/dovecot.log
protocols = imap pop3 lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:${mail}/%d/%n
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${dir}/dovecot-users
}
userdb {
  driver = static
  args = uid=${NOBODY_ID} gid=${NOBODY_ID} home=${mail}/%d/%n
}
protocol lmtp {
  postmaster_address = postmaster@bench.test
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = ${ports.imap}
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = ${ports.pop3}
  }
  inet_listener pop3s {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = ${ports.lmtp}
  }
}
`)
}

async function writePostfix (dir: string, pf: string, ports: PeerPorts, init: { domain: string, users: string[] }): Promise<void> {
  await mkdir(pf)
  await mkdir(join(dir, 'spool')) // postfix start fills it with the queue directories
  await writeFile(join(pf, 'vmailbox'), init.users.map(u => `${u} ok\n`).join(''))
  // Everything not set here is Postfix's default: queue files fsync'd before 250, LMTP concurrency 20 per
  // destination, and so on. chroot is off because this queue directory is not prepared as a jail.
  await writeFile(join(pf, 'main.cf'), `# mailgrid bench: a private Postfix instance
compatibility_level = 3.6
myhostname = peer.${init.domain}
mydestination = localhost
queue_directory = ${dir}/spool
data_directory = ${dir}/postfix-data
meta_directory = /etc/postfix
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
biff = no
maillog_file = ${dir}/postfix.log
maillog_file_prefixes = ${dir}
message_size_limit = 52428800
virtual_mailbox_domains = ${init.domain}
virtual_mailbox_maps = texthash:${pf}/vmailbox
virtual_transport = lmtp:inet:127.0.0.1:${ports.lmtp}
`)
  const svc = (name: string, type: string, priv: string, wakeup: string, maxproc: string, cmd: string): string =>
    `${name.padEnd(20)} ${type.padEnd(10)} ${priv} - n ${wakeup} ${maxproc} ${cmd}\n`
  await writeFile(join(pf, 'master.cf'),
    svc(`127.0.0.1:${ports.smtp}`, 'inet', 'n', '-', '-', 'smtpd') +
    svc('pickup', 'unix', 'n', '60', '1', 'pickup') +
    svc('cleanup', 'unix', 'n', '-', '0', 'cleanup') +
    svc('qmgr', 'unix', 'n', '300', '1', 'qmgr') +
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
    svc('lmtp', 'unix', '-', '-', '-', 'lmtp') +
    svc('anvil', 'unix', '-', '-', '1', 'anvil') +
    svc('scache', 'unix', '-', '-', '1', 'scache') +
    svc('postlog', 'unix-dgram', 'n', '-', '1', 'postlogd'))
}

async function waitListening (ports: number[]): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS
  for (const port of ports) {
    for (;;) {
      if (await canConnect(port)) break
      if (Date.now() > deadline) throw new Error(`port ${port} not listening after ${START_TIMEOUT_MS} ms`)
      await new Promise(resolve => setTimeout(resolve, 100))
    }
  }
}

async function canConnect (port: number): Promise<boolean> {
  const { connect } = await import('node:net')
  return await new Promise(resolve => {
    const s = connect({ port, host: '127.0.0.1' })
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
  })
}


async function killAndWait (pid: number): Promise<void> {
  try { process.kill(pid, 'SIGTERM') } catch { return }
  const deadline = Date.now() + STOP_TIMEOUT_MS
  while (existsSync(`/proc/${pid}`) && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 50))
  if (existsSync(`/proc/${pid}`)) try { process.kill(pid, 'SIGKILL') } catch {}
}

/** The given pids and all their descendants, from /proc. */
export async function descendants (roots: number[]): Promise<number[]> {
  const { readdir } = await import('node:fs/promises')
  const parent = new Map<number, number>()
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = await readFile(`/proc/${name}/stat`, 'utf8')
      parent.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]))
    } catch {}
  }
  const out = new Set(roots)
  for (let grew = true; grew;) {
    grew = false
    for (const [pid, ppid] of parent) if (out.has(ppid) && !out.has(pid)) { out.add(pid); grew = true }
  }
  return [...out]
}

async function tails (dir: string): Promise<string> {
  const parts: string[] = []
  for (const f of ['postfix.log', 'dovecot.log']) {
    try { parts.push(`${f}:\n${(await readFile(join(dir, f), 'utf8')).split('\n').slice(-15).join('\n')}`) } catch {}
  }
  return parts.join('\n')
}

async function shell (cmd: string, args: string[], env: NodeJS.ProcessEnv, input: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = execFile(cmd, args, { env }, err => { if (err === null) resolve(); else reject(err) })
    child.stdin?.end(input)
  })
}

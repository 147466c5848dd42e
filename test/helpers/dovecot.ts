// A private Debian Dovecot for tests: its own config, base_dir, state and log under one temporary directory, users
// from a passwd-file, each user's Maildir where the test says (`mail` per user, or DIR/mail/USER), listeners on free
// loopback ports, no system service. The approach is test/bench/peer.ts's. Two shapes:
// - startDovecot: IMAP and LMTP, mailgrid's '/' separator, Maildir++ or LAYOUT=fs: what the Maildir importers and
//   exporters are checked against (`doveadm` runs against this instance's config);
// - startDovecotSource: the *source* of imports and collection (issue 15): IMAP, IMAPS (a certificate from the test's
//   CA, test/helpers/ca.ts) and POP3, Dovecot's own separator, special-use folders declared (Sent, Drafts, Trash,
//   Junk, Archive).
// DOVECOT_KEEP=1 keeps the directory after stop, for debugging.

import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { daemon, masterPid } from './postfix.ts'
import { connect } from 'node:net'
import type { TestCa } from './ca.ts'
import { freePort } from './ports.ts'

const run = promisify(execFile)

export const DOVECOT = '/usr/sbin/dovecot'
export const DOVEADM = '/usr/bin/doveadm'
export const NOBODY_ID = 65534 // Debian's nobody:nogroup owns the Maildirs (Dovecot refuses uid 0)
const START_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 30_000
const POLL_MS = 50

export interface DovecotUser {
  user: string
  password: string
  /** The user's Maildir (mail_location's path); default DIR/mail/USER. */
  mail?: string
}

export interface DovecotInit {
  users: DovecotUser[]
  /** Maildir layout: Maildir++ (Dovecot's default) or fs. */
  layout?: 'maildir++' | 'fs'
}

export interface DovecotSourceInit {
  users: DovecotUser[]
  /** Issues the IMAPS certificate (localhost, 127.0.0.1). */
  ca: TestCa
}

/** What either shape has. */
interface DovecotBase {
  dir: string
  imapPort: number
  version: string
  /** Each user's Maildir. */
  mailOf (user: string): string
  /** Runs doveadm against this instance; resolves to its stdout. */
  doveadm (args: string[], opts?: { input?: string | Buffer }): Promise<string>
  stop (): Promise<void>
}

export interface DovecotServer extends DovecotBase {
  lmtpPort: number
}

export interface DovecotSource extends DovecotBase {
  imapsPort: number
  pop3Port: number
}

export function isDovecotInstalled (): boolean {
  return existsSync(DOVECOT) && existsSync('/usr/lib/dovecot/imap') && existsSync(DOVEADM)
}

export function isDovecotSourceInstalled (): boolean {
  return existsSync(DOVECOT) && existsSync('/usr/lib/dovecot/imap') && existsSync('/usr/lib/dovecot/pop3')
}

export async function startDovecot (init: DovecotInit): Promise<DovecotServer> {
  const d = await launch({ users: init.users, layout: init.layout, separator: '/', lmtp: true, pop3: false })
  return { ...d.base, lmtpPort: d.ports.lmtp ?? 0 }
}

export async function startDovecotSource (init: DovecotSourceInit): Promise<DovecotSource> {
  const d = await launch({ users: init.users, ca: init.ca, specialUse: true, lmtp: false, pop3: true })
  return { ...d.base, imapsPort: d.ports.imaps ?? 0, pop3Port: d.ports.pop3 ?? 0 }
}

interface LaunchInit {
  users: DovecotUser[]
  layout?: 'maildir++' | 'fs'
  /** The inbox namespace's hierarchy separator; Dovecot's default when absent ('.' for Maildir++). */
  separator?: string
  /** IMAPS (and STARTTLS on the plain ports) with a certificate from this CA; no TLS without. */
  ca?: TestCa
  specialUse?: boolean
  lmtp: boolean
  pop3: boolean
}

interface Ports { imap: number, imaps?: number, pop3?: number, lmtp?: number }

async function listening (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const s = connect({ port, host: '127.0.0.1' })
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
  })
}

const SPECIAL_USE = ['Sent', 'Drafts', 'Trash', 'Junk', 'Archive']

function config (dir: string, init: LaunchInit, ports: Ports): string {
  const listener = (name: string, port: number | undefined, ssl = false): string => port === undefined
    ? `  inet_listener ${name} {\n    port = 0\n  }\n`
    : `  inet_listener ${name} {\n    address = 127.0.0.1\n    port = ${port}\n${ssl ? '    ssl = yes\n' : ''}  }\n`
  const protocols = ['imap', ...(init.pop3 ? ['pop3'] : []), ...(init.lmtp ? ['lmtp'] : [])]
  return `# mailgrid test: a private Dovecot instance
instance_name = mailgrid-test-${process.pid}-${ports.imap}
base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${dir}/dovecot.log
protocols = ${protocols.join(' ')}
listen = 127.0.0.1
${init.ca !== undefined ? `ssl = yes\nssl_cert = <${dir}/cert.pem\nssl_key = <${dir}/key.pem` : 'ssl = no'}
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir${init.layout === 'fs' ? ':LAYOUT=fs' : ''}
first_valid_uid = 1
${init.pop3 ? 'pop3_uidl_format = %08Xu%08Xv\n' : ''}namespace inbox {
  inbox = yes
${init.separator !== undefined ? `  separator = ${init.separator}\n` : ''}${(init.specialUse === true ? SPECIAL_USE : []).map(m => `  mailbox ${m} {\n    special_use = \\${m}\n  }\n`).join('')}}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${dir}/users
}
userdb {
  driver = passwd-file
  args = username_format=%u ${dir}/users
}
${init.lmtp ? 'protocol lmtp {\n  postmaster_address = postmaster@dovecot.test\n}\n' : ''}service imap-login {
${listener('imap', ports.imap)}${listener('imaps', ports.imaps, true)}}
${init.pop3 ? `service pop3-login {\n${listener('pop3', ports.pop3)}${listener('pop3s', undefined)}}\n` : ''}${init.lmtp ? `service lmtp {\n${listener('lmtp', ports.lmtp)}}\n` : ''}service doveadm {
  unix_listener doveadm-server {
    mode = 0600
  }
}
`
}

async function launch (init: LaunchInit): Promise<{ base: DovecotBase, ports: Ports }> {
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-dovecot-'))
  await chmod(dir, 0o755) // Dovecot's unprivileged processes must traverse it
  const ports: Ports = { imap: await freePort() }
  if (init.ca !== undefined) ports.imaps = await freePort()
  if (init.pop3) ports.pop3 = await freePort()
  if (init.lmtp) ports.lmtp = await freePort()
  const mailOf = new Map(init.users.map(u => [u.user, u.mail ?? join(dir, 'mail', u.user)]))
  for (const m of mailOf.values()) {
    await mkdir(m, { recursive: true })
    await chown(m, NOBODY_ID, NOBODY_ID)
  }
  if (init.ca !== undefined) {
    const { key, cert } = await init.ca.issue(['localhost', '127.0.0.1'])
    await writeFile(join(dir, 'key.pem'), key, { mode: 0o600 })
    await writeFile(join(dir, 'cert.pem'), cert)
  }
  // extra fields: userdb_mail gives each user its own Maildir wherever the test put it
  const layout = init.layout === 'fs' ? ':LAYOUT=fs' : ''
  await writeFile(join(dir, 'users'), init.users.map(u => `${u.user}:{PLAIN}${u.password}:${NOBODY_ID}:${NOBODY_ID}::${mailOf.get(u.user) ?? ''}::userdb_mail=maildir:${mailOf.get(u.user) ?? ''}${layout}\n`).join(''))
  const conf = join(dir, 'dovecot.conf')
  await writeFile(conf, config(dir, init, ports))
  let started = false
  const stop = async (): Promise<void> => {
    if (started) {
      const pid = await masterPid(join(dir, 'run', 'master.pid'))
      if (pid !== null) {
        try { process.kill(pid, 'SIGTERM') } catch {}
        const deadline = Date.now() + STOP_TIMEOUT_MS
        while (existsSync(`/proc/${pid}`) && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, POLL_MS))
        if (existsSync(`/proc/${pid}`)) try { process.kill(pid, 'SIGKILL') } catch {}
      }
      started = false
    }
    if (process.env.DOVECOT_KEEP !== '1') await rm(dir, { recursive: true, force: true })
  }
  try {
    await daemon(DOVECOT, ['-c', conf], join(dir, 'start.err'))
    started = true
    const deadline = Date.now() + START_TIMEOUT_MS
    for (const p of Object.values(ports)) {
      while (!await listening(p)) {
        if (Date.now() > deadline) throw new Error(`port ${p} not listening after ${START_TIMEOUT_MS} ms`)
        await new Promise(resolve => setTimeout(resolve, POLL_MS))
      }
    }
  } catch (err) {
    const log = await readFile(join(dir, 'dovecot.log'), 'utf8').catch(() => '')
    await stop()
    throw new Error(`Dovecot did not start: ${String(err)}\n${log.slice(-2000)}`)
  }
  const version = (await run(DOVECOT, ['--version'])).stdout.trim()
  const base: DovecotBase = {
    dir,
    imapPort: ports.imap,
    version,
    mailOf: (user: string) => mailOf.get(user) ?? join(dir, 'mail', user),
    async doveadm (args, opts) {
      return await new Promise<string>((resolve, reject) => {
        const child = execFile(DOVEADM, ['-c', conf, ...args], { maxBuffer: 64 * 1024 * 1024, timeout: 120_000 }, (err, stdout, stderr) => {
          if (err !== null) reject(new Error(`doveadm ${args.join(' ')}: ${stderr.trim() || err.message}`))
          else resolve(stdout)
        })
        if (opts?.input !== undefined) child.stdin?.end(opts.input)
        else child.stdin?.end()
      })
    },
    stop
  }
  return { base, ports }
}

// A private Debian Dovecot for tests: its own config, base_dir, state and log under one temporary directory,
// IMAP (and LMTP) on free loopback ports, users from a passwd-file, each user's Maildir where the test says
// (`mail` per user, or DIR/mail/USER). The approach is test/bench/peer.ts's. `doveadm` runs against this
// instance's config. DOVECOT_KEEP=1 keeps the directory after stop, for debugging.

import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { daemon, masterPid } from './postfix.ts'
import { createServer, connect } from 'node:net'

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

export interface DovecotServer {
  dir: string
  imapPort: number
  lmtpPort: number
  version: string
  /** Each user's Maildir. */
  mailOf (user: string): string
  /** Runs doveadm against this instance; resolves to its stdout. */
  doveadm (args: string[], opts?: { input?: string | Buffer }): Promise<string>
  stop (): Promise<void>
}

export function isDovecotInstalled (): boolean {
  return existsSync(DOVECOT) && existsSync('/usr/lib/dovecot/imap') && existsSync(DOVEADM)
}

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

async function listening (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const s = connect({ port, host: '127.0.0.1' })
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
  })
}

export async function startDovecot (init: DovecotInit): Promise<DovecotServer> {
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-dovecot-'))
  await chmod(dir, 0o755) // Dovecot's unprivileged processes must traverse it
  const imapPort = await freePort()
  const lmtpPort = await freePort()
  const mailOf = new Map(init.users.map(u => [u.user, u.mail ?? join(dir, 'mail', u.user)]))
  for (const m of mailOf.values()) {
    await mkdir(m, { recursive: true })
    await chown(m, NOBODY_ID, NOBODY_ID)
  }
  // extra fields: userdb_mail gives each user its own Maildir wherever the test put it
  const layout = init.layout === 'fs' ? ':LAYOUT=fs' : ''
  await writeFile(join(dir, 'users'), init.users.map(u => `${u.user}:{PLAIN}${u.password}:${NOBODY_ID}:${NOBODY_ID}::${mailOf.get(u.user) ?? ''}::userdb_mail=maildir:${mailOf.get(u.user) ?? ''}${layout}\n`).join(''))
  const conf = join(dir, 'dovecot.conf')
  await writeFile(conf, `# mailgrid test: a private Dovecot instance
instance_name = mailgrid-test-${process.pid}-${imapPort}
base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${dir}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir${layout}
first_valid_uid = 1
# the hierarchy separator mailgrid uses (Maildir++ keeps '.' on disk)
namespace inbox {
  inbox = yes
  separator = /
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${dir}/users
}
userdb {
  driver = passwd-file
  args = username_format=%u ${dir}/users
}
protocol lmtp {
  postmaster_address = postmaster@dovecot.test
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = ${imapPort}
  }
  inet_listener imaps {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = ${lmtpPort}
  }
}
service doveadm {
  unix_listener doveadm-server {
    mode = 0600
  }
}
`)
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
    while (!(await listening(imapPort) && await listening(lmtpPort))) {
      if (Date.now() > deadline) throw new Error(`Dovecot not listening after ${START_TIMEOUT_MS} ms`)
      await new Promise(resolve => setTimeout(resolve, POLL_MS))
    }
  } catch (err) {
    const log = await readFile(join(dir, 'dovecot.log'), 'utf8').catch(() => '')
    await stop()
    throw new Error(`Dovecot did not start: ${String(err)}\n${log}`)
  }
  const version = (await run(DOVECOT, ['--version'])).stdout.trim()
  return {
    dir,
    imapPort,
    lmtpPort,
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
}

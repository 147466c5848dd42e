// A private Debian Dovecot as the *source* of imports and collection (issue 15): IMAP, IMAPS (a certificate from
// the test's CA, test/helpers/ca.ts) and POP3 on free loopback ports, users from a passwd-file, Maildir under a
// temporary directory, special-use folders declared (Sent, Drafts, Trash, Junk, Archive), no system service.
// The approach is test/bench/peer.ts's (test/helpers/dovecot.ts is the Maildir importers' own instance, without
// TLS or POP3). DOVECOT_KEEP=1 keeps the directory after stop.

import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { daemon, masterPid } from './postfix.ts'
import type { TestCa } from './ca.ts'

const run = promisify(execFile)
const DOVECOT = '/usr/sbin/dovecot'
const NOBODY_ID = 65534
const WAIT_MS = 30_000

export interface DovecotSource {
  dir: string
  imapPort: number
  imapsPort: number
  pop3Port: number
  version: string
  stop (): Promise<void>
}

export function isDovecotSourceInstalled (): boolean {
  return existsSync(DOVECOT) && existsSync('/usr/lib/dovecot/imap') && existsSync('/usr/lib/dovecot/pop3')
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

export async function startDovecotSource (init: { users: Array<{ user: string, password: string }>, ca: TestCa }): Promise<DovecotSource> {
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-dovecot-src-'))
  await chmod(dir, 0o755)
  const mail = join(dir, 'mail')
  await mkdir(mail)
  await chown(mail, NOBODY_ID, NOBODY_ID)
  const { key, cert } = await init.ca.issue(['localhost', '127.0.0.1'])
  await writeFile(join(dir, 'key.pem'), key, { mode: 0o600 })
  await writeFile(join(dir, 'cert.pem'), cert)
  await writeFile(join(dir, 'users'), init.users.map(u => `${u.user}:{PLAIN}${u.password}::::::\n`).join(''))
  const imapPort = await freePort()
  const imapsPort = await freePort()
  const pop3Port = await freePort()
  const conf = join(dir, 'dovecot.conf')
  await writeFile(conf, `# mailgrid test: a private Dovecot as an import and collection source
instance_name = mailgrid-src-${process.pid}-${imapPort}
base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${dir}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <${dir}/cert.pem
ssl_key = <${dir}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:${mail}/%n
pop3_uidl_format = %08Xu%08Xv
namespace inbox {
  inbox = yes
  mailbox Sent {
    special_use = \\Sent
  }
  mailbox Drafts {
    special_use = \\Drafts
  }
  mailbox Trash {
    special_use = \\Trash
  }
  mailbox Junk {
    special_use = \\Junk
  }
  mailbox Archive {
    special_use = \\Archive
  }
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${dir}/users
}
userdb {
  driver = static
  args = uid=${NOBODY_ID} gid=${NOBODY_ID} home=${mail}/%n
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = ${imapPort}
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = ${imapsPort}
    ssl = yes
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = ${pop3Port}
  }
  inet_listener pop3s {
    port = 0
  }
}
`)
  const stop = async (): Promise<void> => {
    const pid = await masterPid(join(dir, 'run', 'master.pid'))
    if (pid !== null) {
      try { process.kill(pid, 'SIGTERM') } catch {}
      const deadline = Date.now() + WAIT_MS
      while (existsSync(`/proc/${pid}`) && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 50))
      if (existsSync(`/proc/${pid}`)) try { process.kill(pid, 'SIGKILL') } catch {}
    }
    if (process.env.DOVECOT_KEEP !== '1') await rm(dir, { recursive: true, force: true })
  }
  try {
    await daemon(DOVECOT, ['-c', conf], join(dir, 'start.err'))
    const deadline = Date.now() + WAIT_MS
    for (const p of [imapPort, imapsPort, pop3Port]) {
      while (!await listening(p)) {
        if (Date.now() > deadline) throw new Error(`port ${p} not listening`)
        await new Promise(resolve => setTimeout(resolve, 50))
      }
    }
  } catch (err) {
    const log = await readFile(join(dir, 'dovecot.log'), 'utf8').catch(() => '')
    await stop()
    throw new Error(`dovecot did not start: ${String(err)}\n${log.slice(-2000)}`)
  }
  const version = (await run(DOVECOT, ['--version'])).stdout.trim()
  return { dir, imapPort, imapsPort, pop3Port, version, stop }
}

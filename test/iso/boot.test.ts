// `npm run test:iso`: the appliance image boots to a working mail node. Builds the ISO with iso/build.sh
// (or reuses one newer than every file that goes into it), boots it under qemu with software emulation
// (no KVM needed), with a blank data disk and a seed stick labelled MAILGRID that completes first boot
// unattended, then checks the SMTP banner, creates a user through the admin API, delivers a message by SMTP
// and reads it back by IMAP, all through qemu's user-mode networking forwarded to 127.0.0.1. The seed gives an SSH
// public key: `ssh -i KEY root@` runs `mailgrid status` on the node, and a password login is refused.
// Runs as root on x86_64 (the build needs mmdebstrap and chroot) and takes about six minutes on two cores, so
// `npm test` runs it only with MAILGRID_TEST_ISO=1 (CI sets it; `npm run test:iso` too) and otherwise reports it
// skipped, saying so.
//
//   MAILGRID_TEST_ISO=1         run it (as part of `npm test`)
//   MAILGRID_ISO=FILE           boot this image, never build
//   MAILGRID_ISO_REBUILD=1      build even when the image is fresh
//   MAILGRID_ISO_KEEP_VM=DIR    keep the VM's files (serial log, disks) in DIR

import { test } from 'node:test'
import type { TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, execFile, execFileSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { request as httpsRequest } from 'node:https'
import { connect } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import nodemailer from 'nodemailer'
import { ImapFlow } from 'imapflow'
import { freePort } from '../helpers/ports.ts'

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const DEFAULT_IMAGE = join(REPO, 'iso', 'out', 'mailgrid-amd64.iso')
// Measured on a 2-core machine (iso/README.md): a build takes 2-4 minutes; this allows for a cold apt cache. The
// bounds together stay well inside CI's 90 minutes.
const BUILD_TIMEOUT_MS = 20 * 60_000
// Boot to an SMTP banner under TCG software emulation: 1.5-2.5 minutes measured (iso/README.md); room for a loaded host.
const BOOT_TIMEOUT_MS = 12 * 60_000
const PROBE_INTERVAL_MS = 3_000
const PROBE_BANNER_TIMEOUT_MS = 10_000 // slirp accepts at once; the guest's banner comes or the socket closes
const STEP_TIMEOUT_MS = 120_000 // each admin, SMTP and IMAP step once the node is up (TCG makes scrypt slow)
const VM_MEMORY_MB = 2048
const QEMU_STOP_MS = 5_000 // SIGTERM is a power cut for the guest; qemu itself exits at once
const OVMF = '/usr/share/ovmf/OVMF.fd' // UEFI firmware for qemu (Debian package ovmf)
const DATA_DISK_SIZE = '2G'
const SEED_IMAGE_KB = 2048 // a FAT12 image of 2 MiB holds the seed with room to spare
// Guest ports the test reaches through hostfwd (the appliance config's production ports and admin port).
const GUEST_PORTS = { smtp: 25, imap: 143, imaps: 993, admin: 8080, ssh: 22 } as const

const HOSTNAME = 'mx1.example.test'
const DOMAIN = 'example.test'
const ADMIN_PASSWORD = 'admin password of the boot test'
const USER = `alice@${DOMAIN}`
const PASSWORD = 'correct horse battery'

function sh (cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
}

function hasCommand (name: string): boolean {
  try { sh('sh', ['-c', `command -v ${name}`]); return true } catch { return false }
}

/** The files that go into the image, as git lists them; the image is fresh when it is newer than all. */
function newestInputMs (): number {
  const files = sh('git', ['-C', REPO, 'ls-files', '-co', '--exclude-standard', '--', 'iso', 'appliance', 'node', 'gossip', 'store', 'package.json', 'package-lock.json'])
    .split('\n').filter(f => f !== '' && !f.startsWith('iso/out/'))
  let newest = 0
  for (const f of files) {
    try { newest = Math.max(newest, statSync(join(REPO, f)).mtimeMs) } catch { /* deleted in the work tree */ }
  }
  return newest
}

/** Resolves to the first reply line of a server on PORT, or null when it closes or stays silent. */
async function banner (port: number): Promise<string | null> {
  return await new Promise(resolve => {
    const socket = connect(port, '127.0.0.1')
    let buf = ''
    const done = (v: string | null): void => { clearTimeout(timer); socket.destroy(); resolve(v) }
    const timer = setTimeout(() => done(null), PROBE_BANNER_TIMEOUT_MS)
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => { buf += d; const i = buf.indexOf('\r\n'); if (i >= 0) done(buf.slice(0, i)) })
    socket.on('error', () => done(null))
    socket.on('close', () => done(null))
  })
}

async function until<T> (what: string, timeoutMs: number, probe: () => Promise<T | null>, alive: () => void): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    alive()
    const v = await probe()
    if (v !== null) return v
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, PROBE_INTERVAL_MS))
  }
}

// The appliance's admin API listens on 0.0.0.0, so it speaks HTTPS with the node's self-signed certificate
// (admin.tls "auto"); the guest made it, so there is nothing to verify it against here but the hostfwd port.
async function admin (base: string, token: string, method: string, path: string, body?: unknown): Promise<{ status: number, json: unknown }> {
  return await new Promise((resolve, reject) => {
    const req = httpsRequest(base + path, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      rejectUnauthorized: false,
      signal: AbortSignal.timeout(STEP_TIMEOUT_MS)
    }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('error', reject)
      res.on('end', () => {
        let json: unknown = null
        try { json = JSON.parse(Buffer.concat(chunks).toString('utf8')) } catch {}
        resolve({ status: res.statusCode ?? 0, json })
      })
    })
    req.on('error', reject)
    req.end(body === undefined ? undefined : JSON.stringify(body))
  })
}

interface Vm {
  started: number
  serialLog: string
  alive: () => void
  serialTail: () => string
  stop: () => Promise<void>
}

interface VmInit {
  image: string
  dir: string
  name: string
  ports: Record<keyof typeof GUEST_PORTS, number>
  seedImage: string | null
  uefi: boolean
}

/** Starts qemu on the image; restrict=on keeps the guest off every network but the forwarded ports. */
function bootVm (t: TestContext, init: VmInit): Vm {
  const fwd = (Object.keys(GUEST_PORTS) as Array<keyof typeof GUEST_PORTS>)
    .map(k => `hostfwd=tcp:127.0.0.1:${init.ports[k]}-:${GUEST_PORTS[k]}`).join(',')
  const serialLog = join(init.dir, `serial-${init.name}.log`)
  const args = [
    '-machine', 'q35', '-accel', 'tcg', '-cpu', 'max', '-smp', '2', '-m', String(VM_MEMORY_MB),
    '-display', 'none', '-monitor', 'none', '-serial', `file:${serialLog}`,
    // The image copies the node's journal to the serial port when asked (iso/rootfs/usr/local/sbin/
    // mailgrid-debug-console): a failed start then shows its cause in the log this test prints.
    '-fw_cfg', 'name=opt/org.mailgrid/debug,string=1',
    ...(init.uefi ? ['-bios', OVMF] : []),
    '-cdrom', init.image, '-boot', 'd',
    '-drive', `file=${join(init.dir, 'data.qcow2')},if=virtio,format=qcow2`,
    ...(init.seedImage !== null ? ['-drive', `file=${init.seedImage},if=virtio,format=raw`] : []),
    '-netdev', `user,id=net0,restrict=on,${fwd}`, '-device', 'virtio-net-pci,netdev=net0'
  ]
  const qemu: ChildProcess = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] })
  let qemuErr = ''
  qemu.stderr?.on('data', (d: Buffer) => { qemuErr += d.toString() })
  let exited = false
  const exit = new Promise<void>(resolve => qemu.on('exit', () => { exited = true; resolve() }))
  const serialTail = (): string => { try { return readFileSync(serialLog, 'utf8').split('\n').slice(-40).join('\n') } catch { return '' } }
  const stop = async (): Promise<void> => {
    if (exited) return
    qemu.kill('SIGTERM')
    const timer = setTimeout(() => qemu.kill('SIGKILL'), QEMU_STOP_MS)
    await exit
    clearTimeout(timer)
  }
  t.after(stop)
  return {
    started: Date.now(),
    serialLog,
    serialTail,
    stop,
    alive: () => { if (exited) throw new Error(`qemu (${init.name}) exited: ${qemuErr}\n--- serial console ---\n${serialTail()}`) }
  }
}

async function waitBanner (port: number, vm: Vm): Promise<string> {
  return await until('the SMTP banner', BOOT_TIMEOUT_MS, async () => {
    const line = await banner(port)
    return line !== null && line.startsWith('220') ? line : null
  }, vm.alive)
}

/** The newest message in the user's INBOX, over IMAPS, must be the one sent. */
async function readBack (port: number, subject: string): Promise<void> {
  const imap = new ImapFlow({ host: '127.0.0.1', port, secure: true, tls: { rejectUnauthorized: false }, auth: { user: USER, pass: PASSWORD }, logger: false, connectionTimeout: STEP_TIMEOUT_MS, greetingTimeout: STEP_TIMEOUT_MS, socketTimeout: STEP_TIMEOUT_MS })
  await imap.connect()
  try {
    const lock = await imap.getMailboxLock('INBOX')
    try {
      const msg = await imap.fetchOne('*', { envelope: true, source: true })
      assert.ok(msg !== false && msg !== undefined)
      assert.equal(msg.envelope?.subject, subject)
      assert.match(msg.source?.toString() ?? '', /delivered into the booted image/)
    } finally { lock.release() }
  } finally { await imap.logout().catch(() => {}) }
}

/** `ssh root@127.0.0.1 -p PORT ARGS... COMMAND` with OpenSSH's client, batch mode (never a prompt). */
async function ssh (port: number, args: string[], command: string): Promise<{ code: number, out: string, err: string }> {
  return await new Promise(resolve => {
    execFile('ssh', ['-p', String(port), '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
      '-o', 'ConnectTimeout=60', '-o', 'LogLevel=ERROR', ...args, 'root@127.0.0.1', command],
    { timeout: STEP_TIMEOUT_MS, encoding: 'utf8' }, (err, out, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 255, out, err: stderr })
    })
  })
}

const RUN = process.env.MAILGRID_TEST_ISO === '1'
test('the appliance image boots under qemu (BIOS), completes first boot from a seed, serves mail, and keeps it across a power cut and a UEFI reboot', {
  timeout: BUILD_TIMEOUT_MS + 2 * BOOT_TIMEOUT_MS + 10 * STEP_TIMEOUT_MS,
  ...(RUN ? {} : { skip: 'builds and boots the appliance image (about 6 minutes, as root): set MAILGRID_TEST_ISO=1, as CI and `npm run test:iso` do' })
}, async (t) => {
  assert.equal(process.arch, 'x64', 'the image and its boot test are x86_64 only')
  assert.equal(process.getuid?.(), 0, 'run as root: the build needs mmdebstrap and chroot (sudo npm run test:iso)')
  const tools = ['qemu-system-x86_64', 'qemu-img', 'mkfs.vfat', 'mcopy', 'ssh', 'ssh-keygen']
  if (!tools.every(hasCommand) || !existsSync(OVMF)) {
    execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'qemu-system-x86', 'qemu-utils', 'dosfstools', 'mtools', 'ovmf', 'openssh-client'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
  }

  // 1. The image.
  const image = process.env.MAILGRID_ISO ?? DEFAULT_IMAGE
  const fresh = existsSync(image) && statSync(image).mtimeMs > newestInputMs()
  let buildMs = 0
  if (process.env.MAILGRID_ISO === undefined && (!fresh || process.env.MAILGRID_ISO_REBUILD === '1')) {
    const started = Date.now()
    await new Promise<void>((resolve, reject) => {
      const build = spawn('bash', [join(REPO, 'iso', 'build.sh')], { stdio: 'inherit', env: { ...process.env, MAILGRID_ISO_OUT: image } })
      const timer = setTimeout(() => build.kill('SIGTERM'), BUILD_TIMEOUT_MS)
      build.on('exit', (code, signal) => {
        clearTimeout(timer)
        if (code === 0) resolve(); else reject(new Error(`iso/build.sh failed (${signal ?? code})`))
      })
    })
    buildMs = Date.now() - started
    t.diagnostic(`build: ${Math.round(buildMs / 1000)} s`)
  } else {
    t.diagnostic(`reusing ${image} (newer than every input)`)
  }
  assert.ok(existsSync(image), `no image at ${image}`)

  // 2. The VM's disks: a blank data disk, and the seed on a FAT stick labelled MAILGRID.
  const keep = process.env.MAILGRID_ISO_KEEP_VM
  if (keep !== undefined) mkdirSync(keep, { recursive: true })
  const dir = keep ?? mkdtempSync('/var/tmp/mailgrid-iso-test.')
  t.after(() => { if (keep === undefined) rmSync(dir, { recursive: true, force: true }) })
  const token = randomBytes(32).toString('hex')
  const clusterKey = randomBytes(32).toString('hex')
  const seedFile = join(dir, 'mailgrid-seed.toml')
  // The operator's SSH key pair: the seed gives its public half, the test logs in with the private one.
  const sshKey = join(dir, 'id_ed25519')
  rmSync(sshKey, { force: true }); rmSync(`${sshKey}.pub`, { force: true })
  sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'boot-test', '-f', sshKey])
  const sshPub = readFileSync(`${sshKey}.pub`, 'utf8').trim()
  // The seed's keys are those of `mailgrid firstboot --seed` (appliance/firstboot.ts): a new grid with its
  // domain and admin account, and the admin API token the test then uses.
  writeFileSync(seedFile, [
    '# first boot, unattended (the boot test)',
    `hostname = "${HOSTNAME}"`,
    'grid = "create"',
    `domain = "${DOMAIN}"`,
    `adminPassword = "${ADMIN_PASSWORD}"`,
    `adminToken = "${token}"`,
    `clusterKey = "${clusterKey}"`,
    `sshKey = "${sshPub}"`,
    ''
  ].join('\n'))
  sh('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'data.qcow2'), DATA_DISK_SIZE])
  const seedImage = join(dir, 'seed.img')
  rmSync(seedImage, { force: true })
  sh('mkfs.vfat', ['-n', 'MAILGRID', '-C', seedImage, String(SEED_IMAGE_KB)])
  sh('mcopy', ['-i', seedImage, seedFile, '::/mailgrid-seed.toml'])

  // 3. First boot, BIOS firmware, with the seed stick.
  const ports = { smtp: await freePort(), imap: await freePort(), imaps: await freePort(), admin: await freePort(), ssh: await freePort() }
  const first = bootVm(t, { image, dir, name: 'bios', ports, seedImage, uefi: false })
  let bootMs = 0
  let secondBootMs = 0
  const base = `https://127.0.0.1:${ports.admin}`
  const subject = `boot test ${randomBytes(4).toString('hex')}`
  try {
    const greeting = await waitBanner(ports.smtp, first)
    bootMs = Date.now() - first.started
    t.diagnostic(`first boot (BIOS) to SMTP banner: ${Math.round(bootMs / 1000)} s; banner: ${greeting}`)
    assert.match(greeting, new RegExp(`^220 ${HOSTNAME.replaceAll('.', '\\.')} `), 'the seed set the host name')

    // 4. The admin API with the token the seed set: status, then the domain (first boot made it) and a user.
    const status = await until('the admin API', STEP_TIMEOUT_MS, async () => {
      try { const r = await admin(base, token, 'GET', '/v1/status'); return r.status === 200 ? r : null } catch { return null }
    }, first.alive)
    assert.equal((status.json as { hostname?: string }).hostname, HOSTNAME)
    const domains = await admin(base, token, 'GET', '/v1/domains')
    assert.equal(domains.status, 200)
    assert.match(JSON.stringify(domains.json), new RegExp(DOMAIN.replace('.', '\\.')), 'first boot created the seed\'s domain')
    const created = await admin(base, token, 'POST', '/v1/users', { address: USER, password: PASSWORD })
    assert.equal(created.status, 201, JSON.stringify(created.json))

    // 5. A message in by SMTP (port 25, as another MX would send it), out by IMAP over TLS.
    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: ports.smtp, secure: false, ignoreTLS: true, connectionTimeout: STEP_TIMEOUT_MS, socketTimeout: STEP_TIMEOUT_MS })
    const sent = await transport.sendMail({ from: 'bob@example.org', to: USER, subject, text: 'delivered into the booted image\n' })
    assert.equal(sent.accepted.length, 1)
    await readBack(ports.imaps, subject)

    // 6. The data went to the blank disk, not to RAM.
    assert.match(readFileSync(first.serialLog, 'utf8'), /mailgrid: data disk \/dev\/vd[a-z] mounted/)

    // 7. SSH with the seed's key: root runs `mailgrid status` on the node; a password login is refused.
    let last = { code: -1, out: '', err: '' }
    const status2 = await until('ssh root@ with the seed\'s key', STEP_TIMEOUT_MS, async () => {
      last = await ssh(ports.ssh, ['-i', sshKey, '-o', 'IdentitiesOnly=yes'], 'mailgrid status')
      return last.code === 0 ? last : null
    }, first.alive).catch((err: Error) => { throw new Error(`${err.message}; last ssh: exit ${last.code}, ${last.err}${last.out}`) })
    assert.match(status2.out, new RegExp(HOSTNAME.replaceAll('.', '\\.')), status2.out)
    const password = await ssh(ports.ssh, ['-o', 'PubkeyAuthentication=no', '-o', 'PreferredAuthentications=password,keyboard-interactive', '-o', 'NumberOfPasswordPrompts=1'], 'true')
    assert.notEqual(password.code, 0, 'a password login must be refused')
    assert.match(password.err, /Permission denied \(publickey\)/, 'the server offers public keys only')
  } catch (err) {
    t.diagnostic(`--- serial console of the first boot (last lines) ---\n${first.serialTail()}`)
    throw err
  }
  // Power off without a shutdown (qemu killed): what SMTP acknowledged was fsync'd and must survive it.
  await first.stop()

  // 8. Second boot, UEFI firmware, same data disk, no seed: the node comes back with its config and mail.
  const second = bootVm(t, { image, dir, name: 'uefi', ports, seedImage: null, uefi: true })
  try {
    const greeting = await waitBanner(ports.smtp, second)
    secondBootMs = Date.now() - second.started
    t.diagnostic(`second boot (UEFI) to SMTP banner: ${Math.round(secondBootMs / 1000)} s; banner: ${greeting}`)
    assert.match(greeting, new RegExp(`^220 ${HOSTNAME.replaceAll('.', '\\.')} `), 'the host name came back from the data disk')
    const log = readFileSync(second.serialLog, 'utf8')
    assert.match(log, /mailgrid: configuration restored from the data disk/)
    assert.doesNotMatch(log, /mailgrid: formatting/)
    // First boot's files reached the disk before the power cut (issue 5: they were empty, the node ran on defaults).
    assert.doesNotMatch(log, /configuration saved on the data disk is damaged/)
    const status = await until('the admin API after the reboot', STEP_TIMEOUT_MS, async () => {
      try { const r = await admin(base, token, 'GET', '/v1/status'); return r.status === 200 ? r : null } catch { return null }
    }, second.alive)
    assert.equal((status.json as { hostname?: string }).hostname, HOSTNAME)
    await readBack(ports.imaps, subject)
    // SSH again with the key saved on the data disk, and the same host key (made once, kept on the disk).
    const back = await until('ssh after the reboot', STEP_TIMEOUT_MS, async () => {
      const r = await ssh(ports.ssh, ['-i', sshKey, '-o', 'IdentitiesOnly=yes'], 'mailgrid status')
      return r.code === 0 ? r : null
    }, second.alive)
    assert.match(back.out, new RegExp(HOSTNAME.replaceAll('.', '\\.')))
    const hostKey = (file: string): string | undefined => /mailgrid: SSH on: .*host key (SHA256:\S+)/.exec(readFileSync(file, 'utf8'))?.[1]
    assert.ok(hostKey(first.serialLog) !== undefined, 'the first boot said SSH is on, with its host key')
    assert.equal(hostKey(second.serialLog), hostKey(first.serialLog), 'the host key outlives the reboot')
  } catch (err) {
    t.diagnostic(`--- serial console of the second boot (last lines) ---\n${second.serialTail()}`)
    throw err
  }
  await second.stop()
  t.diagnostic(`build ${Math.round(buildMs / 1000)} s, first boot ${Math.round(bootMs / 1000)} s, second boot ${Math.round(secondBootMs / 1000)} s`)
})

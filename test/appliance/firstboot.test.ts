// `mailgrid firstboot`: the seed's checks, the config rewrite, the wizard driven by piped answers, and the
// real command run twice (it refuses the second time unless --force), with what it leaves on disk checked:
// config, key and token modes, identity, certificate, and the domain with its admin account in the store.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { PassThrough, Readable } from 'node:stream'
import { FirstbootError, parseSeed, TEMPLATE_FILE, withHostname } from '../../appliance/firstboot.ts'
import { createAccounts } from '../../appliance/console/accounts.ts'
import { resolveConfig } from '../../appliance/config.ts'
import { main } from '../../appliance/commands.ts'
import { createPrompter, runWizard } from '../../appliance/wizard.ts'
import { createStore } from '../../store/index.ts'
import { tempDir } from '../helpers/tmp.ts'

const ROOT = new URL('../..', import.meta.url).pathname
const CLI = join(ROOT, 'appliance', 'cli.ts')
const KEY = 'k'.repeat(43)
const PASSWORD = 'correct horse battery'
// An Ed25519 public key in OpenSSH's one-line form: "ssh-ed25519", then the blob string(type) || string(key).
const sshString = (b: Buffer): Buffer => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b])
const SSH_KEY = `ssh-ed25519 ${Buffer.concat([sshString(Buffer.from('ssh-ed25519')), sshString(Buffer.from(generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' }).x ?? '', 'base64url'))]).toString('base64')} op@laptop`

test('seed: create and join answers; every problem named by its key, no secret echoed', () => {
  assert.deepEqual(parseSeed(`hostname = "mx1.example.com"\ngrid = "create"\ndomain = "example.com"\nadminPassword = "${PASSWORD}"\n`), {
    hostname: 'mx1.example.com', mode: 'create', clusterKey: undefined, domain: 'example.com', adminPassword: PASSWORD, adminToken: undefined
  })
  assert.equal(parseSeed(`hostname = "mx2.example.com"\ngrid = "join"\nclusterKey = "${KEY}"\n`).clusterKey, KEY)
  assert.equal(parseSeed(`hostname = "mx2.example.com"\ngrid = "join"\nclusterKey = "${KEY}"\nsshKey = "${SSH_KEY}"\n`).sshKey, SSH_KEY)
  const bad: Array<[string, RegExp]> = [
    ['grid = "create"', /hostname: missing/],
    ['hostname = "mx1.example.com"\ngrid = "merge"', /grid: must be "create" or "join"/],
    ['hostname = "not a name"\ngrid = "join"\nclusterKey = "' + KEY + '"', /hostname: must be/],
    ['hostname = "mx1.example.com"\ngrid = "create"\ndomain = "example.com"', /adminPassword: missing/],
    ['hostname = "mx1.example.com"\ngrid = "create"\ndomain = "example.com"\nadminPassword = "short"', /adminPassword: must be 10 to/],
    ['hostname = "mx1.example.com"\ngrid = "join"', /clusterKey: missing/],
    ['hostname = "mx1.example.com"\ngrid = "join"\nclusterKey = "tooshort"', /clusterKey: must be/],
    [`hostname = "mx1.example.com"\ngrid = "join"\nclusterKey = "${KEY}"\ndomain = "example.com"`, /domain: only for grid = "create"/],
    ['hostname = "mx1.example.com"\ngrid = "join"\nclusterkey = "x"', /clusterkey: unknown key/],
    [`hostname = "mx1.example.com"\ngrid = "join"\nclusterKey = "${KEY}"\nsshKey = "ssh-dss AAAA"`, /sshKey: must be a public key of type/],
    ['hostname = 5\ngrid = "join"', /hostname: must be a string/],
    ['hostname = "mx1.example.com"\ngrid = "create"\nadminToken = "abc"', /adminToken: must be 32 to/],
    ['hostname = "a', /line 1/]
  ]
  for (const [text, re] of bad) assert.throws(() => parseSeed(text, 'seed.toml'), (err: Error) => err instanceof FirstbootError && re.test(err.message), text)
  assert.throws(() => parseSeed('hostname = "mx1.example.com"\ngrid = "join"\nclusterKey = "sekrit"'), (err: Error) => !err.message.includes('sekrit'))
})

test('withHostname: replaces the top-level key, keeps comments and tables, inserts it when missing', async () => {
  const template = await readFile(TEMPLATE_FILE, 'utf8')
  const out = withHostname(template, 'mx9.example.org')
  assert.equal(resolveConfig({ toml: out }).config.hostname, 'mx9.example.org')
  assert.equal(out.split('\n').length, template.split('\n').length, 'one line changed, none added')
  const tablesOnly = '[grid]\nhostname = "not-this-one"\nmdns = true\n'
  const t2 = withHostname(tablesOnly, 'mx1.example.com')
  assert.match(t2, /^hostname = "mx1.example.com"\n\[grid\]\nhostname = "not-this-one"/)
  assert.equal(withHostname('', 'a.example.com'), 'hostname = "a.example.com"\n')
})

test('wizard: piped answers, wrong ones asked again, passwords confirmed; join asks only for the key', async () => {
  const run = async (lines: string[]): Promise<{ answers: unknown, out: string }> => {
    const out: string[] = []
    const p = createPrompter(Readable.from([lines.join('\n') + '\n']), { write: (s: string) => { out.push(s) } })
    try {
      return { answers: await runWizard(p, 'localhost'), out: out.join('') }
    } finally {
      p.close()
    }
  }
  const created = await run(['bad name', 'mx1.example.com', '', 'nodot', 'example.com', 'short', PASSWORD, 'different', PASSWORD, PASSWORD, ''])
  assert.deepEqual(created.answers, { hostname: 'mx1.example.com', mode: 'create', domain: 'example.com', adminPassword: PASSWORD })
  assert.match(created.out, /must be a host name/)
  assert.match(created.out, /The two passwords differ/)
  assert.ok(!created.out.includes(PASSWORD), 'the password is never written back')

  const joined = await run(['mx2.example.com', '2', KEY, 'ssh-rsa AAAAB3NzaC1yc2E=', SSH_KEY])
  assert.deepEqual(joined.answers, { hostname: 'mx2.example.com', mode: 'join', clusterKey: KEY, sshKey: SSH_KEY })
  assert.match(joined.out, /SSH public key \[none: SSH stays off\]/)
  assert.match(joined.out, /That is not right: it must be an RSA key whose blob/)

  await assert.rejects(run(['mx3.example.com']), /input ended/)
  await assert.rejects(run(Array.from({ length: 6 }, () => 'bad name')), /no valid answer after 5 tries/)
})

test('wizard: a person typing, one line at a time', async () => {
  const input = new PassThrough()
  const p = createPrompter(input, { write: () => {} })
  const answers = runWizard(p, 'mx5.example.com')
  for (const line of ['', '2', KEY, '']) {
    await new Promise(resolve => setImmediate(resolve))
    input.write(line + '\n')
  }
  assert.deepEqual(await answers, { hostname: 'mx5.example.com', mode: 'join', clusterKey: KEY })
  p.close()
})

function cli (args: string[]): Promise<{ code: number, out: string, err: string }> {
  return new Promise(resolve => {
    execFile(process.execPath, [CLI, ...args], { timeout: 60_000, env: { PATH: process.env.PATH ?? '' } }, (err, out, stderr) => {
      resolve({ code: err === null ? 0 : (err as { code?: number }).code ?? 1, out, err: stderr })
    })
  })
}

test('mailgrid firstboot --seed: config, key, token, identity, certificate, domain and admin; refuses twice unless --force', async t => {
  const dir = await tempDir(t)
  const config = join(dir, 'etc', 'mailgrid.toml')
  const data = join(dir, 'data')
  const seed = join(dir, 'seed.toml')
  const token = 't'.repeat(40)
  await writeFile(seed, `hostname = "mx1.example.com"\ngrid = "create"\ndomain = "Example.COM"\nadminPassword = "${PASSWORD}"\nadminToken = "${token}"\nsshKey = "${SSH_KEY}"\n`)
  const first = await cli(['firstboot', '--seed', seed, '--config', config, '--data', data])
  assert.equal(first.code, 0, first.err)
  const key = (await readFile(join(data, 'cluster.key'), 'utf8')).trim()
  assert.ok(key.length >= 43)
  assert.ok(first.out.includes(key), 'a new grid\'s key is printed')
  assert.match(first.out, /▀|▄|█/, 'and shown as a QR code')
  // the appliance's admin API listens on 0.0.0.0: HTTPS, and the remote CLI line pins the certificate shown
  assert.match(first.out, /admin API\s+https:\/\/[\d.]+:8080 /)
  const fp = /TLS certificate\s+sha256 ([0-9A-F:]{95})/.exec(first.out)?.[1]
  assert.ok(fp !== undefined, first.out)
  assert.match(first.out, new RegExp(`remote CLI\\s+MAILGRID_TOKEN=\\.\\.\\. mailgrid status --url https://[\\d.]+:8080 --fingerprint ${fp}`))
  assert.match(first.out, /node id\s+12D3KooW/)
  assert.match(first.out, /web console\s+https:\/\/[\d.]+:8080\/console\/  \(log in as admin with the same password\)/)

  for (const f of ['cluster.key', 'admin.token', join('grid', 'peer.key'), join('tls', 'key.pem')]) {
    assert.equal((await stat(join(data, f))).mode & 0o077, 0, `${f} is owner-only`)
  }
  assert.equal((await readFile(join(data, 'admin.token'), 'utf8')).trim(), token)
  // the seed's SSH key, beside the config (the image's sshd reads it there and runs only with it)
  assert.equal(await readFile(join(dir, 'etc', 'ssh_authorized_keys'), 'utf8'), SSH_KEY + '\n')
  const { config: c, warnings } = resolveConfig({ toml: await readFile(config, 'utf8') })
  assert.deepEqual(warnings, [])
  assert.equal(c.hostname, 'mx1.example.com')
  assert.equal(c.grid.mdns, true, 'the production template is the base')

  const store = createStore({}, { path: data, sync: false })
  await store.start()
  try {
    assert.deepEqual((await store.listDomains()).map(d => d.name), ['example.com'])
    assert.ok(await store.verifyPassword('admin@example.com', PASSWORD) !== null)
    assert.deepEqual(await store.resolveRecipient('postmaster@example.com'), ['admin@example.com'])
    // the web console's first account, with the same password
    const accounts = createAccounts(store)
    assert.deepEqual((await accounts.list()).map(a => [a.name, a.domains]), [['admin', null]])
    assert.equal((await accounts.verify('admin', PASSWORD))?.name, 'admin')
  } finally {
    await store.stop()
  }

  const again = await cli(['firstboot', '--seed', seed, '--config', config, '--data', data])
  assert.equal(again.code, 1)
  assert.match(again.err, /already ran.*--force/)
  assert.equal((await readFile(join(data, 'cluster.key'), 'utf8')).trim(), key, 'nothing changed')

  await writeFile(seed, `hostname = "mx1.example.com"\ngrid = "join"\nclusterKey = "${KEY}"\n`)
  const forced = await cli(['firstboot', '--seed', seed, '--config', config, '--data', data, '--force'])
  assert.equal(forced.code, 0, forced.err)
  assert.equal((await readFile(join(data, 'cluster.key'), 'utf8')).trim(), KEY)
  assert.ok(!forced.out.includes(KEY), 'a joining node does not print the key it was given')
  await assert.rejects(stat(join(dir, 'etc', 'ssh_authorized_keys')), { code: 'ENOENT' }, 'a run without sshKey leaves no SSH key')

  const usage = await main(['firstboot', 'extra'], { stdout: { write: () => {} }, stderr: { write: () => {} }, stdin: Readable.from([]), env: {} })
  assert.equal(usage, 2)
})

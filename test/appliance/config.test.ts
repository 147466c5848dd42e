import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parse } from 'smol-toml'
import {
  adminUsesTls, ConfigError, DEFAULT_CONFIG, envName, loadConfig, MESSAGE_BYTES_LIMIT_MAX, OPTIONS, resolveConfig, SERVICE_NAMES, toNodeInit
} from '../../appliance/config.ts'
import type { Config } from '../../appliance/config.ts'

const SAMPLE = new URL('../../appliance/mailgrid.sample.toml', import.meta.url)
const TLS = { cert: 'C', key: 'K' }

function problems (fn: () => unknown): string[] {
  try {
    fn()
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err))
    return err.problems
  }
  assert.fail('expected a ConfigError')
}

test('the embedded defaults are those of issue 2', () => {
  const c = DEFAULT_CONFIG
  assert.equal(c.dataDir, './data')
  assert.equal(c.plaintextAuthOnLoopback, true)
  assert.equal(c.listen.host, '127.0.0.1')
  const ports = Object.fromEntries(SERVICE_NAMES.map(s => [s, c.listen[s].port]))
  assert.deepEqual(ports, { smtp: 2525, submission: 2587, smtps: 2465, pop3: 2110, pop3s: 2995, imap: 2143, imaps: 2993 })
  for (const s of SERVICE_NAMES) assert.deepEqual({ enabled: c.listen[s].enabled, host: c.listen[s].host }, { enabled: true, host: '' })
  assert.deepEqual(c.admin, { host: '127.0.0.1', port: 8080, tls: 'auto' })
  assert.deepEqual(c.listen.http, { enabled: true, host: '', port: 2080 })
  assert.deepEqual(c.listen.https, { enabled: true, host: '', port: 2443 })
  assert.deepEqual(c.metrics, { token: '' })
  assert.deepEqual(c.limits, {
    messageBytesMax: 25 * 1024 * 1024,
    recipientsMax: 100,
    connectionsPerIpMax: 50,
    connectionsMax: 5000,
    authFailuresPerIpMax: 10,
    authFailuresPerAccountMax: 10,
    authWindowSeconds: 300,
    smtpIdleSeconds: 300,
    pop3IdleSeconds: 600
  })
  assert.deepEqual(c.tls, { cert: '', key: '' })
  assert.equal(c.store.sync, true)
  assert.equal(c.log.level, 'info')
  assert.deepEqual(c.grid, {
    enabled: true, clusterKey: '', listen: [], bootstrap: [], mdns: false, replicas: 2, weight: 0, advertiseHost: '', direct: true
  })
  assert.deepEqual(resolveConfig(), { config: DEFAULT_CONFIG, warnings: [] })
})

test('the sample file parses to exactly the defaults and lists every option', async () => {
  const toml = await readFile(SAMPLE, 'utf8')
  assert.deepEqual(resolveConfig({ toml, file: 'sample' }), { config: DEFAULT_CONFIG, warnings: [] })
  const keys: string[] = []
  const walk = (t: Record<string, unknown>, prefix: string): void => {
    for (const [k, v] of Object.entries(t)) {
      const p = prefix === '' ? k : `${prefix}.${k}`
      if (typeof v === 'object' && v !== null && !Array.isArray(v)) walk(v as Record<string, unknown>, p)
      else keys.push(p)
    }
  }
  walk(parse(toml), '')
  assert.deepEqual(keys.sort(), OPTIONS.map(o => o.path).sort())
})

test('environment variable names follow the documented rule', () => {
  assert.equal(envName('dataDir'), 'MAILGRID_DATA_DIR')
  assert.equal(envName('hostname'), 'MAILGRID_HOSTNAME')
  assert.equal(envName('listen.smtp.port'), 'MAILGRID_SMTP_PORT')
  assert.equal(envName('listen.pop3s.enabled'), 'MAILGRID_POP3S_ENABLED')
  assert.equal(envName('listen.host'), 'MAILGRID_LISTEN_HOST')
  assert.equal(envName('admin.port'), 'MAILGRID_ADMIN_PORT')
  assert.equal(envName('limits.authFailuresPerIpMax'), 'MAILGRID_LIMITS_AUTH_FAILURES_PER_IP_MAX')
  assert.equal(envName('plaintextAuthOnLoopback'), 'MAILGRID_PLAINTEXT_AUTH_ON_LOOPBACK')
  assert.equal(envName('grid.clusterKey'), 'MAILGRID_GRID_CLUSTER_KEY')
  assert.equal(envName('grid.listen'), 'MAILGRID_GRID_LISTEN')
  assert.equal(envName('grid.advertiseHost'), 'MAILGRID_GRID_ADVERTISE_HOST')
  assert.equal(new Set(OPTIONS.map(o => envName(o.path))).size, OPTIONS.length, 'every option has its own variable')
})

test('file, then environment, then flags override the defaults', () => {
  const toml = 'dataDir = "/srv/a"\nhostname = "mx.example.com"\n[listen.smtp]\nport = 25\n[listen.imap]\nenabled = false\n[limits]\nrecipientsMax = 500\n'
  const { config, warnings } = resolveConfig({ toml })
  assert.deepEqual(warnings, [])
  assert.equal(config.dataDir, '/srv/a')
  assert.equal(config.hostname, 'mx.example.com')
  assert.equal(config.listen.smtp.port, 25)
  assert.equal(config.listen.imap.enabled, false)
  assert.equal(config.limits.recipientsMax, 500)
  assert.equal(config.listen.pop3.port, 2110, 'untouched options keep their defaults')

  const env = { MAILGRID_DATA_DIR: '/srv/b', MAILGRID_SMTP_PORT: '2526', MAILGRID_IMAP_ENABLED: 'true', MAILGRID_STORE_SYNC: '0', MAILGRID_LOG_LEVEL: 'debug' }
  const e = resolveConfig({ toml, env }).config
  assert.equal(e.dataDir, '/srv/b')
  assert.equal(e.listen.smtp.port, 2526)
  assert.equal(e.listen.imap.enabled, true)
  assert.equal(e.store.sync, false)
  assert.equal(e.log.level, 'debug')
  assert.equal(resolveConfig({ toml, env, flags: { dataDir: '/srv/c' } }).config.dataDir, '/srv/c')
})

test('unknown keys and variables are warned about, not used', () => {
  const { config, warnings } = resolveConfig({
    toml: 'colour = "red"\n[listen.smtp]\nprt = 25\n[extra]\nx = 1\n',
    env: { MAILGRID_SMTP_PROT: '1', MAILGRID_CONFIG: 'ignored-here', OTHER: 'x' }
  })
  assert.deepEqual(config, DEFAULT_CONFIG)
  assert.deepEqual(warnings, [
    'colour: unknown key, ignored',
    'listen.smtp.prt: unknown key, ignored',
    'extra: unknown key, ignored',
    'MAILGRID_SMTP_PROT: unknown environment variable, ignored'
  ])
})

test('every bad value is reported with its path', () => {
  const cases: Array<[string, string]> = [
    ['[listen.smtp]\nport = 70000', 'listen.smtp.port: must be an integer 0-65535 (got 70000)'],
    ['[listen.smtp]\nport = -1', 'listen.smtp.port: must be an integer 0-65535 (got -1)'],
    ['[listen.smtp]\nport = 25.5', 'listen.smtp.port: must be an integer 0-65535 (got 25.5)'],
    ['[listen.smtp]\nport = "25"', 'listen.smtp.port: must be an integer 0-65535 (got "25")'],
    ['[listen.smtp]\nenabled = "yes"', 'listen.smtp.enabled: must be true or false (got "yes")'],
    ['[listen.smtp]\nhost = "not a host"', 'listen.smtp.host: must be an IP address or a host name (got "not a host")'],
    ['[listen]\nhost = ""', 'listen.host: must be an IP address or a host name (got "")'],
    ['[admin]\nhost = 127', 'admin.host: must be a string (got 127)'],
    ['hostname = "bad_name!"', 'hostname: must be a DNS host name (got "bad_name!")'],
    ['dataDir = ""', 'dataDir: must not be empty (got "")'],
    ['dataDir = ["a"]', 'dataDir: must be a string (got an array)'],
    ['plaintextAuthOnLoopback = 1', 'plaintextAuthOnLoopback: must be true or false (got 1)'],
    ['[tls]\ncert = 5', 'tls.cert: must be a string (got 5)'],
    ['[limits]\nmessageBytesMax = 10', `limits.messageBytesMax: must be an integer 1024-${MESSAGE_BYTES_LIMIT_MAX} (got 10)`],
    ['[limits]\nrecipientsMax = 0', 'limits.recipientsMax: must be an integer 1-1000000 (got 0)'],
    ['[limits]\nconnectionsPerIpMax = 0', 'limits.connectionsPerIpMax: must be an integer 1-1000000 (got 0)'],
    ['[limits]\nconnectionsMax = 2000000', 'limits.connectionsMax: must be an integer 1-1000000 (got 2000000)'],
    ['[limits]\nauthFailuresPerIpMax = 0', 'limits.authFailuresPerIpMax: must be an integer 1-1000000 (got 0)'],
    ['[limits]\nauthFailuresPerAccountMax = 0', 'limits.authFailuresPerAccountMax: must be an integer 1-1000000 (got 0)'],
    ['[limits]\nauthWindowSeconds = 0', 'limits.authWindowSeconds: must be an integer 1-86400 (got 0)'],
    ['[limits]\nsmtpIdleSeconds = 100000', 'limits.smtpIdleSeconds: must be an integer 1-86400 (got 100000)'],
    ['[limits]\npop3IdleSeconds = 0', 'limits.pop3IdleSeconds: must be an integer 1-86400 (got 0)'],
    ['[store]\nsync = "no"', 'store.sync: must be true or false (got "no")'],
    ['[log]\nlevel = "loud"', 'log.level: must be one of fatal, error, warn, info, debug, trace (got "loud")'],
    ['listen = 5', 'listen: must be a table'],
    ['[limits.recipientsMax]\nx = 1', 'limits.recipientsMax: must be an integer 1-1000000 (got a table)'],
    ['[tls]\ncert = "/etc/c.pem"', 'tls.key: must be set together with tls.cert'],
    ['[tls]\nkey = "/etc/k.pem"', 'tls.cert: must be set together with tls.key'],
    ['[listen.pop3]\nport = 2525', 'listen.pop3.port: 2525 is already used by listen.smtp'],
    ['[admin]\nport = 2110', 'admin.port: 2110 is already used by listen.pop3'],
    ['[listen.smtp]\nhost = "0.0.0.0"\n[listen.pop3]\nport = 2525', 'listen.pop3.port: 2525 is already used by listen.smtp'],
    ['[grid]\nenabled = "yes"', 'grid.enabled: must be true or false (got "yes")'],
    ['[grid]\nclusterKey = "short"', 'grid.clusterKey: must be empty (a key is generated) or 16-1024 characters (got 5 characters)'],
    ['[grid]\nclusterKey = 12345', 'grid.clusterKey: must be a string (got 12345)'],
    ['[grid]\nlisten = "/ip4/127.0.0.1/tcp/7946"', 'grid.listen: must be a list of strings (got "/ip4/127.0.0.1/tcp/7946")'],
    ['[grid]\nlisten = ["127.0.0.1:7946"]', 'grid.listen: must be multiaddrs such as "/ip4/192.0.2.1/tcp/7946" (got "127.0.0.1:7946")'],
    ['[grid]\nbootstrap = ["/ip4/192.0.2.1/tcp/7946", 7946]', 'grid.bootstrap: must be a list of strings (got 7946)'],
    ['[grid]\nbootstrap = ["/ip4/192.0.2.1/tcp/7946 /ip4/192.0.2.2/tcp/7946"]',
      'grid.bootstrap: must be multiaddrs such as "/ip4/192.0.2.1/tcp/7946" (got "/ip4/192.0.2.1/tcp/7946 /ip4/192.0.2.2/tcp/7946")'],
    [`[grid]\nbootstrap = [${Array.from({ length: 65 }, () => '"/ip4/192.0.2.1/tcp/1"').join(',')}]`, 'grid.bootstrap: must have at most 64 entries (got 65)'],
    ['[grid]\nmdns = 1', 'grid.mdns: must be true or false (got 1)'],
    ['[grid]\nreplicas = 0', 'grid.replicas: must be an integer 1-5 (got 0)'],
    ['[grid]\nreplicas = 6', 'grid.replicas: must be an integer 1-5 (got 6)'],
    ['[grid]\nweight = -1', 'grid.weight: must be a number 0-1000 (got -1)'],
    ['[grid]\nweight = "heavy"', 'grid.weight: must be a number 0-1000 (got "heavy")'],
    ['[grid]\nadvertiseHost = "not a host"', 'grid.advertiseHost: must be an IP address or a host name (got "not a host")'],
    ['[grid]\nlisten = ["/ip4/127.0.0.1/tcp/2525"]', 'grid.listen.port: 2525 is already used by listen.smtp'],
    ['[admin]\nport = 7946', 'grid.listen.port: 7946 is already used by admin'],
    ['[listen]\nhost = "mail.example.com"', 'grid.listen: must be set when listen.host is a host name ("mail.example.com")']
  ]
  for (const [toml, message] of cases) assert.deepEqual(problems(() => resolveConfig({ toml })), [message], toml)
})

test('ports may repeat on different addresses, on port 0, and on disabled services', () => {
  resolveConfig({ toml: '[listen.pop3]\nhost = "127.0.0.2"\nport = 2525' })
  resolveConfig({ env: Object.fromEntries(SERVICE_NAMES.map(s => [envName(`listen.${s}.port`), '0'])) })
  resolveConfig({ toml: '[listen.smtp]\nenabled = false\n[listen.pop3]\nport = 2525' })
})

test('all problems are reported at once; environment values name their variable', () => {
  const p = problems(() => resolveConfig({
    toml: '[limits]\nrecipientsMax = 0\n',
    env: { MAILGRID_SMTP_PORT: 'abc', MAILGRID_STORE_SYNC: 'maybe', MAILGRID_ADMIN_PORT: '99999' }
  }))
  assert.deepEqual(p, [
    'listen.smtp.port (from MAILGRID_SMTP_PORT): must be an integer 0-65535 (got "abc")',
    'admin.port (from MAILGRID_ADMIN_PORT): must be an integer 0-65535 (got 99999)',
    'limits.recipientsMax: must be an integer 1-1000000 (got 0)',
    'store.sync (from MAILGRID_STORE_SYNC): must be true or false (got "maybe")'
  ])
  const err = (() => { try { resolveConfig({ env: { MAILGRID_SMTP_PORT: 'x', MAILGRID_POP3_PORT: 'y' } }) } catch (e) { return e as Error } })()
  assert.match(err?.message ?? '', /^2 configuration errors:\n {2}listen\.smtp\.port/)
})

test('a TOML syntax error names the file, line and column', () => {
  const p = problems(() => resolveConfig({ toml: 'dataDir = "/a"\nhostname = = 1\n', file: 'my.toml' }))
  assert.equal(p.length, 1)
  assert.match(p[0], /^my\.toml: line 2, column \d+: /)
})

test('loadConfig reads --config, else MAILGRID_CONFIG, and reports a missing file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-config-'))
  try {
    const file = join(dir, 'm.toml')
    await writeFile(file, '[listen.smtp]\nport = 2600\n')
    assert.equal((await loadConfig({ file, env: {} })).config.listen.smtp.port, 2600)
    assert.equal((await loadConfig({ env: { MAILGRID_CONFIG: file } })).config.listen.smtp.port, 2600)
    assert.equal((await loadConfig({ env: {} })).config.listen.smtp.port, 2525)
    await assert.rejects(loadConfig({ file: join(dir, 'none.toml'), env: {} }), (err: unknown) =>
      err instanceof ConfigError && err.problems[0] === `${join(dir, 'none.toml')}: cannot read the config file (ENOENT)`)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('toNodeInit resolves hosts, disabled services, units and the hostname', () => {
  const { config } = resolveConfig({
    toml: 'dataDir = "rel/data"\n[listen]\nhost = "0.0.0.0"\n[listen.smtp]\nhost = "192.0.2.1"\n[listen.imaps]\nenabled = false\n[store]\nsync = false\n'
  })
  const init = toNodeInit(config, TLS, 'machine.example', { clusterKey: 'k' })
  assert.equal(init.dataDir, resolve('rel/data'))
  assert.equal(init.hostname, 'machine.example')
  assert.deepEqual(init.listen.smtp, { host: '192.0.2.1', port: 2525 })
  assert.deepEqual(init.listen.pop3, { host: '0.0.0.0', port: 2110 })
  assert.equal(init.listen.imaps, null)
  assert.equal(init.tls, TLS)
  assert.equal(init.plaintextAuthOnLoopback, true)
  assert.equal(init.sync, false)
  assert.deepEqual(init.limits, {
    messageBytesMax: 26214400,
    recipientsMax: 100,
    connectionsPerIpMax: 50,
    connectionsMax: 5000,
    authFailuresPerIpMax: 10,
    authFailuresPerAccountMax: 10,
    authWindowMs: 300_000,
    idleTimeoutMs: 300_000,
    pop3IdleTimeoutMs: 600_000
  })
  assert.equal(toNodeInit(resolveConfig({ toml: 'hostname = "mx.example.org"' }).config, TLS, 'machine', { clusterKey: 'k' }).hostname, 'mx.example.org')
})

test('grid options: file, environment lists, derived listen and advertise addresses', () => {
  const toml = '[grid]\nclusterKey = "0123456789abcdef-key"\nlisten = ["/ip4/0.0.0.0/tcp/7000"]\nbootstrap = ["/ip4/192.0.2.1/tcp/7946"]\n' +
    'mdns = true\nreplicas = 3\nweight = 1.5\nadvertiseHost = "192.0.2.9"\n'
  const g = resolveConfig({ toml }).config.grid
  assert.deepEqual(g, {
    enabled: true, clusterKey: '0123456789abcdef-key', listen: ['/ip4/0.0.0.0/tcp/7000'], bootstrap: ['/ip4/192.0.2.1/tcp/7946'],
    mdns: true, replicas: 3, weight: 1.5, advertiseHost: '192.0.2.9', direct: true
  })
  const e = resolveConfig({
    toml,
    env: {
      MAILGRID_GRID_BOOTSTRAP: ' /ip4/192.0.2.2/tcp/7946 , /ip4/192.0.2.3/tcp/7946/p2p/12D3KooWabc,',
      MAILGRID_GRID_LISTEN: '',
      MAILGRID_GRID_WEIGHT: '2.5',
      MAILGRID_GRID_REPLICAS: '1',
      MAILGRID_GRID_MDNS: 'no',
      MAILGRID_GRID_CLUSTER_KEY: 'from-the-environment-0123'
    }
  }).config.grid
  assert.deepEqual(e.bootstrap, ['/ip4/192.0.2.2/tcp/7946', '/ip4/192.0.2.3/tcp/7946/p2p/12D3KooWabc'], 'comma-separated, trimmed')
  assert.deepEqual(e.listen, [], 'an empty variable is the empty list')
  assert.deepEqual([e.weight, e.replicas, e.mdns, e.clusterKey], [2.5, 1, false, 'from-the-environment-0123'])
  assert.deepEqual(problems(() => resolveConfig({ env: { MAILGRID_GRID_LISTEN: 'tcp://127.0.0.1:7946', MAILGRID_GRID_WEIGHT: 'x' } })), [
    'grid.listen (from MAILGRID_GRID_LISTEN): must be multiaddrs such as "/ip4/192.0.2.1/tcp/7946" (got "tcp://127.0.0.1:7946")',
    'grid.weight (from MAILGRID_GRID_WEIGHT): must be a number 0-1000 (got "x")'
  ])
  const secret = 'this-is-the-secret'
  const shown = problems(() => resolveConfig({ env: { MAILGRID_GRID_CLUSTER_KEY: secret.slice(0, 9) } }))
  assert.ok(!shown.join('').includes(secret.slice(0, 9)), 'a wrong key is not echoed')

  // A disabled grid neither derives a listen address nor claims its port.
  resolveConfig({ toml: '[grid]\nenabled = false\n[admin]\nport = 7946\n[listen]\nhost = "mail.example.com"\n' })
  resolveConfig({ toml: '[grid]\nlisten = ["/ip4/127.0.0.1/tcp/0"]\n[listen]\nhost = "mail.example.com"\n' })
})

test('toNodeInit: the grid from the config, the key from the data dir, addresses derived from listen.host', () => {
  const nics = {
    lo: [{ address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4' as const, mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' }],
    eth0: [
      { address: 'fe80::1', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6' as const, mac: '02:00:00:00:00:01', internal: false, cidr: 'fe80::1/64', scopeid: 2 },
      { address: '192.0.2.44', netmask: '255.255.255.0', family: 'IPv4' as const, mac: '02:00:00:00:00:01', internal: false, cidr: '192.0.2.44/24' }
    ]
  }
  const local = toNodeInit(DEFAULT_CONFIG, TLS, 'm', { clusterKey: 'file-key', interfaces: nics }).grid
  assert.deepEqual(local, {
    clusterKey: 'file-key', listen: ['/ip4/127.0.0.1/tcp/7946'], bootstrap: [], mdns: false, replicas: 2, weight: 0, advertiseHost: '127.0.0.1', direct: true
  })
  const lan = resolveConfig({ toml: '[listen]\nhost = "0.0.0.0"\n[grid]\nclusterKey = "configured-key-0123"\nmdns = true\n' }).config
  const g = toNodeInit(lan, TLS, 'm', { clusterKey: 'file-key', interfaces: nics }).grid
  assert.equal(g?.clusterKey, 'configured-key-0123', 'a configured key wins over the file')
  assert.deepEqual(g?.listen, ['/ip4/0.0.0.0/tcp/7946'])
  assert.equal(g?.advertiseHost, '192.0.2.44', 'the first non-internal IPv4')
  assert.equal(toNodeInit(lan, TLS, 'm', { interfaces: { lo: nics.lo } }).grid?.advertiseHost, '127.0.0.1', 'no network: loopback')
  const v6 = resolveConfig({ toml: '[listen]\nhost = "::1"\n' }).config
  assert.deepEqual(toNodeInit(v6, TLS, 'm', { clusterKey: 'k' }).grid?.listen, ['/ip6/::1/tcp/7946'])
  assert.throws(() => toNodeInit(DEFAULT_CONFIG, TLS, 'm'), /cluster key/)
  const off = resolveConfig({ toml: '[grid]\nenabled = false\n' }).config
  assert.equal(toNodeInit(off, TLS, 'm').grid, undefined, 'no grid, no key needed')
})

test('store.minFreeBytes: -1 by default (the rule in store/disk.ts), bytes or 0 (off) from the file or the environment, into the node', () => {
  assert.equal(DEFAULT_CONFIG.store.minFreeBytes, -1)
  assert.equal(toNodeInit(DEFAULT_CONFIG, TLS, 'h', { clusterKey: 'k'.repeat(32) }).minFreeBytes, -1)
  assert.equal(resolveConfig({ toml: '[store]\nminFreeBytes = 2147483648\n' }).config.store.minFreeBytes, 2 ** 31)
  const { config } = resolveConfig({ env: { MAILGRID_STORE_MIN_FREE_BYTES: '0' } })
  assert.equal(toNodeInit(config, TLS, 'h', { clusterKey: 'k'.repeat(32) }).minFreeBytes, 0)
  assert.throws(() => resolveConfig({ env: { MAILGRID_STORE_MIN_FREE_BYTES: '-2' } }),
    (e: Error) => e.message === 'store.minFreeBytes (from MAILGRID_STORE_MIN_FREE_BYTES): must be an integer -1-1125899906842624 (got -2)')
  assert.throws(() => resolveConfig({ toml: '[store]\nminFreeBytes = "1G"\n' }), /store\.minFreeBytes: must be an integer/)
})

test('admin.tls: HTTPS off loopback ("auto"), plain HTTP refused off loopback; web listeners and metrics.token checked', () => {
  const admin = (toml: string): Config['admin'] => resolveConfig({ toml }).config.admin
  assert.equal(adminUsesTls(admin('[admin]\nhost = "127.0.0.1"')), false)
  assert.equal(adminUsesTls(admin('[admin]\nhost = "127.0.0.2"')), false, 'all of 127/8 is loopback')
  assert.equal(adminUsesTls(admin('[admin]\nhost = "::1"')), false)
  assert.equal(adminUsesTls(admin('[admin]\nhost = "localhost"')), false)
  assert.equal(adminUsesTls(admin('[admin]\nhost = "0.0.0.0"')), true)
  assert.equal(adminUsesTls(admin('[admin]\nhost = "192.0.2.7"')), true)
  assert.equal(adminUsesTls(admin('[admin]\nhost = "127.0.0.2"\ntls = "on"')), true)
  assert.equal(adminUsesTls(admin('[admin]\nhost = "127.0.0.1"\ntls = "off"')), false)
  assert.equal(adminUsesTls(resolveConfig({ env: { MAILGRID_ADMIN_HOST: '0.0.0.0', MAILGRID_ADMIN_TLS: 'on' } }).config.admin), true)
  assert.deepEqual(problems(() => resolveConfig({ toml: '[admin]\nhost = "0.0.0.0"\ntls = "off"' })), [
    'admin.tls: "off" (plain HTTP) is allowed only when admin.host is a loopback address (got admin.host "0.0.0.0"): the token would cross the network in clear'
  ])
  assert.deepEqual(problems(() => resolveConfig({ toml: '[admin]\ntls = "yes"' })), ['admin.tls: must be one of "auto", "on", "off" (got "yes")'])
  assert.deepEqual(problems(() => resolveConfig({ toml: '[metrics]\ntoken = "short"' })), [
    'metrics.token: must be empty or 16-256 characters of A-Z a-z 0-9 . _ ~ + / = - (got "short")'
  ])
  assert.equal(resolveConfig({ env: { MAILGRID_METRICS_TOKEN: 'p'.repeat(20) } }).config.metrics.token, 'p'.repeat(20))
  assert.deepEqual(problems(() => resolveConfig({ toml: '[listen.https]\nport = 8080' })), ['admin.port: 8080 is already used by listen.https'])
  const web = resolveConfig({ env: { MAILGRID_HTTP_PORT: '0', MAILGRID_HTTPS_ENABLED: 'false' } })
  assert.deepEqual([web.config.listen.http.port, web.config.listen.https.enabled, web.warnings], [0, false, []])
  // the remote CLI's variables are not options, and not warned about
  assert.deepEqual(resolveConfig({ env: { MAILGRID_URL: 'https://x:1', MAILGRID_TOKEN: 't', MAILGRID_FINGERPRINT: 'f' } }).warnings, [])
})

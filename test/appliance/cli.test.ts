// The mailgrid command: argument handling in-process, then end to end against a real node started with
// `mailgrid start` in a child process (all ports ephemeral), with every command run as its own process.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { Readable } from 'node:stream'
import { formatSize, main, parseSize } from '../../appliance/commands.ts'
import { envName, SERVICE_NAMES, WEB_NAMES } from '../../appliance/config.ts'
import { ensureToken, newSecret } from '../../appliance/runtime.ts'

const ROOT = new URL('../..', import.meta.url).pathname
const NODE = join(ROOT, 'node_modules', '.bin', 'node')
const CLI = join(ROOT, 'appliance', 'cli.ts')
const LAUNCHER = join(ROOT, 'appliance', 'bin', 'mailgrid.js')
const READY_TIMEOUT_MS = 30_000
const COMMAND_TIMEOUT_MS = 30_000

/** Everything a test node needs: ephemeral ports, a fixed hostname, no stray MAILGRID_* from the caller. */
function testEnv (extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MAILGRID_') && v !== undefined) env[k] = v
  for (const s of [...SERVICE_NAMES, ...WEB_NAMES, 'managesieve']) env[envName(`listen.${s}.port`)] = '0'
  return {
    ...env, MAILGRID_ADMIN_PORT: '0', MAILGRID_GRID_LISTEN: '/ip4/127.0.0.1/tcp/0', MAILGRID_HOSTNAME: 'mx.test.example', MAILGRID_STORE_SYNC: 'false', ...extra
  }
}

async function run (args: string[], stdin?: string): Promise<{ out: string, err: string, code: number }> {
  const io = { out: '', err: '' }
  const code = await main(args, {
    stdout: { write: (s: string) => { io.out += s } },
    stderr: { write: (s: string) => { io.err += s } },
    stdin: Readable.from(stdin === undefined ? [] : [stdin]),
    env: {}
  })
  return { ...io, code }
}

test('sizes: 500M, 1G, 1.5G, bytes', () => {
  const table: Array<[string, number | null]> = [
    ['0', 0], ['1048576', 1048576], ['500M', 500 * 1024 ** 2], ['1G', 1024 ** 3], ['1.5G', 1.5 * 1024 ** 3],
    ['2g', 2 * 1024 ** 3], ['10K', 10240], ['1T', 1024 ** 4], ['1GiB', 1024 ** 3], ['1GB', 1024 ** 3], [' 3M ', 3 * 1024 ** 2],
    ['', null], ['G', null], ['-1G', null], ['1.5.5G', null], ['1X', null], ['1e9', null], ['99999999999999T', null]
  ]
  for (const [text, bytes] of table) assert.equal(parseSize(text), bytes, text)
  assert.deepEqual([0, 1024 ** 3, 1.5 * 1024 ** 3, 500 * 1024 ** 2, 100].map(formatSize), ['unlimited', '1G', '1.5G', '500M', '100B'])
})

test('usage errors exit 2 with a short usage; --help exits 0', async () => {
  const usage: string[][] = [
    [], ['frob'], ['domain'], ['domain', 'rename', 'x'], ['domain', 'add'], ['user', 'add', 'a@b.c'],
    ['user', 'add', 'a@b.c', '--password'], ['user', 'add', 'a@b.c', '--password', 'p', '--quota', 'lots'],
    ['user', 'add', 'a@b.c', '--password', 'p', '--quota-messages', '-3'], ['user', 'quota', 'a@b.c'],
    ['domain', 'add', 'x.example', '--password', 'p'], ['alias', 'add', 'a@b.c'], ['status', 'extra'],
    ['start', 'now'], ['--bogus'], ['user']
  ]
  for (const args of usage) {
    const r = await run(args)
    assert.equal(r.code, 2, args.join(' '))
    assert.equal(r.out, '')
    assert.match(r.err, /^mailgrid: .+\nUsage: mailgrid /, args.join(' '))
    assert.ok(r.err.split('\n').length <= 3, 'short')
  }
  const help = await run(['--help'])
  assert.equal(help.code, 0)
  assert.match(help.out, /mailgrid COMMAND/)
  assert.equal((await run(['user', '-h'])).code, 0)
})

test('a token beginning with a dash: generated ones never do; a given one is taken as --token=VALUE, and the error says so', async () => {
  // the admin token and the cluster key are 32 random bytes as base64url, which begins with '-' once in 64 draws
  // (remote.test.ts once failed on such a token: `--token -m15l...` reads as an option)
  for (let i = 0; i < 2000; i++) assert.ok(!newSecret(32).startsWith('-'))
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-secret-'))
  try {
    assert.equal((await ensureToken(dir)).length, 43)
    assert.match(await readFile(join(dir, 'admin.token'), 'utf8'), /^[A-Za-z0-9_][A-Za-z0-9_-]{42}\n$/)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
  const dashed = '-' + 'a'.repeat(42)
  const ambiguous = await run(['status', '--url', 'https://192.0.2.1:8080', '--token', dashed])
  assert.equal(ambiguous.code, 2)
  assert.match(ambiguous.err, /^mailgrid: Option '--token' argument is ambiguous\. To specify an option argument starting with a dash use '--token=-XYZ'\.\nUsage: /)
  // with '=' it is the token: the command gets as far as refusing to send it in clear
  const given = await run(['status', '--url', 'http://192.0.2.1:8080', `--token=${dashed}`])
  assert.deepEqual([given.code, given.err], [1, 'mailgrid: refusing to send the admin token in clear to 192.0.2.1:8080: use https:// (plain HTTP is for loopback only)\n'])
})

test('a command without a running node fails with one line and exit 1', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-cli-'))
  try {
    for (const args of [['status'], ['domain', 'list'], ['user', 'add', 'a@b.example', '--password', 'p']]) {
      const r = await run([...args, '--data', dir])
      assert.deepEqual([r.code, r.out], [1, ''])
      assert.equal(r.err, `mailgrid: no node is running on data dir ${dir} (start one with: mailgrid start --data ${dir})\n`)
    }
    const badConfig = await run(['status', '--config', join(dir, 'missing.toml')])
    assert.equal(badConfig.code, 1)
    assert.match(badConfig.err, /cannot read the config file \(ENOENT\)/)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

interface Started { child: ChildProcess, lines: string[], exit: Promise<number | null> }

/** Starts `mailgrid start` and resolves once it logs that it is ready. */
async function startNode (dataDir: string): Promise<Started> {
  const child = spawn(NODE, [CLI, 'start', '--data', dataDir], { cwd: ROOT, env: testEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  const lines: string[] = []
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  const exit = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)))
  const rl = createInterface({ input: child.stdout! })
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not ready in ${READY_TIMEOUT_MS} ms: ${stderr}`)), READY_TIMEOUT_MS)
    rl.on('line', line => {
      lines.push(line)
      if (line.includes('"event":"ready"')) { clearTimeout(timer); resolve() }
    })
    void exit.then(code => { clearTimeout(timer); reject(new Error(`exited ${String(code)} before ready: ${stderr}`)) })
  })
  await ready
  return { child, lines, exit }
}

function cli (args: string[], stdin?: string): Promise<{ out: string, err: string, code: number }> {
  return new Promise(resolve => {
    const p = execFile(NODE, [CLI, ...args], { cwd: ROOT, env: testEnv(), timeout: COMMAND_TIMEOUT_MS }, (error, out, err) => {
      resolve({ out, err, code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1 })
    })
    p.stdin?.end(stdin ?? '')
  })
}

test('end to end: start, manage the directory through the CLI, stop on SIGTERM, restart', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-e2e-'))
  let node: Started | null = null
  try {
    node = await startNode(dir)
    const info = JSON.parse(await readFile(join(dir, 'admin.json'), 'utf8'))
    assert.equal(info.pid, node.child.pid)
    assert.match(info.url, /^http:\/\/127\.0\.0\.1:\d+$/)
    assert.equal((await stat(join(dir, 'admin.token'))).mode & 0o777, 0o600)
    assert.equal((await stat(join(dir, 'cluster.key'))).mode & 0o777, 0o600, 'a one-node grid keeps its generated key')
    const clusterKey = await readFile(join(dir, 'cluster.key'), 'utf8')
    assert.match(clusterKey, /^[A-Za-z0-9_-]{43}\n$/, '32 random bytes, base64url')
    const cert = await readFile(join(dir, 'tls', 'cert.pem'), 'utf8')

    const d = ['--data', dir]
    const expect = async (args: string[], code: number, out: string | RegExp, err: string | RegExp = '', stdin?: string): Promise<void> => {
      const r = await cli([...args, ...d], stdin)
      const what = args.join(' ')
      assert.equal(r.code, code, `${what}: ${r.err}`)
      if (typeof out === 'string') assert.equal(r.out, out, what)
      else assert.match(r.out, out, what)
      if (typeof err === 'string') assert.equal(r.err, err, what)
      else assert.match(r.err, err, what)
    }

    await expect(['domain', 'add', 'Example.COM'], 0, 'added domain example.com\n')
    await expect(['domain', 'add', 'example.com'], 1, '', 'mailgrid: Domain example.com already exists\n')
    await expect(['domain', 'add', 'bad..domain'], 1, '', 'mailgrid: Invalid domain name: bad..domain\n')
    await expect(['domain', 'list'], 0, 'example.com\n')
    await expect(['user', 'add', 'alice@example.com', '--password', 'secret', '--quota', '1.5G'], 0, 'added user alice@example.com\n')
    await expect(['user', 'add', 'bob@example.com', '--password', '-', '--quota-messages', '100'], 0, 'added user bob@example.com\n', '', 'from stdin\n')
    await expect(['user', 'add', 'alice@example.com', '--password', 'x'], 1, '', 'mailgrid: User alice@example.com already exists\n')
    await expect(['user', 'add', 'carol@nowhere.example', '--password', 'x'], 1, '', 'mailgrid: Unknown domain: nowhere.example\n')
    await expect(['user', 'add', 'not-an-address', '--password', 'x'], 1, '', 'mailgrid: Invalid address: not-an-address\n')
    await expect(['user', 'list'], 0, 'alice@example.com\tquota 1.5G\tmessages unlimited\tactive\nbob@example.com\tquota unlimited\tmessages 100\tactive\n')
    await expect(['user', 'quota', 'alice@example.com', '--quota', '500M'], 0, 'alice@example.com\tquota 500M\tmessages unlimited\tactive\n')
    await expect(['user', 'passwd', 'bob@example.com', '--password', '-'], 0, 'changed the password of bob@example.com\n', '', 'newer\r\n')
    await expect(['user', 'passwd', 'zed@example.com', '--password', 'x'], 1, '', 'mailgrid: No such user: zed@example.com\n')
    await expect(['alias', 'add', 'sales@example.com', 'alice@example.com', 'bob@example.com'], 0, 'added alias sales@example.com -> alice@example.com, bob@example.com\n')
    await expect(['alias', 'add', '@example.com', 'alice@example.com'], 0, 'added alias @example.com -> alice@example.com\n')
    await expect(['alias', 'list', 'example.com'], 0, '@example.com -> alice@example.com\nsales@example.com -> alice@example.com, bob@example.com\n')
    await expect(['alias', 'del', 'sales@example.com'], 0, 'deleted alias sales@example.com\n')
    await expect(['alias', 'del', 'sales@example.com'], 1, '', 'mailgrid: No such alias: sales@example.com\n')
    await expect(['domain', 'del', 'example.com'], 1, '', 'mailgrid: Domain example.com still has users\n')
    await expect(['user', 'del', 'bob@example.com'], 0, 'deleted user bob@example.com\n')
    await expect(['status'], 0, /^hostname {5}mx\.test\.example\n(?:.*\n)*users {8}1\n/)
    const json = await cli(['user', 'list', '--json', ...d])
    assert.deepEqual(JSON.parse(json.out).map((u: { address: string }) => u.address), ['alice@example.com'])
    await expect(['user', 'frob'], 2, '', /^mailgrid: unknown user subcommand: frob\nUsage: /)

    const second = await cli(['start', ...d])
    assert.equal(second.code, 1)
    assert.match(second.err, new RegExp(`^mailgrid: a node already runs on data dir .* \\(pid ${node.child.pid ?? 0},`))

    const allLogs = node.lines.join('\n')
    for (const secret of ['secret', 'from stdin', 'newer']) assert.ok(!allLogs.includes(secret), `"${secret}" must not be logged`)

    node.child.kill('SIGTERM')
    assert.equal(await node.exit, 0)
    assert.ok(node.lines.some(l => l.includes('"event":"stopped"')))
    await assert.rejects(stat(join(dir, 'admin.json')), { code: 'ENOENT' })
    await expect(['status'], 1, '', /^mailgrid: no node is running on data dir /)

    node = await startNode(dir)
    assert.equal(await readFile(join(dir, 'tls', 'cert.pem'), 'utf8'), cert, 'the self-signed certificate is reused')
    assert.equal(await readFile(join(dir, 'cluster.key'), 'utf8'), clusterKey, 'the cluster key is reused')
    await expect(['user', 'list'], 0, 'alice@example.com\tquota 500M\tmessages unlimited\tactive\n')
    node.child.kill('SIGINT')
    assert.equal(await node.exit, 0)
    node = null
  } finally {
    node?.child.kill('SIGKILL')
    await rm(dir, { recursive: true, force: true })
  }
})

test('a start with a bad config reports every problem and exits 1', async () => {
  const r = await new Promise<{ code: number, err: string }>(resolve => {
    execFile(NODE, [CLI, 'start', '--data', join(tmpdir(), 'never-created')], {
      cwd: ROOT, env: testEnv({ MAILGRID_SMTP_PORT: 'abc', MAILGRID_LOG_LEVEL: 'loud' }), timeout: COMMAND_TIMEOUT_MS
    }, (error, _out, err) => resolve({ code: typeof error?.code === 'number' ? error.code : 0, err }))
  })
  assert.equal(r.code, 1)
  assert.equal(r.err, 'mailgrid: listen.smtp.port (from MAILGRID_SMTP_PORT): must be an integer 0-65535 (got "abc")\n' +
    'mailgrid: log.level (from MAILGRID_LOG_LEVEL): must be one of fatal, error, warn, info, debug, trace (got "loud")\n')
})

test('admin.json left by a node that died is not taken for a running node', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-stale-'))
  try {
    const dead = spawn(NODE, ['-e', ''])
    await new Promise(resolve => dead.once('exit', resolve))
    await writeFile(join(dir, 'admin.json'), JSON.stringify({ url: 'http://127.0.0.1:9', pid: dead.pid }))
    await writeFile(join(dir, 'admin.token'), 'x\n')
    const r = await run(['status', '--data', dir])
    assert.deepEqual([r.code, r.err], [1, `mailgrid: no node is running on data dir ${dir} (start one with: mailgrid start --data ${dir})\n`])
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('a start whose port is taken fails with one line, exit 1, and leaves no admin.json', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-busy-'))
  const blocker = createServer()
  await new Promise<void>(resolve => blocker.listen(0, '127.0.0.1', resolve))
  const port = (blocker.address() as AddressInfo).port
  try {
    const r = await new Promise<{ code: number, err: string }>(resolve => {
      execFile(NODE, [CLI, 'start', '--data', dir], { cwd: ROOT, env: testEnv({ MAILGRID_SUBMISSION_PORT: String(port) }), timeout: COMMAND_TIMEOUT_MS },
        (error, _out, err) => resolve({ code: typeof error?.code === 'number' ? error.code : 0, err }))
    })
    assert.deepEqual([r.code, r.err], [1, `mailgrid: cannot listen on 127.0.0.1:${port} (EADDRINUSE)\n`])
    await assert.rejects(stat(join(dir, 'admin.json')), { code: 'ENOENT' })
  } finally {
    await new Promise(resolve => blocker.close(resolve))
    await rm(dir, { recursive: true, force: true })
  }
})

test('the bin launcher runs the CLI under Node 24 whatever node starts it', async () => {
  const runtimes = [NODE]
  const pathNode = await new Promise<string | null>(resolve => execFile('node', ['-p', 'process.versions.node'], (e, out) => resolve(e === null ? out.trim() : null)))
  if (pathNode !== null && Number(pathNode.split('.')[0]) < 24) runtimes.push('node')
  for (const runtime of runtimes) {
    const r = await new Promise<{ code: number, out: string }>(resolve => {
      execFile(runtime, [LAUNCHER, 'frob'], { cwd: ROOT, env: testEnv(), timeout: COMMAND_TIMEOUT_MS },
        (error, out, err) => resolve({ code: typeof error?.code === 'number' ? error.code : 0, out: out + err }))
    })
    assert.equal(r.code, 2, runtime)
    assert.match(r.out, /^mailgrid: unknown command: frob\nUsage: /, runtime)
  }
})

// The daemon's V8 flags (appliance/node-flags.ts): one list, carried by every launcher, and a daemon started
// without them says so in its log.

import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { test } from 'node:test'
import { envName, SERVICE_NAMES, WEB_NAMES } from '../../appliance/config.ts'
import { missingNodeFlags, NODE_FLAGS } from '../../appliance/node-flags.ts'

const ROOT = new URL('../..', import.meta.url).pathname
const NODE = join(ROOT, 'node_modules', '.bin', 'node')
const READY_TIMEOUT_MS = 30_000

/** The `node …` command lines of a launcher file: the lines that run the CLI. */
async function commandLines (file: string, pattern: RegExp): Promise<string[]> {
  const text = await readFile(join(ROOT, file), 'utf8')
  return text.split('\n').filter(l => pattern.test(l))
}

test('the flags are V8 flags that this Node accepts', async () => {
  assert.ok(NODE_FLAGS.length > 0)
  for (const f of NODE_FLAGS) assert.match(f, /^--[a-z][a-z0-9-]*(=\S+)?$/)
  const r = await new Promise<{ code: number | null, err: string }>(resolve => {
    const c = spawn(NODE, [...NODE_FLAGS, '-e', ''], { stdio: ['ignore', 'ignore', 'pipe'] })
    let err = ''
    c.stderr.on('data', (d: Buffer) => { err += d.toString() })
    c.once('exit', code => resolve({ code, err }))
  })
  assert.deepEqual(r, { code: 0, err: '' })
})

test('every launcher of the daemon passes the flags', async () => {
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
  const launchers: Array<[string, string[]]> = [
    ['package.json start', [pkg.scripts.start]],
    ['appliance/system/mailgrid.service', await commandLines('appliance/system/mailgrid.service', /^ExecStart=\S/)],
    ['the appliance drop-in', await commandLines('iso/rootfs/etc/systemd/system/mailgrid.service.d/appliance.conf', /^ExecStart=\S/)],
    ['the appliance `mailgrid` command', await commandLines('iso/rootfs/usr/local/bin/mailgrid', /^exec /)]
  ]
  for (const [name, lines] of launchers) {
    assert.equal(lines.length, 1, name)
    const argv = lines[0].split(/\s+/)
    const cli = argv.findIndex(a => a.endsWith('appliance/cli.ts'))
    assert.ok(cli > 0, `${name}: runs appliance/cli.ts`)
    assert.deepEqual(missingNodeFlags(argv.slice(0, cli)), [], `${name}: ${lines[0]}`)
  }
})

test('missingNodeFlags: by flag name, whatever the value', () => {
  assert.deepEqual(missingNodeFlags([]), [...NODE_FLAGS])
  assert.deepEqual(missingNodeFlags(['--liftoff-only', ...NODE_FLAGS]), [])
  assert.deepEqual(missingNodeFlags(NODE_FLAGS.map(f => `${f.split('=')[0]}=1`)), [])
})

/** Starts a daemon with `args` and reads its log until ready; stops it with SIGTERM. */
async function startAndStop (args: string[]): Promise<{ lines: string[], code: number | null }> {
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-flags-'))
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MAILGRID_') && v !== undefined) env[k] = v
  for (const s of [...SERVICE_NAMES, ...WEB_NAMES, 'managesieve']) env[envName(`listen.${s}.port`)] = '0'
  Object.assign(env, { MAILGRID_ADMIN_PORT: '0', MAILGRID_GRID_LISTEN: '/ip4/127.0.0.1/tcp/0', MAILGRID_HOSTNAME: 'mx.test.example', MAILGRID_STORE_SYNC: 'false' })
  const child = spawn(NODE, [...args, 'start', '--data', dir], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  try {
    const lines: string[] = []
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const exit = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)))
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not ready in ${READY_TIMEOUT_MS} ms: ${stderr}`)), READY_TIMEOUT_MS)
      createInterface({ input: child.stdout }).on('line', line => {
        lines.push(line)
        if (line.includes('"event":"ready"')) { clearTimeout(timer); resolve() }
      })
      void exit.then(code => { clearTimeout(timer); reject(new Error(`exited ${String(code)} before ready: ${stderr}`)) })
    })
    child.kill('SIGTERM')
    return { lines, code: await exit }
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await rm(dir, { recursive: true, force: true })
  }
}

test('a daemon started without the flags warns; the `mailgrid` launcher starts it with them', async () => {
  const bare = await startAndStop([join(ROOT, 'appliance', 'cli.ts')])
  const warning = bare.lines.map(l => JSON.parse(l) as Record<string, unknown>).find(l => l.event === 'runtime_flags')
  assert.ok(warning !== undefined, 'no runtime_flags warning from a daemon started without the flags')
  assert.deepEqual(warning.missing, [...NODE_FLAGS])
  assert.equal(bare.code, 0)

  // the launcher runs `start` under the flags (a child of its own when this Node did not get them) and passes
  // SIGTERM on: the node stops cleanly
  const launched = await startAndStop([join(ROOT, 'appliance', 'bin', 'mailgrid.js')])
  assert.equal(launched.lines.some(l => l.includes('"event":"runtime_flags"')), false)
  assert.equal(launched.code, 0)
})

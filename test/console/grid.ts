// A grid of real `mailgrid start` processes on loopback for the console tests: each with its admin listener on
// HTTPS (its own self-signed certificate), every mail service on an ephemeral port, a fixed grid port, the
// others as bootstrap peers. Also the headless browser (Debian's chromium through puppeteer-core).

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import puppeteer from 'puppeteer-core'
import type { Browser } from 'puppeteer-core'
import { main } from '../../appliance/commands.ts'
import { envName, SERVICE_NAMES, WEB_NAMES } from '../../appliance/config.ts'
import { freePort } from '../helpers/ports.ts'

export const ROOT = new URL('../..', import.meta.url).pathname
const NODE = join(ROOT, 'node_modules', '.bin', 'node')
const CLI = join(ROOT, 'appliance', 'cli.ts')
const READY_TIMEOUT_MS = 60_000
export const CHROMIUM = '/usr/bin/chromium'

export interface ConsoleNode {
  name: string
  child: ChildProcess
  dir: string
  url: string
  token: string
  fingerprint: string
  alive: boolean
  env: Record<string, string>
}

function baseEnv (): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MAILGRID_') && v !== undefined) env[k] = v
  for (const s of [...SERVICE_NAMES, ...WEB_NAMES, 'managesieve']) env[envName(`listen.${s}.port`)] = '0'
  return env
}

export async function startConsoleGrid (dir: string, count: number): Promise<ConsoleNode[]> {
  const key = randomBytes(24).toString('base64url')
  const gridPorts: number[] = []
  for (let k = 0; k < count; k++) gridPorts.push(await freePort())
  const nodes: ConsoleNode[] = []
  const spawned: ChildProcess[] = []
  const started = Promise.all(gridPorts.map(async (port, k) => {
    const name = `node${k + 1}`
    const data = join(dir, name)
    await mkdir(data, { recursive: true })
    const env = {
      ...baseEnv(),
      MAILGRID_HOSTNAME: name,
      MAILGRID_ADMIN_HOST: '127.0.0.1',
      MAILGRID_ADMIN_PORT: '0',
      MAILGRID_ADMIN_TLS: 'on',
      MAILGRID_GRID_CLUSTER_KEY: key,
      MAILGRID_GRID_LISTEN: `/ip4/127.0.0.1/tcp/${port}`,
      MAILGRID_GRID_BOOTSTRAP: gridPorts.filter(p => p !== port).map(p => `/ip4/127.0.0.1/tcp/${p}`).join(','),
      MAILGRID_GRID_REPLICAS: '2',
      MAILGRID_GRID_ADVERTISE_HOST: '127.0.0.1',
      MAILGRID_STORE_SYNC: 'false',
      MAILGRID_LOG_LEVEL: 'warn',
      // an account is throttled after 5 failures; the tests' own wrong logins from 127.0.0.1 stay under the IP's budget
      MAILGRID_LIMITS_AUTH_FAILURES_PER_ACCOUNT_MAX: '5',
      MAILGRID_LIMITS_AUTH_FAILURES_PER_IP_MAX: '100',
      MAILGRID_OUTBOUND_DNS_SERVERS: '127.0.0.1:9'
    }
    const child = spawn(NODE, [CLI, 'start', '--data', data], { cwd: ROOT, env, stdio: ['ignore', 'ignore', 'pipe'] })
    spawned.push(child)
    let stderr = ''
    child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
    let exited: number | null | undefined
    child.once('exit', code => { exited = code })
    // ready once it has written DATA/admin.json (after every listener is up), with its own pid
    let info: { url: string, pid: number, fingerprint: string } | null = null
    const start = Date.now()
    while (info === null) {
      if (exited !== undefined) throw new Error(`${name} exited ${String(exited)} before ready: ${stderr}`)
      if (Date.now() - start > READY_TIMEOUT_MS) throw new Error(`${name} not ready in ${READY_TIMEOUT_MS} ms: ${stderr}`)
      const text = await readFile(join(data, 'admin.json'), 'utf8').catch(() => null)
      const parsed = text === null ? null : JSON.parse(text)
      if (parsed !== null && parsed.pid === child.pid) info = parsed
      else await new Promise(resolve => setTimeout(resolve, 200))
    }
    const token = (await readFile(join(data, 'admin.token'), 'utf8')).trim()
    const node: ConsoleNode = { name, child, dir: data, url: info.url, token, fingerprint: info.fingerprint, alive: true, env }
    child.once('exit', () => { node.alive = false })
    nodes[k] = node
  }))
  try {
    await started
  } catch (err) {
    for (const c of spawned) c.kill('SIGKILL')
    throw err
  }
  return nodes
}

export async function stopConsoleGrid (nodes: ConsoleNode[]): Promise<void> {
  await Promise.all(nodes.filter(n => n !== undefined && n.alive).map(async n => {
    const exited = new Promise(resolve => n.child.once('exit', resolve))
    n.child.kill('SIGTERM')
    const timer = setTimeout(() => n.child.kill('SIGKILL'), 20_000)
    await exited
    clearTimeout(timer)
  }))
}

export async function kill (n: ConsoleNode): Promise<void> {
  if (!n.alive) return
  const exited = new Promise(resolve => n.child.once('exit', resolve))
  n.child.kill('SIGKILL')
  await exited
}

/** `mailgrid ARGS` in-process against a node, as a remote operator runs it (URL, token, pinned certificate). */
export async function cli (n: ConsoleNode, args: string[]): Promise<{ out: string, err: string, code: number }> {
  const io = { out: '', err: '' }
  const code = await main(args, {
    stdout: { write: (s: string) => { io.out += s } },
    stderr: { write: (s: string) => { io.err += s } },
    stdin: Readable.from([]),
    env: { MAILGRID_URL: n.url, MAILGRID_TOKEN: n.token, MAILGRID_FINGERPRINT: n.fingerprint }
  })
  return { ...io, code }
}

export async function launchBrowser (): Promise<Browser> {
  return await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--headless=new', '--ignore-certificate-errors', '--disable-gpu', '--disable-dev-shm-usage'],
    defaultViewport: { width: 1440, height: 900 }
  })
}

export async function until (what: string, fn: () => Promise<boolean> | boolean, timeoutMs = 30_000, everyMs = 200): Promise<number> {
  const start = Date.now()
  while (!(await fn())) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, everyMs))
  }
  return Date.now() - start
}

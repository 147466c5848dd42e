// Shared pieces of the sender-authentication tests: a real store with a domain and its DKIM key, Debian's
// python3-dkim as an independent verifier, and a resolver over a fixed table for unit tests.

import { spawn } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import pino from 'pino'
import { createStore } from '../../store/index.ts'
import type { Store } from '../../store/index.ts'
import { tempDir } from '../helpers/tmp.ts'

export const PYTHON = '/usr/bin/python3' // Debian's, where python3-dkim is installed (not a pyenv one)
export const PYTHON_PACKAGES = 'python3-dkim python3-srs' // the independent verifiers these tests run
export const quiet = pino({ level: process.env.MAILGRID_TEST_LOG ?? 'silent' })

export async function testStore (t: { after: (fn: () => Promise<void>) => void }): Promise<Store> {
  const dir = await tempDir(t)
  const store = createStore({}, { path: join(dir, 'store'), scryptLogN: 4 })
  await store.start()
  t.after(async () => { await store.stop() })
  return store
}

/** Runs `script` with Debian's python3 and `message` in a file named by argv[1]; bounded in time. */
export async function pythonWith (t: { after: (fn: () => Promise<void>) => void }, script: string, message: Buffer, args: string[] = [], timeoutMs = 30_000): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const dir = await tempDir(t)
  const file = join(dir, 'message.eml')
  await writeFile(file, message)
  return await new Promise((resolve, reject) => {
    const child = spawn(PYTHON, ['-c', script, file, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', d => { stdout += d })
    child.stderr.on('data', d => { stderr += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', reject)
    child.on('close', code => {
      clearTimeout(timer)
      if (stderr.includes('ModuleNotFoundError')) reject(new Error(`${PYTHON}: ${stderr.trim().split('\n').pop() ?? ''} (apt-get install ${PYTHON_PACKAGES})`))
      else resolve({ code, stdout, stderr })
    })
  })
}

/** dkimpy's verify with a dnsfunc answering from JSON {name: txt} given as argv[2]: prints "pass" or "fail". */
export const DKIMPY_VERIFY = `
import sys, json, dkim
records = json.loads(sys.argv[2])
def dnsfunc(name, timeout=5):
    n = name.decode() if isinstance(name, bytes) else name
    t = records.get(n.rstrip('.'))
    return t.encode() if t is not None else None
msg = open(sys.argv[1], 'rb').read()
try:
    print('pass' if dkim.verify(msg, dnsfunc=dnsfunc) else 'fail')
except Exception as e:
    print('fail', e)
`

/** A mailauth resolver over a table: TXT answers, A/MX answers, the rest NXDOMAIN-like ENOTFOUND. */
export function tableResolver (txt: Record<string, string[]>, other: Record<string, unknown[]> = {}): (name: string, rrtype: string) => Promise<unknown> {
  return async (name, rrtype) => {
    const key = name.toLowerCase().replace(/\.$/, '')
    if (rrtype === 'TXT' && txt[key] !== undefined) return txt[key].map(s => [s])
    const o = other[`${rrtype} ${key}`]
    if (o !== undefined) return o
    throw Object.assign(new Error(`queryTxt ENOTFOUND ${name}`), { code: 'ENOTFOUND' })
  }
}

#!/usr/bin/env node
// The `mailgrid` command. mailgrid runs its TypeScript directly on Node 24's type stripping, so this
// launcher (plain JavaScript that any Node parses) re-executes the CLI under the Node 24 runtime the
// package installs (npm package `node`), whatever `node` the caller's PATH holds.
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const cli = join(here, '..', 'cli.ts')
const major = Number(process.versions.node.split('.')[0])
// The daemon's V8 flags (appliance/node-flags.ts says why): `mailgrid start` gets them however it was called.
const nodeFlags = JSON.parse(readFileSync(join(here, '..', 'node-flags.json'), 'utf8'))
const daemon = process.argv[2] === 'start'
const hasFlags = nodeFlags.every(f => process.execArgv.some(a => a.split('=')[0] === f.split('=')[0]))

if (major >= 24 && (!daemon || hasFlags)) {
  await import(cli)
} else {
  let runtime = process.execPath
  if (major < 24) {
    const require = createRequire(import.meta.url)
    try {
      runtime = join(dirname(require.resolve('node/package.json')), 'bin', 'node')
    } catch {
      console.error('mailgrid: needs Node 24; run `npm install` to fetch it (npm package `node`)')
      process.exit(1)
    }
  }
  const child = spawn(runtime, [...(daemon ? nodeFlags : []), cli, ...process.argv.slice(2)], { stdio: 'inherit' })
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig))
  child.on('exit', (code, signal) => {
    if (signal) process.kill(process.pid, signal)
    else process.exit(code ?? 1)
  })
}

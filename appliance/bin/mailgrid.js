#!/usr/bin/env node
// The `mailgrid` command. mailgrid runs its TypeScript directly on Node 24's type stripping, so this
// launcher (plain JavaScript that any Node parses) re-executes the CLI under the Node 24 runtime the
// package installs (npm package `node`), whatever `node` the caller's PATH holds.
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const cli = join(here, '..', 'cli.ts')
const major = Number(process.versions.node.split('.')[0])

if (major >= 24) {
  await import(cli)
} else {
  const require = createRequire(import.meta.url)
  let runtime
  try {
    runtime = join(dirname(require.resolve('node/package.json')), 'bin', 'node')
  } catch {
    console.error('mailgrid: needs Node 24; run `npm install` to fetch it (npm package `node`)')
    process.exit(1)
  }
  const child = spawn(runtime, [cli, ...process.argv.slice(2)], { stdio: 'inherit' })
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig))
  child.on('exit', (code, signal) => {
    if (signal) process.kill(process.pid, signal)
    else process.exit(code ?? 1)
  })
}

// Entry point of the `mailgrid` command (run by bin/mailgrid.js under Node 24, or by `npm start`).
// All logic lives in commands.ts so tests can drive it in-process.

import { main } from './commands.ts'

const code = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env })
// Every listener, the store and stdin are closed by now; exiting explicitly also ends a stopped daemon that a
// stray handle would keep alive under a supervisor, and an HTTP keep-alive socket of a management command.
process.exit(code)

// The `mailgrid firstboot` command: answers from --seed FILE or the wizard, then firstboot.ts, then the
// summary an operator reads off the console: the node's address, the admin console URL, and for a new grid
// the cluster key as text and as a QR code (a phone photographs it for the next PC's operator).

import { execFile } from 'node:child_process'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { hostname as systemHostname } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { renderUnicodeCompact } from 'uqr'
import { CONFIG_FILE_DEFAULT, FirstbootError, firstboot, parseSeed, preflight, SEED_BYTES_MAX } from './firstboot.ts'
import type { Answers, FirstbootResult } from './firstboot.ts'
import { TOKEN_FILE } from './runtime.ts'
import { createPrompter, runWizard } from './wizard.ts'

export interface FirstbootCommand {
  seed?: string
  config?: string
  data?: string
  force: boolean
  /** Also make the answer the machine's host name (/etc/hostname and `hostname`): the image asks for it. */
  setHostname: boolean
}

export interface FirstbootIo {
  stdout: { write (s: string): unknown }
  stdin: Readable
  env: Record<string, string | undefined>
}

async function readSeed (file: string): Promise<Answers> {
  let size: number
  try {
    size = (await stat(file)).size
  } catch (err) {
    throw new FirstbootError(`${file}: cannot read the seed (${(err as NodeJS.ErrnoException).code ?? String(err)})`)
  }
  if (size > SEED_BYTES_MAX) throw new FirstbootError(`${file}: ${size} bytes is not a seed (at most ${SEED_BYTES_MAX})`)
  return parseSeed(await readFile(file, 'utf8'), file)
}

async function setSystemHostname (name: string, out: FirstbootIo['stdout']): Promise<void> {
  try {
    await writeFile('/etc/hostname', name + '\n')
    await new Promise<void>((resolve, reject) => { execFile('hostname', [name], err => { if (err === null) resolve(); else reject(err) }) })
  } catch (err) {
    out.write(`warning: could not set the machine's host name: ${(err as Error).message}\n`)
  }
}

/** The cluster key as a QR code of half-block characters (two modules per character row). */
export function qrLines (text: string): string[] {
  return renderUnicodeCompact(text, { border: 2 }).split('\n')
}

export function summary (r: FirstbootResult, answers: Answers): string[] {
  const lines = [
    '',
    'mailgrid is set up.',
    `  node address        ${r.address}`,
    `  admin API           ${r.adminUrl}  (token in ${join(r.dataDir, TOKEN_FILE)})`,
    `  node id             ${r.peerId}`,
    `  TLS certificate     sha256 ${r.tlsFingerprint}`,
    `  remote CLI          MAILGRID_TOKEN=... mailgrid status --url ${r.adminUrl} --fingerprint ${r.tlsFingerprint}`,
    `  config              ${r.configFile}`,
    `  data                ${r.dataDir}`
  ]
  if (r.adminAccount !== null) lines.push(`  admin account       ${r.adminAccount} (postmaster@ and abuse@ deliver to it)`)
  if (r.consoleAdmin !== null) lines.push(`  web console         ${r.adminUrl}/console/  (log in as ${r.consoleAdmin} with the same password)`)
  if (answers.mode === 'create') {
    lines.push('', 'The cluster key of this grid. Give it to every PC that joins (first boot, "join a grid"):', '', `  ${r.clusterKey}`, '')
    lines.push(...qrLines(r.clusterKey).map(l => `  ${l}`))
    lines.push('', 'Keep it secret: whoever has it can join the grid.')
  } else {
    lines.push('', 'This node joins the grid of that key: it finds the other nodes on the LAN by itself (mDNS).')
  }
  lines.push('')
  return lines
}

export async function firstbootCommand (cmd: FirstbootCommand, io: FirstbootIo): Promise<void> {
  const configFile = cmd.config ?? (io.env.MAILGRID_CONFIG === undefined || io.env.MAILGRID_CONFIG === '' ? CONFIG_FILE_DEFAULT : io.env.MAILGRID_CONFIG)
  const paths = { configFile, dataDir: cmd.data }
  // Refuse before asking anything when it already ran.
  await preflight(paths, cmd.force)
  let answers: Answers
  if (cmd.seed !== undefined) {
    answers = await readSeed(cmd.seed)
  } else {
    const prompter = createPrompter(io.stdin, io.stdout)
    try {
      answers = await runWizard(prompter, systemHostname())
    } finally {
      prompter.close()
    }
  }
  if (cmd.setHostname) await setSystemHostname(answers.hostname, io.stdout)
  const result = await firstboot(paths, answers, cmd.force)
  io.stdout.write(summary(result, answers).join('\n') + '\n')
}

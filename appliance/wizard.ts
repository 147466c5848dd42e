// The first-boot console wizard: a few questions on the console (tty1 on the appliance), each answer checked
// at once and asked again when wrong, a bounded number of times. Passwords are not echoed on a terminal.
// Lines are queued as they arrive, so a script piping all answers at once works as well as a person typing.

import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import { checkClusterKey, checkDomain, checkHostname, checkPassword, FirstbootError } from './firstboot.ts'
import type { Answers } from './firstboot.ts'
import { checkSshKey } from './ssh.ts'

export const ATTEMPTS_MAX = 5 // wrong answers to one question before the wizard gives up (and can be rerun)
export const ANSWER_CHARS_MAX = 4096 // a line longer than this is not an answer to any of these questions

export interface Prompter {
  ask (question: string, options?: { secret?: boolean }): Promise<string>
  say (text: string): void
  close (): void
}

export function createPrompter (input: Readable & { isTTY?: boolean }, output: { write (s: string): unknown }): Prompter {
  const terminal = input.isTTY === true
  const rl = createInterface({ input, output: terminal ? output as NodeJS.WritableStream : undefined, terminal })
  const lines: string[] = []
  const waiting: Array<{ resolve: (l: string) => void, reject: (e: Error) => void }> = []
  let closed = false
  let muted = false
  if (terminal) {
    // readline echoes what is typed through _writeToOutput; silence it while a secret is typed.
    const r = rl as unknown as { _writeToOutput: (s: string) => void }
    const write = r._writeToOutput.bind(rl)
    r._writeToOutput = (s: string) => { if (!muted) write(s) }
  }
  rl.on('line', line => {
    const w = waiting.shift()
    if (w !== undefined) w.resolve(line)
    else lines.push(line)
  })
  rl.on('close', () => {
    closed = true
    for (const w of waiting.splice(0)) w.reject(new FirstbootError('no answer: the input ended'))
  })
  const next = async (): Promise<string> => {
    const l = lines.shift()
    if (l !== undefined) return l
    if (closed) throw new FirstbootError('no answer: the input ended')
    return await new Promise((resolve, reject) => { waiting.push({ resolve, reject }) })
  }
  return {
    async ask (question, options = {}) {
      output.write(question)
      muted = options.secret === true
      try {
        const line = (await next()).replace(/\r$/, '')
        if (line.length > ANSWER_CHARS_MAX) throw new FirstbootError('that answer is too long')
        return line
      } finally {
        if (muted && terminal) output.write('\n')
        if (!terminal) output.write('\n')
        muted = false
      }
    },
    say (text) { output.write(text + '\n') },
    close () { rl.close() }
  }
}

async function askValid (p: Prompter, question: string, check: (v: string) => string | null, options: { secret?: boolean, fallback?: string } = {}): Promise<string> {
  for (let i = 0; i < ATTEMPTS_MAX; i++) {
    const raw = (await p.ask(question, options)).trim()
    const v = raw === '' && options.fallback !== undefined ? options.fallback : raw
    const why = check(v)
    if (why === null) return v
    p.say(`  That is not right: it must be ${why}.`)
  }
  throw new FirstbootError(`no valid answer after ${ATTEMPTS_MAX} tries`)
}

/** Asks the first-boot questions; `suggested` is the host name offered as the default. */
export async function runWizard (p: Prompter, suggested: string): Promise<Answers> {
  p.say('')
  p.say('mailgrid first boot')
  p.say('===================')
  p.say('A few questions make this PC a mail node. Press Enter to take the value in [brackets].')
  p.say('')
  const hostname = await askValid(p, `Host name of this node (its name in mail headers and on the certificate)${checkHostname(suggested) === null ? ` [${suggested}]` : ''}: `,
    checkHostname, checkHostname(suggested) === null ? { fallback: suggested } : {})
  p.say('')
  p.say('  1) create a new grid (the first node: you get a cluster key to give the next PCs)')
  p.say('  2) join a grid (another node already runs: you have its cluster key)')
  const choice = await askValid(p, 'Choose 1 or 2 [1]: ', v => v === '1' || v === '2' ? null : '1 or 2', { fallback: '1' })
  if (choice === '2') {
    const clusterKey = await askValid(p, 'Cluster key (as the first node printed it): ', checkClusterKey)
    return await withSshKey(p, { hostname, mode: 'join', clusterKey })
  }
  const domain = await askValid(p, 'Mail domain (the part after @ in your addresses): ', checkDomain)
  for (let i = 0; i < ATTEMPTS_MAX; i++) {
    const adminPassword = await askValid(p, `Password for admin@${domain}: `, checkPassword, { secret: true })
    if (await p.ask('The same password again: ', { secret: true }) === adminPassword) return await withSshKey(p, { hostname, mode: 'create', domain, adminPassword })
    p.say('  The two passwords differ; once more.')
  }
  throw new FirstbootError(`the passwords differed ${ATTEMPTS_MAX} times`)
}

/** The last, optional question: an SSH public key for root (key-only login; with none, SSH stays off). */
async function withSshKey (p: Prompter, answers: Answers): Promise<Answers> {
  p.say('')
  p.say('SSH (optional): paste a public key (the line of your id_ed25519.pub) to allow key-only root login.')
  const key = await askValid(p, 'SSH public key [none: SSH stays off]: ', v => v === '' ? null : checkSshKey(v), { fallback: '' })
  return key === '' ? answers : { ...answers, sshKey: key }
}

// ManageSieve against a real client: Debian's sieve-connect (STARTTLS with certificate verification against the
// test CA, SASL PLAIN) uploads, activates, lists and downloads a script, and a script with an error is refused with
// its line number. A raw client covers what sieve-connect does not send (RENAMESCRIPT, HAVESPACE, literals, bad input).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { connect } from 'node:net'
import type { Socket } from 'node:net'
import { existsSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { startNode, TEST_LIMITS } from '../helpers/node.ts'
import { createTestCa } from '../helpers/ca.ts'
import { tempDir } from '../helpers/tmp.ts'

const USER = 'sieve@example.com'
const missing = existsSync('/usr/bin/sieve-connect') ? false : 'sieve-connect is needed (apt-get install sieve-connect)'
const PASSWORD = 'correct horse battery'

async function sieveConnect (args: string[], opts: { port: number, ca: string }): Promise<{ code: number, out: string }> {
  const child = spawn('/usr/bin/sieve-connect', [
    '--nosrv', '--server', '127.0.0.1', '--port', String(opts.port), '--tlscafile', opts.ca, '--tlshostname', 'localhost',
    '--noclearauth', '--user', USER, '--passwordfd', '0', ...args
  ], { stdio: ['pipe', 'pipe', 'pipe'] })
  child.stdin.end(PASSWORD + '\n')
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const code = await new Promise<number>(resolve => child.on('close', c => { resolve(c ?? -1) }))
  return { code, out }
}

/** A minimal line client: sends raw bytes, reads until an OK/NO/BYE line. */
class Raw {
  private buf = ''
  private waiter: (() => void) | null = null
  readonly s: Socket
  constructor (s: Socket) {
    this.s = s
    s.on('data', d => { this.buf += d.toString('utf8'); this.waiter?.() })
    s.on('close', () => { this.waiter?.() })
  }

  static async open (port: number): Promise<Raw> {
    const s = connect(port, '127.0.0.1')
    await new Promise(resolve => s.once('connect', resolve))
    const r = new Raw(s)
    await r.response()
    return r
  }

  /** Everything up to and including the next line starting OK, NO or BYE (not inside a literal). */
  async response (): Promise<string> {
    for (let i = 0; i < 1000; i++) {
      const m = /(^|\r\n)(OK|NO|BYE)( [^\r\n]*)?\r\n/.exec(this.buf)
      if (m !== null) {
        const end = m.index + m[0].length
        const out = this.buf.slice(0, end)
        this.buf = this.buf.slice(end)
        return out
      }
      if (this.s.destroyed) return this.buf
      await new Promise<void>(resolve => { this.waiter = resolve })
    }
    throw new Error('no response')
  }

  /** Waits for exactly `text` at the start of the input, and takes it. */
  async expect (text: string): Promise<void> {
    for (let i = 0; i < 1000 && this.buf.length < text.length && !this.s.destroyed; i++) await new Promise<void>(resolve => { this.waiter = resolve })
    assert.equal(this.buf.slice(0, text.length), text)
    this.buf = this.buf.slice(text.length)
  }

  async cmd (line: string | Buffer): Promise<string> {
    this.s.write(line)
    return await this.response()
  }
}

test('sieve-connect uploads, activates, lists and downloads; errors name their line', { skip: missing }, async (t) => {
  const dir = await tempDir(t)
  const ca = await createTestCa()
  const caFile = join(dir, 'ca.pem')
  await writeFile(caFile, ca.cert)
  const ep = { host: '127.0.0.1', port: 0 }
  const n = await startNode(t, { tls: await ca.issue(['localhost']), listen: { smtp: ep, submission: null, smtps: null, pop3: null, pop3s: null, imap: null, imaps: null, managesieve: ep } })
  await n.node.store.addDomain('example.com')
  await n.node.store.addUser({ address: USER, password: PASSWORD })
  const port = n.port('managesieve' as never)
  const opts = { port, ca: caFile }

  const script = 'require ["fileinto"];\r\nif header :contains "subject" "report" {\r\n  fileinto "Reports";\r\n}\r\n'
  const local = join(dir, 'rules.sieve')
  await writeFile(local, script)
  let r = await sieveConnect(['--upload', '--localsieve', local, '--remotesieve', 'rules'], opts)
  assert.equal(r.code, 0, r.out)
  r = await sieveConnect(['--activate', '--remotesieve', 'rules'], opts)
  assert.equal(r.code, 0, r.out)
  r = await sieveConnect(['--list'], opts)
  assert.equal(r.code, 0, r.out)
  assert.match(r.out, /rules\s+<-- active|"rules" ACTIVE|rules.*active/i, r.out)
  const back = join(dir, 'back.sieve')
  r = await sieveConnect(['--download', '--remotesieve', 'rules', '--localsieve', back], opts)
  assert.equal(r.code, 0, r.out)
  assert.equal(await readFile(back, 'utf8'), script)
  // stored as the user's attributes, so it replicates with the user's mail
  assert.equal(await n.node.store.getAttr(USER, 'sieve/active'), 'rules')
  assert.equal(await n.node.store.getAttr(USER, 'sieve/script/rules'), script)

  // an error on line 3 is refused, with that line number, and nothing is stored
  const bad = join(dir, 'bad.sieve')
  await writeFile(bad, 'require ["fileinto"];\r\nif true {\r\n  frobnicate "x";\r\n}\r\n')
  r = await sieveConnect(['--upload', '--localsieve', bad, '--remotesieve', 'bad'], opts)
  assert.notEqual(r.code, 0, r.out)
  assert.match(r.out, /line 3\b/i, r.out)
  assert.equal(await n.node.store.getAttr(USER, 'sieve/script/bad'), null)
  r = await sieveConnect(['--checkscript', '--localsieve', bad], opts)
  assert.match(r.out, /line 3\b/i, r.out)

  // the active script cannot be deleted; after deactivation it can
  r = await sieveConnect(['--delete', '--remotesieve', 'rules'], opts)
  assert.notEqual(r.code, 0, r.out)
  r = await sieveConnect(['--deactivate'], opts)
  assert.equal(r.code, 0, r.out)
  r = await sieveConnect(['--delete', '--remotesieve', 'rules'], opts)
  assert.equal(r.code, 0, r.out)
  assert.equal(await n.node.store.getAttr(USER, 'sieve/script/rules'), null)
})

test('ManageSieve commands over a raw connection: literals, RENAMESCRIPT, HAVESPACE, limits, bad input', async (t) => {
  const ep = { host: '127.0.0.1', port: 0 }
  const n = await startNode(t, { plaintextAuthOnLoopback: true, listen: { smtp: null, submission: null, smtps: null, pop3: null, pop3s: null, imap: null, imaps: null, managesieve: ep } })
  await n.node.store.addDomain('example.com')
  await n.node.store.addUser({ address: USER, password: PASSWORD })
  const c = await Raw.open(n.port('managesieve' as never))
  t.after(() => { c.s.destroy() })
  assert.match(await c.cmd('LISTSCRIPTS\r\n'), /^NO/)
  const cap = await c.cmd('CAPABILITY\r\n')
  assert.match(cap, /"IMPLEMENTATION" "mailgrid"/)
  assert.match(cap, /"SIEVE" "[^"]*fileinto[^"]*vacation/)
  assert.match(cap, /"STARTTLS"/)
  assert.match(cap, /"VERSION" "1.0"/)
  const plain = (user: string, pw: string): string => Buffer.from(`\0${user}\0${pw}`).toString('base64')
  assert.match(await c.cmd(`AUTHENTICATE "PLAIN" "${plain(USER, 'wrong')}"\r\n`), /^NO/)
  // the response in a continuation, as a literal
  c.s.write('AUTHENTICATE "PLAIN"\r\n')
  await c.expect('""\r\n')
  const resp = plain(USER, PASSWORD)
  assert.match(await c.cmd(`{${resp.length}+}\r\n${resp}\r\n`), /^OK/)
  const s1 = 'keep;\r\n'
  assert.match(await c.cmd(`PUTSCRIPT "one" {${s1.length}+}\r\n${s1}\r\n`), /^OK/)
  assert.match(await c.cmd(`PUTSCRIPT "two" {${s1.length}}\r\n${s1}\r\n`), /^OK/, 'a synchronizing literal is taken too')
  assert.match(await c.cmd('SETACTIVE "one"\r\n'), /^OK/)
  assert.match(await c.cmd('RENAMESCRIPT "one" "uno"\r\n'), /^OK/)
  assert.match(await c.cmd('RENAMESCRIPT "uno" "two"\r\n'), /^NO \(ALREADYEXISTS\)/)
  assert.match(await c.cmd('LISTSCRIPTS\r\n'), /^"two"\r\n"uno" ACTIVE\r\nOK/)
  assert.match(await c.cmd('DELETESCRIPT "uno"\r\n'), /^NO \(ACTIVE\)/)
  assert.match(await c.cmd('GETSCRIPT "nope"\r\n'), /^NO \(NONEXISTENT\)/)
  assert.equal(await c.cmd('GETSCRIPT "uno"\r\n'), `{${s1.length}}\r\n${s1}\r\nOK "GETSCRIPT completed"\r\n`)
  assert.match(await c.cmd('HAVESPACE "big" 10000000\r\n'), /^NO \(QUOTA\/MAXSIZE\)/)
  assert.match(await c.cmd('HAVESPACE "small" 100\r\n'), /^OK/)
  assert.match(await c.cmd('NOOP "x1"\r\n'), /^OK \(TAG "x1"\)/)
  // a 1 MB script: read and dropped, refused, and the session goes on
  const big = 'keep;' + '#'.repeat(1024 * 1024) + '\r\n'
  assert.match(await c.cmd(`PUTSCRIPT "big" {${big.length}+}\r\n${big}\r\n`), /^NO \(QUOTA\/MAXSIZE\)/)
  assert.match(await c.cmd('NOOP\r\n'), /^OK/)
  // a compile error names its line
  const bad = 'keep;\r\nkeep;\r\nfrobnicate;\r\n'
  assert.match(await c.cmd(`CHECKSCRIPT {${bad.length}+}\r\n${bad}\r\n`), /^NO "line 3: /)
  assert.match(await c.cmd(`PUTSCRIPT "bad" {${bad.length}+}\r\n${bad}\r\n`), /^NO "line 3: /)
  // bad syntax: an error, the stream stays in sync
  assert.match(await c.cmd('PUTSCRIPT "x\r\n'), /^NO/)
  assert.match(await c.cmd('FROB\r\n'), /^NO/)
  assert.match(await c.cmd('NOOP\r\n'), /^OK/)
  assert.match(await c.cmd('UNAUTHENTICATE\r\n'), /^OK/)
  assert.match(await c.cmd('LISTSCRIPTS\r\n'), /^NO/)
  // a line past every bound ends the session
  assert.match(await c.cmd('NOOP ' + 'a'.repeat(20_000) + '\r\n'), /BYE/)
})

test('AUTHENTICATE goes through the node\'s throttle: after the failures allowed, even the right password waits', async (t) => {
  const ep = { host: '127.0.0.1', port: 0 }
  const n = await startNode(t, { plaintextAuthOnLoopback: true, limits: { ...TEST_LIMITS, authFailuresPerAccountMax: 2 }, listen: { smtp: null, submission: null, smtps: null, pop3: null, pop3s: null, imap: null, imaps: null, managesieve: ep } })
  await n.node.store.addDomain('example.com')
  await n.node.store.addUser({ address: USER, password: PASSWORD })
  const plain = (pw: string): string => Buffer.from(`\0${USER}\0${pw}`).toString('base64')
  const c = await Raw.open(n.port('managesieve' as never))
  t.after(() => { c.s.destroy() })
  assert.match(await c.cmd(`AUTHENTICATE "PLAIN" "${plain('wrong1')}"\r\n`), /^NO "Authentication failed"/)
  assert.match(await c.cmd(`AUTHENTICATE "PLAIN" "${plain('wrong2')}"\r\n`), /^NO "Authentication failed"/)
  assert.match(await c.cmd(`AUTHENTICATE "PLAIN" "${plain(PASSWORD)}"\r\n`), /^(NO \(TRYLATER\)|BYE)/, 'throttled')
  const d = await Raw.open(n.port('managesieve' as never))
  t.after(() => { d.s.destroy() })
  assert.match(await d.cmd(`AUTHENTICATE "PLAIN" "${plain(PASSWORD)}"\r\n`), /^NO \(TRYLATER\)/, 'on a new connection too')
})

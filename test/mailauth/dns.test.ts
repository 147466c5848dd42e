// `mailgrid domain add`, `domain dkim ...`, `dns records` and `dns check` end to end: a real node started with
// `mailgrid start` in a child process, the commands run in-process through the admin API, and `dns check`
// asking a private dnsmasq that publishes some of the records, some wrongly.

import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { main } from '../../appliance/commands.ts'
import { envName, SERVICE_NAMES, WEB_NAMES } from '../../appliance/config.ts'
import { isDnsmasqInstalled, startDns } from '../helpers/dns.ts'
import type { DnsRecords, DnsServer } from '../helpers/dns.ts'
import { tempDir } from '../helpers/tmp.ts'

const ROOT = new URL('../..', import.meta.url).pathname
const NODE = join(ROOT, 'node_modules', '.bin', 'node')
const READY_TIMEOUT_MS = 30_000
const HOST = 'mx.example.test' // in the .test zone the private dnsmasq answers for
const missing = isDnsmasqInstalled() ? false : 'dnsmasq is needed (apt-get install dnsmasq-base)'

let dns: DnsServer
before(async () => { if (missing === false) dns = await startDns({ records: {} }) })
after(async () => { await dns?.stop() })

async function startAppliance (t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await tempDir(t)
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MAILGRID_') && v !== undefined) env[k] = v
  for (const s of [...SERVICE_NAMES, ...WEB_NAMES, 'managesieve']) env[envName(`listen.${s}.port`)] = '0'
  Object.assign(env, { MAILGRID_ADMIN_PORT: '0', MAILGRID_GRID_LISTEN: '/ip4/127.0.0.1/tcp/0', MAILGRID_HOSTNAME: HOST, MAILGRID_STORE_SYNC: 'false' })
  const child: ChildProcess = spawn(NODE, [join(ROOT, 'appliance', 'cli.ts'), 'start', '--data', dir], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { if (stderr.length < 8192) stderr += d.toString() })
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  t.after(async () => {
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(timer)
  })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not ready in ${READY_TIMEOUT_MS} ms: ${stderr}`)), READY_TIMEOUT_MS)
    createInterface({ input: child.stdout! }).on('line', line => { if (line.includes('"event":"ready"')) { clearTimeout(timer); resolve() } })
    void exited.then(() => { clearTimeout(timer); reject(new Error(`exited before ready: ${stderr}`)) })
  })
  return dir
}

async function run (args: string[]): Promise<{ out: string, err: string, code: number }> {
  const io = { out: '', err: '' }
  const code = await main(args, { stdout: { write: (s: string) => { io.out += s } }, stderr: { write: (s: string) => { io.err += s } }, stdin: Readable.from([]), env: {} })
  assert.doesNotMatch(io.out + io.err, /PRIVATE KEY/, 'a private key is never printed')
  return { ...io, code }
}

interface Rec { name: string, type: string, value: string, text?: string, port?: number, target?: string, required: boolean }

/** SRV RDATA in wire form (RFC 2782) as hex, for dnsmasq's dns-rr. */
function srvHex (priority: number, weight: number, port: number, target: string): string {
  const b = Buffer.alloc(6)
  b.writeUInt16BE(priority, 0); b.writeUInt16BE(weight, 2); b.writeUInt16BE(port, 4)
  const name = Buffer.concat([...target.split('.').map(l => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0])])
  return Buffer.concat([b, name]).toString('hex')
}

test('domain add makes a DKIM key; dns records lists what to publish; dns check finds what is missing or wrong', { skip: missing }, async (t) => {
  const dir = await startAppliance(t)
  const d = ['--data', dir]

  const added = await run(['domain', 'add', 'example.test', ...d])
  assert.equal(added.code, 0, added.err)
  assert.equal(added.out, 'added domain example.test\n')
  const keys = JSON.parse((await run(['domain', 'dkim', 'list', 'example.test', '--json', ...d])).out)
  assert.equal(keys.length, 1)
  assert.equal(keys[0].state, 'active')
  assert.match(keys[0].txt, /^v=DKIM1; k=rsa; p=[A-Za-z0-9+/]{300,}={0,2}$/, 'RSA 2048 public key')
  assert.equal(keys[0].privateKey, undefined)

  // the records, as JSON and as text
  const json = JSON.parse((await run(['dns', 'records', 'example.test', '--json', ...d])).out)
  const records = json.records as Rec[]
  const find = (name: string, type: string): Rec => {
    const r = records.find(x => x.name === name && x.type === type)
    assert.ok(r !== undefined, `${type} ${name}`)
    return r
  }
  assert.equal(find('example.test', 'MX').value, `10 ${HOST}.`)
  assert.equal(find('example.test', 'TXT').text, 'v=spf1 mx -all')
  assert.equal(find(`${keys[0].selector as string}._domainkey.example.test`, 'TXT').text, keys[0].txt)
  assert.equal(find('_dmarc.example.test', 'TXT').text, 'v=DMARC1; p=quarantine; rua=mailto:dmarc@example.test')
  for (const srv of ['_submission._tcp', '_submissions._tcp', '_imap._tcp', '_imaps._tcp', '_pop3s._tcp']) {
    const r = find(`${srv}.example.test`, 'SRV')
    assert.equal(r.target, HOST)
    assert.ok(r.port !== undefined && r.port > 0, `${srv}: the node's bound port`)
    assert.equal(r.required, false)
  }
  assert.match(find('_mta-sts.example.test', 'TXT').text ?? '', /^v=STSv1; id=[0-9a-f]{16}$/)
  assert.equal(find('_smtp._tls.example.test', 'TXT').text, 'v=TLSRPTv1; rua=mailto:tlsrpt@example.test')
  assert.equal(find('autoconfig.example.test', 'CNAME').value, `${HOST}.`)
  assert.equal(find('autodiscover.example.test', 'CNAME').value, `${HOST}.`)
  assert.match(json.mtaStsPolicy, new RegExp(`^version: STSv1\r\nmode: testing\r\nmx: ${HOST}\r\nmax_age: \\d+\r\n$`))
  const text = (await run(['dns', 'records', 'example.test', ...d])).out
  assert.match(text, /^example\.test\.\tMX\t10 mx\.example\.test\.\t; RFC 5321/m)
  assert.match(text, /^_dmarc\.example\.test\.\tTXT\t"v=DMARC1; p=quarantine; rua=mailto:dmarc@example\.test"\t; /m)
  assert.match(text, /^mg\d{6}\._domainkey\.example\.test\.\tTXT\t"v=DKIM1; k=rsa; p=[^"]{200,}" "[^"]+"\t; /m, 'a 2048-bit key needs two strings')

  // DNS with MX, an SPF that does not allow our host, the DKIM key, a DMARC policy that asks for nothing, one SRV
  const submission = find('_submission._tcp.example.test', 'SRV')
  const published: DnsRecords = {
    mx: [{ name: 'example.test', host: HOST, preference: 10 }],
    address: [{ name: HOST, address: '127.0.0.1' }],
    txt: [
      { name: 'example.test', text: 'v=spf1 a -all' },
      { name: `${keys[0].selector as string}._domainkey.example.test`, text: keys[0].txt },
      { name: '_dmarc.example.test', text: 'v=DMARC1; p=none' }
    ],
    raw: [{ name: '_submission._tcp.example.test', type: 33, hex: srvHex(0, 1, submission.port!, HOST) }]
  }
  await dns.setRecords(published)
  const checked = await run(['dns', 'check', 'example.test', '--server', dns.server, ...d])
  assert.equal(checked.code, 1, 'required records are missing')
  assert.match(checked.err, /^mailgrid: 2 required records are missing or wrong for example\.test\n$/)
  assert.match(checked.out, /^ok\s*\tMX\texample\.test\.$/m)
  assert.match(checked.out, /^wrong\s*\tTXT\texample\.test\.\twant "v=spf1 mx -all"\tfound v=spf1 a -all$/m)
  assert.match(checked.out, /^ok\s*\tTXT\tmg\d{6}\._domainkey\.example\.test\.$/m)
  assert.match(checked.out, /^wrong\s*\tTXT\t_dmarc\.example\.test\.\twant "v=DMARC1; p=quarantine; rua=mailto:dmarc@example\.test"\tfound v=DMARC1; p=none$/m)
  assert.match(checked.out, /^ok\s*\tSRV\t_submission\._tcp\.example\.test\.$/m)
  assert.match(checked.out, /^missing\s*\tSRV\t_imaps\._tcp\.example\.test\..*\(recommended\)$/m)

  // fixed, in other words than ours that do the same (an SPF that passes our host's address, a DMARC policy that
  // acts): exit 0, the recommended ones may still be missing
  published.txt = [
    { name: 'example.test', text: 'v=spf1 ip4:127.0.0.1 -all' },
    { name: `${keys[0].selector as string}._domainkey.example.test`, text: keys[0].txt },
    { name: '_dmarc.example.test', text: 'v=DMARC1; p=reject; rua=mailto:postmaster@example.test' }
  ]
  await dns.setRecords(published)
  const fixed = await run(['dns', 'check', 'example.test', '--server', dns.server, '--json', ...d])
  assert.equal(fixed.code, 0, fixed.err)
  assert.equal(JSON.parse(fixed.out).ok, true)
  const statusOf = (name: string): string => JSON.parse(fixed.out).checks.find((c: { record: Rec }) => c.record.name === name && c.record.type === 'TXT').status
  assert.deepEqual(['example.test', '_dmarc.example.test'].map(statusOf), ['ok', 'ok'])

  // rotation: the pending key is listed and checked (missing until published), signing stays on the old one
  const rotated = await run(['domain', 'dkim', 'rotate', 'example.test', ...d])
  assert.equal(rotated.code, 0, rotated.err)
  const selector = /^new DKIM key (\S+) for example\.test \(pending\)$/m.exec(rotated.out)?.[1]
  assert.ok(selector !== undefined, rotated.out)
  assert.match(rotated.out, /^publish: \S+\._domainkey\.example\.test\. TXT "v=DKIM1; k=rsa; p=/m)
  assert.match(rotated.out, new RegExp(`^then, once it resolves: mailgrid domain dkim activate example\\.test ${selector}$`, 'm'))
  const after = await run(['dns', 'check', 'example.test', '--server', dns.server, ...d])
  assert.equal(after.code, 1)
  assert.match(after.out, new RegExp(`^missing\\s*\\tTXT\\t${selector}\\._domainkey\\.example\\.test\\.`, 'm'))
  assert.equal((await run(['domain', 'dkim', 'retire', 'example.test', keys[0].selector, ...d])).code, 1, 'the active key cannot be retired')
  const activated = await run(['domain', 'dkim', 'activate', 'example.test', selector, ...d])
  assert.equal(activated.code, 0, activated.err)
  assert.match(activated.out, new RegExp(`^${keys[0].selector as string}\\tpublished\\t`, 'm'))
  assert.match(activated.out, new RegExp(`^${selector}\\tactive\\t`, 'm'))
  assert.equal((await run(['domain', 'dkim', 'retire', 'example.test', keys[0].selector, ...d])).code, 0)
  const left = JSON.parse((await run(['domain', 'dkim', 'list', 'example.test', '--json', ...d])).out)
  assert.deepEqual(left.map((k: { selector: string }) => k.selector), [selector])

  // bad input
  assert.equal((await run(['dns', 'records', 'nosuch.test', ...d])).code, 1)
  assert.equal((await run(['dns', 'check', 'example.test', '--server', 'not-an-ip', ...d])).code, 1)
  assert.equal((await run(['dns', 'records', 'example.test', '--server', '127.0.0.1', ...d])).code, 2, '--server is for check only')
  assert.equal((await run(['dns', 'frob', 'example.test', ...d])).code, 2)
})

// Administration from elsewhere (issue 11): a node started with `mailgrid start` whose admin API sits on
// 127.0.0.2 with TLS forced on, as on a LAN address. The CLI reaches it by --url/--token/--fingerprint (or
// MAILGRID_*), pinning the certificate; a wrong token or fingerprint is refused. /metrics is scraped, parsed as
// Prometheus text and seen moving under mail traffic; the autoconfig documents are fetched, parsed, and a client
// set up only from Thunderbird's logs in, sends and reads.

import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { request as httpsRequest } from 'node:https'
import { connect as netConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { XMLParser, XMLValidator } from 'fast-xml-parser'
import { ImapFlow } from 'imapflow'
import nodemailer from 'nodemailer'
import { main } from '../../appliance/commands.ts'
import { envName, SERVICE_NAMES, WEB_NAMES } from '../../appliance/config.ts'

const ROOT = new URL('../..', import.meta.url).pathname
const NODE = join(ROOT, 'node_modules', '.bin', 'node')
const CLI = join(ROOT, 'appliance', 'cli.ts')
const READY_TIMEOUT_MS = 30_000
const ADMIN_HOST = '127.0.0.2' // loopback, but not 127.0.0.1: TLS is forced on, as it is on a LAN address
const METRICS_TOKEN = 'scrape-only-token-' + 'm'.repeat(12)
const PASSWORD = 'correct horse battery'

interface Node { child: ChildProcess, dir: string, ready: Record<string, any>, url: string, fingerprint: string, token: string, cert: string }
let node: Node

function nodeEnv (): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MAILGRID_') && v !== undefined) env[k] = v
  for (const s of [...SERVICE_NAMES, ...WEB_NAMES, 'managesieve']) env[envName(`listen.${s}.port`)] = '0'
  return {
    ...env,
    MAILGRID_ADMIN_HOST: ADMIN_HOST,
    MAILGRID_ADMIN_PORT: '0',
    MAILGRID_ADMIN_TLS: 'on',
    MAILGRID_METRICS_TOKEN: METRICS_TOKEN,
    MAILGRID_GRID_LISTEN: '/ip4/127.0.0.1/tcp/0',
    MAILGRID_HOSTNAME: 'localhost', // the name the autoconfig documents give clients: it must resolve here
    MAILGRID_STORE_SYNC: 'false',
    MAILGRID_OUTBOUND_DNS_SERVERS: '127.0.0.1:9' // nothing answers: outbound attempts end deferred, at once
  }
}

before(async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-remote-'))
  const child = spawn(NODE, [CLI, 'start', '--data', dir], { cwd: ROOT, env: nodeEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  const ready = await new Promise<Record<string, any>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not ready in ${READY_TIMEOUT_MS} ms: ${stderr}`)), READY_TIMEOUT_MS)
    createInterface({ input: child.stdout! }).on('line', line => {
      if (line.includes('"event":"ready"')) { clearTimeout(timer); resolve(JSON.parse(line)) }
    })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`exited ${String(code)} before ready: ${stderr}`)) })
  })
  const info = JSON.parse(await readFile(join(dir, 'admin.json'), 'utf8'))
  const cert = await readFile(join(dir, 'tls', 'cert.pem'), 'utf8')
  const token = (await readFile(join(dir, 'admin.token'), 'utf8')).trim()
  node = { child, dir, ready, url: info.url, fingerprint: info.fingerprint, token, cert }
})

after(async () => {
  if (node === undefined) return
  const exited = new Promise(resolve => node.child.once('exit', resolve))
  node.child.kill('SIGTERM')
  const timer = setTimeout(() => node.child.kill('SIGKILL'), 15_000)
  await exited
  clearTimeout(timer)
  await rm(node.dir, { recursive: true, force: true })
})

async function run (args: string[], env: Record<string, string> = {}, stdin?: string): Promise<{ out: string, err: string, code: number }> {
  const io = { out: '', err: '' }
  const code = await main(args, {
    stdout: { write: (s: string) => { io.out += s } },
    stderr: { write: (s: string) => { io.err += s } },
    stdin: Readable.from(stdin === undefined ? [] : [stdin]),
    env
  })
  return { ...io, code }
}

/** A GET or POST over HTTPS trusting only the node's own certificate (it names localhost and 127.0.0.1). */
function fetchTls (url: string, opts: { method?: string, headers?: Record<string, string>, body?: string, servername?: string } = {}): Promise<{ status: number, type: string, text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method: opts.method ?? 'GET', headers: opts.headers, ca: node.cert, servername: opts.servername ?? 'localhost', checkServerIdentity: () => undefined }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), text: Buffer.concat(chunks).toString('utf8') }))
    })
    req.on('error', reject)
    req.end(opts.body)
  })
}

test('admin.json: an https URL on 127.0.0.2 and the certificate\'s fingerprint', () => {
  assert.match(node.url, /^https:\/\/127\.0\.0\.2:\d+$/)
  assert.equal(node.fingerprint, new X509Certificate(node.cert).fingerprint256)
  assert.equal(node.ready.admin, node.url)
})

test('the CLI against the remote node: every management command, by flags and by environment', async () => {
  const env = { MAILGRID_URL: node.url, MAILGRID_TOKEN: node.token, MAILGRID_FINGERPRINT: node.fingerprint }
  const ok = async (args: string[], out: string | RegExp, e: Record<string, string> = env): Promise<string> => {
    const r = await run(args, e)
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.err}`)
    if (typeof out === 'string') assert.equal(r.out, out, args.join(' '))
    else assert.match(r.out, out, args.join(' '))
    return r.out
  }
  const status = await ok(['status'], /^hostname {5}localhost\n/)
  assert.ok(status.includes(`node         ${node.url}\n`), status)
  assert.ok(status.includes(`admin        ${node.url}\n`), status)
  assert.ok(status.includes(`certificate  sha256 ${node.fingerprint}\n`), status)
  await ok(['domain', 'add', 'remote.test'], 'added domain remote.test\n')
  await ok(['domain', 'list'], 'remote.test\n')
  await ok(['domain', 'dkim', 'list', 'remote.test'], /^\S+\tactive\t\d{4}-\d\d-\d\d\t\S+\._domainkey\.remote\.test\. TXT "v=DKIM1;/)
  await ok(['dns', 'records', 'remote.test'], /^remote\.test\.\tMX\t/m)
  await ok(['user', 'add', 'ann@remote.test', '--password', PASSWORD, '--quota', '1G'], 'added user ann@remote.test\n')
  await ok(['user', 'add', 'ben@remote.test', '--password', PASSWORD], 'added user ben@remote.test\n')
  await ok(['user', 'passwd', 'ben@remote.test', '--password', PASSWORD + '!'], 'changed the password of ben@remote.test\n')
  await ok(['user', 'quota', 'ann@remote.test', '--quota', '500M'], 'ann@remote.test\tquota 500M\tmessages unlimited\tactive\n')
  await ok(['user', 'list', 'remote.test'], 'ann@remote.test\tquota 500M\tmessages unlimited\tactive\nben@remote.test\tquota unlimited\tmessages unlimited\tactive\n')
  await ok(['user', 'where', 'ann@remote.test'], /primary/)
  await ok(['alias', 'add', 'sales@remote.test', 'ann@remote.test'], 'added alias sales@remote.test -> ann@remote.test\n')
  await ok(['alias', 'list'], 'sales@remote.test -> ann@remote.test\n')
  await ok(['alias', 'del', 'sales@remote.test'], 'deleted alias sales@remote.test\n')
  await ok(['queue', 'list'], /^the queue is empty\n|^ID /)
  await ok(['queue', 'retry', '--all'], /due now\n$/)
  const missing = await run(['queue', 'show', 'nope'], env)
  assert.deepEqual([missing.code, missing.err], [1, 'mailgrid: No such queued message: nope\n'])
  await ok(['user', 'del', 'ben@remote.test'], 'deleted user ben@remote.test\n')

  // the same by flags, the fingerprint as hex without colons in lower case; --json passes the answer through
  const flags = ['--url', node.url, '--token', node.token, '--fingerprint', node.fingerprint.replace(/:/g, '').toLowerCase()]
  const json = JSON.parse(await ok(['user', 'list', '--json', ...flags], /^\[/, {}))
  assert.deepEqual(json.map((u: { address: string }) => u.address), ['ann@remote.test'])
  // and the local CLI (--data) finds the https URL and the pin in admin.json
  await ok(['status', '--data', node.dir], new RegExp(`^hostname {5}localhost\\ndata dir {5}.*\\nadmin {8}${node.url}\\n`), {})
})

test('the remote CLI refuses a wrong token, a wrong or missing fingerprint, and plain HTTP off loopback', async () => {
  const env = { MAILGRID_URL: node.url, MAILGRID_TOKEN: node.token, MAILGRID_FINGERPRINT: node.fingerprint }
  const wrongToken = await run(['domain', 'list'], { ...env, MAILGRID_TOKEN: 'x'.repeat(43) })
  assert.deepEqual([wrongToken.code, wrongToken.out], [1, ''])
  assert.equal(wrongToken.err, `mailgrid: the node at ${node.url} refused the token given (--token or MAILGRID_TOKEN): wrong admin token\n`)

  // one hex digit off: another certificate as far as the pin goes; the token is never sent
  const last = node.fingerprint.slice(-1)
  const other = node.fingerprint.slice(0, -1) + (last === '0' ? '1' : '0')
  const wrongPin = await run(['status'], { ...env, MAILGRID_FINGERPRINT: other })
  assert.equal(wrongPin.code, 1)
  assert.ok(wrongPin.err.startsWith(`mailgrid: the node at ${node.url} presents a certificate with SHA-256 fingerprint ${node.fingerprint}, not the pinned ${other}: refusing to send the token`), wrongPin.err)

  const noPin = await run(['status'], { MAILGRID_URL: node.url, MAILGRID_TOKEN: node.token })
  assert.equal(noPin.code, 1)
  assert.match(noPin.err, /presents a certificate this machine does not trust \(\w+\); if it is the node's own, pin it: --fingerprint /)
  assert.ok(noPin.err.includes(node.fingerprint), noPin.err)

  const badPin = await run(['status'], { ...env, MAILGRID_FINGERPRINT: 'abc' })
  assert.deepEqual([badPin.code, badPin.err], [1, 'mailgrid: not a SHA-256 fingerprint: abc (64 hex digits, colons optional)\n'])
  const clear = await run(['status', '--url', 'http://192.0.2.1:8080', '--token', node.token])
  assert.deepEqual([clear.code, clear.err], [1, 'mailgrid: refusing to send the admin token in clear to 192.0.2.1:8080: use https:// (plain HTTP is for loopback only)\n'])

  const usage = async (args: string[], message: string): Promise<void> => {
    const r = await run(args)
    assert.equal(r.code, 2, args.join(' '))
    assert.ok(r.err.startsWith(`mailgrid: ${message}\n`), r.err)
  }
  await usage(['status', '--url', node.url], '--url needs --token (or MAILGRID_TOKEN): the admin token of that node')
  await usage(['status', '--token', node.token], '--token needs --url (or MAILGRID_URL)')
  await usage(['start', '--url', node.url], '--url does not apply to start: it runs on this machine')
  await usage(['cluster', 'status', '--dir', '/tmp', '--token', 't'], '--token does not apply to cluster: it runs on this machine')

  // the API itself: no token, no answer (the certificate checked as the CLI does)
  const anonymous = await fetchTls(node.url + '/v1/status', { servername: 'localhost' })
  assert.equal(anonymous.status, 401)
})

test('saved profiles: save checks and keeps URL, token and pin owner-only; --profile uses them; list shows no token', async () => {
  const home = await mkdtemp(join(tmpdir(), 'mailgrid-profiles-'))
  try {
    const base = { XDG_CONFIG_HOME: home }
    const path = join(home, 'mailgrid', 'profiles.json')
    const flags = ['--url', node.url, '--token', node.token, '--fingerprint', node.fingerprint]
    // nothing is saved that does not work: a wrong token or pin is refused first
    const wrong = await run(['profile', 'save', 'grid1', '--url', node.url, '--token', 'y'.repeat(43), '--fingerprint', node.fingerprint], base)
    assert.deepEqual([wrong.code, wrong.err], [1, `mailgrid: the node at ${node.url} refused the token given (--token or MAILGRID_TOKEN): wrong admin token\n`])
    await assert.rejects(stat(path), { code: 'ENOENT' })
    const saved = await run(['profile', 'save', 'grid1', '--url', node.url, '--token', '-', '--fingerprint', node.fingerprint], base, node.token + '\n')
    assert.equal(saved.code, 0, saved.err)
    assert.equal(saved.out, `saved profile grid1: ${node.url} (localhost) in ${path}\n`)
    assert.equal((await stat(path)).mode & 0o777, 0o600)
    assert.equal((await stat(join(home, 'mailgrid'))).mode & 0o077, 0)

    const list = await run(['profile', 'list'], base)
    assert.equal(list.out, `grid1  ${node.url}  ${node.fingerprint}\n`)
    assert.ok(!list.out.includes(node.token))
    const status = await run(['status', '--profile', 'grid1'], base)
    assert.equal(status.code, 0, status.err)
    assert.ok(status.out.includes(`node         ${node.url}\n`), status.out)
    const byEnv = await run(['domain', 'list'], { ...base, MAILGRID_PROFILE: 'grid1' })
    assert.deepEqual([byEnv.code, byEnv.out], [0, 'remote.test\n'])

    const missing = await run(['status', '--profile', 'nope'], base)
    assert.deepEqual([missing.code, missing.err], [1, `mailgrid: no profile nope in ${path} (mailgrid profile save nope --url ... --token ... --fingerprint ... makes one)\n`])
    const both = await run(['status', '--profile', 'grid1', '--url', node.url], base)
    assert.equal(both.code, 2)
    assert.ok(both.err.startsWith('mailgrid: --url and --profile: give one or the other\n'), both.err)
    assert.equal((await run(['profile', 'save', '../x', ...flags], base)).code, 2, 'a name is a plain word')
    assert.deepEqual((await run(['profile', 'del', 'grid1'], base)).out, 'deleted profile grid1\n')
    assert.equal((await run(['profile', 'del', 'grid1'], base)).code, 1)
    assert.equal((await run(['profile', 'list'], base)).out, `no profiles in ${path}\n`)
  } finally {
    await rm(home, { recursive: true, force: true })
  }
})

/** Prometheus text format 0.0.4: `# TYPE` lines and samples `name{a="b",...} value`; throws on anything else. */
function parseProm (text: string): Map<string, { type: string, samples: Array<{ name: string, labels: Record<string, string>, value: number }> }> {
  const families = new Map<string, { type: string, samples: Array<{ name: string, labels: Record<string, string>, value: number }> }>()
  const family = (sample: string): string | undefined => [...families.keys()].filter(f => sample === f || sample.startsWith(f + '_')).sort((a, b) => b.length - a.length)[0]
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ')) continue
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line)
    if (type !== null) { families.set(type[1], { type: type[2], samples: [] }); continue }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?[0-9.e+-]+|[Nn]a[Nn]|[+-]Inf)$/.exec(line)
    assert.ok(m !== null, `not a Prometheus sample line: ${line}`)
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g)) labels[l[1]] = l[2]
    const f = family(m[1])
    assert.ok(f !== undefined, `a sample before its # TYPE: ${line}`)
    families.get(f)!.samples.push({ name: m[1], labels, value: Number(m[3]) })
  }
  return families
}

async function scrape (token = METRICS_TOKEN): Promise<ReturnType<typeof parseProm>> {
  const r = await fetchTls(node.url + '/metrics', { headers: { authorization: `Bearer ${token}` } })
  assert.equal(r.status, 200, r.text)
  assert.match(r.type, /^text\/plain; version=0\.0\.4/)
  return parseProm(r.text)
}

function value (m: ReturnType<typeof parseProm>, family: string, labels: Record<string, string> = {}): number {
  const f = m.get(family)
  assert.ok(f !== undefined, `family ${family} is present`)
  const s = f.samples.filter(x => x.name === family && Object.entries(labels).every(([k, v]) => x.labels[k] === v))
  assert.ok(s.length > 0, `${family}${JSON.stringify(labels)} has a sample`)
  return s.reduce((n, x) => n + x.value, 0)
}

test('/metrics: Prometheus text with every family, the scrape token reads only it, and the counters move under mail', async () => {
  // the scrape token is for /metrics alone; no token, no metrics
  assert.equal((await fetchTls(node.url + '/v1/status', { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).status, 401)
  assert.equal((await fetchTls(node.url + '/metrics')).status, 401)
  const adminScrape = await scrape(node.token)
  assert.ok(adminScrape.has('mailgrid_commands_total'), 'the admin token reads it too')

  const families = {
    counter: ['connections_total', 'commands_total', 'command_errors_total', 'logins_total', 'login_failures_total', 'deliveries_in_total',
      'received_bytes_total', 'deliveries_out_total', 'sent_bytes_total', 'store_fsyncs_total', 'store_commit_batches_total', 'grid_remirrored_bytes_total'],
    histogram: ['command_duration_seconds'],
    gauge: ['open_connections', 'users', 'domains', 'queue_messages', 'queue_oldest_age_seconds', 'grid_members', 'grid_users_owned',
      'grid_under_replicated_users', 'grid_handoff_pending_users', 'disk_free_bytes', 'nodejs_eventloop_lag_seconds', 'process_resident_memory_bytes']
  }
  const before = await scrape()
  for (const [type, names] of Object.entries(families)) {
    for (const n of names) assert.equal(before.get('mailgrid_' + n)?.type, type, `mailgrid_${n} is a ${type}`)
  }
  assert.equal(value(before, 'mailgrid_grid_members', { status: 'alive' }), 1)
  assert.equal(value(before, 'mailgrid_grid_members', { status: 'dead' }), 0)
  assert.equal(value(before, 'mailgrid_users'), 1)

  const ports = Object.fromEntries((JSON.parse((await run(['status', '--json', '--data', node.dir])).out).services as Array<{ name: string, port: number }>).map(s => [s.name, s.port]))
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: ports.smtps, secure: true, auth: { user: 'ann@remote.test', pass: PASSWORD }, tls: { ca: node.cert, servername: 'localhost' } })
  for (let i = 0; i < 3; i++) await transport.sendMail({ from: 'ann@remote.test', to: 'ann@remote.test', subject: `load ${i}`, text: 'x'.repeat(1000) })
  await transport.sendMail({ from: 'ann@remote.test', to: 'someone@elsewhere.invalid', subject: 'out', text: 'to another domain' })
  transport.close()
  const imap = new ImapFlow({ host: '127.0.0.1', port: ports.imaps, secure: true, auth: { user: 'ann@remote.test', pass: PASSWORD }, tls: { ca: node.cert, servername: 'localhost' }, logger: false })
  await imap.connect()
  await imap.mailboxOpen('INBOX')
  await imap.logout()
  const wrong = new ImapFlow({ host: '127.0.0.1', port: ports.imaps, secure: true, auth: { user: 'ann@remote.test', pass: 'wrong' }, tls: { ca: node.cert, servername: 'localhost' }, logger: false })
  await assert.rejects(wrong.connect())
  // POP3 spoken by hand: a greeting, CAPA, an unknown command (-ERR), QUIT
  await new Promise<void>((resolve, reject) => {
    const s = netConnect(ports.pop3, '127.0.0.1', () => { s.write('CAPA\r\nFROB\r\nQUIT\r\n') })
    s.on('error', reject)
    s.on('data', () => {})
    s.on('close', () => resolve())
  })

  // the outbound attempt (deferred: no resolver answers) runs in the background
  let now = await scrape()
  for (let i = 0; i < 100 && value(now, 'mailgrid_deliveries_out_total') === value(before, 'mailgrid_deliveries_out_total'); i++) {
    await sleep(100)
    now = await scrape()
  }
  const moved = (family: string, labels: Record<string, string> = {}): number => value(now, family, labels) - value(before, family, labels)
  assert.ok(moved('mailgrid_connections_total', { protocol: 'submission' }) >= 4, 'four submission connections')
  assert.ok(moved('mailgrid_commands_total', { protocol: 'submission' }) >= 4 * 4, 'EHLO, AUTH, MAIL, RCPT, DATA, QUIT each time')
  assert.equal(moved('mailgrid_logins_total', { protocol: 'submission' }), 4)
  assert.equal(moved('mailgrid_deliveries_in_total', { protocol: 'submission' }), 3)
  assert.ok(moved('mailgrid_received_bytes_total', { protocol: 'submission' }) > 3 * 1000)
  assert.equal(moved('mailgrid_connections_total', { protocol: 'imap' }), 2)
  assert.equal(moved('mailgrid_logins_total', { protocol: 'imap' }), 1)
  assert.equal(moved('mailgrid_login_failures_total', { protocol: 'imap' }), 1)
  assert.ok(moved('mailgrid_command_errors_total', { protocol: 'imap' }) >= 1, 'the refused login is a NO')
  assert.ok(moved('mailgrid_commands_total', { protocol: 'imap' }) >= 4)
  assert.equal(moved('mailgrid_connections_total', { protocol: 'pop3' }), 1)
  assert.equal(moved('mailgrid_commands_total', { protocol: 'pop3' }), 3)
  assert.equal(moved('mailgrid_command_errors_total', { protocol: 'pop3' }), 1)
  assert.ok(moved('mailgrid_store_commit_batches_total') >= 3, 'the deliveries were committed')
  assert.ok(moved('mailgrid_deliveries_out_total') >= 1, 'the outbound attempt is counted')
  assert.ok(value(now, 'mailgrid_queue_messages', { scope: 'grid' }) + moved('mailgrid_deliveries_out_total', { result: 'failed' }) >= 1, 'queued, unless bounced already')
  assert.ok(value(now, 'mailgrid_nodejs_eventloop_lag_seconds') >= 0)
  // every timed command lands in the histogram: the +Inf bucket counts them all
  const timed = (m: ReturnType<typeof parseProm>, protocol: string): number =>
    m.get('mailgrid_command_duration_seconds')!.samples.filter(x => x.name === 'mailgrid_command_duration_seconds_count' && x.labels.protocol === protocol).reduce((n, x) => n + x.value, 0)
  assert.equal(timed(now, 'pop3') - timed(before, 'pop3'), 2, 'CAPA and QUIT (FROB is refused before any handler runs)')
  assert.ok(timed(now, 'imap') - timed(before, 'imap') >= 4)
})

test('client autoconfig: Thunderbird, Outlook and Apple documents parse, and a client set up from Thunderbird\'s works', async () => {
  const [httpUrl, httpsUrl] = node.ready.autoconfig as string[]
  assert.match(httpUrl, /^http:\/\/127\.0\.0\.1:\d+$/)
  assert.match(httpsUrl, /^https:\/\/127\.0\.0\.1:\d+$/)
  const added = await run(['user', 'add', "o'neil&co@remote.test", '--password', PASSWORD, '--data', node.dir])
  assert.equal(added.code, 0, added.err)
  const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@' })
  const strict = (text: string): any => {
    assert.equal(XMLValidator.validate(text), true, text)
    return parser.parse(text)
  }

  const tb = await fetch(`${httpUrl}/mail/config-v1.1.xml?emailaddress=${encodeURIComponent('ann@remote.test')}`)
  assert.equal(tb.status, 200)
  const tbText = await tb.text()
  const wellKnown = await fetchTls(`${httpsUrl}/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=ann%40remote.test`)
  assert.equal(wellKnown.text, tbText, 'the same document at the well-known path, over HTTPS')
  const provider = strict(tbText).clientConfig.emailProvider
  assert.equal(provider['@id'], 'remote.test')
  const incoming = [provider.incomingServer].flat()
  const outgoing = [provider.outgoingServer].flat()
  const ports = Object.fromEntries((JSON.parse((await run(['status', '--json', '--data', node.dir])).out).services as Array<{ name: string, port: number }>).map(s => [s.name, s.port]))
  assert.deepEqual(incoming.map(s => [s['@type'], s.port, s.socketType]), [
    ['imap', ports.imaps, 'SSL'], ['imap', ports.imap, 'STARTTLS'], ['pop3', ports.pop3s, 'SSL'], ['pop3', ports.pop3, 'STARTTLS']
  ])
  assert.deepEqual(outgoing.map(s => [s['@type'], s.port, s.socketType]), [['smtp', ports.smtps, 'SSL'], ['smtp', ports.submission, 'STARTTLS']])

  const unknown = await fetch(`${httpUrl}/mail/config-v1.1.xml?emailaddress=someone%40gmail.com`)
  assert.equal(unknown.status, 404, 'not a domain of ours')
  assert.equal((await fetch(`${httpUrl}/elsewhere`)).status, 404)

  const ask = (address: string): string => '<?xml version="1.0" encoding="utf-8"?>\n<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">' +
    `<Request><EMailAddress>${address}</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>`
  const ad = await fetchTls(`${httpsUrl}/Autodiscover/Autodiscover.xml`, { method: 'POST', headers: { 'content-type': 'text/xml' }, body: ask('o&apos;neil&amp;co@remote.test') })
  assert.equal(ad.status, 200, ad.text)
  const account = strict(ad.text).Autodiscover.Response.Account
  assert.equal(account.Action, 'settings')
  assert.deepEqual([account.Protocol].flat().map((p: any) => [p.Type, p.Port, p.SSL ?? p.Encryption, p.Server]), [
    ['IMAP', ports.imaps, 'on', 'localhost'], ['POP3', ports.pop3s, 'on', 'localhost'], ['SMTP', ports.smtps, 'on', 'localhost']
  ])
  assert.ok(ad.text.includes('<LoginName>o&apos;neil&amp;co@remote.test</LoginName>'), 'the address escaped')
  assert.equal((await fetch(`${httpUrl}/autodiscover/autodiscover.xml`, { method: 'POST', body: ask('x@gmail.com') })).status, 404)
  assert.equal((await fetch(`${httpUrl}/autodiscover/autodiscover.xml`, { method: 'POST', body: '<nothing/>' })).status, 400)
  assert.equal((await fetch(`${httpUrl}/autodiscover/autodiscover.xml`)).status, 405)

  const apple = await fetch(`${httpUrl}/apple/mailgrid.mobileconfig?email=${encodeURIComponent("o'neil&co@remote.test")}`)
  assert.equal(apple.status, 200)
  assert.equal(apple.headers.get('content-type'), 'application/x-apple-aspen-config')
  const appleText = await apple.text()
  assert.ok(appleText.includes('<string>o&apos;neil&amp;co@remote.test</string>'), 'escaped')
  const plist = strict(appleText).plist.dict
  const keys: string[] = plist.array.dict.key
  const fields = Object.fromEntries(keys.map((k, i) => [k, i]))
  assert.ok('IncomingMailServerPortNumber' in fields && 'OutgoingMailServerHostName' in fields, appleText)
  assert.deepEqual([plist.array.dict.integer].flat().slice(0, 2), [ports.imaps, ports.smtps])
  assert.equal((await fetch(`${httpUrl}/apple/mailgrid.mobileconfig`)).status, 400)

  // a client set up from nothing but the Thunderbird document (and the address and password)
  const address = 'ann@remote.test'
  const imapConf = incoming.find(s => s['@type'] === 'imap' && s.socketType === 'SSL')
  const smtpConf = outgoing.find(s => s.socketType === 'SSL')
  const user = (s: any): string => String(s.username).replace('%EMAILADDRESS%', address)
  const tls = { ca: node.cert } // the node's self-signed certificate names localhost: verified as a client would
  const transport = nodemailer.createTransport({ host: smtpConf.hostname, port: smtpConf.port, secure: true, auth: { user: user(smtpConf), pass: PASSWORD }, tls })
  const subject = `configured by autoconfig ${Date.now()}`
  await transport.sendMail({ from: address, to: address, subject, text: 'hello from a configured client' })
  transport.close()
  const imap = new ImapFlow({ host: imapConf.hostname, port: imapConf.port, secure: true, auth: { user: user(imapConf), pass: PASSWORD }, tls, logger: false })
  await imap.connect()
  try {
    await imap.mailboxOpen('INBOX')
    let found: string | undefined
    for (let i = 0; i < 50 && found === undefined; i++) {
      for await (const m of imap.fetch('1:*', { envelope: true })) if (m.envelope?.subject === subject) found = m.envelope.subject
      if (found === undefined) await sleep(100)
    }
    assert.equal(found, subject)
  } finally {
    await imap.logout()
  }
})

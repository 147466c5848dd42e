// The `mailgrid` command line: argument parsing (node:util parseArgs), the management commands that talk to
// a running node over the admin API, and `start`. Exit codes: 0 done, 1 the request failed (bad input, node
// not running, ...; one line on stderr), 2 the command line itself is wrong (a short usage on stderr).

import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { SIEVE_USAGE } from './sieve-cmd.ts'
import type { Readable } from 'node:stream'
import { ConfigError, loadConfig, REPLICAS_DEFAULT, REPLICAS_MAX } from './config.ts'
import { CliError, connect, connectRemote } from './client.ts'
import type { AdminClient, RemoteTarget } from './client.ts'
import { formatBytes, gridLines, placement, placementLines } from './gridview.ts'
import { startNode } from './start.ts'

export const EXIT_OK = 0
export const EXIT_FAILED = 1
export const EXIT_USAGE = 2
export const PASSWORD_LINE_BYTES_MAX = 4096 // a password read from stdin: one line, bounded

export interface CliIo {
  stdout: { write (s: string): unknown }
  stderr: { write (s: string): unknown }
  stdin: Readable
  env: Record<string, string | undefined>
  /** The clock ages are shown against (queue commands); Date.now by default. */
  now?: () => number
}

export const USAGE = `Usage: mailgrid COMMAND [ARGS] [--data DIR] [--config FILE]
       mailgrid COMMAND [ARGS] --url https://HOST:PORT --token TOKEN [--fingerprint SHA256]

  start                                   run the node in the foreground (logs on stdout)
  firstboot [--seed FILE] [--force]       set up this machine as a node: the console wizard, or the answers
                                          of a seed file (writes the config, default /etc/mailgrid/mailgrid.toml)
  status                                  show the running node's status
  domain add|del DOMAIN                   add or delete a local domain (add makes its DKIM key)
  domain list
  domain quota DOMAIN [--bytes SIZE] [--users N]
                                          the domain's quotas: all its users' mail together, and how many
                                          users it may have (0 = unlimited); without flags: shows them
  domain dkim list DOMAIN                 the domain's DKIM keys: selector, state, the TXT record to publish
  domain dkim rotate DOMAIN               a new key, pending: publish its record, then activate it
  domain dkim activate DOMAIN SELECTOR    sign with this key from now on (the old one stays published)
  domain dkim retire DOMAIN SELECTOR      forget a key that no longer signs (then remove its record)
  dns records DOMAIN                      every DNS record the domain needs (MX, SPF, DKIM, DMARC, SRV, ...)
  dns check DOMAIN [--server IP[:PORT],...]
                                          look them up and say which are missing or wrong (exit 1 if a
                                          required one is)
  user add ADDRESS --password P [--quota SIZE] [--quota-messages N]
  user passwd ADDRESS --password P        set a new password
  user quota ADDRESS [--quota SIZE] [--quota-messages N]
  user del ADDRESS                        delete the account and all its mail
  user list [DOMAIN]
  user where ADDRESS                      the nodes that hold the user's mail (primary first)
  alias add FROM TO [TO...]               FROM may be @domain (catch-all)
  alias del FROM
  alias list [DOMAIN]
  admin add NAME --password P [--domains D1,D2]
                                          a web console account; --domains limits it to those domains'
                                          users, aliases and DNS records (a domain administrator)
  admin passwd NAME --password P          set a new password (its console sessions end)
  admin domains NAME --domains D1,D2|all  change what it may manage (its console sessions end)
  admin del NAME
  admin list
  node restart NODE [--force]             restart a member (its id or name), from any node: it stops gracefully and
                                          its supervisor (systemd) starts it again; refused while that could leave
                                          users with no live copy, unless --force
  node forget NODE                        drop a dead member for good: every node forgets it (if it comes back,
                                          it joins again as a new member)
  queue list                              mail waiting for other domains, grid-wide: id, sender, domain,
                                          recipients and their states, size, age, attempts, next try, last error
  queue show ID                           one queued message in full
  queue retry ID|--all                    try it (or every message) now
  queue hold|release ID                   keep it from being tried until released
  queue delete ID                         drop it without a bounce
  import imap --from imaps://HOST[:PORT] --user U --password-file F --to ADDRESS [--ca-file F] [--insecure]
  import imap --from imaps://HOST[:PORT] --csv FILE
                                          copy a mailbox from another IMAP server (folders, flags, dates),
                                          run on the user's primary; again: only what is new; waits and
                                          prints the report (--no-wait: start only). CSV lines: source
                                          user,password file or password,target address
  collect add ADDRESS --protocol pop3|imap --host H --username U --password P [--port N]
          [--tls implicit|starttls|none] [--folder F] [--source-folder F] [--delete] [--interval MIN]
                                          fetch mail from an account elsewhere into ADDRESS, periodically
  collect list ADDRESS                    the accounts, last run, last error, counts
  collect del|run ADDRESS ID              forget one, or fetch it now
${SIEVE_USAGE}  import maildir DIR --to ADDRESS          copy a Dovecot Maildir (Maildir++ or LAYOUT=fs): folders, flags,
                                          keywords, dates, subscriptions, UIDs where free; again: nothing new
  import mbox FILE --to ADDRESS --folder NAME
                                          copy an mbox file (mboxrd/mboxo, Status/X-Status/X-Keywords flags)
  export ADDRESS --maildir DIR|--mbox DIR a Maildir Dovecot serves as it is (UIDs, UIDVALIDITY, flags,
                                          keywords, dates, subscriptions), or one mbox file per folder
  backup --to DIR [--key-file F]          the directory and every user's mail (log + bodies), incremental;
                                          --key-file: every file sealed with AES-256-GCM (F: 32 bytes)
  backup verify DIR [--key-file F]        check every file against the manifest's SHA-256 (with the key:
                                          open each one and check its contents too)
  restore --from DIR [--user ADDRESS [--mailbox NAME]] [--key-file F]
                                          rebuild a fresh grid, one user, or one mailbox as Restored/NAME
  cluster up --nodes N --dir DIR [--replicas R] [--base-port P] [--timeout SECONDS]
                                          start N nodes on loopback as one grid (returns once formed)
  cluster status --dir DIR                each node's view of the grid
  cluster down --dir DIR                  stop the nodes of that grid

Options:
  --data DIR          the node's data dir (default ./data, or MAILGRID_DATA_DIR, or dataDir in the config)
  --config FILE       a TOML config file (or MAILGRID_CONFIG)
  --password P        the password; "-" reads one line from standard input
  --quota SIZE        bytes, or with a unit: 500M, 1G, 1.5G (K, M, G, T are powers of 1024); 0 = unlimited
  --quota-messages N  the most messages the account may hold; 0 = unlimited
  --nodes N           cluster up: how many nodes (1-16)
  --dir DIR           cluster: where the nodes' data dirs, logs and cluster.json live
  --replicas R        cluster up: copies of each user's mail (1-5, default 2)
  --base-port P       cluster up: node K listens on P + 100*K + 25 (SMTP), 87, 65, 10, 95, 43, 93, 80 (admin), 46 (grid),
                      81 and 44 (autoconfig HTTP and HTTPS); default 20000
  --timeout SECONDS   cluster up: how long to wait for the grid to form (default 60)
  --seed FILE         firstboot: a TOML with the answers (hostname, grid = "create"|"join", clusterKey,
                      domain, adminPassword, adminToken), for an unattended first boot
  --all               queue retry: every queued message
  --server LIST       dns check: ask these resolvers (IP or IP:PORT, comma-separated) instead of the system's
  --force             firstboot: run again on a machine already set up; node restart: even when users
                      could be left with no live copy
  --set-hostname      firstboot: also make the answer the machine's host name (/etc/hostname)
  --json              print the answer as JSON
  -h, --help          this text

Remote administration (every command but start, firstboot and cluster):
  --url URL           the admin API of a node elsewhere, https://HOST:PORT (or MAILGRID_URL)
  --token TOKEN       its admin token, DATA/admin.token on that node; "-" reads it from standard input (or
                      MAILGRID_TOKEN; either keeps it out of the process list)
  --fingerprint FP    the SHA-256 fingerprint of its certificate (or MAILGRID_FINGERPRINT), as first boot and
                      \`mailgrid status\` show it: the CLI refuses a node presenting another one. Without it the
                      certificate must be signed by a CA this machine trusts.
  --profile NAME      the URL, token and fingerprint saved under NAME (or MAILGRID_PROFILE)
  profile save NAME --url URL --token TOKEN [--fingerprint FP]
                      check them (the node must answer) and keep them in ~/.config/mailgrid/profiles.json
                      (owner-only; MAILGRID_PROFILES or XDG_CONFIG_HOME move it)
  profile list        the saved profiles, without their tokens
  profile del NAME
`

const SHORT_USAGE = 'Usage: mailgrid start|firstboot|status|domain|user|alias|admin|node|queue|import|collect|dns|cluster|profile [ARGS] [--data DIR]  (mailgrid --help for more)\n'

class UsageError extends Error {}

const OPTIONS = {
  data: { type: 'string' },
  config: { type: 'string' },
  password: { type: 'string' },
  quota: { type: 'string' },
  'quota-messages': { type: 'string' },
  bytes: { type: 'string' },
  users: { type: 'string' },
  domains: { type: 'string' },
  nodes: { type: 'string' },
  dir: { type: 'string' },
  replicas: { type: 'string' },
  'base-port': { type: 'string' },
  timeout: { type: 'string' },
  seed: { type: 'string' },
  force: { type: 'boolean' },
  all: { type: 'boolean' },
  server: { type: 'string' },
  'set-hostname': { type: 'boolean' },
  url: { type: 'string' },
  token: { type: 'string' },
  fingerprint: { type: 'string' },
  profile: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  // import imap and collect (appliance/migrate-cmd.ts)
  from: { type: 'string' },
  user: { type: 'string' },
  'password-file': { type: 'string' },
  to: { type: 'string' },
  csv: { type: 'string' },
  'ca-file': { type: 'string' },
  insecure: { type: 'boolean' },
  'no-wait': { type: 'boolean' },
  protocol: { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  tls: { type: 'string' },
  username: { type: 'string' },
  folder: { type: 'string' },
  'source-folder': { type: 'string' },
  delete: { type: 'boolean' },
  interval: { type: 'string' },
  // import maildir|mbox, export, backup, restore (appliance/files-cmd.ts)
  maildir: { type: 'string' },
  mbox: { type: 'string' },
  mailbox: { type: 'string' },
  'key-file': { type: 'string' },
  // sieve (appliance/sieve-cmd.ts)
  file: { type: 'string' },
  activate: { type: 'boolean' },
  off: { type: 'boolean' },
  subject: { type: 'string' },
  message: { type: 'string' },
  days: { type: 'string' },
  'keep-copy': { type: 'boolean' }
} as const

type Values = { [K in keyof typeof OPTIONS]?: (typeof OPTIONS)[K]['type'] extends 'string' ? string : boolean }

const UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }

/** '500M', '1G', '1.5G', '2048', '1GiB' → bytes; null when not a size. */
export function parseSize (text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim())
  if (m === null) return null
  const n = Math.round(Number(m[1]) * UNITS[m[2].toUpperCase()])
  return Number.isSafeInteger(n) ? n : null
}

export function formatSize (bytes: number): string {
  if (bytes === 0) return 'unlimited'
  for (const unit of ['T', 'G', 'M', 'K']) {
    const v = bytes / UNITS[unit]
    if (v >= 1) return `${Number.isInteger(v) ? v : v.toFixed(1)}${unit}`
  }
  return `${bytes}B`
}

function parseCount (text: string, what: string): number {
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new UsageError(`${what}: must be a whole number`)
  return Number(text)
}

function parseBounded (text: string | undefined, fallback: number, min: number, max: number, what: string): number {
  if (text === undefined) return fallback
  const n = parseCount(text, what)
  if (n < min || n > max) throw new UsageError(`${what}: must be ${min}-${max}`)
  return n
}

/** One line from stdin (for --password -), without its line ending. */
async function readLine (stdin: Readable): Promise<string> {
  let text = ''
  for await (const chunk of stdin) {
    text += typeof chunk === 'string' ? chunk : (chunk as Buffer).toString('utf8')
    if (text.includes('\n') || Buffer.byteLength(text) > PASSWORD_LINE_BYTES_MAX) break
  }
  stdin.pause()
  const line = text.split('\n')[0].replace(/\r$/, '')
  if (Buffer.byteLength(line) > PASSWORD_LINE_BYTES_MAX) throw new CliError('the password on standard input is too long')
  return line
}

function need (positionals: string[], n: number, what: string): void {
  if (positionals.length < n) throw new UsageError(`missing ${what}`)
}

function only (values: Values, allowed: Array<keyof Values>, command: string): void {
  for (const key of Object.keys(values) as Array<keyof Values>) {
    if (!['data', 'config', 'json', 'help', ...REMOTE_FLAGS, ...allowed].includes(key)) throw new UsageError(`--${key} does not apply to ${command}`)
  }
}

function quotaBody (values: Values): { bytes?: number, messages?: number } {
  const q: { bytes?: number, messages?: number } = {}
  if (values.quota !== undefined) {
    const n = parseSize(values.quota)
    if (n === null) throw new UsageError(`--quota: not a size: ${values.quota} (examples: 500M, 1G, 1.5G, 1048576)`)
    q.bytes = n
  }
  if (values['quota-messages'] !== undefined) q.messages = parseCount(values['quota-messages'], '--quota-messages')
  return q
}

interface Context {
  values: Values
  args: string[]
  io: CliIo
  dataDir: () => Promise<string>
  /** The admin API to talk to: the remote node of --url, or the one running on the data dir. */
  api: () => Promise<AdminClient>
  /** The remote node's URL, or null for this machine's. */
  remote: string | null
  /** The remote node as resolved from the flags, the environment or a profile; null for this machine's. */
  target: RemoteTarget | null
}

const REMOTE_FLAGS = ['url', 'token', 'fingerprint', 'profile'] as const

/**
 * --url, --token and --fingerprint, each with its environment variable, or a saved --profile (MAILGRID_PROFILE);
 * null for this machine's node.
 */
async function remoteTarget (values: Values, env: CliIo['env'], stdin: Readable): Promise<RemoteTarget | null> {
  const pick = (flag: string | undefined, name: string): string | undefined => flag ?? (env[name] === '' ? undefined : env[name])
  const profile = pick(values.profile, 'MAILGRID_PROFILE')
  if (profile !== undefined) {
    for (const f of ['url', 'token', 'fingerprint'] as const) if (values[f] !== undefined) throw new UsageError(`--${f} and --profile: give one or the other`)
    const { profilesPath, readProfiles } = await import('./profiles.ts')
    const path = profilesPath(env)
    const p = (await readProfiles(path))[profile]
    if (p === undefined) throw new CliError(`no profile ${profile} in ${path} (mailgrid profile save ${profile} --url ... --token ... --fingerprint ... makes one)`)
    return p
  }
  const url = pick(values.url, 'MAILGRID_URL')
  const token = pick(values.token, 'MAILGRID_TOKEN')
  const fingerprint = pick(values.fingerprint, 'MAILGRID_FINGERPRINT')
  if (url === undefined) {
    for (const f of ['token', 'fingerprint'] as const) if (values[f] !== undefined) throw new UsageError(`--${f} needs --url (or MAILGRID_URL)`)
    return null
  }
  if (token === undefined) throw new UsageError('--url needs --token (or MAILGRID_TOKEN): the admin token of that node')
  if (token === '-' && values.password === '-') throw new UsageError('--token - and --password -: standard input holds one of them')
  // --token - reads it from the first line of standard input: out of the process list and the shell history
  const secret = token === '-' ? (await readLine(stdin)).trim() : token
  return { url, token: secret, ...(fingerprint === undefined ? {} : { fingerprint }) }
}

function print (ctx: Context, json: unknown, lines: string[]): void {
  ctx.io.stdout.write(ctx.values.json === true ? JSON.stringify(json, null, 2) + '\n' : lines.map(l => l + '\n').join(''))
}

function seg (s: string): string {
  return encodeURIComponent(s)
}

async function password (ctx: Context): Promise<string> {
  const p = ctx.values.password
  if (p === undefined) throw new UsageError('--password is required (use --password - to read it from standard input)')
  return p === '-' ? await readLine(ctx.io.stdin) : p
}

async function domain (ctx: Context): Promise<void> {
  const [sub, name] = ctx.args
  only(ctx.values, sub === 'quota' ? ['bytes', 'users'] : [], `domain ${sub ?? ''}`.trim())
  if (sub === 'dkim') return await dkim(ctx)
  if (sub === 'quota') {
    need(ctx.args, 2, 'DOMAIN')
    const body: { bytes?: number, users?: number } = {}
    if (ctx.values.bytes !== undefined) {
      const n = parseSize(ctx.values.bytes)
      if (n === null) throw new UsageError(`--bytes: not a size: ${ctx.values.bytes} (examples: 500M, 10G, 1048576)`)
      body.bytes = n
    }
    if (ctx.values.users !== undefined) body.users = parseCount(ctx.values.users, '--users')
    const api = await ctx.api()
    const path = `/v1/domains/${seg(name)}/quota`
    const out = Object.keys(body).length === 0 ? await api.request('GET', path) : await api.request('PUT', path, body)
    const d = out.domain as { name: string, quotaBytes?: number, quotaUsers?: number }
    return print(ctx, out, [`${d.name}	bytes ${formatSize(d.quotaBytes ?? 0)}	users ${out.users as number} of ${(d.quotaUsers ?? 0) === 0 ? 'unlimited' : String(d.quotaUsers)}`])
  }
  if (sub === 'list') {
    const { domains } = await (await ctx.api()).request('GET', '/v1/domains')
    print(ctx, domains, (domains as Array<{ name: string }>).map(d => d.name))
  } else if (sub === 'add' || sub === 'del') {
    need(ctx.args, 2, 'DOMAIN')
    const api = await ctx.api()
    if (sub === 'add') {
      // the domain's DKIM key is made with it: `domain dkim list` and `dns records` show what to publish
      const { domain } = await api.request('POST', '/v1/domains', { name })
      print(ctx, domain, [`added domain ${domain.name as string}`])
    } else {
      const out = await api.request('DELETE', `/v1/domains/${seg(name)}`)
      print(ctx, out, [`deleted domain ${name}`])
    }
  } else {
    throw new UsageError(sub === undefined ? 'missing domain subcommand' : `unknown domain subcommand: ${sub}`)
  }
}

interface DkimView { selector: string, state: string, created: number, name: string, txt: string }

function dkimLines (keys: DkimView[]): string[] {
  return keys.map(k => `${k.selector}\t${k.state}\t${new Date(k.created).toISOString().slice(0, 10)}\t${k.name}. TXT "${k.txt}"`)
}

async function dkim (ctx: Context): Promise<void> {
  const [, sub, name, selector] = ctx.args
  if (sub === undefined) throw new UsageError('missing domain dkim subcommand (list, rotate, activate, retire)')
  need(ctx.args, 3, 'DOMAIN')
  const base = `/v1/domains/${seg(name)}/dkim`
  switch (sub) {
    case 'list': {
      const { keys } = await (await ctx.api()).request('GET', base)
      return print(ctx, keys, (keys as DkimView[]).length === 0 ? [`${name} has no DKIM key (mailgrid domain dkim rotate ${name} makes one)`] : dkimLines(keys))
    }
    case 'rotate': {
      const { key } = await (await ctx.api()).request('POST', `${base}/rotate`)
      const k = key as DkimView
      return print(ctx, k, [
        `new DKIM key ${k.selector} for ${name} (${k.state})`,
        `publish: ${k.name}. TXT "${k.txt}"`,
        ...(k.state === 'pending' ? [`then, once it resolves: mailgrid domain dkim activate ${name} ${k.selector}`] : [])
      ])
    }
    case 'activate':
    case 'retire': {
      need(ctx.args, 4, 'SELECTOR')
      const api = await ctx.api()
      const { keys } = sub === 'activate' ? await api.request('POST', `${base}/${seg(selector)}/activate`) : await api.request('DELETE', `${base}/${seg(selector)}`)
      return print(ctx, keys, [sub === 'activate' ? `${name} signs with ${selector} now` : `retired ${selector} of ${name}: its record may leave DNS`, ...dkimLines(keys)])
    }
    default:
      throw new UsageError(`unknown domain dkim subcommand: ${sub}`)
  }
}

interface DnsRecordView { name: string, type: string, value: string, purpose: string, required: boolean }

async function dns (ctx: Context): Promise<void> {
  const [sub, name] = ctx.args
  only(ctx.values, sub === 'check' ? ['server'] : [], `dns ${sub ?? ''}`.trim())
  if (sub !== 'records' && sub !== 'check') throw new UsageError(sub === undefined ? 'missing dns subcommand (records, check)' : `unknown dns subcommand: ${sub}`)
  need(ctx.args, 2, 'DOMAIN')
  const api = await ctx.api()
  if (sub === 'records') {
    const out = await api.request('GET', `/v1/dns/${seg(name)}`)
    const lines = (out.records as DnsRecordView[]).map(r => `${r.name}.\t${r.type}\t${r.value}\t; ${r.required ? '' : '(recommended) '}${r.purpose}`)
    return print(ctx, out, [...lines, '', `; MTA-STS policy to serve at https://mta-sts.${name}/.well-known/mta-sts.txt:`, ...(out.mtaStsPolicy as string).trimEnd().split(/\r?\n/).map(l => `;   ${l}`)])
  }
  const query = ctx.values.server === undefined ? '' : `?servers=${encodeURIComponent(ctx.values.server)}`
  const res = await api.request('GET', `/v1/dns/${seg(name)}/check${query}`)
  const checks = res.checks as Array<{ record: DnsRecordView, status: string, found: string[] }>
  print(ctx, res, checks.map(c => {
    const what = `${c.status.padEnd(7)}\t${c.record.type}\t${c.record.name}.`
    if (c.status === 'ok') return what
    return `${what}\twant ${c.record.value}${c.found.length > 0 ? `\tfound ${c.found.join(' | ')}` : ''}${c.record.required ? '' : '\t(recommended)'}`
  }))
  const bad = checks.filter(c => c.record.required && c.status !== 'ok').length
  if (bad > 0) throw new CliError(`${bad} required record${bad === 1 ? ' is' : 's are'} missing or wrong for ${name}`)
}

function userLine (u: { address: string, quotaBytes: number, quotaMessages: number, status: string }): string {
  return `${u.address}\tquota ${formatSize(u.quotaBytes)}\tmessages ${u.quotaMessages === 0 ? 'unlimited' : u.quotaMessages}\t${u.status}`
}

async function user (ctx: Context): Promise<void> {
  const [sub, address] = ctx.args
  switch (sub) {
    case 'add': {
      only(ctx.values, ['password', 'quota', 'quota-messages'], 'user add')
      need(ctx.args, 2, 'ADDRESS')
      const q = quotaBody(ctx.values)
      const pw = await password(ctx)
      const { user } = await (await ctx.api()).request('POST', '/v1/users', { address, password: pw, quotaBytes: q.bytes, quotaMessages: q.messages })
      return print(ctx, user, [`added user ${user.address as string}`])
    }
    case 'passwd': {
      only(ctx.values, ['password'], 'user passwd')
      need(ctx.args, 2, 'ADDRESS')
      const pw = await password(ctx)
      const out = await (await ctx.api()).request('PUT', `/v1/users/${seg(address)}/password`, { password: pw })
      return print(ctx, out, [`changed the password of ${address}`])
    }
    case 'quota': {
      only(ctx.values, ['quota', 'quota-messages'], 'user quota')
      need(ctx.args, 2, 'ADDRESS')
      const q = quotaBody(ctx.values)
      if (q.bytes === undefined && q.messages === undefined) throw new UsageError('user quota needs --quota or --quota-messages')
      const { user } = await (await ctx.api()).request('PUT', `/v1/users/${seg(address)}/quota`, q)
      return print(ctx, user, [userLine(user)])
    }
    case 'del': {
      only(ctx.values, [], 'user del')
      need(ctx.args, 2, 'ADDRESS')
      const out = await (await ctx.api()).request('DELETE', `/v1/users/${seg(address)}`)
      return print(ctx, out, [`deleted user ${address}`])
    }
    case 'where': {
      only(ctx.values, [], 'user where')
      need(ctx.args, 2, 'ADDRESS')
      const api = await ctx.api()
      const { user } = await api.request('GET', `/v1/users/${seg(address)}`)
      const st = await api.request('GET', '/v1/status')
      if (st.grid === null || st.grid === undefined) throw new CliError('this node runs without a grid: it holds every user itself')
      // Loaded here: placement is all this command needs of the grid, and the other commands need none of it.
      const { placementRing } = await import('../node/grid/placement.ts')
      const p = placement(st.grid, user.address as string, placementRing, user.created as number)
      return print(ctx, p, placementLines(p, st.grid.replicas as number))
    }
    case 'list': {
      only(ctx.values, [], 'user list')
      const query = address === undefined ? '' : `?domain=${seg(address)}`
      const { users } = await (await ctx.api()).request('GET', `/v1/users${query}`)
      return print(ctx, users, (users as any[]).map(userLine))
    }
    default:
      throw new UsageError(sub === undefined ? 'missing user subcommand' : `unknown user subcommand: ${sub}`)
  }
}

function adminLine (a: any): string {
  return `${a.name as string}\t${a.domains === null ? 'all domains' : (a.domains as string[]).join(',')}`
}

function domainsFlag (ctx: Context): string[] | null {
  const d = ctx.values.domains
  if (d === undefined || d === 'all') return null
  const list = d.split(',').map(x => x.trim()).filter(x => x !== '')
  if (list.length === 0) throw new UsageError('--domains: a comma-separated list of domains, or all')
  return list
}

async function admin (ctx: Context): Promise<void> {
  const [sub, name] = ctx.args
  switch (sub) {
    case 'add': {
      only(ctx.values, ['password', 'domains'], 'admin add')
      need(ctx.args, 2, 'NAME')
      const pw = await password(ctx)
      const { admin } = await (await ctx.api()).request('POST', '/v1/admins', { name, password: pw, domains: domainsFlag(ctx) })
      return print(ctx, admin, [`added admin ${admin.name as string} (${admin.domains === null ? 'all domains' : (admin.domains as string[]).join(', ')})`])
    }
    case 'passwd': {
      only(ctx.values, ['password'], 'admin passwd')
      need(ctx.args, 2, 'NAME')
      const pw = await password(ctx)
      const out = await (await ctx.api()).request('PUT', `/v1/admins/${seg(name)}/password`, { password: pw })
      return print(ctx, out, [`changed the password of admin ${name}`])
    }
    case 'domains': {
      only(ctx.values, ['domains'], 'admin domains')
      need(ctx.args, 2, 'NAME')
      if (ctx.values.domains === undefined) throw new UsageError('--domains is required (a list, or all)')
      const { admin } = await (await ctx.api()).request('PUT', `/v1/admins/${seg(name)}/domains`, { domains: domainsFlag(ctx) })
      return print(ctx, admin, [adminLine(admin)])
    }
    case 'del': {
      only(ctx.values, [], 'admin del')
      need(ctx.args, 2, 'NAME')
      const out = await (await ctx.api()).request('DELETE', `/v1/admins/${seg(name)}`)
      return print(ctx, out, [`deleted admin ${name}`])
    }
    case 'list': {
      only(ctx.values, [], 'admin list')
      const { admins } = await (await ctx.api()).request('GET', '/v1/admins')
      return print(ctx, admins, (admins as any[]).map(adminLine))
    }
    default:
      throw new UsageError(sub === undefined ? 'missing admin subcommand' : `unknown admin subcommand: ${sub}`)
  }
}

/** `mailgrid node restart|forget NODE`: the Nodes page's actions (appliance/console/server.ts), NODE an id or a name. */
async function nodeCommand (ctx: Context): Promise<void> {
  const [sub, which] = ctx.args
  if (sub !== 'restart' && sub !== 'forget') throw new UsageError(sub === undefined ? 'missing node subcommand' : `unknown node subcommand: ${sub}`)
  only(ctx.values, sub === 'restart' ? ['force'] : [], `node ${sub}`)
  need(ctx.args, 2, 'NODE')
  const api = await ctx.api()
  const st = await api.request('GET', '/v1/status')
  const members = ((st.grid as { members?: Array<{ id: string, name: string }> } | null)?.members ?? [])
  const byName = members.filter(m => m.name === which)
  const m = members.find(x => x.id === which) ?? (byName.length === 1 ? byName[0] : undefined)
  if (m === undefined) throw new CliError(byName.length > 1 ? `${which}: several members have this name; give its id` : `no such member: ${which}`)
  if (sub === 'restart') {
    const out = await api.request('POST', `/console/api/nodes/${encodeURIComponent(m.id)}/restart`, { force: ctx.values.force === true })
    return print(ctx, out, [String(out.note)])
  }
  const out = await api.request('POST', `/console/api/nodes/${encodeURIComponent(m.id)}/forget`, {})
  return print(ctx, out, [`forgot ${m.name} (${m.id}); the other nodes drop it within seconds`])
}

async function alias (ctx: Context): Promise<void> {
  const [sub, from, ...targets] = ctx.args
  only(ctx.values, [], 'alias')
  switch (sub) {
    case 'add': {
      need(ctx.args, 3, 'FROM and at least one TO')
      const { alias } = await (await ctx.api()).request('POST', '/v1/aliases', { address: from, targets })
      return print(ctx, alias, [`added alias ${alias.address as string} -> ${(alias.targets as string[]).join(', ')}`])
    }
    case 'del': {
      need(ctx.args, 2, 'FROM')
      const out = await (await ctx.api()).request('DELETE', `/v1/aliases/${seg(from)}`)
      return print(ctx, out, [`deleted alias ${from}`])
    }
    case 'list': {
      const query = from === undefined ? '' : `?domain=${seg(from)}`
      const { aliases } = await (await ctx.api()).request('GET', `/v1/aliases${query}`)
      return print(ctx, aliases, (aliases as Array<{ address: string, targets: string[] }>).map(a => `${a.address} -> ${a.targets.join(', ')}`))
    }
    default:
      throw new UsageError(sub === undefined ? 'missing alias subcommand' : `unknown alias subcommand: ${sub}`)
  }
}

async function cluster (ctx: Context): Promise<void> {
  const [sub, ...rest] = ctx.args
  if (rest.length > 0) throw new UsageError(`cluster ${sub ?? ''} takes no arguments`)
  const dir = ctx.values.dir
  const json = ctx.values.json === true
  switch (sub) {
    case 'up': {
      only(ctx.values, ['dir', 'nodes', 'replicas', 'base-port', 'timeout'], 'cluster up')
      if (ctx.values.nodes === undefined) throw new UsageError('cluster up needs --nodes N')
      if (dir === undefined) throw new UsageError('cluster up needs --dir DIR')
      const { clusterUp, CLUSTER_BASE_PORT_DEFAULT, CLUSTER_FORM_TIMEOUT_MS, CLUSTER_NODES_MAX, BASE_PORT_MIN } = await import('./cluster.ts')
      return await clusterUp({
        dir,
        nodes: parseBounded(ctx.values.nodes, 0, 1, CLUSTER_NODES_MAX, '--nodes'),
        replicas: parseBounded(ctx.values.replicas, REPLICAS_DEFAULT, 1, REPLICAS_MAX, '--replicas'),
        basePort: parseBounded(ctx.values['base-port'], CLUSTER_BASE_PORT_DEFAULT, BASE_PORT_MIN, 65535, '--base-port'),
        timeoutMs: 1000 * parseBounded(ctx.values.timeout, CLUSTER_FORM_TIMEOUT_MS / 1000, 1, 3600, '--timeout'),
        json
      }, ctx.io)
    }
    case 'down':
    case 'status': {
      only(ctx.values, ['dir'], `cluster ${sub}`)
      if (dir === undefined) throw new UsageError(`cluster ${sub} needs --dir DIR`)
      const { clusterDown, clusterStatus } = await import('./cluster.ts')
      return sub === 'down' ? await clusterDown(dir, json, ctx.io) : await clusterStatus(dir, json, ctx.io)
    }
    default:
      throw new UsageError(sub === undefined ? 'missing cluster subcommand (up, status, down)' : `unknown cluster subcommand: ${sub}`)
  }
}

function duration (ms: number): string {
  const s = Math.floor(ms / 1000)
  const d = Math.floor(s / 86400)
  const h = Math.floor((s % 86400) / 3600)
  const m = Math.floor((s % 3600) / 60)
  return d > 0 ? `${d}d ${h}h ${m}m` : h > 0 ? `${h}h ${m}m` : m > 0 ? `${m}m ${s % 60}s` : `${s}s`
}

/** Text from the queue (a remote's answer, an address) on one line of printable characters. */
function oneLine (s: string): string {
  return s.replace(/\r?\n/g, ' ').replace(/[\x00-\x1f\x7f]/g, '?')
}

/** Rows as columns padded to their widest cell; the last column is not padded. */
export function table (rows: string[][]): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map(r => r[i].length)))
  return rows.map(r => r.map((cell, i) => i === r.length - 1 ? cell : cell.padEnd(widths[i])).join('  ').trimEnd())
}

interface QueueItemView {
  id: string, shard: string, from: string, domain: string, size: number, queuedAt: number, attempts: number,
  nextAttemptAt: number, held: boolean, lastError: string, delayNotified: boolean, releaseAt?: number,
  rcpts: Array<{ address: string, state: string, response?: string }>
}

const bytes = (n: number): string => n < 1024 ? `${n}B` : formatSize(n)
const sender = (from: string): string => from === '' ? '<>' : oneLine(from)

function nextTry (q: QueueItemView, now: number): string {
  if (q.held) return 'held'
  // RFC 4865 FUTURERELEASE: held by its sender until then
  if (q.releaseAt !== undefined && q.releaseAt > now && q.nextAttemptAt >= q.releaseAt) return `release in ${duration(q.releaseAt - now)}`
  return q.nextAttemptAt <= now ? 'now' : `in ${duration(q.nextAttemptAt - now)}`
}

export function queueTable (items: QueueItemView[], now: number): string[] {
  if (items.length === 0) return ['the queue is empty']
  const rows = [['ID', 'FROM', 'DOMAIN', 'RECIPIENTS', 'SIZE', 'AGE', 'ATTEMPTS', 'NEXT', 'HELD', 'LAST ERROR']]
  for (const q of items) {
    rows.push([
      oneLine(q.id), sender(q.from), oneLine(q.domain), q.rcpts.map(r => `${oneLine(r.address)} (${r.state})`).join(', '),
      bytes(q.size), duration(Math.max(0, now - q.queuedAt)), String(q.attempts), nextTry(q, now), q.held ? 'yes' : 'no',
      q.lastError === '' ? '-' : oneLine(q.lastError)
    ])
  }
  return [...table(rows), `${items.length} ${items.length === 1 ? 'message' : 'messages'}`]
}

export function queueDetail (q: QueueItemView, now: number): string[] {
  const rcpts = table(q.rcpts.map(r => [oneLine(r.address), r.state, oneLine(r.response ?? '')]))
  return [
    `id            ${oneLine(q.id)}`,
    `shard         ${oneLine(q.shard)}`,
    `from          ${sender(q.from)}`,
    `domain        ${oneLine(q.domain)}`,
    `size          ${bytes(q.size)} (${q.size} bytes)`,
    `queued        ${new Date(q.queuedAt).toISOString()} (${duration(Math.max(0, now - q.queuedAt))} ago)`,
    `attempts      ${q.attempts}`,
    `next attempt  ${nextTry(q, now)}`,
    `held          ${q.held ? 'yes' : 'no'}`,
    ...(q.releaseAt !== undefined ? [`release       ${new Date(q.releaseAt).toISOString()} (asked by the sender, FUTURERELEASE)`] : []),
    `delay notice  ${q.delayNotified ? 'sent' : 'not sent'}`,
    `last error    ${q.lastError === '' ? '-' : oneLine(q.lastError)}`,
    ...rcpts.map((line, i) => `${i === 0 ? 'recipients   ' : '             '} ${line}`)
  ]
}

async function queue (ctx: Context): Promise<void> {
  const [sub, id, ...extra] = ctx.args
  const now = (ctx.io.now ?? Date.now)()
  only(ctx.values, sub === 'retry' ? ['all'] : [], `queue ${sub ?? ''}`.trim())
  if (extra.length > 0) throw new UsageError(`queue ${sub ?? ''} takes one ID`)
  const one = async (): Promise<string> => {
    need(ctx.args, 2, 'ID')
    return id
  }
  switch (sub) {
    case 'list': {
      if (id !== undefined) throw new UsageError('queue list takes no arguments')
      const { items } = await (await ctx.api()).request('GET', '/v1/queue')
      return print(ctx, items, queueTable(items, now))
    }
    case 'show': {
      const { item } = await (await ctx.api()).request('GET', `/v1/queue/${seg(await one())}`)
      return print(ctx, item, queueDetail(item, now))
    }
    case 'retry': {
      const all = ctx.values.all === true
      if (all === (id !== undefined)) throw new UsageError('queue retry takes an ID or --all (not both)')
      const api = await ctx.api()
      const out = await api.request('POST', all ? '/v1/queue/retry' : `/v1/queue/${seg(id)}/retry`)
      const n = out.retried as number
      return print(ctx, out, [all ? `${n} ${n === 1 ? 'message' : 'messages'} due now` : n === 0 ? `${id} left as it is (a held message waits for queue release)` : `${id} due now`])
    }
    case 'hold':
    case 'release':
    case 'delete': {
      const target = await one()
      const api = await ctx.api()
      const out = sub === 'delete' ? await api.request('DELETE', `/v1/queue/${seg(target)}`) : await api.request('POST', `/v1/queue/${seg(target)}/${sub}`)
      return print(ctx, out, [`${sub === 'hold' ? 'held' : sub === 'release' ? 'released' : 'deleted'} ${target}`])
    }
    default:
      throw new UsageError(sub === undefined ? 'missing queue subcommand (list, show, retry, hold, release, delete)' : `unknown queue subcommand: ${sub}`)
  }
}

function queueStat (q: { size: number, oldestAgeMs: number }): string {
  return q.size === 0 ? 'empty' : `${q.size} ${q.size === 1 ? 'message' : 'messages'}, oldest ${duration(q.oldestAgeMs)}`
}

/** The status line of the outbound queue: this node's shards, then the grid's (one figure off a grid). */
export function queueStatusLine (q: { local: { size: number, oldestAgeMs: number }, grid: { size: number, oldestAgeMs: number } } | undefined, onGrid: boolean): string[] {
  if (q === undefined) return [] // a node from before the queue
  return [onGrid ? `queue        this node: ${queueStat(q.local)}; grid: ${queueStat(q.grid)}` : `queue        ${queueStat(q.local)}`]
}

/** The data disk: free of total, the floor, and whether it is below it (a node from before the check has no line). */
export function diskStatusLine (d: { low: boolean, since: number, freeBytes: number, totalBytes: number, floorBytes: number } | undefined): string[] {
  if (d === undefined) return []
  const floor = d.floorBytes === 0 ? 'no floor' : `floor ${formatBytes(d.floorBytes)}`
  const low = d.low ? `; LOW since ${new Date(d.since).toISOString().replace('T', ' ').slice(0, 19)} UTC: no new users or copies here` : ''
  return [`disk         ${formatBytes(d.freeBytes)} free of ${formatBytes(d.totalBytes)}, ${floor}${low}`]
}

/** `profile save|list|del`: remote nodes kept in the operator's profiles file (appliance/profiles.ts). */
async function profileCommand (ctx: Context): Promise<void> {
  const [sub, name, ...extra] = ctx.args
  if (extra.length > 0) throw new UsageError(`profile ${sub ?? ''} takes one NAME`)
  if (ctx.values.profile !== undefined) throw new UsageError('--profile does not apply to profile')
  const { checkProfileName, deleteProfile, profilesPath, ProfileError, readProfiles, saveProfile } = await import('./profiles.ts')
  const path = profilesPath(ctx.io.env)
  try {
    switch (sub) {
      case 'save': {
        need(ctx.args, 2, 'NAME')
        const why = checkProfileName(name)
        if (why !== null) throw new UsageError(why)
        if (ctx.remote === null) throw new UsageError('profile save needs --url and --token (or MAILGRID_URL and MAILGRID_TOKEN), and --fingerprint for a self-signed certificate')
        // only what works is saved: the node answers this token over the pinned certificate
        const api = await ctx.api()
        const st = await api.request('GET', '/v1/status')
        const target = ctx.target!
        await saveProfile(path, name, target)
        return print(ctx, { name, url: target.url, fingerprint: target.fingerprint ?? null, hostname: st.hostname }, [`saved profile ${name}: ${target.url} (${st.hostname as string}) in ${path}`])
      }
      case 'list': {
        if (name !== undefined) throw new UsageError('profile list takes no arguments')
        // never the tokens
        const all = Object.entries(await readProfiles(path)).map(([n, p]) => ({ name: n, url: p.url, fingerprint: p.fingerprint ?? null }))
        return print(ctx, all, all.length === 0 ? [`no profiles in ${path}`] : table(all.map(p => [p.name, p.url, p.fingerprint ?? '-'])))
      }
      case 'del': {
        need(ctx.args, 2, 'NAME')
        if (!await deleteProfile(path, name)) throw new CliError(`no profile ${name} in ${path}`)
        return print(ctx, { deleted: name }, [`deleted profile ${name}`])
      }
      default:
        throw new UsageError(sub === undefined ? 'missing profile subcommand (save, list, del)' : `unknown profile subcommand: ${sub}`)
    }
  } catch (err) {
    if (err instanceof ProfileError) throw new CliError(err.message)
    throw err
  }
}

/** The admin listener: its URL and the certificate a remote CLI pins (a node from before HTTPS has no line). */
export function adminStatusLine (a: { url: string, tls: { fingerprint: string, validTo: string, selfSigned: boolean } | null } | undefined): string[] {
  if (a === undefined) return []
  if (a.tls === null) return [`admin        ${a.url} (plain HTTP, loopback only)`]
  return [
    `admin        ${a.url}`,
    `certificate  sha256 ${a.tls.fingerprint}`,
    `             ${a.tls.selfSigned ? 'self-signed' : 'from tls.cert'}, valid until ${a.tls.validTo}; remote CLI: --fingerprint ${a.tls.fingerprint}`
  ]
}

async function status (ctx: Context): Promise<void> {
  only(ctx.values, [], 'status')
  if (ctx.args.length > 0) throw new UsageError('status takes no arguments')
  const st = await (await ctx.api()).request('GET', '/v1/status')
  print(ctx, st, [
    `hostname     ${st.hostname as string}`,
    ctx.remote === null ? `data dir     ${resolve(await ctx.dataDir())}` : `node         ${ctx.remote}`,
    ...adminStatusLine(st.admin),
    `uptime       ${duration(st.uptimeMs as number)}`,
    `services     ${(st.services as Array<{ name: string, host: string, port: number }>).map(s => `${s.name} ${s.host}:${s.port}`).join(', ')}`,
    `connections  ${st.connections as number}`,
    `domains      ${st.domains as number}`,
    `users        ${st.users as number}`,
    `memory       rss ${formatSize(st.memory.rssBytes as number)}, heap ${formatSize(st.memory.heapUsedBytes as number)}`,
    ...diskStatusLine(st.disk),
    ...queueStatusLine(st.queue, st.grid !== null && st.grid !== undefined),
    ...gridLines(st.grid ?? null)
  ])
}

/** Runs one command line; resolves to the exit code. `start` resolves when the node has stopped. */
export async function main (argv: string[], io: CliIo): Promise<number> {
  let values: Values
  let positionals: string[]
  try {
    ({ values, positionals } = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: true }))
  } catch (err) {
    // parseArgs explains in further lines; the first says what is wrong, and for a value that begins with a dash
    // (an admin token can) the last says how to give it: --token=VALUE
    const lines = (err as Error).message.split('\n')
    const how = lines.length > 1 && /^To specify an option argument starting with a dash/.test(lines[lines.length - 1]) ? ` ${lines[lines.length - 1]}` : ''
    io.stderr.write(`mailgrid: ${lines[0]}${how}\n${SHORT_USAGE}`)
    return EXIT_USAGE
  }
  if (values.help === true) {
    io.stdout.write(USAGE)
    return EXIT_OK
  }
  const [command, ...args] = positionals
  // The data dir is resolved as `start` resolves it (flag, environment, config file, default), so a command
  // finds the node that `start` with the same flags runs.
  const dataDir = async (): Promise<string> => (await loadConfig({ file: values.config, env: io.env, flags: { dataDir: values.data } })).config.dataDir
  let remote: RemoteTarget | null = null
  const api = async (): Promise<AdminClient> => remote === null ? await connect(await dataDir()) : connectRemote(remote)
  const ctx: Context = { values, args, io, dataDir, api, remote: null, target: null }
  try {
    if (command === 'start' || command === 'firstboot' || command === 'cluster') {
      for (const f of REMOTE_FLAGS) if (values[f] !== undefined) throw new UsageError(`--${f} does not apply to ${command}: it runs on this machine`)
    } else {
      remote = await remoteTarget(values, io.env, io.stdin)
      ctx.remote = remote === null ? null : remote.url
      ctx.target = remote
    }
    switch (command) {
      case 'start':
        only(values, [], 'start')
        if (args.length > 0) throw new UsageError('start takes no arguments')
        return await startNode({ configFile: values.config, dataDir: values.data, env: io.env, stderr: io.stderr })
      case 'firstboot': {
        only(values, ['seed', 'force', 'set-hostname'], 'firstboot')
        if (args.length > 0) throw new UsageError('firstboot takes no arguments')
        if (values.json === true) throw new UsageError('--json does not apply to firstboot')
        const { firstbootCommand } = await import('./firstboot-cmd.ts')
        const { FirstbootError } = await import('./firstboot.ts')
        try {
          await firstbootCommand({ seed: values.seed, config: values.config, data: values.data, force: values.force === true, setHostname: values['set-hostname'] === true }, io)
        } catch (err) {
          if (err instanceof FirstbootError) throw new CliError(err.message.split('\n').join('\nmailgrid: '))
          throw err
        }
        break
      }
      case 'status': await status(ctx); break
      case 'domain': await domain(ctx); break
      case 'user': await user(ctx); break
      case 'alias': await alias(ctx); break
      case 'admin': await admin(ctx); break
      case 'node': await nodeCommand(ctx); break
      case 'queue': await queue(ctx); break
      case 'dns': await dns(ctx); break
      case 'cluster': await cluster(ctx); break
      case 'profile': await profileCommand(ctx); break
      case 'import':
      case 'collect': {
        if (command === 'import' && (args[0] === 'maildir' || args[0] === 'mbox')) {
          const f = await import('./files-cmd.ts')
          try {
            await f.importFilesCommand({ values: values as Record<string, string | boolean | undefined>, args, api, stdout: io.stdout })
          } catch (err) {
            if (err instanceof f.FilesUsageError) throw new UsageError(err.message)
            throw err
          }
          break
        }
        const m = await import('./migrate-cmd.ts')
        const mctx = { values: values as Record<string, string | boolean | undefined>, args: command === 'import' ? args.slice(1) : args, api, stdout: io.stdout, readPassword: async () => await password(ctx), now: io.now }
        try {
          if (command === 'collect') await m.collectCommand(mctx)
          else if (args[0] === 'imap') { if (!await m.importImapCommand(mctx)) return EXIT_FAILED }
          else throw new UsageError(args[0] === undefined ? 'missing import source (imap)' : `unknown import source: ${args[0]}`)
        } catch (err) {
          if (err instanceof m.MigrateUsageError) throw new UsageError(err.message)
          throw err
        }
        break
      }
      case 'sieve': {
        const sv = await import('./sieve-cmd.ts')
        try {
          await sv.sieveCommand({ values: values as Record<string, string | boolean | undefined>, args, api, stdout: io.stdout })
        } catch (err) {
          if (err instanceof sv.SieveUsageError) throw new UsageError(err.message)
          throw err
        }
        break
      }
      case 'export':
      case 'backup':
      case 'restore': {
        const f = await import('./files-cmd.ts')
        const fctx = { values: values as Record<string, string | boolean | undefined>, args, api, stdout: io.stdout }
        try {
          if (command === 'export') await f.exportCommand(fctx)
          else if (!await (command === 'backup' ? f.backupCommand(fctx) : f.restoreCommand(fctx))) return EXIT_FAILED
        } catch (err) {
          if (err instanceof f.FilesUsageError) throw new UsageError(err.message)
          throw err
        }
        break
      }
      case undefined: throw new UsageError('missing command')
      default: throw new UsageError(`unknown command: ${command}`)
    }
    return EXIT_OK
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`mailgrid: ${err.message}\n${SHORT_USAGE}`)
      return EXIT_USAGE
    }
    if (err instanceof CliError) {
      io.stderr.write(`mailgrid: ${err.message}\n`)
      return EXIT_FAILED
    }
    if (err instanceof ConfigError) {
      io.stderr.write(err.problems.map(p => `mailgrid: ${p}\n`).join(''))
      return EXIT_FAILED
    }
    io.stderr.write(`mailgrid: ${err instanceof Error ? err.message : String(err)}\n`)
    return EXIT_FAILED
  }
}

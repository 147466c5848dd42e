// Cross-user isolation, tried from outside (issue 16, item 5): a list of attempts by one user (bob) to reach
// another's (alice's) mail, each one a test case, against a real two-node grid on loopback (the session of a
// user whose primary is the other node is forwarded over libp2p, so every IMAP case runs through both nodes).
//
// - mailbox names that try to leave bob's namespace (`..`, `/`, `%`, `*`, `#shared/`, `~alice`, `Other Users/`,
//   `/alice/INBOX`, modified UTF-7 and UTF-8 spellings of the same, overlong UTF-8, NUL and controls) in SELECT,
//   EXAMINE, STATUS, GETQUOTAROOT, APPEND, COPY, MOVE, DELETE, RENAME and LIST: each must fail with the code
//   the RFCs give (NO [NONEXISTENT] / [TRYCREATE] for a name bob has no mailbox of, NO [CANNOT] for a name no
//   mailbox can have, BAD for a malformed one); CREATE of such a name makes, at most, a mailbox of bob's own;
// - logins as alice with bob's password (IMAP LOGIN, POP3 USER/PASS, SMTP AUTH; imaplib, poplib, smtplib) and
//   SASL PLAIN with alice as the authorization identity and bob's credentials (IMAP, POP3, SMTP): IMAP
//   NO [AUTHENTICATIONFAILED] / [AUTHORIZATIONFAILED], POP3 -ERR [AUTH], SMTP 535 5.7.8;
// - the admin API without a token, with a wrong one, with the other node's token: 401;
// - a forwarded-session stream ('/mailgrid/session/1.0.0') opened by a libp2p host without the cluster key, with
//   another key, and over plain TCP: no connection, no session. With the key the same stream gets alice's
//   session without a password (the control: whoever holds the cluster key is a node of the grid).
//
// Every byte bob is sent is kept, and must never hold alice's mail (her Message-IDs, her subject marker, her
// folder's name); observer sessions of alice and bob check after every group that neither's mailboxes changed.

import { after, before, suite, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { request as httpRequest } from 'node:http'
import { connect as netConnect } from 'node:net'
import { ImapFlow } from 'imapflow'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@libp2p/noise'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { createRing } from '../../gossip/ring.ts'
import { clusterProtector } from '../../gossip/protector.ts'
import { streamToDuplex } from '../../gossip/duplex.ts'
import { createAdminServer } from '../../appliance/admin.ts'
import type { AdminServer } from '../../appliance/admin.ts'
import { ensureToken } from '../../appliance/runtime.ts'
import pino from 'pino'
import { PROTOCOLS } from '../../node/grid/wire.ts'
import { RawClient, python, smtpDone } from '../helpers/client.ts'
import { until } from '../helpers/grid-node.ts'
import { startNode } from '../helpers/node.ts'
import type { TestNode } from '../helpers/node.ts'

const KEY = randomBytes(16).toString('hex')
const ALICE = 'alice@example.com'
const BOB = 'bob@example.com'
const ALICE_PW = 'alice-pw-7Hq'
const BOB_PW = 'bob-pw-2Xz'
const MARK = 'ALICE-SECRET' // in every Message-ID and subject of alice's mail
const ALICE_BOX = 'AliceOnly' // a folder only alice has
const STEP_MS = 10_000

const cleanups: Array<() => Promise<void>> = []
const scope = { after: (fn: () => Promise<void>) => { cleanups.push(fn) } }
let nodes: TestNode[] = [] // [alice's primary, the other node]
let admins: Array<{ server: AdminServer, token: string }> = []
let bobSaw = '' // every byte bob's attacking sessions received

/** A raw IMAP session: writes bytes, waits for the tagged answer, keeps everything bob is sent. */
class Imap {
  private readonly raw: RawClient
  private n = 0
  private readonly keep: boolean
  private constructor (raw: RawClient, keep: boolean) { this.raw = raw; this.keep = keep }
  static async open (port: number, keep = true): Promise<Imap> {
    const s = new Imap(await RawClient.connect(port), keep)
    s.saw(await s.raw.read(buf => buf.endsWith('\r\n'), STEP_MS))
    return s
  }

  private saw (text: string): string {
    if (this.keep) bobSaw += text
    return text
  }

  /** Sends `parts` (a string is sent as it is, a Buffer as a LITERAL+ literal) and returns the whole answer. */
  async cmd (...parts: Array<string | Buffer>): Promise<{ status: string, code: string | null, text: string }> {
    const tag = `x${++this.n}`
    const chunks: Buffer[] = [Buffer.from(`${tag} `)]
    for (const p of parts) chunks.push(typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.concat([Buffer.from(`{${p.length}+}\r\n`), p]))
    chunks.push(Buffer.from('\r\n'))
    this.raw.write(Buffer.concat(chunks))
    const text = this.saw(await this.raw.read(buf => new RegExp(`(^|\\r\\n)${tag} (OK|NO|BAD)[^\\r\\n]*\\r\\n$`).test(buf) || /(^|\r\n)\* BYE [^\r\n]*\r\n$/.test(buf), STEP_MS))
    const m = new RegExp(`(?:^|\\r\\n)${tag} (OK|NO|BAD) (?:\\[([A-Z-]+)[^\\]]*\\] )?`).exec(text)
    return { status: m?.[1] ?? 'NONE', code: m?.[2] ?? null, text }
  }

  close (): void { this.raw.close() }
}

/** A quoted string when the name is plain printable ASCII, else a literal. */
const arg = (name: Buffer): string | Buffer => /^[\x20-\x7e]*$/.test(name.toString('latin1')) && !/["\\]/.test(name.toString('latin1')) ? `"${name.toString('latin1')}"` : name

/** What a user's account holds: every mailbox with its messages' Message-IDs and flags, read with imapflow. */
async function snapshot (port: number, user: string, pass: string): Promise<string> {
  const c = new ImapFlow({ host: '127.0.0.1', port, secure: false, tls: { rejectUnauthorized: false }, auth: { user, pass }, logger: false, connectionTimeout: STEP_MS })
  c.on('error', () => {})
  await c.connect()
  try {
    const out: string[] = []
    for (const box of (await c.list()).sort((x, y) => x.path.localeCompare(y.path))) {
      let lock
      try {
        lock = await c.getMailboxLock(box.path, { readOnly: true })
      } catch (err) {
        out.push(`${box.path} [not opened: ${(err as { responseText?: string }).responseText ?? String(err)}]`)
        continue
      }
      try {
        const ids: string[] = []
        if ((c.mailbox as { exists?: number }).exists !== 0) {
          for await (const m of c.fetch('1:*', { uid: true, flags: true, envelope: true })) ids.push(`${m.uid}:${m.envelope?.messageId ?? '?'}:${[...(m.flags ?? [])].sort().join(',')}`)
        }
        out.push(`${box.path} [${ids.join(' ')}]`)
      } finally {
        lock.release()
      }
    }
    return out.join('\n')
  } finally {
    await c.logout().catch(() => c.close())
  }
}

let aliceBefore = ''
let bobBefore = ''
async function unchanged (): Promise<void> {
  for (const n of nodes) {
    assert.equal(await snapshot(n.port('imap'), ALICE, ALICE_PW), aliceBefore, 'alice\'s mail is as it was')
    const bobView = await snapshot(n.port('imap'), BOB, BOB_PW)
    assert.equal(bobView, bobBefore, 'bob\'s mail is as it was')
    assert.ok(!bobView.includes(MARK) && !bobView.includes(ALICE_BOX), 'nothing of alice\'s in bob\'s view')
  }
  // (bob's own folder of her folder's name, made in the CREATE case, is bob's to see)
  assert.ok(!bobSaw.includes(MARK), `bob was sent alice's mail: ${bobSaw.slice(Math.max(0, bobSaw.indexOf(MARK) - 200), bobSaw.indexOf(MARK) + 200)}`)
}

async function smtpSend (port: number, to: string, id: string, subject: string): Promise<void> {
  const c = await RawClient.connect(port)
  try {
    await c.read(smtpDone)
    for (const line of ['EHLO test.example', 'MAIL FROM:<sender@example.org>', `RCPT TO:<${to}>`, 'DATA']) assert.match(await c.cmd(line), /^(250|354)/m)
    assert.match(await c.cmd(`From: sender@example.org\r\nTo: ${to}\r\nSubject: ${subject}\r\nMessage-ID: <${id}>\r\n\r\n${subject} body\r\n.`), /^250 /m)
    await c.cmd('QUIT')
  } finally {
    c.close()
  }
}

suite('cross-user isolation', () => {
  before(async () => {
    const grid = (bootstrap: string[]): Partial<Parameters<typeof startNode>[1]> => ({
      plaintextAuthOnLoopback: true,
      grid: { clusterKey: KEY, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap, mdns: false, replicas: 2, weight: 1, advertiseHost: '127.0.0.1' }
    })
    const first = await startNode(scope, grid([]))
    const g = (await first.node.status()).grid
    assert.ok(g !== null)
    const addr = g.members.find(m => m.id === g.self)?.addrs[0] as string
    const second = await startNode(scope, grid([addr.includes('/p2p/') ? addr : `${addr}/p2p/${g.self}`]))
    await until('two members alive on both nodes', async () =>
      (await Promise.all([first, second].map(async n => (await n.node.status()).grid?.members.filter(m => m.status === 'alive').length))).every(c => c === 2), 20_000)
    await first.node.store.addDomain('example.com')
    await first.node.store.addUser({ address: ALICE, password: ALICE_PW })
    await first.node.store.addUser({ address: BOB, password: BOB_PW })
    await until('the directory on both nodes', async () => (await second.node.store.listUsers()).length === 2, 20_000)
    const st = (await first.node.status()).grid
    assert.ok(st !== null)
    const ring = createRing(st.members.filter(m => m.status === 'alive').map(m => ({ id: m.id, weight: m.weight })))
    nodes = ring.primary(ALICE) === st.self ? [first, second] : [second, first]

    // each node's admin API, with its own token from its data dir (as appliance/start.ts wires it)
    for (const n of nodes) {
      const token = await ensureToken(n.dir)
      const server = createAdminServer({ directory: n.node.store, status: async () => await n.node.status(), queue: n.node.queue, logger: pino({ level: 'silent' }) }, { host: '127.0.0.1', port: 0, token })
      await server.start()
      cleanups.push(async () => { await server.stop() })
      admins.push({ server, token })
    }

    // alice: two messages in INBOX, one in a folder of hers; bob: one message
    await smtpSend(nodes[1].port('smtp'), ALICE, `1.${MARK}@example.org`, `${MARK} one`)
    await smtpSend(nodes[0].port('smtp'), ALICE, `2.${MARK}@example.org`, `${MARK} two`)
    await smtpSend(nodes[1].port('smtp'), BOB, 'bob-1@example.org', 'for bob')
    const c = new ImapFlow({ host: '127.0.0.1', port: nodes[0].port('imap'), secure: false, tls: { rejectUnauthorized: false }, auth: { user: ALICE, pass: ALICE_PW }, logger: false })
    c.on('error', () => {})
    await c.connect()
    await c.mailboxCreate(ALICE_BOX)
    await c.append(ALICE_BOX, `Subject: ${MARK} three\r\nMessage-ID: <3.${MARK}@example.org>\r\n\r\nkept apart\r\n`, ['\\Flagged'])
    await c.logout()
    aliceBefore = await snapshot(nodes[0].port('imap'), ALICE, ALICE_PW)
    bobBefore = await snapshot(nodes[0].port('imap'), BOB, BOB_PW)
    assert.match(aliceBefore, new RegExp(`${ALICE_BOX} \\[1:<3\\.${MARK}`))
    assert.match(bobBefore, /INBOX \[1:<bob-1@example.org>/)
  })
  after(async () => { for (const fn of cleanups.reverse()) await fn() })

  // ---- IMAP: mailbox names ------------------------------------------------------------------------------
  // kind: 'absent' a name bob has no mailbox of; 'never' a name no mailbox can have; 'bad' malformed on the wire
  type Kind = 'absent' | 'never' | 'bad'
  const names: Array<{ label: string, name: Buffer, kind: Kind, utf8?: boolean }> = [
    ...(['..', '../alice@example.com', '../alice@example.com/INBOX', 'INBOX/../../alice@example.com/INBOX', 'alice@example.com',
      'alice@example.com/INBOX', `alice@example.com/${ALICE_BOX}`, ALICE_BOX, '~alice', '~alice@example.com/INBOX', '#shared/alice@example.com',
      '#shared/alice@example.com/INBOX', '#user/alice/INBOX', `#public/${ALICE_BOX}`, 'Other Users/alice', `Other Users/alice@example.com/${ALICE_BOX}`,
      '\\alice@example.com\\INBOX'] as const).map(n => ({ label: n, name: Buffer.from(n), kind: 'absent' as Kind })),
    ...(['/alice@example.com/INBOX', '/bob/INBOX', '//alice', 'INBOX//alice', '%', '*', 'INBOX/%', '~alice/*', 'Other Users/%'] as const)
      .map(n => ({ label: n, name: Buffer.from(n), kind: 'never' as Kind })),
    // modified UTF-7 (RFC 3501 5.1.3): base64 may not spell printable ASCII, so these are malformed, not '/' or '.'
    { label: 'mUTF-7 &AC8- for / (/alice/INBOX)', name: Buffer.from('&AC8-alice@example.com&AC8-INBOX'), kind: 'bad' },
    { label: 'mUTF-7 ..&AC8-alice (../alice)', name: Buffer.from('..&AC8-alice@example.com'), kind: 'bad' },
    { label: 'mUTF-7 &AC4ALgAv- for ../', name: Buffer.from('&AC4ALgAv-alice@example.com'), kind: 'bad' },
    { label: 'mUTF-7 &AH4- for ~', name: Buffer.from('&AH4-alice'), kind: 'bad' },
    { label: 'mUTF-7 &ACM- for #', name: Buffer.from('&ACM-shared/alice@example.com'), kind: 'bad' },
    { label: 'mUTF-7 &AEkATgBCAE8AWA- for INBOX', name: Buffer.from('&AEkATgBCAE8AWA-'), kind: 'bad' },
    { label: 'mUTF-7 &AAA- (NUL)', name: Buffer.from('INBOX&AAA-'), kind: 'bad' },
    { label: 'mUTF-7 &2AA- (lone surrogate)', name: Buffer.from('&2AA-alice'), kind: 'bad' },
    { label: 'mUTF-7 unterminated &AC8', name: Buffer.from('alice&AC8'), kind: 'bad' },
    { label: 'mUTF-7 valid non-ASCII &Jjo- (absent)', name: Buffer.from('&Jjo-alice'), kind: 'absent' },
    { label: '8-bit byte without UTF8=ACCEPT', name: Buffer.from('alice\xe9', 'latin1'), kind: 'bad' },
    // controls and NUL: not in names (RFC 3501 5.1), not in literals (RFC 3501 4.3: CHAR8 excludes NUL)
    { label: 'NUL', name: Buffer.from('INBOX\x00alice'), kind: 'bad' },
    { label: 'control 0x01', name: Buffer.from('alice\x01INBOX'), kind: 'bad' },
    { label: 'DEL', name: Buffer.from('alice\x7f'), kind: 'bad' },
    // UTF-8 after ENABLE UTF8=ACCEPT (RFC 6855): overlong forms are invalid UTF-8 (RFC 3629 3), never '/' or '.'
    { label: 'UTF-8 overlong / (C0 AF)', name: Buffer.from([...Buffer.from('..'), 0xc0, 0xaf, ...Buffer.from('alice@example.com')]), kind: 'bad', utf8: true },
    { label: 'UTF-8 overlong / (E0 80 AF)', name: Buffer.from([0xe0, 0x80, 0xaf, ...Buffer.from('alice@example.com/INBOX')]), kind: 'bad', utf8: true },
    { label: 'UTF-8 overlong . (C0 AE C0 AE /)', name: Buffer.from([0xc0, 0xae, 0xc0, 0xae, 0x2f, ...Buffer.from('alice@example.com')]), kind: 'bad', utf8: true },
    { label: 'UTF-8 invalid byte FF', name: Buffer.from([...Buffer.from('alice'), 0xff]), kind: 'bad', utf8: true },
    { label: 'UTF-8 fullwidth solidus (absent)', name: Buffer.from('alice@example.com\uff0fINBOX'), kind: 'absent', utf8: true },
    { label: 'UTF-8 two-dot leader (absent)', name: Buffer.from('\u2025/alice@example.com'), kind: 'absent', utf8: true },
    { label: 'UTF-8 ~alice (absent)', name: Buffer.from('~alice'), kind: 'absent', utf8: true },
  ]
  // the code each command must answer per kind; null: BAD
  const expect: Record<string, Record<Kind, string | null>> = {
    SELECT: { absent: 'NONEXISTENT', never: 'NONEXISTENT', bad: null },
    EXAMINE: { absent: 'NONEXISTENT', never: 'NONEXISTENT', bad: null },
    STATUS: { absent: 'NONEXISTENT', never: 'NONEXISTENT', bad: null },
    GETQUOTAROOT: { absent: 'NONEXISTENT', never: 'NONEXISTENT', bad: null },
    DELETE: { absent: 'NONEXISTENT', never: 'NONEXISTENT', bad: null },
    RENAME: { absent: 'NONEXISTENT', never: 'NONEXISTENT', bad: null },
    APPEND: { absent: 'TRYCREATE', never: 'CANNOT', bad: null },
    COPY: { absent: 'TRYCREATE', never: 'CANNOT', bad: null },
    MOVE: { absent: 'TRYCREATE', never: 'CANNOT', bad: null },
  }
  const commands: Array<{ cmd: string, parts: (n: string | Buffer) => Array<string | Buffer>, selected?: boolean }> = [
    { cmd: 'SELECT', parts: n => ['SELECT ', n] },
    { cmd: 'EXAMINE', parts: n => ['EXAMINE ', n] },
    { cmd: 'STATUS', parts: n => ['STATUS ', n, ' (MESSAGES UIDNEXT)'] },
    { cmd: 'GETQUOTAROOT', parts: n => ['GETQUOTAROOT ', n] },
    { cmd: 'APPEND', parts: n => ['APPEND ', n, ' ', Buffer.from('Subject: from bob\r\nMessage-ID: <bob-append@example.org>\r\n\r\nx\r\n')] },
    { cmd: 'COPY', parts: n => ['UID COPY 1 ', n], selected: true },
    { cmd: 'MOVE', parts: n => ['UID MOVE 1 ', n], selected: true },
    { cmd: 'DELETE', parts: n => ['DELETE ', n] },
    { cmd: 'RENAME', parts: n => ['RENAME ', n, ' "bob-renamed"'] },
  ]

  for (const [via, label] of [[0, 'alice\'s primary'], [1, 'the other node (forwarded)']] as const) {
    for (const c of commands) {
      test(`IMAP ${c.cmd} by bob through ${label}: every name of another user's mail fails with the right code`, async () => {
        const failures: string[] = []
        for (const utf8 of [false, true]) {
          const s = await Imap.open(nodes[via].port('imap'))
          try {
            assert.equal((await s.cmd(`LOGIN ${BOB} ${BOB_PW}`)).status, 'OK')
            if (utf8) assert.equal((await s.cmd('ENABLE UTF8=ACCEPT')).status, 'OK')
            if (c.selected === true) assert.equal((await s.cmd('SELECT INBOX')).status, 'OK')
            for (const n of names.filter(x => (x.utf8 === true) === utf8)) {
              const r = await s.cmd(...c.parts(arg(n.name)))
              const want = expect[c.cmd][n.kind]
              const got = r.status === 'NO' ? r.code : r.status === 'BAD' ? null : `${r.status}`
              if (r.status === 'OK' || got !== want) failures.push(`${c.cmd} ${JSON.stringify(n.label)}: wanted ${want === null ? 'BAD' : `NO [${want}]`}, got ${r.text.trim().split('\r\n').pop() ?? ''}`)
            }
          } finally {
            s.close()
          }
        }
        assert.deepEqual(failures, [])
      })
    }
  }

  test('IMAP LIST and LSUB by bob with every pattern and reference list nothing of alice\'s', async () => {
    const s = await Imap.open(nodes[1].port('imap'))
    try {
      assert.equal((await s.cmd(`LOGIN ${BOB} ${BOB_PW}`)).status, 'OK')
      const ns = await s.cmd('NAMESPACE')
      assert.match(ns.text, /^\* NAMESPACE \(\(""\s+"\/"\)\) NIL NIL\r\n/m, 'no other users\' or shared namespace')
      const listed = new Set<string>()
      for (const ref of ['""', '"~alice/"', '"#shared/"', '"Other Users/"', '"../"', '"alice@example.com/"', '"/"']) {
        for (const pattern of ['"*"', '"%"', '"%/%"', '"*alice*"', `"*${ALICE_BOX}*"`, '"~*"', '"#*"', '"../*"', '"/*"']) {
          for (const verb of ['LIST', 'LSUB', 'LIST (SUBSCRIBED)']) {
            const r = await s.cmd(`${verb} ${ref} ${pattern}`)
            assert.equal(r.status, 'OK', `${verb} ${ref} ${pattern}: ${r.text}`)
            for (const m of r.text.matchAll(/^\* (?:LIST|LSUB) \([^)]*\) (?:"\/"|NIL) (.*)\r$/gm)) listed.add(m[1])
          }
        }
      }
      const r = await s.cmd('LIST "" "*" RETURN (STATUS (MESSAGES UIDNEXT))')
      assert.equal(r.status, 'OK')
      for (const m of r.text.matchAll(/^\* LIST \([^)]*\) "\/" (.*)\r$/gm)) listed.add(m[1])
      const own = new Set(bobBefore.split('\n').map(l => l.replace(/ \[.*$/, '')))
      assert.deepEqual([...listed].map(x => x.replace(/^"|"$/g, '')).filter(x => !own.has(x)), [], 'bob lists only his own mailboxes')
      assert.ok(![...listed].some(x => x.includes('alice') || x.includes(ALICE_BOX)), `bob listed ${[...listed].join(', ')}`)
    } finally {
      s.close()
    }
    await unchanged()
  })

  test('IMAP CREATE by bob of names that look like another user\'s makes, at most, a mailbox of bob\'s own', async () => {
    const s = await Imap.open(nodes[1].port('imap'))
    const made: string[] = []
    try {
      assert.equal((await s.cmd(`LOGIN ${BOB} ${BOB_PW}`)).status, 'OK')
      for (const n of names.filter(x => x.utf8 !== true)) {
        const r = await s.cmd('CREATE ', arg(n.name))
        if (n.kind !== 'absent') assert.notEqual(r.status, 'OK', `CREATE ${JSON.stringify(n.label)} must fail: ${r.text}`)
        if (r.status === 'OK') made.push(n.name.toString('latin1'))
      }
      // what bob made is bob's: alice's view has none of it, and bob's own folder of alice's folder's name is empty
      const alice = await snapshot(nodes[0].port('imap'), ALICE, ALICE_PW)
      assert.equal(alice, aliceBefore)
      const bob = await snapshot(nodes[0].port('imap'), BOB, BOB_PW)
      assert.ok(!bob.includes(MARK), 'bob\'s new folders hold nothing of alice\'s')
      assert.match(bob, new RegExp(`^${ALICE_BOX} \\[\\]$`, 'm'))
    } finally {
      // remove them again, with the parents CREATE made on the way, deepest first
      const own = new Set(bobBefore.split('\n').map(l => l.replace(/ \[.*$/, '')))
      const listed = (await s.cmd('LIST "" "*"')).text
      const left = [...listed.matchAll(/^\* LIST \([^)]*\) "\/" (.*)\r$/gm)].map(m => m[1])
        .filter(w => !own.has(w.replace(/^"(.*)"$/, '$1').replace(/\\(.)/g, '$1')))
        .sort((x, y) => y.split('/').length - x.split('/').length)
      for (const w of left) await s.cmd(`DELETE ${w}`)
      void made
      s.close()
    }
    await unchanged()
  })

  test('IMAP GETQUOTA and SETQUOTA on another user\'s quota root fail', async () => {
    const s = await Imap.open(nodes[1].port('imap'))
    try {
      assert.equal((await s.cmd(`LOGIN ${BOB} ${BOB_PW}`)).status, 'OK')
      for (const root of [ALICE, 'alice', 'user.alice', '#user/alice', '~alice', 'Other Users/alice', 'INBOX']) {
        const r = await s.cmd(`GETQUOTA "${root}"`)
        assert.equal(`${r.status} ${r.code ?? ''}`, 'NO NONEXISTENT', `GETQUOTA ${root}: ${r.text}`)
      }
      for (const root of ['', ALICE]) {
        const r = await s.cmd(`SETQUOTA "${root}" (STORAGE 1)`)
        assert.equal(`${r.status} ${r.code ?? ''}`, 'NO NOPERM', `SETQUOTA ${root}: ${r.text}`)
      }
      assert.equal((await s.cmd('GETQUOTA ""')).status, 'OK', 'the control: bob\'s own root')
    } finally {
      s.close()
    }
  })

  test('IMAP mailbox-name attempts leave both users\' mail as it was', async () => { await unchanged() })

  // ---- logins as another user ------------------------------------------------------------------------------
  const plain = (authzid: string, authcid: string, pw: string): string => Buffer.from(`${authzid}\0${authcid}\0${pw}`).toString('base64')

  test('IMAP LOGIN and AUTHENTICATE PLAIN as alice with bob\'s credentials fail (raw, both nodes)', async () => {
    for (const n of nodes) {
      const cases: Array<[Array<string | Buffer>, string]> = [
        [[`LOGIN ${ALICE} ${BOB_PW}`], 'AUTHENTICATIONFAILED'],
        [[`LOGIN "ALICE@EXAMPLE.COM" "${BOB_PW}"`], 'AUTHENTICATIONFAILED'],
        [[`LOGIN "alice" "${BOB_PW}"`], 'AUTHENTICATIONFAILED'],
        [[`AUTHENTICATE PLAIN ${plain(ALICE, BOB, BOB_PW)}`], 'AUTHORIZATIONFAILED'],
        [[`AUTHENTICATE PLAIN ${plain('ALICE@example.com', BOB, BOB_PW)}`], 'AUTHORIZATIONFAILED'],
        [[`AUTHENTICATE PLAIN ${plain(ALICE, BOB, ALICE_PW)}`], 'AUTHORIZATIONFAILED'],
        [[`AUTHENTICATE PLAIN ${plain(ALICE, ALICE, BOB_PW)}`], 'AUTHENTICATIONFAILED'],
        [[`AUTHENTICATE PLAIN ${plain('', ALICE, BOB_PW)}`], 'AUTHENTICATIONFAILED'],
      ]
      for (const [parts, code] of cases) {
        const s = await Imap.open(n.port('imap'))
        try {
          const r = await s.cmd(...parts)
          assert.equal(`${r.status} ${r.code ?? ''}`, `NO ${code}`, `${String(parts[0]).slice(0, 40)}: ${r.text}`)
          const after = await s.cmd('SELECT INBOX')
          assert.equal(after.status, 'BAD', 'still not authenticated')
        } finally {
          s.close()
        }
      }
      // a bad SASL message (an extra NUL part) is malformed, not a login
      const s = await Imap.open(n.port('imap'))
      assert.equal((await s.cmd(`AUTHENTICATE PLAIN ${Buffer.from(`${BOB}\0${BOB}\0${BOB_PW}\0${ALICE}`).toString('base64')}`)).status, 'BAD')
      s.close()
    }
    // the control: bob's own credentials do log in, with and without an authzid naming himself
    const s = await Imap.open(nodes[0].port('imap'))
    assert.equal((await s.cmd(`AUTHENTICATE PLAIN ${plain(BOB, BOB, BOB_PW)}`)).status, 'OK')
    s.close()
  })

  test('imaplib: LOGIN and AUTHENTICATE PLAIN as alice with bob\'s credentials fail', async () => {
    const r = await python(`
import imaplib, sys
port = int(sys.argv[1])
out = []
def tryit(name, fn):
    i = imaplib.IMAP4('127.0.0.1', port)
    try:
        fn(i); out.append(name + ' ACCEPTED')
    except imaplib.IMAP4.error as e:
        out.append(name + ' ' + str(e))
    finally:
        try: i.shutdown()
        except Exception: pass
tryit('login', lambda i: i.login('${ALICE}', '${BOB_PW}'))
tryit('plain-authzid', lambda i: i.authenticate('PLAIN', lambda _: b'${ALICE}\\0${BOB}\\0${BOB_PW}'))
print('\\n'.join(out))
`, [String(nodes[1].port('imap'))])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^login .*\[AUTHENTICATIONFAILED\]/m)
    assert.match(r.stdout, /^plain-authzid .*\[AUTHORIZATIONFAILED\]/m)
    assert.doesNotMatch(r.stdout, /ACCEPTED/)
  })

  test('POP3 USER/PASS and AUTH PLAIN as alice with bob\'s credentials fail with -ERR [AUTH] (raw and poplib)', async () => {
    const line = (buf: string): boolean => buf.endsWith('\r\n')
    for (const n of nodes) {
      const tries: Array<string[]> = [
        [`USER ${ALICE}`, `PASS ${BOB_PW}`],
        ['USER ALICE@Example.Com', `PASS ${BOB_PW}`],
        [`USER ${BOB}`, `PASS ${BOB_PW}`, 'USER ' + ALICE], // USER after a login is out of state
        [`AUTH PLAIN ${plain(ALICE, BOB, BOB_PW)}`],
        [`AUTH PLAIN ${plain(ALICE, ALICE, BOB_PW)}`],
      ]
      for (const seq of tries) {
        const c = await RawClient.connect(n.port('pop3'))
        try {
          await c.read(line)
          const answers: string[] = []
          for (const l of seq) answers.push(await c.cmd(l, line))
          const last = answers[answers.length - 1]
          bobSaw += answers.join('')
          if (seq[1] === `PASS ${BOB_PW}` && seq[0] === `USER ${BOB}`) {
            assert.match(answers[1], /^\+OK/, 'the control: bob logs in as bob')
            assert.match(last, /^-ERR/, 'USER in the transaction state')
            const list = await c.cmd('UIDL', buf => buf.endsWith('\r\n.\r\n') || buf.startsWith('-ERR'))
            bobSaw += list
            assert.equal(list.split('\r\n').filter(x => /^\d+ /.test(x)).length, 1, 'bob sees his one message')
          } else {
            assert.match(last, /^-ERR \[AUTH\]/, `${seq.join(' / ')}: ${last}`)
            assert.match(await c.cmd('STAT', line), /^-ERR/, 'not logged in')
          }
        } finally {
          c.close()
        }
      }
    }
    const r = await python(`
import poplib, sys
p = poplib.POP3('127.0.0.1', int(sys.argv[1]))
p.user('${ALICE}')
try:
    p.pass_('${BOB_PW}'); print('ACCEPTED')
except poplib.error_proto as e:
    print(e)
`, [String(nodes[1].port('pop3'))])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /-ERR \[AUTH\]/)
  })

  test('SMTP AUTH as alice with bob\'s credentials fails with 535 5.7.8; bob cannot send as alice (raw and smtplib)', async () => {
    for (const n of nodes) {
      for (const [cmd, want] of [
        [`AUTH PLAIN ${plain(ALICE, BOB, BOB_PW)}`, /^535 5\.7\.8 /],
        [`AUTH PLAIN ${plain('', ALICE, BOB_PW)}`, /^535 5\.7\.8 /],
        [`AUTH PLAIN ${plain(ALICE, ALICE, BOB_PW)}`, /^535 5\.7\.8 /],
      ] as const) {
        const c = await RawClient.connect(n.port('submission'))
        try {
          await c.read(smtpDone)
          await c.cmd('EHLO attacker.example')
          const r = await c.cmd(cmd)
          assert.match(r, want, `${cmd}: ${r}`)
          assert.match(await c.cmd('MAIL FROM:<bob@example.com>'), /^530 5\.7\.0 /, 'still not authenticated')
        } finally {
          c.close()
        }
      }
      // AUTH LOGIN as alice with bob's password
      const c = await RawClient.connect(n.port('submission'))
      await c.read(smtpDone)
      await c.cmd('EHLO attacker.example')
      assert.match(await c.cmd('AUTH LOGIN'), /^334 /)
      assert.match(await c.cmd(Buffer.from(ALICE).toString('base64')), /^334 /)
      assert.match(await c.cmd(Buffer.from(BOB_PW).toString('base64')), /^535 5\.7\.8 /)
      // logged in as bob, mail from alice's address is refused
      assert.match(await c.cmd(`AUTH PLAIN ${plain('', BOB, BOB_PW)}`), /^235 /)
      assert.match(await c.cmd(`MAIL FROM:<${ALICE}>`), /^553 5\.7\.1 /)
      c.close()
    }
    const r = await python(`
import smtplib, sys, base64
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1])); s.ehlo()
try:
    s.login('${ALICE}', '${BOB_PW}'); print('ACCEPTED')
except smtplib.SMTPAuthenticationError as e:
    print(e.smtp_code, e.smtp_error.decode())
code, msg = s.docmd('AUTH', 'PLAIN ' + base64.b64encode(b'${ALICE}\\0${BOB}\\0${BOB_PW}').decode())
print(code, msg.decode())
s.close()
`, [String(nodes[1].port('submission'))])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^535 5\.7\.8 /m)
    assert.doesNotMatch(r.stdout, /ACCEPTED|^235/m)
    assert.equal(r.stdout.trim().split('\n').filter(l => l.startsWith('535 5.7.8')).length, 2, r.stdout)
  })

  // ---- the admin API ----------------------------------------------------------------------------------------
  async function http (url: string, method: string, headers: Record<string, string>, body?: string): Promise<{ status: number, text: string }> {
    return await new Promise((resolve, reject) => {
      const req = httpRequest(url, { method, headers: { ...headers, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, timeout: STEP_MS }, res => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', d => { text += d })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
      })
      req.on('error', reject)
      req.end(body)
    })
  }

  test('admin API: no token, a wrong token, the other node\'s token, the cluster key: 401 on every endpoint', async () => {
    const [a, b] = admins
    assert.notEqual(a.token, b.token, 'each node has its own token')
    const calls: Array<[string, string, string?]> = [
      ['GET', '/v1/status'], ['GET', '/v1/users'], ['GET', `/v1/users/${ALICE}`], ['PUT', `/v1/users/${ALICE}/password`, '{"password":"taken-over"}'],
      ['DELETE', `/v1/users/${ALICE}`], ['POST', '/v1/aliases', `{"address":"grab@example.com","targets":["${BOB}"]}`], ['GET', '/v1/queue'], ['GET', '/v1/nothing']
    ]
    const auths: Array<[string, Record<string, string>]> = [
      ['no header', {}],
      ['empty bearer', { authorization: 'Bearer ' }],
      ['wrong token', { authorization: `Bearer ${randomBytes(32).toString('base64url')}` }],
      ['the other node\'s token', { authorization: `Bearer ${b.token}` }],
      ['the token with a suffix', { authorization: `Bearer ${a.token}x` }],
      ['the token, truncated', { authorization: `Bearer ${a.token.slice(0, -1)}` }],
      ['the cluster key', { authorization: `Bearer ${KEY}` }],
      ['Basic scheme', { authorization: `Basic ${Buffer.from(`admin:${a.token}`).toString('base64')}` }],
      ['token as a query', {}],
    ]
    for (const [label, headers] of auths) {
      for (const [method, path, body] of calls) {
        const url = `${a.server.url}${path}${label === 'token as a query' ? `?token=${a.token}&access_token=${a.token}` : ''}`
        const r = await http(url, method, headers, body)
        assert.equal(r.status, 401, `${label}: ${method} ${path} → ${r.status} ${r.text}`)
        assert.doesNotMatch(r.text, /alice|users|hostname/, 'nothing but the refusal')
      }
    }
    // the controls: each node's own token works on it
    assert.equal((await http(`${a.server.url}/v1/users/${ALICE}`, 'GET', { authorization: `Bearer ${a.token}` })).status, 200)
    assert.equal((await http(`${b.server.url}/v1/status`, 'GET', { authorization: `Bearer ${b.token}` })).status, 200)
    await unchanged()
  })

  // ---- the forwarded-session stream ---------------------------------------------------------------------------
  async function host (clusterKey: string | null): Promise<Libp2p> {
    const h = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      ...(clusterKey !== null ? { connectionProtector: clusterProtector({ clusterKey, timeoutMs: STEP_MS }) } : {}),
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()]
    })
    cleanups.push(async () => { await h.stop() })
    return h
  }
  const gridAddr = async (n: TestNode): Promise<string> => {
    const g = (await n.node.status()).grid
    assert.ok(g !== null)
    const a = g.members.find(m => m.id === g.self)?.addrs[0] as string
    return a.includes('/p2p/') ? a : `${a}/p2p/${g.self}`
  }

  test('forwarded-session stream: a libp2p host without the cluster key, or with another, cannot open it', async () => {
    for (const n of nodes) {
      const to = multiaddr(await gridAddr(n))
      for (const [label, key] of [['no private network', null], ['another cluster key', randomBytes(16).toString('hex')], ['a key one byte off', KEY.slice(0, -1) + (KEY.endsWith('0') ? '1' : '0')]] as const) {
        const h = await host(key)
        await assert.rejects(h.dialProtocol(to, PROTOCOLS.session, { signal: AbortSignal.timeout(STEP_MS) }), `${label}: the stream opened`)
        assert.equal(h.getConnections().length, 0, `${label}: no connection stays open`)
        await h.stop()
      }
      // plain TCP speaking multistream-select and the session header: closed, never a session
      const sock = netConnect({ host: '127.0.0.1', port: Number(/\/tcp\/(\d+)/.exec(to.toString())?.[1]) })
      let got = ''
      sock.on('data', d => { got += d.toString('latin1') })
      sock.on('error', () => {})
      await new Promise<void>(resolve => sock.once('connect', () => resolve()))
      sock.write(`\x13/multistream/1.0.0\n\x18${PROTOCOLS.session}\n${JSON.stringify({ v: 1, protocol: 'imap', user: ALICE, ip: '127.0.0.1', secure: false, tag: 'a1' })}\n`)
      sock.write('a2 SELECT INBOX\r\n')
      await until('the grid port closes a plain connection', () => sock.destroyed || sock.readableEnded, STEP_MS)
      sock.destroy()
      assert.ok(!got.includes('"ok"') && !got.includes('* ') && !got.includes(MARK), `plain TCP got ${JSON.stringify(got.slice(0, 200))}`)
    }
  })

  test('forwarded-session stream: with the cluster key a host is a node of the grid and gets alice\'s session (the trust boundary)', async () => {
    const h = await host(KEY)
    const stream = await h.dialProtocol(multiaddr(await gridAddr(nodes[0])), PROTOCOLS.session, { signal: AbortSignal.timeout(STEP_MS) })
    const d = streamToDuplex(stream)
    let got = ''
    d.on('data', (c: Buffer) => { got += c.toString('latin1') })
    d.on('error', () => {})
    d.write(JSON.stringify({ v: 1, protocol: 'imap', user: ALICE, ip: '127.0.0.1', secure: false, tag: 'a1' }) + '\n')
    await until('the primary\'s answer', () => got.includes('a1 OK'), STEP_MS)
    assert.match(got, /^\{"ok":true\}\n/)
    d.write('a2 EXAMINE INBOX\r\n')
    await until('alice\'s INBOX', () => /a2 OK/.test(got), STEP_MS)
    assert.match(got, /\* 2 EXISTS/)
    d.destroy()
  })

  test('after every attempt: both users\' mail is as it was, and bob was never sent anything of alice\'s', async () => { await unchanged() })
})

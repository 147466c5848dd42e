// Issue 16, item 2: authentication throttling counts failures grid-wide. Three node processes; each client
// address below is a loopback address of its own (127.0.0.x), so the per-IP and per-account budgets are tested
// apart. With limits.authFailuresPerAccountMax = 4 and authFailuresPerIpMax = 10, failures made through n1 and n2
// lock the account and the address on n3 too, which saw none of them (the right password gets the throttled
// answer, over IMAP and POP3), and the locks end with the window.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import type { Socket } from 'node:net'
import { startGrid, until } from '../helpers/cluster.ts'
import type { ProcNode } from '../helpers/cluster.ts'
import { tempDir } from '../helpers/tmp.ts'

const ACCOUNT_MAX = 4
const IP_MAX = 10
const WINDOW_MS = 6_000
const USERS = ['victim@example.com', 'bystander@example.com', ...Array.from({ length: 12 }, (_, i) => `probe${i}@example.com`)]

/** One connection, one login attempt: the server's answer line to it. */
async function attempt (protocol: 'imap' | 'pop3', node: ProcNode, from: string, user: string, password: string): Promise<string> {
  const socket: Socket = connect({ host: '127.0.0.1', port: node.ports[protocol], localAddress: from })
  socket.setEncoding('latin1')
  let buf = ''
  const lines: string[] = []
  let wake: (() => void) | null = null
  socket.on('data', (d: string) => {
    buf += d
    for (let i = buf.indexOf('\r\n'); i >= 0; i = buf.indexOf('\r\n')) { lines.push(buf.slice(0, i)); buf = buf.slice(i + 2) }
    wake?.()
  })
  socket.on('error', () => { wake?.() })
  socket.on('close', () => { wake?.() })
  const line = async (match: RegExp): Promise<string> => {
    const deadline = Date.now() + 10_000
    for (;;) {
      const i = lines.findIndex(l => match.test(l))
      if (i >= 0) return lines.splice(0, i + 1)[i]
      if (socket.destroyed || Date.now() > deadline) throw new Error(`no ${String(match)} from ${node.name} (${lines.join(' | ')})`)
      await new Promise<void>(resolve => { wake = resolve; setTimeout(resolve, 200) })
    }
  }
  try {
    if (protocol === 'imap') {
      await line(/^\* /)
      socket.write(`a1 LOGIN ${user} ${password}\r\n`)
      return await line(/^a1 /)
    }
    await line(/^[+-]/)
    socket.write(`USER ${user}\r\n`)
    await line(/^[+-]/)
    socket.write(`PASS ${password}\r\n`)
    return await line(/^[+-]/)
  } finally {
    socket.destroy()
  }
}

const THROTTLED = { imap: /^a1 NO \[UNAVAILABLE\]/, pop3: /^-ERR \[SYS\/TEMP\]/ }
const FAILED = { imap: /^a1 NO \[AUTHENTICATIONFAILED\]/, pop3: /^-ERR \[AUTH\]/ }
const OK = { imap: /^a1 OK/, pop3: /^\+OK/ }

test('authentication failures count grid-wide: an account and an address locked through two nodes are locked on the third, until the window ends', { timeout: 120_000 }, async (t) => {
  process.env.MAILGRID_TEST_LIMITS = JSON.stringify({ authFailuresPerAccountMax: ACCOUNT_MAX, authFailuresPerIpMax: IP_MAX, authWindowMs: WINDOW_MS })
  t.after(() => { delete process.env.MAILGRID_TEST_LIMITS })
  const dir = await tempDir(t)
  const { nodes: [n1, n2, n3] } = await startGrid(t, dir, 3, USERS)
  const [attacker, user] = ['127.0.0.2', '127.0.0.3']

  // the account's budget, spent through n1 (IMAP) and n2 (POP3), from one address
  const firstFailure = Date.now()
  const answers: string[] = []
  for (let i = 0; i < ACCOUNT_MAX; i++) {
    const protocol = i % 2 === 0 ? 'imap' : 'pop3'
    const a = await attempt(protocol, i % 2 === 0 ? n1 : n2, attacker, 'victim@example.com', `guess${i}`)
    assert.match(a, FAILED[protocol], `guess ${i} is an ordinary failure`)
    answers.push(a)
  }
  // the address's budget, spent on other accounts through the same two nodes (each account once)
  for (let i = ACCOUNT_MAX; i < IP_MAX; i++) {
    const protocol = i % 2 === 0 ? 'imap' : 'pop3'
    assert.match(await attempt(protocol, i % 2 === 0 ? n1 : n2, attacker, `probe${i}@example.com`, 'wrong'), FAILED[protocol], `guess ${i}`)
  }
  const lastFailure = Date.now()

  // n3 saw none of it: it refuses the address with the right password of an account nobody guessed (polled,
  // since the reports take a moment; a refused login counts nothing)
  let n3Answer = ''
  const seenMs = await until('n3 throttles the attacker\'s address', async () => {
    n3Answer = await attempt('imap', n3, attacker, 'probe0@example.com', 'pw')
    return THROTTLED.imap.test(n3Answer)
  }, 3_000, 100).catch(() => -1)
  t.diagnostic(`n3 throttled the address ${seenMs} ms after the last failure elsewhere (last answer ${JSON.stringify(n3Answer)})`)
  assert.ok(seenMs >= 0, `n3 refuses an address that failed ${IP_MAX} times on n1 and n2: ${n3Answer}`)
  assert.match(await attempt('pop3', n3, attacker, 'probe1@example.com', 'pw'), THROTTLED.pop3, 'and over POP3')

  // the account is locked everywhere, for any address: the right password gets the throttled answer
  for (const [node, protocol] of [[n3, 'imap'], [n3, 'pop3'], [n1, 'pop3'], [n2, 'imap']] as const) {
    const a = await attempt(protocol, node, user, 'victim@example.com', 'pw')
    assert.match(a, THROTTLED[protocol], `the locked account is refused on ${node.name} over ${protocol}: ${a}`)
  }
  // while another account from that address logs in
  assert.match(await attempt('imap', n3, user, 'bystander@example.com', 'pw'), OK.imap, 'the lock is the account\'s, not the node\'s')
  t.diagnostic(`the checks above ended ${Date.now() - firstFailure} ms after the first failure (window ${WINDOW_MS} ms)`)
  assert.ok(Date.now() - firstFailure < WINDOW_MS, 'the checks above ran inside the window')

  // the window ends: both locks are gone on every node
  const liftedMs = await until('the account\'s lock ends', async () => OK.imap.test(await attempt('imap', n3, user, 'victim@example.com', 'pw')), WINDOW_MS + 5_000, 250).then(() => Date.now() - firstFailure, () => -1)
  t.diagnostic(`the account's lock ended ${liftedMs} ms after its first failure (window ${WINDOW_MS} ms)`)
  assert.ok(liftedMs >= WINDOW_MS - 200, `the lock lasted the window (${liftedMs} ms)`)
  // each node counts the address's failures from when it heard them (n1 made the first one; n2 and n3 heard it a
  // report's trip later, not necessarily at the same instant), so each lets it in again at its own moment, shortly
  // after: polled on each node, a refusal that outlasts the window by seconds still fails
  for (const node of [n1, n2, n3]) {
    let last = ''
    await until(`the address let in again on ${node.name}`, async () => OK.pop3.test(last = await attempt('pop3', node, attacker, 'probe2@example.com', 'pw')), 5_000, 250)
      .catch(() => { assert.match(last, OK.pop3, `the address is let in again on ${node.name}`) })
  }
})

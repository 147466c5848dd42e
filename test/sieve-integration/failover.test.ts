// Sieve on a grid of three node processes (R=2): a script uploaded over ManageSieve through a node that does not
// hold the user (the session is forwarded to the primary) filters deliveries made through any node; the admin API of
// that node shows it (answered by the primary); after a SIGKILL of the user's primary, the new primary has the
// script (it is user data, replicated with the mail) and keeps filtering.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { ProcCluster, until } from '../helpers/cluster.ts'
import type { ProcNode } from '../helpers/cluster.ts'
import { RawClient } from '../helpers/client.ts'
import { tempDir } from '../helpers/tmp.ts'
import { placement } from '../../appliance/gridview.ts'
import { placementRing } from '../../node/grid/placement.ts'

const USER = 'rules@example.com'
const TOKEN = 'sieve-failover-test-token-0123456789'
const sieveDone = (buf: string): boolean => /(^|\r\n)(OK|NO|BYE)( [^\r\n]*)?\r\n$/.test(buf)
const imapDone = (tag: string) => (buf: string): boolean => new RegExp(`(^|\\r\\n)${tag} (OK|NO|BAD)[^\\r\\n]*\\r\\n$`).test(buf)

async function primaryOf (node: ProcNode): Promise<string> {
  const g = (await node.status()).grid
  assert.ok(g !== null)
  const p = placement(g, USER, placementRing)
  assert.ok(p.current)
  return p.replicas[0].id
}

async function smtpSend (node: ProcNode, subject: string): Promise<boolean> {
  const c = await RawClient.connect(node.ports.smtp)
  try {
    await c.read()
    await c.cmd('EHLO test.example')
    if (!(await c.cmd('MAIL FROM:<someone@elsewhere.test>')).startsWith('250')) return false
    if (!(await c.cmd(`RCPT TO:<${USER}>`)).startsWith('250')) return false
    if (!(await c.cmd('DATA')).startsWith('354')) return false
    return (await c.cmd(`From: <someone@elsewhere.test>\r\nTo: <${USER}>\r\nSubject: ${subject}\r\n\r\nbody\r\n.`)).startsWith('250')
  } finally {
    await c.cmd('QUIT').catch(() => '')
  }
}

/** Subjects of the messages in a mailbox, read over IMAP through `node` (forwarded to the primary). */
async function subjects (node: ProcNode, mailbox: string): Promise<string[]> {
  const c = await RawClient.connect(node.ports.imap)
  try {
    await c.read(b => b.includes('\r\n'))
    if (!/a OK/.test(await c.cmd(`a LOGIN ${USER} pw`, imapDone('a')))) return []
    if (!/b OK/.test(await c.cmd(`b SELECT ${mailbox}`, imapDone('b')))) return []
    const r = await c.cmd('c FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])', imapDone('c'))
    return [...r.matchAll(/Subject: ([^\r\n]+)/g)].map(m => m[1]).sort()
  } finally {
    await c.cmd('z LOGOUT', imapDone('z')).catch(() => '')
  }
}

test('an active script keeps filtering on the new primary after a SIGKILL of the old one', { timeout: 300_000 }, async (t) => {
  const dir = await tempDir(t)
  const cluster = new ProcCluster({ clusterKey: randomBytes(16).toString('hex'), replicas: 2, setup: { domain: 'example.com', users: [USER], password: 'pw' } })
  t.after(async () => { await cluster.stopAll() })
  const nodes: ProcNode[] = []
  for (let k = 1; k <= 3; k++) nodes.push(await cluster.start(`n${k}`, `${dir}/n${k}`, { setup: k === 1, env: { MAILGRID_TEST_ADMIN: TOKEN } }))
  await cluster.formed(3)
  await until('the user on every node', async () => (await Promise.all(nodes.map(async n => (await n.status()).users))).every(c => c === 1), 30_000)
  await until('every node sees the same ring', async () => new Set(await Promise.all(nodes.map(async n => (await n.status()).grid?.ringVersion))).size === 1, 30_000)
  const primaryId = await primaryOf(nodes[0])
  const g = (await nodes[0].status()).grid
  assert.ok(g !== null)
  const replicaIds = placement(g, USER, placementRing).replicas.map(r => r.id)
  const primary = nodes.find(n => n.id === primaryId) as ProcNode
  const outsider = nodes.find(n => !replicaIds.includes(n.id)) as ProcNode
  assert.ok(primary !== undefined && outsider !== undefined, 'a primary and a node holding no copy')

  // upload and activate through the node that holds no copy: the session runs on the primary
  const ms = await RawClient.connect(outsider.ports.managesieve)
  await ms.read(sieveDone)
  const plain = Buffer.from(`\0${USER}\0pw`).toString('base64')
  assert.match(await ms.cmd(`AUTHENTICATE "PLAIN" "${plain}"`, sieveDone), /^OK/)
  const script = 'require ["fileinto"];\r\nif header :contains "subject" "sort-me" {\r\n  fileinto "Archive";\r\n}\r\n'
  assert.match(await ms.cmd(`PUTSCRIPT "sorter" {${Buffer.byteLength(script)}+}\r\n${script}`, sieveDone), /^OK/)
  assert.match(await ms.cmd('SETACTIVE "sorter"', sieveDone), /^OK/)
  await ms.cmd('LOGOUT', sieveDone)

  // the admin API of the outsider answers from the primary
  const res = await fetch(`http://127.0.0.1:${outsider.ports.admin}/v1/users/${encodeURIComponent(USER)}/sieve`, { headers: { authorization: `Bearer ${TOKEN}` } })
  assert.equal(res.status, 200)
  assert.deepEqual(await res.json(), { scripts: [{ name: 'sorter', active: true }] })

  assert.ok(await smtpSend(outsider, 'sort-me before'), 'delivered')
  assert.ok(await smtpSend(outsider, 'plain before'), 'delivered')
  assert.deepEqual(await subjects(outsider, 'Archive'), ['sort-me before'])
  assert.deepEqual(await subjects(outsider, 'INBOX'), ['plain before'])

  await cluster.kill(primary)
  const survivors = nodes.filter(n => n !== primary)
  await until('the survivors agree on a new primary', async () => {
    const ids = await Promise.all(survivors.map(async n => await primaryOf(n).catch(() => '')))
    return ids.every(id => id !== '' && id !== primaryId && id === ids[0])
  }, 60_000)
  // deliveries resume once the new primary has taken over (a 451 meanwhile is a retry, as a sending MTA does)
  await until('a delivery through a survivor is taken', async () => await smtpSend(outsider, 'sort-me after').catch(() => false), 60_000, 500)
  assert.ok(await smtpSend(outsider, 'plain after'))
  assert.deepEqual(await subjects(outsider, 'Archive'), ['sort-me after', 'sort-me before'], 'the script filtered on the new primary')
  assert.deepEqual(await subjects(outsider, 'INBOX'), ['plain after', 'plain before'])
})

// Backup of a three-node grid (real processes) with 100 users through the admin API of one node, restored into a
// fresh one-node grid: every user's mailboxes are identical (names, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, each
// message's UID, flags, internal date, size, body hash and global id; bytes and logins checked over IMAP for a
// few users). An incremental run after 100 new messages writes about their size (the manifest's bytesWritten).
// A corrupted file is found by verify and refused by restore. One mailbox restores beside the live one.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ImapFlow } from 'imapflow'
import { ProcCluster } from '../helpers/cluster.ts'
import type { ProcNode } from '../helpers/cluster.ts'
import { tempDir } from '../helpers/tmp.ts'
import { connectRemote } from '../../appliance/client.ts'
import type { AdminClient } from '../../appliance/client.ts'
import { httpMailSource, httpMailTarget } from '../../appliance/mail-client.ts'
import { readManifest } from '../../node/backup/index.ts'
import type { Manifest } from '../../node/backup/index.ts'
import { cli, snapshot, TOKEN } from '../migrate/helpers.ts'

const USERS = Array.from({ length: 100 }, (_, i) => `u${i}@example.com`)
const PASSWORD = 'pw'

function body (user: string, n: number, bytes: number): Buffer {
  const head = `From: sender@example.org\r\nTo: ${user}\r\nSubject: message ${n} for ${user}\r\nMessage-ID: <${n}.${user}>\r\n\r\n`
  return Buffer.from(head + (randomBytes(Math.ceil(bytes / 2)).toString('hex').slice(0, bytes).match(/.{1,76}/g) ?? []).join('\r\n') + '\r\n')
}

function adminOf (n: ProcNode): { url: string, api: AdminClient } {
  const url = `http://127.0.0.1:${n.ports.admin}`
  return { url, api: connectRemote({ url, token: TOKEN }) }
}

/** A user's mail as the store holds it: mailboxes with their counters, every record. */
async function account (api: AdminClient, user: string): Promise<unknown> {
  const src = httpMailSource(api, user)
  const { mailboxes, subscriptions } = await src.mailboxes()
  const out: Record<string, unknown> = { subscriptions: [...subscriptions].sort() }
  for (const b of mailboxes) {
    const recs = []
    for (let from: number | null = 1; from !== null;) {
      const page: Awaited<ReturnType<typeof src.messages>> = await src.messages(b.id, from, 500)
      recs.push(...page.messages)
      from = page.next
    }
    out[b.name] = { id: b.id, uidValidity: b.uidValidity, uidNext: b.uidNext, highestModseq: b.highestModseq, specialUse: b.specialUse, messages: b.messages, size: b.size, recs }
  }
  return out
}

async function startNodes (cluster: ProcCluster, dir: string, count: number, setup: boolean): Promise<ProcNode[]> {
  const nodes: ProcNode[] = []
  for (let k = 1; k <= count; k++) nodes.push(await cluster.start(`n${k}`, join(dir, `n${k}`), { setup: setup && k === 1, env: { MAILGRID_TEST_ADMIN: TOKEN } }))
  await cluster.formed(count, 60_000)
  return nodes
}

test('backup of a 3-node grid, restore into a fresh 1-node grid: identical mailboxes; incremental; corruption found', { timeout: 900_000 }, async t => {
  const dir = await tempDir(t)
  const grid = new ProcCluster({ clusterKey: randomBytes(16).toString('hex'), replicas: 2, setup: { domain: 'example.com', users: USERS, password: PASSWORD } })
  t.after(async () => { await grid.stopAll() })
  const nodes = await startNodes(grid, join(dir, 'grid'), 3, true)
  const n2 = adminOf(nodes[1])
  // the directory on every node before mail goes in
  for (const n of nodes) {
    const a = adminOf(n).api
    for (let i = 0; ; i++) {
      if (((await a.request('GET', '/v1/users')).users as unknown[]).length === USERS.length) break
      if (i > 300) throw new Error('directory did not reach every node')
      await new Promise(resolve => setTimeout(resolve, 200))
    }
  }

  // mail for every user through node 2 (most users' primary is another node: the admin API reaches it)
  const day = Date.UTC(2024, 1, 2, 3, 4, 5)
  let bytes = 0
  for (const [i, u] of USERS.entries()) {
    const target = httpMailTarget(n2.api, u)
    await target.ensureMailbox('Projects/2024')
    for (let k = 0; k < 4; k++) {
      const raw = body(u, k, 2000 + 3000 * k)
      bytes += raw.length
      await target.append(k === 3 ? 'Projects/2024' : 'INBOX', { raw, flags: k === 0 ? ['\\Seen', 'Kw1'] : k === 1 ? ['\\Flagged'] : [], internalDate: day + i * 60_000 + k * 1000, gid: `seed${i}x${k}` })
    }
  }
  // a few users change their mail over IMAP (through node 3: forwarded to the primary): flags, expunge, move
  for (const u of USERS.slice(0, 5)) {
    const c = new ImapFlow({ host: '127.0.0.1', port: nodes[2].ports.imap, secure: false, auth: { user: u, pass: PASSWORD }, logger: false, doSTARTTLS: false, tls: { rejectUnauthorized: false } })
    await c.connect()
    const lock = await c.getMailboxLock('INBOX')
    try {
      await c.messageFlagsAdd('2', ['\\Answered', 'Done'], { uid: true })
      await c.messageMove('3', 'Archive', { uid: true })
      await c.messageDelete('1', { uid: true })
    } finally {
      lock.release()
    }
    await c.logout()
  }

  const backup = join(dir, 'backup')
  const b1 = await cli(n2.url, ['backup', '--to', backup])
  assert.equal(b1.code, 0, b1.err)
  const m1 = await readManifest(backup) as Manifest
  assert.equal(Object.keys(m1.users).length, USERS.length)
  const run1 = m1.runs[0]
  assert.ok(run1.bytesWritten >= bytes, `the first run holds every body (${run1.bytesWritten} >= ${bytes})`)
  assert.equal((await cli(n2.url, ['backup', 'verify', backup])).code, 0)

  // a second run with nothing new writes no file but the manifest
  const b2 = await cli(n2.url, ['backup', '--to', backup])
  assert.equal(b2.code, 0, b2.err)
  assert.equal((await readManifest(backup) as Manifest).runs[1].bytesWritten, 0)

  // 100 new messages: the next run writes about their size
  let fresh = 0
  for (const [i, u] of USERS.entries()) {
    const raw = body(u, 9, 3000)
    fresh += raw.length
    await httpMailTarget(adminOf(nodes[i % 3]).api, u).append('INBOX', { raw, flags: [], internalDate: day + 86_400_000, gid: `later${i}` })
  }
  const b3 = await cli(n2.url, ['backup', '--to', backup])
  assert.equal(b3.code, 0, b3.err)
  const m3 = await readManifest(backup) as Manifest
  const run3 = m3.runs[2]
  assert.equal(run3.blobsWritten, 100)
  assert.equal(run3.usersChanged, 100)
  assert.ok(run3.bytesWritten >= fresh && run3.bytesWritten < fresh + 100 * 1500, `incremental run wrote ${run3.bytesWritten} bytes for ${fresh} bytes of new mail (first run: ${run1.bytesWritten})`)
  t.diagnostic(`backup runs: first ${run1.bytesWritten} bytes, unchanged ${m3.runs[1].bytesWritten}, after 100 messages ${run3.bytesWritten} (their size ${fresh})`)
  assert.equal((await cli(n2.url, ['backup', 'verify', backup])).code, 0)

  // a fresh grid of one node: the whole backup
  const fresh1 = new ProcCluster({ clusterKey: randomBytes(16).toString('hex'), replicas: 2 })
  t.after(async () => { await fresh1.stopAll() })
  const [r1] = await startNodes(fresh1, join(dir, 'restored'), 1, false)
  const restored = adminOf(r1)
  const rr = await cli(restored.url, ['restore', '--from', backup])
  assert.equal(rr.code, 0, rr.err + rr.out)
  assert.match(rr.out, /restored 100 users/)
  for (const u of USERS) assert.deepEqual(await account(restored.api, u), await account(n2.api, u), `${u}: identical mailboxes`)
  // and as a client sees them (bytes, flags, dates, UIDs), with the restored password
  for (const u of USERS.slice(0, 3)) {
    assert.deepEqual(await snapshot(r1.ports.imap, u, PASSWORD), await snapshot(nodes[0].ports.imap, u, PASSWORD), `${u}: over IMAP`)
  }

  // one mailbox of a live user, beside the live one
  const one = await cli(n2.url, ['restore', '--from', backup, '--user', USERS[7], '--mailbox', 'Projects/2024'])
  assert.equal(one.code, 0, one.err)
  const live = await snapshot(nodes[0].ports.imap, USERS[7], PASSWORD)
  assert.deepEqual(live.folders['Restored/Projects/2024'].messages.map(m => [m.source, m.flags, m.date]), live.folders['Projects/2024'].messages.map(m => [m.source, m.flags, m.date]))

  // a corrupted body: verify names it, restore refuses it
  const m = await readManifest(backup) as Manifest
  const victim = Object.keys(m.files).find(p => p.startsWith('blobs/')) as string
  const data = await readFile(join(backup, victim))
  data[data.length >> 1] ^= 0x20
  await writeFile(join(backup, victim), data)
  const v = await cli(n2.url, ['backup', 'verify', backup])
  assert.equal(v.code, 1)
  assert.match(v.out, new RegExp(`${victim}: checksum mismatch`))
  const fresh2 = new ProcCluster({ clusterKey: randomBytes(16).toString('hex'), replicas: 2 })
  t.after(async () => { await fresh2.stopAll() })
  const [r2] = await startNodes(fresh2, join(dir, 'restored2'), 1, false)
  const bad = await cli(adminOf(r2).url, ['restore', '--from', backup])
  assert.equal(bad.code, 1)
  assert.match(bad.err, /restore refused: .*checksum mismatch/)
})

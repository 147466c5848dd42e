// Issue 16, item 3: a node whose data disk runs low stops taking new users and new copies, the grid is told, and
// its own users keep being served. Three node processes, R=2; n3's data dir is on a 64 MiB tmpfs this test mounts,
// with a free-space floor of 24 MiB (store.minFreeBytes). A ballast file takes n3 below the floor: n3 logs disk_low,
// n1 and n2 show the alarm and weight 0 for n3 within seconds; users added afterwards get their mail on n1 and n2
// only (n3's store holds nothing of them), while the users n3 held keep their replica sets, take new mail and are
// read through n3. The ballast goes: disk_ok, the alarm clears everywhere, and n3 takes its share of the new users
// again (the copies reach it and leave the node that stood in, once confirmed).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, open, rm, statfs, unlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ProcCluster, until } from '../helpers/cluster.ts'
import type { ProcNode } from '../helpers/cluster.ts'
import { RawClient } from '../helpers/client.ts'
import { gridLines, placement } from '../../appliance/gridview.ts'
import { placementRing } from '../../node/grid/placement.ts'
import { createRing } from '../../gossip/ring.ts'
import type { GridStatus } from '../../node/grid/index.ts'

const MIB = 1024 * 1024
const TMPFS_BYTES = 64 * MIB
const FLOOR_BYTES = 24 * MIB
const OLD = Array.from({ length: 16 }, (_, i) => `old${i}@example.com`)
const NEW = Array.from({ length: 12 }, (_, i) => `new${i}@example.com`)
const NOTICE_MS = 10_000 // "within seconds": a 250 ms check, a 750 ms heartbeat, and slack for a loaded machine

async function send (node: ProcNode, rcpt: string, subject: string): Promise<void> {
  const c = await RawClient.connect(node.ports.smtp)
  try {
    await c.read()
    for (const [line, code] of [['EHLO test', '250'], ['MAIL FROM:<sender@test.example>', '250'], [`RCPT TO:<${rcpt}>`, '250'], ['DATA', '354']]) {
      const reply = await c.cmd(line)
      assert.ok(reply.startsWith(code), `${line} to ${node.name}: ${reply}`)
    }
    const reply = await c.cmd(`Subject: ${subject}\r\n\r\n${subject} for ${rcpt}\r\n.`)
    assert.match(reply, /^250 /, `message to ${rcpt} through ${node.name}`)
    await c.cmd('QUIT').catch(() => '')
  } finally {
    c.close()
  }
}

/** The subjects in the user's INBOX, read over IMAP through `node`. */
async function subjects (node: ProcNode, user: string): Promise<string[]> {
  const c = await RawClient.connect(node.ports.imap)
  const tagged = (tag: string) => (b: string): boolean => new RegExp(`(^|\\r\\n)${tag} (OK|NO|BAD)[^\\r\\n]*\\r\\n$`).test(b)
  try {
    await c.read(b => b.includes('\r\n'))
    assert.match(await c.cmd(`a LOGIN ${user} pw`, tagged('a')), /a OK/)
    assert.match(await c.cmd('b SELECT INBOX', tagged('b')), /b OK/)
    const fetched = await c.cmd('c FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])', tagged('c'))
    await c.cmd('d LOGOUT', tagged('d')).catch(() => '')
    return [...fetched.matchAll(/Subject: ([^\r\n]+)/g)].map(m => m[1]).sort()
  } finally {
    c.close()
  }
}

async function positions (node: ProcNode, users: string[]): Promise<Record<string, number>> {
  return JSON.parse(await node.ask(`positions ${users.join(',')}`, 'POSITIONS')) as Record<string, number>
}

async function grid (node: ProcNode): Promise<GridStatus> {
  const g = (await node.status()).grid
  assert.ok(g !== null)
  return g
}

/** The replica set `mailgrid user where` computes from this status for a user created at `created`. */
function where (g: GridStatus, user: string, created: number): string[] {
  const p = placement(g, user, placementRing, created)
  assert.ok(p.current, 'the status and the ring it was computed from agree')
  return p.replicas.map(r => r.id)
}

async function freeBytes (path: string): Promise<number> {
  const s = await statfs(path)
  return s.bavail * s.bsize
}

test('a node below its free-space floor takes no new users or copies, says so everywhere, keeps its own users, and comes back', {
  timeout: 180_000,
  skip: process.getuid?.() !== 0 ? 'mounting a tmpfs needs root' : false
}, async (t) => {
  const started = Date.now()
  const dir = await mkdtemp(join(tmpdir(), 'mailgrid-disk-'))
  const small = join(dir, 'small')
  await mkdir(small)
  const cluster = new ProcCluster({ clusterKey: randomBytes(16).toString('hex'), replicas: 2, setup: { domain: 'example.com', users: OLD, password: 'pw' } })
  let mounted = false
  t.after(async () => {
    // a node that does not stop in 15 s is killed, so the tmpfs is free to unmount (lazily if something still holds it)
    const stopped = cluster.stopAll()
    const late = setTimeout(() => { for (const n of cluster.nodes) if (n.alive) n.child.kill('SIGKILL') }, 15_000)
    await stopped
    clearTimeout(late)
    if (mounted) {
      try {
        execFileSync('umount', [small])
      } catch {
        execFileSync('umount', ['-l', small])
      }
    }
    await rm(dir, { recursive: true, force: true })
  })
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_BYTES}`, 'tmpfs', small])
  mounted = true

  // n1 and n2 have no floor (their disk is the machine's); n3's is 24 MiB of its 64 MiB tmpfs
  const events: Array<{ event: string, at: number }> = []
  const off = { MAILGRID_TEST_STORE: JSON.stringify({ minFreeBytes: 0 }) }
  const n1 = await cluster.start('n1', join(dir, 'n1'), { setup: true, env: off })
  const n2 = await cluster.start('n2', join(dir, 'n2'), { env: off })
  const n3 = await cluster.start('n3', join(small, 'n3'), {
    env: { MAILGRID_TEST_STORE: JSON.stringify({ minFreeBytes: FLOOR_BYTES, diskCheckMs: 250 }), MAILGRID_TEST_LOG: 'info' },
    onLog: line => {
      const e = (JSON.parse(line) as { event?: string }).event
      if (e === 'disk_low' || e === 'disk_ok') events.push({ event: e, at: Date.now() })
    }
  })
  await cluster.formed(3)
  await until('the directory on every node', async () => (await Promise.all([n1, n2, n3].map(async n => (await n.status()).users))).every(c => c === OLD.length))
  assert.equal((await n3.status()).disk?.low, false, 'n3 starts with room')

  // the old users, each with a message; those n3 holds (as every node computes it) have their copy there
  const oldCreated = started // every old user was created after this instant and before the disk went low
  for (const u of OLD) await send(n1, u, 'first')
  const before = await grid(n1)
  const heldBy3 = OLD.filter(u => where(before, u, oldCreated).includes(n3.id))
  assert.ok(heldBy3.length > 0, 'n3 holds some of the old users')
  // (every node makes a new user's empty first mail state when the directory record reaches it; a node that does not
  // replicate the user hands it back and drops it within a rebalance round or two)
  await until('a copy on n3 exactly of the users it replicates', async () => {
    const p = await positions(n3, OLD)
    return OLD.every(u => (p[u] > 0) === heldBy3.includes(u))
  }, 30_000, 250)
  const at3 = await positions(n3, OLD)

  // the ballast takes n3 below its floor
  const ballast = join(small, 'ballast')
  const fill = (await freeBytes(small)) - FLOOR_BYTES + 6 * MIB
  const fh = await open(ballast, 'w')
  for (let written = 0; written < fill; written += MIB) await fh.write(Buffer.alloc(Math.min(MIB, fill - written), 1))
  await fh.close()
  const filled = Date.now()
  assert.ok(await freeBytes(small) < FLOOR_BYTES, 'below the floor')

  // within seconds: n3 logs it, and both other nodes see the alarm and weight 0 for n3
  const noticed = await until('n1 and n2 to see n3 low on disk', async () =>
    (await Promise.all([n1, n2].map(async n => (await grid(n)).members.find(m => m.id === n3.id)?.diskLow !== undefined))).every(Boolean), NOTICE_MS, 100)
  await until('n3 to log disk_low', () => events.some(e => e.event === 'disk_low'), 2000, 50)
  assert.equal((await n3.status()).disk?.low, true)
  for (const n of [n1, n2]) {
    const lines = gridLines(await grid(n))
    assert.ok(lines.some(l => /^alarm {8}disk low on mx\.test \(\S{8}\): .*floor 24\.0M.*weight 0 for new users/.test(l) && l.includes(n3.id.slice(-8))), `${n.name} status shows the alarm:\n${lines.join('\n')}`)
    const row = lines.find(l => l.includes(n3.id.slice(-8)) && !l.startsWith('alarm'))
    assert.match(row ?? '', /alive\s+alive\s+0\s/, `${n.name} status shows n3 with weight 0: ${row}`)
  }
  t.diagnostic(`alarm seen on n1 and n2 ${Date.now() - filled} ms after the ballast (polled ${noticed} ms)`)

  // new users after the alarm: without the rule n3 would hold some of them; with it, none
  const newCreated = Date.now()
  for (const u of NEW) assert.equal(await n1.ask(`user ${u} pw`, 'USER'), 'ok')
  await until('the new users on every node', async () => (await Promise.all([n1, n2, n3].map(async n => (await n.status()).users))).every(c => c === OLD.length + NEW.length))
  const low = await grid(n2)
  const natural = createRing(low.members.map(m => ({ id: m.id, weight: m.weight })))
  assert.ok(NEW.some(u => natural.replicas(u, 2).includes(n3.id)), 'the plain ring would put some new users on n3')
  for (const u of NEW) assert.ok(!where(low, u, newCreated).includes(n3.id), `${u} is not placed on n3`)
  for (const u of NEW) await send(n2, u, 'first')
  const newAt = await Promise.all([n1, n2, n3].map(async n => await positions(n, NEW)))
  for (const u of NEW) {
    // n3 may still hold the user's empty first state (see above), never the message: that is past it on the replicas
    assert.ok(newAt[0][u] > 0 && newAt[0][u] === newAt[1][u], `${u} has its two copies on n1 and n2`)
    assert.ok(newAt[2][u] < newAt[0][u], `n3 has no copy of ${u}'s message (n3 at ${newAt[2][u]}, n1 at ${newAt[0][u]})`)
  }
  await until('n3 to hold nothing of the new users', async () => Object.values(await positions(n3, NEW)).every(p => p === 0), 30_000, 250)

  // the users n3 held stay where they were, take new mail (their copy on n3 grows) and are read through n3
  const during = await grid(n1)
  for (const u of OLD) assert.deepEqual(where(during, u, oldCreated), where(before, u, oldCreated), `${u} keeps its replicas`)
  for (const u of heldBy3) await send(n1, u, 'second')
  const grown = await positions(n3, heldBy3)
  for (const u of heldBy3) assert.ok(grown[u] > at3[u], `${u}: n3's copy took the new message`)
  const reader = heldBy3.find(u => where(during, u, oldCreated)[0] === n3.id) ?? heldBy3[0]
  assert.deepEqual(await subjects(n3, reader), ['first', 'second'], `${reader} reads both messages through n3`)

  // space returns: the alarm clears everywhere, and n3 takes its share of the new users again
  await unlink(ballast)
  await until('n1 and n2 to see n3 with room again', async () =>
    (await Promise.all([n1, n2].map(async n => (await grid(n)).members.find(m => m.id === n3.id)?.diskLow === undefined))).every(Boolean), NOTICE_MS, 100)
  await until('n3 to log disk_ok', () => events.at(-1)?.event === 'disk_ok', 2000, 50)
  assert.deepEqual(events.map(e => e.event), ['disk_low', 'disk_ok'], 'one alarm and one recovery: no flapping')
  assert.equal((await n3.status()).disk?.low, false)
  const row = gridLines(await grid(n1)).find(l => l.includes(n3.id.slice(-8)))
  assert.match(row ?? '', /alive\s+alive\s+1\s/, `n3 weighs 1 again: ${row}`)
  assert.ok(!gridLines(await grid(n1)).some(l => l.startsWith('alarm')), 'no alarm left')
  const back = NEW.filter(u => natural.replicas(u, 2).includes(n3.id))
  await until('the new users placed on n3 to have their copy there, and only their two replicas to hold them', async () => {
    const now = await Promise.all([n1, n2, n3].map(async n => await positions(n, NEW)))
    return NEW.every(u => [n1, n2, n3].every((n, k) => (now[k][u] > 0) === natural.replicas(u, 2).includes(n.id)))
  }, 30_000, 250)
  assert.ok(back.length > 0)
  for (const u of back) assert.deepEqual(await subjects(n3, u), ['first'], `${u}'s mail reached n3`)
  t.diagnostic(`whole test ${Date.now() - started} ms`)
})

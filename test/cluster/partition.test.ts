// A partition between node processes (the transport's test hook: each side refuses the other's connections):
// mail is delivered by SMTP on both sides, mailbox changes succeed only on the majority side, and after the
// heal every acknowledged message is present exactly once and every holder of a user's mail agrees.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { createStore } from '../../store/index.ts'
import { python } from '../helpers/client.ts'
import { startGrid, until } from '../helpers/cluster.ts'
import { runSmtpLoad } from '../helpers/smtp-load.ts'
import { tempDir } from '../helpers/tmp.ts'

const USERS = Array.from({ length: 20 }, (_, i) => `pu${i}@example.com`)

test('partition between processes: both sides take mail, the majority changes mailboxes, the heal keeps everything', { timeout: 240_000 }, async (t) => {
  const dir = await tempDir(t)
  const { cluster, nodes: [n1, n2, n3] } = await startGrid(t, dir, 3, USERS)

  const acked = new Map<string, string>()
  const send = async (port: number, firstId: number, count: number): Promise<number> => {
    const r = await runSmtpLoad({
      port, connections: 5, messages: count, sizeBytes: 1500, firstId, recipient: i => USERS[i % USERS.length], deadlineMs: 60_000,
      onAck: (id, rcpt) => acked.set(String(id), rcpt), onReply: (line) => { if (!line.startsWith('250') && !line.startsWith('354')) replies.add(line) }
    })
    if (r.acked !== count) t.diagnostic(`refusals: ${[...replies].slice(0, 5).join(' | ')}`)
    return r.acked
  }
  const replies = new Set<string>()
  assert.equal(await send(n1.ports.smtp, 0, 100), 100)

  cluster.partition([n1], [n2, n3])
  await until('each side sees the other dead', async () => {
    const [a, b] = await Promise.all([n1.status(), n2.status()])
    return a.grid?.members.filter(m => m.status === 'alive').length === 1 && b.grid?.members.filter(m => m.status === 'alive').length === 2
  }, 30_000)
  // both sides take mail for every user
  assert.equal(await send(n1.ports.smtp, 1000, 60), 60, 'the minority side takes every delivery')
  assert.equal(await send(n2.ports.smtp, 2000, 60), 60, 'the majority side takes every delivery')

  // mailbox changes: refused on the minority side, done on the majority side
  const flag = `
import imaplib, sys
port, user = int(sys.argv[1]), sys.argv[2]
c = imaplib.IMAP4('127.0.0.1', port, timeout=20)
c.login(user, 'pw')
# on the minority side a user this node started empty during the cut is provisional: even SELECT waits
typ, data = c.select('INBOX')
if typ == 'OK':
    typ, data = c.store('1', '+FLAGS', '(\\\\Flagged)')
print(typ, data)
c.logout()
`
  const minority = await python(flag, [String(n1.ports.imap), USERS[0]])
  assert.match(minority.stdout, /^NO .*UNAVAILABLE/m, `minority: ${minority.stdout} ${minority.stderr}`)
  const majority = await python(flag, [String(n2.ports.imap), USERS[0]])
  assert.match(majority.stdout, /^OK /m, `majority: ${majority.stdout} ${majority.stderr}`)

  cluster.heal()
  await cluster.formed(3)
  await until('no under-replicated users after the heal, and no copy left to hand over', async () => (await Promise.all([n1, n2, n3].map(async n => (await n.status()).grid))).every(g => g?.underReplicated === 0 && g.handoffPending === 0), 60_000)

  // read through every node: every acknowledged message, once
  const script = await readFile(new URL('./read_mail.py', import.meta.url), 'utf8')
  await until('every acknowledged message readable once through every node', async () => {
    for (const n of [n1, n2, n3]) {
      const r = await python(script, ['imap', String(n.ports.imap), 'pw', ...USERS], 60_000)
      if (r.code !== 0) return false
      const seen = new Map<string, number>()
      for (const line of r.stdout.trim().split('\n')) {
        const m = JSON.parse(line) as { id: string | null }
        if (m.id !== null) seen.set(m.id, (seen.get(m.id) ?? 0) + 1)
      }
      if ([...acked.keys()].some(id => seen.get(id) !== 1)) return false
    }
    return true
  }, 60_000, 1000)

  // and every node holding a user's mail holds the same mail under the same UIDs
  await cluster.stopAll()
  const views = new Map<string, string[]>()
  const where = new Map<string, string[]>()
  for (const name of ['n1', 'n2', 'n3']) {
    const store = createStore({}, { path: `${dir}/${name}` })
    await store.start()
    for (const u of USERS) {
      if (await store.logPosition(u) === 0) continue
      const box = await store.getMailbox(u, 'INBOX')
      if (box === null) continue
      const list = (await store.listMessages(u, box.id)).map(r => `${r.uid}:${r.gid}:${[...r.flags].sort().join(',')}`)
      views.set(u, [...(views.get(u) ?? []), JSON.stringify(list)])
      where.set(u, [...(where.get(u) ?? []), `${name}@${await store.logPosition(u)}:${list.length}`])
    }
    await store.stop()
  }
  for (const u of USERS) {
    const v = views.get(u) ?? []
    assert.ok(v.length >= 2, `${u} is held by R=2 nodes (got ${v.length})`)
    assert.equal(new Set(v).size, 1, `${u}: every holder agrees (${(where.get(u) ?? []).join(' ')}): ${v.map(x => x.slice(0, 300)).join(' | ')}`)
  }
})

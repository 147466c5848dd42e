// The outbound queue on a grid of three node processes (R=2) with a real Postfix as the remote MTA and a real
// dnsmasq for the remote domain's MX: messages submitted through every node are queued on the shards'
// replicas; the node leading most of the queue is SIGKILLed while it delivers, and the survivors deliver the
// rest: every message arrives, duplicates (by Message-ID) at most what was in flight on the killed node.
// Then every node is restarted with mail still queued: none is lost.

import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import nodemailer from 'nodemailer'
import { startGrid, until } from '../helpers/cluster.ts'
import type { ProcNode } from '../helpers/cluster.ts'
import { isPostfixInstalled, startPostfix } from '../helpers/postfix.ts'
import type { PostfixServer } from '../helpers/postfix.ts'
import { isDnsmasqInstalled, startDns } from '../helpers/dns.ts'
import type { DnsServer } from '../helpers/dns.ts'
import { tempDir } from '../helpers/tmp.ts'
import { QUEUE_IN_FLIGHT_MAX } from '../../node/outbound/queue.ts'

const MESSAGES = 200
const missing = !isPostfixInstalled() || !isDnsmasqInstalled() ? 'postfix and dnsmasq are needed (apt-get install postfix dnsmasq-base)' : false

let postfix: PostfixServer
let dns: DnsServer

before(async () => {
  if (missing !== false) return
  postfix = await startPostfix({ domains: ['remote.test'], host: '127.0.0.3' })
  dns = await startDns({
    records: { mx: [{ name: 'remote.test', host: 'mx.remote.test', preference: 10 }], address: [{ name: 'mx.remote.test', address: '127.0.0.3' }] }
  })
  process.env.MAILGRID_TEST_OUTBOUND = JSON.stringify({
    dnsServers: [dns.server], port: postfix.port, relay: '', retryMinMs: 500, delayNoticeMs: 3600_000, bounceAfterMs: 3600_000
  })
})

after(async () => {
  delete process.env.MAILGRID_TEST_OUTBOUND
  await postfix?.stop()
  await dns?.stop()
})

async function send (nodes: ProcNode[], from: number, count: number, tag: string): Promise<void> {
  // a few connections per node, each sending its share in turn
  const transports = nodes.flatMap(n => [0, 1].map(() => nodemailer.createTransport({
    host: '127.0.0.1', port: n.ports.submission, secure: false, pool: false, tls: { rejectUnauthorized: false },
    auth: { user: 'u1@example.com', pass: 'pw' }
  })))
  try {
    const jobs = Array.from({ length: count }, (_, k) => from + k)
    await Promise.all(transports.map(async (tr, w) => {
      for (let i = jobs[w]; i !== undefined; i = jobs[w += transports.length]) {
        const info = await tr.sendMail({
          from: 'u1@example.com', to: `r${i % 7}@remote.test`, subject: `${tag} ${i}`, text: `message ${i}\n`,
          messageId: `<${tag}-${i}@example.com>`
        })
        assert.match(info.response, /^250 /)
      }
    }))
  } finally {
    for (const tr of transports) tr.close()
  }
}

async function idsAtRemote (tag: string): Promise<string[]> {
  return (await postfix.messages()).flatMap(m => {
    const id = /^Message-ID: <([^>]+)>/mi.exec(m.raw.toString('latin1'))?.[1]
    return id !== undefined && id.startsWith(`${tag}-`) ? [id] : []
  })
}

test('three nodes, R=2: the node leading most of the queue is killed mid-delivery; every message arrives', { skip: missing, timeout: 240_000 }, async (t) => {
  const dir = await tempDir(t)
  const { cluster, nodes } = await startGrid(t, dir, 3, ['u1@example.com'])
  await postfix.down()
  let up = false
  t.after(async () => { if (!up) await postfix.up() })
  await send(nodes, 0, MESSAGES, 'kill')
  // every message is queued (and acknowledged) on its shard's replicas; the remote is away, so they wait
  const sizes = await Promise.all(nodes.map(async n => (await n.status()).queue.local.size))
  assert.equal(sizes.reduce((a, b) => a + b, 0), MESSAGES, `queued over the leaders: ${sizes.join(', ')}`)
  const victim = nodes[sizes.indexOf(Math.max(...sizes))]
  await postfix.up()
  up = true
  await until('deliveries under way', async () => (await idsAtRemote('kill')).length >= MESSAGES / 10, 60_000, 20)
  await cluster.kill(victim)
  const atKill = (await idsAtRemote('kill')).length
  await until('every message at the remote', async () => new Set(await idsAtRemote('kill')).size === MESSAGES, 120_000, 250)
  const ids = await idsAtRemote('kill')
  const duplicates = ids.length - new Set(ids).size
  t.diagnostic(`killed ${victim.name} leading ${Math.max(...sizes)} of ${MESSAGES} with ${atKill} delivered; ${duplicates} duplicates`)
  assert.ok(duplicates <= QUEUE_IN_FLIGHT_MAX, `duplicates ${duplicates} exceed what one node has in flight (${QUEUE_IN_FLIGHT_MAX})`)
  const survivors = nodes.filter(n => n !== victim)
  await until('the queue empty on the survivors', async () => (await Promise.all(survivors.map(async n => (await n.status()).queue.grid.size))).every(s => s === 0), 60_000)
})

test('a restart of every node with mail still queued loses none', { skip: missing, timeout: 240_000 }, async (t) => {
  const dir = await tempDir(t)
  const { cluster, nodes } = await startGrid(t, dir, 3, ['u1@example.com'])
  await postfix.down()
  let up = false
  t.after(async () => { if (!up) await postfix.up() })
  await send(nodes, 0, 30, 'restart')
  await until('queued', async () => (await nodes[0].status()).queue.grid.size === 30, 30_000)
  await cluster.stopAll()
  for (const n of nodes) await cluster.start(n.name, n.dir)
  await cluster.formed(3)
  await postfix.up()
  up = true
  await until('every message at the remote', async () => new Set(await idsAtRemote('restart')).size === 30, 120_000, 250)
  const ids = await idsAtRemote('restart')
  assert.equal(ids.length, 30, 'each once: nothing was in flight at the clean stop')
})

// `mailgrid import imap` end to end on a two-node grid (node processes, R=2), from a private Dovecot over IMAPS:
// the CLI asks one node's admin API; the job runs on the target user's primary. Halfway through, the primary and
// the CLI are killed (SIGKILL): the other node, now primary, resumes the job from the replicated directory, and
// the CLI started again joins it. The end is identical to the source (imapflow on both sides); a second run
// copies nothing.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createTestCa } from '../helpers/ca.ts'
import { ProcCluster, until } from '../helpers/cluster.ts'
import type { ProcNode } from '../helpers/cluster.ts'
import { isDovecotSourceInstalled, startDovecotSource } from '../helpers/dovecot.ts'
import { tempDir } from '../helpers/tmp.ts'
import { connectRemote } from '../../appliance/client.ts'
import { assertSameMail, client, populate } from './imap-fixture.ts'

const skip = isDovecotSourceInstalled() ? false : 'Dovecot (dovecot-imapd, dovecot-pop3d) is not installed'
const TOKEN = 'import-grid-token'

function runCli (args: string[]): { done: Promise<{ code: number | null, out: string }>, kill: () => void } {
  const child = spawn(process.execPath, ['appliance/cli.ts', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', d => { out += String(d) })
  child.stderr.on('data', d => { out += String(d) })
  const done = new Promise<{ code: number | null, out: string }>(resolve => child.on('close', code => resolve({ code, out })))
  return { done, kill: () => { child.kill('SIGKILL') } }
}

interface Job { state: string, node?: string, report?: { copied: number, skipped: number, failed: number, messages: number } }

test('import imap on a grid: the primary killed halfway, the other node finishes; identical; again: nothing', { skip, timeout: 600_000 }, async t => {
  const dir = await tempDir(t)
  const ca = await createTestCa()
  const dovecot = await startDovecotSource({ users: [{ user: 'alice', password: 'source-pw' }], ca })
  t.after(async () => { await dovecot.stop() })
  const src = client(dovecot.imapPort, 'alice', 'source-pw')
  await src.connect()
  t.after(async () => { await src.logout().catch(() => {}) })
  const stats = await populate(src, { messages: 300, large: 4 })
  await writeFile(join(dir, 'pw'), 'source-pw\n')
  await writeFile(join(dir, 'ca.pem'), ca.cert)

  const cluster = new ProcCluster({ clusterKey: randomBytes(16).toString('hex'), replicas: 2, setup: { domain: 'example.com', users: ['alice@example.com'], password: 'pw' } })
  t.after(async () => { await cluster.stopAll() })
  const nodes: ProcNode[] = []
  for (const k of [1, 2]) nodes.push(await cluster.start(`n${k}`, join(dir, `n${k}`), { setup: k === 1, env: { MAILGRID_TEST_ADMIN: TOKEN } }))
  await cluster.formed(2)
  await until('the directory on both nodes', async () => (await Promise.all(nodes.map(async n => (await n.status()).users))).every(c => c === 1))
  const url = (n: ProcNode): string => `http://127.0.0.1:${n.ports.admin}`
  const job = async (n: ProcNode): Promise<Job | null> => {
    try {
      return (await connectRemote({ url: url(n), token: TOKEN }).request('GET', '/v1/imports/imap/alice%40example.com')).job as Job
    } catch {
      return null
    }
  }
  const args = (n: ProcNode): string[] => ['import', 'imap', '--from', `imaps://localhost:${dovecot.imapsPort}`, '--user', 'alice', '--password-file', join(dir, 'pw'), '--to', 'alice@example.com', '--ca-file', join(dir, 'ca.pem'), '--url', url(n), '--token', TOKEN]

  // started through n1; it runs on alice's primary, whichever that is
  const first = runCli(args(nodes[0]))
  let running: Job | null = null
  await until('the job running on a node', async () => { running = await job(nodes[0]); return running?.state === 'running' && running.node !== undefined }, 60_000, 50)
  const primary = nodes.find(n => n.id === running!.node)!
  const other = nodes.find(n => n !== primary)!
  // halfway: the target's INBOX (the first folder) partly there, seen through IMAP on the other node
  const dst = client(other.ports.imaps, 'alice@example.com', 'pw', { secure: true })
  await dst.connect()
  await until('some messages copied', async () => { const st = await dst.status('INBOX', { messages: true }); return st !== false && (st.messages ?? 0) >= 30 }, 120_000, 25)
  await dst.logout()
  first.kill()
  await cluster.kill(primary)
  assert.notEqual((await job(other))?.state, 'done', 'killed before the end')

  // the CLI again, on the survivor: it joins the job, which the survivor (now primary) resumes
  const second = await runCli(args(other)).done
  assert.equal(second.code, 0, second.out)
  const resumed = (await job(other))!
  assert.equal(resumed.state, 'done')
  assert.equal(resumed.node, other.id)
  assert.ok(resumed.report!.skipped > 0, `what the killed primary had copied is skipped: ${JSON.stringify(resumed.report)}`)
  assert.ok(resumed.report!.copied > 0, `the rest is copied here: ${JSON.stringify(resumed.report)}`)
  assert.equal(resumed.report!.copied + resumed.report!.skipped, stats.messages)
  assert.equal(resumed.report!.failed, 0)
  assert.match(second.out, /alice@example\.com <- alice at localhost:\d+: done/)

  const check = client(other.ports.imaps, 'alice@example.com', 'pw', { secure: true })
  await check.connect()
  t.after(async () => { await check.logout().catch(() => {}) })
  const seen = await assertSameMail(src, check)
  assert.equal(seen.messages, stats.messages)

  // a second run copies nothing
  const again = await runCli(args(other)).done
  assert.equal(again.code, 0, again.out)
  const last = (await job(other))!
  assert.equal(last.report!.copied, 0)
  assert.equal(last.report!.skipped, stats.messages)
  assert.match(again.out, new RegExp(`copied 0 .*skipped ${stats.messages} `))
})

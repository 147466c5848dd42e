// Several gossip hosts on loopback: membership forms, a foreign grid stays out, departures, partitions,
// restarts and kills are seen by the others within bounded time.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createGossip } from '../../gossip/index.ts'
import type { Gossip, MembershipEvent } from '../../gossip/index.ts'
import { formed, KEY, sampleLoad, startChildHost, startHost, statusOf, waitFor } from './helpers.ts'

/** Fast timings for in-process tests: a beat every 250 ms, suspect after 750 ms of silence, dead after 1.5 s. */
const FAST = { heartbeatMs: 250, suspectAfterMs: 750, deadAfterMs: 1500 }

function record (g: Gossip): MembershipEvent[] {
  const events: MembershipEvent[] = []
  g.onChange(e => { events.push(e) })
  return events
}

const statusTrail = (events: MembershipEvent[], id: string): string[] =>
  events.filter(e => e.type === 'status' && e.member.id === id).map(e => e.member.status)

/** Holds `cond` true for the whole of `ms` (sampled every 50 ms), for claims that something does not happen. */
async function holdsFor (cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    assert.ok(cond(), what)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

describe('gossip grid on loopback', { timeout: 60_000 }, () => {
  it('three hosts with one key form a view, learn each other through heartbeats, agree on the ring, and see updates', async t => {
    const a = await startHost(t, { ...FAST, services: { imap: 143 } })
    const b = await startHost(t, { ...FAST, bootstrap: [a.addr] })
    // c knows only b; it must learn a's address from heartbeats and dial it.
    const c = await startHost(t, { ...FAST, bootstrap: [b.addr], weight: 2 })
    const all = [a.gossip, b.gossip, c.gossip]
    const ms = await waitFor(() => formed(all), 5000, 'the view to form')
    t.diagnostic(`view formed in ${ms} ms`)
    await waitFor(() => all.every(g => g.ring().nodes.length === 3), 2000, 'rings of three')
    assert.equal(new Set(all.map(g => g.ring().version)).size, 1, 'every host computes the same ring')
    assert.equal(a.gossip.ring().nodes.find(n => n.id === c.gossip.self)?.weight, 2)
    assert.deepEqual(b.gossip.member(a.gossip.self)?.services, { imap: 143 })
    assert.equal(b.gossip.member(a.gossip.self)?.host, '127.0.0.1')
    assert.equal(b.gossip.member(a.gossip.self)?.load.diskFreeBytes, 3, 'the load sample travels')
    await waitFor(() => c.gossip.member(a.gossip.self)?.addrs.length === 1 && a.gossip.member(c.gossip.self) !== undefined, 2000, 'addresses')

    const seenByB = record(b.gossip)
    a.gossip.update({ state: 'draining', services: { imap: 1143 }, meta: { users: 7 }, sessions: 5 })
    await waitFor(() => b.gossip.member(a.gossip.self)?.state === 'draining', 2000, 'the update to arrive')
    const m = b.gossip.member(a.gossip.self)
    assert.deepEqual(m?.services, { imap: 1143 })
    assert.deepEqual(m?.meta, { users: 7 })
    assert.equal(m?.load.sessions, 5)
    assert.ok(seenByB.some(e => e.type === 'update' && e.member.id === a.gossip.self))
    assert.ok(b.gossip.ring().nodes.some(n => n.id === a.gossip.self), 'draining members stay on the ring')
    a.gossip.update({ state: 'joining' })
    await waitFor(() => !b.gossip.ring().nodes.some(n => n.id === a.gossip.self), 2000, 'a joining member to leave the ring')
    assert.ok(!a.gossip.ring().nodes.some(n => n.id === a.gossip.self), 'a node applies its own state to its ring')
  })

  it('a bootstrap address without a peer id is dialled once, not again while connected', async t => {
    const a = await startHost(t, FAST)
    const bare = a.addr.replace(/\/p2p\/[^/]+$/, '')
    const b = await startHost(t, { ...FAST, bootstrap: [bare] })
    await waitFor(() => formed([a.gossip, b.gossip]), 5000, 'the view to form')
    const sockets = (): number => process.getActiveResourcesInfo().filter(r => r === 'TCPSocketWrap').length
    const n = sockets()
    // Discovery runs every 2 s: three rounds must not open another connection.
    await holdsFor(() => sockets() === n, 4500, `no duplicate connections (${n} sockets at first)`)
  })

  it('a quiet two-host grid raises no false suspicion', async t => {
    const a = await startHost(t, FAST)
    const b = await startHost(t, { ...FAST, bootstrap: [a.addr] })
    await waitFor(() => formed([a.gossip, b.gossip]), 5000, 'the view to form')
    const ea = record(a.gossip)
    const eb = record(b.gossip)
    // Twelve heartbeat periods, five suspicion windows: every beat must arrive through a two-node mesh.
    await holdsFor(() => ea.length === 0 && eb.length === 0, 3000, 'no membership event in a healthy grid')
  })

  // Multicast leaves loopback, and tests send traffic only to loopback or to hosts they create: this one runs
  // only when asked (MAILGRID_TEST_MDNS=1, on a machine whose LAN is yours); the network-namespace test of the
  // appliance covers mDNS between test hosts.
  it('finds peers by mDNS on the LAN', { skip: process.env.MAILGRID_TEST_MDNS === '1' ? false : 'multicast leaves loopback: set MAILGRID_TEST_MDNS=1 to run' }, async t => {
    // A key of its own: the mDNS service name derives from it, so other tests' hosts are not found.
    const clusterKey = `mdns-${process.pid}-${Date.now()}`
    const listen = ['/ip4/0.0.0.0/tcp/0']
    const a = await startHost(t, { ...FAST, clusterKey, mdns: true, listen })
    const b = await startHost(t, { ...FAST, clusterKey, mdns: true, listen })
    const ms = await waitFor(() => formed([a.gossip, b.gossip]), 10_000, 'mDNS discovery')
    t.diagnostic(`found by mDNS in ${ms} ms`)
    const host = a.gossip.member(b.gossip.self)?.host
    assert.ok(host !== undefined && host !== '127.0.0.1' && a.gossip.member(b.gossip.self)?.addrs.every(x => x.includes(`/${host}/`)),
      'a host listening on every interface gossips a routable address and host, not loopback')
  })

  it('a host with another cluster key can neither connect nor join', async t => {
    const a = await startHost(t, FAST)
    const b = await startHost(t, { ...FAST, bootstrap: [a.addr] })
    const x = await startHost(t, { ...FAST, clusterKey: 'another-key', bootstrap: [a.addr, b.addr] })
    await waitFor(() => formed([a.gossip, b.gossip]), 5000, 'a and b to form')
    await holdsFor(() =>
      x.gossip.members().length === 1 &&
      a.gossip.member(x.gossip.self) === undefined &&
      b.gossip.member(x.gossip.self) === undefined, 2500, 'the foreign host stays out')
    await assert.rejects(x.gossip.call(a.gossip.self, '/mailgrid/test/1.0.0', { header: {} }, { timeoutMs: 1500 }),
      (err: Error & { code?: string }) => err.code === 'unreachable')
    await assert.rejects(a.gossip.openStream(x.gossip.self, '/mailgrid/test/1.0.0', { timeoutMs: 3000 }),
      (err: Error & { code?: string }) => err.code === 'unreachable')
  })

  it('a host that stops says goodbye: the others mark it left at once and drop it from the ring', async t => {
    const a = await startHost(t, FAST)
    const b = await startHost(t, { ...FAST, bootstrap: [a.addr] })
    await waitFor(() => formed([a.gossip, b.gossip]), 5000, 'the view to form')
    const events = record(a.gossip)
    await b.gossip.stop()
    const ms = await waitFor(() => statusOf(a.gossip, b.gossip.self) === 'left', 1000, 'left')
    t.diagnostic(`left seen in ${ms} ms`)
    assert.deepEqual(statusTrail(events, b.gossip.self), ['left'])
    assert.deepEqual(a.gossip.ring().nodes.map(n => n.id), [a.gossip.self])
    await b.gossip.stop() // twice is safe
  })

  it('a blocked host is suspect, then dead, on both sides; unblocked, it is alive again', async t => {
    const a = await startHost(t, FAST)
    const b = await startHost(t, { ...FAST, bootstrap: [a.addr] })
    const c = await startHost(t, { ...FAST, bootstrap: [a.addr] })
    const all = [a.gossip, b.gossip, c.gossip]
    await waitFor(() => formed(all), 5000, 'the view to form')
    const seenByA = record(a.gossip)
    const seenByC = record(c.gossip)
    const cut = Date.now()
    c.gossip.block([a.gossip.self, b.gossip.self])
    a.gossip.block([c.gossip.self])
    b.gossip.block([c.gossip.self])
    await waitFor(() => statusOf(a.gossip, c.gossip.self) === 'dead' && statusOf(b.gossip, c.gossip.self) === 'dead' &&
      statusOf(c.gossip, a.gossip.self) === 'dead', 4000, 'the partition to be detected')
    t.diagnostic(`partition detected in ${Date.now() - cut} ms`)
    assert.deepEqual(statusTrail(seenByA, c.gossip.self), ['suspect', 'dead'])
    assert.deepEqual(statusTrail(seenByC, a.gossip.self), ['suspect', 'dead'])
    assert.equal(statusOf(a.gossip, b.gossip.self), 'alive', 'the majority side still sees itself')
    assert.deepEqual(a.gossip.ring().nodes.map(n => n.id).sort(), [a.gossip.self, b.gossip.self].sort())
    await assert.rejects(a.gossip.call(c.gossip.self, '/x/1.0.0', { header: {} }), (err: Error & { code?: string }) => err.code === 'unreachable')

    for (const g of all) g.block([])
    const healed = await waitFor(() => formed(all), 8000, 'the partition to heal')
    t.diagnostic(`healed in ${healed} ms`)
    assert.deepEqual(statusTrail(seenByA, c.gossip.self), ['suspect', 'dead', 'alive'])
  })

  it('a restarted host keeps its peer id, has a higher incarnation and is alive again', async t => {
    const a = await startHost(t, FAST)
    const b = await startHost(t, { ...FAST, bootstrap: [a.addr] })
    await waitFor(() => formed([a.gossip, b.gossip]), 5000, 'the view to form')
    const id = b.gossip.self
    const inc = a.gossip.member(id)?.incarnation ?? 0
    assert.ok(inc >= 1)
    await b.gossip.stop()
    await waitFor(() => statusOf(a.gossip, id) === 'left', 1000, 'left')

    const again = createGossip({ sampleLoad }, { clusterKey: KEY, dataDir: b.dataDir, weight: 1, ...FAST, bootstrap: [a.addr] })
    t.after(async () => { await again.stop() })
    assert.equal(again.self, id, 'same peer id from the same data dir')
    await again.start()
    await waitFor(() => statusOf(a.gossip, id) === 'alive', 5000, 'the restarted host to be alive')
    assert.equal(a.gossip.member(id)?.incarnation, inc + 1)
    assert.equal(again.member(id)?.incarnation, inc + 1)
  })

  it('a SIGKILLed host is suspect, then dead, within 5 s at default timings', async t => {
    const a = await startHost(t, {})
    const child = await startChildHost(t, { bootstrap: [a.addr] })
    await waitFor(() => statusOf(a.gossip, child.id) === 'alive', 8000, 'the child to join')
    const events = record(a.gossip)
    const killed = Date.now()
    child.proc.kill('SIGKILL')
    const ms = await waitFor(() => statusOf(a.gossip, child.id) === 'dead', 6000, 'dead')
    t.diagnostic(`dead ${ms} ms after SIGKILL`)
    assert.ok(Date.now() - killed <= 5000, `declared dead after ${Date.now() - killed} ms`)
    assert.deepEqual(statusTrail(events, child.id), ['suspect', 'dead'])
    assert.deepEqual(a.gossip.ring().nodes.map(n => n.id), [a.gossip.self])
  })

  it('stop() leaves no sockets or timers behind', async t => {
    const handles = (): number => process.getActiveResourcesInfo().filter(r => r.startsWith('TCP') || r === 'Timeout').length
    const before = handles()
    const dir1 = await (await import('../helpers/tmp.ts')).tempDir(t)
    const dir2 = await (await import('../helpers/tmp.ts')).tempDir(t)
    const g1 = createGossip({ sampleLoad }, { clusterKey: KEY, dataDir: dir1, weight: 1, ...FAST })
    await g1.start()
    const g2 = createGossip({ sampleLoad }, { clusterKey: KEY, dataDir: dir2, weight: 1, ...FAST, bootstrap: [g1.member(g1.self)?.addrs[0] ?? ''] })
    await g2.start()
    await waitFor(() => formed([g1, g2]), 5000, 'the view to form')
    g1.handle('/mailgrid/echo/1.0.0', async req => req)
    assert.deepEqual((await g2.call(g1.self, '/mailgrid/echo/1.0.0', { header: { n: 1 } })).header, { n: 1 })
    assert.ok(handles() > before)
    await Promise.all([g1.stop(), g2.stop()])
    await waitFor(() => handles() <= before, 2000, `handles back to ${before} (${process.getActiveResourcesInfo().join(', ')})`)
  })
})

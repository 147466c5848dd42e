// The failure detector as a pure state machine: heartbeats, ping results and ticks at chosen instants.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { FailureDetector } from '../../gossip/detector.ts'
import type { MemberInfo, MembershipEvent } from '../../gossip/types.ts'

const INIT = { suspectAfterMs: 3000, deadAfterMs: 4000, forgetAfterMs: 60_000 }

function info (id: string, over: Partial<MemberInfo> = {}): MemberInfo {
  return {
    id,
    incarnation: 1,
    name: id,
    addrs: [`/ip4/127.0.0.1/tcp/1/p2p/${id}`],
    host: '127.0.0.1',
    services: { imap: 143 },
    weight: 1,
    state: 'alive',
    load: { cpuPct: 0, memUsedBytes: 0, memTotalBytes: 0, diskFreeBytes: 0, netRxBytesPerSec: 0, netTxBytesPerSec: 0, sessions: 0 },
    meta: {},
    ...over
  }
}

const brief = (events: MembershipEvent[]): string[] =>
  events.map(e => e.type === 'status' ? `status:${e.member.id}:${e.from}->${e.member.status}` : `${e.type}:${e.member.id}`)

function detector (): FailureDetector {
  return new FailureDetector(info('self'), INIT, 0)
}

describe('failure detector', () => {
  it('knows only itself at first, alive', () => {
    const d = detector()
    const ms = d.members(10)
    assert.equal(ms.length, 1)
    assert.equal(ms[0]?.self, true)
    assert.equal(ms[0]?.status, 'alive')
    assert.equal(ms[0]?.lastSeen, 10)
  })

  it('a first heartbeat is a join; later ones with new facts are updates; load alone is not', () => {
    const d = detector()
    assert.deepEqual(brief(d.heard(info('a'), 1, 100)), ['join:a'])
    assert.deepEqual(brief(d.heard(info('a', { load: { ...info('a').load, cpuPct: 50 } }), 2, 200)), [])
    assert.equal(d.member('a', 200)?.load.cpuPct, 50)
    assert.deepEqual(brief(d.heard(info('a', { weight: 2 }), 3, 300)), ['update:a'])
    assert.deepEqual(brief(d.heard(info('a', { state: 'draining', weight: 2 }), 4, 400)), ['update:a'])
  })

  it('ignores its own heartbeat and stale or duplicate ones', () => {
    const d = detector()
    assert.deepEqual(d.heard(info('self'), 1, 10), [])
    d.heard(info('a', { weight: 1 }), 5, 100)
    assert.deepEqual(d.heard(info('a', { weight: 9 }), 5, 200), [], 'same seq')
    assert.deepEqual(d.heard(info('a', { weight: 9 }), 4, 200), [], 'older seq')
    assert.equal(d.member('a', 200)?.weight, 1)
    assert.equal(d.member('a', 200)?.lastSeen, 100)
  })

  it('silence alone does not make a member suspect before deadAfterMs; a failed ping after suspectAfterMs does', () => {
    const d = detector()
    d.heard(info('a'), 1, 1000)
    assert.deepEqual(d.needsPing(3999), [])
    assert.deepEqual(d.tick(3999), [])
    assert.deepEqual(d.needsPing(4000), ['a'])
    assert.deepEqual(d.pinged('a', false, 3500), [], 'a failed ping before suspectAfterMs is not enough')
    assert.deepEqual(brief(d.pinged('a', false, 4100)), ['status:a:alive->suspect'])
    assert.deepEqual(brief(d.tick(4999)), [])
    assert.deepEqual(brief(d.tick(5000)), ['status:a:suspect->dead'])
    assert.deepEqual(d.needsPing(6000), [], 'the dead are not pinged')
  })

  it('a member silent for deadAfterMs dies even while its ping is outstanding, passing through suspect', () => {
    const d = detector()
    d.heard(info('a'), 1, 0)
    assert.deepEqual(brief(d.tick(4000)), ['status:a:alive->suspect', 'status:a:suspect->dead'])
  })

  it('a successful ping is a sign of life: it clears suspicion and postpones death', () => {
    const d = detector()
    d.heard(info('a'), 1, 0)
    d.pinged('a', false, 3000)
    assert.equal(d.member('a', 3000)?.status, 'suspect')
    assert.deepEqual(brief(d.pinged('a', true, 3500)), ['status:a:suspect->alive'])
    assert.deepEqual(d.tick(7000), [])
    assert.deepEqual(brief(d.tick(7500)), ['status:a:alive->suspect', 'status:a:suspect->dead'])
  })

  it('a heartbeat clears suspicion', () => {
    const d = detector()
    d.heard(info('a'), 1, 0)
    d.pinged('a', false, 3000)
    assert.deepEqual(brief(d.heard(info('a'), 2, 3200)), ['status:a:suspect->alive'])
  })

  it('a restarted member (higher incarnation) is alive again after death', () => {
    const d = detector()
    d.heard(info('a'), 7, 0)
    d.tick(4000)
    assert.equal(d.member('a', 4000)?.status, 'dead')
    assert.deepEqual(brief(d.heard(info('a'), 6, 5000)), [], 'a stale heartbeat of the dead incarnation does not resurrect it')
    assert.deepEqual(brief(d.heard(info('a', { incarnation: 2 }), 1, 5000)), ['update:a', 'status:a:dead->alive'])
    assert.equal(d.member('a', 5000)?.incarnation, 2)
    assert.deepEqual(d.heard(info('a', { incarnation: 1 }), 99, 5100), [], 'the old incarnation is ignored')
  })

  it('a newer heartbeat of the same incarnation revives a dead member (a healed partition)', () => {
    const d = detector()
    d.heard(info('a'), 3, 0)
    d.tick(4000)
    assert.deepEqual(brief(d.heard(info('a'), 4, 9000)), ['status:a:dead->alive'])
  })

  it('a member saying it is leaving is left at once, and alive again only with a higher incarnation', () => {
    const d = detector()
    d.heard(info('a'), 1, 0)
    assert.deepEqual(brief(d.heard(info('a', { state: 'leaving' }), 2, 100)), ['update:a', 'status:a:alive->left'])
    assert.deepEqual(d.tick(10_000), [], 'the departed do not die')
    assert.deepEqual(d.needsPing(10_000), [])
    assert.deepEqual(brief(d.heard(info('a'), 3, 10_100)), ['update:a'], 'same incarnation: still left')
    assert.equal(d.member('a', 10_100)?.status, 'left')
    assert.deepEqual(brief(d.heard(info('a', { incarnation: 2 }), 1, 10_200)), ['update:a', 'status:a:left->alive'])
  })

  it('counts() agrees with members() through joins, suspicion, death, leaving and return', () => {
    // the majority rule asks counts() on every write (node/grid/placement.ts): it must count what members() lists
    const d = detector()
    const check = (now: number, expected: { known: number, alive: number }): void => {
      const ms = d.members(now)
      const known = ms.filter(m => m.status !== 'left')
      const fromMembers = { known: known.length, alive: known.filter(m => m.status === 'alive').length }
      assert.deepEqual(d.counts(), fromMembers, `at ${now}`)
      assert.deepEqual(d.counts(), expected, `at ${now}`)
    }
    check(0, { known: 1, alive: 1 })
    d.heard(info('a'), 1, 0)
    d.heard(info('b'), 1, 0)
    d.heard(info('c'), 1, 0)
    check(0, { known: 4, alive: 4 })
    d.heard(info('a'), 2, 3500)
    d.heard(info('b'), 2, 3500)
    d.tick(3500)
    check(3500, { known: 4, alive: 4 })
    d.tick(4500) // c silent 4.5 s: dead
    check(4500, { known: 4, alive: 3 })
    d.heard(info('b', { state: 'leaving' }), 3, 4600) // b leaves: not known any more
    check(4600, { known: 3, alive: 2 })
    d.heard(info('c', { incarnation: 2 }), 1, 5000) // c returns
    check(5000, { known: 3, alive: 3 })
  })

  it('a goodbye from a stranger adds nothing', () => {
    const d = detector()
    assert.deepEqual(d.heard(info('z', { state: 'leaving' }), 1, 0), [])
    assert.equal(d.member('z', 0), undefined)
  })

  it('forgets the dead after forgetAfterMs', () => {
    const d = detector()
    d.heard(info('a'), 1, 0)
    d.tick(4000)
    d.tick(59_999)
    assert.notEqual(d.member('a', 59_999), undefined)
    d.tick(60_000)
    assert.equal(d.member('a', 60_000), undefined)
    assert.deepEqual(brief(d.heard(info('a', { incarnation: 2 }), 1, 61_000)), ['join:a'])
  })

  it('setSelf reports significant changes of this node only', () => {
    const d = detector()
    assert.deepEqual(d.setSelf(info('self', { load: { ...info('self').load, sessions: 5 } }), 10), [])
    assert.deepEqual(brief(d.setSelf(info('self', { state: 'draining' }), 20)), ['update:self'])
    assert.equal(d.member('self', 30)?.state, 'draining')
  })

  it('events carry snapshots, not live state', () => {
    const d = detector()
    const [join] = d.heard(info('a'), 1, 0)
    d.tick(4000)
    assert.equal(join?.member.status, 'alive')
  })

  it('remembers members from before a restart as dead until heard from, and forgets them on the usual clock', () => {
    const d = detector()
    d.remember(info('a'), 0, 1000)
    d.remember(info('b', { incarnation: 4 }), 900, 1000)
    d.remember(info('self'), 0, 1000) // never itself
    d.remember(info('old'), -INIT.forgetAfterMs, 1000) // silent too long already
    d.remember(info('bye', { state: 'leaving' }), 0, 1000) // it said goodbye
    assert.deepEqual(d.members(1000).map(m => `${m.id}:${m.status}`), ['self:alive', 'a:dead', 'b:dead'])
    // remembering again does not overwrite what is known
    d.remember(info('a', { name: 'other' }), 500, 1000)
    assert.equal(d.member('a', 1000)?.name, 'a')
    // its heartbeat brings it back, whatever the incarnation and sequence number (it may not have restarted)
    assert.deepEqual(brief(d.heard(info('a'), 0, 1100)), ['status:a:dead->alive'])
    assert.deepEqual(brief(d.heard(info('b', { incarnation: 4 }), 7, 1100)), ['status:b:dead->alive'])
    // one that never answers is forgotten forgetAfterMs after its last sign of life
    const e = detector()
    e.remember(info('c'), 0, 1000)
    e.tick(INIT.forgetAfterMs - 1)
    assert.equal(e.member('c', INIT.forgetAfterMs - 1)?.status, 'dead')
    e.tick(INIT.forgetAfterMs)
    assert.equal(e.member('c', INIT.forgetAfterMs), undefined)
  })

  it('rejects a dead threshold that does not exceed the suspect threshold', () => {
    assert.throws(() => new FailureDetector(info('self'), { suspectAfterMs: 4000, deadAfterMs: 4000, forgetAfterMs: 1 }, 0))
  })
})

// An operator's forget (FailureDetector.forget, asked from the console's Nodes page): only a dead member goes, at once;
// a late heartbeat (not newer than the last one heard) cannot bring it back, nor can the list kept on disk; a newer
// one (it was started again, or a partition healed) makes it a member anew.

import assert from 'node:assert/strict'
import { it } from 'node:test'
import { FailureDetector } from '../../gossip/detector.ts'
import type { MemberInfo } from '../../gossip/types.ts'

const INIT = { suspectAfterMs: 3000, deadAfterMs: 4000, forgetAfterMs: 60_000 }

function info (id: string, over: Partial<MemberInfo> = {}): MemberInfo {
  return {
    id, incarnation: 1, name: id, addrs: [], host: '127.0.0.1', services: {}, weight: 1, state: 'alive',
    load: { cpuPct: 0, memUsedBytes: 0, memTotalBytes: 0, diskFreeBytes: 0, netRxBytesPerSec: 0, netTxBytesPerSec: 0, sessions: 0 },
    meta: {}, ...over
  }
}

it('forgets a dead member only; a late heartbeat or the saved list cannot bring it back, a restart can', () => {
  const d = new FailureDetector(info('self'), INIT, 0)
  d.heard(info('a', { incarnation: 3 }), 1, 0)
  d.heard(info('b'), 1, 0)
  assert.equal(d.forget('a'), false, 'alive: not forgotten')
  assert.equal(d.forget('self'), false)
  assert.equal(d.forget('nobody'), false)
  d.heard(info('b'), 2, 4000)
  d.tick(4500)
  assert.equal(d.member('a', 4500)?.status, 'dead')
  assert.equal(d.member('b', 4500)?.status, 'alive')
  assert.equal(d.forget('a'), true)
  assert.equal(d.member('a', 4500), undefined)
  assert.deepEqual(d.members(4500).map(m => m.id), ['self', 'b'])
  // a late rumour (the last heartbeat heard, or an older incarnation), and the list on disk, are ignored
  assert.deepEqual(d.heard(info('a', { incarnation: 3 }), 1, 5000), [])
  assert.deepEqual(d.heard(info('a', { incarnation: 2 }), 50, 5000), [])
  d.remember(info('a', { incarnation: 3 }), 4000, 5000)
  assert.equal(d.member('a', 5000), undefined)
  // started again: a new member
  const back = d.heard(info('a', { incarnation: 4 }), 0, 6000)
  assert.deepEqual(back.map(e => e.type), ['join'])
  assert.equal(d.member('a', 6000)?.status, 'alive')
})

it('a member forgotten while cut off is a member again once a newer heartbeat comes through (a healed partition)', () => {
  const d = new FailureDetector(info('self'), INIT, 0)
  d.heard(info('a'), 7, 0)
  d.tick(5000)
  assert.equal(d.forget('a'), true)
  assert.deepEqual(d.heard(info('a'), 7, 6000), [])
  assert.deepEqual(d.heard(info('a'), 8, 6000).map(e => e.type), ['join'])
})

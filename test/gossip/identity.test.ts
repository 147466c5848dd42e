// Identity on disk, key derivations, heartbeat validation and the capacity weight.

import assert from 'node:assert/strict'
import { stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { decodeHeartbeat, encodeHeartbeat } from '../../gossip/heartbeat.ts'
import { INCARNATION_FILE, loadKnownMembers, loadOrCreatePeerKey, MEMBERS_FILE, membersTopic, nextIncarnation, PEER_KEY_FILE, saveKnownMembers } from '../../gossip/identity.ts'
import { capacityWeight, machineWeight, sampleLoad } from '../../gossip/load.ts'
import type { MemberInfo } from '../../gossip/types.ts'
import { tempDir } from '../helpers/tmp.ts'

const GIB = 1024 ** 3

describe('identity', () => {
  it('creates the peer key once (mode 0600) and reuses it', async t => {
    const dir = await tempDir(t)
    const k1 = loadOrCreatePeerKey(dir)
    const k2 = loadOrCreatePeerKey(dir)
    assert.equal(peerIdFromPrivateKey(k1).toString(), peerIdFromPrivateKey(k2).toString())
    assert.equal((await stat(join(dir, PEER_KEY_FILE))).mode & 0o777, 0o600)
    const other = loadOrCreatePeerKey(await tempDir(t))
    assert.notEqual(peerIdFromPrivateKey(other).toString(), peerIdFromPrivateKey(k1).toString())
  })

  it('counts incarnations up across starts, and refuses a corrupt counter', async t => {
    const dir = await tempDir(t)
    assert.equal(await nextIncarnation(dir), 1)
    assert.equal(await nextIncarnation(dir), 2)
    assert.equal(await nextIncarnation(dir), 3)
    await writeFile(join(dir, INCARNATION_FILE), 'garbage')
    await assert.rejects(nextIncarnation(dir), /not an incarnation number/)
  })

  it('keeps the known members across a restart; a damaged file or entry costs only itself', async t => {
    const dir = await tempDir(t)
    assert.deepEqual(await loadKnownMembers(dir), [])
    const a = info({ id: '12D3KooWAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', name: 'a' })
    const b = info({ id: '12D3KooWBbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', name: 'b', incarnation: 3 })
    await saveKnownMembers(dir, [{ info: a, lastSeen: 10 }, { info: b, lastSeen: 20 }])
    assert.equal(((await stat(join(dir, MEMBERS_FILE))).mode & 0o777), 0o600)
    assert.deepEqual(await loadKnownMembers(dir), [{ info: a, lastSeen: 10 }, { info: b, lastSeen: 20 }])
    // an entry that would not pass as a heartbeat is dropped, the others stay
    await writeFile(join(dir, MEMBERS_FILE), JSON.stringify({ members: [{ info: { ...a, weight: -1 }, lastSeen: 1 }, { info: b, lastSeen: 'x' }, { info: b, lastSeen: 5 }] }))
    assert.deepEqual(await loadKnownMembers(dir), [{ info: b, lastSeen: 5 }])
    await writeFile(join(dir, MEMBERS_FILE), '{ not json')
    assert.deepEqual(await loadKnownMembers(dir), [])
  })

  it('names the topic by a digest of the key, not the key', () => {
    assert.match(membersTopic('secret'), /^mailgrid\/[0-9a-f]{16}\/members\/1$/)
    assert.equal(membersTopic('secret'), membersTopic('secret'))
    assert.notEqual(membersTopic('secret'), membersTopic('other'))
    assert.ok(!membersTopic('secret').includes('secret'))
  })
})

describe('capacity weight', () => {
  it('weighs a 4-core, 8 GiB, 256 GiB-free PC at 1 and scales with each resource', () => {
    assert.equal(capacityWeight(4, 8 * GIB, 256 * GIB), 1)
    assert.equal(capacityWeight(8, 16 * GIB, 512 * GIB), 2)
    assert.equal(capacityWeight(8, 8 * GIB, 256 * GIB), 1.4)
    assert.equal(capacityWeight(0, 0, 0), 0.1, 'never zero')
    assert.equal(capacityWeight(4, 8 * GIB, 256 * GIB + 12345), 1, 'small disk drift does not move the weight')
  })

  it('samples this machine: sane numbers, and a positive weight', async t => {
    const dir = await tempDir(t)
    const s = await sampleLoad(dir)
    assert.ok(s.cpuPct >= 0 && s.cpuPct <= 100, `cpu ${s.cpuPct}`)
    assert.ok(s.memTotalBytes > 0 && s.memUsedBytes <= s.memTotalBytes)
    assert.ok(s.diskFreeBytes > 0)
    assert.ok(s.netRxBytesPerSec >= 0 && s.netTxBytesPerSec >= 0)
    assert.equal(s.sessions, 0)
    assert.ok(await machineWeight(dir) >= 0.1)
  })
})

function info (over: Partial<MemberInfo> = {}): MemberInfo {
  return {
    id: 'peerA',
    incarnation: 3,
    name: 'a',
    addrs: ['/ip4/10.0.0.1/tcp/4001'],
    host: '10.0.0.1',
    services: { smtp: 25, imap: 143 },
    weight: 1.5,
    state: 'alive',
    load: { cpuPct: 12.5, memUsedBytes: 1, memTotalBytes: 2, diskFreeBytes: 3, netRxBytesPerSec: 4, netTxBytesPerSec: 5, sessions: 6 },
    meta: { ringVersion: 'abc' },
    ...over
  }
}

describe('heartbeat', () => {
  it('round-trips', () => {
    const hb = { seq: 9, info: info() }
    assert.deepEqual(decodeHeartbeat(encodeHeartbeat(hb), 'peerA'), hb)
  })

  it('rejects a heartbeat claiming to be another peer', () => {
    assert.throws(() => decodeHeartbeat(encodeHeartbeat({ seq: 1, info: info() }), 'peerB'), /not its sender/)
  })

  it('rejects malformed and hostile heartbeats', () => {
    const enc = (x: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(x))
    const good = { v: 1, seq: 1, info: info() }
    const bad: unknown[] = [
      null, [], 'x', { ...good, v: 2 }, { ...good, seq: -1 }, { ...good, seq: 1.5 }, { ...good, info: null },
      { ...good, info: { ...info(), incarnation: 0 } },
      { ...good, info: { ...info(), weight: 0 } },
      { ...good, info: { ...info(), weight: 'heavy' } },
      { ...good, info: { ...info(), state: 'zombie' } },
      { ...good, info: { ...info(), addrs: 'x' } },
      { ...good, info: { ...info(), addrs: [1] } },
      { ...good, info: { ...info(), services: { imap: 70000 } } },
      { ...good, info: { ...info(), load: { ...info().load, cpuPct: Number.NaN } } },
      { ...good, info: { ...info(), load: {} } },
      { ...good, info: { ...info(), meta: [] } },
      { ...good, info: { ...info(), name: 'x'.repeat(10_000) } }
    ]
    for (const b of bad) assert.throws(() => decodeHeartbeat(enc(b), 'peerA'), `accepted ${JSON.stringify(b)?.slice(0, 120)}`)
    assert.throws(() => decodeHeartbeat(new Uint8Array([0xff, 0xfe]), 'peerA'))
    assert.throws(() => decodeHeartbeat(new Uint8Array(20_000).fill(32), 'peerA'), /too large/)
  })

  it('keeps only the first addresses of a member that gossips too many', () => {
    const many = Array.from({ length: 100 }, (_, i) => `/ip4/10.0.0.${i}/tcp/1`)
    assert.equal(decodeHeartbeat(encodeHeartbeat({ seq: 1, info: info({ addrs: many }) }), 'peerA').info.addrs.length, 16)
  })
})

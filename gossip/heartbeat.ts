// The heartbeat on the wire: JSON `{ v: 1, seq, info: MemberInfo }`. `seq` grows with every heartbeat of one
// incarnation, so a late relayed copy is recognisably stale. Decoding checks every field: a heartbeat comes
// from the network, and one bad peer must not be able to poison another node's view (or crash it).

import { DISK_LOW_MEMBERS_MAX, HEARTBEAT_BYTES_MAX, MEMBER_ADDRS_MAX } from './constants.ts'
import type { DiskLow, LoadSample, MemberInfo, NodeState } from './types.ts'

export const HEARTBEAT_VERSION = 1

export interface Heartbeat {
  seq: number
  info: MemberInfo
}

const STATES: ReadonlySet<string> = new Set<NodeState>(['joining', 'alive', 'draining', 'leaving'])
const STRING_CHARS_MAX = 512
const SERVICES_MAX = 32
const LOAD_KEYS: ReadonlyArray<keyof LoadSample> = ['cpuPct', 'memUsedBytes', 'memTotalBytes', 'diskFreeBytes', 'netRxBytesPerSec', 'netTxBytesPerSec', 'sessions']

// one of each for the process: a node encodes and decodes several heartbeats a second for its whole life
const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

export function encodeHeartbeat (hb: Heartbeat): Uint8Array {
  return encoder.encode(JSON.stringify({ v: HEARTBEAT_VERSION, seq: hb.seq, info: hb.info }))
}

function isObject (x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x)
}

function str (x: unknown, what: string): string {
  if (typeof x !== 'string' || x.length > STRING_CHARS_MAX) throw new Error(`bad ${what}`)
  return x
}

function num (x: unknown, what: string): number {
  if (typeof x !== 'number' || !Number.isFinite(x) || x < 0) throw new Error(`bad ${what}`)
  return x
}

/** The disk alarm of a heartbeat: absent (a node with room, or one from before the alarm), or checked whole. */
function diskLow (x: unknown): DiskLow | undefined {
  if (x === undefined || x === null) return undefined
  if (!isObject(x)) throw new Error('bad diskLow')
  if (!Array.isArray(x.members) || x.members.length > DISK_LOW_MEMBERS_MAX) throw new Error('bad diskLow.members')
  const members = x.members.map((m: unknown): [string, number] => {
    if (!Array.isArray(m) || m.length !== 2) throw new Error('bad diskLow member')
    const weight = num(m[1], 'diskLow weight')
    if (weight <= 0) throw new Error('bad diskLow weight')
    return [str(m[0], 'diskLow id'), weight]
  })
  return { since: num(x.since, 'diskLow.since'), floorBytes: num(x.floorBytes, 'diskLow.floorBytes'), members }
}

/** Parses and validates a heartbeat; throws on anything malformed. `from` is the authenticated sender. */
export function decodeHeartbeat (data: Uint8Array, from: string): Heartbeat {
  if (data.byteLength > HEARTBEAT_BYTES_MAX) throw new Error('heartbeat too large')
  const raw: unknown = JSON.parse(decoder.decode(data))
  if (!isObject(raw) || raw.v !== HEARTBEAT_VERSION) throw new Error('bad heartbeat version')
  const seq = raw.seq
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) throw new Error('bad seq')
  const i = raw.info
  if (!isObject(i)) throw new Error('bad info')
  if (i.id !== from) throw new Error('heartbeat id is not its sender')
  const incarnation = i.incarnation
  if (typeof incarnation !== 'number' || !Number.isSafeInteger(incarnation) || incarnation < 1) throw new Error('bad incarnation')
  if (!Array.isArray(i.addrs)) throw new Error('bad addrs')
  const addrs = i.addrs.slice(0, MEMBER_ADDRS_MAX).map(a => str(a, 'addr'))
  if (!isObject(i.services) || Object.keys(i.services).length > SERVICES_MAX) throw new Error('bad services')
  const services: Record<string, number> = {}
  for (const [k, v] of Object.entries(i.services)) {
    const port = num(v, 'port')
    if (!Number.isInteger(port) || port > 65535) throw new Error('bad port')
    services[str(k, 'service')] = port
  }
  const weight = num(i.weight, 'weight')
  if (weight <= 0) throw new Error('bad weight')
  const state = str(i.state, 'state')
  if (!STATES.has(state)) throw new Error('bad state')
  if (!isObject(i.load)) throw new Error('bad load')
  const load = {} as LoadSample
  for (const k of LOAD_KEYS) load[k] = num(i.load[k], `load.${k}`)
  if (!isObject(i.meta)) throw new Error('bad meta')
  const low = diskLow(i.diskLow)
  return {
    seq,
    info: {
      id: from,
      incarnation,
      name: str(i.name, 'name'),
      addrs,
      host: str(i.host, 'host'),
      services,
      weight,
      state: state as NodeState,
      load,
      meta: i.meta,
      ...(low !== undefined ? { diskLow: low } : {})
    }
  }
}

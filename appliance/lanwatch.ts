// A passive mDNS listener that notices mailgrid nodes of *another* grid on the LAN. Discovery itself is
// gossip/'s (@libp2p/mdns, with a service name derived from the cluster key), so a node with another key never
// even sees ours, and an operator who typed the key wrong would only see a node that stays alone. This watcher
// reads the mDNS traffic every node multicasts anyway, picks out mailgrid service names whose tag is not ours,
// and says so in the log, once per foreign grid: the "a node with another key stays out, and says so" of
// issue 5. It never sends a packet.

import { createSocket } from 'node:dgram'
import type { Socket } from 'node:dgram'
import { networkInterfaces } from 'node:os'
import type { Logger } from 'pino'

export const MDNS_PORT = 5353 // RFC 6762 3
export const MDNS_GROUP_IPV4 = '224.0.0.251' // RFC 6762 3
export const MDNS_PACKET_BYTES_MAX = 9000 // RFC 6762 17: a multicast DNS packet is at most 9000 bytes
export const DNS_NAME_BYTES_MAX = 255 // RFC 1035 2.3.4
export const DNS_POINTERS_MAX = 32 // compression pointers followed in one name before it is called a loop
export const DNS_RECORDS_MAX = 64 // records of one packet looked at; a real mDNS answer has a handful
export const FOREIGN_TAGS_MAX = 64 // distinct foreign grids remembered (and logged once each)

/** gossip/host.ts names the mDNS service `mailgrid-<clusterTag>.local`; a peer's name ends with it. */
const SERVICE_NAME = /(?:^|\.)mailgrid-([0-9a-f]{16})\.local$/i

/** Reads the (possibly compressed) DNS name at `offset`; returns it and the offset after it, or null if malformed. */
export function readName (buf: Buffer, offset: number): { name: string, next: number } | null {
  const labels: string[] = []
  let pos = offset
  let next = -1
  let jumps = 0
  let bytes = 0
  for (;;) {
    if (pos >= buf.length) return null
    const len = buf[pos]
    if (len === 0) { pos++; break }
    if ((len & 0xc0) === 0xc0) {
      if (pos + 1 >= buf.length || ++jumps > DNS_POINTERS_MAX) return null
      if (next === -1) next = pos + 2
      pos = ((len & 0x3f) << 8) | buf[pos + 1]
      continue
    }
    if ((len & 0xc0) !== 0 || pos + 1 + len > buf.length) return null
    bytes += len + 1
    if (bytes > DNS_NAME_BYTES_MAX) return null
    labels.push(buf.toString('latin1', pos + 1, pos + 1 + len))
    pos += 1 + len
  }
  return { name: labels.join('.'), next: next === -1 ? pos : next }
}

/** Every name in a DNS packet that mailgrid nodes use: questions, record owners and PTR targets. */
export function namesIn (buf: Buffer): string[] {
  if (buf.length < 12 || buf.length > MDNS_PACKET_BYTES_MAX) return []
  const qd = buf.readUInt16BE(4)
  const rr = buf.readUInt16BE(6) + buf.readUInt16BE(8) + buf.readUInt16BE(10)
  const names: string[] = []
  let pos = 12
  for (let i = 0; i < Math.min(qd, DNS_RECORDS_MAX); i++) {
    const n = readName(buf, pos)
    if (n === null || n.next + 4 > buf.length) return names
    names.push(n.name)
    pos = n.next + 4 // type, class
  }
  for (let i = 0; i < Math.min(rr, DNS_RECORDS_MAX); i++) {
    const n = readName(buf, pos)
    if (n === null || n.next + 10 > buf.length) return names
    names.push(n.name)
    const type = buf.readUInt16BE(n.next)
    const rdlength = buf.readUInt16BE(n.next + 8)
    const rdata = n.next + 10
    if (rdata + rdlength > buf.length) return names
    if (type === 12) { // PTR: the target is a name
      const target = readName(buf, rdata)
      if (target !== null) names.push(target.name)
    }
    pos = rdata + rdlength
  }
  return names
}

/** The mailgrid grid tags named in a packet. */
export function gridTagsIn (buf: Buffer): string[] {
  const tags = new Set<string>()
  for (const name of namesIn(buf)) {
    const m = SERVICE_NAME.exec(name)
    if (m !== null) tags.add(m[1].toLowerCase())
  }
  return [...tags]
}

export interface LanWatchInit {
  /** This grid's tag (gossip's clusterTag of the cluster key). */
  ownTag: string
  port?: number // tests
}

export interface LanWatch {
  start (): Promise<void>
  stop (): Promise<void>
  /** Foreign tags seen so far. */
  readonly foreign: ReadonlySet<string>
}

export function createLanWatch (components: { logger: Logger }, init: LanWatchInit): LanWatch {
  const log = components.logger
  const foreign = new Set<string>()
  let socket: Socket | null = null

  const onMessage = (msg: Buffer, rinfo: { address: string }): void => {
    for (const tag of gridTagsIn(msg)) {
      if (tag === init.ownTag.toLowerCase() || foreign.has(tag) || foreign.size >= FOREIGN_TAGS_MAX) continue
      foreign.add(tag)
      log.warn({ event: 'grid_other_key_seen', from: rinfo.address, tag, ownTag: init.ownTag },
        'a mailgrid node with another cluster key is on this network: it and this node cannot connect, so they stay in separate grids (give every node the same grid.clusterKey to join them)')
    }
  }

  return {
    foreign,
    async start () {
      if (socket !== null) return
      const s = createSocket({ type: 'udp4', reuseAddr: true })
      s.on('message', onMessage)
      s.on('error', err => { log.debug({ event: 'lanwatch_error', err: err.message }, 'mDNS watch error') })
      try {
        await new Promise<void>((resolve, reject) => {
          s.once('error', reject)
          s.bind(init.port ?? MDNS_PORT, () => { s.off('error', reject); resolve() })
        })
      } catch (err) {
        s.close()
        log.debug({ event: 'lanwatch_unavailable', err: (err as Error).message }, 'cannot watch mDNS')
        return
      }
      // Join the group on every IPv4 interface (a PC may have several LANs); one that refuses is skipped.
      for (const list of Object.values(networkInterfaces())) {
        const a = (list ?? []).find(x => x.family === 'IPv4')
        if (a === undefined) continue
        try { s.addMembership(MDNS_GROUP_IPV4, a.address) } catch { /* not a multicast interface */ }
      }
      socket = s
    },
    async stop () {
      const s = socket
      socket = null
      if (s !== null) await new Promise<void>(resolve => { s.close(() => { resolve() }) })
    }
  }
}

// The libp2p host of a node: TCP, the cluster protector (protector.ts: the cluster key, in place of pnet), noise,
// yamux, identify, ping and gossipsub, plus mDNS when asked. A machine without the cluster key fails the
// protector (what follows its nonce exchange decrypts to garbage under another key, so noise cannot complete),
// before any protocol is spoken.

import { gossipsub } from '@libp2p/gossipsub'
import type { GossipSub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import type { Identify } from '@libp2p/identify'
import { mdns } from '@libp2p/mdns'
import { noise } from '@libp2p/noise'
import { ping } from '@libp2p/ping'
import type { Ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import type { ConnectionGater, PeerDiscovery, PrivateKey } from '@libp2p/interface'
import { createLibp2p } from 'libp2p'
import type { Libp2p } from 'libp2p'
import { PROTECTOR_HANDSHAKE_MS, STREAM_READ_BUFFER_BYTES_MAX, STREAM_WINDOW_BYTES_MAX } from './constants.ts'
import { clusterTag } from './identity.ts'
import { noiseCrypto } from './noise-crypto.ts'
import { clusterProtector } from './protector.ts'

export type Host = Libp2p<{ identify: Identify, ping: Ping, pubsub: GossipSub }>

export interface HostInit {
  privateKey: PrivateKey
  clusterKey: string
  listen: string[]
  mdns: boolean
  gater: ConnectionGater
  /** gossipsub's own heartbeat (mesh maintenance), not ours. */
  meshHeartbeatMs: number
}

/** yamux's initial window is fixed by its spec at 256 KiB. */
const YAMUX_INITIAL_WINDOW_BYTES = 256 * 1024

/** A stream silent this long may be dropped: above IMAP IDLE's 29-minute re-issue interval (RFC 2177). */
const IDLE_STREAM_MS = 31 * 60 * 1000

const toB64 = (b: Uint8Array | undefined): string => b === undefined ? '' : Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64')

export async function createHost (init: HostInit): Promise<Host> {
  const discovery: Array<(components: any) => PeerDiscovery> = []
  if (init.mdns) discovery.push(mdns({ serviceTag: `mailgrid-${clusterTag(init.clusterKey)}.local` }))
  return await createLibp2p({
    privateKey: init.privateKey,
    start: false,
    addresses: { listen: init.listen },
    transports: [tcp()],
    connectionProtector: clusterProtector({ clusterKey: init.clusterKey, timeoutMs: PROTECTOR_HANDSHAKE_MS }),
    connectionEncrypters: [noise({ crypto: noiseCrypto })],
    // streamOptions replaces yamux's defaults as a whole, so every field is given.
    streamMuxers: [yamux({
      streamOptions: {
        initialStreamWindowSize: YAMUX_INITIAL_WINDOW_BYTES,
        maxStreamWindowSize: STREAM_WINDOW_BYTES_MAX,
        maxReadBufferLength: STREAM_READ_BUFFER_BYTES_MAX,
        maxWriteBufferLength: Infinity,
        // Forwarded IMAP sessions sit in IDLE for up to 29 minutes (RFC 2177 asks clients to re-IDLE by then).
        inactivityTimeout: IDLE_STREAM_MS
      }
    })],
    connectionGater: init.gater,
    peerDiscovery: discovery,
    services: {
      identify: identify(),
      ping: ping(),
      // A grid is 2 to a few dozen nodes. gossipsub's defaults (D=6, Dlo=4) assume hundreds and leave a
      // 2-node mesh below Dlo forever; floodPublish sends our own heartbeat to every subscribed peer, and the
      // mesh relays it to the ones we are not connected to.
      pubsub: gossipsub({
        D: 3,
        Dlo: 1,
        Dhi: 6,
        Dscore: 1,
        Dout: 0,
        heartbeatInterval: init.meshHeartbeatMs,
        floodPublish: true,
        // A copy relayed by the mesh (in a full mesh every heartbeat arrives once from its sender and once from each
        // relay) is dropped by this id before its signature is checked again: gossipsub otherwise verifies every
        // copy and dedups after (ed25519 verification was 8-10 % of an idle grid node's sampled time). The id is
        // the default message id's own fields (author, seqno) and enters the cache only once a copy validated.
        fastMsgIdFn: msg => `${toB64(msg.from)}/${toB64(msg.seqno)}`,
        allowPublishToZeroTopicPeers: true,
        ignoreDuplicatePublishError: true,
        emitSelf: false,
        doPX: false
      })
    }
  })
}

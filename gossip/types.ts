// The face of gossip/: membership, failure detection, load gossip, placement, and node-to-node RPC over
// libp2p. Nothing here knows mail; node/ builds replication, routing and forwarding on these types.

export type NodeState = 'joining' | 'alive' | 'draining' | 'leaving'
export type MemberStatus = 'alive' | 'suspect' | 'dead' | 'left'

export interface LoadSample {
  cpuPct: number // 0–100, whole machine
  memUsedBytes: number
  memTotalBytes: number
  diskFreeBytes: number
  netRxBytesPerSec: number
  netTxBytesPerSec: number
  sessions: number // open client sessions on this node
}

/**
 * A member whose data disk is below its free-space floor says so in its heartbeat. Placement then gives it no new
 * users and no new copies: it keeps only the users it held when it went low, judged the same way by every node from
 * what is published here (node/grid/placement.ts).
 */
export interface DiskLow {
  since: number // ms, the member's clock: when free space fell below the floor (users created later are new)
  floorBytes: number // the floor it fell below (for people; placement does not read it)
  /** The members it was placed among when it went low, (id, weight), at most DISK_LOW_MEMBERS_MAX. */
  members: Array<[string, number]>
}

/** What a node publishes about itself in every heartbeat. */
export interface MemberInfo {
  id: string // libp2p peer id (base58 string)
  incarnation: number // grows on every restart (and when refuting a suspicion)
  name: string // host name, for people
  addrs: string[] // libp2p multiaddrs to dial it on
  host: string // address clients and peers can reach its mail services on
  services: Record<string, number> // service name → port (smtp, submission, smtps, imap, imaps, pop3, pop3s, admin)
  weight: number // capacity share (> 0); derived from cores, RAM, disk unless configured
  state: NodeState
  load: LoadSample
  meta: Record<string, unknown> // small extra facts node/ wants gossiped (ring version seen, users owned, ...)
  diskLow?: DiskLow // present while its data disk is below the free-space floor
}

export interface Member extends MemberInfo {
  status: MemberStatus
  lastSeen: number // ms, local clock, of the last heartbeat or successful ping
  self: boolean
}

export type MembershipEvent =
  | { type: 'join', member: Member } // first heard of
  | { type: 'update', member: Member } // info changed (state, weight, addrs, incarnation)
  | { type: 'status', member: Member, from: MemberStatus } // alive ↔ suspect → dead, left

/** Weighted placement of keys on the alive members. Deterministic: every node with the same view agrees. */
export interface Ring {
  /** Hex digest of the sorted (id, weight) pairs it was built from: equal on nodes that agree on membership. */
  readonly version: string
  readonly nodes: ReadonlyArray<{ id: string, weight: number }>
  /** The first `r` nodes for `key`, most preferred first (weighted rendezvous hashing). */
  replicas (key: string, r: number): string[]
  /** The first node for `key`, or null on an empty ring. */
  primary (key: string): string | null
}

/** A request or response: a JSON header plus an optional binary body (a message, a blob, a batch). */
export interface RpcMessage {
  header: Record<string, unknown>
  body?: Uint8Array
}

export interface RpcCallOptions {
  signal?: AbortSignal
  timeoutMs?: number
  /** A stream of its own instead of the peer's channel: for calls whose answer may be large (up to 16 MiB). */
  bulk?: boolean
}

export type RpcHandler = (req: RpcMessage, ctx: { peer: string, signal: AbortSignal }) => Promise<RpcMessage>

/** A raw byte stream to a peer, as a Node Duplex (for forwarding client sessions). */
export type StreamHandler = (stream: import('node:stream').Duplex, ctx: { peer: string }) => void

export class RpcError extends Error {
  readonly code: 'timeout' | 'unreachable' | 'refused' | 'remote' | 'protocol' | 'aborted'
  constructor (code: RpcError['code'], message: string, options?: ErrorOptions) {
    super(message, options)
    this.code = code
    this.name = 'RpcError'
  }
}

/** Which carrier a node's RPC calls took, and its direct channels open now (rpc.ts, direct.ts). */
export interface RpcStats { direct: number, channel: number, stream: number, directOpen: number, directServed: number }

export interface Gossip {
  readonly self: string
  /** Calls by carrier so far and the direct channels open; null while not running (tests, benchmarks). */
  rpcStats?: () => RpcStats | null
  start (): Promise<void>
  /** Publishes `leaving`, then stops the host; safe to call twice. */
  stop (): Promise<void>

  /** Every member heard of, this node included. */
  members (): Member[]
  /**
   * How many members are known (every status but left) and how many of them are alive, this node included: what
   * members() would count, without copying each member (every write asks, for the majority rule).
   */
  memberCounts (): { known: number, alive: number }
  member (id: string): Member | undefined
  /** Placement over members whose status is alive (this node included) and whose state is alive or draining. */
  ring (): Ring
  onChange (listener: (event: MembershipEvent) => void): () => void
  /** Drops a dead member for good (an operator's wish); false when it is not dead here. Absent: not supported. */
  forget? (id: string): Promise<boolean>

  /** Changes what this node publishes (state, weight, services, meta, the disk alarm: null clears it); sent at once. */
  update (info: Partial<Pick<MemberInfo, 'state' | 'weight' | 'services' | 'host' | 'meta'>> & { sessions?: number, diskLow?: DiskLow | null }): void

  /** Request/response over a versioned protocol id ('/mailgrid/replicate/1.0.0'). */
  handle (protocol: string, handler: RpcHandler): void
  call (peer: string, protocol: string, req: RpcMessage, opts?: RpcCallOptions): Promise<RpcMessage>
  /** Raw streams for session forwarding. */
  handleStream (protocol: string, handler: StreamHandler): void
  openStream (peer: string, protocol: string, opts?: RpcCallOptions): Promise<import('node:stream').Duplex>

  /** Test hook: drop and refuse every connection to and from these peers (a network partition). */
  block (peers: string[]): void
}

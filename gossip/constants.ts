// Limits and defaults of gossip/, in one place, units last. Where a number is a judgement rather than a
// specification, the comment says what it is weighed against.

/** How often a node publishes its heartbeat. One second keeps a kill visible within the 4–5 s target. */
export const HEARTBEAT_MS = 1000

/** Silence after which a member is pinged directly and, if the ping fails, suspected (3 missed heartbeats). */
export const SUSPECT_AFTER_HEARTBEATS = 3

/** Silence after which a member is dead: DESIGN.md's "a few seconds", issue 4's "within 5 seconds". */
export const DEAD_AFTER_MS = 4000

/** A dead or departed member is dropped from the view after this long, so the view stays bounded. */
export const FORGET_AFTER_MS = 60 * 60 * 1000

/** A direct ping that takes longer than this counts as failed (loopback and LAN round trips are < 10 ms). */
export const PING_TIMEOUT_MS = 1000

/** Load samples (CPU, memory, network, disk) are refreshed this often, in the background. */
export const LOAD_REFRESH_MS = 5000

/** A heartbeat larger than this is dropped: MemberInfo with a few addrs and a small `meta` is ~1–2 KiB. */
export const HEARTBEAT_BYTES_MAX = 16 * 1024

/**
 * Members listed in a disk-low heartbeat (DiskLow.members): a peer id and a weight are ~60 bytes, so 64 of them stay
 * under 4 KiB, beside the 8 KiB of meta within HEARTBEAT_BYTES_MAX. A larger grid lists the first 64 by id: the
 * member then keeps a few more old users than it would (never fewer).
 */
export const DISK_LOW_MEMBERS_MAX = 64

/** A member gossiping more addresses than this is only dialled on the first ones. */
export const MEMBER_ADDRS_MAX = 16

/**
 * RPC: a JSON header frame larger than this is a protocol error. Headers carry the grid's log entries (about
 * 500 bytes each with a message's trace header), directory exports (a few hundred bytes per user), positions of
 * up to 10,000 users and merge summaries; the grid budgets its batches well below this (node/grid/wire.ts).
 * It was 64 KiB, which a batch of 130 log entries already exceeded: the shipment failed and was retried.
 */
export const RPC_HEADER_BYTES_MAX = 16 * 1024 * 1024

/** RPC: a body frame larger than this is a protocol error. 64 MiB is above any message the SMTP limit admits. */
export const RPC_BODY_BYTES_MAX = 64 * 1024 * 1024

/** RPC: a call without its own timeout gives up after this long; the outcome is then unknown, not failed. */
export const RPC_TIMEOUT_MS = 10_000

/**
 * RPC: how long stop() waits for the handlers of requests already being served to settle once their signals are
 * aborted. The node closes its store after gossip stops: a handler still writing (a replica applying a shipment)
 * must finish first or fail on a closed file. Handlers that ignore their signal are not waited for beyond this.
 */
export const RPC_STOP_HANDLERS_MS = 5_000

/** RPC: an inbound request must arrive whole within this long, so a stalled peer cannot pin a stream. */
export const RPC_REQUEST_READ_MS = 30_000

/**
 * Concurrent inbound streams per protocol per connection (libp2p's `maxInboundStreams`; its default is 32).
 * Replication batches and forwarded sessions both ride here, so a node with many users needs more than 32.
 */
export const RPC_INBOUND_STREAMS_MAX = 256

/**
 * Concurrent outbound streams per protocol per connection (libp2p's default is 64). Above the peer's inbound
 * bound, so that the peer's limit is the one that bites (and is tested).
 */
export const RPC_OUTBOUND_STREAMS_MAX = 2 * RPC_INBOUND_STREAMS_MAX

/**
 * yamux flow control: the receive window a stream may grow to. A paused reader holds at most this many bytes
 * beyond what it consumed, so the stream's read buffer limit below must exceed it (libp2p resets a stream whose
 * paused buffer overflows). 4 MiB still fills a 1 Gbit/s LAN at a 30 ms RTT.
 */
export const STREAM_WINDOW_BYTES_MAX = 4 * 1024 * 1024

/** Bytes a paused stream may buffer before libp2p resets it: twice the window, so flow control bites first. */
export const STREAM_READ_BUFFER_BYTES_MAX = 2 * STREAM_WINDOW_BYTES_MAX

/** Node Duplex high-water mark for forwarded sessions (Node's default for byte streams is 16 KiB; 64 KiB batches better). */
export const DUPLEX_HIGH_WATER_BYTES = 64 * 1024

/** The protector's nonce exchange must finish within this long (libp2p's default is 1 s; loaded machines need slack). */
export const PROTECTOR_HANDSHAKE_MS = 5000

/** Default listen address: loopback only, so an unconfigured node is not reachable from the network. */
export const DEFAULT_LISTEN = '/ip4/127.0.0.1/tcp/0'

// A gossip host in a process of its own, so tests can SIGKILL it. Usage: node host-proc.ts INIT_JSON
// Prints `READY {"id": ..., "addr": ...}` once started; SIGTERM stops it cleanly.

import { createGossip } from '../../gossip/index.ts'
import type { GossipInit } from '../../gossip/index.ts'
import { addrOf, sampleLoad } from './helpers.ts'

const init = JSON.parse(process.argv[2] ?? '{}') as GossipInit
const gossip = createGossip({ sampleLoad }, init)
await gossip.start()
process.stdout.write(`READY ${JSON.stringify({ id: gossip.self, addr: addrOf(gossip) })}\n`)
process.on('SIGTERM', () => { gossip.stop().then(() => process.exit(0), () => process.exit(1)) })

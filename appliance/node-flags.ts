// The V8 flags every mailgrid daemon runs with (appliance/node-flags.json, the one list; the launchers that
// cannot read it carry it literally, and test/appliance/node-flags.test.ts checks that they all agree):
// `npm start`, the systemd unit, the appliance's unit drop-in and `mailgrid` command, `mailgrid cluster up`,
// appliance/bin/mailgrid.js and the benchmarks' shipped nodes.
//
// --initial-old-space-size=256: V8 starts a full (mark-compact) collection when the old generation nears a
// limit it recomputes after each one from the live heap and the recent GC and allocation rates. A grid node
// under load keeps a small live heap (50-60 MB) while it allocates fast and holds each message's objects
// across the hop and the replica's answer, and its limit came out at 130-190 MB; V8 begins marking once the
// room left under that limit is no more than a young generation's worth, so the grid's nodes ran a
// mark-compact every 0.3-1 s of ingest (`--trace-incremental-marking`: "Start (task)" with 56 MB used of a
// 145 MB limit). Configuring an initial old space makes it the limit's floor: no full collection below 256 MB
// of old generation unless external memory or the memory reducer asks for one. Measured (ANALYSIS.md,
// session 14): 3-7 mark-compacts per grid node in a 3,000-message ingest became one; the grid's CPU per
// message fell by about a tenth; one node's did not change. The price is up to 256 MB of heap before the first
// full collection, which an idle node's memory reducer returns.

import { readFileSync } from 'node:fs'

export const NODE_FLAGS: readonly string[] = JSON.parse(readFileSync(new URL('./node-flags.json', import.meta.url), 'utf8')) as string[]

/** The flags of NODE_FLAGS this process was started without (by their name: another value counts as set). */
export function missingNodeFlags (execArgv: readonly string[] = process.execArgv): string[] {
  const name = (f: string): string => f.split('=')[0]
  return NODE_FLAGS.filter(f => !execArgv.some(a => name(a) === name(f)))
}

// A TCP port free on `host` at the time of asking, for a private server the caller starts right after. The port is
// picked at random below the kernel's ephemeral range (net.ipv4.ip_local_port_range, 32768-60999 by default) and
// above `mailgrid cluster up`'s ports (20000 + 100 per node), and tried with a bind first. A port the kernel hands
// out for a bind to port 0 cannot be one of these, so none of the many listeners a node opens on port 0 (services
// left at 0, libp2p's /tcp/0 in tests, the grid's direct channels) can take a port picked here for another server
// between the pick and its bind. With ports asked of the kernel (bind to 0, close, hand out) that could happen, since
// the kernel may give a port just closed to the next bind to 0 (two asks in a row got the same port before `given`
// existed); a CI run in session 12 had bench:grid's short pass fail within 2 s of its start, its cause unseen (the
// run was stopped before its summary), which this race explains. A port this process was handed before is not
// handed out again.

import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'

const TRIES = 200
const given = new Set<number>()

/** The first port of the kernel's ephemeral range; 32768 when it cannot be read. */
function ephemeralLow (): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0])
    return Number.isInteger(low) && low > 0 ? low : 32768
  } catch {
    return 32768
  }
}

const HIGH = ephemeralLow() // exclusive
const LOW = Math.max(1024, Math.min(22_000, HIGH - 4096))

async function bindable (host: string, port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = createServer()
    s.once('error', () => { resolve(false) })
    s.listen(port, host, () => { s.close(() => { resolve(true) }) })
  })
}

/** A port the kernel picks (bind to 0), for when no port below the ephemeral range is free. */
async function ask (host: string): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, host, () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

export async function freePort (host = '127.0.0.1'): Promise<number> {
  if (HIGH - LOW >= 1024) {
    for (let i = 0; i < TRIES; i++) {
      const port = LOW + Math.floor(Math.random() * (HIGH - LOW))
      if (given.has(port)) continue
      if (await bindable(host, port)) {
        given.add(port)
        return port
      }
    }
  }
  for (let i = 0; i < 20; i++) {
    const port = await ask(host)
    if (!given.has(port)) {
      given.add(port)
      return port
    }
  }
  throw new Error(`no free port on ${host} that was not handed out before`)
}

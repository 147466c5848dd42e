// A TCP port free on `host` at the time of asking (the kernel picks it; closed again before it is returned, so a
// private server started right after can bind it). A port this process was handed before is not handed out again:
// the kernel may give the same port to two asks in a row, since each is closed at once (a bench's Dovecot then
// failed with "duplicate listener" for its IMAP and POP3 ports).

import { createServer } from 'node:net'

const TRIES = 20
const given = new Set<number>()

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
  for (let i = 0; i < TRIES; i++) {
    const port = await ask(host)
    if (!given.has(port)) {
      given.add(port)
      return port
    }
  }
  throw new Error(`no port on ${host} that was not handed out before, in ${TRIES} tries`)
}

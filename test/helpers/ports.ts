// A TCP port free on `host` at the time of asking (the kernel picks it; closed again before it is returned, so a
// private server started right after can bind it).

import { createServer } from 'node:net'

export async function freePort (host = '127.0.0.1'): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, host, () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

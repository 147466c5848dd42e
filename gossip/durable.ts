// Files the node cannot do without (incarnation, member list; the appliance's cluster key, admin token, TLS key and
// configuration) are written so that a crash or a power cut leaves either the old file or the whole new one: a
// temporary file, fsync'd, renamed over the old name, and the directory fsync'd so the rename itself is on disk.

import { chmod, mkdir, open, rename, rm } from 'node:fs/promises'
import { dirname } from 'node:path'

export async function writeFileDurable (path: string, text: string | Uint8Array, mode: number): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  const tmp = `${path}.${process.pid}.tmp`
  try {
    const fh = await open(tmp, 'w', mode)
    try {
      await fh.writeFile(text)
      await fh.sync()
    } finally {
      await fh.close()
    }
    await chmod(tmp, mode) // the umask may have narrowed the mode, or an old tmp file kept other bits
    await rename(tmp, path)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
  const dir = await open(dirname(path), 'r')
  try {
    await dir.sync()
  } finally {
    await dir.close()
  }
}

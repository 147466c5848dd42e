// The blob segment files: bodies read back byte for byte whether they come from the recent-bodies memory or
// from the file, whole, in ranges and into a caller's buffer; what a caller gets is its own copy.

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { it } from 'node:test'
import { BlobFiles, RECENT_BODY_BYTES_MAX, RECENT_BYTES_MAX, sha256Hex } from '../../store/blobs.ts'
import type { BlobLocation } from '../../store/blobs.ts'
import { tempDir } from '../helpers/tmp.ts'

it('reads bodies back from memory and from the file alike, and hands out copies', async t => {
  const dir = await tempDir(t, 'mailgrid-blobs-')
  const files = new BlobFiles(join(dir, 'blobs'))
  await files.start()
  const bodies: Buffer[] = []
  const locs: BlobLocation[] = []
  // more than the memory keeps, so the first ones come from the file; one larger than a kept body may be
  let total = 0
  while (total < RECENT_BYTES_MAX + 2 * 1024 * 1024) {
    const b = randomBytes(bodies.length === 3 ? RECENT_BODY_BYTES_MAX + 1 : 1 + Math.floor(Math.random() * 200_000))
    bodies.push(b)
    locs.push(await files.append(sha256Hex(b), b))
    total += b.length
  }
  await files.sync()
  const check = async (): Promise<void> => {
    for (const [i, b] of bodies.entries()) {
      assert.ok((await files.read(locs[i])).equals(b), `body ${i} whole`)
      const start = Math.floor(b.length / 3)
      assert.ok((await files.read(locs[i], start, start + 100)).equals(b.subarray(start, start + 100)), `body ${i} range`)
      const into = Buffer.alloc(b.length + 7, 0x2e)
      await files.read(locs[i], 0, b.length, into, 7)
      assert.ok(into.subarray(7).equals(b) && into.subarray(0, 7).equals(Buffer.alloc(7, 0x2e)), `body ${i} into a buffer at an offset`)
    }
  }
  await check()
  // a caller that changes what it got changes nothing for the next reader
  const last = locs.length - 1
  const got = await files.read(locs[last])
  got.fill(0)
  assert.ok((await files.read(locs[last])).equals(bodies[last]))
  // after a restart everything comes from the files
  await files.stop()
  await files.start()
  await check()
  await files.stop()
})

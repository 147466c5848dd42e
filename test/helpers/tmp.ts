// Temporary directories for tests, removed when the test ends.

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'

/**
 * node:test runs a context's `after` hooks in the order they were registered, so this removal runs before the
 * hooks a test adds later (stopping the nodes it started in `dir`): a node still writing can create a file while
 * the tree is removed (ENOTEMPTY). The removal is retried, and a test that starts nodes should register their stop
 * before calling this where it can.
 */
export async function tempDir (t: TestContext | { after: (fn: () => Promise<void>) => void }, prefix = 'mailgrid-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.after(async () => { await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }) })
  return dir
}

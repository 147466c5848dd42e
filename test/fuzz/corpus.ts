// The seed corpus: every file under test/fuzz/corpus/<target>/ is one valid (or deliberately hostile) input
// the mutator starts from. Regression inputs live in test/fuzz/regressions.test.ts, not here.

import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

const CORPUS_DIR = join(import.meta.dirname, 'corpus')

export function loadCorpus (name: string): Buffer[] {
  const dir = join(CORPUS_DIR, name)
  return readdirSync(dir).sort().map(f => readFileSync(join(dir, f)))
}

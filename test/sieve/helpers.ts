// Shared by the Sieve tests: build messages, an in-memory environment, and run a script in one call.

import assert from 'node:assert/strict'
import { compileSieve, runSieve } from '../../node/sieve/index.ts'
import type { CompileResult, SieveEnvironment, SieveLimits, SieveMessage, SieveOutcome } from '../../node/sieve/index.ts'

export function message (header: string, body = 'Hello.\r\n', envelope: Partial<SieveMessage['envelope']> = {}): SieveMessage {
  const raw = Buffer.from(header.trim().split('\n').map(l => l.replace(/\r$/, '')).join('\r\n') + '\r\n\r\n' + body)
  return { raw, size: raw.length, envelope: { from: 'sender@example.org', to: 'user@example.com', ...envelope } }
}

/** An environment whose memory is a Map (what the integration keeps in the user's replicated data). */
export function environment (over: Partial<SieveEnvironment> & { mailboxes?: string[], scripts?: Record<string, string>, memory?: Map<string, number> } = {}): SieveEnvironment & { memory: Map<string, number> } {
  const memory = over.memory ?? new Map<string, number>()
  const mailboxes = new Set(over.mailboxes ?? ['INBOX'])
  const now = over.now ?? new Date('2026-12-05T10:00:00Z')
  return {
    now,
    user: 'user@example.com',
    domain: 'example.com',
    host: 'mx1.example.com',
    mailboxExists: name => mailboxes.has(name),
    seen: async (kind, key, seconds) => {
      const at = memory.get(`${kind}:${key}`)
      return at !== undefined && now.getTime() - at < seconds * 1000
    },
    resolveInclude: over.scripts === undefined ? undefined : (name, location) => over.scripts?.[`${location}:${name}`] ?? null,
    ...over,
    memory
  }
}

/** What the integration does after carrying out an outcome: record its memory. */
export function remember (env: { memory: Map<string, number>, now: Date }, outcome: SieveOutcome): void {
  for (const m of outcome.memory) env.memory.set(`${m.kind}:${m.key}`, env.now.getTime())
}

export function compileOk (source: string, opts: Parameters<typeof compileSieve>[1] = {}): Extract<CompileResult, { ok: true }> {
  const r = compileSieve(source, opts)
  if (!r.ok) assert.fail(`compile failed: ${JSON.stringify(r.errors)}`)
  return r
}

export function compileErr (source: string, opts: Parameters<typeof compileSieve>[1] = {}): Extract<CompileResult, { ok: false }>['errors'] {
  const r = compileSieve(source, opts)
  if (r.ok) assert.fail(`expected a compile error for: ${source.slice(0, 200)}`)
  return r.errors
}

export async function run (source: string, msg: SieveMessage, env: SieveEnvironment = environment(), limits?: Partial<SieveLimits>): Promise<SieveOutcome> {
  const c = compileOk(source, limits === undefined ? {} : { limits })
  return await runSieve(c.script, msg, env)
}

/** The folders an outcome files into, as "mailbox[flags]" strings, sorted. */
export function folders (o: SieveOutcome): string[] {
  return o.keep.map(k => k.flags.length === 0 ? k.mailbox : `${k.mailbox}[${k.flags.join(' ')}]`).sort()
}

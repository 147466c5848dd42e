// The configuration loader (appliance/config.ts): resolveConfig with random TOML (from a grammar of the real
// options with values of every TOML type, plus mutations of the sample file) and random MAILGRID_* variables.
// The only exception allowed out is ConfigError (the operator's message listing every bad key); a config that
// passes must also turn into a NodeInit (toNodeInit), whose one deliberate refusal is a missing cluster key.
// Input bytes: the TOML text, then optionally a line `#%ENV%` and KEY=VALUE lines (the environment).

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import { ConfigError, envName, OPTIONS, resolveConfig, toNodeInit } from '../../../appliance/config.ts'
import type { FuzzInput, FuzzTarget } from '../engine.ts'
import { loadCorpus } from '../corpus.ts'

const ENV_MARK = '\n#%ENV%\n'
const TLS = { key: 'k', cert: 'c' }
const NO_INTERFACES = { lo: [] }

export function splitInput (data: Buffer): { toml: string, env: Record<string, string> } {
  const text = data.toString('utf8')
  const at = text.indexOf(ENV_MARK)
  if (at === -1) return { toml: text, env: {} }
  const env: Record<string, string> = {}
  for (const line of text.slice(at + ENV_MARK.length).split('\n')) {
    const eq = line.indexOf('=')
    if (eq > 0) env[line.slice(0, eq)] = line.slice(eq + 1)
  }
  return { toml: text.slice(0, at), env }
}

export function runConfig ({ data, knob }: FuzzInput): void {
  const { toml, env } = splitInput(data)
  let resolved
  try {
    resolved = resolveConfig({ toml, file: 'fuzz.toml', env, ...((knob & 1) === 0 ? {} : { flags: { dataDir: '/tmp/x' } }) })
  } catch (err) {
    if (err instanceof ConfigError) {
      if (err.problems.length === 0) throw new Error('ConfigError without problems')
      return
    }
    throw err
  }
  for (const w of resolved.warnings) if (typeof w !== 'string') throw new Error('a warning that is not text')
  try {
    toNodeInit(resolved.config, TLS, 'fuzz.example', { interfaces: NO_INTERFACES, ...((knob & 2) === 0 ? {} : { clusterKey: 'k'.repeat(32) }) })
  } catch (err) {
    if (err instanceof Error && err.message.startsWith('the grid needs a cluster key')) return
    throw err
  }
}

const tomlString = fc.oneof(
  fc.constantFrom('""', '"127.0.0.1"', '"::"', '"0.0.0.0"', '"localhost"', '"mx.example.org"', '"./data"', '"/ip4/10.0.0.1/tcp/7946"', '"debug"', '"smtp://relay:25"',
    '"http://127.0.0.1:11333"', '"[::1]:53"', '"1.1.1.1"', '"a-very-long-cluster-key-0123456789"', "'literal'", '"""multi\nline"""', '"\\u00e9"', '"\\uD800"', '"bad\\q"'),
  fc.string({ maxLength: 20 }).map(s => JSON.stringify(s))
)
const tomlScalar = fc.oneof(
  tomlString,
  fc.integer({ min: -70000, max: 70000 }).map(String),
  fc.constantFrom('0', '-1', '65535', '65536', '9007199254740993', '99999999999999999999', '0x10', '0o7', '0b1', '1_000', '1e3', '1.5', 'inf', '-inf', 'nan', '+0', '1979-05-27T07:32:00Z', '07:32:00', '1979-05-27', 'true', 'false'),
  fc.double().map(String)
)
const tomlValue: fc.Arbitrary<string> = fc.letrec<{ v: string }>(tie => ({
  v: fc.oneof(
    { depthSize: 'small' },
    { weight: 5, arbitrary: tomlScalar },
    { weight: 1, arbitrary: fc.array(tie('v'), { maxLength: 3 }).map(xs => `[${xs.join(', ')}]`) },
    { weight: 1, arbitrary: fc.array(fc.tuple(fc.constantFrom('a', 'host', 'port', '"q"', 'x.y'), tie('v')), { maxLength: 2 }).map(kv => `{ ${kv.map(([k, v]) => `${k} = ${v}`).join(', ')} }`) }
  )
})).v

const optionPath = fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...OPTIONS.map(o => o.path)) }, { weight: 1, arbitrary: fc.constantFrom('unknown', 'listen.smtp.bogus', 'limits', 'grid', 'a.b.c.d', '__proto__', 'listen.__proto__.port', 'constructor.prototype', 'limits.toString') })

/** A TOML document: dotted keys at the top, or [table] headers with their keys. */
const tomlDoc = fc.array(fc.tuple(optionPath, tomlValue, fc.boolean()), { maxLength: 8 }).map(entries => entries.map(([path, value, asTable]) => {
  const dot = path.lastIndexOf('.')
  return asTable && dot > 0 ? `[${path.slice(0, dot)}]\n${path.slice(dot + 1)} = ${value}\n` : `${path} = ${value}\n`
}).join(''))

const envValue = fc.oneof(fc.constantFrom('', ' ', '0', '1', 'yes', 'true', '65536', '-5', '1.5', '2525', '127.0.0.1', '::1', 'a,b', '/ip4/1.2.3.4/tcp/1,', 'smtp://x', 'x'.repeat(2000), 'debug', 'trace'), fc.string({ maxLength: 12 }))
const envBlock = fc.array(fc.tuple(fc.oneof(fc.constantFrom(...OPTIONS.map(o => envName(o.path))), fc.constantFrom('MAILGRID_BOGUS', 'MAILGRID_CONFIG', 'PATH')), envValue), { maxLength: 5 })
  .map(kv => kv.length === 0 ? '' : ENV_MARK + kv.map(([k, v]) => `${k}=${v.replace(/\n/g, ' ')}`).join('\n'))

export const config: FuzzTarget = {
  name: 'config',
  grammar: fc.tuple(tomlDoc, envBlock).map(([t, e]) => Buffer.from(t + e, 'utf8')),
  corpus: [readFileSync(join(import.meta.dirname, '../../../appliance/mailgrid.sample.toml')), ...loadCorpus('config')],
  dictionary: ['[', ']', '[[', ']]', ' = ', '"', "'", '"""', '{', '}', ',', '.', '\n', '#', '\\u', 'true', '1979-05-27T00:00:00Z', 'inf', 'nan', '0x', ENV_MARK, 'MAILGRID_SMTP_PORT=', '[grid]\n', '[listen.smtp]\n'],
  inputBytesMax: 64 * 1024,
  run: runConfig
}

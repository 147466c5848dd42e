// The IMAP wire parser and tokenizer (node/imap/protocol): every input is parsed twice, in one push and in
// chunks the knob picks (byte by byte, random sizes), and the two event lists must be equal, as Dovecot's
// resumable-parser tests demand. Beyond "no exception", each event is checked against the limits: nesting,
// tokens per command, literal sizes and chunks, tags.

import { ImapParser } from '../../../node/imap/protocol/parser.ts'
import { COMMAND_TOKENS_MAX, LITERAL_CHUNK_BYTES, NESTING_DEPTH_MAX, TAG_BYTES_MAX } from '../../../node/imap/protocol/constants.ts'
import type { ParserEvent, Token } from '../../../node/imap/protocol/types.ts'
import { rng } from '../engine.ts'
import type { FuzzInput, FuzzTarget } from '../engine.ts'
import { IMAP_DICTIONARY, sessionArb } from '../grammars/imap.ts'
import { loadCorpus } from '../corpus.ts'

/** Events a parser may yield for one input before we call it a loop. */
const EVENTS_PER_INPUT_MAX = 200_000
/**
 * Errors after which parsing of one input stops, as the session stops at BAD_COMMANDS_MAX (20): each BAD
 * costs a few microseconds (an Error with its stack), so 256 KiB of empty lines would otherwise read as a hang.
 */
const ERRORS_PER_INPUT_MAX = 1000

function tokenDepth (tokens: Token[], depth: number, count: { n: number }): number {
  let max = depth
  for (const t of tokens) {
    count.n++
    if (t.type === 'list') max = Math.max(max, tokenDepth(t.items, depth + 1, count))
    if (t.type === 'atom' && t.section !== undefined) max = Math.max(max, tokenDepth(t.section, depth + 1, count))
    if (t.type === 'literal') {
      const sum = t.chunks.reduce((s, c) => s + c.length, 0)
      if (sum !== t.size) throw new Error(`literal of ${t.size} bytes holds ${sum}`)
      if (t.chunks.some(c => c.length > LITERAL_CHUNK_BYTES)) throw new Error('literal chunk over LITERAL_CHUNK_BYTES')
    }
  }
  return max
}

/** A comparable, checked form of one event. */
function view (event: ParserEvent): unknown {
  if (event.type !== 'command') return event
  const { tag, name, args, bytes } = event.command
  const count = { n: 0 }
  const depth = tokenDepth(args, 0, count)
  if (depth > NESTING_DEPTH_MAX + 1) throw new Error(`tokens nested ${depth} deep`)
  if (count.n > COMMAND_TOKENS_MAX) throw new Error(`${count.n} tokens in one command`)
  if (tag.length === 0 || tag.length > TAG_BYTES_MAX) throw new Error(`tag of ${tag.length} bytes`)
  return JSON.stringify({ tag, name, args, bytes }, (_k, v: unknown) => (v !== null && typeof v === 'object' && (v as { type?: string }).type === 'Buffer') ? Buffer.from((v as { data: number[] }).data).toString('base64') : v)
}

function parse (data: Buffer, chunkSize: (() => number) | null, init: { literalPlus: boolean, literalBytesMax: number }): unknown[] {
  const parser = new ImapParser(init)
  const out: unknown[] = []
  let errors = 0
  const drain = (): void => {
    for (;;) {
      if (errors >= ERRORS_PER_INPUT_MAX) return
      const event = parser.next()
      if (event.type === 'need') return
      if (event.type === 'error') errors++
      out.push(view(event))
      if (out.length > EVENTS_PER_INPUT_MAX) throw new Error('parser does not settle')
      // what the session does: IDLE and AUTHENTICATE read their next line raw
      if (event.type === 'command' && (event.command.name === 'IDLE' || event.command.name === 'AUTHENTICATE')) parser.expectLine()
    }
  }
  if (chunkSize === null) {
    parser.push(data)
    drain()
  } else {
    for (let off = 0; off < data.length && errors < ERRORS_PER_INPUT_MAX;) {
      const n = Math.max(1, chunkSize())
      parser.push(data.subarray(off, off + n))
      off += n
      drain()
    }
  }
  drain()
  if (parser.bufferedBytes < 0) throw new Error('negative bufferedBytes')
  return out
}

export function runImapParser ({ data, knob }: FuzzInput): void {
  const r = rng(knob)
  const init = { literalPlus: (knob & 1) === 0, literalBytesMax: (knob & 2) === 0 ? 64 * 1024 * 1024 : 8 * 1024 }
  const whole = parse(data, null, init)
  const byteByByte = data.length <= 4096 && (knob & 4) === 0
  const chunked = parse(data, byteByByte ? () => 1 : () => 1 + r.int(r.next() < 0.5 ? 8 : 4096), init)
  if (whole.length !== chunked.length) throw new Error(`chunking changed the events: ${whole.length} whole, ${chunked.length} chunked`)
  for (let i = 0; i < whole.length; i++) {
    const a = JSON.stringify(whole[i])
    const b = JSON.stringify(chunked[i])
    if (a !== b) throw new Error(`chunking changed event ${i}: ${a.slice(0, 200)} / ${b.slice(0, 200)}`)
  }
}

export const imapParser: FuzzTarget = {
  name: 'imap-parser',
  grammar: sessionArb,
  corpus: loadCorpus('imap'),
  dictionary: IMAP_DICTIONARY,
  inputBytesMax: 256 * 1024,
  run: runImapParser
}

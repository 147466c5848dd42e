// The POP3 codec (node/pop3/codec.ts): the line reader fed in random chunks against one push, every line
// through parseCommand and parseNumber, and the two multi-line writers checked by their inverse: what
// DotStuffer emits unstuffs to the input (bare LF sent as CRLF), chunking changes nothing, and TopFilter
// emits a prefix of the message that is the same whatever the chunking.

import fc from 'fast-check'
import { DotStuffer, LineReader, parseCommand, parseNumber, TopFilter } from '../../../node/pop3/codec.ts'
import { rng } from '../engine.ts'
import type { FuzzInput, FuzzTarget } from '../engine.ts'
import { loadCorpus } from '../corpus.ts'

const DISCARD_BYTES_MAX = 64 * 1024

function chunks (data: Buffer, r: { int: (n: number) => number, next: () => number }): Buffer[] {
  const out: Buffer[] = []
  for (let off = 0; off < data.length;) {
    // tiny chunks split CRLF pairs and dots from their line starts; on big inputs they only cost time
    const n = 1 + r.int(r.next() < 0.5 && data.length <= 8192 ? 4 : 2048)
    out.push(data.subarray(off, off + n))
    off += n
  }
  return out
}

type Taken = { type: string, line?: string }

function readLines (parts: Buffer[], maxBytes: number): Taken[] {
  const reader = new LineReader(DISCARD_BYTES_MAX)
  const out: Taken[] = []
  for (const part of parts) {
    reader.push(Buffer.from(part))
    for (;;) {
      const t = reader.take(maxBytes)
      if (t === null) break
      if (t.type === 'line') {
        if (t.line.length >= maxBytes) throw new Error(`a line of ${t.line.length} bytes passed a limit of ${maxBytes}`)
        if (t.line.includes(0x0a)) throw new Error('a line holds LF')
        out.push({ type: 'line', line: t.line.toString('latin1') })
        const command = parseCommand(t.line)
        if (command !== null) {
          if (!/^[A-Z]{3,4}$/.test(command.keyword)) throw new Error(`keyword ${JSON.stringify(command.keyword)}`)
          for (const a of command.args) {
            if (a === '' || a.includes(' ')) throw new Error(`argument ${JSON.stringify(a)}`)
            const n = parseNumber(a)
            if (n !== null && (!Number.isSafeInteger(n) || n < 0)) throw new Error(`number ${n} from ${a}`)
          }
        }
      } else {
        out.push({ type: t.type })
        if (t.type === 'flood') return out
      }
    }
    if (reader.buffered > maxBytes + part.length) throw new Error(`${reader.buffered} bytes buffered with a ${maxBytes}-byte limit`)
  }
  return out
}

/** The multi-line response RFC 1939 section 3 asks for, built the slow way: bare LF sent as CRLF, a last line
 * completed, a dot before each line that starts with one, then the terminating dot line. */
function expectedWire (data: Buffer): string {
  let t = data.toString('latin1').replace(/(?<!\r)\n/g, '\r\n')
  if (t !== '' && !t.endsWith('\n')) t += t.endsWith('\r') ? '\n' : '\r\n'
  return t.split('\n').map(l => l.startsWith('.') ? '.' + l : l).join('\n') + '.\r\n'
}

export function runPop3 ({ data, knob }: FuzzInput): void {
  const r = rng(knob)
  const maxBytes = [512, 64, 255, 1 + r.int(100)][knob & 3]!
  const parts = chunks(data, r)
  // lines: chunking may only turn an overlong line into a flood (its LF not yet seen), never change a line
  const whole = readLines([data], maxBytes)
  const split = readLines(parts, maxBytes)
  const floodAt = split.findIndex(t => t.type === 'flood')
  const comparable = floodAt === -1 ? split : split.slice(0, floodAt)
  for (let i = 0; i < comparable.length; i++) {
    if (JSON.stringify(comparable[i]) !== JSON.stringify(whole[i])) throw new Error(`line ${i} differs with chunking`)
  }
  if (floodAt === -1 && whole.length !== split.length && whole.at(-1)?.type !== 'flood') throw new Error('chunking changed the number of lines')

  // byte-stuffing: inverse and chunk-independent
  const stuffer = new DotStuffer()
  const stuffed = Buffer.concat([...parts.map(p => stuffer.push(p)), stuffer.end()])
  const once = new DotStuffer()
  const stuffedWhole = Buffer.concat([once.push(data), once.end()])
  if (!stuffed.equals(stuffedWhole)) throw new Error('dot-stuffing depends on chunking')
  if (stuffed.toString('latin1') !== expectedWire(data)) throw new Error('dot-stuffed output is not the message as RFC 1939 sends it')

  // TOP: a prefix, the same for any chunking
  const lines = r.int(5)
  const top = new TopFilter(lines)
  const topOut = Buffer.concat(parts.map(p => top.push(p)))
  const top2 = new TopFilter(lines)
  const topWhole = top2.push(data)
  if (!topOut.equals(topWhole)) throw new Error('TOP output depends on chunking')
  if (!data.subarray(0, topOut.length).equals(topOut)) throw new Error('TOP output is not a prefix of the message')
}

const commandLine = fc.tuple(
  fc.constantFrom('USER', 'PASS', 'APOP', 'STAT', 'LIST', 'RETR', 'DELE', 'NOOP', 'RSET', 'QUIT', 'TOP', 'UIDL', 'CAPA', 'STLS', 'AUTH', 'UTF8', 'user', 'X'),
  fc.array(fc.oneof(fc.nat({ max: 20 }).map(String), fc.constantFrom('0', '-1', '999999999', '1000000000', '01', '1e3', 'alice@example.com', 'PLAIN', '=', 'pässwörd', '')), { maxLength: 3 }),
  fc.constantFrom('\r\n', '\r\n', '\n', '', '\r', '  \r\n')
).map(([k, args, end]) => [k, ...args].join(' ') + end)

const messageLine = fc.oneof(fc.constantFrom('.', '..', '.x', '', 'Subject: hi', 'body', '\r'), fc.string({ maxLength: 20 }))
const message = fc.tuple(fc.array(messageLine, { maxLength: 12 }), fc.constantFrom('\r\n', '\n'))
  .map(([lines, nl]) => lines.join(nl))

export const pop3: FuzzTarget = {
  name: 'pop3',
  grammar: fc.oneof(fc.array(commandLine, { minLength: 1, maxLength: 10 }).map(ls => ls.join('')), message).map(s => Buffer.from(s, 'utf8')),
  corpus: loadCorpus('pop3'),
  dictionary: ['\r\n', '\n', '.\r\n', '\r\n.', '..', 'USER ', 'PASS ', 'TOP 1 ', 'RETR ', 'AUTH PLAIN\r\n', '\r', '\u0000'],
  inputBytesMax: 128 * 1024,
  run: runPop3
}

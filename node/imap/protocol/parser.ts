/**
 * Resumable IMAP command parser (client → server), in the manner of Dovecot's imap-parser:
 * feed it any chunking of the byte stream with push(), then call next() until it answers
 * `need`. It assembles one command from line segments and literals, enforcing every limit as
 * bytes arrive, so a hostile client costs bounded memory: an overlong line is refused before it
 * is stored, a literal is refused from its announced size before one byte of it is read.
 *
 * Grammar: RFC 3501 section 9 and RFC 9051 section 9, with literal8 from RFC 3516 and the
 * non-synchronising literals of RFC 7888 (LITERAL+ / LITERAL-).
 */
import {
  COMMAND_LITERAL_BYTES_MAX,
  COMMAND_LITERALS_MAX,
  CONTINUATION_LINE_BYTES_MAX,
  LINE_BYTES_MAX,
  LITERAL_BYTES_MAX,
  LITERAL_CHUNK_BYTES,
  LITERAL_MINUS_BYTES_MAX,
  TAG_BYTES_MAX,
} from './constants.ts'
import { tokenize, TokenizeError, readTag } from './tokenizer.ts'
import type { LiteralToken, ParserError, ParserEvent } from './types.ts'

export interface ParserInit {
  /** Largest literal accepted now; the session lowers it before authentication. */
  literalBytesMax?: number
  /** true: LITERAL+ (any non-synchronising size up to the limit); false: LITERAL- (4096 octets). */
  literalPlus?: boolean
}

/** A literal announcement at the very end of a line segment: `{12}`, `{12+}`, `~{12}`. */
const LITERAL_MARKER = /(~?)\{(\d{1,20})(\+?)\}$/

const LF = 0x0a
const CR = 0x0d

interface PendingLiteral {
  token: LiteralToken
  remaining: number
  current: Buffer | null
  currentFill: number
}

export class ImapParser {
  /** Mutable on purpose: the session raises it after authentication. */
  literalBytesMax: number
  literalPlus: boolean

  #input: Buffer = Buffer.alloc(0)
  #pos = 0
  #lineParts: Buffer[] = []
  #lineBytes = 0
  /** The command being assembled: text segments with the literals that follow each. */
  #texts: Buffer[] = []
  #literals: LiteralToken[] = []
  #commandBytes = 0
  #literalBytes = 0
  #literal: PendingLiteral | null = null
  #lineMode = false
  /** After a fatal error nothing more is parsed. */
  #dead = false

  constructor (init: ParserInit = {}) {
    this.literalBytesMax = init.literalBytesMax ?? LITERAL_BYTES_MAX
    this.literalPlus = init.literalPlus ?? true
  }

  push (chunk: Uint8Array): void {
    if (this.#dead || chunk.length === 0) return
    const data = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
    if (this.#pos >= this.#input.length) {
      this.#input = data
    } else {
      this.#input = Buffer.concat([this.#input.subarray(this.#pos), data])
    }
    this.#pos = 0
  }

  /** The next line is read raw (IDLE's DONE, an AUTHENTICATE response), not as a command. */
  expectLine (): void {
    this.#lineMode = true
  }

  /** Hands back unread bytes and forgets them (STARTTLS discards them; COMPRESS inflates them). */
  takeBuffered (): Buffer {
    const rest = this.#input.subarray(this.#pos)
    this.#input = Buffer.alloc(0)
    this.#pos = 0
    const parts = [...this.#lineParts, rest]
    this.#lineParts = []
    this.#lineBytes = 0
    return Buffer.concat(parts)
  }

  /** Bytes held for the command being read: what a hostile client can make us keep. */
  get bufferedBytes (): number {
    return this.#input.length - this.#pos + this.#lineBytes + this.#literalBytes
  }

  next (): ParserEvent {
    if (this.#dead) return { type: 'need' }
    for (;;) {
      if (this.#literal !== null) {
        if (!this.#readLiteral()) return { type: 'need' }
        continue
      }
      const line = this.#readLine(this.#lineMode ? CONTINUATION_LINE_BYTES_MAX : LINE_BYTES_MAX)
      if (line === null) return { type: 'need' }
      if (!Buffer.isBuffer(line)) return line
      if (this.#lineMode) {
        this.#lineMode = false
        return { type: 'line', line: line.toString('utf8') }
      }
      const event = this.#onSegment(line)
      if (event !== null) return event
    }
  }

  /** Reads up to LF. Returns the line without CRLF, null when more bytes are needed, or an error. */
  #readLine (max: number): Buffer | ParserError | null {
    const lf = this.#input.indexOf(LF, this.#pos)
    if (lf === -1) {
      const available = this.#input.length - this.#pos
      if (this.#lineBytes + available > max + 1) {
        // the tag from the line's first bytes, however they were chunked (not from its first chunk alone)
        const start = Buffer.concat([...this.#lineParts.slice(0, TAG_BYTES_MAX + 1), this.#input.subarray(this.#pos, this.#pos + TAG_BYTES_MAX + 1)])
        return this.#fatal('Line too long', this.#texts.length === 0 && !this.#lineMode ? readTag(start) : null, 'TOOBIG')
      }
      if (available > 0) {
        this.#lineParts.push(Buffer.from(this.#input.subarray(this.#pos)))
        this.#lineBytes += available
      }
      this.#input = Buffer.alloc(0)
      this.#pos = 0
      return null
    }
    const piece = this.#input.subarray(this.#pos, lf)
    this.#pos = lf + 1
    let line = this.#lineParts.length === 0 ? piece : Buffer.concat([...this.#lineParts, piece])
    this.#lineParts = []
    this.#lineBytes = 0
    this.#commandBytes += line.length + 1
    if (line.length > 0 && line[line.length - 1] === CR) line = line.subarray(0, line.length - 1)
    if (line.length > max) return this.#fatal('Line too long', this.#texts.length === 0 && !this.#lineMode ? readTag(line) : null, 'TOOBIG')
    return line
  }

  /** A line segment arrived: either it announces a literal, or it completes the command. */
  #onSegment (segment: Buffer): ParserEvent | null {
    const tail = segment.subarray(Math.max(0, segment.length - 26)).toString('latin1')
    const marker = LITERAL_MARKER.exec(tail)
    if (marker === null) {
      this.#texts.push(segment)
      return this.#finishCommand()
    }
    const binary = marker[1] === '~'
    const size = Number(marker[2])
    const synchronising = marker[3] !== '+'
    this.#texts.push(segment.subarray(0, segment.length - marker[0].length))
    const tag = readTag(this.#texts[0]!)
    const limit = Math.min(this.literalBytesMax, COMMAND_LITERAL_BYTES_MAX - this.#literalBytes)
    if (!synchronising && !this.literalPlus && size > LITERAL_MINUS_BYTES_MAX) {
      // RFC 7888 section 5: under LITERAL- a larger non-synchronising literal is refused with
      // BAD [TOOBIG]; its bytes are already on the way, so the stream cannot be resynchronised.
      return this.#fatal('Non-synchronizing literal too big', tag, 'TOOBIG')
    }
    if (!Number.isSafeInteger(size) || size > limit) {
      if (!synchronising) return this.#fatal('Literal too big', tag, 'TOOBIG')
      // RFC 3501 section 7.5 lets the server refuse instead of sending "+"; RFC 7889 section 4
      // names the code. The client sends no literal bytes, so the next line is a new command.
      this.#resetCommand()
      return { type: 'error', tag, status: 'NO', code: 'TOOBIG', text: 'Literal too big', fatal: false }
    }
    if (this.#literals.length >= COMMAND_LITERALS_MAX) {
      if (!synchronising) return this.#fatal('Too many literals', tag, 'LIMIT')
      this.#resetCommand()
      return { type: 'error', tag, status: 'BAD', code: 'LIMIT', text: 'Too many literals', fatal: false }
    }
    const token: LiteralToken = { type: 'literal', chunks: [], size, binary }
    this.#literals.push(token)
    this.#literalBytes += size
    this.#literal = { token, remaining: size, current: null, currentFill: 0 }
    return synchronising ? { type: 'continue', tag, size } : null
  }

  /** Copies literal bytes into chunks of at most LITERAL_CHUNK_BYTES. Returns true when complete. */
  #readLiteral (): boolean {
    const literal = this.#literal!
    while (literal.remaining > 0) {
      const available = this.#input.length - this.#pos
      if (available === 0) return false
      if (literal.current === null) {
        literal.current = Buffer.allocUnsafe(Math.min(literal.remaining, LITERAL_CHUNK_BYTES))
        literal.currentFill = 0
      }
      const n = Math.min(available, literal.current.length - literal.currentFill)
      this.#input.copy(literal.current, literal.currentFill, this.#pos, this.#pos + n)
      this.#pos += n
      literal.currentFill += n
      literal.remaining -= n
      if (literal.currentFill === literal.current.length) {
        literal.token.chunks.push(literal.current)
        literal.current = null
      }
    }
    this.#commandBytes += literal.token.size
    this.#literal = null
    return true
  }

  #finishCommand (): ParserEvent {
    const texts = this.#texts
    const literals = this.#literals
    const bytes = this.#commandBytes
    this.#resetCommand()
    try {
      return { type: 'command', command: { ...tokenize(texts, literals), bytes } }
    } catch (err) {
      if (err instanceof TokenizeError) {
        return { type: 'error', tag: err.tag, status: 'BAD', ...(err.code === undefined ? {} : { code: err.code }), text: err.message, fatal: false }
      }
      throw err
    }
  }

  #resetCommand (): void {
    this.#texts = []
    this.#literals = []
    this.#commandBytes = 0
    this.#literalBytes = 0
  }

  #fatal (text: string, tag: string | null = null, code?: string): ParserError {
    this.#dead = true
    // Only a command's first segment holds a tag: a line read raw (an AUTHENTICATE response) has none, and
    // must not be echoed back as one.
    const firstText = this.#texts[0]
    const readable = tag ?? (firstText === undefined ? null : readTag(firstText))
    this.#resetCommand()
    this.#lineParts = []
    this.#lineBytes = 0
    this.#input = Buffer.alloc(0)
    this.#pos = 0
    return { type: 'error', tag: readable, status: 'BAD', ...(code === undefined ? {} : { code }), text, fatal: true }
  }
}

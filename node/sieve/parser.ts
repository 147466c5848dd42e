// The grammar of RFC 5228 section 8.2 over the lexer's tokens: commands, arguments, tests, test lists and
// blocks. Stops at the first error (a Sieve script is either valid or refused) and never throws: lexical and
// syntax errors come back as SieveError with the byte position of the offending token. Nesting is bounded
// while parsing, so a hostile script cannot exhaust the stack.

import type { Arg, CommandNode, Pos, StringArg, TestNode } from './ast.ts'
import { Lexer, LexError } from './lexer.ts'
import type { Token } from './lexer.ts'
import type { SieveError } from './types.ts'

export type ParseResult = { ok: true, commands: CommandNode[] } | { ok: false, error: SieveError }

class ParseError extends Error {
  readonly pos: Pos
  constructor (message: string, pos: Pos) {
    super(message)
    this.pos = pos
  }
}

function describe (t: Token): string {
  switch (t.kind) {
    case 'eof': return 'the end of the script'
    case 'identifier': return `identifier "${t.text}"`
    case 'tag': return `tag ":${t.text}"`
    case 'number': return `number ${t.value}`
    case 'string': return 'a string'
    case 'punct': return `'${t.text}'`
  }
}

export interface ParseLimits {
  nestingDepthMax: number
  stringListMax: number
}

class Parser {
  private readonly lexer: Lexer
  private tok: Token
  private readonly limits: ParseLimits

  constructor (src: Buffer, limits: ParseLimits) {
    this.lexer = new Lexer(src)
    this.limits = limits
    this.tok = this.lexer.next()
  }

  private advance (): Token {
    const t = this.tok
    this.tok = this.lexer.next()
    return t
  }

  private isPunct (p: string): boolean {
    return this.tok.kind === 'punct' && this.tok.text === p
  }

  private deeper (depth: number, at: Pos): number {
    if (depth + 1 > this.limits.nestingDepthMax) throw new ParseError(`nesting too deep (the limit is ${this.limits.nestingDepthMax} levels of blocks and tests)`, at)
    return depth + 1
  }

  /** start = commands, up to the end of the script. */
  script (): CommandNode[] {
    const commands = this.commands(0)
    if (this.tok.kind !== 'eof') throw new ParseError(`expected a command, found ${describe(this.tok)}`, this.tok.pos)
    return commands
  }

  private commands (depth: number): CommandNode[] {
    const out: CommandNode[] = []
    while (this.tok.kind === 'identifier') out.push(this.command(depth))
    return out
  }

  private command (depth: number): CommandNode {
    const id = this.advance()
    const { args, tests, testList } = this.arguments(depth, id)
    if (this.isPunct(';')) {
      this.advance()
      return { name: id.text, pos: id.pos, args, tests, testList, block: null }
    }
    if (this.isPunct('{')) {
      const open = this.advance()
      const inner = this.deeper(depth, open.pos)
      const block = this.commands(inner)
      if (!this.isPunct('}')) {
        const what = this.tok.kind === 'eof' ? `'}' to close the block opened at line ${open.pos.line} column ${open.pos.column}` : "'}' or a command"
        throw new ParseError(`expected ${what}, found ${describe(this.tok)}`, this.tok.pos)
      }
      this.advance()
      return { name: id.text, pos: id.pos, args, tests, testList, block }
    }
    throw new ParseError(`expected ';' or '{' after "${id.text}" and its arguments, found ${describe(this.tok)}`, this.tok.pos)
  }

  /** arguments = *argument [ test / test-list ] */
  private arguments (depth: number, owner: Token): { args: Arg[], tests: TestNode[], testList: boolean } {
    const args: Arg[] = []
    for (;;) {
      const t = this.tok
      if (t.kind === 'tag') {
        this.advance()
        args.push({ kind: 'tag', name: t.text, pos: t.pos })
      } else if (t.kind === 'number') {
        this.advance()
        args.push({ kind: 'number', value: t.value, pos: t.pos })
      } else if (t.kind === 'string') {
        this.advance()
        args.push({ kind: 'string', value: t.text, multiline: t.multiline, pos: t.pos })
      } else if (this.isPunct('[')) {
        args.push(this.stringList())
      } else {
        break
      }
    }
    if (this.tok.kind === 'identifier') {
      const inner = this.deeper(depth, this.tok.pos)
      return { args, tests: [this.test(inner)], testList: false }
    }
    if (this.isPunct('(')) {
      const open = this.advance()
      const inner = this.deeper(depth, open.pos)
      const tests = [this.test(inner)]
      while (this.isPunct(',')) {
        this.advance()
        tests.push(this.test(inner))
      }
      if (!this.isPunct(')')) throw new ParseError(`expected ',' or ')' in the test list of "${owner.text}", found ${describe(this.tok)}`, this.tok.pos)
      this.advance()
      return { args, tests, testList: true }
    }
    return { args, tests: [], testList: false }
  }

  private test (depth: number): TestNode {
    if (this.tok.kind !== 'identifier') throw new ParseError(`expected a test, found ${describe(this.tok)}`, this.tok.pos)
    const id = this.advance()
    const { args, tests, testList } = this.arguments(depth, id)
    return { name: id.text, pos: id.pos, args, tests, testList }
  }

  private stringList (): Arg {
    const open = this.advance()
    const items: StringArg[] = []
    for (;;) {
      const t = this.tok
      if (t.kind !== 'string') throw new ParseError(`expected a string in the string list, found ${describe(t)}`, t.pos)
      this.advance()
      items.push({ kind: 'string', value: t.text, multiline: t.multiline, pos: t.pos })
      if (items.length > this.limits.stringListMax) throw new ParseError(`too many strings in a list (the limit is ${this.limits.stringListMax})`, t.pos)
      if (this.isPunct(']')) { this.advance(); break }
      if (!this.isPunct(',')) throw new ParseError(`expected ',' or ']' in the string list, found ${describe(this.tok)}`, this.tok.pos)
      this.advance()
    }
    return { kind: 'list', items, pos: open.pos }
  }
}

export function parseSieve (src: Buffer, limits: ParseLimits): ParseResult {
  try {
    return { ok: true, commands: new Parser(src, limits).script() }
  } catch (err) {
    if (err instanceof ParseError || err instanceof LexError) {
      return { ok: false, error: { line: err.pos.line, column: err.pos.column, offset: err.pos.offset, message: err.message } }
    }
    throw err
  }
}

// The syntax tree of a Sieve script (RFC 5228 section 8.2), with the byte position of every node so that
// errors found by the validator and the interpreter point at the script's source.

export interface Pos {
  offset: number // 0-based byte offset in the UTF-8 source
  line: number // 1-based
  column: number // 1-based, in bytes of the line
}

export interface TagArg { kind: 'tag', name: string /* lower-cased, without ':' */, pos: Pos }
export interface NumberArg { kind: 'number', value: number, pos: Pos }
export interface StringArg { kind: 'string', value: string, multiline: boolean, pos: Pos }
export interface ListArg { kind: 'list', items: StringArg[], pos: Pos }
export type Arg = TagArg | NumberArg | StringArg | ListArg

export interface TestNode {
  name: string // lower-cased identifier
  pos: Pos
  args: Arg[]
  tests: TestNode[]
  testList: boolean // the tests were written as a parenthesised test-list
}

export interface CommandNode {
  name: string
  pos: Pos
  args: Arg[]
  tests: TestNode[]
  testList: boolean
  block: CommandNode[] | null // null: the command ended with ';'
}

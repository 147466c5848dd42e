// The validated form of a script that the interpreter runs: arguments sorted into tags and positionals,
// strings split into literal text and variable references, comparator and match type resolved.

import type { Pos } from './ast.ts'

/** A part of a string: literal text, a variable (lower-cased name, `global.` prefix removed), or a match variable. */
export type Part = string | { v: string, g: boolean /* written as global.name */ } | { m: number }

export interface VString {
  pos: Pos
  parts: Part[]
  constant: string | null // the value when no part is a variable
}

export type VArg =
  | { t: 's', s: VString, pos: Pos }
  | { t: 'l', items: VString[], pos: Pos }
  | { t: 'n', n: number, pos: Pos }

export interface Node {
  name: string
  pos: Pos
  tags: Map<string, VArg | null>
  args: VArg[]
  tests: Node[]
  block: Node[] | null
  comparator: string // 'i;ascii-casemap' unless :comparator says otherwise
  match: string // 'is' unless a match-type tag says otherwise
  relop: string | null // :count/:value operator
}

export interface IncludeRef { location: 'personal' | 'global', name: string }

export interface Program {
  name: string | null // null: the main script
  location: 'personal' | 'global' | null
  commands: Node[]
  requires: Set<string>
  variables: boolean // variables are expanded (require "variables")
  /** Includes resolved at compile time, by `${location}:${name}`. */
  includes: Map<string, Program | null>
}

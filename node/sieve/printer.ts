// Prints a parsed script back as Sieve source: used by tests (a printed script parses to the same tree) and
// by whoever generates scripts from a tree (the admin API's vacation and forward rules can build one).
// Strings are written quoted, escaping '"' and '\'; numbers in full; one command per line.

import type { Arg, CommandNode, TestNode } from './ast.ts'

export function quote (s: string): string {
  return `"${s.replace(/[\\"]/g, '\\$&')}"`
}

function arg (a: Arg): string {
  switch (a.kind) {
    case 'tag': return `:${a.name}`
    case 'number': return String(a.value)
    case 'string': return quote(a.value)
    case 'list': return `[${a.items.map(i => quote(i.value)).join(', ')}]`
  }
}

function test (t: TestNode): string {
  return [t.name, ...t.args.map(arg), ...tests(t)].join(' ')
}

function tests (n: TestNode | CommandNode): string[] {
  if (n.tests.length === 0) return []
  if (n.testList) return [`(${n.tests.map(test).join(', ')})`]
  return n.tests.map(test)
}

export function printScript (commands: CommandNode[], indent = ''): string {
  let out = ''
  for (const c of commands) {
    const head = [c.name, ...c.args.map(arg), ...tests(c)].join(' ')
    if (c.block === null) out += `${indent}${head};\n`
    else out += `${indent}${head} {\n${printScript(c.block, indent + '  ')}${indent}}\n`
  }
  return out
}

// Lexer, parser and validator: what compiles, and the exact line:column (in bytes) of what does not.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { compileSieve } from '../../node/sieve/index.ts'
import { compileErr, compileOk } from './helpers.ts'

function at (source: string): string {
  const e = compileErr(source)[0]
  return `${e.line}:${e.column}@${e.offset} ${e.message}`
}

describe('sieve syntax (RFC 5228 2, 8)', () => {
  it('reads the lexical forms: quoted strings with escapes, text: with dot-stuffing, numbers with K/M/G, comments', () => {
    const r = compileOk([
      'require ["fileinto", "variables"]; # comment',
      '/* a bracket',
      '   comment */',
      'set "a" "q\\"uo\\\\te\\d";',
      'set "b" text: # trailing comment',
      'line one',
      '..dotted',
      '.',
      ';',
      'if size :over 1K { discard; } elsif size :under 2m { keep; } else { fileinto "x"; }',
      'if header :is "x" text:',
      '.',
      '{ stop; }'
    ].join('\r\n'))
    assert.deepEqual(r.requires.sort(), ['fileinto', 'variables'])
    const cmds = (r.script.ast as { main: { commands: Array<{ name: string, args: Array<{ t: string, s?: { constant: string }, n?: number }> }> } }).main.commands
    assert.equal(cmds[0].args[1].s?.constant, 'q"uo\\ted') // \d is "d" (RFC 5228 2.4.2)
    assert.equal(cmds[1].args[1].s?.constant, 'line one\r\n.dotted\r\n')
  })

  it('numbers: K = 1024, M, G; case-insensitive', () => {
    const r = compileOk('if size :over 1k { discard; } if size :under 3G { keep; }')
    assert.ok(r.ok)
    assert.match(at('if size :over 99999999999999999999 { discard; }'), /^1:15@14 number too large/)
    assert.match(at('if size :over 10X { discard; }'), /^1:17@16 unexpected 'X' after a number/)
  })

  const errors: Array<[string, string, RegExp]> = [
    ['missing semicolon', 'keep\r\ndiscard;', /^1:1@0 missing ';' after "keep" \("keep" takes no test; found "discard" at line 2 column 1\)/],
    ['unterminated string', 'require "fileinto;\nkeep;', /^1:9@8 unterminated string/],
    ['unterminated block', 'if true {\n  keep;\n', /^3:1@18 expected '}' to close the block opened at line 1 column 9/],
    ['unterminated comment', 'keep; /* never closed', /^1:7@6 unterminated comment/],
    ['text: without a line end', 'set "a" text: x', /^1:15@14 "text:" must be followed by the end of the line/],
    ['unterminated text:', 'require "variables";\nset "a" text:\nabc\n', /^2:9@29 unterminated multi-line string/],
    ['stray byte', 'keep; @', /^1:7@6 unexpected '@'/],
    ['non-ASCII outside strings, column in bytes', 'if true { keep; }\n# é\nkeep; ü', /^3:7@29 unexpected byte 0xc3/],
    ['bad list', 'if header :is ["a" "b"] "c" { keep; }', /^1:20@19 expected ',' or ']' in the string list/],
    ['test list without a comma', 'if anyof (true false) { keep; }', /^1:11@10 "true" takes no test; found "false" at line 1 column 16 \(a missing ',' between tests\?\)/],
    ['unclosed test list', 'if anyof (true, false { keep; }', /^1:23@22 expected ',' or '\)' in the test list of "anyof"/],
    ['tag without name', 'if header : "a" "b" { keep; }', /^1:11@10 a tag is ":" followed by a name/],
    ['unknown command', 'require "fileinto";\nfilein "x";', /^2:1@20 unknown command "filein"/],
    ['extension not required', 'fileinto "x";', /^1:1@0 "fileinto" needs the "fileinto" extension/],
    ['unknown extension', 'require ["fileinto", "x-foo"];', /^1:22@21 unsupported extension "x-foo"/],
    ['require after a command', 'keep;\nrequire "fileinto";', /^2:1@6 "require" must come before any other command/],
    ['elsif without if', 'elsif true { keep; }', /^1:1@0 "elsif" must follow "if" or "elsif"/],
    ['else after a command', 'if true { keep; }\nkeep;\nelse { discard; }', /^3:1@24 "else" must follow "if" or "elsif"/],
    ['if without block', 'if true;', /^1:1@0 "if" needs a block/],
    ['block on an action', 'keep { stop; }', /^1:1@0 "keep" takes no block/],
    ['test used as a command', 'header "a" "b";', /^1:1@0 unknown command "header" \("header" is a test, not a command\)/],
    ['command used as a test', 'if keep { stop; }', /^1:4@3 unknown test "keep"/],
    ['unknown tag', 'if header :foo "a" "b" { keep; }', /^1:11@10 "header" has no tag ":foo"/],
    ['two match types', 'if header :is :contains "a" "b" { keep; }', /^1:15@14 ":contains" cannot be used with ":is"/],
    ['tag after positionals', 'if header "a" :is "b" { keep; }', /^1:15@14 tag ":is" must come before the positional arguments/],
    ['wrong arity', 'if header "a" { keep; }', /^1:4@3 "header" takes 2 positional arguments, found 1/],
    ['list where a string is needed', 'redirect ["a@b.c", "d@e.f"];', /^1:10@9 argument 1 of "redirect" must be a string, found a string list/],
    ['size without :over/:under', 'if size 10 { keep; }', /^1:4@3 "size" needs one of :over or :under/],
    ['unknown comparator', 'if header :comparator "i;foo" "a" "b" { keep; }', /^1:23@22 unknown comparator "i;foo"/],
    ['numeric comparator not required', 'if header :comparator "i;ascii-numeric" "a" "1" { keep; }', /comparator "i;ascii-numeric" needs the "comparator-i;ascii-numeric" extension/],
    ['numeric with :contains', 'require "comparator-i;ascii-numeric";\nif header :contains :comparator "i;ascii-numeric" "a" "1" { keep; }', /^2:4@41 comparator "i;ascii-numeric" cannot be used with :contains/],
    [':count without relational', 'if header :count "gt" "a" "1" { keep; }', /^1:11@10 ":count" needs the "relational" extension/],
    ['bad relational operator', 'require "relational";\nif header :value "gx" "a" "1" { keep; }', /^2:18@39 unknown relational operator "gx"/],
    ['bad regex', 'require "regex";\nif header :regex "s" "(a" { keep; }', /^2:22@38 invalid regular expression: unmatched "\("/],
    ['back-reference refused', 'require "regex";\nif header :regex "s" "(a)\\\\1" { keep; }', /back-references are not supported/],
    [':last without :index', 'require "index";\nif header :last "a" "b" { keep; }', /":last" is only allowed with ":index"/],
    ['bad variable name', 'require "variables";\nset "a-b" "c";', /^2:5@25 "a-b" is not a valid variable name/],
    ['unknown namespace', 'require "variables";\nset "a" "${foo.bar}";', /^2:9@29 unknown variable namespace "foo"/],
    ['bad redirect address', 'redirect "not an address";', /^1:10@9 "not an address" is not a valid address/],
    ['protected header', 'require "editheader";\ndeleteheader "Received";', /^2:14@35 the "Received" header field is protected/],
    ['bad date part', 'require "date";\nif currentdate "fortnight" "1" { keep; }', /^2:16@31 unknown date part "fortnight"/],
    ['bad zone', 'require "date";\nif currentdate :zone "CET" "hour" "1" { keep; }', /^2:22@37 "CET" is not a time zone/],
    ['bad envelope part', 'require "envelope";\nif envelope "cc" "a" { keep; }', /^2:13@32 unknown envelope part "cc"/],
    ['vacation :seconds needs vacation-seconds', 'require "vacation";\nvacation :seconds 60 "x";', /^2:10@29 ":seconds" needs the "vacation-seconds" extension/],
    ['address test on a field without addresses', 'if address :is ["to", "subject"] "x" { keep; }', /^1:23@22 the address test only reads fields that hold addresses; "subject" does not/],
    ['vacation :from not an address', 'require "vacation";\nvacation :from "nobody" "x";', /^2:16@35 ":from" must be an address, "nobody" is not one/],
    ['allof needs a test list', 'if allof true { keep; }', /"allof" takes a test list in parentheses/],
    ['bad ${unicode}', 'require "encoded-character";\nredirect "${unicode:D800}@example.com";', /^2:10@38 \$\{unicode:D800\} is not a Unicode character/]
  ]
  for (const [name, source, want] of errors) {
    it(`refuses: ${name}`, () => assert.match(at(source), want))
  }

  it('reports several validation errors at once, each at its position', () => {
    const errs = compileErr('fileinto "a";\nvacation "b";\nif header :foo "x" "y" { keep; }')
    assert.deepEqual(errs.map(e => `${e.line}:${e.column}`), ['1:1', '2:1', '3:11'])
  })

  it('decodes encoded characters (RFC 5228 2.4.2.4) only when required', () => {
    const r = compileOk('require ["encoded-character", "variables"];\nset "a" "${hex:40 41}${unicode:263a}${hex:zz}";')
    const cmds = (r.script.ast as { main: { commands: Array<{ args: Array<{ s?: { constant: string } }> }> } }).main.commands
    assert.equal(cmds[0].args[1].s?.constant, '@A\u263a${hex:zz}')
    const plain = compileOk('require "variables";\nset "a" "${hex:40}";')
    const p = (plain.script.ast as { main: { commands: Array<{ args: Array<{ s?: { constant: string | null } }> }> } }).main.commands
    assert.equal(p[0].args[1].s?.constant, '${hex:40}') // not a valid variable name either: stays literal
  })

  it('accepts every example script of RFC 5228 section 9', () => {
    compileOk(`#
     # Example Sieve Filter
     # Declare any optional features or extension used by the script
     #
     require ["fileinto"];

     #
     # Handle messages from known mailing lists
     # Move messages from IETF filter discussion list to filter mailbox
     #
     if header :is "Sender" "owner-ietf-mta-filters@imc.org"
             {
             fileinto "filter";  # move to "filter" mailbox
             }
     #
     # Keep all messages to or from people in my company
     #
     elsif address :DOMAIN :is ["From", "To"] "example.com"
             {
             keep;               # keep in "In" mailbox
             }

     #
     # Try and catch unsolicited email.  If a message is not to me,
     # or it contains a subject known to be spam, file it away.
     #
     elsif anyof (NOT address :all :contains
                    ["To", "Cc", "Bcc"] "me@example.com",
                  header :matches "subject"
                    ["*make*money*fast*", "*university*dipl*mas*"])
             {
             fileinto "spam";   # move to "spam" mailbox
             }
     else
             {
             # Move all other (non-company) mail to "personal"
             # mailbox.
             fileinto "personal";
             }`)
  })

  it('compileSieve never throws on odd input', () => {
    for (const s of ['', ';', '}', '{', '"', 'text:', 'if', 'if (', 'require', 'require [', ':', '\u0000', '/*/', '#', 'a'.repeat(1000)]) {
      const r = compileSieve(s)
      assert.equal(typeof r.ok, 'boolean')
    }
    assert.equal(compileSieve('').ok, true) // the empty script: implicit keep
  })
})

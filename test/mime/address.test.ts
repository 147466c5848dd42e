// Address lists into RFC 3501 envelope addresses, and RFC 2047 decoding of subjects and names.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { decodeHeaderValue, MISSING_DOMAIN, MISSING_MAILBOX, parseAddressList } from '../../store/mime/index.ts'

type A = [string | null, string | null, string | null, string | null] // name, adl, mailbox, host
const START = (group: string): A => [null, null, group, null]
const END: A = [null, null, null, null]

const ADDRESSES: [string, A[] | null][] = [
  ['', null],
  ['   ', null],
  ['user@example.com', [[null, null, 'user', 'example.com']]],
  ['John Doe <john@example.com>', [['John Doe', null, 'john', 'example.com']]],
  ['"Doe, John" <john@example.com>, jane@example.com', [['Doe, John', null, 'john', 'example.com'], [null, null, 'jane', 'example.com']]],
  ['"Quote \\" inside" <q@x>', [['Quote " inside', null, 'q', 'x']]],
  ['john@example.com (John Doe)', [['John Doe', null, 'john', 'example.com']]],
  ['<a@b> (Comment Name)', [[null, null, 'a', 'b']]],
  ['<user-from (comment)@ (comment) domain.org>', [[null, null, 'user-from', 'domain.org']]],
  ['"john doe"@example.com', [[null, null, 'john doe', 'example.com']]],
  ['john . doe @ example . com', [[null, null, 'john.doe', 'example.com']]],
  ['user@[192.0.2.1]', [[null, null, 'user', '[192.0.2.1]']]],
  ['<@a.test,@b.test:user@c.test>', [[null, '@a.test,@b.test', 'user', 'c.test']]],
  ['=?UTF-8?Q?J=C3=B6rg?= <j@x.de>', [['=?UTF-8?Q?J=C3=B6rg?=', null, 'j', 'x.de']]],
  ['undisclosed-recipients:;', [START('undisclosed-recipients'), END]],
  ['Friends: a@x, "B" <b@y>; , c@z', [START('Friends'), [null, null, 'a', 'x'], ['B', null, 'b', 'y'], END, [null, null, 'c', 'z']]],
  ['Unclosed: a@x', [START('Unclosed'), [null, null, 'a', 'x'], END]],
  ['a@x; b@y', [[null, null, 'a', 'x'], [null, null, 'b', 'y']]],
  ['nobody', [[null, null, 'nobody', MISSING_DOMAIN]]],
  ['<>', [[null, null, MISSING_MAILBOX, MISSING_DOMAIN]]],
  ['Name <user>', [['Name', null, 'user', MISSING_DOMAIN]]],
  ['@example.com', [[null, null, MISSING_MAILBOX, 'example.com']]],
  [',,, a@b ,,', [[null, null, 'a', 'b']]],
  ['"unterminated <a@b>', [[null, null, 'unterminated <a@b>', MISSING_DOMAIN]]],
  ['Broken <a@b', [['Broken', null, 'a', 'b']]],
  ['a@b <c@d>', [[null, null, 'a', 'b']]],
  ['((nested) comment) x@y', [['(nested) comment', null, 'x', 'y']]]
]

for (const [input, expected] of ADDRESSES) {
  test(`address list ${JSON.stringify(input)}`, () => {
    const got = parseAddressList(input)
    assert.deepEqual(got === null ? null : got.map(a => [a.name, a.adl, a.mailbox, a.host]), expected)
  })
}

const WORDS: [string, string][] = [
  ['plain text', 'plain text'],
  ['=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=', 'Grüße aus Köln'],
  ['=?utf-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=', 'Grüße aus Köln'],
  ['=?ISO-8859-1?Q?Andr=E9?= Pirard', 'André Pirard'],
  ['=?iso-8859-1?b?QW5kcuk=?=', 'André'],
  ['=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=', 'ab'],
  ['=?UTF-8?Q?a?=  =?UTF-8?B?Yg==?= c', 'ab c'],
  ['=?UTF-8*en?Q?lang?=', 'lang'],
  ['=?UTF-8?X?unknown?=', '=?UTF-8?X?unknown?='],
  ['=?broken', '=?broken']
]

for (const [input, expected] of WORDS) {
  test(`RFC 2047 ${JSON.stringify(input)}`, () => assert.equal(decodeHeaderValue(input), expected))
}

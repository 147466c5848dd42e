// Address and domain normalization (store/address.ts): table-driven, and the same answers whether or not the
// domain memo already holds them (asked twice, and again after more distinct domains than the memo keeps).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { DOMAIN_MEMO_ENTRIES_MAX, normalizeAddress, normalizeDomain } from '../../store/address.ts'

const DOMAINS: Array<[string, string | null]> = [
  ['Example.COM', 'example.com'],
  [' example.com. ', 'example.com'],
  ['bücher.example', 'xn--bcher-kva.example'],
  ['xn--bcher-kva.example', 'xn--bcher-kva.example'],
  ['sub-1.example.org', 'sub-1.example.org'],
  ['', null],
  ['exa mple.com', null],
  ['user@example.com', null],
  ['exa\x00mple.com', null],
  ['-bad.example', null],
  ['bad-.example', null],
  ['a..b', null],
  [`${'a'.repeat(64)}.example`, null],
  [`${'a.'.repeat(130)}com`, null]
]

const ADDRESSES: Array<[string, string | null]> = [
  ['Bob@Example.COM', 'bob@example.com'],
  ['bob@bücher.example', 'bob@xn--bcher-kva.example'],
  ['bob@', null],
  ['@example.com', null],
  ['bob@exa mple.com', null]
]

test('domains and addresses normalize as the table says, asked twice', () => {
  for (let round = 0; round < 2; round++) {
    for (const [input, want] of DOMAINS) assert.equal(normalizeDomain(input), want, JSON.stringify(input))
    for (const [input, want] of ADDRESSES) assert.equal(normalizeAddress(input), want, JSON.stringify(input))
  }
})

test('past the memo\'s bound the answers stay the same', () => {
  for (let i = 0; i < DOMAIN_MEMO_ENTRIES_MAX * 2 + 5; i++) assert.equal(normalizeDomain(`D${i}.Example`), `d${i}.example`)
  for (const [input, want] of DOMAINS) assert.equal(normalizeDomain(input), want, JSON.stringify(input))
  assert.equal(normalizeDomain(`${'x'.repeat(300)}.example`), null, 'too long: refused, and not kept')
})

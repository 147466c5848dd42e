// The signature table: every command and test we know, the extension that brings it, its tagged and
// positional arguments. The validator checks scripts against it; ManageSieve advertises SIEVE_EXTENSIONS.

export type ArgType = 'string' | 'list' | 'number'

export interface TagSpec {
  ext?: string // the capability that must be required to use this tag
  arg?: ArgType // the tag takes one argument of this type
  group?: string // tags of one group exclude each other
}

export interface Spec {
  kind: 'command' | 'test' | 'control'
  ext?: string[] // any one of these capabilities must be required
  tags?: Record<string, TagSpec>
  args: ArgType[]
  optionalLeading?: number // how many leading positional arguments may be left out
  optionalTrailing?: number // how many trailing positional arguments may be left out
  tests?: 'one' | 'list'
  block?: boolean
  requiredGroup?: string // one tag of this group must be present
}

/** Capabilities this implementation supports, in the order ManageSieve lists them. */
export const SIEVE_EXTENSIONS: readonly string[] = Object.freeze([
  'fileinto', 'reject', 'ereject', 'envelope', 'encoded-character', 'imap4flags', 'variables', 'vacation',
  'vacation-seconds', 'copy', 'relational', 'subaddress', 'body', 'date', 'index', 'regex', 'include', 'mailbox',
  'duplicate', 'editheader', 'environment', 'comparator-i;octet', 'comparator-i;ascii-casemap',
  'comparator-i;ascii-numeric'
])

// Capabilities that a require of another brings along (RFC 6131 2: vacation-seconds extends vacation).
export const IMPLIED: Record<string, string[]> = { 'vacation-seconds': ['vacation'] }

export const COMPARATORS: Record<string, string | null> = { // name → capability to require (null: always there, RFC 5228 2.7.3)
  'i;octet': null, 'i;ascii-casemap': null, 'i;ascii-numeric': 'comparator-i;ascii-numeric'
}

export const RELATIONAL_OPS = new Set(['gt', 'ge', 'lt', 'le', 'eq', 'ne']) // RFC 5231 4

export const DATE_PARTS = new Set(['year', 'month', 'day', 'date', 'julian', 'hour', 'minute', 'second', 'time', 'iso8601', 'std11', 'zone', 'weekday']) // RFC 5260 4.2

const COMPARATOR: Record<string, TagSpec> = { comparator: { arg: 'string' } }
const MATCH: Record<string, TagSpec> = {
  is: { group: 'match' },
  contains: { group: 'match' },
  matches: { group: 'match' },
  regex: { group: 'match', ext: 'regex' },
  count: { group: 'match', ext: 'relational', arg: 'string' },
  value: { group: 'match', ext: 'relational', arg: 'string' }
}
const ADDRESS_PART: Record<string, TagSpec> = {
  all: { group: 'addrpart' },
  localpart: { group: 'addrpart' },
  domain: { group: 'addrpart' },
  user: { group: 'addrpart', ext: 'subaddress' },
  detail: { group: 'addrpart', ext: 'subaddress' }
}
const INDEX: Record<string, TagSpec> = { index: { ext: 'index', arg: 'number' }, last: { ext: 'index' } }
const FLAGS: Record<string, TagSpec> = { flags: { ext: 'imap4flags', arg: 'list' } }
const COPY: Record<string, TagSpec> = { copy: { ext: 'copy' } }

export const SPECS: Record<string, Spec> = {
  // RFC 5228 3: control commands
  require: { kind: 'control', args: ['list'] },
  if: { kind: 'control', args: [], tests: 'one', block: true },
  elsif: { kind: 'control', args: [], tests: 'one', block: true },
  else: { kind: 'control', args: [], block: true },
  stop: { kind: 'control', args: [] },
  // RFC 5228 4: actions
  keep: { kind: 'command', args: [], tags: { ...FLAGS } },
  discard: { kind: 'command', args: [] },
  redirect: { kind: 'command', args: ['string'], tags: { ...COPY } },
  fileinto: { kind: 'command', ext: ['fileinto'], args: ['string'], tags: { ...FLAGS, ...COPY, create: { ext: 'mailbox' } } },
  reject: { kind: 'command', ext: ['reject'], args: ['string'] },
  ereject: { kind: 'command', ext: ['ereject'], args: ['string'] },
  // RFC 5232
  setflag: { kind: 'command', ext: ['imap4flags'], args: ['string', 'list'], optionalLeading: 1 },
  addflag: { kind: 'command', ext: ['imap4flags'], args: ['string', 'list'], optionalLeading: 1 },
  removeflag: { kind: 'command', ext: ['imap4flags'], args: ['string', 'list'], optionalLeading: 1 },
  // RFC 5229
  set: {
    kind: 'command',
    ext: ['variables'],
    args: ['string', 'string'],
    tags: {
      lower: { group: 'p40' }, upper: { group: 'p40' }, lowerfirst: { group: 'p30' }, upperfirst: { group: 'p30' },
      quotewildcard: { group: 'p20' }, quoteregex: { group: 'p20', ext: 'regex' }, length: { group: 'p10' }
    }
  },
  // RFC 5230, RFC 6131
  vacation: {
    kind: 'command',
    ext: ['vacation'],
    args: ['string'],
    tags: {
      days: { arg: 'number', group: 'period' }, seconds: { arg: 'number', group: 'period', ext: 'vacation-seconds' },
      subject: { arg: 'string' }, from: { arg: 'string' }, addresses: { arg: 'list' }, mime: {}, handle: { arg: 'string' }
    }
  },
  // RFC 6609
  include: { kind: 'command', ext: ['include'], args: ['string'], tags: { personal: { group: 'location' }, global: { group: 'location' }, once: {}, optional: {} } },
  return: { kind: 'control', ext: ['include'], args: [] },
  global: { kind: 'command', ext: ['include'], args: ['list'] },
  // RFC 5293
  addheader: { kind: 'command', ext: ['editheader'], args: ['string', 'string'], tags: { last: {} } },
  deleteheader: { kind: 'command', ext: ['editheader'], args: ['string', 'list'], optionalTrailing: 1, tags: { ...COMPARATOR, ...MATCH, index: { arg: 'number' }, last: {} } },

  // RFC 5228 5: tests
  address: { kind: 'test', args: ['list', 'list'], tags: { ...COMPARATOR, ...ADDRESS_PART, ...MATCH, ...INDEX } },
  allof: { kind: 'test', args: [], tests: 'list' },
  anyof: { kind: 'test', args: [], tests: 'list' },
  envelope: { kind: 'test', ext: ['envelope'], args: ['list', 'list'], tags: { ...COMPARATOR, ...ADDRESS_PART, ...MATCH } },
  exists: { kind: 'test', args: ['list'] },
  false: { kind: 'test', args: [] },
  header: { kind: 'test', args: ['list', 'list'], tags: { ...COMPARATOR, ...MATCH, ...INDEX } },
  not: { kind: 'test', args: [], tests: 'one' },
  size: { kind: 'test', args: ['number'], tags: { over: { group: 'size' }, under: { group: 'size' } }, requiredGroup: 'size' },
  true: { kind: 'test', args: [] },
  hasflag: { kind: 'test', ext: ['imap4flags'], args: ['list', 'list'], optionalLeading: 1, tags: { ...COMPARATOR, ...MATCH } },
  string: { kind: 'test', ext: ['variables'], args: ['list', 'list'], tags: { ...COMPARATOR, ...MATCH } },
  body: { kind: 'test', ext: ['body'], args: ['list'], tags: { ...COMPARATOR, ...MATCH, raw: { group: 'transform' }, content: { group: 'transform', arg: 'list' }, text: { group: 'transform' } } },
  date: { kind: 'test', ext: ['date'], args: ['string', 'string', 'list'], tags: { ...COMPARATOR, ...MATCH, ...INDEX, zone: { arg: 'string', group: 'zone' }, originalzone: { group: 'zone' } } },
  currentdate: { kind: 'test', ext: ['date'], args: ['string', 'list'], tags: { ...COMPARATOR, ...MATCH, zone: { arg: 'string' } } },
  mailboxexists: { kind: 'test', ext: ['mailbox'], args: ['list'] },
  duplicate: {
    kind: 'test',
    ext: ['duplicate'],
    args: [],
    tags: { handle: { arg: 'string' }, header: { arg: 'string', group: 'id' }, uniqueid: { arg: 'string', group: 'id' }, seconds: { arg: 'number' }, last: {} }
  },
  environment: { kind: 'test', ext: ['environment'], args: ['string', 'list'], tags: { ...COMPARATOR, ...MATCH } }
}

// IMAP client commands from the grammar of RFC 3501 / RFC 9051 section 9 (with literal8 from RFC 3516,
// LITERAL+ from RFC 7888, CONDSTORE/QRESYNC from RFC 7162): tags, atoms, quoted strings, literals of every
// kind, nested lists, sequence sets, search keys, FETCH items with sections and partials. Mostly valid, with
// a small share of near misses, so inputs reach the command handlers rather than stop in the parser.

import fc from 'fast-check'

const CRLF = '\r\n'

/** A command piece: text, and where a literal sits, its marker and bytes (the marker ends the line). */
export type Piece = string

const tagArb = fc.oneof(
  { weight: 20, arbitrary: fc.stringMatching(/^[A-Za-z][A-Za-z0-9.]{0,6}$/) },
  { weight: 1, arbitrary: fc.constantFrom('a', 'A001', 'x.1', '1', '*', '+', 'a'.repeat(65)) }
)

const atomChar = fc.constantFrom(...'abcxyzABCXYZ0129_-.$!&\''.split(''))
export const atomArb = fc.oneof(
  { weight: 5, arbitrary: fc.string({ unit: atomChar, minLength: 1, maxLength: 10 }) },
  { weight: 1, arbitrary: fc.constantFrom('NIL', 'INBOX', 'inbox', '\\Seen', '%', '*', 'a]b', 'é') }
)

const quotedContent = fc.string({
  unit: fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...'abc XYZ 019/.-_@&'.split('')) },
    { weight: 1, arbitrary: fc.constantFrom('\\"', '\\\\', 'ü', '日', '\\x', '\u0000', '\r') }
  ),
  maxLength: 20
})
export const quotedArb = quotedContent.map(s => `"${s}"`)

/** A literal: marker at the end of the line, CRLF, then exactly n bytes (or a near miss). */
function literalOf (content: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc.tuple(content, fc.constantFrom('{', '{', '~{'), fc.constantFrom('', '+', '+'), fc.nat({ max: 20 }))
    .map(([text, open, plus, miss]) => {
      const n = Buffer.byteLength(text)
      // one in twenty announces a size that does not match what follows
      const size = miss === 0 ? n + 3 : n
      return `${open}${size}${plus}}${CRLF}${text}`
    })
}
export const literalArb = literalOf(fc.string({ maxLength: 24 }))

export const astringArb = fc.oneof({ weight: 4, arbitrary: atomArb }, { weight: 3, arbitrary: quotedArb }, { weight: 1, arbitrary: literalArb })

export const mailboxArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('INBOX', 'inbox', 'Sent', 'Drafts', 'Trash', 'Archive/2026', '"Work/Projects"', '"a b"') },
  { weight: 2, arbitrary: fc.constantFrom('"Entw&APw-rfe"', '&AOQ-', '"~bob"', '"../x"', '"#shared/x"', '"/"', '""', '"a//b"', '"INBOX/sub"', '"Grüße"', '&-', '&Jjo', '"a%b*"') },
  { weight: 1, arbitrary: astringArb }
)

const nzArb = fc.oneof({ weight: 12, arbitrary: fc.integer({ min: 1, max: 12 }).map(String) }, { weight: 1, arbitrary: fc.constantFrom('4294967295', '4294967296', '0', '99999999999') })
const seqNumberArb = fc.oneof({ weight: 5, arbitrary: nzArb }, { weight: 1, arbitrary: fc.constant('*') })
const seqRangeArb = fc.oneof(seqNumberArb, fc.tuple(seqNumberArb, seqNumberArb).map(([a, b]) => `${a}:${b}`))
export const sequenceSetArb = fc.oneof(
  { weight: 8, arbitrary: fc.array(seqRangeArb, { minLength: 1, maxLength: 4 }).map(xs => xs.join(',')) },
  { weight: 1, arbitrary: fc.constantFrom('$', '1:*', '*:1', '1,,2', ':', '1:', ',') }
)

const flagArb = fc.oneof(
  fc.constantFrom('\\Seen', '\\Answered', '\\Flagged', '\\Deleted', '\\Draft', '\\Recent', '$Forwarded', '$Junk', '\\*', '\\Unknown'),
  atomArb
)
export const flagListArb = fc.array(flagArb, { maxLength: 4 }).map(fs => `(${fs.join(' ')})`)

const dateArb = fc.tuple(fc.integer({ min: 0, max: 32 }), fc.constantFrom('Jan', 'Feb', 'Dec', 'Foo'), fc.integer({ min: 1969, max: 2100 }))
  .map(([d, m, y]) => `${d}-${m}-${y}`)
const dateTimeArb = fc.tuple(dateArb, fc.constantFrom('10:00:00', '23:59:60', '99:99:99'), fc.constantFrom('+0000', '-1200', '+9999'))
  .map(([d, t, z]) => `"${d.padStart(11, ' ')} ${t} ${z}"`)

/** Search keys (RFC 3501 section 6.4.4, RFC 7162 MODSEQ), nested through OR, NOT and parentheses. */
export const searchKeyArb: fc.Arbitrary<string> = fc.letrec<{ key: string }>(tie => ({
  key: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { weight: 6, arbitrary: fc.constantFrom('ALL', 'ANSWERED', 'DELETED', 'DRAFT', 'FLAGGED', 'NEW', 'OLD', 'RECENT', 'SEEN', 'UNANSWERED', 'UNDELETED', 'UNDRAFT', 'UNFLAGGED', 'UNSEEN', '$') },
    { weight: 3, arbitrary: fc.tuple(fc.constantFrom('BCC', 'BODY', 'CC', 'FROM', 'SUBJECT', 'TEXT', 'TO'), astringArb).map(([k, v]) => `${k} ${v}`) },
    { weight: 2, arbitrary: fc.tuple(fc.constantFrom('BEFORE', 'ON', 'SINCE', 'SENTBEFORE', 'SENTON', 'SENTSINCE'), dateArb).map(([k, v]) => `${k} ${v}`) },
    { weight: 2, arbitrary: fc.tuple(fc.constantFrom('LARGER', 'SMALLER', 'MODSEQ', 'OLDER', 'YOUNGER'), nzArb).map(([k, v]) => `${k} ${v}`) },
    { weight: 2, arbitrary: fc.tuple(fc.constantFrom('KEYWORD', 'UNKEYWORD'), flagArb).map(([k, v]) => `${k} ${v}`) },
    { weight: 1, arbitrary: fc.tuple(astringArb, astringArb).map(([n, v]) => `HEADER ${n} ${v}`) },
    { weight: 2, arbitrary: sequenceSetArb },
    { weight: 1, arbitrary: sequenceSetArb.map(s => `UID ${s}`) },
    { weight: 2, arbitrary: tie('key').map(k => `NOT ${k}`) },
    { weight: 2, arbitrary: fc.tuple(tie('key'), tie('key')).map(([a, b]) => `OR ${a} ${b}`) },
    { weight: 2, arbitrary: fc.array(tie('key'), { minLength: 1, maxLength: 3 }).map(ks => `(${ks.join(' ')})`) }
  )
})).key

const sectionArb = fc.oneof(
  fc.constantFrom('', 'HEADER', 'TEXT', '1', '1.2', '2.MIME', '1.HEADER', '3.TEXT', '0', '1.0', '99.1', 'MIME', '4294967296'),
  fc.tuple(fc.constantFrom('HEADER.FIELDS', 'HEADER.FIELDS.NOT', '1.HEADER.FIELDS'), fc.array(astringArb, { minLength: 0, maxLength: 3 }))
    .map(([k, names]) => `${k} (${names.join(' ')})`)
)
const partialArb = fc.oneof(fc.constant(''), fc.tuple(fc.nat({ max: 5000 }), fc.nat({ max: 5000 })).map(([o, n]) => `<${o}.${n}>`), fc.constantFrom('<0>', '<4294967296.1>', '<1.>'))
const fetchAttArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('ENVELOPE', 'FLAGS', 'INTERNALDATE', 'RFC822', 'RFC822.HEADER', 'RFC822.SIZE', 'RFC822.TEXT', 'BODY', 'BODYSTRUCTURE', 'UID', 'MODSEQ', 'EMAILID', 'SAVEDATE', 'PREVIEW') },
  { weight: 4, arbitrary: fc.tuple(fc.constantFrom('BODY', 'BODY.PEEK', 'BINARY', 'BINARY.PEEK', 'BINARY.SIZE'), sectionArb, partialArb).map(([a, s, p]) => `${a}[${s}]${p}`) }
)
const fetchItemsArb = fc.oneof(
  fc.constantFrom('ALL', 'FAST', 'FULL'),
  fetchAttArb,
  fc.array(fetchAttArb, { maxLength: 5 }).map(xs => `(${xs.join(' ')})`)
)

const messageArb = fc.oneof(
  fc.constantFrom(
    'From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n',
    'Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n',
    ''
  ),
  fc.string({ maxLength: 60 })
)
const appendArb = fc.tuple(mailboxArb, fc.option(flagListArb), fc.option(dateTimeArb), messageArb, fc.constantFrom('{', '~{'), fc.constantFrom('', '+'))
  .map(([box, flags, date, msg, open, plus]) =>
    `APPEND ${box}${flags === null ? '' : ' ' + flags}${date === null ? '' : ' ' + date} ${open}${Buffer.byteLength(msg)}${plus}}${CRLF}${msg}`)

/** One command without its tag and CRLF. */
export const commandArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 1, arbitrary: fc.constantFrom('CAPABILITY', 'NOOP', 'CHECK', 'CLOSE', 'UNSELECT', 'EXPUNGE', 'NAMESPACE', 'ID NIL', 'ID ("name" "fuzz" "version" "1")', 'STARTTLS', 'COMPRESS DEFLATE', 'IDLE', 'LOGOUT') },
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom('SELECT', 'EXAMINE'), mailboxArb, fc.constantFrom('', ' (CONDSTORE)', ' (QRESYNC (1 2))', ' (QRESYNC (1 2 1:5 (1,3 1,3)))', ' ()')).map(([c, m, o]) => `${c} ${m}${o}`) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('CREATE', 'DELETE', 'SUBSCRIBE', 'UNSUBSCRIBE', 'GETQUOTAROOT'), mailboxArb).map(([c, m]) => `${c} ${m}`) },
  { weight: 1, arbitrary: fc.tuple(mailboxArb, mailboxArb).map(([a, b]) => `RENAME ${a} ${b}`) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('', '(SUBSCRIBED) ', '(SPECIAL-USE) '), astringArb, fc.oneof(mailboxArb, fc.constantFrom('*', '%', '"*"', 'INBOX/%')), fc.constantFrom('', ' RETURN (CHILDREN SUBSCRIBED)', ' RETURN (STATUS (MESSAGES UNSEEN))'))
    .map(([sel, ref, pat, ret]) => `LIST ${sel}${ref} ${pat}${ret}`) },
  { weight: 1, arbitrary: fc.tuple(astringArb, astringArb).map(([r, p]) => `LSUB ${r} ${p}`) },
  { weight: 2, arbitrary: fc.tuple(mailboxArb, fc.subarray(['MESSAGES', 'RECENT', 'UIDNEXT', 'UIDVALIDITY', 'UNSEEN', 'HIGHESTMODSEQ', 'SIZE', 'DELETED', 'BOGUS'])).map(([m, xs]) => `STATUS ${m} (${xs.join(' ')})`) },
  { weight: 3, arbitrary: appendArb },
  { weight: 5, arbitrary: fc.tuple(fc.constantFrom('', 'UID '), sequenceSetArb, fetchItemsArb, fc.constantFrom('', '', ' (CHANGEDSINCE 1)', ' (CHANGEDSINCE 1 VANISHED)',
    // RFC 9394 PARTIAL, good and bad ranges
    ' (PARTIAL 1:5)', ' (PARTIAL -1:-3 CHANGEDSINCE 1)', ' (CHANGEDSINCE 1 VANISHED PARTIAL 5:2)', ' (PARTIAL 0:1)', ' (PARTIAL 1:-2)', ' (PARTIAL 1:4294967296)', ' (PARTIAL)', ' ()'))
    .map(([u, s, i, m]) => `${u}FETCH ${s} ${i}${m}`) },
  { weight: 4, arbitrary: fc.tuple(fc.constantFrom('', 'UID '), fc.constantFrom('', 'RETURN (MIN MAX COUNT) ', 'RETURN () ', 'RETURN (SAVE) ', 'RETURN (ALL) ', 'RETURN (PARTIAL -1:-10 COUNT) ', 'RETURN (SAVE PARTIAL 2:3) ', 'RETURN (PARTIAL 1:2 PARTIAL 3:4) '), fc.constantFrom('', 'CHARSET UTF-8 ', 'CHARSET US-ASCII ', 'CHARSET X-BOGUS '), fc.array(searchKeyArb, { minLength: 1, maxLength: 3 }))
    .map(([u, ret, cs, keys]) => `${u}SEARCH ${ret}${cs}${keys.join(' ')}`) },
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom('', 'UID '), sequenceSetArb, fc.constantFrom('', '(UNCHANGEDSINCE 1) ', '(UNCHANGEDSINCE 0) '), fc.constantFrom('FLAGS', '+FLAGS', '-FLAGS', 'FLAGS.SILENT', '+FLAGS.SILENT', '-FLAGS.SILENT', 'X-GM-LABELS'), flagListArb)
    .map(([u, s, unch, op, f]) => `${u}STORE ${s} ${unch}${op} ${f}`) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('', 'UID '), fc.constantFrom('COPY', 'MOVE'), sequenceSetArb, mailboxArb).map(([u, c, s, m]) => `${u}${c} ${s} ${m}`) },
  { weight: 1, arbitrary: sequenceSetArb.map(s => `UID EXPUNGE ${s}`) },
  { weight: 1, arbitrary: fc.subarray(['CONDSTORE', 'QRESYNC', 'UTF8=ACCEPT', 'IMAP4rev2', 'BOGUS']).map(xs => `ENABLE ${xs.join(' ')}`) },
  { weight: 1, arbitrary: fc.tuple(astringArb, astringArb).map(([u, p]) => `LOGIN ${u} ${p}`) },
  { weight: 1, arbitrary: fc.constantFrom('AUTHENTICATE PLAIN', 'AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHNlY3JldCBwYXNz', 'AUTHENTICATE PLAIN =', 'AUTHENTICATE LOGIN', 'AUTHENTICATE PLAIN !!!!') },
  { weight: 1, arbitrary: fc.tuple(astringArb, fc.constantFrom('(STORAGE 10)', '(MESSAGE 1 STORAGE 2)', '()', '(STORAGE -1)')).map(([r, l]) => `SETQUOTA ${r} ${l}`) },
  { weight: 1, arbitrary: astringArb.map(r => `GETQUOTA ${r}`) },
  { weight: 1, arbitrary: fc.tuple(atomArb, fc.array(astringArb, { maxLength: 3 })).map(([c, xs]) => [c, ...xs].join(' ')) },
  // prefix operators nest without parentheses: long NOT and OR chains (both associations), up to the token limit
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('NOT ', 'OR ', 'OR ALL ', 'NOT (', 'OR SEEN '), fc.integer({ min: 1, max: 12_000 }), searchKeyArb).map(([op, n, key]) =>
    `SEARCH ${op.repeat(n)}${op === 'OR ' ? `${key} `.repeat(n + 1).trimEnd() : key}${op === 'NOT (' ? ')'.repeat(n) : ''}`) }
)

/** What follows a command that reads raw lines: DONE after IDLE, a SASL answer after AUTHENTICATE. */
function followUp (command: string): string {
  if (command === 'IDLE') return `DONE${CRLF}`
  if (command === 'AUTHENTICATE PLAIN') return `AGFsaWNlQGV4YW1wbGUuY29tAHdyb25n${CRLF}`
  if (command === 'AUTHENTICATE LOGIN') return `*${CRLF}`
  return ''
}

/** A whole client transcript: tagged commands, CRLF-terminated, the raw lines some of them need after. */
export const sessionArb: fc.Arbitrary<Buffer> = fc.tuple(
  fc.constantFrom('', 'a0 SELECT INBOX\r\n', 'a0 SELECT INBOX\r\n', 'a0 SELECT INBOX\r\n', 'a0 EXAMINE INBOX\r\n', 'a0 ENABLE QRESYNC\r\na1 SELECT INBOX (CONDSTORE)\r\n'),
  // a missing line end (two commands run together) now and then; the mutator makes more such near misses
  fc.array(fc.tuple(tagArb, commandArb, fc.constantFrom(...Array(14).fill(CRLF) as string[], '\n', '')), { minLength: 1, maxLength: 8 })
).map(([prelude, cmds]) => Buffer.from(prelude + cmds.map(([tag, c, end]) => `${tag} ${c}${end}${followUp(c)}`).join(''), 'utf8'))

export const IMAP_DICTIONARY = ['{0}\r\n', '{5}\r\nhello', '{4294967296}\r\n', '{99+}\r\n', '~{3}\r\na\u0000b', 'BODY[', 'BODY.PEEK[HEADER.FIELDS (', ']<0.10>',
  ' UID ', '1:*', '$', ' (', ')', '"', '\\', '\r\n', '\n', ' NIL', ' OR ', ' NOT ', 'CHARSET UTF-8 ', 'BINARY[1]', '&AOQ-', '&', '*', '%', 'IDLE\r\n', 'DONE\r\n',
  'a SELECT INBOX\r\n', 'a FETCH 1:* (FLAGS)\r\n', ' CHANGEDSINCE 0', ' (QRESYNC (1 1 1:* (1 1)))', ' (PARTIAL -1:-2)', ' PARTIAL 1:4294967295']

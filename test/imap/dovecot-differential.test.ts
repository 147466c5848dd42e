// Differential IMAP tests against Dovecot (Debian's dovecot-imapd, test/helpers/dovecot.ts), in the spirit of
// test/sieve/pigeonhole.test.ts: the same mailbox contents (the same messages APPENDed with the same internal dates
// and flags) and the same scripted sessions on a private Dovecot and on a mailgrid IMAP server (test/imap/helpers.ts),
// and every command's responses compared after normalizing what legitimately differs:
// - the text after a status response's code (`* OK [UNSEEN 2] first unseen` → `* OK [UNSEEN 2]`), and the text of
//   continuation requests;
// - CAPABILITY lists (untagged and as a response code) and ID responses: each server lists its own;
// - values chosen by the server: UIDVALIDITY (also in COPYUID/APPENDUID), HIGHESTMODSEQ/MODSEQ (each server counts
//   its own modification sequence; the CONDSTORE cases pass each server its own values through $HMS/$UV),
//   MAILBOXID/EMAILID/THREADID (RFC 8474 leaves them to the server);
// - the order of untagged responses within one command (RFC 3501 7 does not fix it), except that EXPUNGE responses
//   keep their relative order (their sequence numbers depend on it), and the order of FETCH items within one
//   FETCH response (RFC 3501 7.4.2 does not fix it);
// - a string sent quoted or as a literal (RFC 3501 4.3: the same string).
// The order rule that does matter for keywords (RFC 3501 7.2.6: a client is told of a keyword by FLAGS before a FETCH
// carries it) is checked on each server's raw response stream instead.
// - RECENT outside SELECT/EXAMINE, HIGHESTMODSEQ at a plain SELECT/EXAMINE, UID in FETCH responses to commands that
//   did not ask for it, several flag reports of one message in one reply, and all but the last EXISTS (see normalize);
// - LIST/LSUB: attribute order, the mailboxes mailgrid provisions (Sent, Drafts, ...), \HasChildren/\HasNoChildren
//   where RFC 5258 makes them optional (see normalizeList).
// Where the two differ on purpose (Dovecot deviating from the RFC, or choices the RFC leaves open that show through
// the normalization), EXPECTED names the command, the edit from Dovecot's answer to mailgrid's, and the reason.
// DIFF_DUMP=FILE writes every unexpected difference to FILE as a draft EXPECTED entry (the `why` left empty).

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { RawClient } from '../helpers/client.ts'
import { isDovecotInstalled, startDovecot } from '../helpers/dovecot.ts'
import type { DovecotServer } from '../helpers/dovecot.ts'
import { fixture, PASSWORD, USER } from './helpers.ts'

const skip = isDovecotInstalled() ? false : 'Dovecot (dovecot-imapd) is not installed'

// ---------------------------------------------------------------------------------------------------------------
// The messages

const crlf = (s: string): Buffer => Buffer.from(s.replace(/\r?\n/g, '\r\n'), 'utf8')

const PLAIN = crlf(`Return-Path: <joe@example.org>
Received: from mx.example.org by mx1.example.com; Tue, 1 Apr 2025 09:06:31 -0800
Date: Tue, 1 Apr 2025 09:06:31 -0800
From: "Joe Q. Public" <Joe.Public@Example.org> (Joe at work)
Sender: secretary@example.org
Reply-To: replies@example.org
To: User <user@example.com>, other@example.net
Cc: team: a@example.net, "B. Person" <b@example.net>;
Subject: [acme-users] version 1.0 is out
Message-ID: <m1@example.org>
X-Priority: 3 (Normal)

Hello,
version 1.0 is out. Make money fast!
`)

const MIXED = crlf(`Date: Wed, 02 Apr 2025 10:00:00 +0200
From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg@example.de>
To: =?ISO-8859-1?Q?Andr=E9?= <andre@example.fr>
Bcc: hidden@example.com
Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?= und mehr
Message-ID: <m2@example.de>
In-Reply-To: <m1@example.org>
References: <m1@example.org>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

This is a multi-part message in MIME format.
--outer
Content-Type: multipart/alternative; boundary="inner"

--inner
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Gr=C3=BC=C3=9Fe aus K=C3=B6ln, a soft=
 line break and trailing space   
and a very long line that has been wrapped by the quoted-printable encoder =
so that it stays below seventy-six characters.
--inner
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: base64

PHA+R3LDvMOfZSBhdXMgS8O2bG48L3A+Cg==
--inner--
--outer
Content-Type: application/pdf; name="report.pdf"
Content-Disposition: attachment; filename="report.pdf"
Content-Transfer-Encoding: base64
Content-Description: the quarterly report
Content-Language: en

JVBERi0xLjQKJcOkw7zDtsOfCjEgMCBvYmoKPDwvVHlwZS9DYXRhbG9nPj4KZW5kb2JqCg==
--outer--
epilogue
`)

const FORWARD = crlf(`Date: Thu, 03 Apr 2025 11:30:00 +0000
From: Carol <carol@example.net>
To: user@example.com
Subject: Fwd: [acme-users] version 1.0 is out
Message-ID: <m3@example.net>
References: <m1@example.org> <m2@example.de>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="fw"

--fw
Content-Type: text/plain; charset=us-ascii

See the forwarded message below.
--fw
Content-Type: message/rfc822
Content-Disposition: inline

Date: Tue, 1 Apr 2025 09:06:31 -0800
From: Dave <dave@example.com>
To: carol@example.net
Subject: inner
Message-ID: <inner@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="in2"

--in2
Content-Type: text/plain

inner text
--in2
Content-Type: message/rfc822

From: Eve <eve@example.org>
Subject: innermost
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

caf=E9 innermost body
--in2--
--fw--
`)

const COMMENTS = crlf(`Date: Fri, 04 Apr 2025 08:00:00 -0500
From: <user-from (comment)@ (comment) domain.org>
To: undisclosed-recipients:;
Cc: "Last, First" <first.last@example.com>, plain@example.com (Plain Person), <x@example.com> (Trailing Name)
Subject: Re: [acme-users] Re: version 1.0 is out
Message-ID: <m4@domain.org>
In-Reply-To: <m3@example.net>
References: <m1@example.org> <m3@example.net>
X-Mailer: test
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Ünïcödé body with a needle in it.
`)

const BIG = crlf(`Date: Sat, 05 Apr 2025 23:59:59 +1200
From: bulk@lists.example.com
To: user@example.com
Subject: a large newsletter
Message-ID: <m5@lists.example.com>
Content-Type: text/plain

${'Lorem ipsum dolor sit amet, consectetur adipiscing elit.\n'.repeat(90)}`)

const NOHEADERS = crlf(`Subject: bare

`)

// [message, flags, internal date]
const MESSAGES: Array<[Buffer, string, string]> = [
  [PLAIN, '(\\Seen)', '01-Apr-2025 17:07:00 +0000'],
  [MIXED, '(\\Seen \\Answered $Forwarded)', '02-Apr-2025 08:00:00 +0000'],
  [FORWARD, '(\\Flagged)', '03-Apr-2025 11:30:00 +0000'],
  [COMMENTS, '(\\Draft $Label1)', '04-Apr-2025 13:00:00 +0000'],
  [BIG, '()', '05-Apr-2025 11:59:59 +0000'],
  [NOHEADERS, '(\\Deleted)', '06-Apr-2025 00:00:00 +0000'],
]

// ---------------------------------------------------------------------------------------------------------------
// Scripts: each case runs on fresh connections (a, b, ...) logged in as the same user on each server. A step is a
// command line, optionally prefixed `b: ` for another connection; `$HMS` and `$UV` are replaced by the last
// HIGHESTMODSEQ and UIDVALIDITY that connection saw, `\u0000LIT:n` by literal n of the case's literals.

interface Case {
  name: string
  steps: Array<string | { conn?: string, parts: Array<string | Buffer> }>
}

const lit = (b: Buffer | string): Buffer => Buffer.isBuffer(b) ? b : Buffer.from(b, 'utf8')

/** A mailbox of its own for a case that changes things: the messages copied from INBOX with their flags and dates. */
const own = (name: string): string[] => ['EXAMINE INBOX', `CREATE ${name}`, `COPY 1:* ${name}`, `SELECT ${name}`]

const CASES: Case[] = [
  // SELECT / EXAMINE: the first SELECT of a new mailbox sees its messages as \Recent (IMAP4rev1)
  { name: 'select-rev1-recent', steps: ['EXAMINE INBOX', 'CREATE sel', 'COPY 1:* sel', 'SELECT sel', 'FETCH 1:* FLAGS', 'SEARCH RECENT', 'SEARCH NEW', 'SEARCH OLD', 'b: SELECT sel', 'b: SEARCH RECENT', 'b: FETCH 1:* FLAGS', 'STATUS sel (RECENT MESSAGES)', 'CLOSE'] },
  { name: 'examine', steps: ['EXAMINE INBOX', 'FETCH 1 FLAGS', 'STORE 1 +FLAGS (\\Flagged)', 'EXAMINE nosuch', 'FETCH 1 FLAGS', 'SELECT INBOX', 'UNSELECT', 'ENABLE CONDSTORE'] },
  { name: 'select-condstore', steps: ['SELECT INBOX (CONDSTORE)', 'FETCH 1 (MODSEQ FLAGS)', 'EXAMINE INBOX'] },
  // FETCH of every item
  { name: 'fetch-basic', steps: ['EXAMINE INBOX', 'FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE UID)', 'FETCH 1:* FAST', 'FETCH 2 ALL', 'UID FETCH 1:* UID', 'UID FETCH 3:4 (FLAGS)', 'UID FETCH 100:200 FLAGS', 'FETCH * UID'] },
  { name: 'fetch-envelope', steps: ['EXAMINE INBOX', 'FETCH 1:* ENVELOPE'] },
  { name: 'fetch-bodystructure', steps: ['EXAMINE INBOX', 'FETCH 1:* BODYSTRUCTURE', 'FETCH 1:* BODY', 'FETCH 3 FULL'] },
  { name: 'fetch-sections', steps: ['EXAMINE INBOX', 'FETCH 1 (BODY.PEEK[HEADER] BODY.PEEK[TEXT])', 'FETCH 2 (BODY.PEEK[1] BODY.PEEK[1.1] BODY.PEEK[1.2] BODY.PEEK[1.1.MIME] BODY.PEEK[2] BODY.PEEK[2.MIME])', 'FETCH 2 (BODY.PEEK[3] BODY.PEEK[1.3] BODY.PEEK[TEXT])', 'FETCH 1 (BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2])', 'FETCH 6 (BODY.PEEK[] BODY.PEEK[TEXT] BODY.PEEK[1])'] },
  { name: 'fetch-rfc822-nested', steps: ['EXAMINE INBOX', 'FETCH 3 (BODY.PEEK[2] BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] BODY.PEEK[2.MIME])', 'FETCH 3 (BODY.PEEK[2.1] BODY.PEEK[2.2] BODY.PEEK[2.2.HEADER] BODY.PEEK[2.2.TEXT] BODY.PEEK[2.2.MIME] BODY.PEEK[2.2.1])', 'FETCH 3 (BODY.PEEK[2.1.MIME] BODY.PEEK[2.2.1.MIME] BODY.PEEK[2.HEADER.FIELDS (Subject From)])', 'FETCH 3 (BINARY.PEEK[2.2.1] BINARY.SIZE[2.2.1])'] },
  { name: 'fetch-partial', steps: ['EXAMINE INBOX', 'FETCH 1 (BODY.PEEK[]<0.100>)', 'FETCH 1 (BODY.PEEK[TEXT]<10.20>)', 'FETCH 2 (BODY.PEEK[1.1]<5.1000000>)', 'FETCH 1 (BODY.PEEK[]<1000000.10>)', 'FETCH 1 (BODY.PEEK[HEADER]<0.0>)', 'FETCH 5 (BODY.PEEK[TEXT]<100.50> BODY.PEEK[TEXT]<0.5>)', 'FETCH 3 (BODY.PEEK[2.2]<0.20>)'] },
  { name: 'fetch-binary', steps: ['EXAMINE INBOX', 'FETCH 2 (BINARY.PEEK[1.1] BINARY.SIZE[1.1])', 'FETCH 2 (BINARY.PEEK[1.2] BINARY.SIZE[1.2])', 'FETCH 2 (BINARY.PEEK[2] BINARY.SIZE[2])', 'FETCH 2 (BINARY.PEEK[1.1]<0.10> BINARY.PEEK[2]<4.4>)', 'FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])', 'FETCH 4 (BINARY.PEEK[] BINARY.SIZE[])', 'FETCH 2 BINARY.PEEK[1]', 'FETCH 2 BINARY.PEEK[1.MIME]'] },
  { name: 'fetch-header-fields', steps: ['EXAMINE INBOX', 'FETCH 1:2 (BODY.PEEK[HEADER.FIELDS (From Subject X-Missing)])', 'FETCH 1 (BODY.PEEK[HEADER.FIELDS.NOT (Received Date Return-Path)])', 'FETCH 1 (BODY.PEEK[HEADER.FIELDS (FROM)]<0.10>)', 'FETCH 2 (BODY.PEEK[1.1.HEADER.FIELDS (Content-Type)])', 'FETCH 1 (RFC822.HEADER RFC822.SIZE)', 'FETCH 6 (BODY.PEEK[HEADER.FIELDS (Subject)] BODY.PEEK[HEADER])'] },
  { name: 'fetch-edges', steps: ['EXAMINE INBOX', 'FETCH 3 (BODY.PEEK[2.2.1]<0.4> BINARY.PEEK[2.2.1]<0.4>)', 'FETCH 6 (RFC822.HEADER BODY.PEEK[TEXT])', 'FETCH 3 BODY.PEEK[2.2.HEADER.FIELDS (Subject)]', 'FETCH 1 BODY.PEEK[HEADER.FIELDS ()]', 'FETCH 1 (UID UID FLAGS)', 'FETCH 1 BODY.PEEK[0]', 'FETCH 1 BODY.PEEK[1.0]', 'FETCH 2 BODY.PEEK[3.1]', 'FETCH 1 BODY.PEEK[2]', 'FETCH 1 BODY.PEEK[1.1]', 'FETCH 2 BODY.PEEK[2.1]', 'FETCH 1 BINARY.PEEK[2]', 'FETCH 1 BODY.PEEK[TEXT.MIME]', 'FETCH 2 BODY.PEEK[1.HEADER]', 'FETCH 3 BODY.PEEK[2.2.1.TEXT]', 'FETCH 1,3 (RFC822.SIZE) ', 'FETCH 1:2,4 ENVELOPE', 'FETCH 5:3 UID', 'UID FETCH 5:3 UID', 'FETCH 1 (BODY.PEEK[HEADER.FIELDS (Date From)]<5.10> BODY.PEEK[HEADER.FIELDS.NOT (Date From)]<0.8>)'] },
  { name: 'fetch-sets-seen', steps: [...own('seen'), 'FETCH 3 BODY[1]', 'FETCH 3 FLAGS', 'FETCH 5 RFC822.TEXT', 'FETCH 4 (BINARY[1] FLAGS)', 'FETCH 1 BODY[]', 'FETCH 5 RFC822'] },
  // SEARCH with every key
  { name: 'search-flags', steps: ['EXAMINE INBOX', 'SEARCH ALL', 'SEARCH ANSWERED', 'SEARCH UNANSWERED', 'SEARCH DELETED', 'SEARCH UNDELETED', 'SEARCH DRAFT', 'SEARCH UNDRAFT', 'SEARCH FLAGGED', 'SEARCH UNFLAGGED', 'SEARCH SEEN', 'SEARCH UNSEEN', 'SEARCH KEYWORD $Forwarded', 'SEARCH UNKEYWORD $Label1', 'SEARCH KEYWORD nosuch', 'SEARCH OLD', 'SEARCH NEW', 'SEARCH RECENT'] },
  { name: 'search-dates-sizes', steps: ['EXAMINE INBOX', 'SEARCH BEFORE 3-Apr-2025', 'SEARCH ON 3-Apr-2025', 'SEARCH SINCE 3-Apr-2025', 'SEARCH SENTBEFORE 2-Apr-2025', 'SEARCH SENTON 2-Apr-2025', 'SEARCH SENTSINCE 4-Apr-2025', 'SEARCH SENTON 1-Apr-2025', 'SEARCH LARGER 1000', 'SEARCH SMALLER 500', 'SEARCH LARGER 4000 SMALLER 6000', 'SEARCH BEFORE 1-Jan-2000', 'SEARCH SINCE "05-Apr-2025"'] },
  { name: 'search-headers', steps: ['EXAMINE INBOX', 'SEARCH FROM joe', 'SEARCH FROM "Joe Q. Public"', 'SEARCH FROM user-from@domain.org', 'SEARCH FROM Müller', 'SEARCH TO user@example.com', 'SEARCH TO andre', 'SEARCH CC b@example.net', 'SEARCH CC "Last, First"', 'SEARCH BCC hidden', 'SEARCH SUBJECT "version 1.0"', 'SEARCH SUBJECT Köln', 'SEARCH HEADER Message-ID m2', 'SEARCH HEADER X-Mailer ""', 'SEARCH HEADER X-Priority normal', 'SEARCH BODY needle', 'SEARCH BODY "soft line break"', 'SEARCH BODY innermost', 'SEARCH TEXT "make money"', 'SEARCH TEXT m3@example.net', 'SEARCH BODY nosuchword'] },
  {
    name: 'search-charset',
    steps: [
      'EXAMINE INBOX',
      { parts: ['SEARCH CHARSET UTF-8 SUBJECT ', lit('Grüße')] },
      { parts: ['SEARCH CHARSET UTF-8 BODY ', lit('Ünïcödé')] },
      { parts: ['SEARCH CHARSET UTF-8 FROM ', lit('Jörg')] },
      { parts: ['SEARCH CHARSET UTF-8 BODY ', lit('café')] },
      'SEARCH CHARSET US-ASCII SUBJECT acme',
      'SEARCH CHARSET X-NOSUCH SUBJECT acme',
    ],
  },
  {
    name: 'search-decoded',
    steps: [
      'EXAMINE INBOX', 'SEARCH FROM comment', 'SEARCH CC "plain person"', 'SEARCH CC "trailing name"', 'SEARCH TO undisclosed-recipients', 'SEARCH FROM "joe at work"',
      'SEARCH BODY "K=C3=B6ln"', 'SEARCH BODY "PHA+"', 'SEARCH BODY "quarterly report"', 'SEARCH TEXT "quarterly report"', 'SEARCH BODY caf', 'SEARCH SUBJECT ""', 'SEARCH HEADER Subject ""', 'SEARCH HEADER X-Nosuch ""',
      'SEARCH LARGER 0', 'SEARCH UID *', 'SEARCH ON 6-Apr-2025', 'SEARCH SINCE 1-Jan-2030', 'SEARCH SUBJECT "re: [acme-users]"', 'SEARCH SUBJECT "Fwd:"',
      { parts: ['SEARCH CHARSET UTF-8 TEXT ', lit('Müller')] },
      { parts: ['SEARCH CHARSET UTF-8 BODY ', lit('<p>Grüße')] },
      { parts: ['SEARCH CHARSET UTF-8 TO ', lit('André')] },
    ],
  },
  { name: 'search-logic', steps: ['EXAMINE INBOX', 'SEARCH OR SEEN FLAGGED', 'SEARCH NOT SEEN', 'SEARCH NOT (SEEN OR DRAFT FLAGGED)', 'SEARCH (SEEN ANSWERED) (FROM joerg)', 'SEARCH OR OR DRAFT FLAGGED DELETED', 'SEARCH 2:4', 'SEARCH 2:4 NOT 3', 'SEARCH *', 'SEARCH 4:* SEEN', 'SEARCH UID 2,4:5', 'UID SEARCH UID 3:*', 'UID SEARCH 1:2', 'SEARCH 1,3,5', 'SEARCH NOT NOT SEEN', 'SEARCH OR (FROM carol) (TO andre)'] },
  { name: 'esearch', steps: ['EXAMINE INBOX', 'SEARCH RETURN (MIN MAX COUNT ALL) SEEN', 'SEARCH RETURN () ALL', 'SEARCH RETURN (COUNT) KEYWORD nosuch', 'SEARCH RETURN (MIN) UNSEEN', 'UID SEARCH RETURN (ALL COUNT) UNDELETED', 'SEARCH RETURN (MAX) FROM nosuch', 'SEARCH RETURN (SAVE) FLAGGED', 'FETCH $ FLAGS', 'SEARCH RETURN (ALL) OR $ SEEN'] },
  { name: 'search-errors', steps: ['EXAMINE INBOX', 'SEARCH FOO', 'SEARCH BEFORE 32-Apr-2025', 'SEARCH OR SEEN', 'SEARCH LARGER x', 'SEARCH (SEEN', 'SEARCH 0', 'SEARCH 99', 'SEARCH UID 99'] },
  // SORT and THREAD
  { name: 'sort', steps: ['EXAMINE INBOX', 'SORT (SUBJECT) UTF-8 ALL', 'SORT (REVERSE DATE) UTF-8 ALL', 'SORT (ARRIVAL) UTF-8 ALL', 'SORT (FROM) UTF-8 ALL', 'SORT (TO) UTF-8 ALL', 'SORT (CC) UTF-8 ALL', 'SORT (SIZE) UTF-8 ALL', 'SORT (REVERSE SIZE) US-ASCII UNDELETED', 'SORT (DISPLAYFROM) UTF-8 ALL', 'SORT (DISPLAYTO) UTF-8 ALL', 'UID SORT (SUBJECT DATE) UTF-8 ALL', 'SORT (DATE) UTF-8 SEEN', 'SORT RETURN (MIN MAX COUNT ALL) (SUBJECT) UTF-8 ALL', 'SORT (FOO) UTF-8 ALL', 'SORT (SUBJECT) X-NOSUCH ALL'] },
  { name: 'thread', steps: ['EXAMINE INBOX', 'THREAD ORDEREDSUBJECT UTF-8 ALL', 'THREAD REFERENCES UTF-8 ALL', 'UID THREAD REFERENCES UTF-8 ALL', 'THREAD REFERENCES UTF-8 NOT 1', 'THREAD ORDEREDSUBJECT UTF-8 SUBJECT nosuch', 'THREAD NOSUCH UTF-8 ALL'] },
  // STORE, flags and keywords: the untagged FLAGS rule, another session's view
  {
    name: 'store',
    steps: [...own('st'), 'b: SELECT st', 'STORE 1 +FLAGS (\\Flagged)', 'STORE 1 -FLAGS (\\Seen)', 'STORE 2 FLAGS (\\Deleted \\Seen)', 'STORE 3 +FLAGS.SILENT (\\Answered)', 'FETCH 3 FLAGS', 'STORE 1:2 +FLAGS ($NewKeyword)', 'b: NOOP', 'UID STORE 4 +FLAGS (\\Seen)', 'STORE 5 FLAGS ()', 'b: NOOP', 'STORE 1 -FLAGS ($NewKeyword)', 'STORE 1 +FLAGS (\\Recent)', 'STORE 99 +FLAGS (\\Seen)', 'STORE 1 +FLAGS (\\NoSuch)', 'STORE 1 BADITEM (\\Seen)', 'UID STORE 99 +FLAGS (\\Seen)', 'b: NOOP', 'SEARCH KEYWORD $NewKeyword',
    { conn: 'c', parts: ['APPEND st ($Brand \\Seen) "07-Apr-2025 10:00:00 +0000" ', lit('Subject: brand\r\n\r\nnew keyword\r\n')] }, 'NOOP', 'FETCH 7 FLAGS', 'b: NOOP', 'b: FETCH 7 (FLAGS UID)'] },
  { name: 'store-examine', steps: ['EXAMINE INBOX', 'STORE 1 +FLAGS (\\Seen)'] },
  // COPY / MOVE / EXPUNGE
  { name: 'copy-move', steps: [...own('cm'), 'CREATE dest', 'b: SELECT cm', 'COPY 1:2 dest', 'UID COPY 3,5 dest', 'COPY 1 nosuch', 'COPY 99 dest', 'MOVE 2 dest', 'b: NOOP', 'UID MOVE 4:5 dest', 'b: NOOP', 'MOVE 1 cm', 'COPY 1 cm', 'FETCH 1:* (UID FLAGS)', 'SEARCH RECENT', 'b: NOOP', 'b: FETCH 1:* (UID FLAGS)', 'STATUS dest (MESSAGES UIDNEXT UNSEEN)', 'EXAMINE dest', 'FETCH 1:* (UID FLAGS INTERNALDATE)'] },
  { name: 'expunge', steps: [...own('ex'), 'b: SELECT ex', 'STORE 1,3,5 +FLAGS.SILENT (\\Deleted)', 'EXPUNGE', 'b: NOOP', 'STORE 1 +FLAGS.SILENT (\\Deleted)', 'UID EXPUNGE 1:2', 'UID EXPUNGE 3:4', 'b: NOOP', 'FETCH 1:* (UID FLAGS)', 'CLOSE', 'b: NOOP'] },
  { name: 'empty-mailbox', steps: ['CREATE empty', 'SELECT empty', 'FETCH 1 FLAGS', 'FETCH 2:3 FLAGS', 'STORE 1 +FLAGS (\\Seen)', 'COPY 1 INBOX', 'MOVE 1 INBOX', 'FETCH 1:* FLAGS', 'FETCH * FLAGS', 'UID FETCH 1:* FLAGS', 'UID STORE 1 +FLAGS (\\Seen)', 'SEARCH ALL', 'SEARCH 1', 'EXPUNGE'] },
  { name: 'expunge-examine', steps: ['EXAMINE INBOX', 'EXPUNGE', 'CLOSE', 'EXPUNGE'] },
  // LIST / LSUB / LIST-EXTENDED / STATUS
  {
    name: 'list',
    steps: ['CREATE a/test1', 'CREATE a/test2', 'CREATE a/test2/test1', 'CREATE b', 'CREATE c/', 'SUBSCRIBE a/test2', 'SUBSCRIBE a/test2/test1', 'SUBSCRIBE b', 'SUBSCRIBE gone', 'DELETE b', 'LIST "" a/*', 'LIST "" a/%', 'LIST "" %/test1', 'LIST "" c', 'LIST "a/" test1', 'LIST "" ""', 'LSUB "" *', 'LIST "" a', 'LIST "" c*', 'LSUB "" a/%', 'LIST (SUBSCRIBED) "" *', 'LIST (SUBSCRIBED RECURSIVEMATCH) "" %', 'LIST (SUBSCRIBED RECURSIVEMATCH) "" (a/test2 a/test2/test1)', 'LIST "" (a/test1 b) RETURN (CHILDREN)', 'LIST "" a/% RETURN (SUBSCRIBED)', 'LIST "" a/% RETURN (STATUS (MESSAGES UNSEEN))', 'LIST "" nosuch', 'LIST "" ~foo', 'CREATE ~foo', 'LIST "" ~%', 'RENAME a/test1 a/renamed', 'LIST "" a/%', 'CREATE INBOX', 'DELETE nosuch', 'RENAME nosuch x', 'DELETE a/test2', 'LIST "" a/test2'],
  },
  { name: 'status', steps: ['STATUS INBOX (MESSAGES UIDNEXT UNSEEN)', 'STATUS INBOX (UIDVALIDITY HIGHESTMODSEQ)', 'STATUS nosuch (MESSAGES)', 'STATUS INBOX (FOO)', 'STATUS INBOX ()', 'SELECT INBOX', 'STATUS INBOX (MESSAGES)'] },
  // CONDSTORE / QRESYNC
  { name: 'condstore', steps: ['ENABLE CONDSTORE', ...own('cs'), 'FETCH 1 (FLAGS MODSEQ)', 'STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Flagged)', 'STORE 2 (UNCHANGEDSINCE $HMS) +FLAGS (\\Flagged)', 'STORE 3 (UNCHANGEDSINCE $HMS) +FLAGS.SILENT (\\Seen)', 'STORE 4 +FLAGS.SILENT (\\Seen)', 'FETCH 1:* (FLAGS) (CHANGEDSINCE $HMS)', 'SEARCH MODSEQ 1', 'SEARCH RETURN (MIN) MODSEQ 1', 'SEARCH RETURN (MAX COUNT) MODSEQ 1 FLAGGED', 'UID FETCH 1:* FLAGS (CHANGEDSINCE 1)'] },
  { name: 'qresync', steps: [...own('qr'), 'STORE 3 +FLAGS.SILENT (\\Deleted)', 'EXPUNGE', 'STATUS qr (HIGHESTMODSEQ UIDVALIDITY)', 'STORE 1 +FLAGS.SILENT (\\Flagged)', 'UNSELECT', 'ENABLE QRESYNC', 'SELECT qr (QRESYNC ($UV 1))', 'UID FETCH 1:* FLAGS (CHANGEDSINCE 1 VANISHED)', 'SELECT qr (QRESYNC (1 1))', 'EXAMINE qr (QRESYNC ($UV 1 1:10))'] },
  { name: 'keywords-after-expunge', steps: [...own('kw'), 'STORE 2 +FLAGS.SILENT (\\Deleted)', 'EXPUNGE', 'SELECT kw'] },
  // APPEND
  {
    name: 'append',
    steps: [
      'CREATE ap',
      { parts: ['APPEND ap (\\Seen $Custom) "10-Apr-2025 10:00:00 +0000" ', lit(PLAIN)] },
      { parts: ['APPEND ap ', lit('Subject: x\r\n\r\ny\r\n')] },
      { parts: ['APPEND nosuch ', lit('Subject: x\r\n\r\ny\r\n')] },
      'SELECT ap', 'FETCH 1:* (FLAGS RFC822.SIZE BODY.PEEK[1])', 'FETCH 1 INTERNALDATE',
      { parts: ['APPEND ap () "31-Feb-2025 10:00:00 +0000" ', lit('Subject: x\r\n\r\ny\r\n')] },
    ],
  },
  {
    name: 'append-literal8',
    steps: ['CREATE ap8', { parts: ['APPEND ap8 ~', lit('Subject: binary\r\nContent-Type: text/plain\r\n\r\nbin\u0000ary body\r\n')] }, 'EXAMINE ap8', 'FETCH 1 (BODY.PEEK[1] BINARY.PEEK[1] RFC822.SIZE)'],
  },
  // errors and the other commands
  { name: 'errors', steps: ['FOO', 'FETCH 1 FLAGS', 'SELECT', 'SELECT nosuch', 'SELECT INBOX', 'FETCH 0 FLAGS', 'FETCH 99 FLAGS', 'FETCH 1:99 UID', 'FETCH 1 (FLAGS', 'FETCH 1 NOSUCH', 'FETCH 1 BODY[4.X]', 'FETCH x FLAGS', 'UID FETCH 99 FLAGS', 'UID FETCH 0 FLAGS', 'COPY 1', 'CHECK', 'NOOP', 'LOGIN a b', 'NAMESPACE', 'LSUB', 'CLOSE', 'CLOSE'] },
]

// ---------------------------------------------------------------------------------------------------------------
// Expected differences, by case/step index: the edits (each [Dovecot's text, mailgrid's text], replaced everywhere)
// that turn Dovecot's normalized answer (lines joined by \n) into mailgrid's exactly, and why mailgrid answers so.
// The case fails when either server's answer moves.

interface Expected { edits: Array<[string, string]>, why: string }
const EXPECTED: Record<string, Expected> = {
  // STORE/EXPUNGE in a mailbox opened by EXAMINE
  'examine/2': { edits: [['TAG OK', 'TAG NO [READ-ONLY]']], why: 'RFC 3501 6.3.2: EXAMINE permits no change to the mailbox; Dovecot answers OK and changes nothing, mailgrid says so (RFC 5530 READ-ONLY)' },
  'store-examine/1': { edits: [['TAG OK', 'TAG NO [READ-ONLY]']], why: 'as examine/2' },
  'expunge-examine/1': { edits: [['TAG OK', 'TAG NO [READ-ONLY]']], why: 'as examine/2' },
  // where a body part ends, and how many lines it has
  'fetch-bodystructure/1': {
    edits: [['"quoted-printable" 199 3', '"quoted-printable" 199 4'], ['"base64" 36 0', '"base64" 36 1'], ['"7bit" 32 0', '"7bit" 32 1'], ['"7bit" 469', '"7bit" 467'], ['"7bit" 10 0', '"7bit" 10 1'], ['"quoted-printable" 21 0 nil nil nil nil) 5 ', '"quoted-printable" 21 1 nil nil nil nil) 6 ']],
    why: 'RFC 2046 5.1.1: the CRLF before a boundary belongs to the boundary, so a part ends before it: a nested multipart ends at its close delimiter (467 bytes, Dovecot counts the CRLF after it too, 469), and a part whose last line is followed by the boundary has that line as a text line (RFC 3501 body-fld-lines; Dovecot counts line ends, 0 lines for "inner text")',
  },
  'fetch-bodystructure/2': {
    edits: [['"quoted-printable" 199 3', '"quoted-printable" 199 4'], ['"base64" 36 0', '"base64" 36 1'], ['"7bit" 32 0', '"7bit" 32 1'], ['"7bit" 469', '"7bit" 467'], ['"7bit" 10 0', '"7bit" 10 1'], ['"quoted-printable" 21 0) 5)', '"quoted-printable" 21 1) 6)']],
    why: 'as fetch-bodystructure/1',
  },
  'fetch-bodystructure/3': {
    edits: [['"7bit" 32 0', '"7bit" 32 1'], ['"7bit" 469', '"7bit" 467'], ['"7bit" 10 0', '"7bit" 10 1'], ['"quoted-printable" 21 0) 5)', '"quoted-printable" 21 1) 6)']],
    why: 'as fetch-bodystructure/1',
  },
  'fetch-sections/2': { edits: [['--inner--\\r\\n"', '--inner--"']], why: 'RFC 2046 5.1.1: BODY[1] (a nested multipart) ends at its close delimiter; the CRLF after it belongs to the outer boundary' },
  'fetch-rfc822-nested/1': { edits: [['--in2--\\r\\n"', '--in2--"']], why: 'as fetch-sections/2, for BODY[2] and BODY[2.TEXT] of a message/rfc822 part' },
  'fetch-partial/5': { edits: [['* 1 FETCH (BODY[HEADER]<0> "")\nTAG OK', 'TAG BAD']], why: 'RFC 3501 9: partial = "<" number "." nz-number ">", a length of 0 is a syntax error' },
  'fetch-binary/7': {
    edits: [[
      '* 2 FETCH (BINARY[1] "--inner\\r\\nContent-Type: text/plain; charset=utf-8\\r\\nContent-Transfer-Encoding: binary\\r\\n\\r\\nGrÃ¼Ã\u009fe aus KÃ¶ln, a soft line break and trailing space\\r\\nand a very long line that has been wrapped by the quoted-printable encoder so that it stays below seventy-six characters.\\r\\n--inner\\r\\nContent-Type: text/html; charset=utf-8\\r\\nContent-Transfer-Encoding: binary\\r\\n\\r\\n<p>GrÃ¼Ã\u009fe aus KÃ¶ln</p>\\n\\r\\n--inner--\\r\\n")',
      '* 2 FETCH (BINARY[1] NIL)',
    ]],
    why: 'RFC 3516 4.2 defines BINARY as the part content with its Content-Transfer-Encoding undone; a multipart has none of its own, and mailgrid answers NIL where Dovecot rewrites the nested parts (their headers say "binary")',
  },
  'fetch-binary/8': { edits: [['* 2 FETCH (BINARY[1.MIME] "Content-Type: multipart/alternative; boundary=\\"inner\\"\\r\\n\\r\\n")\nTAG OK', 'TAG BAD']], why: 'RFC 3516 4.1: section-binary = "[" [section-part] "]", no MIME/HEADER/TEXT specifier' },
  'fetch-edges/6': { edits: [['* 1 FETCH (BODY[0] "")\nTAG OK', 'TAG BAD']], why: 'RFC 3501 9: section-part = nz-number *("." nz-number); 0 is a syntax error (Dovecot answers an empty string)' },
  'fetch-edges/7': { edits: [['* 1 FETCH (BODY[1.0] "")\nTAG OK', 'TAG BAD']], why: 'as fetch-edges/6' },
  'fetch-edges/11': { edits: [['(BODY[2.1] "JVBERi0xLjQKJcOkw7zDtsOfCjEgMCBvYmoKPDwvVHlwZS9DYXRhbG9nPj4KZW5kb2JqCg==")', '(BODY[2.1] "")']], why: 'RFC 3501 6.4.5 gives a part 1 to a non-multipart *message*; part 2 of message 2 is a leaf body part (application/pdf) with no part 2.1, so mailgrid answers it as a nonexistent part (empty, as both do for BODY[3.1]); Dovecot takes 2.1 as part 2 itself' },
  'fetch-edges/12': { edits: [['(BINARY[2] "")', '(BINARY[2] NIL)']], why: 'a nonexistent part: RFC 3516 leaves the answer open; mailgrid answers NIL, Dovecot an empty string' },
  // SEARCH
  'search-flags/14': { edits: [['* FLAGS ($Forwarded $Label1 \\Answered \\Deleted \\Draft \\Flagged \\Seen nosuch)\n* OK [PERMANENTFLAGS ()]\n', '']], why: 'searching for a keyword does not define it (RFC 3501 7.2.6 FLAGS: the flags applicable in the mailbox); Dovecot adds it to the mailbox' },
  'esearch/3': { edits: [['* FLAGS ($Forwarded $Label1 \\Answered \\Deleted \\Draft \\Flagged \\Seen nosuch)\n* OK [PERMANENTFLAGS ()]\n', '']], why: 'as search-flags/14' },
  'search-decoded/1': { edits: [['* SEARCH\n', '* SEARCH 4\n']], why: 'RFC 3501 6.4.4 names the envelope field, which has no comments (Dovecot matches none); mailgrid also matches the header text, as issue 12 item 9 asks (a superset of the RFC answer, kept on purpose)' },
  'search-decoded/3': { edits: [['* SEARCH\n', '* SEARCH 4\n']], why: 'as search-decoded/1: "Trailing Name" is a comment after <x@example.com>, in the Cc header text only' },
  'search-decoded/5': { edits: [['* SEARCH\n', '* SEARCH 1\n']], why: 'as search-decoded/1: "(Joe at work)" is a comment in the From header text only' },
  'search-dates-sizes/4': { edits: [['* SEARCH 1 6', '* SEARCH 1']], why: 'RFC 3501 6.4.4: SENTBEFORE compares the Date: header; message 6 has none and matches no SENT* key (Dovecot takes a missing Date as the epoch)' },
  'search-headers/4': { edits: [['TAG BAD', '* SEARCH 2\nTAG OK']], why: 'kept lenient: 8-bit bytes in an atom are outside RFC 3501 ATOM-CHAR (Dovecot: BAD); mailgrid reads them as UTF-8 (RFC 6855 UTF8=ACCEPT is advertised) rather than refuse a client that forgets CHARSET' },
  'search-headers/11': { edits: [['TAG BAD', '* SEARCH 2\nTAG OK']], why: 'as search-headers/4' },
  'search-errors/2': { edits: [['* SEARCH 1 2 3 4 5 6\nTAG OK', 'TAG BAD']], why: 'RFC 3501 9: date-day is 1-31 of a real date; 32-Apr-2025 is a syntax error (Dovecot accepts it)' },
  // SORT keys of group addresses
  'sort/5': { edits: [['* SORT 6 2 4 1 3 5', '* SORT 4 6 2 1 3 5']], why: 'RFC 5256 3 TO: the addr-mailbox of the first To address. mailgrid takes the first mailbox and skips group markers (RFC 5322 3.4: a group is not an address), so "undisclosed-recipients:;" has the empty key; Dovecot takes the group name' },
  'sort/6': { edits: [['* SORT 2 3 5 6 4 1', '* SORT 2 3 5 6 1 4']], why: 'as sort/5: message 1\'s first Cc mailbox is a@example.net (inside the group "team:"), Dovecot sorts it by "team"' },
  'sort/10': { edits: [['* SORT 6 2 4 1 3 5', '* SORT 4 6 2 1 3 5']], why: 'as sort/5, for RFC 5957 DISPLAYTO' },
  // STORE
  'store/13': { edits: [['TAG OK', '* 5 FETCH (FLAGS (\\Recent))\nTAG OK']], why: 'RFC 3501 6.4.6: without .SILENT the server SHOULD send the FETCH of each message named, changed or not; Dovecot omits unchanged ones' },
  // a keyword new to the mailbox arriving with an APPENDed message (another session)
  'store/24': { edits: [['* FLAGS ($Brand $Forwarded $Label1 $NewKeyword \\Answered \\Deleted \\Draft \\Flagged \\Seen)\n* OK [PERMANENTFLAGS ($Brand $Forwarded $Label1 $NewKeyword \\* \\Answered \\Deleted \\Draft \\Flagged \\Seen)]\n', '']], why: 'RFC 3501 7.2.6 fixes no moment for FLAGS, only (with 7.4.2) that a client learns a keyword before a FETCH carries it: Dovecot announces it with the EXISTS, mailgrid just before the first FETCH that carries it (store/25; the order is checked on the raw stream, RFC 3501 7.2.6 rule above)' },
  'store/25': { edits: [['TAG OK', '* FLAGS ($Brand $Forwarded $Label1 $NewKeyword \\Answered \\Deleted \\Draft \\Flagged \\Seen)\n* OK [PERMANENTFLAGS ($Brand $Forwarded $Label1 $NewKeyword \\* \\Answered \\Deleted \\Draft \\Flagged \\Seen)]\nTAG OK']], why: 'as store/24' },
  'store/26': { edits: [['* FLAGS ($Brand $Forwarded $Label1 $NewKeyword \\Answered \\Deleted \\Draft \\Flagged \\Seen)\n* OK [PERMANENTFLAGS ($Brand $Forwarded $Label1 $NewKeyword \\* \\Answered \\Deleted \\Draft \\Flagged \\Seen)]\n', '']], why: 'as store/24' },
  'store/27': { edits: [['TAG OK', '* FLAGS ($Brand $Forwarded $Label1 $NewKeyword \\Answered \\Deleted \\Draft \\Flagged \\Seen)\n* OK [PERMANENTFLAGS ($Brand $Forwarded $Label1 $NewKeyword \\* \\Answered \\Deleted \\Draft \\Flagged \\Seen)]\nTAG OK']], why: 'as store/24' },
  'condstore/9': { edits: [['* 4 FETCH (MODSEQ M)\n', '']], why: 'RFC 3501 6.4.6: .SILENT suppresses the FETCH; RFC 7162 3.1.3 requires one with MODSEQ after .SILENT for a conditional STORE (UNCHANGEDSINCE), which mailgrid sends (condstore/7), not for a plain one as Dovecot does' },
  'qresync/7': { edits: [['* 1 FETCH (MODSEQ M)\n', '']], why: 'as condstore/9' },
  'qresync/11': { edits: [['* VANISHED (EARLIER) 3,6', '* VANISHED (EARLIER) 3']], why: 'RFC 3501 9: in a UID set * is the largest UID in use (5 here), so UID 6 is outside 1:*; Dovecot reads * as UIDNEXT-1' },
  'keywords-after-expunge/6': { edits: [['$Forwarded $Label1', '$Label1']], why: 'RFC 3501 7.2.6: FLAGS lists the flags applicable; mailgrid lists the keywords its messages carry, Dovecot keeps every keyword ever set' },
  // sequence numbers in an empty mailbox
  'empty-mailbox/7': { edits: [['TAG BAD', 'TAG OK']], why: 'RFC 3501 9 defines * for a non-empty mailbox only; mailgrid lets 1:* and * name nothing (clients FETCH 1:* right after SELECT), explicit numbers are BAD as in Dovecot (empty-mailbox/2-6)' },
  'empty-mailbox/8': { edits: [['TAG BAD', 'TAG OK']], why: 'as empty-mailbox/7' },
  // mailboxes
  'list/13': { edits: [['(\\HasNoChildren \\Noselect) "/" c', '(\\HasNoChildren) "/" c']], why: 'RFC 3501 6.3.3: CREATE "c/" declares that names will be created under c; Dovecot makes c a \\Noselect directory, mailgrid a mailbox (both allowed)' },
  'list/18': { edits: [['(\\HasNoChildren \\Noselect) "/" c', '(\\HasNoChildren) "/" c']], why: 'as list/13' },
  'list/16': { edits: [['* LSUB () "/" b', '* LSUB (\\Noselect) "/" b']], why: 'a subscribed name that does not exist cannot be selected; RFC 3501 6.3.9 lets LSUB flags differ from LIST\'s, and mailgrid says \\Noselect (LIST (SUBSCRIBED) says \\NonExistent in both)' },
  'list/17': { edits: [['(\\HasChildren \\Noselect) "/" a', '(\\HasChildren) "/" a']], why: 'RFC 3501 6.3.3: CREATE a/test1 creates the superior name a as the server chooses: Dovecot a \\Noselect directory, mailgrid a mailbox' },
  'list/22': { edits: [['"/" a/test2 (CHILDINFO (SUBSCRIBED))', '"/" a/test2']], why: 'RFC 5258 3.5 and its rule 2B (section 3.3): CHILDINFO tells of subscribed descendants the patterns do not list; a/test2/test1 is listed itself here, so mailgrid adds none (issue 12 item 8)' },
  'list/28': { edits: [['TAG NO', 'TAG OK']], why: '~ is an ordinary ATOM-CHAR and a valid mailbox name (RFC 3501 9); Dovecot refuses names starting with ~ for its file system layout' },
  'list/29': { edits: [['TAG OK', '* LIST (\\HasNoChildren) "/" "~foo"\nTAG OK']], why: 'the mailbox ~foo exists only on mailgrid (list/28)' },
  'list/35': { edits: [['TAG OK', 'TAG NO']], why: 'RFC 9051 6.3.4/7.1: a server may refuse to DELETE a mailbox with children (NO [HASCHILDREN]); Dovecot deletes its messages and keeps it as \\Noselect' },
  'list/36': { edits: [['(\\HasChildren \\Noselect) "/" a/test2', '(\\HasChildren) "/" a/test2']], why: 'the consequence of list/35' },
  // APPEND
  'append/7': { edits: [['* 3 EXISTS\nTAG OK [APPENDUID V 3]', 'TAG BAD']], why: 'RFC 3501 9: 31-Feb-2025 is no date-time; Dovecot accepts it' },
  'append-literal8/3': { edits: [['BODY[1] "bin\u0080ary body\\r\\n" RFC822.SIZE 59', 'BODY[1] "YmluAGFyeSBib2R5DQo=" RFC822.SIZE 100']], why: 'RFC 3516 4.3 lets a server that cannot keep binary content store it encoded: mailgrid keeps the binary part base64 (BINARY[1] gives the same bytes in both); Dovecot keeps it raw with the NUL turned into 0x80 in BODY[1]' },
}

// ---------------------------------------------------------------------------------------------------------------
// The client side

class Conn {
  readonly raw: RawClient
  n = 0
  hms = '0'
  uv = '0'
  knownKeywords = new Set<string>()
  violations: string[] = []
  private constructor (raw: RawClient) { this.raw = raw }

  static async open (port: number): Promise<Conn> {
    const c = new Conn(await RawClient.connect(port))
    await c.raw.read(buf => /\r\n$/.test(buf))
    const r = await c.send([`LOGIN "${USER}" "${PASSWORD}"`])
    if (!/ OK/.test(r)) throw new Error(`login: ${r}`)
    return c
  }

  async send (parts: Array<string | Buffer>): Promise<string> {
    const tag = `t${++this.n}`
    const chunks: Buffer[] = [Buffer.from(`${tag} `)]
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!
      if (typeof p === 'string') {
        chunks.push(Buffer.from(p.replaceAll('$HMS', this.hms).replaceAll('$UV', this.uv), 'utf8'))
      } else {
        chunks.push(Buffer.from(`{${p.length}+}\r\n`), p)
      }
    }
    chunks.push(Buffer.from('\r\n'))
    this.raw.write(Buffer.concat(chunks))
    const out = await this.raw.read(buf => new RegExp(`(^|\\r\\n)${tag} (OK|NO|BAD)[^\\r\\n]*\\r\\n$`).test(buf) || /(^|\r\n)\* BYE[^\r\n]*\r\n$/.test(buf), 30_000)
    this.observe(out)
    return out.replace(new RegExp(`(^|\\r\\n)${tag} `), '$1TAG ')
  }

  /** Keeps $HMS/$UV current and checks the keyword rule on the raw order of responses. */
  private observe (out: string): void {
    for (const r of splitResponses(out)) {
      const hms = /HIGHESTMODSEQ (\d+)/.exec(r)
      if (hms !== null) this.hms = hms[1]!
      const uv = /UIDVALIDITY (\d+)/.exec(r)
      if (uv !== null) this.uv = uv[1]!
      const flags = /^\* FLAGS \(([^)]*)\)/.exec(r)
      if (flags !== null) this.knownKeywords = new Set(flags[1]!.split(' ').filter(f => f !== ''))
      const fetched = /^\* \d+ FETCH .*?FLAGS \(([^)]*)\)/.exec(r)
      if (fetched !== null) {
        for (const f of fetched[1]!.split(' ')) {
          if (f === '' || f.startsWith('\\')) continue
          if (!this.knownKeywords.has(f)) this.violations.push(`${f} in ${r.slice(0, 120)} before a FLAGS response named it`)
        }
      }
    }
  }

  close (): void { this.raw.close() }
}

/** One response per element: a line, with any literals it carries. */
function splitResponses (buf: string): string[] {
  const out: string[] = []
  let pos = 0
  let cur = ''
  while (pos < buf.length) {
    const eol = buf.indexOf('\r\n', pos)
    if (eol === -1) { cur += buf.slice(pos); break }
    const line = buf.slice(pos, eol)
    pos = eol + 2
    const m = /~?\{(\d+)\+?\}$/.exec(line)
    if (m !== null) {
      const n = Number(m[1])
      cur += line + '\r\n' + buf.slice(pos, pos + n)
      pos += n
      continue
    }
    out.push(cur + line)
    cur = ''
  }
  if (cur !== '') out.push(cur)
  return out
}

// ---------------------------------------------------------------------------------------------------------------
// Normalization

type Tok = { t: 'atom', v: string } | { t: 'str', v: string } | { t: 'list', v: Tok[] }

function tokenize (s: string): Tok[] {
  let pos = 0
  const list = (close: string | null): Tok[] => {
    const items: Tok[] = []
    while (pos < s.length) {
      const c = s[pos]!
      if (c === ' ') { pos++; continue }
      if (close !== null && c === close) { pos++; return items }
      if (c === '(') { pos++; items.push({ t: 'list', v: list(')') }); continue }
      if (c === '"') {
        let v = ''
        pos++
        while (pos < s.length && s[pos] !== '"') {
          if (s[pos] === '\\') pos++
          v += s[pos++]
        }
        pos++
        items.push({ t: 'str', v })
        continue
      }
      const m = /^~?\{(\d+)\+?\}\r\n/.exec(s.slice(pos, pos + 30))
      if (m !== null) {
        pos += m[0].length
        items.push({ t: 'str', v: s.slice(pos, pos + Number(m[1])) })
        pos += Number(m[1])
        continue
      }
      let depth = 0
      const start = pos
      while (pos < s.length) {
        const ch = s[pos]!
        if (ch === '[') depth++
        else if (ch === ']') depth--
        else if (depth === 0 && (ch === ' ' || ch === ')' || ch === '(')) break
        pos++
      }
      items.push({ t: 'atom', v: s.slice(start, pos).toUpperCase() === 'NIL' ? 'NIL' : s.slice(start, pos) })
    }
    return items
  }
  return list(null)
}

/** Values the servers choose themselves: the token after these names is replaced. */
const SERVER_CHOSEN = new Map([['UIDVALIDITY', 'V'], ['HIGHESTMODSEQ', 'M'], ['MODSEQ', 'M'], ['MAILBOXID', 'ID'], ['EMAILID', 'ID'], ['THREADID', 'ID']])

function canon (toks: Tok[], sortPairs = false): string {
  const out: string[] = []
  for (let i = 0; i < toks.length; i++) {
    const k = toks[i]!
    if (k.t === 'atom' && SERVER_CHOSEN.has(k.v.toUpperCase()) && i + 1 < toks.length) {
      out.push(k.v.toUpperCase(), SERVER_CHOSEN.get(k.v.toUpperCase())!)
      i++
      continue
    }
    const next = toks[i + 1]
    if (k.t === 'atom' && /^(FLAGS|PERMANENTFLAGS)$/i.test(k.v) && next?.t === 'list') {
      // a set of flags: RFC 3501 fixes no order
      out.push(k.v.toUpperCase(), `(${next.v.map(f => canon([f])).sort().join(' ')})`)
      i++
      continue
    }
    if (k.t === 'atom' && /^(BODY|BODYSTRUCTURE)$/i.test(k.v) && next?.t === 'list') {
      // media types, subtypes, parameter names and encodings are case-insensitive (RFC 2045 5.1, 6.1); Dovecot
      // writes them in lower case, mailgrid in upper case (both usual); compared case-folded
      out.push(k.v.toUpperCase(), `(${canon(next.v).toLowerCase()})`)
      i++
      continue
    }
    out.push(k.t === 'atom' ? k.v : k.t === 'str' ? JSON.stringify(k.v) : `(${canon(k.v)})`)
  }
  if (sortPairs) {
    const pairs: string[] = []
    for (let i = 0; i < out.length; i += 2) pairs.push(`${out[i]!.toUpperCase()} ${out[i + 1] ?? ''}`)
    return pairs.sort().join(' ')
  }
  return out.join(' ')
}

// Response codes dropped before comparing. RFC 5530's codes are SHOULDs and Dovecot 2.3 sends some where mailgrid
// sends others (CLIENTBUG for STATUS of the selected mailbox, NONEXISTENT where Dovecot has none); MAILBOXID (RFC 8474)
// is not in Dovecot 2.3; CLOSED is required only after ENABLE QRESYNC (RFC 7162 3.2.11), optional otherwise.
const TOLERATED_CODES = new Set(['CLIENTBUG', 'SERVERBUG', 'NONEXISTENT', 'ALREADYEXISTS', 'CANNOT', 'INUSE', 'UNAVAILABLE',
  'EXPUNGEISSUED', 'CORRUPTION', 'NOPERM', 'LIMIT', 'OVERQUOTA', 'CONTACTADMIN', 'MAILBOXID', 'CLOSED', 'HASCHILDREN'])

/** mailgrid provisions these for every user, subscribed (SPECIAL-USE, RFC 6154); the private Dovecot has none. */
const PROVISIONED = new Set(['Archive', 'Drafts', 'Junk', 'Sent', 'Trash'])

/** LIST/LSUB: the attributes as a set; null for a provisioned mailbox. */
function normalizeList (r: string, command: string): string | null {
  const m = /^\* (LIST|LSUB) (.*)$/s.exec(r)
  if (m === null) return null
  const toks = tokenize(m[2]!)
  const name = toks[2]?.t === 'atom' || toks[2]?.t === 'str' ? toks[2].v : ''
  if (PROVISIONED.has(name)) return ''
  // mailgrid subscribes INBOX for every user
  if (name === 'INBOX' && (m[1] === 'LSUB' || /SUBSCRIBED/i.test(command))) return ''
  let attrs = toks[0]?.t === 'list' ? toks[0].v.map(a => canon([a])) : []
  // RFC 5258 4: \HasChildren/\HasNoChildren without RETURN (CHILDREN) are optional in LIST-EXTENDED replies
  if (/^L(IST|SUB) \(|RETURN/i.test(command) && !/CHILDREN/i.test(command)) attrs = attrs.filter(a => !/^\\Has(No)?Children$/i.test(a))
  // extended data: an astring tag (RFC 5258 mbox-list-extended-item-tag), quoted or not
  const rest = toks.slice(3).map(t => canon([t]).replace(/"([A-Z-]+)"/g, '$1'))
  return [`* ${m[1]} (${attrs.sort().join(' ')})`, canon([toks[1]!]), canon([toks[2]!]), ...rest].join(' ')
}

/** A status response's code, normalized; null when there is none, '' when dropped. */
function code (text: string): string | null {
  if (!text.startsWith('[')) return null
  const end = text.indexOf(']')
  const inner = text.slice(1, end === -1 ? undefined : end)
  const toks = tokenize(inner)
  const name = toks[0]?.t === 'atom' ? toks[0].v.toUpperCase() : ''
  if (name === 'CAPABILITY' || TOLERATED_CODES.has(name)) return ''
  if (name === 'COPYUID' || name === 'APPENDUID') return `[${name} V ${canon(toks.slice(2))}]`
  // RFC 3501 7.1: the list of supported charsets is optional
  if (name === 'BADCHARSET') return '[BADCHARSET]'
  return `[${canon(toks)}]`
}

function normalizeResponse (r: string, command: string): string | null {
  const list = normalizeList(r, command)
  if (list === '') return null
  if (list !== null) return list
  const status = /^(\S+) (?:(OK|NO|BAD|BYE|PREAUTH))(?: (.*))?$/s.exec(r)
  if (status !== null) {
    const c = code(status[3] ?? '')
    if (c === '' && status[1] === '*') return null // an untagged response with a dropped code
    return `${status[1]} ${status[2]}${c === null || c === '' ? '' : ' ' + c}`
  }
  if (r.startsWith('+')) return '+'
  if (/^\* (CAPABILITY|ID) /i.test(r)) return null
  const statusItems = /^\* STATUS (.*)$/s.exec(r)
  if (statusItems !== null) {
    // RFC 3501 7.2.4 fixes no order of the attributes
    const toks = tokenize(statusItems[1]!)
    const last = toks.at(-1)
    if (last?.t === 'list') return `* STATUS ${canon(toks.slice(0, -1))} (${canon(last.v, true)})`
  }
  const fetch = /^\* (\d+) FETCH (.*)$/s.exec(r)
  if (fetch !== null) {
    const toks = tokenize(fetch[2]!)
    const inner = toks[0]?.t === 'list' ? toks[0].v : toks
    return `* ${fetch[1]} FETCH (${canon(inner, true)})`
  }
  return canon(tokenize(r))
}

/** A command's responses: untagged sorted (EXPUNGEs keep their order, after the others), then the tagged one. */
function normalize (out: string, command: string): string[] {
  let rs = splitResponses(out).map(r => normalizeResponse(r, command)).filter((r): r is string => r !== null)
  // RFC 7162 3.1.2.1: a server that keeps mod-sequences sends HIGHESTMODSEQ at every SELECT/EXAMINE (mailgrid);
  // Dovecot sends it only once CONDSTORE is enabled; compared only where both must send it.
  const opening = /^(SELECT|EXAMINE) /i.test(command)
  if (opening && !/CONDSTORE|QRESYNC/i.test(command)) rs = rs.filter(r => r !== '* OK [HIGHESTMODSEQ M]')
  // RFC 3501 7.3.2: RECENT comes with SELECT/EXAMINE and when new messages arrive; Dovecot also sends it after
  // expunges. Outside SELECT/EXAMINE \Recent is compared through FETCH FLAGS and SEARCH RECENT/NEW instead.
  if (!opening) rs = rs.filter(r => !/^\* \d+ RECENT$/.test(r))
  // RFC 3501 7.4.2: a server may add items to an unsolicited FETCH; mailgrid adds UID (what QRESYNC needs)
  if (!/\bUID\b/i.test(command)) rs = rs.map(r => r.startsWith('* ') ? r.replace(/^(\* \d+ FETCH \(.*?)(?:UID \d+ |\s?UID \d+(?=\)$))/, '$1') : r)
  // Flag changes of one message since the last command: mailgrid reports each, Dovecot the last state; a report of
  // a message expunged in the same batch is moot. Only the last EXISTS counts (RFC 3501 7.3.1).
  const kept: Array<string | null> = []
  let flagsAt = new Map<number, number>()
  let existsAt = -1
  for (const r of rs) {
    const f = /^\* (\d+) FETCH \(FLAGS \([^)]*\)(?: MODSEQ M)?\)$/.exec(r)
    const x = /^\* (\d+) EXPUNGE$/.exec(r)
    if (f !== null) {
      const at = flagsAt.get(Number(f[1]))
      if (at !== undefined) kept[at] = null
      flagsAt.set(Number(f[1]), kept.length)
    } else if (x !== null) {
      const n = Number(x[1])
      const at = flagsAt.get(n)
      if (at !== undefined) kept[at] = null
      const next = new Map<number, number>()
      for (const [seq, i] of flagsAt) if (seq !== n) next.set(seq > n ? seq - 1 : seq, i)
      flagsAt = next
    } else if (/^\* \d+ EXISTS$/.test(r)) {
      if (existsAt >= 0) kept[existsAt] = null
      existsAt = kept.length
    }
    kept.push(r)
  }
  rs = kept.filter((r): r is string => r !== null)
  const tagged = rs.filter(r => !r.startsWith('* ') && r !== '+')
  const untagged = rs.filter(r => r.startsWith('* ') || r === '+')
  const expunges = untagged.filter(r => /^\* \d+ EXPUNGE$/.test(r))
  return [...untagged.filter(r => !/^\* \d+ EXPUNGE$/.test(r)).sort(), ...expunges, ...tagged]
}

// ---------------------------------------------------------------------------------------------------------------
// Running a case on one server

interface Server { name: 'mailgrid' | 'dovecot', port: number }

async function setup (port: number): Promise<void> {
  const c = await Conn.open(port)
  try {
    for (const [msg, flags, date] of MESSAGES) {
      const r = await c.send([`APPEND INBOX ${flags} "${date}" `, msg])
      if (!/^TAG OK/m.test(r)) throw new Error(`APPEND: ${r}`)
    }
  } finally { c.close() }
}

interface Transcript { steps: Array<{ step: string, out: string[], raw: string }>, violations: string[] }

async function runCase (server: Server, kase: Case): Promise<Transcript> {
  const conns = new Map<string, Conn>()
  const transcript: Transcript = { steps: [], violations: [] }
  try {
    for (const step of kase.steps) {
      let conn = 'a'
      let parts: Array<string | Buffer>
      if (typeof step === 'string') {
        const m = /^([b-z]): (.*)$/.exec(step)
        if (m !== null) { conn = m[1]!; parts = [m[2]!] } else parts = [step]
      } else { conn = step.conn ?? 'a'; parts = step.parts }
      let c = conns.get(conn)
      if (c === undefined) { c = await Conn.open(server.port); conns.set(conn, c) }
      const raw = await c.send(parts)
      const command = parts.map(p => typeof p === 'string' ? p : `{${p.length}}`).join('')
      transcript.steps.push({ step: `${conn}: ${command}`, out: normalize(raw, command), raw })
    }
  } finally {
    for (const c of conns.values()) { transcript.violations.push(...c.violations); c.close() }
  }
  return transcript
}

// ---------------------------------------------------------------------------------------------------------------

describe('IMAP differential against Dovecot', { skip }, () => {
  let dovecot: DovecotServer
  const servers: Server[] = []
  let mailgridPort = 0
  const teardown: Array<() => Promise<void>> = []

  before(async () => {
    dovecot = await startDovecot({ users: [{ user: USER, password: PASSWORD }], layout: 'fs' })
    const fx = await fixture({ after: fn => { teardown.unshift(fn) } })
    mailgridPort = (await fx.server()).port
    servers.push({ name: 'dovecot', port: dovecot.imapPort }, { name: 'mailgrid', port: mailgridPort })
    await Promise.all(servers.map(async s => { await setup(s.port) }))
  })
  after(async () => {
    for (const fn of teardown) await fn()
    await dovecot?.stop()
  })

  for (const kase of CASES) {
    it(kase.name, async () => {
      const [d, m] = await Promise.all(servers.map(async s => await runCase(s, kase)))
      assert.deepEqual(m!.violations, [], 'mailgrid: a keyword in FETCH before FLAGS named it (RFC 3501 7.2.6)')
      assert.deepEqual(d!.violations, [], 'Dovecot: a keyword in FETCH before FLAGS named it (the check itself is wrong if this fails)')
      const diffs: string[] = []
      for (let i = 0; i < kase.steps.length; i++) {
        const ds = d!.steps[i]!
        const ms = m!.steps[i]!
        const key = `${kase.name}/${i}`
        const exp = EXPECTED[key]
        if (exp !== undefined) {
          let want = ds.out.join('\n')
          for (const [from, to] of exp.edits) {
            assert.ok(want.includes(from), `${key} ${ds.step}: Dovecot's answer moved, ${JSON.stringify(from)} not in\n${want}`)
            want = want.replaceAll(from, to)
          }
          assert.notEqual(want, ds.out.join('\n'), `${key}: the edits change nothing`)
          assert.equal(ms.out.join('\n'), want, `${key} ${ds.step}: expected difference (${exp.why})`)
          continue
        }
        if (JSON.stringify(ds.out) !== JSON.stringify(ms.out)) {
          diffs.push(`--- ${key} ${ds.step}\n  dovecot:  ${ds.out.join('\n            ')}\n  mailgrid: ${ms.out.join('\n            ')}`)
        }
      }
      if (diffs.length > 0 && process.env.DIFF_DUMP !== undefined) {
        const { appendFileSync } = await import('node:fs')
        for (let i = 0; i < kase.steps.length; i++) {
          if (EXPECTED[`${kase.name}/${i}`] !== undefined || JSON.stringify(d!.steps[i]!.out) === JSON.stringify(m!.steps[i]!.out)) continue
          appendFileSync(process.env.DIFF_DUMP, `  // ${d!.steps[i]!.step}\n  '${kase.name}/${i}': { edits: [[${JSON.stringify(d!.steps[i]!.out.join('\n'))}, ${JSON.stringify(m!.steps[i]!.out.join('\n'))}]], why: '' },\n`)
        }
      }
      if (diffs.length > 0) assert.fail(`${diffs.length} differences from Dovecot ${dovecot.version}:\n${diffs.join('\n')}`)
    })
  }
})

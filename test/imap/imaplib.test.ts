// Python's imaplib as a second real client: STARTTLS and implicit TLS, APPEND with a literal, FETCH of the
// exact bytes, SEARCH with CHARSET UTF-8, STORE, COPY, EXPUNGE, LIST, STATUS, mailbox management, IDLE-less
// change notification via NOOP, and a bad command answered BAD with the tag.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { python } from '../helpers/client.ts'
import { fixture, PASSWORD, richMessage, USER } from './helpers.ts'

const SCRIPT = String.raw`
import imaplib, json, ssl, sys
port, tls_port, user, password, message_hex = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
message = bytes.fromhex(message_hex)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
out = {}
m = imaplib.IMAP4('127.0.0.1', port)
out['caps_before'] = ' '.join(m.capabilities)
m.starttls(ssl_context=ctx)
out['caps_after'] = ' '.join(m.capabilities)
out['login'] = m.login(user, password)[0]
typ, data = m.append('INBOX', '(\\Seen $Label1)', imaplib.Time2Internaldate(1767225600), message)
out['append'] = [typ, data[0].decode()]
out['select'] = m.select('INBOX')[1][0].decode()
typ, data = m.fetch('1', '(FLAGS BODY.PEEK[])')
out['fetch_equal'] = data[0][1] == message
out['fetch_meta'] = data[0][0].decode()
typ, data = m.uid('SEARCH', 'CHARSET', 'UTF-8', 'SUBJECT', 'Köln'.encode('utf-8'))
out['search_utf8'] = data[0].decode()
out['search_keyword'] = m.search(None, 'KEYWORD', '$Label1')[1][0].decode()
out['store'] = m.store('1', '+FLAGS', '(\\Flagged)')[1][0].decode()
out['copy'] = m.copy('1', 'Archive')[0]
out['status'] = m.status('Archive', '(MESSAGES UIDNEXT UNSEEN)')[1][0].decode()
out['create'] = m.create('Parent/Child')[0]
out['list'] = sorted(x.decode() for x in m.list('""', 'Parent*')[1])
out['rename'] = m.rename('Parent', 'Renamed')[0]
out['list2'] = sorted(x.decode() for x in m.list('""', 'Renamed/*')[1])
out['store_deleted'] = m.store('1', '+FLAGS.SILENT', '(\\Deleted)')[0]
out['expunge'] = [x.decode() if x else None for x in m.expunge()[1]]
try:
    imaplib.Commands['FROB'] = ('AUTH', 'SELECTED')
    m._simple_command('FROB')
    out['bad'] = 'no error'
except m.error as e:
    out['bad'] = str(e)
out['logout'] = m.logout()[0]
s = imaplib.IMAP4_SSL('127.0.0.1', tls_port, ssl_context=ctx)
s.login(user, password)
out['ssl_select'] = s.select('Archive', readonly=True)[1][0].decode()
out['ssl_fetch_equal'] = s.fetch('1', '(RFC822)')[1][0][1] == message
s.logout()
print(json.dumps(out))
`

test('imaplib over STARTTLS and implicit TLS', async (t) => {
  const f = await fixture(t)
  const plain = await f.server({ allowInsecureAuthOnLoopback: false })
  const implicit = await f.server({ implicitTls: true })
  const message = richMessage()
  const result = await python(SCRIPT, [String(plain.port), String(implicit.port), USER, PASSWORD, message.toString('hex')])
  assert.equal(result.code, 0, result.stderr)
  const out = JSON.parse(result.stdout) as Record<string, unknown>
  assert.match(out.caps_before as string, /STARTTLS/)
  assert.match(out.caps_before as string, /LOGINDISABLED/, 'no plaintext login before TLS when not allowed')
  assert.doesNotMatch(out.caps_after as string, /STARTTLS|LOGINDISABLED/)
  assert.equal(out.login, 'OK')
  assert.deepEqual(out.append, ['OK', `[APPENDUID ${(await f.store.getMailbox(USER, 'INBOX'))!.uidValidity} 1] APPEND completed`])
  assert.equal(out.select, '1')
  assert.equal(out.fetch_equal, true)
  assert.match(out.fetch_meta as string, /FLAGS \(\\Seen \$Label1 \\Recent\)/, 'appended before the SELECT: recent in it')
  assert.equal(out.search_utf8, '1')
  assert.equal(out.search_keyword, '1')
  assert.match(out.store as string, /FLAGS \(.*\\Flagged.*\)/)
  assert.equal(out.copy, 'OK')
  assert.match(out.status as string, /Archive \(MESSAGES 1 UIDNEXT 2 UNSEEN 0\)/)
  assert.equal(out.create, 'OK')
  assert.deepEqual(out.list, ['(\\HasChildren) "/" Parent', '(\\HasNoChildren) "/" Parent/Child'])
  assert.equal(out.rename, 'OK')
  assert.deepEqual(out.list2, ['(\\HasNoChildren) "/" Renamed/Child'])
  assert.deepEqual(out.expunge, ['1'])
  assert.match(out.bad as string, /Unknown command FROB/)
  assert.equal(out.logout, 'BYE')
  assert.equal(out.ssl_select, '1')
  assert.equal(out.ssl_fetch_equal, true)
})

// A realistic Python imaplib session, as a mail client runs one: LOGIN, LIST, SELECT, SEARCH, FETCH, STORE,
// COPY, EXPUNGE, APPEND, and IDLE through raw commands (imaplib has no IDLE before Python 3.14): the client
// sends IDLE, reads the continuation, learns of a delivery made meanwhile (which this test triggers from Node
// when the script says it is idling), sends DONE and reads the tagged OK.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { fixture, PASSWORD, richMessage, simpleMessage, USER } from './helpers.ts'

const SCRIPT = String.raw`
import imaplib, json, re, sys
port, user, password, message_hex = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
out = {}
m = imaplib.IMAP4('127.0.0.1', port)
out['login'] = m.login(user, password)[0]
typ, names = m.list()
out['list'] = sorted(n.decode() for n in names)
typ, data = m.select('INBOX')
out['exists'] = int(data[0])
typ, data = m.uid('SEARCH', None, 'UNSEEN')
out['unseen'] = data[0].decode().split()
typ, data = m.search(None, 'FROM', '"sender@example.org"', 'SUBJECT', 'second')
out['search'] = data[0].decode().split()
typ, data = m.fetch('1:*', '(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])')
out['headers'] = [part[1].decode().strip() for part in data if isinstance(part, tuple)]
out['fetch_meta'] = [part[0].decode() for part in data if isinstance(part, tuple)]
typ, data = m.fetch('1', '(BODYSTRUCTURE)')
out['bodystructure'] = data[0].decode()
typ, data = m.fetch('2', '(BODY[])')
out['body_len'] = len(data[0][1])
typ, data = m.fetch('2', '(FLAGS)')
out['seen_after_body'] = data[0].decode()
out['store'] = [x.decode() for x in m.store('1', '+FLAGS', '(\\Flagged $Work)')[1]]
out['copy'] = m.copy('1:2', 'Archive')[0]
out['store_deleted'] = m.store('1', '+FLAGS.SILENT', '(\\Deleted)')[0]
out['expunge'] = [x.decode() for x in m.expunge()[1] if x]
msg = bytes.fromhex(message_hex)
typ, data = m.append('Drafts', '(\\Draft)', None, msg)
out['append'] = [typ, data[0].decode()]

# IDLE by hand: the tagged command, the continuation, untagged data, DONE, the tagged OK.
tag = m._new_tag().decode()
m.send(('%s IDLE\r\n' % tag).encode())
out['idle_cont'] = m.readline().decode().strip()
print('IDLING', flush=True)
pushed = []
while True:
    line = m.readline().decode().strip()
    pushed.append(line)
    if line.endswith('EXISTS'):
        break
m.send(b'DONE\r\n')
while True:
    line = m.readline().decode().strip()
    if line.startswith(tag):
        out['idle_done'] = line
        break
    pushed.append(line)
out['idle_pushed'] = pushed
typ, data = m.fetch('2', '(ENVELOPE)')
out['pushed_envelope'] = data[0].decode()
out['close'] = m.close()[0]
out['logout'] = m.logout()[0]
print(json.dumps(out), flush=True)
`

test('imaplib: a realistic session with IDLE through raw commands', async (t) => {
  const f = await fixture(t)
  await f.store.deliver(richMessage(), [{ user: USER, prefix: '' }])
  await f.store.deliver(simpleMessage('second'), [{ user: USER, prefix: '' }])
  const { port } = await f.server()
  const draft = simpleMessage('draft')
  const child = spawn('python3', ['-c', SCRIPT, String(port), USER, PASSWORD, draft.toString('hex')], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.after(() => { child.kill() })
  let stdout = ''
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve))
  const idling = new Promise<void>((resolve) => {
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString()
      if (stdout.includes('IDLING\n')) resolve()
    })
  })
  const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`python did not reach IDLE: ${stderr}`)), 20_000).unref())
  await Promise.race([idling, timeout])
  await f.store.deliver(simpleMessage('while idle'), [{ user: USER, prefix: '' }])
  const code = await Promise.race([exited, timeout])
  assert.equal(code, 0, stderr)
  const out = JSON.parse(stdout.slice(stdout.indexOf('IDLING\n') + 7)) as Record<string, unknown>
  assert.equal(out.login, 'OK')
  assert.ok((out.list as string[]).includes('(\\HasNoChildren) "/" INBOX'))
  assert.ok((out.list as string[]).includes('(\\Sent \\HasNoChildren) "/" Sent'))
  assert.equal(out.exists, 2)
  assert.deepEqual(out.unseen, ['1', '2'])
  assert.deepEqual(out.search, ['2'])
  assert.equal((out.headers as string[]).length, 2)
  assert.match((out.headers as string[])[1]!, /^From: sender@example.org\r\nSubject: second$/)
  assert.match((out.fetch_meta as string[])[0]!, /^1 \(UID 1 FLAGS \(\\Recent\) RFC822\.SIZE \d+ BODY\[HEADER\.FIELDS \(SUBJECT FROM\)\] \{\d+\}$/)
  assert.match(out.bodystructure as string, /^1 \(BODYSTRUCTURE \(\(\("TEXT" "PLAIN"/)
  assert.equal(out.body_len, simpleMessage('second').length)
  assert.equal(out.seen_after_body, '2 (FLAGS (\\Seen \\Recent))', 'delivered before the SELECT: recent in it')
  assert.match((out.store as string[])[0]!, /^1 \(FLAGS \((?=.*\\Flagged)(?=.*\$Work)[^)]*\)\)$/)
  assert.equal(out.copy, 'OK')
  assert.equal(out.store_deleted, 'OK')
  assert.deepEqual(out.expunge, ['1'])
  assert.match((out.append as string[])[1]!, /^\[APPENDUID \d+ 1\]/)
  assert.equal(out.idle_cont, '+ idling')
  assert.ok((out.idle_pushed as string[]).includes('* 2 EXISTS'), JSON.stringify(out.idle_pushed))
  assert.match(out.idle_done as string, / OK IDLE completed$/)
  assert.match(out.pushed_envelope as string, /"while idle"/)
  assert.equal(out.close, 'OK')
  assert.equal(out.logout, 'BYE')
  assert.equal((await f.store.getMailbox(USER, 'Archive'))!.messages, 2)
})

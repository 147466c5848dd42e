// CREATE-SPECIAL-USE (RFC 6154 section 3): CREATE name (USE (attr)), advertised; the attribute shows in LIST and in
// LIST (SPECIAL-USE). The section 5.3 example, with Python's imaplib (no CREATE parameters in its API: sent through
// its generic command path) and raw protocol.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { python } from '../helpers/client.ts'
import { fixture, PASSWORD, RawImap, USER } from './helpers.ts'

test('CREATE-SPECIAL-USE: RFC 6154 section 5.3 with imaplib: two attributes refused with USEATTR, one accepted and listed', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server()
  const script = `
import imaplib, json, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
a = imaplib.IMAP4('127.0.0.1', port); a.login(user, password)
out = {'caps': list(a.capabilities)}
imaplib.Commands['CREATE'] = ('AUTH', 'SELECTED')
def create(*args):
    try:
        typ, data = a._simple_command('CREATE', *args)
        return [typ, [d.decode() for d in data if d], a.untagged_responses.pop('USEATTR', None) is not None]
    except a.error as e:
        return ['BAD', [str(e)], False]
out['two'] = create('MySpecial', '(USE (\\\\Drafts \\\\Sent))')
out['junk'] = create('MySpecial', '(USE (\\\\Junk))')
out['list'] = [d.decode() for d in a.list('""', 'MySpecial')[1]]
out['unknown'] = create('Other', '(USE (\\\\Important))')
out['special'] = [d.decode() for d in a._simple_command('LIST', '(SPECIAL-USE)', '""', '"*"')[1] and a.untagged_responses.pop('LIST', [])]
print(json.dumps(out))
`
  const r = await python(script, [String(port), USER, PASSWORD])
  assert.equal(r.code, 0, r.stderr)
  const out = JSON.parse(r.stdout) as Record<string, unknown>
  assert.ok((out.caps as string[]).includes('CREATE-SPECIAL-USE'))
  // "the server MAY ... reject the CREATE with a NO [USEATTR]" when it cannot give a mailbox both uses
  assert.equal((out.two as unknown[])[0], 'NO')
  assert.equal((out.junk as unknown[])[0], 'OK')
  assert.deepEqual(out.list, ['(\\Junk \\HasNoChildren) "/" MySpecial'])
  assert.equal((out.unknown as unknown[])[0], 'NO')
  const special = (out.special as string[]).filter((l) => l.endsWith('MySpecial'))
  assert.deepEqual(special, ['(\\Junk \\HasNoChildren) "/" MySpecial'])
})

test('CREATE-SPECIAL-USE raw: USEATTR codes, malformed parameters are BAD, nothing is created on a refusal', async (t) => {
  const f = await fixture(t)
  const { port } = await f.server()
  const c = await RawImap.connect(port)
  t.after(() => { c.close() })
  await c.login()
  assert.match(await c.cmd('CAPABILITY'), / CREATE-SPECIAL-USE/)
  assert.match(await c.cmd('CREATE A (USE (\\Drafts \\Sent))'), /NO \[USEATTR\]/)
  assert.match(await c.cmd('CREATE A (USE (\\Bogus))'), /NO \[USEATTR\]/)
  assert.match(await c.cmd('CREATE A (USE)'), /BAD/)
  assert.match(await c.cmd('CREATE A (FOO (\\Junk))'), /BAD/)
  assert.doesNotMatch(await c.cmd('LIST "" A'), /\* LIST/)
  assert.match(await c.cmd('CREATE A (USE (\\archive))'), /OK \[MAILBOXID/)
  assert.match(await c.cmd('LIST "" A'), /^\* LIST \(\\Archive \\HasNoChildren\) "\/" A\r$/m)
})

// BURL (RFC 4468) on a three-node grid (R=2, node processes): the user's draft lives on two nodes; a BURL sent to the
// submission port of any node, the one without a copy included, is read through an IMAP session at the user's
// primary (node/smtp/burl.ts fetchOverImap), so every node delivers the draft.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { RawClient } from '../helpers/client.ts'
import { startGrid } from '../helpers/cluster.ts'
import { tempDir } from '../helpers/tmp.ts'
import { RawImap } from '../imap/helpers.ts'

const DRAFT = Buffer.from('From: u1@example.com\r\nTo: u2@example.com\r\nSubject: grid draft\r\n\r\nSent by reference on a grid.\r\n')

test('BURL on a grid: every node\'s submission port reads the draft at the user\'s primary', async t => {
  const dir = await tempDir(t)
  const { nodes } = await startGrid(t, dir, 3, ['u1@example.com', 'u2@example.com'])
  const imap = await RawImap.connect(nodes[0]!.ports.imap!)
  t.after(() => { imap.close() })
  assert.match(await imap.login('u1@example.com', 'pw'), /OK/)
  imap.client.write(`a APPEND Drafts {${DRAFT.length}+}\r\n`)
  imap.client.write(Buffer.concat([DRAFT, Buffer.from('\r\n')]))
  const appended = /\[APPENDUID (\d+) (\d+)\]/.exec(await imap.client.read((b) => /a (OK|NO|BAD)[^\r\n]*\r\n$/.test(b), 30_000))
  assert.ok(appended)
  const rump = `imap://u1%40example.com@grid.test/Drafts;UIDVALIDITY=${appended[1]}/;UID=${appended[2]};URLAUTH=submit+u1%40example.com`
  const url = /^\* GENURLAUTH "([^"]+)"\r$/m.exec(await imap.cmd(`GENURLAUTH "${rump}" INTERNAL`))?.[1]
  assert.ok(url !== undefined)
  for (const n of nodes) {
    const c = await RawClient.connect(n.ports.submission!)
    t.after(() => { c.close() })
    await c.read()
    assert.match(await c.cmd('EHLO client.test'), /BURL imap/)
    assert.match(await c.cmd(`AUTH PLAIN ${Buffer.from('\0u1@example.com\0pw').toString('base64')}`), /^235 /)
    assert.match(await c.cmd('MAIL FROM:<u1@example.com>'), /^250 /)
    assert.match(await c.cmd('RCPT TO:<u2@example.com>'), /^250 /)
    assert.match(await c.cmd(`BURL ${url} LAST`), /^250 /, `via ${n.name}`)
    // a tampered token is refused there as well
    assert.match(await c.cmd('MAIL FROM:<u1@example.com>'), /^250 /)
    assert.match(await c.cmd('RCPT TO:<u2@example.com>'), /^250 /)
    assert.match(await c.cmd(`BURL ${url.replace(/[0-9a-f]$/, (d) => d === '0' ? '1' : '0')} LAST`), /^554 5\.7\.0 /, `via ${n.name}`)
  }
  const reader = await RawImap.connect(nodes[2]!.ports.imap!)
  t.after(() => { reader.close() })
  await reader.login('u2@example.com', 'pw')
  await reader.cmd('SELECT INBOX')
  const bodies = await reader.cmd('FETCH 1:* BODY.PEEK[TEXT]')
  assert.equal(bodies.split('Sent by reference on a grid.').length - 1, 3, bodies)
})

// The appliance's SSH pieces (appliance/ssh.ts): public keys made by OpenSSH's own ssh-keygen are taken or
// refused as they should be, the authorized_keys text is one OpenSSH reads back, and the image's sshd drop-in
// (iso/rootfs/etc/ssh/sshd_config.d/mailgrid.conf) is key-only, root-only, with only the given keys.

import { test } from 'node:test'
import type { TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { authorizedKeysText, checkSshdConfig, checkSshKey, parseSshKey, SSH_KEYS_NAME } from '../../appliance/ssh.ts'
import { tempDir } from '../helpers/tmp.ts'

const ROOT = new URL('../..', import.meta.url).pathname
const DROP_IN = join(ROOT, 'iso', 'rootfs', 'etc', 'ssh', 'sshd_config.d', 'mailgrid.conf')

/** A public key line made by ssh-keygen. */
async function keygen (t: TestContext, type: string, bits?: number): Promise<string> {
  const dir = await tempDir(t)
  const file = join(dir, 'key')
  execFileSync('ssh-keygen', ['-q', '-t', type, ...(bits === undefined ? [] : ['-b', String(bits)]), '-N', '', '-C', `test ${type}`, '-f', file])
  return readFileSync(`${file}.pub`, 'utf8').trim()
}

test('ssh keys: ssh-keygen\'s Ed25519, ECDSA and RSA >= 3072 are taken; short RSA, other types, options, broken blobs and two lines are not', async t => {
  const ed = await keygen(t, 'ed25519')
  const p = parseSshKey(ed)
  assert.ok(typeof p !== 'string', String(p))
  assert.equal(p.type, 'ssh-ed25519')
  assert.equal(p.bits, 256)
  assert.equal(p.comment, 'test ed25519')
  assert.equal(p.line, ed)
  for (const bits of [256, 384, 521]) {
    const k = parseSshKey(await keygen(t, 'ecdsa', bits))
    assert.ok(typeof k !== 'string', String(k))
    assert.equal(k.bits, bits)
  }
  const rsa = parseSshKey(await keygen(t, 'rsa', 3072))
  assert.ok(typeof rsa !== 'string', String(rsa))
  assert.equal(rsa.bits, 3072)
  assert.match(checkSshKey(await keygen(t, 'rsa', 2048)) ?? '', /at least 3072 bits \(this one has 2048\)/)

  const [type, b64] = ed.split(' ')
  const bad: Array<[string, RegExp]> = [
    ['', /empty/],
    [`${ed}\n${ed}`, /one line/],
    [`from="10.0.0.1" ${ed}`, /a public key of type/],
    [`ssh-dss ${b64}`, /a public key of type/],
    [`${type}`, /TYPE BASE64/],
    [`${type} not*base64`, /TYPE BASE64/],
    // the blob's own type must be the line's
    [`ecdsa-sha2-nistp256 ${b64}`, /ECDSA key whose blob/],
    // a truncated blob (a copy-paste cut short)
    [`${type} ${b64.slice(0, 40)}`, /Ed25519 key whose blob/],
    [`${ed} ${'x'.repeat(300)}`, /comment of at most/],
    [`${type} ${'A'.repeat(9000)}`, /at most 8192 characters/],
    [`${ed}\u0007`, /printable/]
  ]
  for (const [line, re] of bad) assert.match(checkSshKey(line) ?? 'taken', re, line.slice(0, 60))
  // Surrounding blanks (a pasted line) are not part of the key.
  assert.equal(checkSshKey(`  ${ed}  `), null)
})

test('authorized_keys: the given keys, once each, in a file ssh-keygen reads back', async t => {
  const a = await keygen(t, 'ed25519')
  const b = await keygen(t, 'ecdsa')
  const text = authorizedKeysText([a, b, a.split(' ').slice(0, 2).join(' ') + ' same key, other comment'])
  assert.equal(text, `${a}\n${b}\n`)
  const file = join(await tempDir(t), SSH_KEYS_NAME)
  writeFileSync(file, text)
  const listed = execFileSync('ssh-keygen', ['-l', '-f', file], { encoding: 'utf8' }).trim().split('\n')
  assert.equal(listed.length, 2)
  assert.match(listed[0], /\(ED25519\)$/)
  assert.match(listed[1], /\(ECDSA\)$/)
  assert.equal(authorizedKeysText([]), '')
  assert.throws(() => authorizedKeysText(['ssh-rsa AAAA']), /not an SSH public key/)
})

test('sshd drop-in of the image: key-only, root only, only the given keys, host keys named; a looser text is refused', () => {
  const shipped = readFileSync(DROP_IN, 'utf8')
  assert.deepEqual(checkSshdConfig(shipped), [])
  // sshd takes the first value: a later "yes" does not loosen it, an earlier one does.
  assert.deepEqual(checkSshdConfig(shipped + '\nPasswordAuthentication yes\n'), [])
  assert.match(checkSshdConfig('PasswordAuthentication yes\n' + shipped).join('\n'), /passwordauthentication: "yes", must be "no"/)
  assert.match(checkSshdConfig(shipped.replace(/^PermitRootLogin .*$/m, 'PermitRootLogin yes')).join('\n'), /permitrootlogin: "yes"/)
  assert.match(checkSshdConfig(shipped.replace(/^KbdInteractiveAuthentication .*$/m, '')).join('\n'), /kbdinteractiveauthentication: not set/)
  assert.match(checkSshdConfig(shipped + 'Match Address 10.0.0.0/8\n  PasswordAuthentication yes\n').join('\n'), /Match block/)
  assert.match(checkSshdConfig(shipped.replace(/^HostKey .*$/gm, '')).join('\n'), /hostkey: not set/)
})
